"""One emulated MetaTrader 5 terminal: the functions of the MetaTrader5 package over a simulated
broker account, answering as the package does.

What it keeps of the package's behaviour:
- every function but last_error() fails before initialize() (and after shutdown()) with
  RES_E_INTERNAL_FAIL_CONNECT; a failure is None (False for the bool functions) and its reason is
  in last_error(); a success sets last_error() to RES_S_OK;
- order_send answers None only for a request the package cannot read; whatever the trade server
  refuses is a result with its retcode;
- named tuples with the package's field names, floats for prices, volumes and money, times in
  seconds and milliseconds of the trade server's clock (server_utc_offset ahead of UTC);
- ticks only for symbols in Market Watch (symbol_select), the strict reading of the documentation;
- calls are serialized, as the package's IPC with its terminal is.

What the package does not have: the `emulator_*` controls (attach to a broker account, add
accounts it may switch to, inject faults, take the terminal or its trade server connection
away, turn Algo Trading or trading through the API off), and a TerminalBehaviour that switches
on where real terminals answer otherwise than plainly (config.py): modes enforced per symbol,
deals missing from the answer or late in the history, asynchronous execution, positional
history dates, None for "none", no data outside Market Watch, comments rewritten or cut,
filters as documented.

Like the package, initialize(login=) and login() switch the terminal to another account it
knows (emulator_add_login): one terminal, one account at a time, whoever asked.

History orders are derived: from the deals (filled orders) and from the pending orders this
terminal saw disappear without a deal (cancelled or expired).
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from os import PathLike
from pathlib import Path
from typing import Any, TypeVar

from gateway.domain import retcodes
from gateway.domain.account_history import DealEntry
from gateway.domain.accounts import MarginMode
from gateway.domain.orders import FillingPolicy, OrderType, Side, TimeInForce
from gateway.domain.symbols import SymbolSpec
from gateway.terminals.mt5 import constants as mt5
from gateway.terminals.mt5.emulator import records, trade_request
from gateway.terminals.mt5.emulator.config import (
    DEFAULT_COMPANY,
    DEFAULT_SERVER,
    EXPIRATION_DAY,
    EXPIRATION_GTC,
    EXPIRATION_SPECIFIED,
    EXPIRATION_SPECIFIED_DAY,
    FILLING_FOK,
    FILLING_IOC,
    ORDER_CLOSE_BY,
    ORDER_LIMIT,
    ORDER_MARKET,
    ORDER_SL,
    ORDER_STOP,
    ORDER_STOP_LIMIT,
    ORDER_TP,
    EmptyAnswer,
    EmulatorConfig,
    SymbolTradeModes,
    TerminalBehaviour,
)
from gateway.terminals.mt5.emulator.trade_request import MalformedRequest, Refusal
from gateway.terminals.protocol import (
    Deal,
    OrderRequest,
    OrderResult,
    PendingOrder,
    Position,
    TradeAction,
)
from gateway.terminals.sim import money
from gateway.terminals.sim.broker import FIRST_TICKET, SimBroker
from gateway.terminals.sim.faults import Fault, FaultInjector, FaultSettings
from gateway.terminals.sim.latency import LatencyModel, LatencySettings
from gateway.terminals.sim.state_file import BrokerStateError
from gateway.terminals.sim.symbol import SimSymbol

# The terminal build and package version the emulator answers version() with.
BUILD = 5200
BUILD_DATE = "01 Aug 2025"
# The opening deposit is reported as a balance deal with this ticket (below the broker's first).
DEPOSIT_TICKET = FIRST_TICKET - 1

ERROR_TEXTS = {
    mt5.RES_S_OK: "Success",
    mt5.RES_E_FAIL: "Terminal: Call failed",
    mt5.RES_E_INVALID_PARAMS: "Terminal: Invalid params",
    mt5.RES_E_NOT_FOUND: "Terminal: Not found",
    mt5.RES_E_AUTH_FAILED: "Terminal: Authorization failed",
    mt5.RES_E_UNSUPPORTED: "Terminal: Unsupported",
    # Wording assumed: no real terminal's text for it was at hand.
    mt5.RES_E_AUTO_TRADING_DISABLED: "Terminal: Automated trading disabled",
    mt5.RES_E_INTERNAL_FAIL: "Internal error",
    mt5.RES_E_INTERNAL_FAIL_SEND: "IPC send failed",
    mt5.RES_E_INTERNAL_FAIL_RECEIVE: "IPC recv failed",
    mt5.RES_E_INTERNAL_FAIL_INIT: "IPC initialize failed, MetaTrader 5 x64 not found",
    mt5.RES_E_INTERNAL_FAIL_CONNECT: "No IPC connection",
    mt5.RES_E_INTERNAL_FAIL_TIMEOUT: "IPC timeout",
}

_MARGIN_MODES = {
    MarginMode.NETTING: mt5.ACCOUNT_MARGIN_MODE_RETAIL_NETTING,
    MarginMode.HEDGING: mt5.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING,
}
_TIME_TYPES = {
    TimeInForce.GTC: mt5.ORDER_TIME_GTC,
    TimeInForce.DAY: mt5.ORDER_TIME_DAY,
    TimeInForce.SPECIFIED: mt5.ORDER_TIME_SPECIFIED,
}
_FILLING_TYPES = {
    FillingPolicy.FOK: mt5.ORDER_FILLING_FOK,
    FillingPolicy.IOC: mt5.ORDER_FILLING_IOC,
    FillingPolicy.RETURN: mt5.ORDER_FILLING_RETURN,
}
_PENDING_TYPES = {
    (Side.BUY, OrderType.LIMIT): mt5.ORDER_TYPE_BUY_LIMIT,
    (Side.SELL, OrderType.LIMIT): mt5.ORDER_TYPE_SELL_LIMIT,
    (Side.BUY, OrderType.STOP): mt5.ORDER_TYPE_BUY_STOP,
    (Side.SELL, OrderType.STOP): mt5.ORDER_TYPE_SELL_STOP,
    (Side.BUY, OrderType.STOP_LIMIT): mt5.ORDER_TYPE_BUY_STOP_LIMIT,
    (Side.SELL, OrderType.STOP_LIMIT): mt5.ORDER_TYPE_SELL_STOP_LIMIT,
    (Side.BUY, OrderType.MARKET): mt5.ORDER_TYPE_BUY,
    (Side.SELL, OrderType.MARKET): mt5.ORDER_TYPE_SELL,
}
_MARKET_TYPES = (mt5.ORDER_TYPE_BUY, mt5.ORDER_TYPE_SELL)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

_T = TypeVar("_T")


class _Failed(Exception):
    """A function answers its failure value; last_error() tells why."""

    def __init__(self, code: int, text: str = "") -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text or ERROR_TEXTS.get(code, "Terminal: Call failed")


@dataclass(frozen=True, slots=True)
class _Hang:
    started: Path | None
    seconds: float
    executes: bool
    # The function whose next call hangs; None: any.
    function: str | None


@dataclass(frozen=True, slots=True)
class _Credentials:
    """An account the terminal can log in to (it remembers its password)."""

    password: str
    account_name: str


@dataclass(slots=True)
class _Attachment:
    broker: SimBroker
    # The account the terminal is logged in to now.
    login: int
    password: str
    server: str
    company: str
    account_name: str
    terminal_path: str | None
    server_utc_offset: timedelta
    attached_at: datetime
    latency: LatencyModel
    faults: FaultInjector
    selected: set[str]
    behaviour: TerminalBehaviour
    # Every account the terminal can log in to, by (login, server).
    known: dict[tuple[int, str], _Credentials] = field(default_factory=dict)
    # Pending orders this terminal has seen, and when each was first missed (history orders).
    seen_orders: dict[int, PendingOrder] = field(default_factory=dict)
    gone_at: dict[int, datetime] = field(default_factory=dict)
    # Orders whose deals (and history order) the history shows only from this monotonic time.
    hidden_until: dict[int, float] = field(default_factory=dict)
    # Market orders executing asynchronously: working (orders_get) until hidden_until.
    executing: dict[int, PendingOrder] = field(default_factory=dict)
    # The filling each market order was sent with (its history order shows it).
    market_fillings: dict[int, FillingPolicy] = field(default_factory=dict)


class MetaTrader5Emulator:
    """The MetaTrader5 package's functions as methods of one terminal; the package's module-level
    functions are the methods of one such object (see __init__.py)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._attachment: _Attachment | None = None
        self._initialized = False
        self._trade_server_connected = True
        self._algo_trading = True
        self._trade_api_disabled = False
        self._expert_trading = True
        self._error: tuple[int, str] = (mt5.RES_S_OK, ERROR_TEXTS[mt5.RES_S_OK])
        self._ipc_errors: deque[int] = deque()
        self._hang: _Hang | None = None
        self._request_id = 0

    # -- emulator controls (not in the MetaTrader5 package) ---------------------------------

    def emulator_attach(
        self,
        broker: SimBroker,
        *,
        login: int,
        password: str = "",
        server: str = DEFAULT_SERVER,
        company: str = DEFAULT_COMPANY,
        account_name: str = "",
        terminal_path: str | None = None,
        server_utc_offset: timedelta = timedelta(0),
        latency: LatencySettings | None = None,
        faults: FaultSettings | None = None,
        seed: int = 1,
        selected: Iterable[str] = (),
        behaviour: TerminalBehaviour | None = None,
    ) -> None:
        """Installs the terminal: logged in (once initialized) to `login` at `broker`, whose
        account must exist. Resets everything else: not initialized, connected, Algo Trading
        and API trading on, no faults pending."""
        if not broker.has_account(login):
            raise ValueError(f"the broker has no account {login}")
        account_name = account_name or f"Account {login}"
        with self._lock:
            self._attachment = _Attachment(
                broker=broker,
                login=login,
                password=password,
                server=server,
                company=company,
                account_name=account_name,
                terminal_path=terminal_path,
                server_utc_offset=server_utc_offset,
                attached_at=broker.feed.now(),
                latency=LatencyModel(latency or LatencySettings(), seed=f"{seed}:{login}:latency"),
                faults=FaultInjector(faults or FaultSettings(), seed=f"{seed}:{login}:faults"),
                selected=set(selected),
                behaviour=behaviour or TerminalBehaviour(),
                known={(login, server): _Credentials(password, account_name)},
            )
            self._initialized = False
            self._trade_server_connected = True
            self._algo_trading = True
            self._trade_api_disabled = False
            self._expert_trading = True
            self._error = (mt5.RES_S_OK, ERROR_TEXTS[mt5.RES_S_OK])
            self._ipc_errors.clear()
            self._hang = None

    def emulator_configure(self, config: EmulatorConfig) -> SimBroker:
        """Builds the broker the configuration describes (its books from the state file, if
        any), opens the account if new, and attaches to it. Returns the broker."""
        broker = SimBroker(
            list(config.symbols),
            seed=config.seed,
            tick_interval_ms=config.tick_interval_ms,
            state_path=config.state_path,
        )
        account = config.account
        broker.open_account(
            account.login,
            balance=account.balance,
            leverage=account.leverage,
            currency=account.currency,
            margin_mode=account.margin_mode,
        )
        self.emulator_attach(
            broker,
            login=account.login,
            password=account.password,
            server=account.server,
            company=config.company,
            account_name=account.name,
            terminal_path=config.terminal_path,
            server_utc_offset=config.server_utc_offset,
            latency=config.latency,
            faults=config.faults,
            seed=config.seed,
            selected=config.selected,
            behaviour=config.behaviour,
        )
        return broker

    def emulator_add_login(
        self,
        login: int,
        *,
        password: str = "",
        server: str = DEFAULT_SERVER,
        account_name: str = "",
    ) -> None:
        """The terminal can log in to this account of its broker too (as a terminal remembers
        every account logged in to from it): initialize(login=) or login() switch to it."""
        attachment = self._attached_or_raise()
        if not attachment.broker.has_account(login):
            raise ValueError(f"the broker has no account {login}")
        with self._lock:
            attachment.known[(login, server)] = _Credentials(
                password, account_name or f"Account {login}"
            )

    def emulator_set_behaviour(self, behaviour: TerminalBehaviour) -> None:
        """Switches the terminal's behaviour (see TerminalBehaviour) from now on."""
        attachment = self._attached_or_raise()
        with self._lock:
            attachment.behaviour = behaviour

    def emulator_fail_next(self, *faults: Fault | None) -> None:
        """The next trade requests (order_send) meet these faults, in order, as a SimTerminal's
        would: REQUOTE, PRICE_OFF, TOO_MANY_REQUESTS answer with that retcode; PARTIAL_FILL
        leaves part of the volume to the filling policy; DISCONNECT_BEFORE / _AFTER answer None
        with an IPC send / receive failure, before / after the server executed; HANG_BEFORE /
        _AFTER sleep for the fault settings' hang_seconds, then answer None with an IPC
        timeout."""
        self._attached().faults.fail_next(*faults)

    def emulator_ipc_error_next(self, code: int = mt5.RES_E_INTERNAL_FAIL_TIMEOUT) -> None:
        """The next call of any function fails with `code` without doing anything."""
        with self._lock:
            self._ipc_errors.append(code)

    def emulator_hang_next_call(
        self,
        *,
        started: str | PathLike[str] | None = None,
        seconds: float = 3600.0,
        executes: bool = False,
        function_name: str | None = None,
    ) -> None:
        """The next call (of the function named, or of any) blocks for `seconds`, then fails with
        an IPC timeout. With `executes`, it does its work first (an order_send reaches the
        server). Once it blocks, the file `started` is created, so that a test knows the call
        is in flight."""
        with self._lock:
            path = None if started is None else Path(started)
            self._hang = _Hang(path, seconds, executes, function_name)

    def emulator_set_trade_server_connected(self, connected: bool) -> None:
        """The terminal loses (or regains) its trade server: terminal_info().connected follows
        and order_send answers TRADE_RETCODE_CONNECTION; queries answer from the terminal."""
        with self._lock:
            self._trade_server_connected = connected

    def emulator_set_algo_trading(self, enabled: bool) -> None:
        """The terminal's Algo Trading button: off, order_send answers CLIENT_DISABLES_AT."""
        with self._lock:
            self._algo_trading = enabled

    def emulator_set_trade_api_disabled(self, disabled: bool) -> None:
        """The terminal's option "Disable algorithmic trading via external Python API":
        terminal_info().tradeapi_disabled follows, and order_send answers None with
        RES_E_AUTO_TRADING_DISABLED."""
        with self._lock:
            self._trade_api_disabled = disabled

    def emulator_set_expert_trading(self, allowed: bool) -> None:
        """The broker allows (or not) automated trading on the account: account_info()
        .trade_expert follows, and order_send answers TRADE_RETCODE_SERVER_DISABLES_AT."""
        with self._lock:
            self._expert_trading = allowed

    def emulator_close_terminal(self) -> None:
        """The terminal program exits: every call fails with RES_E_INTERNAL_FAIL_CONNECT until
        initialize() starts it again."""
        with self._lock:
            self._initialized = False

    # -- connection -------------------------------------------------------------------------

    def initialize(
        self,
        path: str | None = None,
        *,
        login: int | None = None,
        password: str | None = None,
        server: str | None = None,
        timeout: int | None = None,
        portable: bool = False,
    ) -> bool:
        with self._lock:
            attachment = self._attachment
            try:
                self._check_types(
                    ("path", path, str), ("password", password, str), ("server", server, str)
                )
                self._check_types(("login", login, int), ("timeout", timeout, int))
                if not isinstance(portable, bool):
                    raise _Failed(mt5.RES_E_INVALID_PARAMS, 'Invalid "portable" argument')
                if attachment is None or (
                    path is not None
                    and attachment.terminal_path is not None
                    and path != attachment.terminal_path
                ):
                    raise _Failed(mt5.RES_E_INTERNAL_FAIL_INIT)
                if self._ipc_errors:
                    raise _Failed(self._ipc_errors.popleft())
                self._log_in(attachment, login, password, server)
            except _Failed as failure:
                self._error = (failure.code, failure.text)
                return False
            self._initialized = True
            self._error = (mt5.RES_S_OK, ERROR_TEXTS[mt5.RES_S_OK])
            return True

    def login(
        self,
        login: int,
        *,
        password: str | None = None,
        server: str | None = None,
        timeout: int | None = None,
    ) -> bool:
        def switch() -> bool:
            self._check_types(
                ("login", login, int),
                ("password", password, str),
                ("server", server, str),
                ("timeout", timeout, int),
            )
            self._log_in(self._attached(), login, password, server)
            return True

        return self._call("login", switch, False)

    def shutdown(self) -> None:
        with self._lock:
            self._initialized = False
            self._error = (mt5.RES_S_OK, ERROR_TEXTS[mt5.RES_S_OK])

    def version(self) -> tuple[int, int, str] | None:
        return self._call("version", lambda: (500, BUILD, BUILD_DATE), None)

    def last_error(self) -> tuple[int, str]:
        with self._lock:
            return self._error

    def terminal_info(self) -> Any:
        def info() -> Any:
            attachment = self._attached()
            path = attachment.terminal_path or "C:\\MetaTrader 5"
            folder = path.rsplit("\\", 1)[0] if path.endswith(".exe") else path
            return records.TerminalInfo(
                community_account=False,
                community_connection=False,
                connected=self._trade_server_connected,
                dlls_allowed=False,
                trade_allowed=self._algo_trading,
                tradeapi_disabled=self._trade_api_disabled,
                email_enabled=False,
                ftp_enabled=False,
                notifications_enabled=False,
                mqid=False,
                build=BUILD,
                maxbars=100_000,
                codepage=0,
                ping_last=0,
                community_balance=0.0,
                retransmission=0.0,
                company=attachment.company,
                name="MetaTrader 5",
                language="English",
                path=folder,
                data_path=folder,
                commondata_path=folder,
            )

        return self._call("terminal_info", info, None)

    def account_info(self) -> Any:
        def info() -> Any:
            attachment = self._attached()
            account = attachment.broker.account_info(attachment.login)
            level = account.equity / account.margin * 100 if account.margin else Decimal(0)
            return records.AccountInfo(
                login=account.login,
                trade_mode=mt5.ACCOUNT_TRADE_MODE_DEMO,
                leverage=account.leverage,
                limit_orders=200,
                margin_so_mode=mt5.ACCOUNT_STOPOUT_MODE_PERCENT,
                trade_allowed=True,
                trade_expert=self._expert_trading,
                margin_mode=_MARGIN_MODES[account.margin_mode],
                currency_digits=2,
                fifo_close=False,
                balance=float(account.balance),
                credit=0.0,
                profit=float(account.equity - account.balance),
                equity=float(account.equity),
                margin=float(account.margin),
                margin_free=float(account.free_margin),
                margin_level=float(level.quantize(money.CENT)),
                margin_so_call=50.0,
                margin_so_so=30.0,
                margin_initial=0.0,
                margin_maintenance=0.0,
                assets=0.0,
                liabilities=0.0,
                commission_blocked=0.0,
                name=attachment.account_name,
                server=attachment.server,
                currency=account.currency,
                company=attachment.company,
            )

        return self._call("account_info", info, None)

    # -- symbols ----------------------------------------------------------------------------

    def symbols_total(self) -> int | None:
        return self._call(
            "symbols_total", lambda: len(self._attached().broker.feed.symbols()), None
        )

    def symbols_get(self, group: str | None = None) -> tuple[Any, ...] | None:
        def get() -> tuple[Any, ...]:
            self._check_types(("group", group, str))
            broker = self._attached().broker
            return tuple(
                self._symbol_info(broker.symbol(name))
                for name in broker.feed.symbols()
                if _in_group(name, group, in_order=self._attached().behaviour.group_masks_in_order)
            )

        return self._call("symbols_get", get, None)

    def symbol_info(self, symbol: str) -> Any:
        return self._call("symbol_info", lambda: self._symbol_info(self._symbol(symbol)), None)

    def symbol_select(self, symbol: str, enable: bool = True) -> bool:
        def select() -> bool:
            attachment = self._attached()
            self._symbol(symbol)
            if enable:
                attachment.selected.add(symbol)
                return True
            login = attachment.login
            in_use = any(p.symbol == symbol for p in attachment.broker.positions(login)) or any(
                o.symbol == symbol for o in attachment.broker.pending_orders(login)
            )
            if in_use:
                raise _Failed(mt5.RES_E_FAIL)
            attachment.selected.discard(symbol)
            return True

        return self._call("symbol_select", select, False)

    def symbol_info_tick(self, symbol: str) -> Any:
        def tick() -> Any:
            attachment = self._attached()
            self._symbol(symbol)
            if symbol not in attachment.selected:
                raise _Failed(mt5.RES_E_NOT_FOUND)
            bid, ask, now = attachment.broker.feed.bid_ask(symbol)
            msc = self._server_msc(now)
            return records.Tick(
                time=msc // 1000,
                bid=float(bid),
                ask=float(ask),
                last=0.0,
                volume=0,
                time_msc=msc,
                flags=mt5.TICK_FLAG_BID | mt5.TICK_FLAG_ASK,
                volume_real=0.0,
            )

        return self._call("symbol_info_tick", tick, None)

    # -- positions and orders ---------------------------------------------------------------

    def positions_total(self) -> int | None:
        return self._call("positions_total", lambda: len(self._positions()), None)

    def positions_get(
        self, *, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> tuple[Any, ...] | None:
        def get() -> tuple[Any, ...]:
            self._check_filters(symbol, group, ticket)
            chosen = self._filter(symbol, group, ticket)
            return self._listing(
                self._position_record(p) for p in self._positions() if chosen(p.symbol, p.ticket)
            )

        return self._call("positions_get", get, None)

    def orders_total(self) -> int | None:
        return self._call(
            "orders_total", lambda: len(self._orders()) + len(self._executing()), None
        )

    def orders_get(
        self, *, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> tuple[Any, ...] | None:
        def get() -> tuple[Any, ...]:
            self._check_filters(symbol, group, ticket)
            chosen = self._filter(symbol, group, ticket)
            working = [*self._orders(), *self._executing()]
            return self._listing(
                self._order_record(o) for o in working if chosen(o.symbol, o.ticket)
            )

        return self._call("orders_get", get, None)

    # -- history ----------------------------------------------------------------------------

    def history_deals_total(self, date_from: Any, date_to: Any) -> int | None:
        def total() -> int:
            start, end = self._period(date_from, date_to)
            return sum(1 for d in self._deal_records() if start <= d.time <= end)

        return self._call("history_deals_total", total, None)

    def history_deals_get(
        self,
        *dates: Any,
        group: str | None = None,
        ticket: int | None = None,
        position: int | None = None,
        **named_dates: Any,
    ) -> tuple[Any, ...] | None:
        """By period (date_from, date_to; and symbol group), by order ticket, or by position
        identifier."""

        def get() -> tuple[Any, ...]:
            date_from, date_to = self._dates(dates, named_dates)
            deals = self._deal_records()
            chosen = self._history_filter(date_from, date_to, group, ticket, position)
            return self._listing(
                d for d in deals if chosen(d.time, d.symbol, d.order, d.position_id)
            )

        return self._call("history_deals_get", get, None)

    def history_orders_total(self, date_from: Any, date_to: Any) -> int | None:
        def total() -> int:
            start, end = self._period(date_from, date_to)
            return sum(1 for o in self._history_order_records() if start <= o.time_setup <= end)

        return self._call("history_orders_total", total, None)

    def history_orders_get(
        self,
        *dates: Any,
        group: str | None = None,
        ticket: int | None = None,
        position: int | None = None,
        **named_dates: Any,
    ) -> tuple[Any, ...] | None:
        def get() -> tuple[Any, ...]:
            date_from, date_to = self._dates(dates, named_dates)
            orders = self._history_order_records()
            chosen = self._history_filter(date_from, date_to, group, ticket, position)
            return self._listing(
                o for o in orders if chosen(o.time_setup, o.symbol, o.ticket, o.position_id)
            )

        return self._call("history_orders_get", get, None)

    # -- trading ----------------------------------------------------------------------------

    def order_check(self, request: dict[str, Any]) -> Any:
        def check() -> Any:
            attachment = self._attached()
            trade = self._parse(request, attachment)
            account = attachment.broker.account_info(attachment.login)
            retcode, comment = 0, "Done"
            margin = Decimal(0)
            if trade.action == mt5.TRADE_ACTION_DEAL and trade.type in _MARKET_TYPES:
                if not attachment.broker.has_symbol(trade.symbol):
                    retcode, comment = retcodes.INVALID, "Invalid request"
                else:
                    spec = attachment.broker.spec(trade.symbol)
                    bid, ask, _ = attachment.broker.feed.bid_ask(trade.symbol)
                    volume = trade_request.volume_of(trade.volume)
                    side = Side.BUY if trade.type == mt5.ORDER_TYPE_BUY else Side.SELL
                    price = money.opening_price(side, bid, ask)
                    margin = money.margin(spec, volume, price, account.leverage)
                    if spec.volume_error(volume) is not None:
                        retcode, comment = retcodes.INVALID_VOLUME, "Invalid volume"
                    elif margin > account.free_margin:
                        retcode, comment = retcodes.NO_MONEY, "No money"
            used = account.margin + margin
            free = account.equity - used
            return records.OrderCheckResult(
                retcode=retcode,
                balance=float(account.balance),
                equity=float(account.equity),
                profit=float(account.equity - account.balance),
                margin=float(used),
                margin_free=float(free),
                margin_level=float((account.equity / used * 100).quantize(money.CENT))
                if used
                else 0.0,
                comment=comment,
                request=trade,
            )

        return self._call("order_check", check, None)

    def order_calc_margin(
        self, action: int, symbol: str, volume: float, price: float
    ) -> float | None:
        """The margin `volume` lots of `symbol` at `price` need (ORDER_TYPE_BUY / _SELL)."""

        def margin() -> float:
            spec = self._calc_spec(action, symbol)
            leverage = self._leverage()
            amount = money.margin(spec, trade_request.volume_of(volume), _exact(price), leverage)
            return float(amount.quantize(money.CENT))

        return self._call("order_calc_margin", margin, None)

    def order_calc_profit(
        self, action: int, symbol: str, volume: float, price_open: float, price_close: float
    ) -> float | None:
        """The profit of `volume` lots of `symbol` opened and closed at these prices."""

        def profit() -> float:
            spec = self._calc_spec(action, symbol)
            side = Side.BUY if action == mt5.ORDER_TYPE_BUY else Side.SELL
            amount = money.profit(
                spec, side, _exact(price_open), trade_request.volume_of(volume), _exact(price_close)
            )
            return float(amount)

        return self._call("order_calc_profit", profit, None)

    def _calc_spec(self, action: int, symbol: str) -> SymbolSpec:
        if action not in _MARKET_TYPES:
            raise _Failed(mt5.RES_E_INVALID_PARAMS, 'Invalid "action" argument')
        return self._symbol(symbol).spec

    def _leverage(self) -> int:
        attachment = self._attached()
        return attachment.broker.account_info(attachment.login).leverage

    def order_send(self, request: dict[str, Any]) -> Any:
        return self._call(
            "order_send", lambda: self._send(self._parse(request, self._attached())), None
        )

    def _send(self, trade: Any) -> Any:
        attachment = self._attached()
        behaviour = attachment.behaviour
        if self._trade_api_disabled:
            # The terminal refuses the package itself: nothing reaches the trade server.
            raise _Failed(mt5.RES_E_AUTO_TRADING_DISABLED)
        if not self._algo_trading:
            return self._result(
                trade, retcodes.CLIENT_DISABLES_AT, "AutoTrading disabled by client"
            )
        if not self._trade_server_connected:
            return self._result(trade, retcodes.CONNECTION, "No connection with the trade server")
        if not self._expert_trading:
            return self._result(
                trade, retcodes.SERVER_DISABLES_AT, "AutoTrading disabled by server"
            )
        order_request = trade_request.to_order_request(
            trade,
            digits=self._digits_of(trade),
            server_utc_offset=attachment.server_utc_offset,
        )
        if isinstance(order_request, Refusal):
            return self._result(trade, order_request.retcode, order_request.text)
        refusal = self._mode_refusal(trade, order_request)
        if refusal is not None:
            return self._result(trade, refusal.retcode, refusal.text)
        order_request = replace(order_request, tag=_stored_comment(order_request.tag, behaviour))
        fault = attachment.faults.draw()
        broker = attachment.broker
        is_deal = order_request.action is TradeAction.DEAL
        known_symbol = broker.has_symbol(order_request.symbol)
        if fault is Fault.REQUOTE and is_deal and known_symbol:
            bid, ask, _ = broker.feed.bid_ask(order_request.symbol)
            return self._result(trade, retcodes.REQUOTE, "Requote", bid=bid, ask=ask)
        if fault is Fault.PRICE_OFF:
            return self._result(trade, retcodes.PRICE_OFF, "No prices")
        if fault is Fault.TOO_MANY_REQUESTS:
            return self._result(trade, retcodes.TOO_MANY_REQUESTS, "Too many requests")
        if fault is Fault.DISCONNECT_BEFORE:
            raise _Failed(mt5.RES_E_INTERNAL_FAIL_SEND)
        if fault is Fault.HANG_BEFORE:
            time.sleep(attachment.faults.settings.hang_seconds)
            raise _Failed(mt5.RES_E_INTERNAL_FAIL_TIMEOUT)
        available = None
        if fault is Fault.PARTIAL_FILL and is_deal and known_symbol:
            available = attachment.faults.partial_volume(
                broker.spec(order_request.symbol), order_request.volume
            )
        self._orders()  # remembers the pending orders before the request (history orders)
        sent_ns = broker.feed.clock_ns()
        delay_ms = attachment.latency.sample_ms()
        if delay_ms:
            # Blocking, as the package's order_send waits for the server's answer.
            time.sleep(delay_ms / 1000)
        # Executed as of its arrival at the server, however late this thread gets to run.
        answer = broker.execute(
            attachment.login,
            order_request,
            available_volume=available,
            at_ns=sent_ns + round(delay_ms * 1_000_000),
        )
        executed_deal = is_deal and bool(answer.deal_ticket)
        if executed_deal:
            attachment.market_fillings[answer.order_ticket] = order_request.filling
        if executed_deal and (behaviour.history_delay_ms or behaviour.asynchronous_execution):
            self._hide_history(attachment, order_request, answer)
        if fault is Fault.DISCONNECT_AFTER:
            raise _Failed(mt5.RES_E_INTERNAL_FAIL_RECEIVE)
        if fault is Fault.HANG_AFTER:
            time.sleep(attachment.faults.settings.hang_seconds)
            raise _Failed(mt5.RES_E_INTERNAL_FAIL_TIMEOUT)
        if executed_deal and behaviour.asynchronous_execution:
            return self._result(
                trade,
                retcodes.PLACED,
                "Request placed",
                order=answer.order_ticket,
                volume=order_request.volume,
                bid=answer.bid,
                ask=answer.ask,
            )
        if executed_deal and not behaviour.deal_in_answer:
            return self._result(
                trade,
                answer.retcode,
                answer.text,
                order=answer.order_ticket,
                volume=answer.volume,
                bid=answer.bid,
                ask=answer.ask,
            )
        return self._result_of(trade, answer)

    def _hide_history(
        self, attachment: _Attachment, request: OrderRequest, answer: OrderResult
    ) -> None:
        """The deal of a market order reaches the history history_delay_ms from now; with
        asynchronous execution its order works until then."""
        behaviour = attachment.behaviour
        ticket = answer.order_ticket
        attachment.hidden_until[ticket] = time.monotonic() + behaviour.history_delay_ms / 1000
        if behaviour.asynchronous_execution:
            attachment.executing[ticket] = PendingOrder(
                ticket=ticket,
                symbol=request.symbol,
                side=request.side,
                volume=request.volume,
                price=answer.price or Decimal(0),
                magic=request.magic,
                comment=request.tag,
                placed_at=attachment.broker.feed.now(),
                order_type=OrderType.MARKET,
                filling=request.filling,
                volume_initial=request.volume,
            )

    def _mode_refusal(self, trade: Any, request: OrderRequest) -> Refusal | None:
        """The server's refusal of what the symbol's trade modes do not allow (when enforced)."""
        attachment = self._attached()
        behaviour = attachment.behaviour
        if not behaviour.enforces_symbol_modes or not attachment.broker.has_symbol(request.symbol):
            return None
        modes = behaviour.modes_of(request.symbol)
        action = request.action
        if action is TradeAction.DEAL:
            if not modes.order_mode & ORDER_MARKET:
                return Refusal(retcodes.INVALID_ORDER, "Invalid order type")
            if request.filling not in _deal_fillings(modes):
                return Refusal(retcodes.INVALID_FILL, "Unsupported filling mode")
        if action is TradeAction.PENDING:
            if not modes.order_mode & _ORDER_TYPE_FLAGS[request.order_type]:
                return Refusal(retcodes.INVALID_ORDER, "Invalid order type")
            if request.filling not in _pending_fillings(modes):
                return Refusal(retcodes.INVALID_FILL, "Unsupported filling mode")
        if action in (TradeAction.PENDING, TradeAction.MODIFY) and not (
            modes.expiration_mode & _EXPIRATION_FLAGS.get(trade.type_time, 0)
        ):
            return Refusal(retcodes.INVALID_EXPIRATION, "Invalid expiration")
        if action is TradeAction.CLOSE_BY and not modes.order_mode & ORDER_CLOSE_BY:
            return Refusal(retcodes.INVALID_ORDER, "Invalid order type")
        if (request.stop_loss is not None and not modes.order_mode & ORDER_SL) or (
            request.take_profit is not None and not modes.order_mode & ORDER_TP
        ):
            return Refusal(retcodes.INVALID_STOPS, "Invalid stops")
        return None

    def _result_of(self, trade: Any, answer: OrderResult) -> Any:
        return self._result(
            trade,
            answer.retcode,
            answer.text,
            deal=answer.deal_ticket,
            order=answer.order_ticket,
            volume=answer.volume,
            price=answer.price,
            bid=answer.bid,
            ask=answer.ask,
        )

    def _result(
        self,
        trade: Any,
        retcode: int,
        comment: str,
        *,
        deal: int = 0,
        order: int = 0,
        volume: Decimal = Decimal(0),
        price: Decimal | None = None,
        bid: Decimal | None = None,
        ask: Decimal | None = None,
    ) -> Any:
        self._request_id += 1
        return records.OrderSendResult(
            retcode=retcode,
            deal=deal,
            order=order,
            volume=float(volume),
            price=_float(price),
            bid=_float(bid),
            ask=_float(ask),
            comment=comment,
            request_id=self._request_id,
            retcode_external=0,
            request=trade,
        )

    def _parse(self, request: object, attachment: _Attachment) -> Any:
        truncates = attachment.behaviour.truncates_long_comments
        try:
            return trade_request.parse(request, truncates_long_comments=truncates)
        except MalformedRequest as error:
            raise _Failed(mt5.RES_E_INVALID_PARAMS, str(error)) from None

    def _digits_of(self, trade: Any) -> int | None:
        """The digits of the symbol the request is about: its own, or its order's or
        position's."""
        broker = self._attached().broker
        symbol = trade.symbol
        if trade.action in (mt5.TRADE_ACTION_MODIFY, mt5.TRADE_ACTION_REMOVE):
            symbol = next((o.symbol for o in self._orders() if o.ticket == trade.order), "")
        elif trade.action in (mt5.TRADE_ACTION_SLTP, mt5.TRADE_ACTION_CLOSE_BY):
            symbol = next((p.symbol for p in self._positions() if p.ticket == trade.position), "")
        return broker.spec(symbol).digits if broker.has_symbol(symbol) else None

    # -- the gate every function goes through -----------------------------------------------

    def _call(self, function: str, work: Callable[[], _T], failure: _T) -> _T:
        with self._lock:
            try:
                hang = self._hang
                if hang is not None and hang.function in (None, function):
                    self._hang = None
                    self._block(hang, work)
                if self._ipc_errors:
                    raise _Failed(self._ipc_errors.popleft())
                if not self._initialized:
                    raise _Failed(mt5.RES_E_INTERNAL_FAIL_CONNECT)
                value = work()
            except _Failed as failed:
                self._error = (failed.code, failed.text)
                return failure
            except BrokerStateError as error:
                self._error = (mt5.RES_E_INTERNAL_FAIL, f"Internal error: {error}")
                return failure
            self._error = (mt5.RES_S_OK, ERROR_TEXTS[mt5.RES_S_OK])
            return value

    def _block(self, hang: _Hang, work: Callable[[], object]) -> None:
        if hang.executes and self._initialized:
            work()
        if hang.started is not None:
            hang.started.touch()
        time.sleep(hang.seconds)
        raise _Failed(mt5.RES_E_INTERNAL_FAIL_TIMEOUT)

    def _attached(self) -> _Attachment:
        if self._attachment is None:
            raise _Failed(mt5.RES_E_INTERNAL_FAIL_CONNECT)
        return self._attachment

    def _attached_or_raise(self) -> _Attachment:
        """For the emulator_* controls: a terminal must be installed first."""
        if self._attachment is None:
            raise ValueError("no terminal installed: emulator_attach or emulator_configure first")
        return self._attachment

    @staticmethod
    def _log_in(
        attachment: _Attachment, login: int | None, password: str | None, server: str | None
    ) -> None:
        """Logs the terminal in to the account named, switching it if it is on another one, as
        the package does: whoever else uses the terminal finds it switched."""
        if login is None:
            return  # the terminal stays logged in to its account
        candidates = [
            key
            for key in attachment.known
            if key[0] == login and (server is None or key[1] == server)
        ]
        if not candidates:
            raise _Failed(mt5.RES_E_AUTH_FAILED)
        current = (attachment.login, attachment.server)
        key = current if current in candidates else candidates[0]
        credentials = attachment.known[key]
        if password is not None and password != credentials.password:
            raise _Failed(mt5.RES_E_AUTH_FAILED)
        if key == current:
            return
        attachment.login, attachment.server = key
        attachment.password = credentials.password
        attachment.account_name = credentials.account_name
        # History orders are the account's: the terminal starts them anew.
        attachment.seen_orders.clear()
        attachment.gone_at.clear()

    @staticmethod
    def _check_types(*arguments: tuple[str, object, type]) -> None:
        for name, value, kind in arguments:
            if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
                raise _Failed(mt5.RES_E_INVALID_PARAMS, f'Invalid "{name}" argument')

    def _check_filters(self, symbol: object, group: object, ticket: object) -> None:
        self._check_types(("symbol", symbol, str), ("group", group, str), ("ticket", ticket, int))

    # -- records ----------------------------------------------------------------------------

    def _symbol(self, name: str) -> SimSymbol:
        self._check_types(("symbol", name, str))
        attachment = self._attached()
        if not attachment.broker.has_symbol(name):
            raise _Failed(attachment.behaviour.unknown_symbol_code)
        return attachment.broker.symbol(name)

    def _symbol_info(self, symbol: SimSymbol) -> Any:
        attachment = self._attached()
        name = symbol.spec.name
        bid, ask, now = attachment.broker.feed.bid_ask(name)
        selected = name in attachment.selected
        return records.symbol_info(
            symbol,
            bid=bid,
            ask=ask,
            server_seconds=self._server_msc(now) // 1000,
            selected=selected,
            modes=attachment.behaviour.modes_of(name),
            lacks_data=attachment.behaviour.unselected_symbols_lack_data and not selected,
        )

    def _positions(self) -> list[Position]:
        attachment = self._attached()
        return attachment.broker.positions(attachment.login)

    def _orders(self) -> list[PendingOrder]:
        attachment = self._attached()
        orders = attachment.broker.pending_orders(attachment.login)
        for order in orders:
            attachment.seen_orders[order.ticket] = order
        return orders

    def _position_record(self, position: Position) -> Any:
        broker = self._attached().broker
        spec = broker.spec(position.symbol)
        bid, ask, _ = broker.feed.bid_ask(position.symbol)
        current = money.closing_price(position.side, bid, ask)
        opened = self._server_msc(position.opened_at)
        return records.TradePosition(
            ticket=position.ticket,
            time=opened // 1000,
            time_msc=opened,
            time_update=opened // 1000,
            time_update_msc=opened,
            type=mt5.POSITION_TYPE_BUY if position.side is Side.BUY else mt5.POSITION_TYPE_SELL,
            magic=position.magic,
            identifier=position.ticket,
            reason=mt5.POSITION_REASON_EXPERT,
            volume=float(position.volume),
            price_open=float(position.price_open),
            sl=_float(position.stop_loss),
            tp=_float(position.take_profit),
            price_current=float(current),
            swap=0.0,
            profit=float(
                money.profit(spec, position.side, position.price_open, position.volume, current)
            ),
            symbol=position.symbol,
            comment=position.comment,
            external_id="",
        )

    def _order_record(
        self,
        order: PendingOrder,
        *,
        state: int | None = None,
        done_at: datetime | None = None,
        position_id: int = 0,
    ) -> Any:
        broker = self._attached().broker
        bid, ask, _ = broker.feed.bid_ask(order.symbol)
        placed = self._server_msc(order.placed_at)
        done = 0 if done_at is None else self._server_msc(done_at)
        initial = order.volume_initial if order.volume_initial is not None else order.volume
        if state is None:
            state = mt5.ORDER_STATE_PARTIAL if order.volume < initial else mt5.ORDER_STATE_PLACED
        return records.TradeOrder(
            ticket=order.ticket,
            time_setup=placed // 1000,
            time_setup_msc=placed,
            time_done=done // 1000,
            time_done_msc=done,
            time_expiration=0
            if order.expires_at is None
            else self._server_msc(order.expires_at) // 1000,
            type=_PENDING_TYPES[(order.side, order.order_type)],
            type_time=_TIME_TYPES[order.time_in_force],
            type_filling=_FILLING_TYPES[order.filling],
            state=state,
            magic=order.magic,
            position_id=position_id,
            position_by_id=0,
            reason=mt5.ORDER_REASON_EXPERT,
            volume_initial=float(initial),
            volume_current=float(order.volume),
            price_open=float(order.price),
            sl=_float(order.stop_loss),
            tp=_float(order.take_profit),
            price_current=float(money.opening_price(order.side, bid, ask)),
            price_stoplimit=_float(order.stop_limit_price),
            symbol=order.symbol,
            comment=order.comment,
            external_id="",
        )

    def _deals(self, *, visible_only: bool = True) -> list[Deal]:
        """The account's deals; those the history does not show yet left out."""
        attachment = self._attached()
        deals = attachment.broker.deals(attachment.login, _EPOCH)
        if not visible_only or not attachment.hidden_until:
            return deals
        now = time.monotonic()
        return [d for d in deals if attachment.hidden_until.get(d.order_ticket, 0.0) <= now]

    def _executing(self) -> list[PendingOrder]:
        """Market orders still executing asynchronously (working, as orders_get shows them)."""
        attachment = self._attached()
        now = time.monotonic()
        for ticket in [t for t in attachment.executing if attachment.hidden_until[t] <= now]:
            del attachment.executing[ticket]
        return list(attachment.executing.values())

    def _listing(self, found: Iterable[_T]) -> tuple[_T, ...]:
        """A records query's answer; "none" as the behaviour says it (a failure value)."""
        listed = tuple(found)
        empty = self._attached().behaviour.empty_answer
        if listed or empty is EmptyAnswer.TUPLE:
            return listed
        raise _Failed(
            mt5.RES_S_OK if empty is EmptyAnswer.NONE_WITH_SUCCESS else mt5.RES_E_NOT_FOUND
        )

    def _filter(
        self, symbol: str | None, group: str | None, ticket: int | None
    ) -> Callable[[str, int], bool]:
        """Which positions or orders a query asks for: (symbol, ticket) -> bool."""
        behaviour = self._attached().behaviour
        in_order = behaviour.group_masks_in_order
        if behaviour.symbol_filter_ignores_ticket:
            # As documented: "If a symbol is specified, the ticket parameter is ignored."
            if symbol is not None:
                return lambda name, _ticket: name == symbol
            if group is not None:
                return lambda name, _ticket: _in_group(name, group, in_order=in_order)
            return lambda _name, number: ticket is None or number == ticket
        return lambda name, number: _selected_by(
            name, number, symbol, group, ticket, in_order=in_order
        )

    def _dates(self, dates: tuple[Any, ...], named: dict[str, Any]) -> tuple[Any, Any]:
        """date_from and date_to of a history query, positional (and named, unless the
        behaviour takes them positionally only, as the C extension does)."""
        unknown = set(named) - {"date_from", "date_to"}
        if len(dates) > 2 or unknown:
            raise _Failed(mt5.RES_E_INVALID_PARAMS, "Invalid arguments")
        if named and self._attached().behaviour.positional_history_dates:
            raise _Failed(mt5.RES_E_INVALID_PARAMS, "Invalid arguments")
        date_from, date_to = (*dates, None, None)[:2]
        return named.get("date_from", date_from), named.get("date_to", date_to)

    def _deal_records(self) -> list[Any]:
        attachment = self._attached()
        deals = self._deals()
        # The opening deposit: what the balance holds beyond every deal's profit (hidden ones
        # too: the balance has them).
        deposit = attachment.broker.account_info(attachment.login).balance - sum(
            (d.profit for d in self._deals(visible_only=False)), Decimal(0)
        )
        deposited = self._server_msc(attachment.attached_at)
        listed = [
            records.TradeDeal(
                ticket=DEPOSIT_TICKET,
                order=0,
                time=deposited // 1000,
                time_msc=deposited,
                type=mt5.DEAL_TYPE_BALANCE,
                entry=mt5.DEAL_ENTRY_IN,
                magic=0,
                position_id=0,
                reason=mt5.DEAL_REASON_CLIENT,
                volume=0.0,
                price=0.0,
                commission=0.0,
                swap=0.0,
                profit=float(deposit),
                fee=0.0,
                symbol="",
                comment="Deposit",
                external_id="",
            )
        ]
        for deal in deals:
            executed = self._server_msc(deal.executed_at)
            listed.append(
                records.TradeDeal(
                    ticket=deal.ticket,
                    order=deal.order_ticket,
                    time=executed // 1000,
                    time_msc=executed,
                    type=mt5.DEAL_TYPE_BUY if deal.side is Side.BUY else mt5.DEAL_TYPE_SELL,
                    entry=_DEAL_ENTRIES[deal.entry],
                    magic=deal.magic,
                    position_id=deal.position_ticket,
                    reason=mt5.DEAL_REASON_EXPERT,
                    volume=float(deal.volume),
                    price=float(deal.price),
                    commission=0.0,
                    swap=0.0,
                    profit=float(deal.profit),
                    fee=0.0,
                    symbol=deal.symbol,
                    comment=deal.comment,
                    external_id="",
                )
            )
        return listed

    def _history_order_records(self) -> list[Any]:
        """Filled orders from the deals; pending orders seen and gone without a deal as
        cancelled or expired."""
        attachment = self._attached()
        current = {o.ticket for o in self._orders()}
        now = attachment.broker.feed.now()
        deals_by_order: dict[int, list[Deal]] = {}
        for deal in self._deals():
            deals_by_order.setdefault(deal.order_ticket, []).append(deal)
        listed: list[Any] = []
        for ticket, deals in deals_by_order.items():
            if ticket in current:
                continue  # still resting (the rest of a partly filled order)
            first = deals[0]
            seen = attachment.seen_orders.get(ticket)
            volume = sum((d.volume for d in deals), Decimal(0))
            order = seen or PendingOrder(
                ticket=ticket,
                symbol=first.symbol,
                side=first.side,
                volume=volume,
                price=first.price,
                magic=first.magic,
                comment=first.comment,
                placed_at=first.executed_at,
                order_type=OrderType.MARKET,
                filling=attachment.market_fillings.get(ticket, FillingPolicy.FOK),
            )
            listed.append(
                self._order_record(
                    _done(order, volume),
                    state=mt5.ORDER_STATE_FILLED,
                    done_at=deals[-1].executed_at,
                    position_id=first.position_ticket,
                )
            )
        for ticket, order in attachment.seen_orders.items():
            if ticket in current or ticket in deals_by_order:
                continue
            expires_at = order.expires_at
            expired = expires_at is not None and expires_at <= now
            done_at = attachment.gone_at.setdefault(
                ticket, expires_at if expires_at and expired else now
            )
            listed.append(
                self._order_record(
                    _done(order, Decimal(0)),
                    state=mt5.ORDER_STATE_EXPIRED if expired else mt5.ORDER_STATE_CANCELED,
                    done_at=done_at,
                )
            )
        listed.sort(key=lambda o: (o.time_setup_msc, o.ticket))
        return listed

    def _history_filter(
        self,
        date_from: Any,
        date_to: Any,
        group: str | None,
        ticket: int | None,
        position: int | None,
    ) -> Callable[[int, str, int, int], bool]:
        """Which records a history query asks for: (time, symbol, order, position) -> bool."""
        self._check_types(("group", group, str), ("ticket", ticket, int))
        self._check_types(("position", position, int))
        if ticket is not None:
            return lambda _time, _symbol, order, _position: order == ticket
        if position is not None:
            return lambda _time, _symbol, _order, position_id: position_id == position
        start, end = self._period(date_from, date_to)
        in_order = self._attached().behaviour.group_masks_in_order
        return lambda at, symbol, _order, _position: (
            start <= at <= end and _in_group(symbol, group, in_order=in_order)
        )

    # -- time -------------------------------------------------------------------------------

    def _server_msc(self, at: datetime) -> int:
        """Milliseconds since the epoch on the trade server's clock."""
        return (at + self._attached().server_utc_offset - _EPOCH) // _MS

    def _period(self, date_from: Any, date_to: Any) -> tuple[int, int]:
        """A period in server seconds from datetimes or numbers of seconds (both required)."""
        if date_from is None or date_to is None:
            raise _Failed(mt5.RES_E_INVALID_PARAMS, "Invalid arguments")
        return _seconds(date_from, "date_from"), _seconds(date_to, "date_to")


def _seconds(value: Any, name: str) -> int:
    if isinstance(value, datetime):
        # As the package does: a naive datetime is read in the local time zone.
        return int(value.timestamp())
    if isinstance(value, date | bool) or not isinstance(value, int | float):
        raise _Failed(mt5.RES_E_INVALID_PARAMS, f'Invalid "{name}" argument')
    return int(value)


_DEAL_ENTRIES = {
    DealEntry.IN: mt5.DEAL_ENTRY_IN,
    DealEntry.OUT: mt5.DEAL_ENTRY_OUT,
    DealEntry.INOUT: mt5.DEAL_ENTRY_INOUT,
    DealEntry.OUT_BY: mt5.DEAL_ENTRY_OUT_BY,
}


def _exact(value: float) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Failed(mt5.RES_E_INVALID_PARAMS, "Invalid arguments")
    return Decimal(repr(float(value)))


def _float(value: Decimal | None) -> float:
    return 0.0 if value is None else float(value)


def _done(order: PendingOrder, filled: Decimal) -> PendingOrder:
    """A history order: the volume it was asked for, and what is left of it (none)."""
    initial = order.volume_initial if order.volume_initial is not None else order.volume
    return replace(order, volume=Decimal(0), volume_initial=max(initial, filled))


def _in_group(symbol: str, group: str | None, *, in_order: bool = False) -> bool:
    """MT5 symbol groups: comma-separated wildcard masks, "!" excluding; e.g. "*USD*,!EUR*".
    `in_order`: as documented, the conditions apply one after another, each inclusion adding
    the symbol if it matches and each exclusion removing it; else an exclusion wins wherever it
    stands and no inclusion means all."""
    if group is None:
        return True
    masks = [m.strip() for m in group.split(",") if m.strip()]
    if in_order:
        chosen = False
        for mask in masks:
            excludes = mask.startswith("!")
            if fnmatch.fnmatchcase(symbol, mask[1:] if excludes else mask):
                chosen = not excludes
        return chosen
    included = [m for m in masks if not m.startswith("!")]
    excluded = [m[1:] for m in masks if m.startswith("!")]
    if any(fnmatch.fnmatchcase(symbol, mask) for mask in excluded):
        return False
    return not included or any(fnmatch.fnmatchcase(symbol, mask) for mask in included)


def _stored_comment(comment: str, behaviour: TerminalBehaviour) -> str:
    """The comment the trade server keeps of a request's (rewritten, or cut, by some)."""
    if behaviour.server_comment is not None:
        return behaviour.server_comment
    if behaviour.server_comment_length is not None:
        return comment[: behaviour.server_comment_length]
    return comment


_DEAL_FILLINGS_BY_FLAG = ((FILLING_FOK, FillingPolicy.FOK), (FILLING_IOC, FillingPolicy.IOC))
_ORDER_TYPE_FLAGS = {
    OrderType.LIMIT: ORDER_LIMIT,
    OrderType.STOP: ORDER_STOP,
    OrderType.STOP_LIMIT: ORDER_STOP_LIMIT,
    OrderType.MARKET: ORDER_MARKET,
}
_EXPIRATION_FLAGS = {
    mt5.ORDER_TIME_GTC: EXPIRATION_GTC,
    mt5.ORDER_TIME_DAY: EXPIRATION_DAY,
    mt5.ORDER_TIME_SPECIFIED: EXPIRATION_SPECIFIED,
    mt5.ORDER_TIME_SPECIFIED_DAY: EXPIRATION_SPECIFIED_DAY,
}


def _flagged_fillings(modes: SymbolTradeModes) -> set[FillingPolicy]:
    return {policy for flag, policy in _DEAL_FILLINGS_BY_FLAG if modes.filling_mode & flag}


def _deal_fillings(modes: SymbolTradeModes) -> set[FillingPolicy]:
    """A market order's fillings by execution mode (MetaTrader 5's fill policy table): always
    FOK where the dealer quotes (Request, Instant); FOK and IOC as flagged in Market execution;
    those and RETURN in Exchange execution."""
    if modes.execution_mode in (
        mt5.SYMBOL_TRADE_EXECUTION_REQUEST,
        mt5.SYMBOL_TRADE_EXECUTION_INSTANT,
    ):
        return {FillingPolicy.FOK}
    flagged = _flagged_fillings(modes)
    if modes.execution_mode == mt5.SYMBOL_TRADE_EXECUTION_EXCHANGE:
        flagged.add(FillingPolicy.RETURN)
    return flagged


def _pending_fillings(modes: SymbolTradeModes) -> set[FillingPolicy]:
    """A pending order may always RETURN; FOK and IOC as flagged."""
    return {*_flagged_fillings(modes), FillingPolicy.RETURN}


def _selected_by(
    symbol: str,
    ticket: int,
    by_symbol: str | None,
    group: str | None,
    by_ticket: int | None,
    *,
    in_order: bool,
) -> bool:
    if by_ticket is not None:
        return ticket == by_ticket
    if by_symbol is not None:
        return symbol == by_symbol
    return _in_group(symbol, group, in_order=in_order)
