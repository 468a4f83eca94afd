"""The Terminal operations as blocking calls on one MetaTrader5 module object: the MT5 adapter.

The module (the MetaQuotes package, mt5linux's client, or the emulator) is bound to one
terminal, logged in to one account, and is not made for concurrent calls: a session is used by
one thread at a time (see runners.py and worker.py, which also keep it off the event loop).

Connection: the first call initializes the terminal (path, login, password, server, portable)
and checks the account it is logged in to; a call that finds the link to the terminal broken
raises TerminalError and makes the next call initialize again.

Failures: a query the module answers with None raises TerminalError, or SymbolNotFound for a
symbol the terminal does not know. order_send answering None is a refusal with a retcode when
the module did not send the request (malformed, Algo Trading disabled), else TerminalError: the
request may have been executed, and the engine reconciles by tag.

Reconciliation (find_by_tag): pending orders and positions whose comment is the tag, and the
history deals whose comment is the tag or whose order carried it, searched from a day before
the tag's child was created (tags from gateway.domain.ids carry that time) or
history_lookback back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from gateway.domain import retcodes
from gateway.domain.accounts import MarginMode
from gateway.domain.ids import TAG_PREFIX
from gateway.domain.symbols import SymbolSpec
from gateway.terminals.market import needs_pricing, priced_at_market, sent_at
from gateway.terminals.mt5 import constants as mt5
from gateway.terminals.mt5 import errors, records, requests
from gateway.terminals.mt5.records import Rounding
from gateway.terminals.mt5.requests import UnsendableRequest
from gateway.terminals.mt5.settings import Mt5Settings
from gateway.terminals.protocol import (
    AccountInfo,
    Deal,
    OrderRequest,
    OrderResult,
    PendingOrder,
    Position,
    Quote,
    SymbolNotFound,
    TaggedRecords,
    TerminalError,
    TerminalHealth,
    TradeAction,
)

# History is searched this much wider than asked on both sides: a server clock a little off,
# or a server_utc_offset an hour off after a daylight saving change, loses nothing.
HISTORY_SLACK = timedelta(days=1)

# The calls a runner may make on a session (the worker process serves exactly these).
SESSION_METHODS = frozenset(
    {
        "connect",
        "account_info",
        "symbol_spec",
        "quote",
        "send",
        "find_by_tag",
        "positions",
        "pending_orders",
        "deals",
        "health",
        "module_call",
        "close",
    }
)

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TAG_BODY_LENGTH = 20
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Mt5CallFailed(TerminalError):
    """A module function answered None; `code` and `text` are its last_error()."""

    def __init__(self, function: str, code: int, text: str) -> None:
        super().__init__(function, code, text)
        self.function = function
        self.code = code
        self.text = text

    def __str__(self) -> str:
        return f"{self.function} failed: {errors.describe(self.code, self.text)}"


class Mt5Session:
    def __init__(self, settings: Mt5Settings, *, module: Any | None = None) -> None:
        """`module`: the MetaTrader5-like object to use; None loads settings.module on the
        first call."""
        self._settings = settings
        self._module = module
        self._module_given = module is not None
        self._connected = False
        self._margin_mode = MarginMode.HEDGING
        self._currency_digits = 2
        self._roundings: dict[str, Rounding] = {}
        self._selected: set[str] = set()

    @property
    def settings(self) -> Mt5Settings:
        return self._settings

    # -- connection -------------------------------------------------------------------------

    def connect(self) -> None:
        """Connects now rather than on the first call. Raises TerminalError."""
        self._connected_module()

    def close(self) -> None:
        if self._module is not None and self._connected:
            with contextlib.suppress(Exception):  # the link is going away anyway
                self._module.shutdown()
        self._connected = False

    def _loaded_module(self) -> Any:
        if self._module is None:
            target = self._settings.module.target
            try:
                self._module = self._settings.module.load()
            except Exception as error:
                raise TerminalError(
                    f"cannot load the MetaTrader5 module {target}: {error}"
                ) from error
        return self._module

    def _connected_module(self) -> Any:
        module = self._loaded_module()
        if self._connected:
            return module
        settings = self._settings
        options: dict[str, Any] = {"login": settings.login, "timeout": settings.timeout_ms}
        if settings.password:
            options["password"] = settings.password
        if settings.server:
            options["server"] = settings.server
        if settings.portable:
            options["portable"] = True
        path = () if settings.terminal_path is None else (settings.terminal_path,)
        try:
            initialized = module.initialize(*path, **options)
            info = module.account_info() if initialized else None
        except Exception as error:
            self._lost(broken_transport=True)
            raise TerminalError(f"initialize failed: {error!r}") from error
        if not initialized:
            raise TerminalError(f"initialize failed: {errors.describe(*self._last_error())}")
        if info is None:
            raise TerminalError(f"account_info failed: {errors.describe(*self._last_error())}")
        if int(info.login) != settings.login:
            raise TerminalError(
                f"the terminal is logged in to account {info.login}, not {settings.login}"
            )
        self._margin_mode = records.margin_mode(info.margin_mode)
        self._currency_digits = int(info.currency_digits)
        self._connected = True
        return module

    def _lost(self, *, broken_transport: bool = False) -> None:
        """The link to the terminal is gone: the next call initializes again. A client object
        whose own connection broke (mt5linux) is made anew."""
        self._connected = False
        self._selected.clear()
        if broken_transport and self._settings.module.is_factory and not self._module_given:
            self._module = None

    def _last_error(self) -> tuple[int, str]:
        try:
            code, text = self._loaded_module().last_error()
            return int(code), str(text)
        except Exception as error:
            return mt5.RES_E_FAIL, f"last_error() failed: {error!r}"

    def _invoke(self, function: str, *args: Any, **kwargs: Any) -> Any:
        """One module call as it answers. Raises TerminalError if the call itself raised."""
        module = self._connected_module()
        try:
            return getattr(module, function)(*args, **kwargs)
        except Exception as error:
            self._lost(broken_transport=True)
            raise TerminalError(f"{function} failed: {error!r}") from error

    def _failure(self, function: str) -> Mt5CallFailed:
        code, text = self._last_error()
        if errors.breaks_link(code):
            self._lost()
        return Mt5CallFailed(function, code, text)

    def _query(self, function: str, *args: Any, **kwargs: Any) -> Any:
        """A call that answers one record. Raises Mt5CallFailed when it answers None."""
        value = self._invoke(function, *args, **kwargs)
        if value is None:
            raise self._failure(function)
        return value

    def _records(self, function: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """A call that answers a tuple of records; None with RES_S_OK is an empty answer (some
        terminal builds give it for "none")."""
        value = self._invoke(function, *args, **kwargs)
        if value is None:
            code, _ = self._last_error()
            if code == mt5.RES_S_OK:
                return ()
            raise self._failure(function)
        return tuple(value)

    # -- queries ----------------------------------------------------------------------------

    def account_info(self) -> AccountInfo:
        info = self._query("account_info")
        digits = int(info.currency_digits)
        self._currency_digits = digits
        self._margin_mode = records.margin_mode(info.margin_mode)
        return AccountInfo(
            login=int(info.login),
            currency=info.currency,
            leverage=int(info.leverage),
            margin_mode=self._margin_mode,
            balance=records.money(info.balance, digits),
            equity=records.money(info.equity, digits),
            margin=records.money(info.margin, digits),
            free_margin=records.money(info.margin_free, digits),
            time=datetime.now(UTC),
        )

    def symbol_spec(self, symbol: str) -> SymbolSpec:
        info = self._symbol_info(symbol)
        try:
            spec = records.symbol_spec(info)
        except ValueError as error:
            raise TerminalError(
                f"{symbol}: the terminal's specification is unusable: {error}"
            ) from error
        self._roundings[symbol] = Rounding.of(spec)
        if not info.visible:
            self._select(symbol)
        return spec

    def quote(self, symbol: str) -> Quote:
        quote = self._quote(symbol)
        if quote is None:
            raise TerminalError(f"{symbol}: no quote yet")
        return quote

    def _quote(self, symbol: str) -> Quote | None:
        """The terminal's tick; None while it has no price yet."""
        rounding = self._rounding(symbol, unknown=None)
        self._select(symbol)
        tick = self._query("symbol_info_tick", symbol)
        if tick.bid <= 0 or tick.ask <= 0:
            return None
        return Quote(
            symbol=symbol,
            bid=rounding.price(tick.bid),
            ask=rounding.price(tick.ask),
            time=records.utc_time(tick.time_msc, self._settings.server_utc_offset),
        )

    def positions(self) -> list[Position]:
        return [self._position(r) for r in self._records("positions_get")]

    def pending_orders(self) -> list[PendingOrder]:
        return [self._pending_order(r) for r in self._records("orders_get")]

    def deals(self, since: datetime) -> list[Deal]:
        window = self._history_window(since)
        deals = (self._deal(r) for r in self._records("history_deals_get", *window) if _trade(r))
        return [d for d in deals if d.executed_at >= since]

    def find_by_tag(self, tag: str) -> TaggedRecords:
        orders = tuple(
            self._pending_order(r) for r in self._records("orders_get") if r.comment == tag
        )
        positions = tuple(
            self._position(r) for r in self._records("positions_get") if r.comment == tag
        )
        window = self._history_window(self._tag_search_start(tag))
        # Deals are matched by their order too, in case the server rewrote a deal's comment.
        tagged_orders = {
            int(r.ticket) for r in self._records("history_orders_get", *window) if r.comment == tag
        }
        deals = tuple(
            self._deal(r)
            for r in self._records("history_deals_get", *window)
            if _trade(r) and (r.comment == tag or int(r.order) in tagged_orders)
        )
        return TaggedRecords(orders=orders, positions=positions, deals=deals)

    def health(self) -> TerminalHealth:
        try:
            self._connected_module()
            info = self._query("terminal_info")
        except TerminalError as error:
            return TerminalHealth(connected=False, detail=str(error))
        if not info.connected:
            return TerminalHealth(connected=False, detail="no connection to the trade server")
        settings = self._settings
        detail = (
            f"account {settings.login} on {settings.server or 'its server'}, build {info.build}"
        )
        if not info.trade_allowed:
            detail += "; Algo Trading is disabled in the terminal: orders are refused"
        return TerminalHealth(connected=True, detail=detail)

    def module_call(self, function: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Any function of the module, its answer as plain tuples and dicts: for diagnostics and
        the emulator's controls. Does not connect first."""
        return _plain(getattr(self._loaded_module(), function)(*args, **kwargs))

    # -- trading ----------------------------------------------------------------------------

    def send(self, request: OrderRequest) -> OrderResult:
        priced = needs_pricing(request)
        if priced:
            # The terminal's own tick, right before order_send: the price the request leaves at.
            quote = self._quote(request.symbol)
            if quote is None:
                return OrderResult(retcodes.PRICE_OFF, "No prices: no quote yet; not sent")
            pricing = priced_at_market(request, quote.bid, quote.ask)
            if isinstance(pricing, OrderResult):
                return pricing
            request = pricing
        result = self._send(request)
        return sent_at(result, request) if priced else result

    def _send(self, request: OrderRequest) -> OrderResult:
        rounding = records.UNROUNDED
        if request.action in (TradeAction.DEAL, TradeAction.PENDING):
            rounding = self._rounding(request.symbol, unknown=records.UNROUNDED)
            if rounding is not records.UNROUNDED:
                self._select(request.symbol)
        current_price = None
        if request.action is TradeAction.MODIFY and request.price is None:
            current_price = self._order_price(request.order_ticket)
        try:
            payload = requests.order_send_request(
                request,
                server_utc_offset=self._settings.server_utc_offset,
                current_price=current_price,
            )
        except UnsendableRequest as error:
            return OrderResult(retcodes.INVALID, f"Invalid request: {error}")
        result = self._invoke("order_send", payload)
        if result is None:
            code, text = self._last_error()
            refused = errors.refusal_retcode(code)
            if refused is not None:
                return OrderResult(refused, f"not sent: {errors.describe(code, text)}")
            if errors.breaks_link(code):
                self._lost()
            raise TerminalError(f"order_send: outcome unknown: {errors.describe(code, text)}")
        # From here on the request was answered: nothing may raise.
        return self._result(request, result, rounding)

    def _result(self, request: OrderRequest, result: Any, rounding: Rounding) -> OrderResult:
        if rounding is records.UNROUNDED:
            rounding = self._quietly(lambda: self._rounding(request.symbol), records.UNROUNDED)
        order_ticket = int(result.order) or request.order_ticket
        deal_ticket = int(result.deal)
        position_ticket = request.position_ticket
        executed_at = None
        if deal_ticket:
            deal = self._quietly(lambda: self._deal_record(order_ticket, deal_ticket), None)
            if deal is not None:
                position_ticket = int(deal.position_id)
                executed_at = records.utc_time(deal.time_msc, self._settings.server_utc_offset)
            elif not position_ticket:
                position_ticket = self._quietly(
                    lambda: self._opened_position(request, order_ticket), 0
                )
        return OrderResult(
            retcode=int(result.retcode),
            text=str(result.comment),
            order_ticket=order_ticket,
            deal_ticket=deal_ticket,
            position_ticket=position_ticket,
            volume=rounding.volume(result.volume),
            price=rounding.optional_price(result.price),
            bid=rounding.optional_price(result.bid),
            ask=rounding.optional_price(result.ask),
            executed_at=executed_at,
        )

    def _deal_record(self, order_ticket: int, deal_ticket: int) -> Any:
        """The deal an order_send made, from the history (None if not there yet)."""
        if not order_ticket:
            return None
        deals = self._records("history_deals_get", ticket=order_ticket)
        return next((d for d in deals if int(d.ticket) == deal_ticket), None)

    def _opened_position(self, request: OrderRequest, order_ticket: int) -> int:
        """The position a deal went to, when its deal is not in the history yet."""
        if self._margin_mode is MarginMode.HEDGING:
            return order_ticket  # a hedging position's ticket is its opening order's
        positions = self._records("positions_get", symbol=request.symbol)
        return int(positions[0].ticket) if len(positions) == 1 else 0

    def _order_price(self, ticket: int) -> Decimal | None:
        orders = self._records("orders_get", ticket=ticket)
        if not orders:
            return None
        return self._rounding(orders[0].symbol).price(orders[0].price_open)

    # -- records ----------------------------------------------------------------------------

    def _symbol_info(self, symbol: str) -> Any:
        try:
            return self._query("symbol_info", symbol)
        except Mt5CallFailed as failed:
            if errors.means_not_found(failed.code):
                raise SymbolNotFound(symbol) from None
            raise

    def _rounding(self, symbol: str, unknown: Rounding | None = records.UNROUNDED) -> Rounding:
        """How the symbol's prices and volumes round; `unknown` for a symbol the terminal does
        not know (None: raise SymbolNotFound)."""
        rounding = self._roundings.get(symbol)
        if rounding is not None:
            return rounding
        try:
            info = self._symbol_info(symbol)
        except SymbolNotFound:
            if unknown is None:
                raise
            return unknown
        digits_point = Decimal(1).scaleb(-int(info.digits))
        step = records.decimal_of(info.volume_step) if info.volume_step > 0 else None
        rounding = Rounding(digits_point, step or records.UNROUNDED.volume_step)
        self._roundings[symbol] = rounding
        return rounding

    def _select(self, symbol: str) -> None:
        """Puts the symbol in Market Watch, where the terminal keeps its quotes current."""
        if symbol in self._selected:
            return
        if not self._invoke("symbol_select", symbol, True):
            failed = self._failure("symbol_select")
            if errors.means_not_found(failed.code):
                raise SymbolNotFound(symbol)
            raise failed
        self._selected.add(symbol)

    def _position(self, record: Any) -> Position:
        return records.position(
            record, self._rounding(record.symbol), self._settings.server_utc_offset
        )

    def _pending_order(self, record: Any) -> PendingOrder:
        return records.pending_order(
            record, self._rounding(record.symbol), self._settings.server_utc_offset
        )

    def _deal(self, record: Any) -> Deal:
        return records.deal(
            record,
            self._rounding(record.symbol),
            self._settings.server_utc_offset,
            self._currency_digits,
        )

    # -- history windows --------------------------------------------------------------------

    def _history_window(self, start: datetime) -> tuple[int, int]:
        """(date_from, date_to) in server seconds, for history from `start` until now."""
        offset = self._settings.server_utc_offset
        first = requests.server_seconds(start - HISTORY_SLACK, offset)
        last = requests.server_seconds(datetime.now(UTC) + HISTORY_SLACK, offset)
        return max(0, first), last

    def _tag_search_start(self, tag: str) -> datetime:
        created = tag_created_at(tag)
        if created is None:
            return datetime.now(UTC) - self._settings.history_lookback
        return created

    @staticmethod
    def _quietly(work: Callable[[], Any], fallback: Any) -> Any:
        """What `work` gives, or `fallback` if it fails: for what follows an answered order."""
        try:
            return work()
        except Exception:
            return fallback


def tag_created_at(tag: str) -> datetime | None:
    """When the child order of a gateway tag was created ("mam:" + 20 Crockford base32
    characters, the first 48 bits milliseconds: see gateway.domain.ids), or None."""
    body = tag.removeprefix(TAG_PREFIX)
    if body == tag or len(body) != _TAG_BODY_LENGTH:
        return None
    number = 0
    for char in body:
        index = _CROCKFORD.find(char)
        if index < 0:
            return None
        number = number * 32 + index
    return _EPOCH + timedelta(milliseconds=number >> 52)


def _trade(record: Any) -> bool:
    return records.is_trade(record)


def _plain(value: Any) -> Any:
    """Named tuples as dicts, tuples as tuples, all the way down (picklable without the
    module's own types)."""
    if hasattr(value, "_asdict"):
        return {key: _plain(item) for key, item in value._asdict().items()}
    if isinstance(value, tuple | list):
        return tuple(_plain(item) for item in value)
    return value
