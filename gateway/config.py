"""The gateway's configuration: one TOML file plus environment overrides, validated at start.

An environment variable MAM__<SECTION>__<KEY> overrides `<key>` of `[<section>]`, e.g.
MAM__SERVER__LISTEN=0.0.0.0:50051 or MAM__DATABASE__URL=postgresql+asyncpg://... Values are
parsed as TOML when they can be (numbers, booleans), else taken as strings.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from gateway.config_overrides import OverrideError, apply_environment
from gateway.domain.accounts import Platform
from gateway.domain.decimals import parse_decimal
from gateway.domain.peer_authentication import MIN_TOKEN_LENGTH, token_problem
from gateway.domain.symbols import SymbolSpec
from gateway.terminals.mt4.tokens import TokenFileError, parse_tokens
from gateway.terminals.mt5.settings import Mt5Settings
from gateway.terminals.sim.faults import PROBABILITY_FIELDS as FAULT_PROBABILITIES
from gateway.terminals.sim.faults import FaultSettings
from gateway.terminals.sim.latency import LatencyDistribution, LatencySettings
from gateway.terminals.sim.sessions import ALWAYS_OPEN, TradingSessions
from gateway.terminals.sim.symbol import SymbolRules, SymbolTradeMode
from gateway.tls_files import TlsFileError, read_server_tls

# The smallest first frame the MT4 bridge may be limited to: a hello whose strings are all as
# long as gateway/terminals/mt4/messages.py lets them be is 943 bytes of ASCII.
MIN_HELLO_FRAME_BYTES = 1024


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """PEM files; with client_ca_file every client must present a certificate it signed."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: str = "127.0.0.1:50051"
    grace_seconds: float = 5.0
    # The largest message either way (responses: a page of 50 FULL master orders of
    # 1,000-account groups is ~6 MB).
    max_message_bytes: int = 16 * 1024 * 1024
    # The largest request message (at most max_message_bytes): what one call can make the
    # gateway receive and parse. The largest legitimate one, a 1,000-member CreateGroup with every
    # member setting, is ~0.3 MB (docs/access-control.md, "Limits").
    max_request_bytes: int = 4 * 1024 * 1024
    # The most items one repeated field of a request may hold (a group's members, a fill
    # filter's accounts, a key's groups); more is INVALID_ARGUMENT (TOO_MANY_ITEMS).
    max_repeated_items: int = 5_000
    heartbeat_seconds: float = 5.0
    tls: TlsConfig | None = None
    # Plaintext on a non-loopback address: only behind a TLS-terminating proxy or mesh.
    plaintext_off_loopback: bool = False
    # A plaintext, health-only endpoint for probes (container healthchecks); off when empty.
    health_listen: str = ""

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """API keys (`authorization: Bearer <key>`) and what each key may spend."""

    # Off: every caller is an admin. Only allowed when the gateway listens on loopback.
    required: bool = True
    # When no admin key exists at start, one is created and written here (mode 0600); empty:
    # never (create the first with `mam-gateway keys create --role admin`).
    bootstrap_admin_key_file: Path | None = None
    # Calls (and stream messages) per second per key, and the burst above that rate.
    rate_per_second: float = 200.0
    burst: int = 400
    # Streaming calls open at once per key.
    max_streams_per_key: int = 32
    # How often the keys of open streams are read again: a key revoked straight in the
    # database (`mam-gateway keys revoke`) ends its streams within this time.
    stream_recheck_seconds: float = 5.0
    # Failed authentications (an unknown key id, a wrong secret) one connection may make in a
    # row, then one more every connection_failure_refill_seconds; and one address over all its
    # connections. Beyond them: AUTHENTICATION_THROTTLED, keys already verified still pass.
    failures_per_connection: int = 5
    connection_failure_refill_seconds: float = 2.0
    failures_per_address: int = 40
    address_failure_refill_seconds: float = 0.2
    # scrypt verifications of keys not verified before, per second for the whole gateway, and
    # the burst above that rate (each costs 30-60 ms of a core).
    verifications_per_second: float = 8.0
    verification_burst: int = 32


