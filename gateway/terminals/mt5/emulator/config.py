"""What an emulated terminal is connected to, as plain picklable data: a worker process builds its
own simulated broker from it (with a state file, a restarted worker finds the same books)."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway.domain.accounts import MarginMode
from gateway.terminals.mt5 import constants as mt5
from gateway.terminals.sim.faults import FaultSettings
from gateway.terminals.sim.latency import LatencySettings
from gateway.terminals.sim.symbol import SimSymbol

DEFAULT_SERVER = "MAM-Simulated"
DEFAULT_COMPANY = "MAM Simulated Broker"


# SymbolInfo bitmasks (MQL5's SYMBOL_FILLING_*, SYMBOL_EXPIRATION_*, SYMBOL_ORDER_* flags).
FILLING_FOK = 1
FILLING_IOC = 2
EXPIRATION_GTC, EXPIRATION_DAY, EXPIRATION_SPECIFIED, EXPIRATION_SPECIFIED_DAY = 1, 2, 4, 8
ORDER_MARKET, ORDER_LIMIT, ORDER_STOP, ORDER_STOP_LIMIT = 1, 2, 4, 8
ORDER_SL, ORDER_TP, ORDER_CLOSE_BY = 16, 32, 64


@dataclass(frozen=True, slots=True)
class SymbolTradeModes:
    """How the trade server executes a symbol's orders, as its SymbolInfo advertises them (and
    the server enforces them with TerminalBehaviour.enforces_symbol_modes)."""

    # SYMBOL_TRADE_EXECUTION_*.
    execution_mode: int = mt5.SYMBOL_TRADE_EXECUTION_MARKET
    # FILLING_* flags: the fillings other than RETURN a market order may ask for.
    filling_mode: int = FILLING_FOK | FILLING_IOC
    # EXPIRATION_* flags: the type_time values a pending order may take.
    expiration_mode: int = (
        EXPIRATION_GTC | EXPIRATION_DAY | EXPIRATION_SPECIFIED | EXPIRATION_SPECIFIED_DAY
    )
    # ORDER_* flags: the order types, stops and close-by allowed.
    order_mode: int = (
        ORDER_MARKET | ORDER_LIMIT | ORDER_STOP | ORDER_STOP_LIMIT | ORDER_SL | ORDER_TP
    ) | ORDER_CLOSE_BY


class EmptyAnswer(enum.Enum):
    """What positions_get, orders_get and history_*_get answer when nothing matches."""

    # An empty tuple (the documented answer).
    TUPLE = "tuple"
    # None, last_error() (1, 'Success'): seen from terminal builds.
    NONE_WITH_SUCCESS = "none-with-success"
    # None, last_error() (-4, 'Terminal: Not found'): seen from terminal builds.
    NONE_NOT_FOUND = "none-not-found"


@dataclass(frozen=True, slots=True)
class TerminalBehaviour:
    """Where a real terminal and trade server answer otherwise than the emulator's plain
    defaults, each switched on here (the defaults keep the plain behaviour). Each one let a
    defect of the adapter pass while it was missing."""

    # order_send refuses what the symbol's SymbolTradeModes do not allow: a filling
    # (TRADE_RETCODE_INVALID_FILL), a type_time (INVALID_EXPIRATION), an order type, stops or
    # close-by (INVALID_ORDER / INVALID_STOPS). Off: anything the simulated broker can do.
    enforces_symbol_modes: bool = False
    # Symbols whose trade modes differ from SymbolTradeModes(), by name.
    symbol_modes: tuple[tuple[str, SymbolTradeModes], ...] = ()
    # A market order's answer names its deal and price (order_send documents deal "if a deal
    # has been performed"). False: DONE with deal 0 and price 0, as some bridged servers answer.
    deal_in_answer: bool = True
    # Market orders execute asynchronously, as on an exchange: order_send answers PLACED with
    # no deal; the order stays working (orders_get) until its deal appears in the history.
    asynchronous_execution: bool = False
    # How long after order_send answered a market order's deal (and its history order) shows in
    # history_deals_get / history_orders_get, in wall-clock milliseconds (0: at once).
    history_delay_ms: int = 0
    # history_deals_get / history_orders_get take date_from and date_to positionally only (the
    # C extension's signature): as keywords they are invalid params.
    positional_history_dates: bool = False
    # What a records query answers when nothing matches.
    empty_answer: EmptyAnswer = EmptyAnswer.TUPLE
    # symbol_info of a symbol outside Market Watch has no tick value and no prices yet (0).
    unselected_symbols_lack_data: bool = False
    # The last_error() code of symbol_info / symbol_select for a symbol the terminal does not
    # know (some builds answer the generic RES_E_FAIL, "Call failed").
    unknown_symbol_code: int = mt5.RES_E_NOT_FOUND
    # The package cuts a comment longer than 31 characters instead of refusing the request.
    truncates_long_comments: bool = False
    # The trade server keeps only this many characters of an order's comment (None: all).
    server_comment_length: int | None = None
    # The trade server replaces every order's and deal's comment with this text (None: keeps).
    server_comment: str | None = None
    # positions_get / orders_get with a symbol ignore a ticket given with it, as documented.
    # Off: the ticket wins.
    symbol_filter_ignores_ticket: bool = False
    # Group masks are applied in their order, each inclusion adding and each exclusion ("!")
    # removing symbols, as documented ("*,!EUR*" is all but EUR*; "!EUR*,*" is all). Off: an
    # exclusion wins wherever it stands.
    group_masks_in_order: bool = False

    def modes_of(self, symbol: str) -> SymbolTradeModes:
        return dict(self.symbol_modes).get(symbol, _PLAIN_MODES)

    @classmethod
    def like_a_real_terminal(cls, **changes: Any) -> TerminalBehaviour:
        """Every documented or widely seen behaviour of a real terminal that keeps a terminal
        usable by the contract suite: modes enforced, deals late and not in the answer, dates
        positional, "none" as None with -4, data only after symbol_select, filters as
        documented. Comment rewriting and asynchronous execution are switched on per test."""
        real = cls(
            enforces_symbol_modes=True,
            deal_in_answer=False,
            history_delay_ms=20,
            positional_history_dates=True,
            empty_answer=EmptyAnswer.NONE_NOT_FOUND,
            unselected_symbols_lack_data=True,
            symbol_filter_ignores_ticket=True,
            group_masks_in_order=True,
        )
        return dataclasses.replace(real, **changes)


_PLAIN_MODES = SymbolTradeModes()


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
    # Where the terminal answers as a real one does rather than plainly.
    behaviour: TerminalBehaviour = field(default_factory=TerminalBehaviour)
