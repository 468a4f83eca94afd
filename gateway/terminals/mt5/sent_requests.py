"""What one session sent, by tag: what find_by_tag needs when the comment is no help.

A broker may rewrite the comments of orders and deals (its own text, a shortened tag), so a
child that executed can carry no tag at the broker. The session remembers, per tag, what it
sent (symbol, side, volume, magic, when) and the order tickets the server answered with:

- records of a remembered order ticket are the tag's whatever their comment says;
- records that match what was sent (magic, symbol, side, volume, time) but carry no intact tag
  make the outcome ambiguous (the engine leaves the child UNKNOWN and never sends it again).

Memory only, and bounded: after a worker restart find_by_tag falls back to the comment and to
any unattributed record of an expert in the tag's time window (session.py).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from gateway.domain.orders import Side
from gateway.terminals.protocol import OrderRequest, TradeAction

# Enough for every child of the last hours on one account; the oldest are forgotten first.
DEFAULT_CAPACITY = 10_000


@dataclass(slots=True)
class SentRequest:
    """A request this session gave to order_send under one tag (its first send, if retried)."""

    tag: str
    action: TradeAction
    symbol: str
    side: Side
    volume: Decimal
    magic: int
    first_sent_at: datetime
    # The orders the server answered with (a retry makes another).
    order_tickets: set[int] = field(default_factory=set)


class SentRequests:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._by_tag: OrderedDict[str, SentRequest] = OrderedDict()
        self._tag_of_order: dict[int, str] = {}

    def sending(self, request: OrderRequest, at: datetime) -> None:
        """Called before order_send: an answer lost on the way back still leaves the record."""
        sent = self._by_tag.get(request.tag)
        if sent is not None:
            self._by_tag.move_to_end(request.tag)
            return
        self._by_tag[request.tag] = SentRequest(
            tag=request.tag,
            action=request.action,
            symbol=request.symbol,
            side=request.side,
            volume=request.volume,
            magic=request.magic,
            first_sent_at=at,
        )
        while len(self._by_tag) > self._capacity:
            _, forgotten = self._by_tag.popitem(last=False)
            for ticket in forgotten.order_tickets:
                self._tag_of_order.pop(ticket, None)

    def accepted(self, tag: str, order_ticket: int) -> None:
        """The server answered the tag's request with this order."""
        sent = self._by_tag.get(tag)
        if sent is None or not order_ticket:
            return
        sent.order_tickets.add(order_ticket)
        self._tag_of_order[order_ticket] = tag

    def get(self, tag: str) -> SentRequest | None:
        return self._by_tag.get(tag)

    def orders_of_other_tags(self, tag: str) -> frozenset[int]:
        """The order tickets known to belong to other tags (never this tag's lookalikes)."""
        return frozenset(ticket for ticket, owner in self._tag_of_order.items() if owner != tag)
