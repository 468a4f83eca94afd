"""MamClient and SyncMamClient against a real gateway: accounts, groups, preview, submit, fills,
errors."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import grpc
import pytest
from mam_client import (
    AccountState,
    AllocationMethod,
    AllocationSettings,
    Fill,
    Group,
    GroupMember,
    MamClient,
    MamError,
    MasterOrderState,
    NewAccount,
    NewGroup,
    OrderSpec,
    Platform,
    Side,
    SyncMamClient,
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def simulated(name: str, balance: str, login: int = 91001) -> NewAccount:
    return NewAccount(
        name=name,
        platform=Platform.SIMULATED,
        login=login,
        server="mam-sim",
        currency="USD",
        initial_balance=Decimal(balance),
    )


async def test_created_accounts_are_listed_page_by_page(client: MamClient) -> None:
    prefix = unique("paged")
    created = [
        await client.create_account(simulated(f"{prefix}-{i}", "10000.50", 91000 + i))
        for i in range(5)
    ]
    assert created[0].platform is Platform.SIMULATED
    assert created[0].state is AccountState.ACTIVE
    assert created[0].initial_balance == Decimal("10000.50")
    assert created[0].account_id

    listed = [a async for a in client.list_accounts(page_size=2) if a.name.startswith(prefix)]
    assert [a.account_id for a in listed] == [a.account_id for a in created]
    first = await client.list_accounts_page(page_size=2)
    assert len(first.items) == 2 and first.next_page_token

    fetched = await client.get_account(created[3].account_id)
    assert fetched.name == f"{prefix}-3"


async def test_a_group_is_created_read_and_updated(client: MamClient) -> None:
    accounts = [
        await client.create_account(simulated(unique("member"), balance, 92000 + i))
        for i, balance in enumerate(["1000", "3000"])
    ]
    group = await client.create_group(
        NewGroup(
            name=unique("group"),
            allocation=AllocationSettings(method=AllocationMethod.EQUAL),
            members=tuple(GroupMember(account_id=a.account_id) for a in accounts),
        )
    )
    assert group.allocation.method is AllocationMethod.EQUAL
    assert [m.account_id for m in group.members] == [a.account_id for a in accounts]
    assert group.magic > 0
    assert (await client.get_group(group.group_id)).name == group.name
    assert group.group_id in [g.group_id async for g in client.list_groups(page_size=1)]

    updated = await client.update_group(
        group.group_id,
        allocation=AllocationSettings(method=AllocationMethod.LOT_MULTIPLIER),
        members=[
            GroupMember(account_id=accounts[0].account_id, lot_multiplier=Decimal("0.5")),
            GroupMember(account_id=accounts[1].account_id, lot_multiplier=Decimal("2")),
        ],
    )
    assert updated.allocation.method is AllocationMethod.LOT_MULTIPLIER
    assert [m.lot_multiplier for m in updated.members] == [Decimal("0.5"), Decimal("2")]
    assert updated.name == group.name


async def test_preview_shares_the_volume_exactly_and_sends_nothing(
    client: MamClient, demo_group: Group
) -> None:
    spec = OrderSpec(
        group_id=demo_group.group_id, symbol="EURUSD", side=Side.BUY, volume=Decimal("1.00")
    )
    before = [o.master_order_id async for o in client.list_master_orders()]
    allocation = await client.preview_allocation(spec)
    assert allocation.method is AllocationMethod.EQUITY
    assert allocation.requested_volume == Decimal("1.00")
    assert allocation.allocated_volume + allocation.unallocated_volume == Decimal("1.00")
    assert sum(line.volume for line in allocation.lines) == allocation.allocated_volume
    assert len(allocation.lines) == 20
    for line in allocation.lines:
        assert isinstance(line.volume, Decimal)
        assert line.volume % Decimal("0.01") == 0
        assert line.basis is not None and line.basis > 0
    assert [o.master_order_id async for o in client.list_master_orders()] == before


async def test_every_fill_of_a_submitted_order_arrives_on_the_stream(
    client: MamClient, demo_group: Group
) -> None:
    fills = client.fill_events(live_only=True)
    await anext(fills)  # the first heartbeat: the stream is live
    submission = await client.submit_master_order(
        OrderSpec(
            group_id=demo_group.group_id, symbol="EURUSD", side=Side.SELL, volume=Decimal("1.00")
        )
    )
    master = submission.master_order
    assert not submission.replayed
    assert master.child_count > 1
    assert master.spec.client_order_id.startswith("mam-client-")
    assert master.allocation is not None
    assert master.allocation.allocated_volume == Decimal("1.00")
    received: list[Fill] = []
    async with asyncio.timeout(30):
        async for event in fills:
            if isinstance(event, Fill) and event.master_order_id == master.master_order_id:
                received.append(event)
            if len(received) == master.child_count:
                break
    await fills.aclose()
    assert sum(f.volume for f in received) == Decimal("1.00")
    assert all(f.side is Side.SELL and f.price is not None for f in received)
    sequences = [f.sequence for f in received]
    assert sequences == sorted(set(sequences))

    final = await client.get_master_order(master.master_order_id)
    assert final.state is MasterOrderState.FILLED
    assert final.filled_volume == Decimal("1.00")
    assert {c.child_order_id for c in final.children} == {f.child_order_id for f in received}
    assert master.master_order_id in [o.master_order_id async for o in client.list_master_orders()]


async def test_resubmitting_the_same_client_order_id_trades_once(
    client: MamClient, demo_group: Group
) -> None:
    spec = OrderSpec(
        group_id=demo_group.group_id,
        symbol="EURUSD",
        side=Side.BUY,
        volume=Decimal("0.50"),
        client_order_id=unique("retry"),
    )
    first = await client.submit_master_order(spec)
    again = await client.submit_master_order(spec)
    assert again.master_order.master_order_id == first.master_order.master_order_id
    assert again.replayed


async def test_a_bad_volume_raises_mam_error_with_reason_and_field(
    client: MamClient, demo_group: Group
) -> None:
    with pytest.raises(MamError) as caught:
        await client.submit_master_order(
            OrderSpec(
                group_id=demo_group.group_id,
                symbol="EURUSD",
                side=Side.BUY,
                volume=Decimal("0.001"),
            )
        )
    error = caught.value
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_VOLUME"
    assert error.domain == "mam-gateway"
    assert "order.volume" in error.fields
    assert str(error).startswith("INVALID_ARGUMENT INVALID_VOLUME: ")
    assert "order.volume: " in str(error)


async def test_the_gateways_symbols_are_listed_with_their_step_and_digits(
    client: MamClient,
) -> None:
    symbols = [s async for s in client.list_symbols(page_size=2)]
    assert [s.name for s in symbols] == ["EURUSD", "US500", "XAUUSD"]
    eurusd = symbols[0]
    assert (eurusd.volume_step, eurusd.digits, eurusd.volume_min) == (
        Decimal("0.01"),
        5,
        Decimal("0.01"),
    )
    assert eurusd.precision.volume_text(Decimal("0.5")) == "0.50"
    assert symbols[1].precision.volume_text(Decimal("2")) == "2.0"


async def test_an_unknown_group_raises_not_found(client: MamClient) -> None:
    with pytest.raises(MamError) as caught:
        await client.get_group("no-such-group")
    assert caught.value.code is grpc.StatusCode.NOT_FOUND
    assert caught.value.reason == "GROUP_NOT_FOUND"


async def test_closing_an_unknown_order_raises_not_found(client: MamClient) -> None:
    with pytest.raises(MamError) as caught:
        await client.close_master_position("mo_NOSUCHORDER", fraction=Decimal(1))
    assert caught.value.code is grpc.StatusCode.NOT_FOUND
    assert caught.value.reason == "MASTER_ORDER_NOT_FOUND"


async def test_an_unreachable_gateway_fails_to_connect_quickly() -> None:
    with pytest.raises(MamError) as caught:
        await MamClient.connect("127.0.0.1:1", connect_timeout_s=0.5)
    assert caught.value.code is grpc.StatusCode.UNAVAILABLE


def test_the_sync_client_submits_and_follows_fills(
    sync_client: SyncMamClient, demo_group: Group
) -> None:
    after = 0
    for event in sync_client.fill_events(live_only=True):
        after = event.sequence  # the first heartbeat: where "now" is
        break
    submission = sync_client.submit_master_order(
        OrderSpec(
            group_id=demo_group.group_id, symbol="XAUUSD", side=Side.BUY, volume=Decimal("0.40")
        )
    )
    master = submission.master_order
    received = []
    for fill in sync_client.fills(after_sequence=after, master_order_id=master.master_order_id):
        received.append(fill)
        if len(received) == master.child_count:
            break
    assert sum(f.volume for f in received) == Decimal("0.40")
    assert {f.master_order_id for f in received} == {master.master_order_id}
