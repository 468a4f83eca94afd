"""The terminal backends a worker can host, by the name its configuration uses.

A backend is loaded once per worker from its `[backends.<name>]` table, then opens one Terminal
per `[[terminals]]` entry naming it (the entry's extra keys are the backend's options for that
terminal). Adding a backend is one entry in BACKENDS: a function taking the table and the
configuration's directory and returning an object with `open(entry) -> Terminal` and `close()`.
Import the backend's package inside that function, so that a worker without it (the MT5 package
is Windows-only) still starts with the other backends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.domain.accounts import MarginMode
from gateway.domain.decimals import parse_decimal
from gateway.terminals.protocol import Terminal
from gateway.terminals.remote.worker_hub import BrokerLogin
from gateway.terminals.sim import SimBroker, SimSymbol, SimTerminal
from gateway.terminals.sim.quotes import QuoteSettings
from gateway.worker.config import TerminalEntry, WorkerConfig, WorkerConfigError


class TerminalBackend(Protocol):
    def open(self, entry: TerminalEntry) -> Terminal:
        """The entry's terminal, connected; WorkerConfigError for bad options."""
        ...

    def close(self) -> None: ...


BackendLoader = Callable[[Mapping[str, Any], Path], TerminalBackend]


class SimBackend:
    """Simulated terminals on one simulated broker per worker, for demos and tests.

    Settings: `config`, a gateway-format TOML file whose [simulator] and [[symbols]] describe the
    broker (e.g. deploy/config/demo.toml), and optionally `state_path`, the broker's books file
    (kept across worker restarts, like a real broker's). Options per terminal: `balance`
    (required, a decimal string), `leverage` (100), `currency` ("USD"), `margin_mode`
    ("HEDGING" or "NETTING").
    """

    _OPTIONS = frozenset({"balance", "leverage", "currency", "margin_mode"})

    def __init__(self, config: GatewayConfig) -> None:
        self._config = config
        simulator = config.simulator
        self.broker = SimBroker(
            [
                SimSymbol(
                    spec=s.spec,
                    quotes=QuoteSettings(
                        initial_mid=s.initial_price,
                        spread_points=s.spread_points,
                        step_points=s.step_points,
                        digits=s.spec.digits,
                    ),
                    rules=simulator.rules_for(s.spec.name),
                )
                for s in config.symbols
            ],
            seed=simulator.seed,
            tick_interval_ms=simulator.tick_interval_ms,
            state_path=simulator.state_path,
        )
        self._opened: set[int] = set()

    def open(self, entry: TerminalEntry) -> Terminal:
        where = f"terminals {entry.login}"
        unknown = sorted(set(entry.options) - self._OPTIONS)
        if unknown:
            raise WorkerConfigError(f"{where}: {unknown[0]}: not an option of the sim backend")
        if entry.login.login in self._opened:
            raise WorkerConfigError(f"{where}: login opened twice on one simulated broker")
        balance = _decimal_option(entry.options, "balance", where)
        leverage = entry.options.get("leverage", 100)
        if not isinstance(leverage, int) or not 1 <= leverage <= 5000:
            raise WorkerConfigError(f"{where}: leverage: expected an integer from 1 to 5000")
        mode = entry.options.get("margin_mode", "HEDGING")
        if mode not in ("HEDGING", "NETTING"):
            raise WorkerConfigError(f'{where}: margin_mode: expected "HEDGING" or "NETTING"')
        # An account already in the books file keeps its books (a restart).
        self.broker.open_account(
            entry.login.login,
            balance=balance,
            leverage=leverage,
            currency=str(entry.options.get("currency", "USD")),
            margin_mode=MarginMode[mode],
        )
        self._opened.add(entry.login.login)
        simulator = self._config.simulator
        return SimTerminal(
            str(entry.login),
            entry.login.login,
            self.broker,
            latency=simulator.latency,
            faults=simulator.faults,
            seed=simulator.seed,
        )

    def close(self) -> None:
        self.broker.close()


