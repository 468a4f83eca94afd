"""A stand-in for an MT4 terminal running deploy/mt4/MamBridge.mq4, for tests.

It speaks the bridge protocol of docs/mt4-bridge.md over a real TCP connection, with its own
framing code (not the gateway's, so a shared bug cannot hide), and plays both the EA and the
MT4 trade server: the books are a hedging account of the simulated broker, seen through MT4's
eyes. Each market order is a ticket; a partial close moves the rest to a NEW ticket whose
comment is "from #<old>" (the closed part's becomes "to #<new>"); closes, deletes and modifies
answer MT4 error codes; the EA's journal of tags and roots is kept like the real EA's.

Like the real EA it speaks protocol 1..2: in a session of protocol 2 it pushes its whole trade
pool with a sequence number (`orders_changed`) as soon as it changes (right after the welcome,
after each trade it makes, and when its polling, every `book_poll_s` as the EA's timer, sees a
change made on the broker directly: a trade by hand, a pending order triggered), and names the
number in its `orders` and `trade_result` answers. `protocol_max=1` makes it an EA from before
trade events: it pushes only after its own trades, without a number, and is always asked.

Faults for tests: `fail_next(code)` (refuse the next trade requests with an MT4 error, nothing
executed), `hang_next()` (the next request is never answered, nothing executed),
`disconnect_after_next_trade()` (execute, then drop the connection without answering),
`go_silent()` (no heartbeats, no answers), `disconnect()` / `connect()`, `forget_journal()`
(the journal file lost), `comment_rewrite` (what the broker does to comments);
`hold_pushes()` / `release_pushes()` (pushes kept back, as a busy EA or a slow network would),
`overtake_next_orders_answer(change)` (the next `orders` answer, then at once a change and its
push, in one write: the push reaches the gateway before the waiting caller reads the answer),
`too_large` (pools pushed as their number alone, as the EA does when one exceeds a frame).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gateway.domain import retcodes
from gateway.domain.account_history import DealEntry
from gateway.domain.orders import OrderType, Side, TimeInForce
from gateway.terminals.protocol import (
    OrderRequest,
    OrderResult,
    PendingOrder,
    Position,
    TradeAction,
)
from gateway.terminals.sim import SimBroker, money

_PREFIX = struct.Struct(">I")
FIRST_REMAINDER_TICKET = 90_000_001

# MT4 operations.
OP_BUY, OP_SELL, OP_BUYLIMIT, OP_SELLLIMIT, OP_BUYSTOP, OP_SELLSTOP = range(6)
_PENDING_KINDS = {
    OP_BUYLIMIT: (Side.BUY, OrderType.LIMIT),
    OP_SELLLIMIT: (Side.SELL, OrderType.LIMIT),
    OP_BUYSTOP: (Side.BUY, OrderType.STOP),
    OP_SELLSTOP: (Side.SELL, OrderType.STOP),
}
_PENDING_CMDS = {kind: cmd for cmd, kind in _PENDING_KINDS.items()}

# What an MT4 server answers where the simulated (MT5-like) broker answers a retcode.
_MT4_ERROR_OF = {
    retcodes.DONE: 0,
    retcodes.PLACED: 0,
    retcodes.NO_CHANGES: 1,
    retcodes.INVALID: 3,
    retcodes.REQUOTE: 138,
    retcodes.INVALID_VOLUME: 131,
    retcodes.INVALID_CLOSE_VOLUME: 131,
    retcodes.INVALID_PRICE: 129,
    retcodes.INVALID_STOPS: 130,
    retcodes.TRADE_DISABLED: 133,
    retcodes.CLOSE_ONLY: 133,
    retcodes.SHORT_ONLY: 133,
    retcodes.LONG_ONLY: 140,
    retcodes.MARKET_CLOSED: 132,
    retcodes.NO_MONEY: 134,
    retcodes.PRICE_CHANGED: 135,
    retcodes.PRICE_OFF: 136,
    retcodes.TOO_MANY_REQUESTS: 141,
    retcodes.LOCKED: 139,
    retcodes.FROZEN: 145,
    retcodes.LIMIT_ORDERS: 148,
    retcodes.INVALID_EXPIRATION: 147,
    retcodes.POSITION_CLOSED: 4108,
}
INVALID_TICKET = 4108


def _unix(moment: datetime | None) -> int:
    return 0 if moment is None else int(moment.timestamp())


def _dec(value: Decimal | None) -> str:
    return "0" if value is None else format(value, "f")


def _price(text: str) -> Decimal | None:
    value = Decimal(text)
    return None if value == 0 else value


def comment_matches(comment: str, tag: str) -> bool:
    """The EA's rule (MamBridge.mq4 CommentMatches): equal, appended to, or cut short."""
    if not tag or not comment:
        return False
    if comment == tag:
        return True
    if comment.startswith(tag):
        return not comment[len(tag)].isalnum()
    kept = ""
    for char in comment:
        if not (char.isalnum() or char in ":_-."):
            break
        kept += char
    return len(kept) >= 16 and tag.startswith(kept)


