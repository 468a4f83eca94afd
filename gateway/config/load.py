"""Reading the configuration: the TOML file, the environment's MAM__SECTION__KEY overrides laid
over it, the tables read into their models (gateway/config/models.py), then what spans keys and
files: loopback-only plaintext, the TLS files and the token files read as they will be used, a
database password from its file."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from gateway.config.models import (
    ConfigError,
    GatewayConfig,
    GatewayFile,
    MetricsConfig,
    Mt4BridgeConfig,
    Mt5Config,
    Mt5File,
    ServerConfig,
    ServerFile,
    SimulatedSymbol,
    SimulatorConfig,
    SimulatorFile,
    SymbolFile,
    TlsConfig,
    WorkersConfig,
    WorkersFile,
    WorkerToken,
    _ServerKeys,
    _SimulatorKeys,
    _WorkersKeys,
)
from gateway.config.tables import TableError, read_table
from gateway.config.worker_tokens import (
    check_worker_tokens,
    parse_worker_token,
    read_worker_tokens_file,
)
from gateway.config_overrides import OverrideError, apply_environment
from gateway.domain.accounts import Platform
from gateway.domain.symbols import SymbolSpec
from gateway.terminals.mt5.settings import Mt5Settings
from gateway.terminals.sim.sessions import ALWAYS_OPEN, TradingSessions
from gateway.terminals.sim.symbol import SymbolRules, SymbolTradeMode
from gateway.tls_files import TlsFileError, read_server_tls


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    environ = os.environ if environ is None else environ
    try:
        apply_environment(data, environ)
    except OverrideError as error:
        raise ConfigError(str(error)) from None
    try:
        return _config(read_table(GatewayFile, data), environ, base_dir=path.parent)
    except (ConfigError, TableError) as error:
        raise ConfigError(f"{path}: {error}") from None


def _config(file: GatewayFile, environ: Mapping[str, str], *, base_dir: Path) -> GatewayConfig:
    server = _server(file.server)
    if not file.auth.required and not _is_loopback(server.host):
        raise ConfigError(
            f"auth.required: false is only allowed on loopback; server.listen is {server.host}"
        )
    url = file.database.url
    if file.database.password_file is not None:
        # Relative to the configuration file, as an [[mt5.terminals]] password_file is.
        url = _with_password(url, base_dir / file.database.password_file)
    symbols = _symbols(file.symbols)
    workers = _workers(file.workers, environ)
    if workers.hosts(Platform.MT4) and file.mt4_bridge.listen:
        # Nothing says which of the two would trade an MT4 account.
        raise ConfigError(
            "workers.platforms: MT4 accounts go either to workers or to the MT4 bridge; set "
            'workers.platforms = ["MT5"] or leave mt4_bridge.listen empty'
        )
    if file.cluster.enabled and not url.startswith("postgresql"):
        raise ConfigError(
            "cluster.enabled: cluster mode needs PostgreSQL (database.url postgresql+asyncpg://"
            "...); the embedded SQLite database serves one process"
        )
    return GatewayConfig(
        server=server,
        auth=file.auth,
        mt4_bridge=_mt4_bridge(file.mt4_bridge),
        mt5=_mt5(file.mt5, environ, base_dir),
        database_url=url,
        engine=file.engine,
        simulator=_simulator(file.simulator, [s.spec.name for s in symbols]),
        symbols=symbols,
        demo=file.demo,
        log_level=file.log_level.upper(),
        workers=workers,
        log_format=file.log_format,
        tracing=file.tracing,
        metrics=_metrics(file.metrics),
        sources=file.sources,
        cluster=file.cluster,
        statements=file.statements,
    )


def _shared(section: Any, keys: type) -> dict[str, Any]:
    """The values of `section` that its gateway form has as they are (the fields of `keys`)."""
    return {f.name: getattr(section, f.name) for f in dataclasses.fields(keys)}


def _server(file: ServerFile) -> ServerConfig:
    server = ServerConfig(**_shared(file, _ServerKeys), tls=_tls(file))
    if server.health_listen and not _is_loopback(_host(server.health_listen)):
        raise ConfigError("server.health_listen: must be a loopback address")
    if server.tls is None and not server.plaintext_off_loopback and not _is_loopback(server.host):
        raise ConfigError(
            f"server.listen: {server.host} is not a loopback address: configure TLS "
            "(server.tls_cert_file and server.tls_key_file), or set "
            "server.plaintext_off_loopback = true when a TLS-terminating proxy is in front"
        )
    return server


def _metrics(metrics: MetricsConfig) -> MetricsConfig:
    host = _host(metrics.listen)
    if metrics.enabled and not _is_loopback(host) and not metrics.plaintext_off_loopback:
        raise ConfigError(
            f"metrics.listen: {host} is not a loopback address and metrics are plain HTTP "
            "without authentication; serve them on a private network only and set "
            "metrics.plaintext_off_loopback = true"
        )
    return metrics


def _tls(server: ServerFile) -> TlsConfig | None:
    cert, key, client_ca = server.tls_cert_file, server.tls_key_file, server.tls_client_ca_file
    if cert is None and key is None and client_ca is None:
        return None
    if cert is None or key is None:
        raise ConfigError("server.tls_cert_file and server.tls_key_file: both are required for TLS")
    for name, value in (
        ("tls_cert_file", cert),
        ("tls_key_file", key),
        ("tls_client_ca_file", client_ca),
    ):
        if value is not None and not value.is_file():
            raise ConfigError(f"server.{name}: no such file: {value}")
    tls = TlsConfig(cert, key, client_ca)
    # Read as gRPC will read them: a junk or expired certificate, or another certificate's key,
    # is refused here, before the gateway writes anything, rather than as "Failed to bind".
    try:
        read_server_tls(tls.cert_file, tls.key_file, tls.client_ca_file, now=datetime.now(UTC))
    except TlsFileError as error:
        raise ConfigError(str(error)) from None
    return tls


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


def _mt4_bridge(bridge: Mt4BridgeConfig) -> Mt4BridgeConfig:
    if not bridge.listen:
        return bridge
    host = _host(bridge.listen)
    if not _is_loopback(host) and not bridge.plaintext_off_loopback:
        raise ConfigError(
            f"mt4_bridge.listen: {host} is not a loopback address and the EA protocol is "
            "plain TCP; put the bridge on a private network or tunnel and set "
            "mt4_bridge.plaintext_off_loopback = true"
        )
    if bridge.tokens_file is not None:
        # Read now, as the bridge will at start: a missing or broken file stops the start
        # before anything is written. (Imported here: the bridge is most of the MT4 terminal.)
        from gateway.terminals.mt4.tokens import TokenFileError, parse_tokens  # noqa: PLC0415

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


def _mt5(file: Mt5File, environ: Mapping[str, str], base_dir: Path) -> Mt5Config:
    by_login: dict[int, Mt5Settings] = {}
    for i, entry in enumerate(file.terminals):
        where = f"mt5.terminals[{i}]"
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


def _simulator(file: SimulatorFile, symbol_names: list[str]) -> SimulatorConfig:
    # Rules under the [[symbols]] names they are for; environment keys arrive lowercased.
    by_lower = {name.lower(): name for name in symbol_names}
    rules = []
    for name, entry in sorted(file.symbols.items()):
        key = f"simulator.symbols.{name}"
        if name.lower() not in by_lower:
            raise ConfigError(f"{key}: no [[symbols]] entry of that name")
        try:
            sessions = (
                ALWAYS_OPEN if entry.sessions is None else TradingSessions.parse(entry.sessions)
            )
        except ValueError as error:
            raise ConfigError(f"{key}.sessions: {error}") from None
        trade_mode = SymbolTradeMode[entry.trade_mode]
        rules.append((by_lower[name.lower()], SymbolRules(trade_mode, sessions)))
    return SimulatorConfig(**_shared(file, _SimulatorKeys), symbol_rules=tuple(rules))


def _symbols(entries: tuple[SymbolFile, ...]) -> tuple[SimulatedSymbol, ...]:
    if not entries:
        raise ConfigError("symbols: at least one [[symbols]] entry is required")
    names = [entry.name for entry in entries]
    if len(set(names)) != len(names):
        raise ConfigError("symbols: a symbol is listed twice")
    return tuple(
        SimulatedSymbol(
            spec=SymbolSpec(**_shared(entry, SymbolSpec)),
            initial_price=entry.initial_price,
            spread_points=entry.spread_points,
            step_points=entry.step_points,
        )
        for entry in entries
    )


def _workers(file: WorkersFile, environ: Mapping[str, str]) -> WorkersConfig:
    shared = _shared(file, _WorkersKeys)
    workers = WorkersConfig(**shared | {"platforms": tuple(dict.fromkeys(file.platforms))})
    if not workers.enabled:
        return workers
    tokens: list[WorkerToken] = []
    if file.tokens_file is not None:
        tokens += read_worker_tokens_file(file.tokens_file)
    if file.tokens_env:
        raw = environ.get(file.tokens_env, "")
        tokens += [
            parse_worker_token(f"${file.tokens_env}", item.strip())
            for item in raw.split(",")
            if item.strip()
        ]
    if not tokens:
        raise ConfigError(
            f"workers.enabled: no worker token; put them in workers.tokens_file or in the "
            f"environment variable {file.tokens_env or 'named by workers.tokens_env'}"
        )
    check_worker_tokens(tokens)
    return dataclasses.replace(workers, tokens=tuple(tokens))


def _host(listen: str) -> str:
    return listen.rsplit(":", 1)[0].strip("[]")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
