"""What the Terminal protocol makes of MT4 order records.

MT4 knows orders only: an open OP_BUY/OP_SELL order is a position, an OP_BUYLIMIT... order a
pending order, and a closed order in the history pool is (part of) a position that was closed.
MT4 has no deals, and a partial close moves the rest of a position to a new ticket. So:

- a position is presented under its root ticket (the ticket it was opened with, which the EA
  follows through partial closes), as MT5 keeps a position's ticket: the engine names the
  position it opened, whatever ticket MT4 gave its remainder since;
- deals are derived: one opening deal per root (ticket = the root, volume = the lots of every
  order of that root together), and one closing deal per closed part (ticket = 2**32 + the
  closed order's ticket, so it never meets an order ticket, which MT4 keeps within int32);
- tags: the EA's journal gives each order the tag its root was opened with and, for a closed
  part, the tag of the request that closed it. Without a journal entry, the comment is matched
  against the tag, allowing for what brokers do to comments (see `comment_matches`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from gateway.domain.account_history import DealEntry
from gateway.domain.orders import FillingPolicy, OrderType, Side, TimeInForce
from gateway.terminals.mt4.messages import (
    OP_BUY,
    OP_BUYLIMIT,
    OP_BUYSTOP,
    OP_SELL,
    OP_SELLLIMIT,
    OP_SELLSTOP,
    OrderRecord,
)
from gateway.terminals.protocol import Deal, PendingOrder, Position

CLOSE_DEAL_TICKET_BASE = 1 << 32
# A comment cut short by the broker still names the tag if this much of it is left: tags are
# "mam:" + 20 characters, of which the first 12 carry 60 bits (48 of time, 12 random).
MIN_TRUNCATED_MATCH = 16
# Besides letters and digits, what tags are made of ("mam:" and the like).
_TAG_PUNCTUATION = frozenset(":_-.")

_PENDING_CMD = {
    (Side.BUY, OrderType.LIMIT): OP_BUYLIMIT,
    (Side.SELL, OrderType.LIMIT): OP_SELLLIMIT,
    (Side.BUY, OrderType.STOP): OP_BUYSTOP,
    (Side.SELL, OrderType.STOP): OP_SELLSTOP,
}
_PENDING_KIND = {cmd: kind for kind, cmd in _PENDING_CMD.items()}


def market_cmd(side: Side) -> int:
    return OP_BUY if side is Side.BUY else OP_SELL


def pending_cmd(side: Side, order_type: OrderType) -> int | None:
    """The MT4 operation of a pending order, None for what MT4 has not (stop limit)."""
    return _PENDING_CMD.get((side, order_type))


def side_of(cmd: int) -> Side:
    return Side.BUY if cmd in (OP_BUY, OP_BUYLIMIT, OP_BUYSTOP) else Side.SELL


def comment_matches(comment: str, tag: str) -> bool:
    """Whether a broker comment still names `tag`: equal; the tag with something the broker
    appended ("mam:...[sl]", "mam:... [tp]") that does not run on into more tag characters; or
    the tag cut short (and maybe appended to), if enough of it is left to tell tags apart."""
    if not tag or not comment:
        return False
    if comment == tag:
        return True
    if comment.startswith(tag):
        return not comment[len(tag)].isalnum()
    kept = _leading_tag_characters(comment)
    return len(kept) >= MIN_TRUNCATED_MATCH and tag.startswith(kept)


def _leading_tag_characters(comment: str) -> str:
    """The start of a comment up to what a broker appended ("[sl]", " [tp]", ...)."""
    end = 0
    while end < len(comment) and (comment[end].isalnum() or comment[end] in _TAG_PUNCTUATION):
        end += 1
    return comment[:end]


def tag_of(record: OrderRecord) -> str:
    """The tag a record's position or order carries: the journal's, else its comment."""
    return record.tag or record.comment


def carries(record: OrderRecord, tag: str) -> bool:
    return record.tag == tag if record.tag else comment_matches(record.comment, tag)


def position_of(record: OrderRecord) -> Position:
    return Position(
        ticket=record.root,
        symbol=record.symbol,
        side=side_of(record.cmd),
        volume=record.lots,
        price_open=record.open_price,
        magic=record.magic,
        comment=tag_of(record),
        opened_at=record.open_time,
        stop_loss=record.stop_loss,
        take_profit=record.take_profit,
    )


def pending_order_of(record: OrderRecord) -> PendingOrder:
    _, order_type = _PENDING_KIND[record.cmd]
    return PendingOrder(
        ticket=record.ticket,
        symbol=record.symbol,
        side=side_of(record.cmd),
        volume=record.lots,
        price=record.open_price,
        magic=record.magic,
        comment=tag_of(record),
        placed_at=record.open_time,
        order_type=order_type,
        stop_loss=record.stop_loss,
        take_profit=record.take_profit,
        time_in_force=TimeInForce.GTC if record.expiration is None else TimeInForce.SPECIFIED,
        expires_at=record.expiration,
        # MT4 fills a pending order whole when it triggers.
        filling=FillingPolicy.FOK,
        volume_initial=record.lots,
    )


def closing_deal_ticket(closed_ticket: int) -> int:
    return CLOSE_DEAL_TICKET_BASE + closed_ticket


def opening_deal(chain: list[OrderRecord]) -> Deal:
    """The deal that opened a position, from every order of its root seen (all of them share
    the opening's time and price; their lots add up to what was opened)."""
    first = next((r for r in chain if r.ticket == r.root), chain[0])
    return Deal(
        ticket=first.root,
        order_ticket=first.root,
        position_ticket=first.root,
        symbol=first.symbol,
        side=side_of(first.cmd),
        volume=sum((r.lots for r in chain), Decimal(0)),
        price=first.open_price,
        magic=first.magic,
        comment=tag_of(first),
        executed_at=first.open_time,
        entry=DealEntry.IN,
    )


def closing_deal(record: OrderRecord) -> Deal:
    """The deal that closed one part of a position (a closed market order)."""
    assert record.close_time is not None
    opened = side_of(record.cmd)
    return Deal(
        ticket=closing_deal_ticket(record.ticket),
        order_ticket=record.ticket,
        position_ticket=record.root,
        symbol=record.symbol,
        side=opened.opposite,
        volume=record.lots,
        price=record.close_price,
        magic=record.magic,
        comment=record.close_tag or record.comment,
        executed_at=record.close_time,
        entry=DealEntry.OUT_BY if record.closed_by else DealEntry.OUT,
        # Everything the close credited to the balance.
        profit=record.profit + record.swap + record.commission,
    )


def deals_of(records: Iterable[OrderRecord], since: datetime | None = None) -> list[Deal]:
    """The deals the records make, executed at or after `since` (to the second: MT4 times
    have whole seconds), oldest first."""
    floor = None if since is None else since.replace(microsecond=0)
    chains: dict[int, list[OrderRecord]] = {}
    closed: list[OrderRecord] = []
    seen: set[int] = set()
    for record in records:
        # Zero lots: the side of a close-by MT4 books without volume; it made no deal.
        if not record.is_market or record.ticket in seen or record.lots <= 0:
            continue
        seen.add(record.ticket)
        chains.setdefault(record.root, []).append(record)
        if not record.is_open:
            closed.append(record)
    deals = [opening_deal(chain) for chain in chains.values()]
    deals.extend(closing_deal(record) for record in closed)
    if floor is not None:
        deals = [d for d in deals if d.executed_at >= floor]
    deals.sort(key=lambda d: (d.executed_at, d.ticket))
    return deals
