"""The gateway's configuration, declared once: each key of the TOML file with its type,
constraint and default on one line, in the dataclasses the gateway runs with.

deploy/config/demo.toml documents every key declared here (tests/unit/test_config_checks.py
holds it to that); gateway/config/tables.py reads a table into its model, gateway/config/load.py
the whole file, with what spans keys and files (TLS, tokens, loopback addresses).

Where the file and the gateway want a section in different shapes (three TLS paths in the file,
one TlsConfig in the gateway), the keys both have are declared once in a base class
(`_ServerKeys`), and what differs in a `...File` class beside the gateway's `...Config`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from gateway.config.tables import (
    HostPort,
    LogLevel,
    NonNegativeFloat,
    NonNegativeInt,
    OptionalHostPort,
    PositiveFloat,
    PositiveInt,
)
from gateway.domain.accounts import Platform
from gateway.domain.statement import Letterhead
from gateway.domain.symbols import SymbolSpec
from gateway.terminals.mt5.settings import Mt5Settings
from gateway.terminals.sim.faults import FaultSettings
from gateway.terminals.sim.latency import LatencyDistribution, LatencySettings
from gateway.terminals.sim.symbol import SymbolRules, SymbolTradeMode

# The smallest first frame the MT4 bridge may be limited to: a hello whose strings are all as
# long as gateway/terminals/mt4/messages.py lets them be is 943 bytes of ASCII.
MIN_HELLO_FRAME_BYTES = 1024

# The database's URL may hold its password: never repeated in an error message.
DatabaseUrl = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^(?:sqlite\+aiosqlite|postgresql\+asyncpg)://",
        description="sqlite+aiosqlite:///PATH or postgresql+asyncpg://...",
        extra={"secret": True},
    ),
]
# A symbol's trade mode by its name (the enum's values are MT5's numbers).
TradeModeName = Annotated[
    str,
    msgspec.Meta(
        pattern=f"^(?:{'|'.join(SymbolTradeMode.__members__)})$",
        description=f"one of {', '.join(SymbolTradeMode.__members__)}",
    ),
]


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the file and the key."""


# How log lines are written: "human" (one line of text each, the default for `make run`), or
# "json" (one JSON object a line, with the order, account, trace and caller fields;
# docs/operations.md, "Logs").
LogFormat = Literal["human", "json"]


