"""Mt4Terminal: the Terminal protocol over the EA bridge of one MT4 account.

MT4 accounts hedge: each market order is its own position, presented under its root ticket
(records.py). Requests go one at a time (MT4 has one trade context per terminal and the EA is
single-threaded). When the connection ends while a request waits for its answer, the request
raises TerminalError: its outcome is unknown, and the engine searches the account for the
request's tag once the EA is back (the EA journals the tags of what it executed). The terminal
needs no reconnecting of its own: each call uses the login's current session.

An EA of protocol 2 pushes its trade pool whenever it changes: positions() and pending_orders()
then read the pool last pushed while it is current (book.py) and ask only when it is not, and
the terminal is a TradeEventSource, so that a source watcher looks as soon as a trade is made.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from gateway.domain import retcodes
from gateway.domain.accounts import MarginMode
from gateway.domain.orders import OrderType, TimeInForce
from gateway.domain.symbols import SymbolSpec
from gateway.terminals.market import needs_pricing, priced_at_market, sent_at
from gateway.terminals.mt4 import messages, records
from gateway.terminals.mt4.bridge_server import LoginState, Mt4BridgeServer
from gateway.terminals.mt4.errors import Mt4Operation, name_of, retcode_for
from gateway.terminals.mt4.messages import MessageError, OrderRecord, TradeReply
from gateway.terminals.mt4.session import BridgeSession, SessionClosed
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

_T = TypeVar("_T")

# MT4's OrderSend takes the magic number as an int.
_MAGIC_RANGE = range(-(2**31), 2**31)


@dataclass(frozen=True, slots=True)
class Mt4TerminalSettings:
    # The longest wait for the answer to a query (account, symbol, quote, orders, history).
    query_timeout_s: float = 10.0
    # The longest wait for a trade answer; beyond it the outcome counts as unknown.
    trade_timeout_s: float = 60.0
    # How long a symbol's spec is reused before it is asked again (0: always asked). Specs
    # change rarely, and the engine asks for one before every child order.
    spec_ttl_s: float = 60.0


class Mt4Terminal:
    def __init__(
        self,
        account_id: str,
        login: int,
        bridge: Mt4BridgeServer,
        *,
        settings: Mt4TerminalSettings | None = None,
    ) -> None:
        self._account_id = account_id
        self._login = login
        self._bridge = bridge
        self._settings = settings or Mt4TerminalSettings()
        self._lock = asyncio.Lock()
        self._closed = False
        self._specs: dict[str, tuple[float, SymbolSpec]] = {}

    @property
    def account_id(self) -> str:
        return self._account_id

    @property
    def login(self) -> int:
        return self._login

    @property
    def updates(self) -> LoginState:
        """What the EA last pushed (open orders, account, the trade pool of protocol 2),
        kept across its sessions."""
        return self._bridge.state(self._login)

    # -- the conversation -------------------------------------------------------------------

    async def _exchange(
        self, request: dict[str, Any], *, timeout_s: float
    ) -> tuple[BridgeSession, dict[str, Any]]:
        """One request to the EA, one at a time; the session that answered, and its answer.
        Every failure to get an answer is a TerminalError; an "error" answer (the EA could not
        read the request) too."""
        self._check_open()
        async with self._lock:
            session = self._bridge.session(self._login)
            if session is None:
                raise TerminalError(f"MT4 login {self._login}: {self._not_connected()}")
            if request["type"] in messages.TRADE_REQUESTS:
                self.updates.book.trading(session.session_id)
            try:
                async with asyncio.timeout(timeout_s):
                    answer = await session.request(request)
            except SessionClosed as error:
                raise TerminalError(
                    f"MT4 login {self._login}: connection to the EA lost before the answer to "
                    f"{request['type']} ({error}); its outcome is unknown"
                ) from error
            except TimeoutError as error:
                raise TerminalError(
                    f"MT4 login {self._login}: no answer to {request['type']} within "
                    f"{timeout_s}s; its outcome is unknown"
                ) from error
        if answer["type"] == messages.ERROR:
            raise TerminalError(
                f"MT4 login {self._login}: the EA refused {request['type']}: "
                f"{answer.get('reason')}: {answer.get('detail')}"
            )
        return session, answer

    def _check_open(self) -> None:
        if self._closed:
            raise TerminalError(f"terminal of account {self._account_id} is closed")

    async def _query(self, request: dict[str, Any], answer_type: str) -> dict[str, Any]:
        _, answer = await self._exchange_query(request, answer_type)
        return answer

    async def _exchange_query(
        self, request: dict[str, Any], answer_type: str
    ) -> tuple[BridgeSession, dict[str, Any]]:
        session, answer = await self._exchange(request, timeout_s=self._settings.query_timeout_s)
        if answer["type"] != answer_type:
            raise TerminalError(
                f"MT4 login {self._login}: expected {answer_type}, the EA answered {answer['type']}"
            )
        return session, answer

    def _not_connected(self) -> str:
        reason = self._bridge.state(self._login).last_close_reason
        return f"EA not connected ({reason})" if reason else "EA not connected yet"

    def _parsed(self, answer: dict[str, Any], parse: Callable[[dict[str, Any]], _T]) -> _T:
        try:
            return parse(answer)
        except MessageError as error:
            raise TerminalError(
                f"MT4 login {self._login}: malformed {answer['type']} from the EA: {error}"
            ) from error

    # -- queries ----------------------------------------------------------------------------

    async def account_info(self) -> AccountInfo:
        answer = await self._query(messages.account_request(), messages.ACCOUNT)
        report: messages.AccountReport = self._parsed(answer, messages.parse_account)
        if report.login != self._login:
            raise TerminalError(f"MT4 login {self._login}: the EA trades login {report.login} now")
        return AccountInfo(
            login=report.login,
            currency=report.currency,
            leverage=report.leverage,
            margin_mode=MarginMode.HEDGING,
            balance=report.balance,
            equity=report.equity,
            margin=report.margin,
            free_margin=report.free_margin,
            time=report.time,
        )

    async def symbol_spec(self, symbol: str) -> SymbolSpec:
        cached = self._specs.get(symbol)
        if cached is not None and time.monotonic() - cached[0] < self._settings.spec_ttl_s:
            return cached[1]
        answer = await self._query(messages.symbol_request(symbol), messages.SYMBOL)
        report: messages.SymbolReport | None = self._parsed(answer, messages.parse_symbol)
        if report is None:
            raise SymbolNotFound(symbol)
        try:
            spec = SymbolSpec(
                name=symbol,
                digits=report.digits,
                contract_size=report.contract_size,
                volume_min=report.volume_min,
                volume_step=report.volume_step,
                volume_max=report.volume_max,
                tick_size=report.tick_size,
                tick_value=report.tick_value,
                currency_base=report.currency_base,
                currency_profit=report.currency_profit,
                stops_level=report.stops_level,
            )
        except ValueError as error:
            raise TerminalError(f"MT4 login {self._login}: {error}") from error
        self._specs[symbol] = (time.monotonic(), spec)
        return spec

    async def quote(self, symbol: str) -> Quote:
        answer = await self._query(messages.quote_request(symbol), messages.QUOTE)
        report: messages.QuoteReport | None = self._parsed(answer, messages.parse_quote)
        if report is None:
            raise SymbolNotFound(symbol)
        return Quote(symbol, report.bid, report.ask, report.time)

    async def _open_records(self) -> tuple[OrderRecord, ...]:
        """The trade pool, asked of the EA (an answer of protocol 2 also updates the book)."""
        session, answer = await self._exchange_query(messages.orders_request(), messages.ORDERS)
        if session.protocol < messages.TRADE_EVENTS_PROTOCOL:
            parsed: list[OrderRecord] = self._parsed(
                answer, lambda a: messages.parse_records(a, "orders")
            )
            return tuple(parsed)
        report: messages.BookReport = self._parsed(answer, messages.parse_book)
        if report.records is None:
            raise TerminalError(f"MT4 login {self._login}: the EA answered orders without them")
        return self.updates.book.answered(session.session_id, report.seq, report.records)

    async def _trade_pool(self) -> tuple[OrderRecord, ...]:
        """The trade pool: as the EA last pushed it while that is current (no round trip),
        else asked."""
        self._check_open()
        session = self._bridge.session(self._login)
        if session is not None:
            pushed = self.updates.book.current(session.session_id)
            if pushed is not None:
                return pushed
        return await self._open_records()

    async def positions(self) -> list[Position]:
        return [records.position_of(r) for r in await self._trade_pool() if r.is_market]

    async def pending_orders(self) -> list[PendingOrder]:
        return [records.pending_order_of(r) for r in await self._trade_pool() if r.is_pending]

    # -- trade events (TradeEventSource) ------------------------------------------------------

    @property
    def trade_events(self) -> int:
        """How many times the EA told of a change of the account's trades (only grows)."""
        return self.updates.trade_events

    async def wait_for_trade_event(self, *, after: int) -> None:
        """Returns once `trade_events` exceeds `after` (at once if it does already); the
        caller bounds the wait. An EA of protocol 1 tells only every PushIntervalMs."""
        await self._bridge.wait_for_update(self._login, lambda state: state.trade_events > after)

    async def deals(self, since: datetime) -> list[Deal]:
        open_records = await self._open_records()
        answer = await self._query(messages.history_request(since), messages.HISTORY)
        history: list[OrderRecord] = self._parsed(
            answer, lambda a: messages.parse_records(a, "orders")
        )
        return records.deals_of([*history, *open_records], since)

    async def find_by_tag(self, tag: str) -> TaggedRecords:
        answer = await self._query(messages.find_request(tag), messages.FOUND)
        open_records: list[OrderRecord] = self._parsed(
            answer, lambda a: messages.parse_records(a, "orders")
        )
        history: list[OrderRecord] = self._parsed(
            answer, lambda a: messages.parse_records(a, "history")
        )
        return TaggedRecords(
            orders=tuple(
                records.pending_order_of(r)
                for r in open_records
                if r.is_pending and records.carries(r, tag)
            ),
            positions=tuple(
                records.position_of(r)
                for r in open_records
                if r.is_market and records.carries(r, tag)
            ),
            deals=tuple(
                d
                for d in records.deals_of([*history, *open_records])
                if records.comment_matches(d.comment, tag)
            ),
        )

    async def health(self) -> TerminalHealth:
        if self._closed:
            return TerminalHealth(connected=False, detail="closed")
        session = self._bridge.session(self._login)
        if session is None:
            return TerminalHealth(connected=False, detail=self._not_connected())
        hello = session.hello
        return TerminalHealth(
            connected=True,
            detail=(
                f"EA {hello.ea_version} on {hello.server or 'unknown server'}, terminal build "
                f"{hello.terminal_build}, protocol {session.protocol}"
            ),
        )

    async def close(self) -> None:
        """Stops using the bridge; the EA's session belongs to the bridge server and stays."""
        self._closed = True

    # -- trading ----------------------------------------------------------------------------

    async def send(self, request: OrderRequest) -> OrderResult:
        refusal = _refusal(request)
        if refusal is not None:
            return refusal
        priced = needs_pricing(request)
        if priced:
            # The EA's own price, asked right before: its terminal is the one the deal leaves.
            quote = await self.quote(request.symbol)
            pricing = priced_at_market(request, quote.bid, quote.ask)
            if isinstance(pricing, OrderResult):
                return pricing
            request = pricing
        result = await self._send(request)
        return sent_at(result, request) if priced else result

    async def _send(self, request: OrderRequest) -> OrderResult:
        operation, message = _mt4_request(request)
        session, answer = await self._exchange(message, timeout_s=self._settings.trade_timeout_s)
        if answer["type"] != messages.TRADE_RESULT:
            raise TerminalError(
                f"MT4 login {self._login}: expected a trade_result, the EA answered "
                f"{answer['type']}; the outcome is unknown"
            )
        reply: TradeReply = self._parsed(answer, messages.parse_trade_reply)
        # Until the pool pushed reaches the number the trade left it at, it is asked for.
        self.updates.book.traded(session.session_id, reply.seq)
        return _result(operation, reply)


