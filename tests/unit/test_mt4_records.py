"""MT4 order records as the Terminal protocol presents them: positions under their root
ticket, derived deals, tags through the journal or through what brokers do to comments."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from gateway.domain.account_history import DealEntry
from gateway.domain.orders import OrderType, Side, TimeInForce
from gateway.terminals.mt4 import records
from gateway.terminals.mt4.messages import OP_BUY, OP_SELL, OP_SELLSTOP, OrderRecord

D = Decimal
TAG = "mam:0123456789ABCDEFGHJK"
OPENED = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def record(ticket: int, lots: str, **fields: object) -> OrderRecord:
    values: dict[str, object] = {
        "ticket": ticket,
        "root": ticket,
        "tag": TAG,
        "symbol": "EURUSD",
        "cmd": OP_BUY,
        "lots": D(lots),
        "open_price": D("1.08454"),
        "open_time": OPENED,
        "close_price": D("1.08446"),
        "close_time": None,
        "stop_loss": None,
        "take_profit": None,
        "expiration": None,
        "magic": 700001,
        "comment": TAG,
        "profit": D(0),
        "swap": D(0),
        "commission": D(0),
        "close_tag": "",
        "closed_by": 0,
    }
    values.update(fields)
    return OrderRecord(**values)  # type: ignore[arg-type]


def closed(r: OrderRecord, **fields: object) -> OrderRecord:
    return dataclasses.replace(r, close_time=OPENED + timedelta(minutes=5), **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("comment", "matches"),
    [
        (TAG, True),
        (TAG + "[sl]", True),
        (TAG + " [tp]", True),
        (TAG[:20], True),
        (TAG[:16], True),
        (TAG[:15], False),
        (TAG[:20] + "[sl]", True),
        (TAG[:12] + "[sl]", False),
        (TAG + "X", False),
        ("mam:0123456789ABCDEFGHJX", False),
        ("from #1001", False),
        ("", False),
    ],
)
def test_a_comment_names_a_tag_despite_what_brokers_do_to_it(comment: str, matches: bool) -> None:
    assert records.comment_matches(comment, TAG) is matches


def test_the_journal_tag_wins_over_a_comment_that_happens_to_match() -> None:
    other = "mam:ZZZZZZZZZZZZZZZZZZZZ"
    assert not records.carries(record(1, "1", tag=other), TAG)
    assert records.carries(record(1, "1", tag="", comment=TAG + "[sl]"), TAG)


def test_a_partly_closed_position_keeps_its_root_ticket_and_tag() -> None:
    rest = record(1002, "0.60", root=1001, comment="from #1001")
    position = records.position_of(rest)
    assert (position.ticket, position.volume, position.comment) == (1001, D("0.60"), TAG)
    assert position.side is Side.BUY


def test_a_chain_of_partial_closes_makes_one_opening_deal_and_one_deal_per_close() -> None:
    first_part = closed(record(1001, "0.40", comment="to #1002"), close_tag="mam:close-1")
    second_part = closed(
        record(1002, "0.25", root=1001, comment="to #1003"),
        close_tag="mam:close-2",
        profit=D("2.50"),
        swap=D("-0.10"),
        commission=D("-0.20"),
    )
    rest = record(1003, "0.35", root=1001, comment="from #1002")
    deals = records.deals_of([rest, second_part, first_part])
    opening, *closes = deals
    assert (opening.ticket, opening.volume, opening.entry) == (1001, D("1.00"), DealEntry.IN)
    assert (opening.comment, opening.position_ticket) == (TAG, 1001)
    assert [(d.ticket, d.volume, d.comment) for d in closes] == [
        (2**32 + 1001, D("0.40"), "mam:close-1"),
        (2**32 + 1002, D("0.25"), "mam:close-2"),
    ]
    assert all(d.side is Side.SELL and d.position_ticket == 1001 for d in closes)
    assert closes[1].profit == D("2.20")


def test_a_close_by_makes_out_by_deals_and_no_deal_for_a_side_booked_without_lots() -> None:
    buy = closed(record(1, "0.40"), closed_by=2, close_tag="mam:by")
    sell = closed(record(2, "0", cmd=OP_SELL), closed_by=1, close_tag="mam:by")
    deals = records.deals_of([buy, sell])
    assert [(d.ticket, d.entry) for d in deals] == [
        (1, DealEntry.IN),
        (2**32 + 1, DealEntry.OUT_BY),
    ]


def test_deals_since_count_whole_seconds_as_mt4_times_do() -> None:
    part = closed(record(1, "1"))
    assert part.close_time is not None
    since = part.close_time + timedelta(milliseconds=400)
    assert [d.ticket for d in records.deals_of([part], since)] == [2**32 + 1]
    assert records.deals_of([part], part.close_time + timedelta(seconds=1)) == []


def test_pending_orders_and_deleted_ones_make_no_deals() -> None:
    pending = record(5, "0.10", cmd=OP_SELLSTOP, expiration=OPENED + timedelta(days=1))
    assert records.deals_of([pending, closed(pending)]) == []
    order = records.pending_order_of(pending)
    assert (order.side, order.order_type) == (Side.SELL, OrderType.STOP)
    assert order.time_in_force is TimeInForce.SPECIFIED


def test_mt4_has_no_stop_limit_orders() -> None:
    assert records.pending_cmd(Side.BUY, OrderType.STOP_LIMIT) is None
    assert records.pending_cmd(Side.SELL, OrderType.LIMIT) == 3
