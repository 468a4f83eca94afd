from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from gateway.domain.fills import Fill
from gateway.domain.orders import Side
from gateway.engine.fill_bus import FillBus
from gateway.store import FillFilter


def fill(sequence: int, account_id: str = "acc_1") -> Fill:
    return Fill(
        sequence, f"fl_{sequence}", "mo_1", f"ch_{sequence}", account_id, "EURUSD", Side.BUY,
        Decimal("0.01"), Decimal("1.1"), None, None, 1, 1, 1, datetime.now(UTC),
    )  # fmt: skip


async def test_subscribers_get_only_their_accounts_in_order() -> None:
    bus = FillBus()
    mine = bus.subscribe(FillFilter(account_ids=frozenset({"acc_2"})))
    bus.publish([fill(1), fill(2, "acc_2"), fill(3, "acc_2")])
    assert [f.sequence for f in await mine.next_batch(10)] == [2, 3]


async def test_a_slow_subscriber_overflows_instead_of_growing_memory() -> None:
    bus = FillBus(max_pending=5)
    slow = bus.subscribe(FillFilter())
    fast = bus.subscribe(FillFilter())
    bus.publish([fill(i) for i in range(1, 4)])
    assert len(await fast.next_batch(10)) == 3
    bus.publish([fill(i) for i in range(4, 7)])
    assert slow.overflowed and await slow.next_batch(10) == []
    assert not fast.overflowed and len(await fast.next_batch(10)) == 3


async def test_waiting_without_fills_times_out_empty() -> None:
    bus = FillBus()
    subscription = bus.subscribe(FillFilter())
    assert await subscription.next_batch(10, wait_s=0.01) == []