@dataclass(frozen=True, slots=True)
class TracingConfig:
    """[tracing]: OpenTelemetry traces to a collector over OTLP/gRPC (docs/operations.md,
    "Traces"); the gateway's and mam-worker's. Off: no span is made at all."""

    enabled: bool = False
    # The collector's OTLP/gRPC receiver.
    otlp_endpoint: HostPort = "127.0.0.1:4317"
    # TLS to the collector, checked against otlp_ca_file (None: the system's CAs); off, plaintext:
    # only to a loopback endpoint, unless otlp_plaintext_off_loopback (a private network).
    otlp_tls: bool = False
    otlp_ca_file: Path | None = None
    otlp_plaintext_off_loopback: bool = False
    # How long one export may take (spans are exported in batches, off the event loop).
    otlp_timeout_seconds: PositiveFloat = 10.0
    # The share of traces started here that are recorded; a call that carries a traceparent is
    # recorded as its caller decided.
    sampling_ratio: Annotated[
        float, msgspec.Meta(ge=0, le=1, description="a ratio from 0 to 1")
    ] = 1.0
    # The service.name of the spans; empty: the program's (mam-gateway, mam-worker).
    service_name: str = ""

    def __post_init__(self) -> None:
        if not self.enabled:
            return
        if self.otlp_ca_file is not None and not self.otlp_ca_file.is_file():
            raise ValueError(f"otlp_ca_file: no such file: {self.otlp_ca_file}")
        host = self.otlp_endpoint.rsplit(":", 1)[0].strip("[]")
        if not self.otlp_tls and not self.otlp_plaintext_off_loopback and not _is_loopback(host):
            raise ValueError(
                f"otlp_endpoint: {host} is not a loopback address: set otlp_tls = true, or "
                "otlp_plaintext_off_loopback = true for a collector on a private network"
            )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """PEM files; with client_ca_file every client must present a certificate it signed."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class _ServerKeys:
    """[server] as both the file and the gateway have it."""

    listen: HostPort = "127.0.0.1:50051"
    grace_seconds: float = 5.0
    # The largest message either way (responses: a page of 50 FULL master orders of
    # 1,000-account groups is ~6 MB).
    max_message_bytes: PositiveInt = 16 * 1024 * 1024
    # The largest request message (at most max_message_bytes): what one call can make the
    # gateway receive and parse. The largest legitimate one, a 1,000-member CreateGroup with every
    # member setting, is ~0.3 MB (docs/access-control.md, "Limits").
    max_request_bytes: PositiveInt = 4 * 1024 * 1024
    # The most items one repeated field of a request may hold (a group's members, a fill
    # filter's accounts, a key's groups); more is INVALID_ARGUMENT (TOO_MANY_ITEMS).
    max_repeated_items: PositiveInt = 5_000
    heartbeat_seconds: PositiveFloat = 5.0
    # Plaintext on a non-loopback address: only behind a TLS-terminating proxy or mesh.
    plaintext_off_loopback: bool = False
    # A plaintext, health-only endpoint for probes (container healthchecks) on loopback; off
    # when empty.
    health_listen: OptionalHostPort = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig(_ServerKeys):
    # From server.tls_cert_file, tls_key_file and tls_client_ca_file, read and checked at load.
    tls: TlsConfig | None = None

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerFile(_ServerKeys):
    # A PEM certificate chain (the server's first) and its unencrypted PEM key; with the client
    # CA, mutual TLS. None: plaintext.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """API keys (`authorization: Bearer <key>`) and what each key may spend."""

    # Off: every caller is an admin. Only allowed when the gateway listens on loopback.
    required: bool = True
    # When no admin key exists at start, one is created and written here (mode 0600); None:
    # never (create the first with `mam-gateway keys create --role admin`).
    bootstrap_admin_key_file: Path | None = None
    # Calls (and stream messages) per second per key, and the burst above that rate.
    rate_per_second: PositiveFloat = 200.0
    burst: PositiveInt = 400
    # Streaming calls open at once per key.
    max_streams_per_key: PositiveInt = 32
    # How often the keys of open streams are read again: a key revoked straight in the
    # database (`mam-gateway keys revoke`) ends its streams within this time.
    stream_recheck_seconds: PositiveFloat = 5.0
    # Failed authentications (an unknown key id, a wrong secret) one connection may make in a
    # row, then one more every connection_failure_refill_seconds; and one address over all its
    # connections. Beyond them: AUTHENTICATION_THROTTLED, keys already verified still pass.
    failures_per_connection: PositiveInt = 5
    connection_failure_refill_seconds: PositiveFloat = 2.0
    failures_per_address: PositiveInt = 40
    address_failure_refill_seconds: PositiveFloat = 0.2
    # scrypt verifications of keys not verified before, per second for the whole gateway, and
    # the burst above that rate (each costs 30-60 ms of a core).
    verifications_per_second: PositiveFloat = 8.0
    verification_burst: PositiveInt = 32


@dataclass(frozen=True, slots=True)
class Mt4BridgeConfig:
    """The endpoint MT4 terminals' Expert Advisors connect out to (docs/mt4-bridge.md)."""

    # Empty: the bridge is off.
    listen: OptionalHostPort = ""
    # Lines "LOGIN TOKEN" (16+ characters); MAM_MT4_TOKEN_<login> in the environment wins.
    # Never in the TOML.
    tokens_file: Path | None = None
    heartbeat_seconds: PositiveFloat = 5.0
    timeout_seconds: PositiveFloat = 20.0
    # Silence allowed while a trade is outstanding (the EA is blocked in OrderSend).
    trade_timeout_seconds: PositiveFloat = 90.0
    # The longest wait for a trade's answer; beyond it the outcome counts as unknown.
    request_timeout_seconds: PositiveFloat = 60.0
    max_frame_bytes: PositiveInt = 1 << 20
    # The EA speaks plain TCP (MT4 has no TLS sockets): off loopback only on a private network
    # or a tunnel, acknowledged here.
    plaintext_off_loopback: bool = False
    # Before its hello is accepted a connection may take this long to say it, its first frame
    # may hold this many bytes (a hello is a few hundred), and this many may wait at once.
    hello_timeout_seconds: PositiveFloat = 10.0
    hello_max_frame_bytes: PositiveInt = 4096
    max_pending_connections: PositiveInt = 128
    # Failed hellos one address may make in a row, then one more every
    # hello_failure_refill_seconds; meanwhile its hellos are refused unchecked.
    hello_failures_per_address: PositiveInt = 10
    hello_failure_refill_seconds: PositiveFloat = 6.0

    def __post_init__(self) -> None:
        if not MIN_HELLO_FRAME_BYTES <= self.hello_max_frame_bytes <= self.max_frame_bytes:
            raise ValueError(
                f"hello_max_frame_bytes: must be from {MIN_HELLO_FRAME_BYTES} (a hello with long "
                "names and a long token) to mt4_bridge.max_frame_bytes "
                f"({self.max_frame_bytes}), got {self.hello_max_frame_bytes}"
            )


