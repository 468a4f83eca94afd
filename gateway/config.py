"""The gateway's configuration: one TOML file plus environment overrides, validated at start.

An environment variable MAM__<SECTION>__<KEY> overrides `<key>` of `[<section>]`, e.g.
MAM__SERVER__LISTEN=0.0.0.0:50051 or MAM__DATABASE__URL=postgresql+asyncpg://... Values are
parsed as TOML when they can be (numbers, booleans), else taken as strings.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway.domain.decimals import parse_decimal
from gateway.domain.symbols import SymbolSpec

ENV_PREFIX = "MAM__"


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: str = "127.0.0.1:50051"
    grace_seconds: float = 5.0
    max_message_bytes: int = 16 * 1024 * 1024
    heartbeat_seconds: float = 5.0

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")


@dataclass(frozen=True, slots=True)
class EngineConfig:
    max_concurrency: int = 1_000
    request_timeout_seconds: float = 10.0
    max_attempts: int = 4
    default_deviation_points: int = 20
    max_master_volume: Decimal = Decimal(10_000)


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    seed: int = 1
    tick_interval_ms: int = 250
    latency_ms: int = 0


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
class GatewayConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    database_url: str = "sqlite+aiosqlite:///var/mam-gateway.db"
    engine: EngineConfig = field(default_factory=EngineConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    symbols: tuple[SimulatedSymbol, ...] = ()
    demo: DemoConfig | None = None
    log_level: str = "INFO"

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
    _apply_environment(data, os.environ if environ is None else environ)
    try:
        return _parse(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def _apply_environment(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__") if k]
        if not keys:
            continue
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        target = data
        for key in keys[:-1]:
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                raise ConfigError(f"environment {name}: {key} is not a section")
        target[keys[-1]] = value


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


def _parse(data: dict[str, Any]) -> GatewayConfig:
    top = _Section(data, "")
    server_section = top.section("server")
    server = ServerConfig(
        listen=_listen(server_section.get("listen", str, "127.0.0.1:50051")),
        grace_seconds=server_section.get("grace_seconds", float, 5.0),
        max_message_bytes=server_section.positive("max_message_bytes", int, 16 * 1024 * 1024),
        heartbeat_seconds=server_section.positive("heartbeat_seconds", float, 5.0),
    )
    server_section.done()
    _require_loopback(server)

    database = top.section("database")
    url = database.get("url", str, "sqlite+aiosqlite:///var/mam-gateway.db")
    if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise ConfigError(
            "database.url: expected sqlite+aiosqlite:///PATH or postgresql+asyncpg://..."
        )
    database.done()

    engine_section = top.section("engine")
    engine = EngineConfig(
        max_concurrency=engine_section.positive("max_concurrency", int, 1_000),
        request_timeout_seconds=engine_section.positive("request_timeout_seconds", float, 10.0),
        max_attempts=engine_section.positive("max_attempts", int, 4),
        default_deviation_points=engine_section.positive("default_deviation_points", int, 20),
        max_master_volume=engine_section.decimal("max_master_volume", Decimal(10_000)),
    )
    engine_section.done()

    sim = top.section("simulator")
    simulator = SimulatorConfig(
        seed=sim.get("seed", int, 1),
        tick_interval_ms=sim.positive("tick_interval_ms", int, 250),
        latency_ms=sim.get("latency_ms", int, 0),
    )
    if simulator.latency_ms < 0:
        raise ConfigError("simulator.latency_ms: must not be negative")
    sim.done()

    top._read.add("symbols")
    symbols = tuple(_symbol(entry, i) for i, entry in enumerate(data.get("symbols", [])))
    names = [s.spec.name for s in symbols]
    if len(set(names)) != len(names):
        raise ConfigError("symbols: a symbol is listed twice")
    if not symbols:
        raise ConfigError("symbols: at least one [[symbols]] entry is required")

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
    top.done()
    return GatewayConfig(
        server=server,
        database_url=url,
        engine=engine,
        simulator=simulator,
        symbols=symbols,
        demo=demo,
        log_level=log_level,
    )


def _listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"server.listen: expected HOST:PORT, got {value!r}")
    return value


def _require_loopback(server: ServerConfig) -> None:
    # Until TLS is configured, the API is only served where no one else can reach it.
    host = server.host
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(
            f"server.listen: {host} is not a loopback address; plaintext is only served on "
            "loopback in this version"
        )


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