@dataclass(frozen=True, slots=True)
class Mt4BridgeConfig:
    """The endpoint MT4 terminals' Expert Advisors connect out to (docs/mt4-bridge.md)."""

    # Empty: the bridge is off.
    listen: str = ""
    # Lines "LOGIN TOKEN" (16+ characters); MAM_MT4_TOKEN_<login> in the environment wins.
    # Never in the TOML.
    tokens_file: Path | None = None
    heartbeat_seconds: float = 5.0
    timeout_seconds: float = 20.0
    # Silence allowed while a trade is outstanding (the EA is blocked in OrderSend).
    trade_timeout_seconds: float = 90.0
    # The longest wait for a trade's answer; beyond it the outcome counts as unknown.
    request_timeout_seconds: float = 60.0
    max_frame_bytes: int = 1 << 20
    # The EA speaks plain TCP (MT4 has no TLS sockets): off loopback only on a private network
    # or a tunnel, acknowledged here.
    plaintext_off_loopback: bool = False
    # Before its hello is accepted a connection may take this long to say it, its first frame
    # may hold this many bytes (a hello is a few hundred), and this many may wait at once.
    hello_timeout_seconds: float = 10.0
    hello_max_frame_bytes: int = 4096
    max_pending_connections: int = 128
    # Failed hellos one address may make in a row, then one more every
    # hello_failure_refill_seconds; meanwhile its hellos are refused unchecked.
    hello_failures_per_address: int = 10
    hello_failure_refill_seconds: float = 6.0


@dataclass(frozen=True, slots=True)
class Mt5Config:
    """MT5 terminals on this host, one per account (docs/terminals-mt5.md): each runs in its own
    worker process through the MetaTrader5 package (Windows), mt5linux, or the emulator."""

    by_login: Mapping[int, Mt5Settings] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    max_concurrency: int = 1_000
    request_timeout_seconds: float = 10.0
    max_attempts: int = 4
    default_deviation_points: int = 20
    max_master_volume: Decimal = Decimal(10_000)
    # How often every terminal's money, deals and positions are stored as account history;
    # 0: never.
    history_interval_seconds: float = 60.0
    # How often resting pending orders are checked at their brokers (fills, expiry).
    pending_check_interval_seconds: float = 0.5
    # How often a child whose outcome is UNKNOWN is searched for (and settled) again.
    unknown_retry_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    seed: int = 1
    tick_interval_ms: int = 250
    # The fixed latency; the mean of a normal, the median of a lognormal distribution.
    latency_ms: int = 0
    latency_distribution: LatencyDistribution = LatencyDistribution.FIXED
    latency_sd_ms: float = 0.0
    latency_sigma: float = 0.0
    # The simulated broker's books in a SQLite file; None: in memory, lost at exit.
    state_path: Path | None = None
    faults: FaultSettings = field(default_factory=FaultSettings)
    # Trade mode and sessions of symbols that are not always open to everything.
    symbol_rules: tuple[tuple[str, SymbolRules], ...] = ()

    @property
    def latency(self) -> LatencySettings:
        return LatencySettings(
            distribution=self.latency_distribution,
            ms=float(self.latency_ms),
            sd_ms=self.latency_sd_ms,
            sigma=self.latency_sigma,
        )

    def rules_for(self, symbol: str) -> SymbolRules:
        return dict(self.symbol_rules).get(symbol, SymbolRules())


@dataclass(frozen=True, slots=True)
class SimulatedSymbol:
    spec: SymbolSpec
    initial_price: Decimal
    spread_points: int
    step_points: int


@dataclass(frozen=True, slots=True)
class DemoAccount:
    name: str
    login: int
    initial_balance: Decimal
    leverage: int = 100


@dataclass(frozen=True, slots=True)
class DemoConfig:
    group: str = "demo"
    accounts: tuple[DemoAccount, ...] = ()


@dataclass(frozen=True, slots=True)
class HostableLogin:
    """A broker login a worker token may host: on any server, or on the one named."""

    login: int
    server: str = ""

    def covers(self, login: int, server: str) -> bool:
        return self.login == login and self.server in ("", server)

    def __str__(self) -> str:
        return f"{self.login}@{self.server}" if self.server else str(self.login)