@dataclass
class _Closed:
    """A closed MT4 order of the history pool (its tag and root come from the journal)."""

    record: dict[str, Any]


@dataclass
class _Journal:
    """The EA's journal file: the root of each ticket, the tag of each root, the tag of the
    request that closed each closed ticket."""

    roots: dict[int, int] = field(default_factory=dict)
    tags: dict[int, str] = field(default_factory=dict)
    close_tags: dict[int, str] = field(default_factory=dict)
    closed_by: dict[int, int] = field(default_factory=dict)


class FakeMt4Ea:
    def __init__(
        self,
        broker: SimBroker,
        login: int,
        *,
        host: str,
        port: int,
        token: str,
        server_name: str = "Sim-Demo",
        protocol_min: int = 1,
        protocol_max: int = 2,
        comment_rewrite: Callable[[str], str] | None = None,
        book_poll_s: float = 0.01,
    ) -> None:
        self.broker = broker
        self.login = login
        self.host = host
        self.port = port
        self.token = token
        self.server_name = server_name
        self.protocol_min = protocol_min
        self.protocol_max = protocol_max
        self.comment_rewrite = comment_rewrite or (lambda comment: comment)
        self.book_poll_s = book_poll_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._heartbeat_s = 5.0
        # MT4 tickets over the simulated broker's position tickets.
        self._mt4_ticket_of: dict[int, int] = {}
        self._sim_ticket_of: dict[int, int] = {}
        self._comments: dict[int, str] = {}
        self._history: dict[int, _Closed] = {}
        self._next_ticket = FIRST_REMAINDER_TICKET
        self.journal = _Journal()
        # Protocol 2: the pool's sequence number, what it looked like then, whether its push is
        # still due (MamBridge.mq4 BookSeq, PushBook).
        self.protocol = 0
        self._seq = 0
        self._book_fingerprint: tuple[tuple[Any, ...], ...] | None = None
        self._book_unsent = False
        # Faults.
        self._fail_codes: list[int] = []
        self._hang_next = False
        self._disconnect_after_next_trade = False
        self._silent = False
        self._pushes_held = False
        self._overtake: Callable[[], None] | None = None
        # The pool does not fit in a frame: pushed as its number alone (MamBridge.mq4 PushBook).
        self.too_large = False
        # What happened, for assertions.
        self.welcome: dict[str, Any] | None = None
        self.refusal: dict[str, Any] | None = None
        self.received: list[dict[str, Any]] = []
        # The sequence numbers of the pools pushed (protocol 2).
        self.pushed: list[int] = []
        self.bye: dict[str, Any] | None = None
        self.bye_received = asyncio.Event()
        self.closed = asyncio.Event()

    # -- faults -----------------------------------------------------------------------------

    def fail_next(self, error: int, times: int = 1) -> None:
        self._fail_codes.extend([error] * times)

    def hang_next(self) -> None:
        self._hang_next = True

    def disconnect_after_next_trade(self) -> None:
        self._disconnect_after_next_trade = True

    def go_silent(self) -> None:
        self._silent = True

    def forget_journal(self) -> None:
        self.journal = _Journal()

    def hold_pushes(self) -> None:
        self._pushes_held = True

    async def release_pushes(self) -> None:
        """Pushes are sent again, the pool as it now is first (if a push is due)."""
        self._pushes_held = False
        await self._push_book()

    def overtake_next_orders_answer(self, change: Callable[[], None]) -> None:
        self._overtake = change

    @property
    def orders_requests(self) -> int:
        """How many `orders` requests the gateway sent (what a pushed pool saves)."""
        return sum(1 for m in self.received if m["type"] == "orders")

    # -- connection -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self.closed.is_set()

    async def connect(self) -> dict[str, Any]:
        """Connects and says hello; returns the gateway's first answer (welcome or refused).
        After a welcome the EA serves requests until disconnected."""
        self._silent = False
        self.protocol = 0
        self.closed = asyncio.Event()
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        await self.send_raw(
            {
                "type": "hello",
                "protocol_min": self.protocol_min,
                "protocol_max": self.protocol_max,
                "login": self.login,
                "server": self.server_name,
                "token": self.token,
                "ea_version": "fake-1.0",
                "terminal_build": 1420,
                "company": "Simulated Broker",
            }
        )
        first = await self._read()
        if first is None or first["type"] != "welcome":
            self.refusal = first
            await self._drop()
            return first or {"type": "closed"}
        self.welcome = first
        self.protocol = first["protocol"]
        self._heartbeat_s = first["heartbeat_ms"] / 1000
        self._tasks = [
            asyncio.create_task(self._serve(), name=f"fake-ea-{self.login}"),
            asyncio.create_task(self._heartbeats(), name=f"fake-ea-heartbeat-{self.login}"),
        ]
        if self.pushes:
            # A new session knows nothing yet: the pool is pushed at once (MamBridge.mq4
            # HandleHandshake), then polled as the EA's timer does.
            self._book_unsent = True
            await self._push_book()
            self._tasks.append(
                asyncio.create_task(self._watch_book(), name=f"fake-ea-book-{self.login}")
            )
        return first

    @property
    def pushes(self) -> bool:
        """Whether this session pushes its trade pool (protocol 2)."""
        return self.protocol >= 2

    async def disconnect(self) -> None:
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        await self._drop()

    async def _drop(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        self.closed.set()

    async def send_raw(self, *messages: dict[str, Any]) -> None:
        """Sends the messages' frames in one write."""
        frames = b""
        for message in messages:
            payload = json.dumps(message).encode("utf-8")
            frames += _PREFIX.pack(len(payload)) + payload
        await self.send_bytes(frames)

    async def send_bytes(self, data: bytes) -> None:
        """Writes bytes as they are (tests of broken framing use it directly)."""
        assert self._writer is not None
        self._writer.write(data)
        await self._writer.drain()

    async def _read(self) -> dict[str, Any] | None:
        assert self._reader is not None
        try:
            (length,) = _PREFIX.unpack(await self._reader.readexactly(_PREFIX.size))
            message: dict[str, Any] = json.loads(await self._reader.readexactly(length))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        return message

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            if not self._silent and self.connected:
                with contextlib.suppress(ConnectionError):
                    await self.send_raw({"type": "heartbeat"})

    async def _serve(self) -> None:
        try:
            while True:
                message = await self._read()
                if message is None:
                    break
                if message["type"] == "bye":
                    self.bye = message
                    self.bye_received.set()
                    break
                if message["type"] == "heartbeat" or self._silent:
                    continue
                self.received.append(message)
                if self._hang_next:
                    self._hang_next = False
                    continue
                await self._handle(message)
        except ConnectionError:
            pass
        finally:
            await self.disconnect()

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        request_id = message["id"]
        handler = _HANDLERS.get(kind)
        if handler is None:
            await self.send_raw(
                {"type": "error", "id": request_id, "reason": "unknown_type", "detail": kind}
            )
            return
        if kind.startswith("order_"):
            answer = self._trade(handler, message)
            if self._disconnect_after_next_trade:
                self._disconnect_after_next_trade = False
                await self.disconnect()
                return
            if self.pushes:
                # The number of the pool the trade left (MamBridge.mq4 TradeDone, TradeFailed),
                # then its push: the gateway reads the answer first.
                await self.send_raw({**answer, "id": request_id, "seq": self._book_seq()})
                await self._push_book()
                await self.send_raw({"type": "account_changed", **self._account()})
                return
            await self.send_raw({**answer, "id": request_id})
            if answer["error"] == 0:
                await self._push_changes()
            return
        if kind == "orders" and self.pushes:
            answer = {**handler(self, message), "id": request_id, "seq": self._book_seq()}
            change, self._overtake = self._overtake, None
            if change is None:
                await self.send_raw(answer)
                return
            change()
            self._book_seq()
            self._book_unsent = False
            self.pushed.append(self._seq)
            await self.send_raw(answer, self._book_message())
            return
        await self.send_raw({**handler(self, message), "id": request_id})

    def _trade(
        self, handler: Callable[..., dict[str, Any]], message: dict[str, Any]
    ) -> dict[str, Any]:
        if self._fail_codes:
            code = self._fail_codes.pop(0)
            bid, ask = self._bid_ask(message.get("symbol", ""))
            return _failed(code, f"injected error {code}", bid, ask)
        return handler(self, message)

    async def _push_changes(self) -> None:
        """Protocol 1: the open orders without a number, after a trade of the EA's own."""
        await self.send_raw({"type": "orders_changed", "orders": self.open_records()})
        await self.send_raw({"type": "account_changed", **self._account()})

    # -- protocol 2: the pushed trade pool ---------------------------------------------------

    def _book_seq(self) -> int:
        """The number of the pool as it is now: one more for each change seen (tickets, types,
        lots, prices, stops, expirations; not profits), as MamBridge.mq4 BookSeq."""
        fingerprint = tuple(
            (r["ticket"], r["cmd"], r["lots"], r["open_price"], r["sl"], r["tp"], r["expiration"])
            for r in self.open_records()
        )
        if fingerprint != self._book_fingerprint:
            self._book_fingerprint = fingerprint
            self._seq += 1
            self._book_unsent = True
        return self._seq

    def _book_message(self) -> dict[str, Any]:
        if self.too_large:
            return {"type": "orders_changed", "seq": self._seq, "too_large": True}
        return {"type": "orders_changed", "seq": self._seq, "orders": self.open_records()}

    async def _push_book(self) -> None:
        """Pushes the pool if it changed since the last push (MamBridge.mq4 PushBook)."""
        if not self.pushes or not self.connected or self._silent:
            return
        self._book_seq()
        if not self._book_unsent or self._pushes_held:
            return
        self._book_unsent = False
        self.pushed.append(self._seq)
        with contextlib.suppress(ConnectionError):
            await self.send_raw(self._book_message())

    async def _watch_book(self) -> None:
        while True:
            await asyncio.sleep(self.book_poll_s)
            await self._push_book()

    # -- the MT4 view of the simulated books --------------------------------------------------

    def _bid_ask(self, symbol: str) -> tuple[Decimal | None, Decimal | None]:
        if not self.broker.has_symbol(symbol):
            return None, None
        bid, ask, _ = self.broker.feed.bid_ask(symbol)
        return bid, ask

    def _root_of(self, ticket: int, comment: str) -> int:
        """The journal's root, else what the comment tells ("from #X": X's root)."""
        if ticket in self.journal.roots:
            return self.journal.roots[ticket]
        if comment.startswith("from #") and comment[6:].isdigit():
            parent = int(comment[6:])
            return self.journal.roots.get(parent, parent)
        return ticket

    def _with_lineage(self, record: dict[str, Any]) -> dict[str, Any]:
        ticket = record["ticket"]
        root = self._root_of(ticket, record["comment"])
        return {
            **record,
            "root": root,
            "tag": self.journal.tags.get(root, ""),
            "close_tag": self.journal.close_tags.get(ticket, ""),
            "closed_by": self.journal.closed_by.get(ticket, 0),
        }

    def _market_record(self, position: Position) -> dict[str, Any]:
        ticket = self._mt4_ticket_of.get(position.ticket, position.ticket)
        spec = self.broker.spec(position.symbol)
        bid, ask, _ = self.broker.feed.bid_ask(position.symbol)
        close_price = money.closing_price(position.side, bid, ask)
        return self._with_lineage(
            {
                "ticket": ticket,
                "symbol": position.symbol,
                "cmd": OP_BUY if position.side is Side.BUY else OP_SELL,
                "lots": _dec(position.volume),
                "open_price": _dec(position.price_open),
                "open_time": _unix(position.opened_at),
                "close_price": _dec(close_price),
                "close_time": 0,
                "sl": _dec(position.stop_loss),
                "tp": _dec(position.take_profit),
                "expiration": 0,
                "magic": position.magic,
                "comment": self._comments.get(ticket, position.comment),
                "profit": _dec(
                    money.profit(
                        spec, position.side, position.price_open, position.volume, close_price
                    ).quantize(money.CENT)
                ),
                "swap": "0",
                "commission": "0",
            }
        )

    def _pending_record(self, order: PendingOrder, *, closed_at: int = 0) -> dict[str, Any]:
        return self._with_lineage(
            {
                "ticket": order.ticket,
                "symbol": order.symbol,
                "cmd": _PENDING_CMDS[(order.side, order.order_type)],
                "lots": _dec(order.volume),
                "open_price": _dec(order.price),
                "open_time": _unix(order.placed_at),
                "close_price": "0",
                "close_time": closed_at,
                "sl": _dec(order.stop_loss),
                "tp": _dec(order.take_profit),
                "expiration": _unix(order.expires_at),
                "magic": order.magic,
                "comment": order.comment,
                "profit": "0",
                "swap": "0",
                "commission": "0",
            }
        )

    def open_records(self) -> list[dict[str, Any]]:
        """The trade pool as the EA sends it: open market and pending orders."""
        records = [self._market_record(p) for p in self.broker.positions(self.login)]
        records += [self._pending_record(o) for o in self.broker.pending_orders(self.login)]
        return records

    def _history_records(self) -> list[dict[str, Any]]:
        return [self._with_lineage(closed.record) for closed in self._history.values()]

    def _open_position(self, ticket: int) -> Position | None:
        sim_ticket = self._sim_ticket_of.get(ticket, ticket)
        if self._mt4_ticket_of.get(sim_ticket, sim_ticket) != ticket:
            return None  # this MT4 ticket was closed; its rest lives on under another
        return next((p for p in self.broker.positions(self.login) if p.ticket == sim_ticket), None)

    def _live_position(self, ticket: int) -> Position | None:
        """The open position `ticket` names: itself, or the open order of its root (the EA
        follows partial closes, MamBridge.mq4 LiveTicket)."""
        position = self._open_position(ticket)
        if position is not None:
            return position
        history = self._history.get(ticket)
        root = self._root_of(ticket, history.record["comment"] if history else "")
        for record in self.open_records():
            if record["cmd"] in (OP_BUY, OP_SELL) and record["root"] == root:
                return self._open_position(record["ticket"])
        return None

    def _pending(self, ticket: int) -> PendingOrder | None:
        return next((o for o in self.broker.pending_orders(self.login) if o.ticket == ticket), None)

    def _new_ticket(self) -> int:
        ticket = self._next_ticket
        self._next_ticket += 1
        return ticket

    def _deal_profit(self, deal_ticket: int, executed_at: datetime | None) -> Decimal:
        since = executed_at or datetime.fromtimestamp(0, UTC)
        for deal in self.broker.deals(self.login, since):
            if deal.ticket == deal_ticket:
                return deal.profit
        return Decimal(0)

    def _execute(self, request: OrderRequest) -> OrderResult:
        return self.broker.execute(self.login, request)

    # -- queries ----------------------------------------------------------------------------

    def _account(self) -> dict[str, Any]:
        info = self.broker.account_info(self.login)
        return {
            "login": info.login,
            "server": self.server_name,
            "company": "Simulated Broker",
            "currency": info.currency,
            "leverage": info.leverage,
            "balance": _dec(info.balance),
            "equity": _dec(info.equity),
            "margin": _dec(info.margin),
            "free_margin": _dec(info.free_margin),
            "trade_allowed": True,
            "time": _unix(info.time),
        }

    def on_account(self, _: dict[str, Any]) -> dict[str, Any]:
        return {"type": "account", **self._account()}

    def on_symbol(self, message: dict[str, Any]) -> dict[str, Any]:
        symbol = message["symbol"]
        if not self.broker.has_symbol(symbol):
            return {"type": "symbol", "symbol": symbol, "found": False}
        spec = self.broker.spec(symbol)
        return {
            "type": "symbol",
            "symbol": symbol,
            "found": True,
            "digits": spec.digits,
            "point": _dec(spec.point),
            "contract_size": _dec(spec.contract_size),
            "volume_min": _dec(spec.volume_min),
            "volume_step": _dec(spec.volume_step),
            "volume_max": _dec(spec.volume_max),
            "tick_size": _dec(spec.tick_size),
            "tick_value": _dec(spec.tick_value),
            "stops_level": spec.stops_level,
            "freeze_level": 0,
            "currency_base": spec.currency_base,
            "currency_profit": spec.currency_profit,
        }

    def on_quote(self, message: dict[str, Any]) -> dict[str, Any]:
        symbol = message["symbol"]
        if not self.broker.has_symbol(symbol):
            return {"type": "quote", "symbol": symbol, "found": False}
        bid, ask, now = self.broker.feed.bid_ask(symbol)
        return {
            "type": "quote",
            "symbol": symbol,
            "found": True,
            "bid": _dec(bid),
            "ask": _dec(ask),
            "time": _unix(now),
        }

    def on_orders(self, _: dict[str, Any]) -> dict[str, Any]:
        return {"type": "orders", "orders": self.open_records()}

    def on_history(self, message: dict[str, Any]) -> dict[str, Any]:
        since = message["since"]
        return {
            "type": "history",
            "orders": [r for r in self._history_records() if r["close_time"] >= since],
        }

    def on_find(self, message: dict[str, Any]) -> dict[str, Any]:
        tag = message["tag"]

        def matches(record: dict[str, Any]) -> bool:
            # MamBridge.mq4 SelectedCarries: the journal first, the comment without one.
            if record["tag"] == tag or record["close_tag"] == tag:
                return True
            return not record["tag"] and comment_matches(record["comment"], tag)

        return {
            "type": "found",
            "orders": [r for r in self.open_records() if matches(r)],
            "history": [r for r in self._history_records() if matches(r)],
        }

    # -- trading ----------------------------------------------------------------------------

    def on_order_send(self, message: dict[str, Any]) -> dict[str, Any]:
        cmd = message["cmd"]
        symbol = message["symbol"]
        tag = message["comment"]
        common = {
            "symbol": symbol,
            "volume": Decimal(message["volume"]),
            "tag": self.comment_rewrite(tag),
            "magic": message["magic"],
            "price": _price(message["price"]),
            "deviation_points": message["slippage"],
            "stop_loss": _price(message["sl"]),
            "take_profit": _price(message["tp"]),
        }
        if cmd in (OP_BUY, OP_SELL):
            request = OrderRequest(
                TradeAction.DEAL, side=Side.BUY if cmd == OP_BUY else Side.SELL, **common
            )
        else:
            side, order_type = _PENDING_KINDS[cmd]
            expiration = message["expiration"]
            request = OrderRequest(
                TradeAction.PENDING,
                side=side,
                order_type=order_type,
                time_in_force=TimeInForce.SPECIFIED if expiration else TimeInForce.GTC,
                expires_at=datetime.fromtimestamp(expiration, UTC) if expiration else None,
                **common,
            )
        result = self._execute(request)
        code = _MT4_ERROR_OF.get(result.retcode, 2)
        if code != 0:
            return _failed(code, result.text, result.bid, result.ask)
        ticket = result.position_ticket if cmd in (OP_BUY, OP_SELL) else result.order_ticket
        self.journal.roots[ticket] = ticket
        self.journal.tags[ticket] = tag
        order = next(r for r in self.open_records() if r["ticket"] == ticket)
        return _succeeded(order, result)

    def on_order_modify(self, message: dict[str, Any]) -> dict[str, Any]:
        ticket = message["ticket"]
        pending = self._pending(ticket)
        stop_loss, take_profit = _price(message["sl"]), _price(message["tp"])
        if pending is not None:
            expiration = message["expiration"]
            request = OrderRequest(
                TradeAction.MODIFY,
                pending.symbol,
                pending.side,
                pending.volume,
                message["tag"],
                pending.magic,
                price=_price(message["price"]),
                stop_loss=stop_loss,
                take_profit=take_profit,
                order_ticket=ticket,
                time_in_force=TimeInForce.SPECIFIED if expiration else TimeInForce.GTC,
                expires_at=datetime.fromtimestamp(expiration, UTC) if expiration else None,
            )
        else:
            position = self._live_position(ticket)
            if position is None:
                return _failed(INVALID_TICKET, f"no open order #{ticket}", None, None)
            request = OrderRequest(
                TradeAction.SLTP,
                position.symbol,
                position.side,
                position.volume,
                message["tag"],
                position.magic,
                stop_loss=stop_loss,
                take_profit=take_profit,
                position_ticket=position.ticket,
            )
        result = self._execute(request)
        code = _MT4_ERROR_OF.get(result.retcode, 2)
        if code != 0:
            return _failed(code, result.text, result.bid, result.ask)
        if pending is not None:
            order = next(r for r in self.open_records() if r["ticket"] == ticket)
        else:
            live = self._mt4_ticket_of.get(request.position_ticket, request.position_ticket)
            order = next(r for r in self.open_records() if r["ticket"] == live)
        return _succeeded(order, result)

    def on_order_delete(self, message: dict[str, Any]) -> dict[str, Any]:
        ticket = message["ticket"]
        pending = self._pending(ticket)
        if pending is None:
            return _failed(INVALID_TICKET, f"no pending order #{ticket}", None, None)
        result = self._execute(
            OrderRequest(
                TradeAction.REMOVE,
                pending.symbol,
                pending.side,
                pending.volume,
                message["tag"],
                pending.magic,
                order_ticket=ticket,
            )
        )
        code = _MT4_ERROR_OF.get(result.retcode, 2)
        if code != 0:
            return _failed(code, result.text, result.bid, result.ask)
        now = _unix(self.broker.feed.now())
        record = self._pending_record(pending, closed_at=now)
        self._history[ticket] = _Closed(_raw(record))
        self.journal.close_tags[ticket] = message["tag"]
        return _succeeded(self._with_lineage(self._history[ticket].record), result)

    def on_order_close(self, message: dict[str, Any]) -> dict[str, Any]:
        position = self._live_position(message["ticket"])
        if position is None:
            return _failed(INVALID_TICKET, f"no open order #{message['ticket']}", None, None)
        ticket = self._mt4_ticket_of.get(position.ticket, position.ticket)
        before = self._market_record(position)
        result = self._execute(
            OrderRequest(
                TradeAction.DEAL,
                position.symbol,
                Side.SELL if position.side is Side.BUY else Side.BUY,
                Decimal(message["volume"]),
                message["tag"],
                position.magic,
                price=_price(message["price"]),
                deviation_points=message["slippage"],
                position_ticket=position.ticket,
            )
        )
        code = _MT4_ERROR_OF.get(result.retcode, 2)
        if code != 0:
            return _failed(code, result.text, result.bid, result.ask)
        self.journal.close_tags[ticket] = message["tag"]
        closed = self._close_part(
            before,
            lots=result.volume,
            price=result.price,
            at=result.executed_at,
            profit=self._deal_profit(result.deal_ticket, result.executed_at),
        )
        remainder = self._move_rest(position.ticket, ticket, closed)
        answer = _succeeded(closed, result)
        if remainder is not None:
            answer["remainder"] = remainder
        return answer

    def on_order_close_by(self, message: dict[str, Any]) -> dict[str, Any]:
        position = self._live_position(message["ticket"])
        opposite = self._live_position(message["opposite"])
        if position is None or opposite is None:
            return _failed(INVALID_TICKET, "no such open orders", None, None)
        ticket = self._mt4_ticket_of.get(position.ticket, position.ticket)
        opposite_ticket = self._mt4_ticket_of.get(opposite.ticket, opposite.ticket)
        before = self._market_record(position)
        opposite_before = self._market_record(opposite)
        result = self._execute(
            OrderRequest(
                TradeAction.CLOSE_BY,
                position.symbol,
                position.side,
                position.volume,
                message["tag"],
                position.magic,
                position_ticket=position.ticket,
                position_by=opposite.ticket,
            )
        )
        code = _MT4_ERROR_OF.get(result.retcode, 2)
        if code != 0:
            return _failed(code, result.text, result.bid, result.ask)
        since = result.executed_at or datetime.fromtimestamp(0, UTC)
        opposite_deal = next(
            d
            for d in self.broker.deals(self.login, since)
            if d.position_ticket == opposite.ticket and d.entry is DealEntry.OUT_BY
        )
        for closed_ticket, other in ((ticket, opposite_ticket), (opposite_ticket, ticket)):
            self.journal.close_tags[closed_ticket] = message["tag"]
            self.journal.closed_by[closed_ticket] = other
        closed = self._close_part(
            before,
            lots=result.volume,
            price=result.price,
            at=result.executed_at,
            profit=self._deal_profit(result.deal_ticket, result.executed_at),
        )
        opposite_closed = self._close_part(
            opposite_before,
            lots=opposite_deal.volume,
            price=opposite_deal.price,
            at=opposite_deal.executed_at,
            profit=opposite_deal.profit,
        )
        remainder = self._move_rest(position.ticket, ticket, closed) or self._move_rest(
            opposite.ticket, opposite_ticket, opposite_closed
        )
        answer = _succeeded(closed, result)
        answer["opposite"] = self._with_lineage(self._history[opposite_ticket].record)
        if remainder is not None:
            answer["remainder"] = remainder
        return answer

    def _close_part(
        self,
        before: dict[str, Any],
        *,
        lots: Decimal,
        price: Decimal | None,
        at: datetime | None,
        profit: Decimal,
    ) -> dict[str, Any]:
        ticket = before["ticket"]
        record = {
            **_raw(before),
            "lots": _dec(lots),
            "close_price": _dec(price),
            "close_time": _unix(at),
            "profit": _dec(profit),
        }
        self._history[ticket] = _Closed(record)
        return self._with_lineage(record)

    def _move_rest(
        self, sim_ticket: int, ticket: int, closed: dict[str, Any]
    ) -> dict[str, Any] | None:
        """MT4 books what is left of a partly closed order under a new ticket."""
        rest = next((p for p in self.broker.positions(self.login) if p.ticket == sim_ticket), None)
        if rest is None:
            self._mt4_ticket_of.pop(sim_ticket, None)
            return None
        new_ticket = self._new_ticket()
        self._mt4_ticket_of[sim_ticket] = new_ticket
        self._sim_ticket_of[new_ticket] = sim_ticket
        self._comments[new_ticket] = f"from #{ticket}"
        self._history[ticket].record["comment"] = f"to #{new_ticket}"
        closed["comment"] = f"to #{new_ticket}"
        # The EA journals the lineage when it sees the remainder (MamBridge.mq4 JournalRoot).
        self.journal.roots[new_ticket] = closed["root"]
        return self._market_record(rest)


def _raw(record: dict[str, Any]) -> dict[str, Any]:
    """A record without what the journal adds (root, tag, close_tag, closed_by)."""
    return {k: v for k, v in record.items() if k not in ("root", "tag", "close_tag", "closed_by")}


def _failed(code: int, text: str, bid: Decimal | None, ask: Decimal | None) -> dict[str, Any]:
    return {
        "type": "trade_result",
        "error": code,
        "message": text,
        "bid": _dec(bid),
        "ask": _dec(ask),
    }


def _succeeded(order: dict[str, Any], result: OrderResult) -> dict[str, Any]:
    return {
        "type": "trade_result",
        "error": 0,
        "message": "",
        "bid": _dec(result.bid),
        "ask": _dec(result.ask),
        "order": order,
    }


_HANDLERS: dict[str, Callable[..., dict[str, Any]]] = {
    "account": FakeMt4Ea.on_account,
    "symbol": FakeMt4Ea.on_symbol,
    "quote": FakeMt4Ea.on_quote,
    "orders": FakeMt4Ea.on_orders,
    "history": FakeMt4Ea.on_history,
    "find": FakeMt4Ea.on_find,
    "order_send": FakeMt4Ea.on_order_send,
    "order_modify": FakeMt4Ea.on_order_modify,
    "order_delete": FakeMt4Ea.on_order_delete,
    "order_close": FakeMt4Ea.on_order_close,
    "order_close_by": FakeMt4Ea.on_order_close_by,
}