@dataclass(frozen=True, slots=True)
class Mt5Config:
    """MT5 terminals on this host, one per account (docs/terminals-mt5.md): each runs in its own
    worker process through the MetaTrader5 package (Windows), mt5linux, or the emulator."""

    by_login: Mapping[int, Mt5Settings] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Mt5File:
    # One table per terminal: `login`, `server` and the keys of Mt5Settings.from_table.
    terminals: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class DatabaseFile:
    url: DatabaseUrl = "sqlite+aiosqlite:///var/mam-gateway.db"
    # PostgreSQL: a file holding the password, put into the URL (relative to the file's
    # directory). None: no password, or one in url or ~/.pgpass.
    password_file: Path | None = None


@dataclass(frozen=True, slots=True)
class EngineConfig:
    max_concurrency: PositiveInt = 1_000
    request_timeout_seconds: PositiveFloat = 10.0
    max_attempts: PositiveInt = 4
    default_deviation_points: PositiveInt = 20
    max_master_volume: Decimal = Decimal(10_000)
    # How often every terminal's money, deals and positions are stored as account history;
    # 0: never.
    history_interval_seconds: Annotated[float, msgspec.Meta(ge=0, extra={"note": "0: off"})] = 60.0
    # How often resting pending orders are checked at their brokers (fills, expiry).
    pending_check_interval_seconds: PositiveFloat = 0.5
    # How often a child whose outcome is UNKNOWN is searched for (and settled) again.
    unknown_retry_seconds: PositiveFloat = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class _SimulatorKeys:
    """[simulator] as both the file and the gateway have it."""

    seed: int = 1
    tick_interval_ms: PositiveInt = 250
    # The fixed latency; the mean of a normal, the median of a lognormal distribution.
    latency_ms: NonNegativeInt = 0
    latency_distribution: Annotated[
        LatencyDistribution, msgspec.Meta(description="fixed, normal or lognormal")
    ] = LatencyDistribution.FIXED
    latency_sd_ms: NonNegativeFloat = 0.0
    latency_sigma: NonNegativeFloat = 0.0
    # The simulated broker's books in a SQLite file; None: in memory, lost at exit.
    state_path: Path | None = None
    faults: FaultSettings = field(default_factory=FaultSettings)


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatorConfig(_SimulatorKeys):
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
class SymbolRulesFile:
    """[simulator.symbols.NAME]: what a symbol not always open to everything allows."""

    trade_mode: TradeModeName = SymbolRules().trade_mode.name
    # Per weekday in UTC, e.g. "Mon-Fri 13:30-20:00"; None: always open.
    sessions: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatorFile(_SimulatorKeys):
    # By the name of a [[symbols]] entry (any case: environment keys arrive lowercased).
    symbols: dict[str, SymbolRulesFile] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SimulatedSymbol:
    spec: SymbolSpec
    initial_price: Decimal
    spread_points: int
    step_points: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SymbolFile(SymbolSpec):
    """A [[symbols]] entry: a symbol as a retail MT5 broker specifies it (SymbolSpec, whose
    fields and defaults are its keys) and how the simulator quotes it."""

    initial_price: Decimal
    spread_points: PositiveInt = 10
    step_points: PositiveInt = 5


@dataclass(frozen=True, slots=True)
class DemoAccount:
    name: str
    login: int
    initial_balance: Decimal
    leverage: PositiveInt = 100

    def __post_init__(self) -> None:
        if self.initial_balance <= 0:
            raise ValueError("initial_balance: must be greater than 0")


@dataclass(frozen=True, slots=True)
class DemoConfig:
    group: str = "demo"
    accounts: tuple[DemoAccount, ...] = ()
    # [demo.source]: a simulated account, not a member, made the group's source (mirroring);
    # None: none.
    source: DemoAccount | None = None
    # A seeded strategy trading on the source's terminal (gateway/demo_strategy.py), one step
    # every strategy_interval_seconds: the group mirrors it.
    strategy: bool = False
    strategy_interval_seconds: PositiveFloat = 3.0
    strategy_seed: int = 1