@dataclass(frozen=True, slots=True)
class WorkerToken:
    """A secret a worker presents in its hello. With worker_id, only that worker id may use it
    (and no other token may); with logins, it may host only those (and no other token may)."""

    secret: str = field(repr=False)
    worker_id: str = ""
    logins: tuple[HostableLogin, ...] = ()
    # Read from workers.tokens_file (read again when the file changes), not the environment.
    from_file: bool = False


@dataclass(frozen=True, slots=True)
class WorkersConfig:
    """Remote terminal workers (docs/workers.md): hosts near the broker running the terminals."""

    enabled: bool = False
    # Accounts of these platforms are traded through the worker hosting their login.
    platforms: tuple[Platform, ...] = (Platform.MT4, Platform.MT5)
    # From workers.tokens_file and the environment variable workers.tokens_env, never the TOML.
    tokens: tuple[WorkerToken, ...] = field(default=(), repr=False)
    # Read again whenever it changes: a token removed from it is refused from then on.
    tokens_file: Path | None = None
    # Workers heartbeat this often when idle; one silent for three intervals is dropped.
    heartbeat_seconds: float = 5.0
    # How long a call for a dropped worker's account waits for the worker to come back.
    reconnect_grace_seconds: float = 10.0

    def hosts(self, platform: Platform) -> bool:
        return self.enabled and platform in self.platforms


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    mt4_bridge: Mt4BridgeConfig = field(default_factory=Mt4BridgeConfig)
    mt5: Mt5Config = field(default_factory=Mt5Config)
    database_url: str = "sqlite+aiosqlite:///var/mam-gateway.db"
    engine: EngineConfig = field(default_factory=EngineConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    symbols: tuple[SimulatedSymbol, ...] = ()
    demo: DemoConfig | None = None
    log_level: str = "INFO"
    workers: WorkersConfig = field(default_factory=WorkersConfig)

    @property
    def symbol_specs(self) -> dict[str, SymbolSpec]:
        return {s.spec.name: s.spec for s in self.symbols}


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    environ = os.environ if environ is None else environ
    _apply_environment(data, environ)
    try:
        return _parse(data, environ, base_dir=path.parent)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def _apply_environment(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    try:
        apply_environment(data, environ)
    except OverrideError as error:
        raise ConfigError(str(error)) from None


class _Section:
    """Typed reads of one TOML table that name the key at fault and reject unknown keys."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{path or 'top level'}: expected a table")
        self._data = data
        self._path = path
        self._read: set[str] = set()

    def _key(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def get(self, key: str, kind: type, default: Any) -> Any:
        self._read.add(key)
        if key not in self._data:
            return default
        value = self._data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{self._key(key)}: expected {kind.__name__}, got {value!r}")
        return value

    def decimal(self, key: str, default: Decimal | None = None) -> Decimal:
        self._read.add(key)
        if key not in self._data:
            if default is None:
                raise ConfigError(f"{self._key(key)}: required")
            return default
        value = self._data[key]
        if isinstance(value, float):
            raise ConfigError(f'{self._key(key)}: write decimals as strings, e.g. "0.01"')
        try:
            return parse_decimal(str(value))
        except ValueError:
            raise ConfigError(f"{self._key(key)}: not a decimal: {value!r}") from None

    def required(self, key: str, kind: type) -> Any:
        if key not in self._data:
            raise ConfigError(f"{self._key(key)}: required")
        return self.get(key, kind, None)

    def section(self, key: str) -> _Section:
        self._read.add(key)
        return _Section(self._data.get(key, {}), self._key(key))

    def positive(self, key: str, kind: type, default: Any) -> Any:
        value = self.get(key, kind, default)
        if value <= 0:
            raise ConfigError(f"{self._key(key)}: must be greater than 0")
        return value

    def done(self) -> None:
        unknown = sorted(set(self._data) - self._read)
        if unknown:
            raise ConfigError(f"{self._key(unknown[0])}: unknown key")


def _parse(
    data: dict[str, Any], environ: Mapping[str, str], *, base_dir: Path = Path()
) -> GatewayConfig:
    top = _Section(data, "")
    server_section = top.section("server")
    server = ServerConfig(
        listen=_listen("server.listen", server_section.get("listen", str, "127.0.0.1:50051")),
        grace_seconds=server_section.get("grace_seconds", float, 5.0),
        max_message_bytes=server_section.positive("max_message_bytes", int, 16 * 1024 * 1024),
        max_request_bytes=server_section.positive("max_request_bytes", int, 4 * 1024 * 1024),
        max_repeated_items=server_section.positive("max_repeated_items", int, 5_000),
        heartbeat_seconds=server_section.positive("heartbeat_seconds", float, 5.0),
        tls=_tls(server_section),
        plaintext_off_loopback=server_section.get("plaintext_off_loopback", bool, False),
        health_listen=server_section.get("health_listen", str, ""),
    )
    if server.health_listen:
        _listen("server.health_listen", server.health_listen)
        if not _is_loopback(server.health_listen.rsplit(":", 1)[0].strip("[]")):
            raise ConfigError("server.health_listen: must be a loopback address")
    server_section.done()
    if server.tls is None and not server.plaintext_off_loopback and not _is_loopback(server.host):
        raise ConfigError(
            f"server.listen: {server.host} is not a loopback address: configure TLS "
            "(server.tls_cert_file and server.tls_key_file), or set "
            "server.plaintext_off_loopback = true when a TLS-terminating proxy is in front"
        )

    auth = _auth(top.section("auth"), server)
    mt4_bridge = _mt4_bridge(top.section("mt4_bridge"))
    mt5 = _mt5(top.section("mt5"), environ, base_dir)

    database = top.section("database")
    url = database.get("url", str, "sqlite+aiosqlite:///var/mam-gateway.db")
    if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise ConfigError(
            "database.url: expected sqlite+aiosqlite:///PATH or postgresql+asyncpg://..."
        )
    password_file = database.get("password_file", str, "")
    database.done()
    if password_file:
        # Relative to the configuration file, as an [[mt5.terminals]] password_file is.
        url = _with_password(url, base_dir / password_file)

    engine_section = top.section("engine")
    engine = EngineConfig(
        max_concurrency=engine_section.positive("max_concurrency", int, 1_000),
        request_timeout_seconds=engine_section.positive("request_timeout_seconds", float, 10.0),
        max_attempts=engine_section.positive("max_attempts", int, 4),
        default_deviation_points=engine_section.positive("default_deviation_points", int, 20),
        max_master_volume=engine_section.decimal("max_master_volume", Decimal(10_000)),
        history_interval_seconds=engine_section.get("history_interval_seconds", float, 60.0),
        pending_check_interval_seconds=engine_section.positive(
            "pending_check_interval_seconds", float, 0.5
        ),
        unknown_retry_seconds=engine_section.positive("unknown_retry_seconds", float, 5.0),
    )
    if engine.history_interval_seconds < 0:
        raise ConfigError("engine.history_interval_seconds: must not be negative (0: off)")
    engine_section.done()

    simulator = _simulator(top.section("simulator"))

    top._read.add("symbols")
    symbols = tuple(_symbol(entry, i) for i, entry in enumerate(data.get("symbols", [])))
    names = [s.spec.name for s in symbols]
    if len(set(names)) != len(names):
        raise ConfigError("symbols: a symbol is listed twice")
    if not symbols:
        raise ConfigError("symbols: at least one [[symbols]] entry is required")
    simulator = _with_symbol_names(simulator, names)

    demo = None
    if "demo" in data:
        demo_section = top.section("demo")
        demo_section._read.add("accounts")
        accounts = tuple(
            _demo_account(entry, i) for i, entry in enumerate(data["demo"].get("accounts", []))
        )
        demo = DemoConfig(group=demo_section.get("group", str, "demo"), accounts=accounts)
        demo_section.done()

    log_level = top.get("log_level", str, "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError("log_level: expected DEBUG, INFO, WARNING or ERROR")
    workers = _workers(top.section("workers"), environ)
    if workers.hosts(Platform.MT4) and mt4_bridge.listen:
        # Nothing says which of the two would trade an MT4 account.
        raise ConfigError(
            "workers.platforms: MT4 accounts go either to workers or to the MT4 bridge; set "
            'workers.platforms = ["MT5"] or leave mt4_bridge.listen empty'
        )
    top.done()
    return GatewayConfig(
        server=server,
        auth=auth,
        mt4_bridge=mt4_bridge,
        mt5=mt5,
        database_url=url,
        engine=engine,
        simulator=simulator,
        symbols=symbols,
        demo=demo,
        log_level=log_level,
        workers=workers,
    )


def _mt5(section: _Section, environ: Mapping[str, str], base_dir: Path) -> Mt5Config:
    section._read.add("terminals")
    entries = section._data.get("terminals", [])
    section.done()
    if not isinstance(entries, list):
        raise ConfigError("mt5.terminals: expected [[mt5.terminals]] tables")
    by_login: dict[int, Mt5Settings] = {}
    for i, entry in enumerate(entries):
        where = f"mt5.terminals[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table")
        login = entry.get("login")
        if not isinstance(login, int) or isinstance(login, bool) or login <= 0:
            raise ConfigError(f"{where}.login: required, a positive integer")
        if login in by_login:
            raise ConfigError(f"{where}.login: {login} is listed twice")
        options = {k: v for k, v in entry.items() if k not in ("login", "server")}
        try:
            by_login[login] = Mt5Settings.from_table(
                options,
                login=login,
                server=str(entry.get("server", "")),
                environ=environ,
                base_dir=base_dir,
            )
        except ValueError as error:
            raise ConfigError(f"{where}.{error}") from None
    return Mt5Config(by_login=by_login)


def _mt4_bridge(section: _Section) -> Mt4BridgeConfig:
    listen = section.get("listen", str, "")
    tokens_file = section.get("tokens_file", str, "")
    bridge = Mt4BridgeConfig(
        listen=_listen("mt4_bridge.listen", listen) if listen else "",
        tokens_file=Path(tokens_file) if tokens_file else None,
        heartbeat_seconds=section.positive("heartbeat_seconds", float, 5.0),
        timeout_seconds=section.positive("timeout_seconds", float, 20.0),
        trade_timeout_seconds=section.positive("trade_timeout_seconds", float, 90.0),
        request_timeout_seconds=section.positive("request_timeout_seconds", float, 60.0),
        max_frame_bytes=section.positive("max_frame_bytes", int, 1 << 20),
        plaintext_off_loopback=section.get("plaintext_off_loopback", bool, False),
        hello_timeout_seconds=section.positive("hello_timeout_seconds", float, 10.0),
        hello_max_frame_bytes=section.positive("hello_max_frame_bytes", int, 4096),
        max_pending_connections=section.positive("max_pending_connections", int, 128),
        hello_failures_per_address=section.positive("hello_failures_per_address", int, 10),
        hello_failure_refill_seconds=section.positive("hello_failure_refill_seconds", float, 6.0),
    )
    section.done()
    if not MIN_HELLO_FRAME_BYTES <= bridge.hello_max_frame_bytes <= bridge.max_frame_bytes:
        raise ConfigError(
            f"mt4_bridge.hello_max_frame_bytes: must be from {MIN_HELLO_FRAME_BYTES} (a hello "
            "with long names and a long token) to mt4_bridge.max_frame_bytes "
            f"({bridge.max_frame_bytes}), got {bridge.hello_max_frame_bytes}"
        )
    if bridge.listen:
        host = bridge.listen.rsplit(":", 1)[0].strip("[]")
        if not _is_loopback(host) and not bridge.plaintext_off_loopback:
            raise ConfigError(
                f"mt4_bridge.listen: {host} is not a loopback address and the EA protocol is "
                "plain TCP; put the bridge on a private network or tunnel and set "
                "mt4_bridge.plaintext_off_loopback = true"
            )
        if bridge.tokens_file is not None:
            # Read now, as the bridge will at start: a missing or broken file stops the start
            # before anything is written.
            try:
                parse_tokens(bridge.tokens_file.read_text(), source=str(bridge.tokens_file))
            except OSError as error:
                raise ConfigError(
                    f"mt4_bridge.tokens_file: cannot read {bridge.tokens_file}: "
                    f"{error.strerror or error}"
                ) from None
            except TokenFileError as error:
                raise ConfigError(f"mt4_bridge.tokens_file: {error}") from None
    return bridge


def _with_password(url: str, path: Path) -> str:
    """database.url with the password of database.password_file put in, percent-encoded: the
    password may hold any character (`p@ss#1/x`) without being read as part of the URL."""
    if not url.startswith("postgresql+asyncpg://"):
        raise ConfigError("database.password_file: only for a postgresql+asyncpg:// database.url")
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(
            f"database.password_file: cannot read {path}: {error.strerror or error}"
        ) from None
    # Secret files usually end with a newline (`echo SECRET > FILE`) that is not the password's.
    password = text.rstrip("\r\n")
    if not password:
        raise ConfigError(f"database.password_file: {path} is empty")
    parts = urlsplit(url)
    user, at, host = parts.netloc.rpartition("@")
    if not at or not user:
        raise ConfigError(
            "database.password_file: database.url names no user "
            "(postgresql+asyncpg://USER@HOST:PORT/DATABASE)"
        )
    if ":" in user:
        raise ConfigError(
            "database.password_file: database.url holds a password already; leave it out"
        )
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


def _auth(section: _Section, server: ServerConfig) -> AuthConfig:
    key_file = section.get("bootstrap_admin_key_file", str, "")
    auth = AuthConfig(
        required=section.get("required", bool, True),
        bootstrap_admin_key_file=Path(key_file) if key_file else None,
        rate_per_second=section.positive("rate_per_second", float, 200.0),
        burst=section.positive("burst", int, 400),
        max_streams_per_key=section.positive("max_streams_per_key", int, 32),
        stream_recheck_seconds=section.positive("stream_recheck_seconds", float, 5.0),
        failures_per_connection=section.positive("failures_per_connection", int, 5),
        connection_failure_refill_seconds=section.positive(
            "connection_failure_refill_seconds", float, 2.0
        ),
        failures_per_address=section.positive("failures_per_address", int, 40),
        address_failure_refill_seconds=section.positive(
            "address_failure_refill_seconds", float, 0.2
        ),
        verifications_per_second=section.positive("verifications_per_second", float, 8.0),
        verification_burst=section.positive("verification_burst", int, 32),
    )
    section.done()
    if not auth.required and not _is_loopback(server.host):
        raise ConfigError(
            f"auth.required: false is only allowed on loopback; server.listen is {server.host}"
        )
    return auth


def _workers(section: _Section, environ: Mapping[str, str]) -> WorkersConfig:
    names = section.get("platforms", list, ["MT4", "MT5"])
    if not names or any(name not in ("MT4", "MT5") for name in names):
        raise ConfigError(f'workers.platforms: expected "MT4" and/or "MT5", got {names!r}')
    grace = section.get("reconnect_grace_seconds", float, 10.0)
    if grace < 0:
        raise ConfigError("workers.reconnect_grace_seconds: must not be negative")
    tokens_file = section.get("tokens_file", str, "")
    tokens_env = section.get("tokens_env", str, "MAM_WORKER_TOKENS")
    workers = WorkersConfig(
        enabled=section.get("enabled", bool, False),
        platforms=tuple(Platform[name] for name in dict.fromkeys(names)),
        heartbeat_seconds=section.positive("heartbeat_seconds", float, 5.0),
        reconnect_grace_seconds=grace,
    )
    section.done()
    if not workers.enabled:
        return workers
    tokens: list[WorkerToken] = []
    if tokens_file:
        tokens += read_worker_tokens_file(Path(tokens_file))
        workers = dataclasses.replace(workers, tokens_file=Path(tokens_file))
    if tokens_env:
        raw = environ.get(tokens_env, "")
        tokens += [
            parse_worker_token(f"${tokens_env}", item.strip())
            for item in raw.split(",")
            if item.strip()
        ]
    if not tokens:
        raise ConfigError(
            f"workers.enabled: no worker token; put them in workers.tokens_file or in the "
            f"environment variable {tokens_env or 'named by workers.tokens_env'}"
        )
    check_worker_tokens(tokens)
    return dataclasses.replace(workers, tokens=tuple(tokens))


def read_worker_tokens_file(path: Path) -> list[WorkerToken]:
    """The tokens of a workers.tokens_file: one entry a line, blank lines and # comments
    ignored. Raises ConfigError naming the line; the message never holds a token."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise ConfigError(f"workers.tokens_file: cannot read {path}: {error}") from None
    return [
        parse_worker_token(f"workers.tokens_file line {n}", line.strip(), from_file=True)
        for n, line in enumerate(lines, 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def parse_worker_token(source: str, entry: str, *, from_file: bool = False) -> WorkerToken:
    """`[WORKER_ID:]TOKEN [LOGIN[@SERVER] ...]`: a token, the worker id it is bound to and the
    logins it may host, separated by white space. The message never holds the token."""
    credential, *logins = entry.split()
    worker_id, _, secret = credential.rpartition(":")
    problem = token_problem(secret)
    if problem is not None:
        raise ConfigError(
            f"{source}: a worker token must be at least {MIN_TOKEN_LENGTH} printable ASCII "
            f"characters without white space (this one {problem})"
        )
    return WorkerToken(
        secret=secret,
        worker_id=worker_id.strip(),
        logins=tuple(_hostable_login(source, n, text) for n, text in enumerate(logins, 2)),
        from_file=from_file,
    )


def _hostable_login(source: str, field_number: int, text: str) -> HostableLogin:
    login, at, server = text.partition("@")
    if not login.isdigit() or int(login) <= 0 or (at and not server):
        # Not quoted: a token holding a space would show part of itself here.
        raise ConfigError(f"{source}: field {field_number} is not a login (LOGIN or LOGIN@SERVER)")
    return HostableLogin(int(login), server)


def check_worker_tokens(tokens: list[WorkerToken]) -> None:
    """One entry per token: two entries of one secret would bind it two ways."""
    seen = [token.secret for token in tokens]
    if len(set(seen)) != len(seen):
        raise ConfigError("workers: a worker token appears in two entries; give each one line")


def _simulator(sim: _Section) -> SimulatorConfig:
    latency_ms = sim.get("latency_ms", int, 0)
    if latency_ms < 0:
        raise ConfigError("simulator.latency_ms: must not be negative")
    distribution = sim.get("latency_distribution", str, "fixed")
    try:
        latency_distribution = LatencyDistribution(distribution)
    except ValueError:
        raise ConfigError(
            f"simulator.latency_distribution: expected fixed, normal or lognormal, "
            f"got {distribution!r}"
        ) from None
    latency_sd_ms = sim.get("latency_sd_ms", float, 0.0)
    latency_sigma = sim.get("latency_sigma", float, 0.0)
    for key, value in (("latency_sd_ms", latency_sd_ms), ("latency_sigma", latency_sigma)):
        if value < 0:
            raise ConfigError(f"simulator.{key}: must not be negative")
    state_path = sim.get("state_path", str, "")
    simulator = SimulatorConfig(
        seed=sim.get("seed", int, 1),
        tick_interval_ms=sim.positive("tick_interval_ms", int, 250),
        latency_ms=latency_ms,
        latency_distribution=latency_distribution,
        latency_sd_ms=latency_sd_ms,
        latency_sigma=latency_sigma,
        state_path=Path(state_path) if state_path else None,
        faults=_faults(sim.section("faults")),
        symbol_rules=_symbol_rules(sim.section("symbols")),
    )
    sim.done()
    return simulator


def _with_symbol_names(simulator: SimulatorConfig, names: list[str]) -> SimulatorConfig:
    """Rules under the [[symbols]] names they are for; environment keys arrive lowercased."""
    by_lower = {name.lower(): name for name in names}
    rules = []
    for name, rule in simulator.symbol_rules:
        if name.lower() not in by_lower:
            raise ConfigError(f"simulator.symbols.{name}: no [[symbols]] entry of that name")
        rules.append((by_lower[name.lower()], rule))
    return dataclasses.replace(simulator, symbol_rules=tuple(rules))


def _faults(section: _Section) -> FaultSettings:
    values: dict[str, Any] = {name: section.get(name, float, 0.0) for name in FAULT_PROBABILITIES}
    try:
        faults = FaultSettings(
            **values,
            hang_executes=section.get("hang_executes", bool, False),
            hang_seconds=section.get("hang_seconds", float, 3600.0),
        )
    except ValueError as error:
        raise ConfigError(f"simulator.faults: {error}") from None
    section.done()
    return faults


def _symbol_rules(section: _Section) -> tuple[tuple[str, SymbolRules], ...]:
    rules = []
    for name in sorted(section._data):
        entry = section.section(name)
        mode = entry.get("trade_mode", str, "FULL")
        try:
            trade_mode = SymbolTradeMode[mode]
        except KeyError:
            choices = ", ".join(m.name for m in SymbolTradeMode)
            raise ConfigError(
                f"simulator.symbols.{name}.trade_mode: expected one of {choices}, got {mode!r}"
            ) from None
        sessions = entry.get("sessions", list, None)
        try:
            parsed = ALWAYS_OPEN if sessions is None else TradingSessions.parse(map(str, sessions))
        except ValueError as error:
            raise ConfigError(f"simulator.symbols.{name}.sessions: {error}") from None
        entry.done()
        rules.append((name, SymbolRules(trade_mode=trade_mode, sessions=parsed)))
    section.done()
    return tuple(rules)


def _listen(key: str, value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{key}: expected HOST:PORT, got {value!r}")
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls(server: _Section) -> TlsConfig | None:
    cert = server.get("tls_cert_file", str, "")
    key = server.get("tls_key_file", str, "")
    client_ca = server.get("tls_client_ca_file", str, "")
    if not (cert or key or client_ca):
        return None
    if not (cert and key):
        raise ConfigError("server.tls_cert_file and server.tls_key_file: both are required for TLS")
    for name, value in (
        ("tls_cert_file", cert),
        ("tls_key_file", key),
        ("tls_client_ca_file", client_ca),
    ):
        if value and not Path(value).is_file():
            raise ConfigError(f"server.{name}: no such file: {value}")
    tls = TlsConfig(Path(cert), Path(key), Path(client_ca) if client_ca else None)
    # Read as gRPC will read them: a junk or expired certificate, or another certificate's key,
    # is refused here, before the gateway writes anything, rather than as "Failed to bind".
    try:
        read_server_tls(tls.cert_file, tls.key_file, tls.client_ca_file, now=datetime.now(UTC))
    except TlsFileError as error:
        raise ConfigError(str(error)) from None
    return tls


def _symbol(entry: Any, index: int) -> SimulatedSymbol:
    s = _Section(entry, f"symbols[{index}]")
    try:
        spec = SymbolSpec(
            name=s.required("name", str),
            digits=s.required("digits", int),
            contract_size=s.decimal("contract_size"),
            volume_min=s.decimal("volume_min"),
            volume_step=s.decimal("volume_step"),
            volume_max=s.decimal("volume_max"),
            tick_size=s.decimal("tick_size"),
            tick_value=s.decimal("tick_value"),
            currency_base=s.get("currency_base", str, ""),
            currency_profit=s.get("currency_profit", str, "USD"),
            stops_level=s.get("stops_level", int, 0),
        )
    except ValueError as error:
        raise ConfigError(f"symbols[{index}]: {error}") from None
    symbol = SimulatedSymbol(
        spec=spec,
        initial_price=s.decimal("initial_price"),
        spread_points=s.positive("spread_points", int, 10),
        step_points=s.positive("step_points", int, 5),
    )
    s.done()
    return symbol


def _demo_account(entry: Any, index: int) -> DemoAccount:
    s = _Section(entry, f"demo.accounts[{index}]")
    account = DemoAccount(
        name=s.required("name", str),
        login=s.required("login", int),
        initial_balance=s.decimal("initial_balance"),
        leverage=s.positive("leverage", int, 100),
    )
    if account.initial_balance <= 0:
        raise ConfigError(f"demo.accounts[{index}].initial_balance: must be greater than 0")
    s.done()
    return account