def _refusal(request: OrderRequest) -> OrderResult | None:
    """The answer to a request MT4 cannot take, given without asking the EA."""
    tag = request.tag
    if len(tag) > messages.MAX_COMMENT_LENGTH or not tag.isascii() or not tag.isprintable():
        return OrderResult(
            retcodes.INVALID,
            f"Invalid request: tag {tag!r} is not printable ASCII of at most "
            f"{messages.MAX_COMMENT_LENGTH} characters (the MT4 comment)",
        )
    if request.magic not in _MAGIC_RANGE:
        return OrderResult(
            retcodes.INVALID, f"Invalid request: magic {request.magic} is not an MT4 int"
        )
    if request.action is TradeAction.PENDING and request.order_type is OrderType.STOP_LIMIT:
        return OrderResult(retcodes.INVALID, "Invalid request: MT4 has no stop limit orders")
    if request.action is TradeAction.PENDING and request.order_type is OrderType.MARKET:
        return OrderResult(retcodes.INVALID, "Invalid request: a pending order is a LIMIT or STOP")
    if request.action is TradeAction.PENDING and request.price is None:
        return OrderResult(retcodes.INVALID_PRICE, "Invalid price: none given")
    if request.action is TradeAction.DEAL and request.order_type is not OrderType.MARKET:
        return OrderResult(retcodes.INVALID, "Invalid request: a deal is a market order")
    needs_expiry = request.action in (TradeAction.PENDING, TradeAction.MODIFY)
    if needs_expiry and request.time_in_force is TimeInForce.SPECIFIED and not request.expires_at:
        return OrderResult(
            retcodes.INVALID_EXPIRATION,
            "Invalid expiration: a SPECIFIED order needs its expiration time",
        )
    return None