def _decimal_option(options: Mapping[str, Any], key: str, where: str) -> Decimal:
    value = options.get(key)
    if not isinstance(value, str):
        raise WorkerConfigError(f'{where}: {key}: required, as a decimal string like "10000"')
    try:
        number = parse_decimal(value)
    except ValueError:
        raise WorkerConfigError(f"{where}: {key}: not a decimal: {value!r}") from None
    if number <= 0:
        raise WorkerConfigError(f"{where}: {key}: must be greater than 0")
    return number


def load_sim_backend(settings: Mapping[str, Any], base_dir: Path) -> TerminalBackend:
    unknown = sorted(set(settings) - {"config", "state_path"})
    if unknown:
        raise WorkerConfigError(f"backends.sim.{unknown[0]}: unknown key")
    config_file = settings.get("config")
    if not isinstance(config_file, str) or not config_file:
        raise WorkerConfigError("backends.sim.config: required (a gateway-format TOML file)")
    environ = {}
    state_path = settings.get("state_path", "")
    if not isinstance(state_path, str):
        raise WorkerConfigError("backends.sim.state_path: expected a string")
    if state_path:
        environ["MAM__SIMULATOR__STATE_PATH"] = str(base_dir / state_path)
    try:
        config = load_config(base_dir / config_file, environ=environ)
    except ConfigError as error:
        raise WorkerConfigError(f"backends.sim.config: {error}") from None
    return SimBackend(config)


class Mt5Backend:
    """MT5 terminals through the MetaTrader5 package (or mt5linux), one worker process per
    terminal (docs/terminals-mt5.md). Options per terminal: the keys of an [[mt5.terminals]]
    table of the gateway (terminal_path, portable, password_env or password_file, ...)."""

    def __init__(self, base_dir: Path) -> None:
        self._base_dir = base_dir

    def open(self, entry: TerminalEntry) -> Terminal:
        from gateway.terminals.mt5 import Mt5Settings, Mt5Terminal  # noqa: PLC0415

        try:
            settings = Mt5Settings.from_table(
                entry.options,
                login=entry.login.login,
                server=entry.login.server,
                base_dir=self._base_dir,
            )
        except ValueError as error:
            raise WorkerConfigError(f"terminals {entry.login}: {error}") from None
        return Mt5Terminal.in_worker_process(str(entry.login), settings)

    def close(self) -> None:
        """Each terminal's worker process stops with its terminal's close()."""


def load_mt5_backend(settings: Mapping[str, Any], base_dir: Path) -> TerminalBackend:
    if settings:
        raise WorkerConfigError(f"backends.mt5.{sorted(settings)[0]}: unknown key")
    return Mt5Backend(base_dir)


BACKENDS: dict[str, BackendLoader] = {
    "sim": load_sim_backend,
    "mt5": load_mt5_backend,
}


def open_terminals(
    config: WorkerConfig, backends: Mapping[str, BackendLoader] = BACKENDS
) -> tuple[list[TerminalBackend], dict[BrokerLogin, Terminal]]:
    """Loads the backends the terminals name and opens every terminal; on a failure, closes
    what was loaded and raises WorkerConfigError."""
    loaded: dict[str, TerminalBackend] = {}
    terminals: dict[BrokerLogin, Terminal] = {}
    try:
        for entry in config.terminals:
            backend = loaded.get(entry.backend)
            if backend is None:
                loader = backends.get(entry.backend)
                if loader is None:
                    known = ", ".join(sorted(backends))
                    raise WorkerConfigError(
                        f"terminals {entry.login}: backend {entry.backend!r} is not one of {known}"
                    )
                settings = config.backends.get(entry.backend, {})
                backend = loaded[entry.backend] = loader(settings, config.base_dir)
            terminals[entry.login] = backend.open(entry)
    except BaseException:
        for backend in loaded.values():
            backend.close()
        raise
    return list(loaded.values()), terminals
