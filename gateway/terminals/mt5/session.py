"""The Terminal operations as blocking calls on one MetaTrader5 module object: the MT5 adapter.

The module (the MetaQuotes package, mt5linux's client, or the emulator) is bound to one
terminal, logged in to one account, and is not made for concurrent calls: a session is used by
one thread at a time (see runners.py and worker.py, which also keep it off the event loop).

The right account or none: the first call claims the terminal (a lock in its folder, one session
per terminal64.exe: terminal_lock.py), initializes it (path, login, password, server, portable)
and checks the account it is logged in to, login and server. The account is checked again
before every send and every reconciliation (anything can switch a terminal's account: another
program, a person, a second session given the same path); a terminal found on another account
is disconnected and nothing is sent. A call that finds the link to the terminal broken raises
TerminalError and makes the next call shut the old connection down and initialize again.

Failures: a query the module answers with None raises TerminalError, or SymbolNotFound for a
symbol the terminal says it does not know; None with RES_S_OK or RES_E_NOT_FOUND from a
records query is "none". order_send answering None is a refusal with a retcode when the module
did not send the request (malformed, Algo Trading disabled), else TerminalError: the request may
have been executed, and the engine reconciles by tag.

Deals: the fill of a market order is its deal. When the answer names no deal or price (PLACED:
the server executes it asynchronously; DONE from some bridges), the deal is read from the
history by the order's ticket; an order still working, or filled in several deals, is an
unknown outcome for the engine to reconcile by tag.

Reconciliation (find_by_tag): pending orders and positions whose comment is the tag, and the
history deals whose comment is the tag or whose order carried it or was answered to it
(sent_requests.py), searched from a day before the tag's child was created (tags from
gateway.domain.ids carry that time) or history_lookback back. Records that match what was sent
but whose comment a broker rewrote, and orders still executing, make it ambiguous: it raises
TerminalError, and the engine leaves the child UNKNOWN rather than send it again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from gateway.domain import retcodes
from gateway.domain.accounts import MarginMode
from gateway.domain.ids import TAG_PREFIX
from gateway.domain.orders import FillingPolicy
from gateway.domain.symbols import SymbolSpec
from gateway.terminals.market import needs_pricing, priced_at_market, sent_at
from gateway.terminals.mt5 import constants as mt5
from gateway.terminals.mt5 import errors, records, requests
from gateway.terminals.mt5.records import Rounding, SymbolTerms
from gateway.terminals.mt5.requests import UnsendableRequest
from gateway.terminals.mt5.sent_requests import SentRequest, SentRequests
from gateway.terminals.mt5.settings import Mt5Settings
from gateway.terminals.mt5.terminal_lock import TerminalInUse, TerminalLock
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
# Records this much older than a child's first send (or its tag's creation) cannot be its
# lookalikes: an hour for a server_utc_offset not yet moved for daylight saving, and minutes of
# clocks apart.
LOOKALIKE_SLACK = timedelta(hours=1, minutes=5)
# How often the session looks again for what a terminal delivers moments later (a deal in the
# history, a symbol's data after symbol_select).
POLL_INTERVAL_S = 0.02
# How long a symbol just put in Market Watch may take to get its tick value from the server.
SYMBOL_DATA_WAIT_S = 1.0

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
# The requests whose orders and deals carry the child's tag.
_TAGGED_ACTIONS = (TradeAction.DEAL, TradeAction.PENDING)
_MARKET_ORDER_TYPES = (mt5.ORDER_TYPE_BUY, mt5.ORDER_TYPE_SELL)
_NOT_CONNECTED_YET = "not connected yet: the first call that needs the terminal initializes it"


class Mt5CallFailed(TerminalError):
    """A module function answered None; `code` and `text` are its last_error()."""

    def __init__(self, function: str, code: int, text: str) -> None:
        super().__init__(function, code, text)
        self.function = function
        self.code = code
        self.text = text

    def __str__(self) -> str:
        return f"{self.function} failed: {errors.describe(self.code, self.text)}"


class WrongAccount(TerminalError):
    """The terminal is logged in to another account (or server) than the session's."""


