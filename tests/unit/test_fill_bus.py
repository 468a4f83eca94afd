from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from gateway.domain.fills import Fill
from gateway.domain.orders import Side
from gateway.engine.fill_bus import FillBus
from gateway.store import FillFilter
from gateway.store.store import CommittedFill


def fill(sequence: int, account_id: str = "acc_1", master_order_id: str = "mo_1") -> CommittedFill:
    return CommittedFill(
        Fill(
            sequence, f"fl_{sequence}", master_order_id, f"ch_{sequence}", account_id, "EURUSD",
            Side.BUY, Decimal("0.01"), Decimal("1.1"), None, None, 1, 1, 1, datetime.now(UTC),
        ),
        f"message {sequence}".encode(),
    )  # fmt: skip


async def test_subscribers_get_only_their_accounts_in_order() -> None:
    bus = FillBus()
    mine = bus.subscribe(FillFilter(account_ids=frozenset({"acc_2"})))
    bus.publish([fill(1), fill(2, "acc_2"), fill(3, "acc_2")])
    assert [f.fill.sequence for f in await mine.next_batch(10)] == [2, 3]


async def test_subscribers_get_the_messages_the_fills_were_stored_with() -> None:
    bus = FillBus()
    one_order = bus.subscribe(FillFilter(master_order_id="mo_2"))
    everything = bus.subscribe(FillFilter())
    published = [fill(1), fill(2, master_order_id="mo_2"), fill(3)]
    bus.publish(published)
    # The same objects, bytes included: nothing is encoded per subscriber.
    assert [f.wire for f in await one_order.next_batch(10)] == [b"message 2"]
    got = await everything.next_batch(10)
    assert got == published and all(a.wire is b.wire for a, b in zip(got, published, strict=True))


ACCOUNTS = [f"acc_{n}" for n in range(6)]
ORDERS = ["mo_1", "mo_2"]


@given(
    published=st.lists(
        st.lists(
            st.tuples(st.sampled_from(ACCOUNTS), st.sampled_from(ORDERS)), min_size=1, max_size=12
        ),
        max_size=4,
    ),
    filters=st.lists(
        st.builds(
            FillFilter,
            account_ids=st.frozensets(st.sampled_from([*ACCOUNTS, "acc_none"]), max_size=4),
            master_order_id=st.sampled_from(["", *ORDERS]),
        ),
        min_size=1,
        max_size=5,
    ),
)
async def test_each_subscriber_gets_exactly_what_its_filter_matches_in_sequence_order(
    published: list[list[tuple[str, str]]], filters: list[FillFilter]
) -> None:
    # Filters of more and of fewer accounts than a publish has fills take different paths.
    bus = FillBus()
    subscriptions = [bus.subscribe(f) for f in filters]
    everything: list[CommittedFill] = []
    for batch in published:
        fills = [
            fill(len(everything) + n, account_id, master_order_id)
            for n, (account_id, master_order_id) in enumerate(batch, start=1)
        ]
        everything.extend(fills)
        bus.publish(fills)
    for subscription in subscriptions:
        got = await subscription.next_batch(1_000, wait_s=0)
        assert got == [f for f in everything if subscription.filter.matches(f.fill)]


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


async def test_a_narrowed_subscription_drops_what_it_buffered_of_the_accounts_it_lost() -> None:
    bus = FillBus()
    two_accounts = bus.subscribe(FillFilter(account_ids=frozenset({"acc_1", "acc_2"})))
    bus.publish([fill(1), fill(2, "acc_2"), fill(3)])
    two_accounts.narrow(FillFilter(account_ids=frozenset({"acc_1"})))
    bus.publish([fill(4, "acc_2"), fill(5)])
    # acc_2's fill 2 was buffered before the narrowing: it is not sent after it either.
    assert [f.fill.sequence for f in await two_accounts.next_batch(10)] == [1, 3, 5]
    assert two_accounts.narrowed
