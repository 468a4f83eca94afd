"""What an emulated terminal is connected to, as plain picklable data: a worker process builds its
own simulated broker from it (with a state file, a restarted worker finds the same books)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from gateway.domain.accounts import MarginMode
from gateway.terminals.sim.faults import FaultSettings
from gateway.terminals.sim.latency import LatencySettings
from gateway.terminals.sim.symbol import SimSymbol

DEFAULT_SERVER = "MAM-Simulated"
DEFAULT_COMPANY = "MAM Simulated Broker"


@dataclass(frozen=True, slots=True)
class EmulatorAccount:
    """The account the emulated terminal is logged in to (opened at the broker if new)."""

    login: int
    balance: Decimal
    password: str = field(default="", repr=False)
    server: str = DEFAULT_SERVER
    leverage: int = 100
    currency: str = "USD"
    margin_mode: MarginMode = MarginMode.HEDGING
    # The account holder's name (AccountInfo.name).
    name: str = ""


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    symbols: tuple[SimSymbol, ...]
    account: EmulatorAccount
    seed: int = 1
    tick_interval_ms: int = 250
    # The broker's books in a SQLite file (see sim/state_file.py); None: in memory.
    state_path: Path | None = None
    latency: LatencySettings = field(default_factory=LatencySettings)
    faults: FaultSettings = field(default_factory=FaultSettings)
    # The trade server's clock runs this far ahead of UTC (MT5 times are server times).
    server_utc_offset: timedelta = timedelta(0)
    # initialize(path) must name this terminal64.exe when set; None accepts any path.
    terminal_path: str | None = None
    company: str = DEFAULT_COMPANY
    # Symbols in Market Watch from the start (others need symbol_select first).
    selected: tuple[str, ...] = ()