class OutcomeUnknown(TerminalError):
    """What the broker did cannot be told from the terminal now (an order still executing,
    records whose comment the broker rewrote): the engine must not send the child again."""


class Mt5Session:
    def __init__(self, settings: Mt5Settings, *, module: Any | None = None) -> None:
        """`module`: the MetaTrader5-like object to use; None loads settings.module on the
        first call."""
        self._settings = settings
        self._module = module
        self._module_given = module is not None
        self._connected = False
        # Whether initialize() was called on the current module object (a new one needs
        # shutdown() first).
        self._initialize_called = False
        self._not_connected_why = _NOT_CONNECTED_YET
        self._terminal_lock: TerminalLock | None = None
        self._margin_mode = MarginMode.HEDGING
        self._currency_digits = 2
        self._terms: dict[str, SymbolTerms] = {}
        self._selected: set[str] = set()
        self._sent = SentRequests()

    @property
    def settings(self) -> Mt5Settings:
        return self._settings

    # -- connection -------------------------------------------------------------------------

    def connect(self) -> None:
        """Connects now rather than on the first call. Raises TerminalError."""
        self._connected_module()

    def close(self) -> None:
        if self._module is not None and self._initialize_called:
            with contextlib.suppress(Exception):  # the link is going away anyway
                self._module.shutdown()
        self._initialize_called = False
        self._connected = False
        self._not_connected_why = "closed"
        if self._terminal_lock is not None:
            self._terminal_lock.release()
            self._terminal_lock = None

    def _loaded_module(self) -> Any:
        if self._module is None:
            target = self._settings.module.target
            try:
                self._module = self._settings.module.load()
            except Exception as error:
                self._not_connected_why = f"cannot load the MetaTrader5 module {target}: {error}"
                raise TerminalError(self._not_connected_why) from error
            self._initialize_called = False
        return self._module

    def _connected_module(self) -> Any:
        module = self._loaded_module()
        if self._connected:
            return module
        settings = self._settings
        self._claim_terminal()
        if self._initialize_called:
            # Initializing again over the old IPC connection can leave it half open: the
            # package's way is shutdown() first.
            with contextlib.suppress(Exception):
                module.shutdown()
            self._initialize_called = False
        options: dict[str, Any] = {"login": settings.login, "timeout": settings.timeout_ms}
        if settings.password:
            options["password"] = settings.password
        if settings.server:
            options["server"] = settings.server
        if settings.portable:
            options["portable"] = True
        try:
            self._initialize_called = True
            initialized = module.initialize(settings.terminal_path, **options)
            info = module.account_info() if initialized else None
        except Exception as error:
            self._lost(f"initialize failed: {error!r}", broken_transport=True)
            raise TerminalError(self._not_connected_why) from error
        if not initialized:
            self._not_connected_why = f"initialize failed: {errors.describe(*self._last_error())}"
            raise TerminalError(self._not_connected_why)
        if info is None:
            why = f"account_info failed: {errors.describe(*self._last_error())}"
            self._not_connected_why = why
            raise TerminalError(why)
        mismatch = self._account_mismatch(info)
        if mismatch is not None:
            self._not_connected_why = mismatch
            raise WrongAccount(mismatch)
        self._margin_mode = records.margin_mode(info.margin_mode)
        self._currency_digits = int(info.currency_digits)
        self._connected = True
        return module

    def _claim_terminal(self) -> None:
        """Takes the terminal's lock once per session (kept across reconnections)."""
        if self._terminal_lock is not None:
            return
        settings = self._settings
        try:
            self._terminal_lock = TerminalLock.acquire(
                settings.terminal_path, f"account {settings.login}"
            )
        except TerminalError as error:
            self._not_connected_why = str(error)
            raise

    def _account_mismatch(self, info: Any) -> str | None:
        """Why the terminal's account is not this session's, or None when it is."""
        settings = self._settings
        if int(info.login) == settings.login and (
            not settings.server or str(info.server) == settings.server
        ):
            return None
        expected = f"{settings.login} on {settings.server!r}" if settings.server else settings.login
        actual = f"{info.login} on {info.server!r}"
        return f"the terminal is logged in to account {actual}, not {expected}"

    def _verified_account(self) -> Any:
        """The terminal's account_info, checked to be this session's. Raises WrongAccount (and
        disconnects: the next call initializes with this session's login again)."""
        info = self._query("account_info")
        mismatch = self._account_mismatch(info)
        if mismatch is not None:
            self._lost(mismatch)
            raise WrongAccount(mismatch)
        return info

    def _lost(self, why: str, *, broken_transport: bool = False) -> None:
        """The link to the terminal is gone: the next call initializes again. A client object
        whose own connection broke (mt5linux) is made anew."""
        self._connected = False
        self._not_connected_why = why
        self._selected.clear()
        if broken_transport and self._settings.module.is_factory and not self._module_given:
            self._module = None
            self._initialize_called = False

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
            self._lost(f"{function} failed: {error!r}", broken_transport=True)
            raise TerminalError(f"{function} failed: {error!r}") from error

    def _failure(self, function: str) -> Mt5CallFailed:
        code, text = self._last_error()
        failed = Mt5CallFailed(function, code, text)
        if errors.breaks_link(code):
            self._lost(str(failed))
        return failed

    def _query(self, function: str, *args: Any, **kwargs: Any) -> Any:
        """A call that answers one record. Raises Mt5CallFailed when it answers None."""
        value = self._invoke(function, *args, **kwargs)
        if value is None:
            raise self._failure(function)
        return value

    def _records(self, function: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """A call that answers a tuple of records. None with RES_S_OK or RES_E_NOT_FOUND is an
        empty answer: terminal builds say "none" so."""
        value = self._invoke(function, *args, **kwargs)
        if value is None:
            failed = self._failure(function)
            if errors.means_none_found(failed.code):
                return ()
            raise failed
        return tuple(value)

    # -- queries ----------------------------------------------------------------------------

    def account_info(self) -> AccountInfo:
        info = self._verified_account()
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
        # Market Watch first: a terminal may not have the tick value or the prices of a symbol
        # outside it, and a spec read then is refused (or wrong).
        self._select(symbol)
        deadline = time.monotonic() + SYMBOL_DATA_WAIT_S
        while True:
            info = self._symbol_info(symbol)
            try:
                spec = records.symbol_spec(info)
                break
            except ValueError as error:
                # Just selected: its data is on the way from the trade server.
                if time.monotonic() >= deadline:
                    raise TerminalError(
                        f"{symbol}: the terminal's specification is unusable: {error}"
                    ) from error
                time.sleep(POLL_INTERVAL_S)
        self._terms[symbol] = records.symbol_terms(info)
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
        self._verified_account()
        return [self._position(r) for r in self._records("positions_get")]

    def pending_orders(self) -> list[PendingOrder]:
        self._verified_account()
        return [self._pending_order(r) for r in self._records("orders_get")]

    def deals(self, since: datetime) -> list[Deal]:
        self._verified_account()
        window = self._history_window(since)
        deals = (self._deal(r) for r in self._records("history_deals_get", *window) if _trade(r))
        return [d for d in deals if d.executed_at >= since]

    def find_by_tag(self, tag: str) -> TaggedRecords:
        self._verified_account()
        sent = self._sent.get(tag)
        answered = frozenset(sent.order_tickets) if sent is not None else frozenset()
        active = self._records("orders_get")
        open_positions = self._records("positions_get")
        start = self._tag_search_start(tag)
        window = self._history_window(start)
        history_orders = list(self._records("history_orders_get", *window))
        history_deals = [r for r in self._records("history_deals_get", *window) if _trade(r)]
        # Orders answered to this tag but outside the window (a child older than the lookback):
        # read by their tickets.
        for ticket in sorted(answered - {int(r.ticket) for r in (*active, *history_orders)}):
            history_orders.extend(self._records("history_orders_get", ticket=ticket))
            history_deals.extend(
                r
                for r in self._records("history_deals_get", ticket=ticket)
                if _trade(r) and r not in history_deals
            )
        # The tag's orders: by comment, or answered to this session's request under it (the
        # comment may have been rewritten). Their deals are the tag's whatever their comment.
        tagged_orders = answered | {
            int(r.ticket) for r in (*active, *history_orders) if r.comment == tag
        }
        orders = [r for r in active if int(r.ticket) in tagged_orders]
        executing = [r for r in orders if _executes_now(r, sent)]
        if executing:
            raise OutcomeUnknown(
                f"{tag}: order {executing[0].ticket} is still executing at the broker"
            )
        seen = {int(r.ticket) for r in (*active, *history_orders)}
        if unseen := answered - seen:
            raise OutcomeUnknown(
                f"{tag}: order {min(unseen)} was accepted, and the terminal has it neither "
                "working nor in its history yet"
            )
        deals = [r for r in history_deals if r.comment == tag or int(r.order) in tagged_orders]
        positions = [r for r in open_positions if r.comment == tag or int(r.identifier) in answered]
        found = TaggedRecords(
            orders=tuple(self._pending_order(r) for r in orders),
            positions=tuple(self._position(r) for r in positions),
            deals=tuple(self._deal(r) for r in deals),
        )
        if not self._covers(found, sent):
            lookalikes = self._lookalikes(
                tag,
                sent,
                since=(start if sent is None else sent.first_sent_at) - LOOKALIKE_SLACK,
                active=active,
                history_deals=history_deals,
                attributed=tagged_orders | self._sent.orders_of_other_tags(tag),
            )
            if lookalikes:
                raise OutcomeUnknown(
                    f"{tag}: not found by its comment, but {', '.join(lookalikes[:3])} may be "
                    "its child with the comment rewritten by the broker: left to be resolved, "
                    "never sent again"
                )
        return found

    @staticmethod
    def _covers(found: TaggedRecords, sent: SentRequest | None) -> bool:
        """Whether what was found by tag is all there can be of the child, so that records
        without the tag cannot be part of it. What this session sent tells the volume; for a
        child it did not send (after a restart), anything found is taken as all of it."""
        if sent is None or sent.action is not TradeAction.DEAL:
            return bool(found.orders or found.positions or found.deals)
        filled = sum((d.volume for d in found.deals), Decimal(0))
        return filled >= sent.volume

    def _lookalikes(
        self,
        tag: str,
        sent: SentRequest | None,
        *,
        since: datetime,
        active: Iterable[Any],
        history_deals: Iterable[Any],
        attributed: frozenset[int],
    ) -> list[str]:
        """The working orders and trade deals that may be the tag's child with its comment
        rewritten: placed by an expert (the API) since `since`, carrying no gateway tag, of no
        order known to be another tag's, and (when this session sent the tag) with its magic,
        symbol, side and a volume it fits."""
        offset = self._settings.server_utc_offset
        found: list[str] = []
        for order in active:
            side, _ = records.order_side_and_type(order)
            if (
                int(order.ticket) not in attributed
                and int(order.reason) == mt5.ORDER_REASON_EXPERT
                and tag_created_at(order.comment) is None
                and records.utc_time(order.time_setup_msc, offset) >= since
                and (
                    sent is None
                    or _same_request(sent, order, side, self._volume(order, "volume_initial"))
                )
            ):
                found.append(f"order {order.ticket} ({order.comment!r})")
        for deal in history_deals:
            volume = self._volume(deal, "volume")
            if (
                int(deal.order) not in attributed
                and int(deal.reason) == mt5.DEAL_REASON_EXPERT
                and tag_created_at(deal.comment) is None
                and records.utc_time(deal.time_msc, offset) >= since
                and (sent is None or _same_request(sent, deal, records.deal_side(deal), volume))
            ):
                found.append(f"deal {deal.ticket} ({deal.comment!r})")
        return found

    def _volume(self, record: Any, field: str) -> Decimal:
        return self._rounding(record.symbol).volume(getattr(record, field))

    def health(self) -> TerminalHealth:
        """Whether the terminal is connected and can trade, and why not. Never initializes the
        terminal itself (which would launch it): a terminal not connected yet, or whose link
        broke, is connected by the next call that needs it."""
        if not self._connected:
            return TerminalHealth(connected=False, detail=self._not_connected_why)
        try:
            account = self._verified_account()
            info = self._query("terminal_info")
        except TerminalError as error:
            return TerminalHealth(connected=False, detail=str(error))
        if not info.connected:
            return TerminalHealth(connected=False, detail="no connection to the trade server")
        settings = self._settings
        detail = f"account {settings.login} on {account.server}, build {info.build}"
        refusals = []
        if not info.trade_allowed:
            refusals.append("Algo Trading is disabled in the terminal")
        if info.tradeapi_disabled:
            refusals.append(
                "the terminal's option disabling algorithmic trading through the Python API is on"
            )
        if not account.trade_allowed:
            refusals.append("the account may not trade (logged in with an investor password?)")
        if not account.trade_expert:
            refusals.append("the broker does not allow automated trading on this account")
        if refusals:
            detail += "; orders are refused: " + "; ".join(refusals)
        return TerminalHealth(connected=True, detail=detail)

    def module_call(self, function: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Any function of the module, its answer as plain tuples and dicts: for diagnostics and
        the emulator's controls. Does not connect first."""
        return _plain(getattr(self._loaded_module(), function)(*args, **kwargs))

    # -- trading ----------------------------------------------------------------------------

    def send(self, request: OrderRequest) -> OrderResult:
        try:
            # Right before the request leaves: the terminal's account may have been switched
            # since the last call, and then nothing may be sent on it.
            self._verified_account()
        except (WrongAccount, TerminalInUse) as not_ours:
            # Nothing was sent: a refusal, not an unknown outcome to reconcile.
            return OrderResult(retcodes.CONNECTION, f"not sent: {not_ours}")
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
        terms: SymbolTerms | None = None
        wanted = request.filling
        if request.action in _TAGGED_ACTIONS:
            terms = self._symbol_terms(request.symbol)
            if terms is not None:
                self._select(request.symbol)
                # The symbol's server refuses a filling it does not offer (INVALID_FILL, for every
                # child at that broker): the nearest one it offers.
                request = dataclasses.replace(request, filling=requests.filling_for(request, terms))
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
        if request.action in _TAGGED_ACTIONS:
            self._sent.sending(request, datetime.now(UTC))
        result = self._invoke("order_send", payload)
        if result is None:
            code, text = self._last_error()
            refused = errors.refusal_retcode(code)
            if refused is not None:
                return OrderResult(refused, f"not sent: {errors.describe(code, text)}")
            if errors.breaks_link(code):
                self._lost(f"order_send failed: {errors.describe(code, text)}")
            raise TerminalError(f"order_send: outcome unknown: {errors.describe(code, text)}")
        # From here on the request was answered: nothing may raise but TerminalError (outcome
        # unknown, reconciled by tag).
        rounding = terms.rounding if terms is not None else None
        # RETURN in place of FOK or IOC leaves the rest of a partial fill working at the broker,
        # where the engine does not look for it: it is taken back before answering.
        returned_rest = (
            request.action is TradeAction.DEAL
            and request.filling is FillingPolicy.RETURN
            and wanted is not FillingPolicy.RETURN
        )
        return self._answered(request, result, rounding, returned_rest=returned_rest)

    def _answered(
        self,
        request: OrderRequest,
        result: Any,
        rounding: Rounding | None,
        *,
        returned_rest: bool,
    ) -> OrderResult:
        if rounding is None:
            rounding = self._quietly(lambda: self._rounding(request.symbol), records.UNROUNDED)
        retcode = int(result.retcode)
        order_ticket = int(result.order) or request.order_ticket
        if order_ticket and request.action in _TAGGED_ACTIONS:
            self._sent.accepted(request.tag, order_ticket)
        accepted = retcodes.classify(retcode) is retcodes.RetcodeClass.SUCCESS
        if request.action is TradeAction.DEAL and accepted:
            return self._deal_result(request, result, rounding, order_ticket, returned_rest)
        deal_ticket = int(result.deal)
        position_ticket = request.position_ticket
        executed_at = None
        if deal_ticket:
            deal = self._quietly(lambda: self._deal_record(order_ticket, deal_ticket), None)
            if deal is not None:
                position_ticket = int(deal.position_id)
                executed_at = records.utc_time(deal.time_msc, self._settings.server_utc_offset)
        return OrderResult(
            retcode=retcode,
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

    def _deal_result(
        self,
        request: OrderRequest,
        result: Any,
        rounding: Rounding,
        order_ticket: int,
        returned_rest: bool,
    ) -> OrderResult:
        """A market order the server accepted: filled as its deal says. The answer's deal when
        it names one with its price; else (PLACED: executed asynchronously; DONE without deal
        or price) the order's one deal from the history, once the order is done. Raises
        TerminalError (outcome unknown, reconciled by tag) when there is no such one deal."""
        retcode = int(result.retcode)
        deal_ticket = int(result.deal)
        bid, ask = rounding.optional_price(result.bid), rounding.optional_price(result.ask)
        if returned_rest and retcode == retcodes.DONE_PARTIAL:
            self._remove_rest(request, order_ticket)
        elif deal_ticket and result.price > 0 and result.volume > 0:
            position_ticket = request.position_ticket
            executed_at = None
            deal = self._quietly(lambda: self._deal_record(order_ticket, deal_ticket), None)
            if deal is not None:
                position_ticket = int(deal.position_id)
                executed_at = records.utc_time(deal.time_msc, self._settings.server_utc_offset)
            elif not position_ticket:
                position_ticket = self._quietly(
                    lambda: self._opened_position(request, order_ticket), 0
                )
            return OrderResult(
                retcode=retcode,
                text=str(result.comment),
                order_ticket=order_ticket,
                deal_ticket=deal_ticket,
                position_ticket=position_ticket,
                volume=rounding.volume(result.volume),
                price=rounding.price(result.price),
                bid=bid,
                ask=ask,
                executed_at=executed_at,
            )
        deal = self._settled_deal(request, order_ticket, str(result.comment))
        volume = rounding.volume(deal.volume)
        if retcode == retcodes.PLACED:
            # Executed since: as a synchronous answer would have said.
            retcode = retcodes.DONE if volume >= request.volume else retcodes.DONE_PARTIAL
        return OrderResult(
            retcode=retcode,
            text=str(result.comment),
            order_ticket=order_ticket,
            deal_ticket=int(deal.ticket),
            position_ticket=int(deal.position_id),
            volume=volume,
            price=rounding.price(deal.price),
            bid=bid,
            ask=ask,
            executed_at=records.utc_time(deal.time_msc, self._settings.server_utc_offset),
        )

    def _settled_deal(self, request: OrderRequest, order_ticket: int, answer: str) -> Any:
        """The one deal of an accepted market order, once the order no longer works and its
        deal has reached the history (waiting up to deal_wait_s). Raises TerminalError."""
        if not order_ticket:
            raise TerminalError(f"{request.tag}: accepted without an order ticket: outcome unknown")
        wait_s = self._settings.deal_wait_s
        deadline = time.monotonic() + wait_s
        while True:
            deals = [
                d for d in self._records("history_deals_get", ticket=order_ticket) if _trade(d)
            ]
            working = self._records("orders_get", ticket=order_ticket)
            if deals and not working:
                break
            if time.monotonic() >= deadline:
                state = "still working" if working else "no deal of it in the history"
                raise TerminalError(
                    f"order {order_ticket} accepted ({answer}) without its deal, {state} after "
                    f"{wait_s}s: outcome unknown"
                )
            time.sleep(POLL_INTERVAL_S)
        if len(deals) != 1:
            # Each deal is a fill of its own, at its own price: reconciliation takes them in.
            raise TerminalError(
                f"order {order_ticket} filled in {len(deals)} deals: outcome read by tag"
            )
        return deals[0]

    def _remove_rest(self, request: OrderRequest, order_ticket: int) -> None:
        remove = {
            "action": mt5.TRADE_ACTION_REMOVE,
            "order": order_ticket,
            "magic": request.magic,
            "comment": request.tag,
        }
        # If it fails, the order is still working or gone: the deal reading below tells.
        with contextlib.suppress(TerminalError):
            self._invoke("order_send", remove)

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

    # -- symbols ----------------------------------------------------------------------------

    def _symbol_info(self, symbol: str) -> Any:
        info = self._invoke("symbol_info", symbol)
        if info is None:
            raise self._symbol_failure("symbol_info", symbol)
        return info

    def _symbol_failure(self, function: str, symbol: str) -> Exception:
        """SymbolNotFound when the terminal does not know the symbol, else the failure. A
        generic failure ("Call failed": the terminal not ready, the server slow) is not taken
        for "no such symbol": the terminal's symbol list tells."""
        failed = self._failure(function)
        if errors.means_not_found(failed.code):
            return SymbolNotFound(symbol)
        if errors.breaks_link(failed.code) or self._terminal_may_know(symbol):
            return failed
        return SymbolNotFound(symbol)

    def _terminal_may_know(self, symbol: str) -> bool:
        """False only when the terminal's symbol list, read now, lacks the symbol."""
        # A name that reads as a group mask (a leading "!", commas) is looked for in the whole
        # list.
        plain = not symbol.startswith("!") and "," not in symbol
        try:
            listed = self._invoke("symbols_get", group=symbol) if plain else None
            if listed is None:
                listed = self._invoke("symbols_get")
        except TerminalError:
            return True
        return listed is None or any(s.name == symbol for s in listed)

    def _symbol_terms(self, symbol: str) -> SymbolTerms | None:
        """The symbol's terms, read once; None for a symbol the terminal does not know."""
        terms = self._terms.get(symbol)
        if terms is None:
            try:
                terms = records.symbol_terms(self._symbol_info(symbol))
            except SymbolNotFound:
                return None
            self._terms[symbol] = terms
        return terms

    def _rounding(self, symbol: str, unknown: Rounding | None = records.UNROUNDED) -> Rounding:
        """How the symbol's prices and volumes round; `unknown` for a symbol the terminal does
        not know (None: raise SymbolNotFound)."""
        terms = self._symbol_terms(symbol)
        if terms is not None:
            return terms.rounding
        if unknown is None:
            raise SymbolNotFound(symbol)
        return unknown

    def _select(self, symbol: str) -> None:
        """Puts the symbol in Market Watch, where the terminal keeps its data and quotes
        current."""
        if symbol in self._selected:
            return
        if not self._invoke("symbol_select", symbol, True):
            raise self._symbol_failure("symbol_select", symbol)
        self._selected.add(symbol)

    # -- records ----------------------------------------------------------------------------

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
        """(date_from, date_to) in server seconds, for history from `start` until now. The
        package takes them positionally."""
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
    characters, the first 48 bits milliseconds: see gateway.domain.ids), or None for a text
    that is not an intact gateway tag."""
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


def _executes_now(order: Any, sent: SentRequest | None) -> bool:
    """Whether a working order of the tag is a market order still executing (an exchange's
    asynchronous execution, the rest of a RETURN fill): it may fill yet."""
    return int(order.type) in _MARKET_ORDER_TYPES or (
        sent is not None and sent.action is TradeAction.DEAL
    )


def _same_request(sent: SentRequest, record: Any, side: Any, volume: Decimal) -> bool:
    """Whether an order or deal fits what was sent: magic, symbol, side, and a volume within
    the request's (a deal may fill part of it)."""
    return (
        int(record.magic) == sent.magic
        and record.symbol == sent.symbol
        and side is sent.side
        and Decimal(0) < volume <= sent.volume
    )


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