@dataclass(frozen=True, slots=True)
class SourcesConfig:
    """[sources]: mirroring, each group's source account looked at (docs/mirroring.md)."""

    # How often a source's positions and pending orders are read: how late a change is copied
    # at most, and how short a trade may be and still be seen.
    look_interval_seconds: PositiveFloat = 0.5
    # How long one look may take before it is given up (and taken again at the next interval).
    look_timeout_seconds: PositiveFloat = 5.0


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """[cluster]: several gateway processes on one PostgreSQL database, each group owned by
    one of them at a time through a lease (docs/cluster.md). Off: one process owns the
    database (its writer lock), as the embedded default does."""

    enabled: bool = False
    # This process's name among the cluster's; empty: host:pid. Unique among running ones.
    node_name: str = ""
    # The address callers and other nodes reach this process's API at (shown in the cluster
    # status and in a refusal naming a group's owner); empty: the port bound, on
    # server.listen's host (this host's name when it listens on every address).
    advertise_address: str = ""
    # A lease not renewed for this long is taken over by another process (its holder's
    # database session ended, or the holder is stopped or cut off): the takeover time.
    lease_seconds: PositiveFloat = 10.0
    # How often leases are renewed and unowned groups looked for.
    renew_interval_seconds: PositiveFloat = 2.0

    def __post_init__(self) -> None:
        if self.renew_interval_seconds * 2 > self.lease_seconds:
            raise ValueError(
                "renew_interval_seconds: at most half of lease_seconds, so that one late "
                "renewal does not lose a lease"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class StatementsConfig(Letterhead):
    """[statements]: who issues the account statements (docs/reporting.md, "Statements"): the
    firm's letterhead and the manager printed at the head of every statement, and the
    disclaimer at its end (Letterhead, whose fields are its keys)."""


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


_WORKER_PLATFORMS = '"MT4" and/or "MT5"'


@dataclass(frozen=True, slots=True, kw_only=True)
class _WorkersKeys:
    """[workers] as both the file and the gateway have it: remote terminal workers
    (docs/workers.md), hosts near the broker running the terminals."""

    enabled: bool = False
    # Accounts of these platforms are traded through the worker hosting their login.
    platforms: Annotated[
        tuple[Platform, ...], msgspec.Meta(min_length=1, description=_WORKER_PLATFORMS)
    ] = (Platform.MT4, Platform.MT5)
    # Worker tokens, one entry a line; read again whenever it changes: a token removed from it
    # is refused from then on.
    tokens_file: Path | None = None
    # Workers heartbeat this often when idle; one silent for three intervals is dropped.
    heartbeat_seconds: PositiveFloat = 5.0
    # How long a call for a dropped worker's account waits for the worker to come back.
    reconnect_grace_seconds: NonNegativeFloat = 10.0

    def __post_init__(self) -> None:
        if Platform.SIMULATED in self.platforms:
            names = [platform.value for platform in self.platforms]
            raise ValueError(f"platforms: expected {_WORKER_PLATFORMS}, got {names!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkersConfig(_WorkersKeys):
    # From workers.tokens_file and the environment variable workers.tokens_env, never the TOML.
    tokens: tuple[WorkerToken, ...] = field(default=(), repr=False)

    def hosts(self, platform: Platform) -> bool:
        return self.enabled and platform in self.platforms


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkersFile(_WorkersKeys):
    # The environment variable holding more tokens, comma-separated; empty: none.
    tokens_env: str = "MAM_WORKER_TOKENS"


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Prometheus metrics on an HTTP endpoint of their own (docs/operations.md)."""

    enabled: bool = True
    # GET /metrics here; port 0 picks a free one (logged, and printed at start).
    listen: HostPort = "127.0.0.1:9464"
    # Metrics are plain HTTP without authentication: off loopback only on a private network
    # (a pod's, a scrape network), acknowledged here.
    plaintext_off_loopback: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    server: ServerConfig
    auth: AuthConfig
    mt4_bridge: Mt4BridgeConfig
    mt5: Mt5Config
    database_url: str
    engine: EngineConfig
    simulator: SimulatorConfig
    symbols: tuple[SimulatedSymbol, ...]
    demo: DemoConfig | None
    log_level: str
    workers: WorkersConfig
    log_format: LogFormat = "human"
    tracing: TracingConfig = field(default_factory=TracingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    statements: StatementsConfig = field(default_factory=StatementsConfig)

    @property
    def symbol_specs(self) -> dict[str, SymbolSpec]:
        return {s.spec.name: s.spec for s in self.symbols}


@dataclass(frozen=True, slots=True)
class GatewayFile:
    """The whole file: each field a top-level key or section."""

    log_level: LogLevel = "INFO"
    log_format: LogFormat = "human"
    server: ServerFile = field(default_factory=ServerFile)
    auth: AuthConfig = field(default_factory=AuthConfig)
    database: DatabaseFile = field(default_factory=DatabaseFile)
    engine: EngineConfig = field(default_factory=EngineConfig)
    simulator: SimulatorFile = field(default_factory=SimulatorFile)
    mt4_bridge: Mt4BridgeConfig = field(default_factory=Mt4BridgeConfig)
    mt5: Mt5File = field(default_factory=Mt5File)
    workers: WorkersFile = field(default_factory=WorkersFile)
    tracing: TracingConfig = field(default_factory=TracingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    statements: StatementsConfig = field(default_factory=StatementsConfig)
    # At least one; the simulator's symbols, and the specs of every terminal's.
    symbols: tuple[SymbolFile, ...] = ()
    # Accounts and a group created at the first start (the demo); None: none.
    demo: DemoConfig | None = None