def _expiration(request: OrderRequest) -> datetime | None:
    if request.time_in_force is TimeInForce.SPECIFIED:
        return request.expires_at
    if request.time_in_force is TimeInForce.DAY:
        # MT4 has no day orders: the order expires at the end of the UTC day, as the
        # simulated broker takes the trading day.
        today = datetime.now(UTC).date()
        return datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC)
    return None


def _mt4_request(request: OrderRequest) -> tuple[Mt4Operation, dict[str, Any]]:
    action = request.action
    if action is TradeAction.DEAL and request.position_ticket:
        return Mt4Operation.CLOSE, messages.order_close_request(
            ticket=request.position_ticket,
            volume=request.volume,
            price=request.price,
            slippage=request.deviation_points,
            tag=request.tag,
        )
    if action is TradeAction.DEAL:
        return Mt4Operation.OPEN_MARKET, messages.order_send_request(
            symbol=request.symbol,
            cmd=records.market_cmd(request.side),
            volume=request.volume,
            price=request.price,
            slippage=request.deviation_points,
            stop_loss=request.stop_loss,
            take_profit=request.take_profit,
            comment=request.tag,
            magic=request.magic,
            expiration=None,
        )
    if action is TradeAction.PENDING:
        cmd = records.pending_cmd(request.side, request.order_type)
        assert cmd is not None  # _refusal let only LIMIT and STOP through
        return Mt4Operation.PLACE_PENDING, messages.order_send_request(
            symbol=request.symbol,
            cmd=cmd,
            volume=request.volume,
            price=request.price,
            slippage=request.deviation_points,
            stop_loss=request.stop_loss,
            take_profit=request.take_profit,
            comment=request.tag,
            magic=request.magic,
            expiration=_expiration(request),
        )
    if action is TradeAction.MODIFY:
        return Mt4Operation.MODIFY_PENDING, messages.order_modify_request(
            ticket=request.order_ticket,
            price=request.price,
            stop_loss=request.stop_loss,
            take_profit=request.take_profit,
            expiration=_expiration(request),
            tag=request.tag,
        )
    if action is TradeAction.REMOVE:
        return Mt4Operation.DELETE_PENDING, messages.order_delete_request(
            ticket=request.order_ticket, tag=request.tag
        )
    if action is TradeAction.SLTP:
        return Mt4Operation.MODIFY_POSITION, messages.order_modify_request(
            ticket=request.position_ticket,
            price=None,
            stop_loss=request.stop_loss,
            take_profit=request.take_profit,
            expiration=None,
            tag=request.tag,
        )
    return Mt4Operation.CLOSE_BY, messages.order_close_by_request(
        ticket=request.position_ticket, opposite=request.position_by, tag=request.tag
    )


