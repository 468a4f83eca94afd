"""A group's source account as last seen, and the signals a new look at it gives.

The gateway mirrors a source account (the manager's own MT4/MT5 account) onto a group by
comparing what the source holds now (its positions and pending orders) with what it held at
the last look, kept in a SourceBook. Each difference is a SourceSignal with an id that is
stable across looks, reconnects and restarts: the id is made from the source's own tickets and
the count of changes the book has seen on that ticket, and the book is stored in the same
transaction as the signals it gave. The group's master order for a signal takes its client order
id from the signal's id, so acting on a signal twice submits once.

Rules (docs/mirroring.md has them with worked examples):
- A position is opened (POSITION_OPENED): copied as a market master order of the position's
  volume, with its stops, unless it is older than the group's maximum signal age (then recorded,
  SIGNAL_TOO_OLD, and never copied); on the first look after a source is set, what is already
  open is recorded and not copied (OPEN_BEFORE_SOURCE).
- Its volume goes down (POSITION_REDUCED) or it is gone (POSITION_CLOSED): the same fraction of
  every copy of it is closed. A close-by is two of these, one per position. An MT4 partial close
  leaves the rest under a new ticket whose comment is "from #<old ticket>": that is a reduction,
  and the copies move to the new ticket.
- Its volume goes up (POSITION_INCREASED, a netting account adding): the increase is copied as
  one more master order, a copy of the same position. Its side turns (a netting reversal): the
  old position is closed and the new side opened.
- Its stops change (STOPS_CHANGED): every copy's stops are set to them.
- A pending order is placed (ORDER_PLACED): copied as a pending master order; moved or its stops
  changed (ORDER_MODIFIED): the copy is moved; gone with a position of its ticket appearing
  (ORDER_TRIGGERED, MT4 and MT5 both give the position the order's ticket): nothing to do (the
  group's own pending children trigger at their brokers), and the position's copy is that
  pending master order; gone otherwise, cancelled or expired (ORDER_REMOVED): the copy is
  cancelled.
- A change on something never copied is recorded with NOT_COPIED and nothing is done.
A position opened and closed between two looks is not seen: the look interval bounds it.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from gateway.domain.orders import OrderType, Side, TimeInForce


class SeenPosition(Protocol):
    """A position as a terminal reports it (gateway.terminals.protocol.Position)."""

    @property
    def ticket(self) -> int: ...
    @property
    def symbol(self) -> str: ...
    @property
    def side(self) -> Side: ...
    @property
    def volume(self) -> Decimal: ...
    @property
    def comment(self) -> str: ...
    @property
    def opened_at(self) -> datetime: ...
    @property
    def stop_loss(self) -> Decimal | None: ...
    @property
    def take_profit(self) -> Decimal | None: ...
    @property
    def price_open(self) -> Decimal: ...


class SeenOrder(Protocol):
    """A pending order as a terminal reports it (gateway.terminals.protocol.PendingOrder)."""

    @property
    def ticket(self) -> int: ...
    @property
    def symbol(self) -> str: ...
    @property
    def side(self) -> Side: ...
    @property
    def volume(self) -> Decimal: ...
    @property
    def price(self) -> Decimal: ...
    @property
    def placed_at(self) -> datetime: ...
    @property
    def order_type(self) -> OrderType: ...
    @property
    def stop_limit_price(self) -> Decimal | None: ...
    @property
    def stop_loss(self) -> Decimal | None: ...
    @property
    def take_profit(self) -> Decimal | None: ...
    @property
    def time_in_force(self) -> TimeInForce: ...
    @property
    def expires_at(self) -> datetime | None: ...


class SignalKind(enum.Enum):
    POSITION_OPENED = "POSITION_OPENED"
    POSITION_INCREASED = "POSITION_INCREASED"
    POSITION_REDUCED = "POSITION_REDUCED"
    POSITION_CLOSED = "POSITION_CLOSED"
    STOPS_CHANGED = "STOPS_CHANGED"
    ORDER_PLACED = "ORDER_PLACED"
    ORDER_MODIFIED = "ORDER_MODIFIED"
    ORDER_TRIGGERED = "ORDER_TRIGGERED"
    ORDER_REMOVED = "ORDER_REMOVED"


class SkipReason(enum.Enum):
    """Why a signal is recorded and nothing is done on the group."""

    # Seen open on the first look after the source was set.
    OPEN_BEFORE_SOURCE = "OPEN_BEFORE_SOURCE"
    # Opened longer ago than the group's maximum signal age (seen late: after a restart or a
    # reconnect, or with the source paused).
    SIGNAL_TOO_OLD = "SIGNAL_TOO_OLD"
    # A change on a position or order that was never copied.
    NOT_COPIED = "NOT_COPIED"


@dataclass(frozen=True, slots=True)
class SourcePosition:
    ticket: int
    symbol: str
    side: Side
    volume: Decimal
    stop_loss: Decimal | None
    take_profit: Decimal | None
    opened_at: datetime
    # Changes seen on it so far (volume, stops): numbers the next one's id.
    changes: int = 0
    # The ids of the signals copied onto the group as its master orders: the opening one and
    # each increase (a triggered pending order's placement). Empty: never copied.
    copies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SourceOrder:
    ticket: int
    symbol: str
    side: Side
    order_type: OrderType
    volume: Decimal
    price: Decimal
    stop_limit_price: Decimal | None
    stop_loss: Decimal | None
    take_profit: Decimal | None
    time_in_force: TimeInForce
    expires_at: datetime | None
    placed_at: datetime
    changes: int = 0
    # The id of its placement signal when it was copied, else "".
    copy: str = ""


@dataclass(frozen=True, slots=True)
class SourceBook:
    """What the source held at the last look. `started`: a first look has been taken."""

    positions: Mapping[int, SourcePosition] = field(default_factory=dict)
    orders: Mapping[int, SourceOrder] = field(default_factory=dict)
    started: bool = False


@dataclass(frozen=True, slots=True)
class SourceSignal:
    # Stable across looks and restarts: "pos:<ticket>:open", "pos:<ticket>:<n>",
    # "order:<ticket>:placed", "order:<ticket>:<n>".
    event_id: str
    kind: SignalKind
    # The position's or the pending order's ticket at the source.
    ticket: int
    symbol: str
    side: Side
    # Opened, added, closed or placed: the volume of the change; a stops change: the volume
    # open.
    volume: Decimal
    # When the source did it, as near as is known: the position's or order's own time for an
    # opening or a placement, the look's time for a later change.
    source_time: datetime
    # POSITION_REDUCED / POSITION_CLOSED: the fraction of what was open that was closed.
    fraction: Decimal | None = None
    order_type: OrderType = OrderType.MARKET
    price: Decimal | None = None
    stop_limit_price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    expires_at: datetime | None = None
    # The copies the signal acts on (the ids of earlier copied signals); for an opening or a
    # placement that is copied, its own id.
    copies: tuple[str, ...] = ()
    skip: SkipReason | None = None

    @property
    def acts(self) -> bool:
        """Whether something is to be done on the group for it."""
        return self.skip is None and self.kind is not SignalKind.ORDER_TRIGGERED


# MT4 leaves what a partial close did not close under a new ticket with this comment.
_MT4_REST_OF = re.compile(r"from #(\d+)")


def observe(
    book: SourceBook,
    positions: Iterable[SeenPosition],
    orders: Iterable[SeenOrder],
    *,
    now: datetime,
    max_signal_age: timedelta,
) -> tuple[SourceBook, list[SourceSignal]]:
    """The book after a look at the source at `now`, and the signals of what changed, in the
    order to act on them: what closes or cancels first, then stops and moves, then what opens."""
    seen = dict(sorted((p.ticket, p) for p in positions))
    seen_orders = dict(sorted((o.ticket, o) for o in orders))
    if not book.started:
        first = SourceBook(
            {ticket: _position_of(p) for ticket, p in seen.items()},
            {ticket: _order_of(o) for ticket, o in seen_orders.items()},
            started=True,
        )
        return first, [
            *(_opened(p, SkipReason.OPEN_BEFORE_SOURCE) for p in seen.values()),
            *(_placed(o, SkipReason.OPEN_BEFORE_SOURCE) for o in seen_orders.values()),
        ]
    look = _Look(book, seen, seen_orders, now, now - max_signal_age)
    look.orders_gone()
    look.positions_held()
    look.positions_new()
    look.orders_seen()
    return SourceBook(look.positions, look.orders, started=True), [
        *look.closing,
        *look.changing,
        *look.opening,
    ]


class _Look:
    """One look's walk over the book and what was seen, collecting the signals by when they
    are acted on and the book after it."""

    def __init__(
        self,
        book: SourceBook,
        seen: Mapping[int, SeenPosition],
        seen_orders: Mapping[int, SeenOrder],
        now: datetime,
        too_old: datetime,
    ) -> None:
        self.book, self.seen, self.seen_orders = book, seen, seen_orders
        self.now, self.too_old = now, too_old
        self.closing: list[SourceSignal] = []
        self.changing: list[SourceSignal] = []
        self.opening: list[SourceSignal] = []
        self.positions: dict[int, SourcePosition] = {}
        self.orders: dict[int, SourceOrder] = {}
        # Pending orders gone into a position of their ticket.
        self.triggered: dict[int, SourceOrder] = {}
        # MT4's rest of a partial close: old ticket -> the new one that continues it.
        self.continued = self._continued()

    def orders_gone(self) -> None:
        for ticket, order in sorted(self.book.orders.items()):
            if ticket in self.seen_orders:
                continue
            if ticket in self.seen and ticket not in self.book.positions:
                self.triggered[ticket] = order
                kind, event_id = SignalKind.ORDER_TRIGGERED, f"order:{ticket}:triggered"
            else:
                kind, event_id = SignalKind.ORDER_REMOVED, f"order:{ticket}:removed"
            self.closing.append(_order_signal(order, kind, event_id, self.now))

    def _continued(self) -> dict[int, int]:
        continued = {}
        for ticket, position in self.seen.items():
            if ticket in self.book.positions:
                continue
            match = _MT4_REST_OF.fullmatch(position.comment.strip())
            old = self.book.positions.get(int(match.group(1))) if match else None
            if (
                old is not None
                and old.ticket not in self.seen
                and old.symbol == position.symbol
                and old.side is position.side
                and position.volume < old.volume
            ):
                continued[old.ticket] = ticket
        return continued

    def positions_held(self) -> None:
        for ticket, held in sorted(self.book.positions.items()):
            now_ticket = self.continued.get(ticket, ticket)
            current = self.seen.get(now_ticket)
            changes = held.changes
            if current is None or current.side is not held.side:
                changes += 1
                self.closing.append(
                    _position_change(
                        held, SignalKind.POSITION_CLOSED, held.volume, changes, self.now
                    )
                )
                if current is not None:
                    # A netting reversal: the same ticket on the other side, opened now.
                    changes += 1
                    signal = replace(
                        _opened(current, None, event_id=f"pos:{ticket}:{changes}"),
                        source_time=self.now,
                    )
                    self.opening.append(signal)
                    self.positions[ticket] = replace(
                        _position_of(current), changes=changes, copies=signal.copies
                    )
                continue
            position = held
            if current.volume < held.volume:
                changes += 1
                closed = held.volume - current.volume
                self.closing.append(
                    _position_change(held, SignalKind.POSITION_REDUCED, closed, changes, self.now)
                )
                position = replace(position, volume=current.volume)
            elif current.volume > held.volume:
                changes += 1
                added = current.volume - held.volume
                signal = _position_change(
                    held, SignalKind.POSITION_INCREASED, added, changes, self.now
                )
                # The increase is one more copy of the position, if the position is copied.
                signal = replace(
                    signal,
                    stop_loss=current.stop_loss,
                    take_profit=current.take_profit,
                    copies=(signal.event_id,) if held.copies else (),
                )
                self.opening.append(signal)
                position = replace(
                    position, volume=current.volume, copies=held.copies + signal.copies
                )
            if (current.stop_loss, current.take_profit) != (held.stop_loss, held.take_profit):
                changes += 1
                signal = _position_change(
                    position, SignalKind.STOPS_CHANGED, current.volume, changes, self.now
                )
                # An increase seen in the same look is copied with these stops already.
                self.changing.append(
                    replace(
                        signal,
                        stop_loss=current.stop_loss,
                        take_profit=current.take_profit,
                        copies=held.copies,
                    )
                )
                position = replace(
                    position, stop_loss=current.stop_loss, take_profit=current.take_profit
                )
            self.positions[now_ticket] = replace(position, ticket=now_ticket, changes=changes)

    def positions_new(self) -> None:
        for ticket, current in self.seen.items():
            if ticket in self.positions or ticket in self.book.positions:
                continue
            order = self.triggered.get(ticket)
            if order is not None:
                # Its copy is the pending master order, whose children trigger at their brokers.
                copies = (order.copy,) if order.copy else ()
                self.positions[ticket] = replace(_position_of(current), copies=copies)
                continue
            signal = _opened(current, None)
            if current.opened_at < self.too_old:
                signal = replace(signal, copies=(), skip=SkipReason.SIGNAL_TOO_OLD)
            self.opening.append(signal)
            self.positions[ticket] = replace(_position_of(current), copies=signal.copies)

    def orders_seen(self) -> None:
        for ticket, current in self.seen_orders.items():
            held = self.book.orders.get(ticket)
            if held is None:
                signal = _placed(current, None)
                if current.placed_at < self.too_old:
                    signal = replace(signal, copies=(), skip=SkipReason.SIGNAL_TOO_OLD)
                self.opening.append(signal)
                self.orders[ticket] = replace(
                    _order_of(current), copy=signal.copies[0] if signal.copies else ""
                )
                continue
            if _order_terms(current) != _order_terms(held):
                held = replace(_order_of(current), changes=held.changes + 1, copy=held.copy)
                event_id = f"order:{ticket}:{held.changes}"
                self.changing.append(
                    _order_signal(held, SignalKind.ORDER_MODIFIED, event_id, self.now)
                )
            self.orders[ticket] = held


# -- building the book and its signals --------------------------------------------------------


def _position_of(seen: SeenPosition) -> SourcePosition:
    return SourcePosition(
        ticket=seen.ticket,
        symbol=seen.symbol,
        side=seen.side,
        volume=seen.volume,
        stop_loss=seen.stop_loss,
        take_profit=seen.take_profit,
        opened_at=seen.opened_at,
    )


def _order_of(seen: SeenOrder) -> SourceOrder:
    return SourceOrder(
        ticket=seen.ticket,
        symbol=seen.symbol,
        side=seen.side,
        order_type=seen.order_type,
        volume=seen.volume,
        price=seen.price,
        stop_limit_price=seen.stop_limit_price,
        stop_loss=seen.stop_loss,
        take_profit=seen.take_profit,
        time_in_force=seen.time_in_force,
        expires_at=seen.expires_at,
        placed_at=seen.placed_at,
    )


def _order_terms(order: SeenOrder | SourceOrder) -> tuple[object, ...]:
    """What a move of a pending order changes (its volume goes down only as it fills)."""
    return (order.price, order.stop_limit_price, order.stop_loss, order.take_profit)


def _opened(position: SeenPosition, skip: SkipReason | None, *, event_id: str = "") -> SourceSignal:
    event_id = event_id or f"pos:{position.ticket}:open"
    return SourceSignal(
        event_id=event_id,
        kind=SignalKind.POSITION_OPENED,
        ticket=position.ticket,
        symbol=position.symbol,
        side=position.side,
        volume=position.volume,
        source_time=position.opened_at,
        # The source's fill price: what a member's maximum slippage is measured from.
        price=position.price_open,
        stop_loss=position.stop_loss,
        take_profit=position.take_profit,
        copies=() if skip is not None else (event_id,),
        skip=skip,
    )


def _placed(order: SeenOrder, skip: SkipReason | None) -> SourceSignal:
    event_id = f"order:{order.ticket}:placed"
    return SourceSignal(
        event_id=event_id,
        kind=SignalKind.ORDER_PLACED,
        ticket=order.ticket,
        symbol=order.symbol,
        side=order.side,
        volume=order.volume,
        source_time=order.placed_at,
        order_type=order.order_type,
        price=order.price,
        stop_limit_price=order.stop_limit_price,
        stop_loss=order.stop_loss,
        take_profit=order.take_profit,
        time_in_force=order.time_in_force,
        expires_at=order.expires_at,
        copies=() if skip is not None else (event_id,),
        skip=skip,
    )


def _position_change(
    held: SourcePosition, kind: SignalKind, volume: Decimal, number: int, now: datetime
) -> SourceSignal:
    """The `number`th change of a position in the book."""
    fraction = None
    if kind in (SignalKind.POSITION_REDUCED, SignalKind.POSITION_CLOSED):
        fraction = Decimal(1) if kind is SignalKind.POSITION_CLOSED else volume / held.volume
    return SourceSignal(
        event_id=f"pos:{held.ticket}:{number}",
        kind=kind,
        ticket=held.ticket,
        symbol=held.symbol,
        side=held.side,
        volume=volume,
        source_time=now,
        fraction=fraction,
        stop_loss=held.stop_loss,
        take_profit=held.take_profit,
        copies=held.copies,
        skip=None if held.copies else SkipReason.NOT_COPIED,
    )


def _order_signal(
    order: SourceOrder, kind: SignalKind, event_id: str, now: datetime
) -> SourceSignal:
    return SourceSignal(
        event_id=event_id,
        kind=kind,
        ticket=order.ticket,
        symbol=order.symbol,
        side=order.side,
        volume=order.volume,
        source_time=now,
        order_type=order.order_type,
        price=order.price,
        stop_limit_price=order.stop_limit_price,
        stop_loss=order.stop_loss,
        take_profit=order.take_profit,
        time_in_force=order.time_in_force,
        expires_at=order.expires_at,
        copies=(order.copy,) if order.copy else (),
        skip=None if order.copy else SkipReason.NOT_COPIED,
    )


# -- stored form -------------------------------------------------------------------------------
# The book is stored as JSON beside the group's source: decimals and times as text (exact, and
# the exponent kept), enums by value.


def book_to_json(book: SourceBook) -> str:
    return json.dumps(
        {
            "started": book.started,
            "positions": [_position_json(p) for _, p in sorted(book.positions.items())],
            "orders": [_order_json(o) for _, o in sorted(book.orders.items())],
        },
        separators=(",", ":"),
    )


def book_from_json(text: str) -> SourceBook:
    if not text:
        return SourceBook()
    data = json.loads(text)
    positions = [_position_from(p) for p in data["positions"]]
    orders = [_order_from(o) for o in data["orders"]]
    return SourceBook(
        {p.ticket: p for p in positions}, {o.ticket: o for o in orders}, started=data["started"]
    )


def _text(value: Decimal | datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _position_json(p: SourcePosition) -> dict[str, object]:
    return {
        "ticket": p.ticket,
        "symbol": p.symbol,
        "side": p.side.value,
        "volume": str(p.volume),
        "stop_loss": _text(p.stop_loss),
        "take_profit": _text(p.take_profit),
        "opened_at": p.opened_at.isoformat(),
        "changes": p.changes,
        "copies": list(p.copies),
    }


def _position_from(d: dict[str, Any]) -> SourcePosition:
    return SourcePosition(
        ticket=d["ticket"],
        symbol=d["symbol"],
        side=Side(d["side"]),
        volume=Decimal(d["volume"]),
        stop_loss=_decimal(d["stop_loss"]),
        take_profit=_decimal(d["take_profit"]),
        opened_at=datetime.fromisoformat(d["opened_at"]),
        changes=d["changes"],
        copies=tuple(d["copies"]),
    )


def _order_json(o: SourceOrder) -> dict[str, object]:
    return {
        "ticket": o.ticket,
        "symbol": o.symbol,
        "side": o.side.value,
        "order_type": o.order_type.value,
        "volume": str(o.volume),
        "price": str(o.price),
        "stop_limit_price": _text(o.stop_limit_price),
        "stop_loss": _text(o.stop_loss),
        "take_profit": _text(o.take_profit),
        "time_in_force": o.time_in_force.value,
        "expires_at": _text(o.expires_at),
        "placed_at": o.placed_at.isoformat(),
        "changes": o.changes,
        "copy": o.copy,
    }


def _order_from(d: dict[str, Any]) -> SourceOrder:
    return SourceOrder(
        ticket=d["ticket"],
        symbol=d["symbol"],
        side=Side(d["side"]),
        order_type=OrderType(d["order_type"]),
        volume=Decimal(d["volume"]),
        price=Decimal(d["price"]),
        stop_limit_price=_decimal(d["stop_limit_price"]),
        stop_loss=_decimal(d["stop_loss"]),
        take_profit=_decimal(d["take_profit"]),
        time_in_force=TimeInForce(d["time_in_force"]),
        expires_at=_time(d["expires_at"]),
        placed_at=datetime.fromisoformat(d["placed_at"]),
        changes=d["changes"],
        copy=d["copy"],
    )
