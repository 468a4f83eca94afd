"""A new master order's children are built alike for a submission and a close: one SENT child
per child volume, each with its own tag; a closing child names what it closes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from gateway.domain.accounts import AllocationMethod, BelowMinPolicy
from gateway.domain.allocation import Allocation, AllocationLine, AllocationReason
from gateway.domain.closing import ClosingTarget
from gateway.domain.ids import tag_for_child
from gateway.domain.new_orders import new_master_order, sent_children, why_nothing_allocated
from gateway.domain.orders import (
    ChildOrderState,
    MasterOrderSpec,
    MasterOrderState,
    OrderType,
    Side,
)

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def line(account: str, *volumes: str, reasons: tuple[AllocationReason, ...] = ()) -> AllocationLine:
    total = sum((Decimal(v) for v in volumes), Decimal(0))
    return AllocationLine(
        account, f"EURUSD.{account}", AllocationMethod.EQUITY, None, total, total,
        tuple(Decimal(v) for v in volumes), reasons,
    )  # fmt: skip


def allocation(*lines: AllocationLine) -> Allocation:
    return Allocation(
        AllocationMethod.EQUITY, BelowMinPolicy.SKIP, Decimal(1), Decimal(1), Decimal(0), NOW,
        lines,
    )  # fmt: skip


def test_each_child_volume_is_one_sent_child_with_its_own_tag() -> None:
    children = sent_children(
        [line("a", "0.50", "0.40"), line("b"), line("c", "0.10")],
        master_order_id="mo_1",
        side=Side.SELL,
        magic=77,
        at=NOW,
    )
    assert [(c.account_id, c.symbol, c.volume) for c in children] == [
        ("a", "EURUSD.a", Decimal("0.50")),
        ("a", "EURUSD.a", Decimal("0.40")),
        ("c", "EURUSD.c", Decimal("0.10")),
    ]
    assert len({c.child_order_id for c in children}) == 3
    for child in children:
        assert child.state is ChildOrderState.SENT and child.sent_at is None
        assert child.tag == tag_for_child(child.child_order_id)
        assert (child.master_order_id, child.side, child.magic) == ("mo_1", Side.SELL, 77)
        assert child.created_at == child.updated_at == NOW
        assert (child.position_ticket, child.closes_child_order_id) == (0, "")


def test_closing_children_name_the_child_and_position_they_close() -> None:
    children = sent_children(
        [line("h", "0.30", "0.20"), line("n", "0.10")],
        master_order_id="mo_2",
        side=Side.SELL,
        magic=77,
        at=NOW,
        closing={
            "h": ClosingTarget("ch_h", 71, Side.SELL),
            # A reversed copy's position is closed on the master order's own side.
            "n": ClosingTarget("ch_n", 0, Side.BUY),
        },
    )
    assert [
        (c.account_id, c.position_ticket, c.closes_child_order_id, c.side) for c in children
    ] == [
        ("h", 71, "ch_h", Side.SELL),
        ("h", 71, "ch_h", Side.SELL),
        ("n", 0, "ch_n", Side.BUY),
    ]
    assert all(c.state is ChildOrderState.SENT for c in children)


def test_a_new_master_order_is_stored_dispatching_after_its_allocation() -> None:
    spec = MasterOrderSpec("g_1", "EURUSD", Side.BUY, OrderType.MARKET, Decimal("0.90"), "d-1")
    planned = allocation(line("a", "0.50", "0.40"))
    children = sent_children(planned.lines, master_order_id="mo_1", side=Side.BUY, magic=7, at=NOW)
    new = new_master_order(
        spec,
        master_order_id="mo_1",
        allocation=planned,
        children=children,
        magic=7,
        submitted_by="key_1",
        at=NOW,
    )
    assert new.allocated.state is MasterOrderState.ALLOCATED
    assert new.master.state is MasterOrderState.DISPATCHING
    assert new.children is children
    for master in (new.allocated, new.master):
        assert (master.master_order_id, master.spec, master.allocation) == ("mo_1", spec, planned)
        assert (master.child_count, master.magic, master.submitted_by) == (2, 7, "key_1")
        assert master.created_at == master.updated_at == NOW


def test_nothing_allocated_is_explained_by_the_lines_reasons() -> None:
    skipped = (AllocationReason.SKIPPED_BELOW_MIN,)
    assert why_nothing_allocated(allocation(line("a", reasons=skipped))) == "SKIPPED_BELOW_MIN"
    assert why_nothing_allocated(allocation()) == "the group has no members"