def _result(operation: Mt4Operation, reply: TradeReply) -> OrderResult:
    retcode = retcode_for(reply.error, operation)
    if reply.error != 0:
        text = f"MT4 error {reply.error} ({name_of(reply.error)})"
        if reply.message:
            text = f"{text}: {reply.message}"
        return OrderResult(retcode, text, bid=reply.bid, ask=reply.ask)
    order = reply.order
    assert order is not None  # parse_trade_reply refuses a success without it
    done = OrderResult(retcode, reply.message or "Request executed", bid=reply.bid, ask=reply.ask)
    if operation is Mt4Operation.OPEN_MARKET:
        return dataclasses.replace(
            done,
            order_ticket=order.ticket,
            deal_ticket=order.root,
            position_ticket=order.root,
            volume=order.lots,
            price=order.open_price,
            executed_at=order.open_time,
        )
    if operation in (Mt4Operation.CLOSE, Mt4Operation.CLOSE_BY):
        return dataclasses.replace(
            done,
            order_ticket=order.ticket,
            deal_ticket=records.closing_deal_ticket(order.ticket),
            position_ticket=order.root,
            volume=order.lots,
            price=order.close_price,
            executed_at=order.close_time,
        )
    if operation is Mt4Operation.MODIFY_POSITION:
        return dataclasses.replace(done, position_ticket=order.root)
    if operation is Mt4Operation.DELETE_PENDING:
        return dataclasses.replace(done, order_ticket=order.ticket, volume=order.lots)
    # Placed or modified pending order.
    return dataclasses.replace(
        done,
        order_ticket=order.ticket,
        volume=order.lots,
        price=order.open_price,
    )
