"""OrderUpdateBus: followed orders only, in order; overflow keeps answers and marks orders stale."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from gateway.domain.orders import ChildOrder, ChildOrderState, Side
from gateway.engine.order_updates import OrderUpdate, OrderUpdateBus

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def child(n: int, master_order_id: str = "mo_1") -> ChildOrder:
    return ChildOrder(
        f"ch_{n}", master_order_id, f"acc_{n}", "EURUSD", Side.BUY, Decimal("0.01"),
        ChildOrderState.SENT, f"mam:{n}", 1, NOW, NOW,
    )  # fmt: skip


async def test_a_follower_gets_only_the_orders_it_follows_in_commit_order() -> None:
    bus = OrderUpdateBus()
    follower = bus.open()
    follower.follow("mo_1")
    bus.publish([], [child(1), child(2, "mo_2"), child(3)])
    bus.publish([], [child(4)])
    items = await follower.next_items()
    assert all(isinstance(i, OrderUpdate) for i in items)
    assert [[c.child_order_id for c in i.children] for i in items] == [  # type: ignore[attr-defined]
        ["ch_1", "ch_3"],
        ["ch_4"],
    ]


async def test_overflow_drops_updates_keeps_answers_and_marks_the_orders_stale() -> None:
    bus = OrderUpdateBus(max_pending=3)
    follower = bus.open()
    follower.follow("mo_1")
    follower.follow("mo_2")
    bus.publish([], [child(1)])
    follower.put("answer")
    bus.publish([], [child(n, "mo_2") for n in range(2, 6)])  # 5 pending > 3
    assert follower.overflows == 1
    assert await follower.next_items() == ["answer"]
    assert follower.stale == {"mo_1", "mo_2"}
    bus.close(follower)
    assert bus.overflows == 1 and bus.follower_count == 0


async def test_waiting_without_updates_times_out_empty() -> None:
    follower = OrderUpdateBus().open()
    assert await follower.next_items(wait_s=0.01) == []
