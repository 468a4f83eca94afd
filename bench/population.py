"""Stores set up through the Store before a gateway starts on them: accounts, groups, fills.

Creating thousands of accounts through the API costs a round trip and a commit each; written
here, a gateway started afterwards attaches every account to its simulated terminal as at any
restart. Stored fills hang off one master order whose children are one per account.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from gateway.api import fill_wire
from gateway.domain.accounts import (
    Account,
    AccountState,
    AllocationMethod,
    AllocationSettings,
    BelowMinPolicy,
    Group,
    GroupMember,
    MarginMode,
    Platform,
)
from gateway.domain.allocation import Allocation, AllocationLine
from gateway.domain.fills import Fill
from gateway.domain.ids import new_id, tag_for_child
from gateway.domain.orders import (
    ChildOrder,
    ChildOrderState,
    MasterOrder,
    MasterOrderSpec,
    MasterOrderState,
    OrderType,
    Side,
)
from gateway.store import Store

T0 = datetime.now(UTC)
FIRST_LOGIN = 1_000_000
# Every account the same money: an order of 0.01 lot x accounts gives each exactly 0.01.
# Netting accounts, traded buy then sell, keep one position each however long a run lasts
# (a hedging account would add one per fill, and the simulated broker sums them on each read).
BALANCE = Decimal("100000.00")


@dataclass(frozen=True)
class Population:
    account_ids: tuple[str, ...]
    group_id: str
    # Groups of one account each, for trading account by account.
    single_group_ids: tuple[str, ...] = ()
    stored_fills: int = 0


def account(i: int) -> Account:
    return Account(
        account_id=f"acc_{i:020d}",
        name=f"bench-{i:06d}",
        platform=Platform.SIMULATED,
        login=FIRST_LOGIN + i,
        server="mam-sim",
        currency="USD",
        state=AccountState.ACTIVE,
        margin_mode=MarginMode.NETTING,
        leverage=100,
        created_at=T0,
        updated_at=T0,
        initial_balance=BALANCE,
    )


def group(name: str, account_ids: Sequence[str], magic: int) -> Group:
    return Group(
        group_id=new_id("grp"),
        name=name,
        allocation=AllocationSettings(method=AllocationMethod.EQUITY),
        members=tuple(GroupMember(account_id=a) for a in account_ids),
        magic=magic,
        created_at=T0,
        updated_at=T0,
    )


async def populate(
    url: str, accounts: int, *, single_groups: int = 0, fills: int = 0, fill_batch: int = 20_000
) -> Population:
    # The gateway's own encoder: the stored history replays as the gateway's would.
    store = await Store.open(url, fill_encoder=fill_wire.encode)
    try:
        ids = []
        for i in range(accounts):
            created = account(i)
            await store.insert_account(created)
            ids.append(created.account_id)
        magic = await store.next_magic()
        main = group("bench", ids, magic)
        await store.insert_group(main)
        singles = []
        for i, account_id in enumerate(ids[:single_groups]):
            single = group(f"bench-single-{i:05d}", [account_id], magic + 1 + i)
            await store.insert_group(single)
            singles.append(single.group_id)
        if fills:
            await store_fills(store, main, fills, batch=fill_batch)
        return Population(tuple(ids), main.group_id, tuple(singles), fills)
    finally:
        await store.close()


def master_order(
    group: Group, state: ChildOrderState = ChildOrderState.SENT
) -> tuple[MasterOrder, list[ChildOrder]]:
    """A master order of 0.01 lot per member, dispatched, with one child per member."""
    master_id = new_id("mo")
    volume = (Decimal("0.01") * len(group.members)).quantize(Decimal("0.01"))
    lines = tuple(
        AllocationLine(
            account_id=m.account_id,
            symbol="EURUSD",
            method=AllocationMethod.EQUAL,
            basis=Decimal(1),
            target_volume=Decimal("0.01"),
            volume=Decimal("0.01"),
            child_volumes=(Decimal("0.01"),),
            reasons=(),
        )
        for m in group.members
    )
    master = MasterOrder(
        master_order_id=master_id,
        spec=MasterOrderSpec(
            client_order_id=f"bench-{master_id}",
            group_id=group.group_id,
            symbol="EURUSD",
            side=Side.BUY,
            order_type=OrderType.MARKET,
            volume=volume,
        ),
        state=MasterOrderState.DISPATCHING,
        magic=group.magic,
        allocation=Allocation(
            method=AllocationMethod.EQUAL,
            below_min_policy=BelowMinPolicy.SKIP,
            requested_volume=volume,
            allocated_volume=volume,
            unallocated_volume=Decimal("0.00"),
            snapshot_time=T0,
            lines=lines,
        ),
        created_at=T0,
        updated_at=T0,
        child_count=len(lines),
    )
    children = []
    for line in lines:
        child_id = new_id("ch")
        children.append(
            ChildOrder(
                child_order_id=child_id,
                master_order_id=master_id,
                account_id=line.account_id,
                symbol="EURUSD",
                side=Side.BUY,
                volume=Decimal("0.01"),
                state=state,
                tag=tag_for_child(child_id),
                magic=group.magic,
                created_at=T0,
                updated_at=T0,
                sent_at=T0,
                attempts=1,
            )
        )
    return master, children


def filled(
    master: MasterOrder, children: list[ChildOrder]
) -> tuple[MasterOrder, list[ChildOrder], list[Fill]]:
    """The master order and its children as the broker filled them, and their fills."""
    done_at = T0 + timedelta(milliseconds=20)
    done = [
        dataclasses.replace(
            c,
            state=ChildOrderState.FILLED,
            filled_volume=c.volume,
            requested_price=Decimal("1.08490"),
            fill_price=Decimal("1.08500"),
            slippage_points=Decimal("1.0"),
            retcode=10009,
            status_text="done",
            broker_order_ticket=10_000 + i,
            broker_deal_ticket=20_000 + i,
            position_ticket=30_000 + i,
            filled_at=done_at,
            updated_at=done_at,
        )
        for i, c in enumerate(children)
    ]
    fills = [fill_of(c, i) for i, c in enumerate(done)]
    progressed = dataclasses.replace(
        master,
        state=MasterOrderState.FILLED,
        filled_child_count=len(done),
        filled_volume=master.spec.volume,
        average_fill_price=Decimal("1.08500000"),
        updated_at=done_at,
    )
    return progressed, done, fills


def fill_of(child: ChildOrder, number: int) -> Fill:
    return Fill(
        sequence=0,
        fill_id=new_id("fl"),
        master_order_id=child.master_order_id,
        child_order_id=child.child_order_id,
        account_id=child.account_id,
        symbol=child.symbol,
        side=child.side,
        volume=Decimal("0.01"),
        price=Decimal("1.08500"),
        requested_price=Decimal("1.08490"),
        slippage_points=Decimal("1.0"),
        deal_ticket=20_000_000 + number,
        order_ticket=10_000_000 + number,
        position_ticket=30_000_000 + number,
        executed_at=T0 + timedelta(milliseconds=20),
    )


async def store_fills(store: Store, group: Group, count: int, *, batch: int) -> None:
    """`count` fills over the children of one finished master order, committed in batches."""
    master, children = master_order(group, ChildOrderState.FILLED)
    finished = dataclasses.replace(master, state=MasterOrderState.FILLED)
    await store.insert_master_order(finished, children)
    written = 0
    while written < count:
        size = min(batch, count - written)
        fills = [fill_of(children[(written + i) % len(children)], written + i) for i in range(size)]
        await store.save_progress(fills=fills)
        written += size
