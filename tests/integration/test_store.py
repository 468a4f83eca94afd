"""The store on a real SQLite file and a real PostgreSQL database: schema, exactness, sequences.

Every test runs on both backends (the `database_url` fixture in tests/conftest.py).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Index, MetaData, String, event, inspect, select
from sqlalchemy import text as sql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from gateway.domain.accounts import (
    FIRST_MAGIC,
    MAX_MAGIC,
    Account,
    AccountSnapshot,
    AccountState,
    AllocationMethod,
    AllocationSettings,
    BelowMinPolicy,
    Group,
    GroupMember,
    MarginMode,
    Platform,
)
from gateway.domain.allocation import Allocation, AllocationLine, AllocationReason
from gateway.domain.copy_options import (
    DEFAULT_COPY_OPTIONS,
    CopyDirection,
    CopyOptions,
    MinVolumePolicy,
)
from gateway.domain.fills import Fill
from gateway.domain.orders import (
    ChildOrder,
    ChildOrderState,
    ExecutionStats,
    MasterOrder,
    MasterOrderSpec,
    MasterOrderState,
    OrderType,
    Side,
)
from gateway.store import (
    AccountInUse,
    DuplicateClientOrderId,
    FillFilter,
    Store,
    bulk,
    migrations,
    records,
    tables,
)
from gateway.store.column_types import DecimalText, UtcMicros
from gateway.store.engines import create_engine

T0 = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(database_url)
    try:
        yield opened
    finally:
        await opened.close()


# -- builders ---------------------------------------------------------------------------------


def account(n: int, balance: str = "10000.00") -> Account:
    return Account(
        account_id=f"acc_{n:020d}",
        name=f"client-{n:03d}",
        platform=Platform.SIMULATED,
        login=70_000 + n,
        server="mam-sim",
        currency="USD",
        state=AccountState.ACTIVE,
        margin_mode=MarginMode.HEDGING,
        leverage=100,
        created_at=T0,
        updated_at=T0 + timedelta(microseconds=1),
        initial_balance=Decimal(balance),
        snapshot=AccountSnapshot(
            balance=Decimal(balance),
            equity=Decimal("10000.50"),
            margin=Decimal("0.00"),
            free_margin=Decimal("10000.50"),
            time=T0 + timedelta(seconds=1),
        ),
        symbol_mappings=(("EURUSD", "EURUSD.r"),),
    )


def account_values_before_0011(a: Account) -> dict[str, Any]:
    """The account's row in a schema older than revision 0011 (no deleted_at)."""
    values = records.account_values(a)
    del values["deleted_at"]
    return values


def member_values_before_0014(group_id: str, position: int, member: GroupMember) -> dict[str, Any]:
    """A member's row in a schema older than revision 0014 (no copy_options)."""
    values = records.member_values(group_id, position, member)
    del values["copy_options"]
    return values


# The child_orders columns of a schema older than revision 0014 (no stops_copied), and a
# child's row in them.
CHILD_COLUMNS_BEFORE_0014 = tuple(c for c in records.CHILD_COLUMNS if c != "stops_copied")


def child_row_before_0014(child: ChildOrder) -> tuple[Any, ...]:
    row = dict(zip(records.CHILD_COLUMNS, records.child_row(child), strict=True))
    return tuple(row[c] for c in CHILD_COLUMNS_BEFORE_0014)


def group(members: list[Account], *, name: str = "clients", magic: int = 700_001) -> Group:
    return Group(
        group_id="grp_00000000000000000001",
        name=name,
        allocation=AllocationSettings(method=AllocationMethod.EQUITY),
        members=tuple(GroupMember(account_id=a.account_id) for a in members),
        magic=magic,
        created_at=T0,
        updated_at=T0,
    )


def master_order(group_id: str, accounts: list[Account], n: int = 1) -> MasterOrder:
    lines = tuple(
        AllocationLine(
            account_id=a.account_id,
            symbol="EURUSD",
            method=AllocationMethod.EQUITY,
            basis=Decimal("10000.50"),
            target_volume=Decimal("0.333333333333333333"),
            volume=Decimal("0.30"),
            child_volumes=(Decimal("0.30"),),
            reasons=(AllocationReason.ROUNDED_DOWN,),
        )
        for a in accounts
    )
    return MasterOrder(
        master_order_id=f"mo_{n:020d}",
        spec=MasterOrderSpec(
            group_id=group_id,
            symbol="EURUSD",
            side=Side.BUY,
            order_type=OrderType.MARKET,
            volume=Decimal("1.00"),
            client_order_id=f"client-{n}",
            stop_loss=Decimal("1.08000"),
            comment="round trip",
        ),
        state=MasterOrderState.ALLOCATED,
        magic=700_001,
        allocation=Allocation(
            method=AllocationMethod.EQUITY,
            below_min_policy=BelowMinPolicy.SKIP,
            requested_volume=Decimal("1.00"),
            allocated_volume=Decimal("0.90"),
            unallocated_volume=Decimal("0.10"),
            snapshot_time=T0,
            lines=lines,
        ),
        created_at=T0,
        updated_at=T0,
        child_count=len(lines),
    )


def children_of(master: MasterOrder) -> list[ChildOrder]:
    return [
        ChildOrder(
            child_order_id=f"co_{master.master_order_id[3:]}{i:04d}",
            master_order_id=master.master_order_id,
            account_id=line.account_id,
            symbol="EURUSD",
            side=Side.BUY,
            volume=Decimal("0.30"),
            state=ChildOrderState.PENDING,
            tag=f"mam:{master.master_order_id[-16:]}{i:04d}",
            magic=master.magic,
            created_at=T0,
            updated_at=T0,
        )
        for i, line in enumerate(master.allocation.lines)
    ]


def filled(child: ChildOrder, price: str = "1.08500") -> ChildOrder:
    return dataclasses.replace(
        child,
        state=ChildOrderState.FILLED,
        filled_volume=Decimal("0.30"),
        requested_price=Decimal("1.08490"),
        fill_price=Decimal(price),
        slippage_points=Decimal("1.0"),
        retcode=10009,
        status_text="done",
        broker_order_ticket=1001,
        broker_deal_ticket=2001,
        position_ticket=3001,
        attempts=1,
        sent_at=T0 + timedelta(milliseconds=5),
        filled_at=T0 + timedelta(milliseconds=25),
        updated_at=T0 + timedelta(milliseconds=25),
    )


def fill_for(child: ChildOrder, suffix: str = "") -> Fill:
    return Fill(
        sequence=0,
        fill_id=f"fl_{child.child_order_id[3:]}{suffix}",
        master_order_id=child.master_order_id,
        child_order_id=child.child_order_id,
        account_id=child.account_id,
        symbol=child.symbol,
        side=child.side,
        volume=Decimal("0.30"),
        price=Decimal("1.08500"),
        requested_price=Decimal("1.08490"),
        slippage_points=Decimal("-0.50"),
        deal_ticket=2001,
        order_ticket=1001,
        position_ticket=3001,
        executed_at=T0 + timedelta(milliseconds=25),
    )


async def seed(store: Store, count: int = 3) -> tuple[list[Account], Group, MasterOrder]:
    accounts = [account(i) for i in range(count)]
    for a in accounts:
        await store.insert_account(a)
    grp = group(accounts)
    await store.insert_group(grp)
    master = master_order(grp.group_id, accounts)
    await store.insert_master_order(master, children_of(master))
    return accounts, grp, master


# -- schema -----------------------------------------------------------------------------------


def _schema_differences(connection: Connection, metadata: MetaData) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


async def test_migrations_build_exactly_the_schema_of_tables_py(empty_database_url: str) -> None:
    store = await Store.open(empty_database_url)
    await store.close()
    engine = create_engine(empty_database_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(migrations.current_revision) == migrations.head_revision()
            assert await conn.run_sync(_schema_differences, tables.metadata) == []
            # The comparison sees indexes, types and lengths: a schema that differs is caught.
            other = MetaData(naming_convention=tables.NAMING_CONVENTION)
            for table in tables.metadata.tables.values():
                table.to_metadata(other)
            Index("ix_fills_symbol", other.tables["fills"].c.symbol)
            other.tables["accounts"].append_column(Column("note", String(10)))
            kinds = {d[0] for d in await conn.run_sync(_schema_differences, other)}
            assert kinds == {"add_index", "add_column"}
    finally:
        await engine.dispose()


_WRITES = re.compile(r"^\s*(CREATE|ALTER|DROP|INSERT|UPDATE|DELETE)\b", re.IGNORECASE)


async def test_a_database_at_head_is_left_alone(database_url: str) -> None:
    store = await Store.open(database_url)
    await store.insert_account(account(1))
    await store.close()

    engine = create_engine(database_url)
    statements: list[str] = []
    event.listen(
        engine.sync_engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_: statements.append(statement),
    )
    try:
        async with engine.begin() as conn:
            await conn.run_sync(migrations.upgrade_to_head)
            assert await conn.run_sync(migrations.current_revision) == migrations.head_revision()
    finally:
        await engine.dispose()
    assert statements, "the listener saw nothing: the check below would prove nothing"
    assert [s for s in statements if _WRITES.match(s)] == []

    reopened = await Store.open(database_url)
    try:
        assert await reopened.get_account(account(1).account_id) == account(1)
    finally:
        await reopened.close()


def _schema_at(revision: str) -> Callable[[Connection], None]:
    def build(connection: Connection) -> None:
        command.upgrade(migrations.alembic_config(connection), revision)

    return build


async def test_a_database_made_before_migrations_is_adopted(empty_database_url: str) -> None:
    # The baseline revision is exactly what metadata.create_all made before migrations existed.
    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_schema_at(migrations.BASELINE))
            await conn.execute(sql("DROP TABLE alembic_version"))
            await conn.execute(tables.groups.insert(), records.group_values(group([])))
    finally:
        await engine.dispose()
    store = await Store.open(empty_database_url)
    try:
        assert (await store.get_group("grp_00000000000000000001")) is not None
    finally:
        await store.close()
    engine = create_engine(empty_database_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(migrations.current_revision) == migrations.head_revision()
    finally:
        await engine.dispose()


async def test_a_database_with_part_of_the_tables_is_refused(empty_database_url: str) -> None:
    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(tables.accounts.create)
    finally:
        await engine.dispose()
    with pytest.raises(RuntimeError, match="no alembic_version"):
        await Store.open(empty_database_url)


# -- round trips ------------------------------------------------------------------------------


async def test_upgrading_makes_earlier_client_order_ids_unique_keeping_the_first(
    empty_database_url: str,
) -> None:
    # Before idempotent submission nothing stopped a repeated or empty client_order_id.
    accounts = [account(1)]
    grp = group(accounts)
    old = [
        dataclasses.replace(master_order(grp.group_id, accounts, n), spec=spec)
        for n, spec in enumerate(
            [
                dataclasses.replace(master_order("", [], 0).spec, client_order_id=cid)
                for cid in ("same", "", "same", "other", "same")
            ],
            start=1,
        )
    ]
    old = [
        dataclasses.replace(m, spec=dataclasses.replace(m.spec, group_id=grp.group_id)) for m in old
    ]
    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_schema_at("0001"))
            await conn.execute(tables.accounts.insert(), account_values_before_0011(accounts[0]))
            await conn.execute(tables.groups.insert(), records.group_values(grp))
            # Only the columns revision 0001 had.
            columns = {
                c["name"]
                for c in await conn.run_sync(
                    lambda sync: inspect(sync).get_columns("master_orders")
                )
            }
            for master in old:
                values = records.master_values(master)
                await conn.execute(
                    tables.master_orders.insert().values(
                        {k: v for k, v in values.items() if k in columns}
                    )
                )
    finally:
        await engine.dispose()
    store = await Store.open(empty_database_url)
    try:
        ids = [
            (await store.get_master_order(m.master_order_id)).spec.client_order_id  # type: ignore[union-attr]
            for m in old
        ]
        assert ids == [
            "same",
            old[1].master_order_id,
            f"same#{old[2].master_order_id}",
            "other",
            f"same#{old[4].master_order_id}",
        ]
        found = await store.find_by_client_order_id("", "same")
        assert found is not None and found.master_order_id == old[0].master_order_id
    finally:
        await store.close()


async def test_a_client_order_id_is_stored_once_per_caller(store: Store) -> None:
    accounts, grp, first = await seed(store)
    again = dataclasses.replace(master_order(grp.group_id, accounts, n=2), spec=first.spec)
    with pytest.raises(DuplicateClientOrderId) as caught:
        await store.insert_master_order(again, children_of(again))
    assert caught.value.existing.master_order_id == first.master_order_id
    assert await store.get_master_order(again.master_order_id) is None
    assert await store.children_of(again.master_order_id) == []
    # Another caller may use the same id.
    theirs = dataclasses.replace(again, submitted_by="desk-b")
    await store.insert_master_order(theirs, children_of(theirs))
    found = await store.find_by_client_order_id("desk-b", first.spec.client_order_id)
    assert found == theirs


async def test_accounts_read_in_bulk_equal_accounts_read_one_by_one(store: Store) -> None:
    bare = dataclasses.replace(
        account(7), snapshot=None, symbol_mappings=(), initial_balance=None,
        margin_mode=MarginMode.NETTING, state=AccountState.DISABLED,
    )  # fmt: skip
    for a in (account(1), bare):
        await store.insert_account(a)
    ids = [account(1).account_id, bare.account_id]
    loaded = await store.get_accounts(ids)
    assert [repr(loaded[i]) for i in ids] == [repr(await store.get_account(i)) for i in ids]
    assert repr(loaded[bare.account_id]) == repr(bare)


async def test_the_money_read_for_an_order_is_stored_with_it_and_only_with_it(
    store: Store,
) -> None:
    """The snapshots an allocation used become the accounts' latest, in the order's own
    transaction: a submission refused as a duplicate leaves them as they were."""
    accounts, grp, first = await seed(store)
    read_at = T0 + timedelta(seconds=5)
    money = {
        accounts[0].account_id: AccountSnapshot(
            Decimal("10250.50"), Decimal("10190.125"), Decimal("120.00"), Decimal("10070.125"),
            read_at,
        ),
    }  # fmt: skip
    second = master_order(grp.group_id, accounts, n=2)
    await store.insert_master_order(second, children_of(second), snapshots=money)
    stored = await store.get_accounts([a.account_id for a in accounts])
    assert stored[accounts[0].account_id].snapshot == money[accounts[0].account_id]
    assert str(stored[accounts[0].account_id].snapshot.equity) == "10190.125"  # type: ignore[union-attr]
    assert stored[accounts[1].account_id].snapshot == accounts[1].snapshot

    later = {accounts[1].account_id: dataclasses.replace(money[accounts[0].account_id])}
    again = dataclasses.replace(master_order(grp.group_id, accounts, n=3), spec=first.spec)
    with pytest.raises(DuplicateClientOrderId):
        await store.insert_master_order(again, children_of(again), snapshots=later)
    assert (await store.get_accounts([accounts[1].account_id]))[
        accounts[1].account_id
    ].snapshot == accounts[1].snapshot


async def test_everything_comes_back_exactly_as_stored(store: Store) -> None:
    accounts, grp, master = await seed(store)
    children = children_of(master)

    # repr shows Decimal('1.00') and Decimal('1.0') apart, where == would not.
    loaded = await store.get_accounts(a.account_id for a in accounts)
    assert [repr(loaded[a.account_id]) for a in accounts] == [repr(a) for a in accounts]
    assert str(loaded[accounts[0].account_id].initial_balance) == "10000.00"
    assert repr(await store.get_group(grp.group_id)) == repr(grp)
    assert repr(await store.get_master_order(master.master_order_id)) == repr(master)
    assert [repr(c) for c in await store.children_of(master.master_order_id)] == [
        repr(c) for c in children
    ]

    done = [filled(c) for c in children]
    progressed = dataclasses.replace(
        master,
        state=MasterOrderState.FILLED,
        filled_child_count=3,
        filled_volume=Decimal("0.90"),
        average_fill_price=Decimal("1.08500000"),
        execution=ExecutionStats(
            dispatch_skew_us=1234,
            submit_to_last_fill_us=25000,
            average_slippage_points=Decimal("1.0"),
            max_slippage_points=Decimal("1.0"),
        ),
        updated_at=T0 + timedelta(milliseconds=30),
    )
    numbered = await store.save_progress(
        masters=[progressed], children=done, fills=[fill_for(c) for c in done]
    )
    assert repr(await store.get_master_order(master.master_order_id)) == repr(progressed)
    assert [repr(c) for c in await store.children_of(master.master_order_id)] == [
        repr(c) for c in done
    ]
    assert [repr(f) for f in await store.fills_of(master.master_order_id)] == [
        repr(f) for f, _ in numbered
    ]
    stored = (await store.fills_after(0, limit=10))[0]
    assert (str(stored.volume), str(stored.price), str(stored.slippage_points)) == (
        "0.30",
        "1.08500",
        "-0.50",
    )
    assert stored.executed_at == T0 + timedelta(milliseconds=25)


async def test_decimal_text_keeps_every_digit(store: Store) -> None:
    texts = ["1.00", "1.0", "1", "0.010", "-0.50", "123456789012345678901234567.890123456789"]
    for n, text in enumerate(texts):
        await store.insert_account(account(n, balance=text))
    for n, text in enumerate(texts):
        loaded = await store.get_account(account(n).account_id)
        assert loaded is not None
        assert str(loaded.initial_balance) == text


# -- fill sequences ---------------------------------------------------------------------------


async def test_sequences_are_gap_free_and_increasing_across_batches_and_restarts(
    database_url: str,
) -> None:
    store = await Store.open(database_url)
    try:
        _, _, master = await seed(store)
        children = children_of(master)
        assert store.last_sequence == 0
        first = await store.save_progress(fills=[fill_for(children[0], "a")])
        second = await store.save_progress(fills=[fill_for(c, "b") for c in children])
        empty = await store.save_progress(masters=[master])
        third = await store.save_progress(fills=[fill_for(children[1], "c")])
        assert [f.sequence for f, _ in (*first, *second, *third)] == [1, 2, 3, 4, 5]
        assert empty == []
        assert store.last_sequence == 5
    finally:
        await store.close()

    store = await Store.open(database_url)
    try:
        assert store.last_sequence == 5
        after = await store.save_progress(fills=[fill_for(c, "d") for c in children[:2]])
        assert [f.sequence for f, _ in after] == [6, 7]
        stored = await store.fills_after(0, limit=100)
        assert [f.sequence for f in stored] == list(range(1, 8))
        assert [f.fill_id for f in stored][-2:] == [f.fill_id for f, _ in after]
        assert [f.sequence for f in await store.fills_after(5, limit=100)] == [6, 7]
    finally:
        await store.close()


async def test_a_failing_batch_stores_nothing_and_uses_no_sequence(store: Store) -> None:
    _, _, master = await seed(store)
    children = children_of(master)
    kept = await store.save_progress(fills=[fill_for(children[0], "x")])
    assert [f.sequence for f, _ in kept] == [1]

    progressed = dataclasses.replace(master, state=MasterOrderState.FILLED, updated_at=T0)
    batch = [fill_for(c) for c in children] + [fill_for(children[0], "x")]  # duplicate fill_id
    with pytest.raises(IntegrityError):
        await store.save_progress(
            masters=[progressed], children=[filled(c) for c in children], fills=batch
        )

    assert store.last_sequence == 1
    assert [f.fill_id for f in await store.fills_after(0, limit=100)] == [kept[0].fill.fill_id]
    assert [c.state for c in await store.children_of(master.master_order_id)] == [
        ChildOrderState.PENDING
    ] * len(children)
    reloaded = await store.get_master_order(master.master_order_id)
    assert reloaded is not None and reloaded.state is MasterOrderState.ALLOCATED

    retried = await store.save_progress(fills=[fill_for(c) for c in children])
    assert [f.sequence for f, _ in retried] == [2, 3, 4]
    # No event of the failed batch either: the trail shows only what was committed.
    assert [e.state for e in await store.events_of(master.master_order_id)] == [
        MasterOrderState.ALLOCATED
    ]


async def test_every_state_change_is_stored_with_its_event_in_commit_order(
    database_url: str,
) -> None:
    store = await Store.open(database_url)
    try:
        _, _, master = await seed(store)
        children = children_of(master)
        sent = [c.moved_to(ChildOrderState.SENT, T0, sent_at=T0) for c in children]
        dispatching = master.moved_to(MasterOrderState.DISPATCHING, T0)
        await store.save_progress(masters=[dispatching], children=sent)
        done = [filled(c) for c in sent]
        final = dispatching.moved_to(MasterOrderState.FILLED, T0, filled_child_count=3)
        await store.save_progress(masters=[final], children=done, fills=[fill_for(c) for c in done])
    finally:
        await store.close()
    store = await Store.open(database_url)
    try:
        events = await store.events_of(master.master_order_id)
        assert [e.sequence for e in events] == list(range(1, 10))
        assert [(e.child_order_id, e.state) for e in events] == [
            ("", MasterOrderState.ALLOCATED),
            ("", MasterOrderState.DISPATCHING),
            *((c.child_order_id, ChildOrderState.SENT) for c in children),
            ("", MasterOrderState.FILLED),
            *((c.child_order_id, ChildOrderState.FILLED) for c in children),
        ]
        # Stored as the state's name, as ever.
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                query = select(tables.order_events.c.state).order_by(tables.order_events.c.sequence)
                stored = (await conn.execute(query)).scalars().all()
        finally:
            await engine.dispose()
        assert stored == [e.state.name for e in events]
        assert stored[:2] == ["ALLOCATED", "DISPATCHING"]
        assert events[-1].at == done[-1].updated_at
        assert events[-1].detail == f"retcode {done[-1].retcode}: {done[-1].status_text}"
        # Numbering goes on after a restart.
        await store.save_progress(masters=[final])
        assert (await store.events_of(master.master_order_id))[-1].sequence == 10
    finally:
        await store.close()


# -- replace_group ----------------------------------------------------------------------------


async def test_replace_group_updates_the_row_and_replaces_the_members_in_order(
    store: Store,
) -> None:
    accounts = [account(i) for i in range(5)]
    for a in accounts:
        await store.insert_account(a)
    original = group(accounts[:3])
    await store.insert_group(original)

    new = dataclasses.replace(
        original,
        name="clients-renamed",
        allocation=AllocationSettings(
            method=AllocationMethod.EQUITY_RATIO,
            below_min_policy=BelowMinPolicy.ROUND_UP_TO_MIN,
            reference_equity=Decimal("50000.00"),
            reference_account_id=accounts[4].account_id,
        ),
        # Not in id order: the stored position must keep this order.
        members=(
            GroupMember(account_id=accounts[4].account_id, lot_multiplier=Decimal("1.50")),
            GroupMember(
                account_id=accounts[1].account_id,
                method=AllocationMethod.FIXED_LOTS,
                fixed_lots=Decimal("0.10"),
                max_lots=Decimal("5.00"),
            ),
            GroupMember(account_id=accounts[3].account_id, percentage=Decimal("12.50")),
        ),
        magic=700_042,
        updated_at=T0 + timedelta(hours=1),
    )
    await store.replace_group(new)
    assert repr(await store.get_group(original.group_id)) == repr(new)
    assert [g.name for g in await store.list_groups(after="", limit=10)] == ["clients-renamed"]
    assert not await store.group_name_taken("clients")
    listed = await store.list_accounts(after="", limit=10, group_id=original.group_id)
    assert {a.account_id for a in listed} == {accounts[i].account_id for i in (1, 3, 4)}

    # created_at is the group's birth: replace_group does not move it.
    await store.replace_group(dataclasses.replace(new, members=(), created_at=T0 + timedelta(1)))
    emptied = await store.get_group(original.group_id)
    assert emptied is not None
    assert emptied.members == () and emptied.created_at == T0


async def test_replace_group_is_all_or_nothing(store: Store, database_url: str) -> None:
    accounts = [account(i) for i in range(3)]
    for a in accounts:
        await store.insert_account(a)
    original = group(accounts[:2])
    await store.insert_group(original)
    other = dataclasses.replace(
        group([accounts[2]], name="others", magic=700_002), group_id="grp_00000000000000000002"
    )
    await store.insert_group(other)

    unknown_member = dataclasses.replace(
        original,
        name="renamed",
        members=(GroupMember(account_id=accounts[2].account_id), GroupMember(account_id="acc_x")),
    )
    with pytest.raises(IntegrityError):
        await store.replace_group(unknown_member)
    taken_name = dataclasses.replace(original, name="others", members=())
    with pytest.raises(IntegrityError):
        await store.replace_group(taken_name)
    assert repr(await store.get_group(original.group_id)) == repr(original)

    with pytest.raises(LookupError):
        await store.replace_group(dataclasses.replace(original, group_id="grp_missing"))
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            members = tables.group_members
            rows = (await conn.execute(select(members.c.group_id).distinct())).scalars().all()
    finally:
        await engine.dispose()
    assert sorted(rows) == sorted([original.group_id, other.group_id])


# -- the batch the group commit writes --------------------------------------------------------


async def test_a_thousand_children_and_fills_commit_in_one_batch(store: Store) -> None:
    accounts = [account(i) for i in range(10)]
    for a in accounts:
        await store.insert_account(a)
    grp = group(accounts)
    await store.insert_group(grp)
    masters, children = [], []
    for n in range(100):
        master = master_order(grp.group_id, accounts, n)
        masters.append(master)
        children.extend(children_of(master))
        await store.insert_master_order(master, children_of(master))
    done = [filled(c) for c in children]
    numbered = await store.save_progress(
        masters=masters, children=done, fills=[fill_for(c) for c in done]
    )
    assert len(numbered) == 1000
    assert [f.sequence for f in await store.fills_after(0, limit=2000)] == list(range(1, 1001))
    states = {c.state for m in masters[:3] for c in await store.children_of(m.master_order_id)}
    assert states == {ChildOrderState.FILLED}


# -- the driver-ready rows of the hot paths (gateway/store/bulk.py) ---------------------------


def test_driver_rows_cover_every_column_of_their_tables() -> None:
    assert sorted(records.FILL_ROW_COLUMNS) == sorted(tables.fills.c.keys())
    assert records.FILL_ROW_COLUMNS[:-1] == records.FILL_COLUMNS
    assert sorted(records.EVENT_COLUMNS) == sorted(tables.order_events.c.keys())
    assert sorted(records.CHILD_COLUMNS) == sorted(tables.child_orders.c.keys())
    assert sorted(records.ACCOUNT_COLUMNS) == sorted(tables.accounts.c.keys())
    assert set(records.CHILD_UPDATE_COLUMNS) <= set(records.CHILD_COLUMNS)


def test_driver_rows_encode_exactly_as_the_column_types() -> None:
    decimals = [Decimal(t) for t in ("1.00", "1.0", "-0.50", "1E+2", "1E-9", "0", "-0")]
    decimals.append(Decimal("123456789012345678901234567.890123456789"))
    times = [
        T0,
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 11, 25, 14, 0, 0, 1, tzinfo=timezone(timedelta(hours=2))),
    ]
    as_text, as_micros = DecimalText(), UtcMicros()
    dialect = create_engine("sqlite+aiosqlite://").dialect
    for value in decimals:
        assert records.decimal_text(value) == as_text.process_bind_param(value, dialect)
    for moment in times:
        micros = records.utc_micros(moment)
        assert micros == as_micros.process_bind_param(moment, dialect)
        assert records.from_utc_micros(micros) == as_micros.process_result_value(micros, dialect)
    with pytest.raises(ValueError, match="naive"):
        records.utc_micros(datetime(2026, 1, 1))


async def test_rows_of_either_write_path_read_back_identically_through_either_read_path(
    store: Store,
) -> None:
    _, _, master = await seed(store, count=2)
    done = [filled(c) for c in children_of(master)]
    odd = dataclasses.replace(
        fill_for(done[1]),
        volume=Decimal("1E-9"),
        price=Decimal("123456789012345678901234567.890123456789"),
        requested_price=None,
        slippage_points=Decimal("-0"),
        executed_at=datetime(2026, 11, 25, 14, 0, 0, 1, tzinfo=timezone(timedelta(hours=2))),
    )
    # Through the driver path ...
    numbered = await store.save_progress(children=done, fills=[fill_for(done[0]), odd])
    # ... and through SQLAlchemy's column types.
    core = dataclasses.replace(odd, sequence=1000, fill_id="fl_core")
    async with store._engine.begin() as conn:
        await conn.execute(tables.fills.insert(), records.fill_values(core))
        typed = [
            records.fill_from_row(r)
            for r in (await conn.execute(select(tables.fills).order_by(tables.fills.c.sequence)))
            .mappings()
            .all()
        ]
    fast = await store.fills_after(0, limit=10)
    assert [repr(f) for f in fast] == [repr(f) for f in typed]
    # The same values; a time given in another zone comes back in UTC.
    assert repr(fast[0]) == repr(numbered[0].fill) and fast[1] == numbered[1].fill
    assert fast[2] == core
    assert fast[1].executed_at.tzinfo is UTC and fast[2].executed_at.tzinfo is UTC
    assert [repr(f) for f in await store.fills_of(master.master_order_id)] == [
        repr(f) for f in fast
    ]
    # Children inserted and updated by the driver path read back through the column types.
    assert [repr(c) for c in await store.children_of(master.master_order_id)] == [
        repr(c) for c in done
    ]


async def test_a_naive_time_fails_the_batch_before_anything_is_written(store: Store) -> None:
    _, _, master = await seed(store)
    naive = dataclasses.replace(
        fill_for(children_of(master)[0]), executed_at=datetime(2026, 11, 25, 12, 0)
    )
    with pytest.raises(ValueError, match="naive"):
        await store.save_progress(fills=[naive])
    assert store.last_sequence == 0
    assert await store.fills_after(0, limit=10) == []


# -- fills stored with their encoded messages -------------------------------------------------


def encoded(fill: Fill) -> bytes:
    """A stand-in for the API layer's encoder: the store keeps whatever bytes it is given."""
    return f"{fill.sequence} {fill.fill_id} {fill.account_id}".encode()


async def test_each_fill_is_stored_with_the_message_of_its_numbered_self(database_url: str) -> None:
    store = await Store.open(database_url, fill_encoder=encoded)
    try:
        _, _, master = await seed(store)
        committed = await store.save_progress(fills=[fill_for(c) for c in children_of(master)])
        assert [f.sequence for f, _ in committed] == [1, 2, 3]
        assert [wire for _, wire in committed] == [encoded(f) for f, _ in committed]
        assert await store.encoded_fills_after(0, limit=10) == [
            (f.sequence, wire) for f, wire in committed
        ]
        # The fills themselves read back as before.
        assert await store.fills_after(0, limit=10) == [f for f, _ in committed]
    finally:
        await store.close()


async def test_a_failing_encoder_fails_the_batch_before_anything_is_written(store: Store) -> None:
    def broken(fill: Fill) -> bytes:
        raise ValueError("cannot encode")

    _, _, master = await seed(store)
    failing = Store(store._engine, store.last_sequence, fill_encoder=broken)
    with pytest.raises(ValueError, match="cannot encode"):
        await failing.save_progress(fills=[fill_for(c) for c in children_of(master)])
    assert failing.last_sequence == 0
    assert await store.fills_after(0, limit=10) == []


async def test_fills_stored_without_a_message_come_back_as_fills_in_their_place(
    database_url: str,
) -> None:
    # Writers without an encoder (a gateway before revision 0010, a tool) and with one, in turn.
    plain = await Store.open(database_url)
    try:
        accounts, grp, first = await seed(plain)
        second = master_order(grp.group_id, accounts, 2)
        await plain.insert_master_order(second, children_of(second))
    finally:
        await plain.close()
    children = children_of(first) + children_of(second)
    without: set[int] = set()
    for turn in range(5):
        store = await Store.open(database_url, fill_encoder=encoded if turn % 2 else None)
        try:
            committed = await store.save_progress(
                fills=[fill_for(c, f"-{turn}") for c in children[turn % 2 :]]
            )
        finally:
            await store.close()
        if turn % 2 == 0:
            without.update(f.sequence for f, _ in committed)

    store = await Store.open(database_url, fill_encoder=encoded)
    try:
        fills = await store.fills_after(0, limit=100)
        expected = [(f.sequence, f if f.sequence in without else encoded(f)) for f in fills]
        assert 0 < len(without) < len(fills)
        assert await store.encoded_fills_after(0, limit=100) == expected
        # Pages that begin and end on either kind of row.
        for after in range(len(fills)):
            for limit in (1, 2, 5):
                page = await store.encoded_fills_after(after, limit=limit)
                assert page == expected[after : after + limit]
        # Filters pick from both kinds.
        one_account = FillFilter(account_ids=frozenset({accounts[1].account_id}))
        one_order = FillFilter(master_order_id=second.master_order_id)
        for fill_filter in (one_account, one_order):
            wanted = {f.sequence for f in fills if fill_filter.matches(f)}
            assert {f.sequence for f in await store.fills_after(0, limit=100)} > wanted
            assert await store.encoded_fills_after(0, limit=100, fill_filter=fill_filter) == [
                e for e in expected if e[0] in wanted
            ]
            assert (
                await store.encoded_fills_after(0, limit=3, fill_filter=fill_filter)
                == [e for e in expected if e[0] in wanted][:3]
            )
    finally:
        await store.close()


async def test_fills_stored_before_revision_0010_replay_from_their_columns(
    empty_database_url: str,
) -> None:
    accounts = [account(1), account(2)]
    grp = group(accounts)
    master = master_order(grp.group_id, accounts)
    children = children_of(master)
    old = [dataclasses.replace(fill_for(c), sequence=n) for n, c in enumerate(children, start=1)]
    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_schema_at("0009"))
            await conn.execute(
                tables.accounts.insert(), [account_values_before_0011(a) for a in accounts]
            )
            await conn.execute(tables.groups.insert(), records.group_values(grp))
            await conn.execute(tables.master_orders.insert(), records.master_values(master))
            await bulk.insert_rows(
                conn,
                tables.child_orders,
                CHILD_COLUMNS_BEFORE_0014,
                [child_row_before_0014(c) for c in children],
            )
            # The columns revision 0009 has: no message.
            await conn.execute(tables.fills.insert(), [records.fill_values(f) for f in old])
    finally:
        await engine.dispose()
    store = await Store.open(empty_database_url, fill_encoder=encoded)
    try:
        assert store.last_sequence == 2
        new = await store.save_progress(fills=[fill_for(children[0], "-new")])
        assert await store.encoded_fills_after(0, limit=10) == [
            (1, old[0]),
            (2, old[1]),
            (3, encoded(new[0].fill)),
        ]
    finally:
        await store.close()


async def test_magic_numbers_go_up_and_then_fill_the_gaps_below_the_largest(
    store: Store,
) -> None:
    assert await store.next_magic() == FIRST_MAGIC
    await store.insert_group(group([], name="a", magic=FIRST_MAGIC + 5))
    assert await store.next_magic() == FIRST_MAGIC + 6
    top = dataclasses.replace(group([], name="b", magic=MAX_MAGIC), group_id="grp_2")
    await store.insert_group(top)
    # Nothing above the largest magic an MT4 terminal accepts: the lowest free one instead.
    assert await store.next_magic() == FIRST_MAGIC


# -- settings kept in memory --------------------------------------------------------------------


async def test_kept_groups_and_account_settings_follow_every_write(store: Store) -> None:
    accounts = [account(i) for i in range(3)]
    for a in accounts:
        await store.insert_account(a)
    original = group(accounts[:2])
    await store.insert_group(original)
    ids = [a.account_id for a in accounts]

    first = await store.get_group(original.group_id)
    assert first is not None and await store.get_group(original.group_id) is first  # kept
    settings = await store.get_account_settings(ids)
    assert set(settings) == set(ids)
    assert all(s.snapshot is None for s in settings.values())  # money is read elsewhere
    assert (await store.get_account_settings(ids[:1]))[ids[0]] is settings[ids[0]]

    changed = dataclasses.replace(original, members=(GroupMember(account_id=ids[2]),))
    await store.replace_group(changed)
    assert repr(await store.get_group(original.group_id)) == repr(changed)

    await store.rename_account(
        ids[1], name="renamed", state=AccountState.DISABLED, updated_at=T0 + timedelta(hours=1)
    )
    renamed = (await store.get_account_settings(ids))[ids[1]]
    assert (renamed.name, renamed.state) == ("renamed", AccountState.DISABLED)
    assert (await store.get_accounts([ids[1]]))[ids[1]].name == "renamed"

    # A write that fails leaves nothing stale behind either.
    with pytest.raises(IntegrityError):
        await store.rename_account(
            ids[0], name="renamed", state=AccountState.ACTIVE, updated_at=T0 + timedelta(hours=2)
        )
    assert (await store.get_account_settings([ids[0]]))[ids[0]].name == accounts[0].name


# -- deleted accounts -------------------------------------------------------------------------


async def test_a_deleted_account_leaves_its_groups_and_lists_and_frees_its_name(
    store: Store,
) -> None:
    accounts = [account(i) for i in range(3)]
    for a in accounts:
        await store.insert_account(a)
    original = group(accounts)
    await store.insert_group(original)
    other = dataclasses.replace(
        group(accounts[:1], name="others", magic=700_002), group_id="grp_00000000000000000002"
    )
    await store.insert_group(other)
    gone, kept = accounts[0].account_id, [a.account_id for a in accounts[1:]]
    assert await store.get_group(original.group_id) is not None  # kept in memory
    assert gone in await store.get_account_settings([gone])
    at = T0 + timedelta(hours=1)

    changed = await store.delete_account(gone, at=at)

    assert [(g.group_id, g.account_ids, g.updated_at) for g in changed] == [
        (original.group_id, tuple(kept), at),
        (other.group_id, (), at),
    ]
    for left in changed:
        assert repr(await store.get_group(left.group_id)) == repr(left)
    assert [a.account_id for a in await store.list_accounts(after="", limit=10)] == kept
    assert [a.account_id for a in await store.all_accounts()] == kept
    deleted = await store.get_account(gone)
    assert deleted is not None and deleted.deleted_at == at and not deleted.is_active
    assert (await store.get_account_settings([gone]))[gone].deleted_at == at
    # The name is free for a new account, once: names stay unique among live accounts.
    assert not await store.account_name_taken(accounts[0].name)
    again = dataclasses.replace(accounts[0], account_id="acc_again")
    await store.insert_account(again)
    assert await store.account_name_taken(accounts[0].name)
    with pytest.raises(IntegrityError):
        await store.insert_account(dataclasses.replace(accounts[0], account_id="acc_twice"))
    with pytest.raises(LookupError):
        await store.delete_account(gone, at=at)


async def test_an_account_with_unfinished_children_is_not_deleted(store: Store) -> None:
    accounts, grp, master = await seed(store)
    account_id = accounts[0].account_id

    with pytest.raises(AccountInUse) as caught:
        await store.delete_account(account_id, at=T0 + timedelta(hours=1))

    child = next(c for c in children_of(master) if c.account_id == account_id)
    assert [(u.master_order_id, u.child_order_id) for u in caught.value.unfinished] == [
        (master.master_order_id, child.child_order_id)
    ]
    assert await store.unfinished_children_of(account_id) == list(caught.value.unfinished)
    stored = await store.get_account(account_id)
    assert stored is not None and stored.deleted_at is None
    assert repr(await store.get_group(grp.group_id)) == repr(grp)


async def test_a_reference_account_is_not_deleted(store: Store) -> None:
    accounts = [account(i) for i in range(2)]
    for a in accounts:
        await store.insert_account(a)
    settings = AllocationSettings(
        method=AllocationMethod.EQUITY_RATIO, reference_account_id=accounts[0].account_id
    )
    grp = dataclasses.replace(group(accounts[1:]), allocation=settings)
    await store.insert_group(grp)
    with pytest.raises(AccountInUse) as caught:
        await store.delete_account(accounts[0].account_id, at=T0)
    assert caught.value.referencing_groups == (grp.group_id,)
    assert await store.groups_referencing(accounts[0].account_id) == [grp.group_id]


async def test_upgrading_to_deleted_accounts_keeps_every_account_and_reference(
    empty_database_url: str,
) -> None:
    # Revision 0011 builds the accounts table again on SQLite, under the rows that point at it.
    accounts = [account(i) for i in range(3)]
    grp = group(accounts)
    master = master_order(grp.group_id, accounts)
    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_schema_at("0010"))
            await conn.execute(
                tables.accounts.insert(), [account_values_before_0011(a) for a in accounts]
            )
            await conn.execute(tables.groups.insert(), records.group_values(grp))
            await conn.execute(
                tables.group_members.insert(),
                [member_values_before_0014(grp.group_id, i, m) for i, m in enumerate(grp.members)],
            )
    finally:
        await engine.dispose()
    store = await Store.open(empty_database_url)
    try:
        await store.insert_master_order(master, children_of(master))
        for a in accounts:
            assert await store.get_account(a.account_id) == a
        assert repr(await store.get_group(grp.group_id)) == repr(grp)
        # The references still hold: an unknown account is refused, a known one is not.
        with pytest.raises(IntegrityError):
            await store.replace_group(
                dataclasses.replace(grp, members=(GroupMember(account_id="acc_x"),))
            )
        with pytest.raises(IntegrityError):
            await store.insert_account(dataclasses.replace(accounts[0], account_id="acc_same"))
        assert [c.account_id for c in await store.children_of(master.master_order_id)] == [
            a.account_id for a in accounts
        ]
    finally:
        await store.close()


# -- copy options (revision 0014) -------------------------------------------------------------

EVERY_OPTION = CopyOptions(
    reverse=True,
    direction=CopyDirection.SELL_ONLY,
    copy_stops=False,
    copy_pending=False,
    min_volume=Decimal("0.050"),
    min_volume_policy=MinVolumePolicy.RAISE,
    max_slippage_points=0,
    max_signal_age=timedelta(seconds=5, microseconds=1),
    close_only=False,
)


async def test_copy_options_and_stops_copied_come_back_exactly_as_stored(store: Store) -> None:
    accounts = [account(i) for i in range(3)]
    for a in accounts:
        await store.insert_account(a)
    options = (
        EVERY_OPTION,
        CopyOptions(close_only=True, max_slippage_points=30),
        DEFAULT_COPY_OPTIONS,
    )
    grp = dataclasses.replace(
        group(accounts),
        members=tuple(
            GroupMember(account_id=a.account_id, copy=o)
            for a, o in zip(accounts, options, strict=True)
        ),
    )
    await store.insert_group(grp)
    assert repr(await store.get_group(grp.group_id)) == repr(grp)
    # Only what differs from the defaults is stored; nothing at all for the defaults.
    async with store._engine.connect() as conn:
        stored = (
            await conn.execute(
                select(tables.group_members.c.copy_options).order_by(
                    tables.group_members.c.position
                )
            )
        ).scalars()
        assert list(stored) == [
            '{"reverse":true,"direction":"SELL_ONLY","copy_stops":false,"copy_pending":false,'
            '"min_volume":"0.050","min_volume_policy":"RAISE","max_slippage_points":0,'
            '"max_signal_age_us":5000001}',
            '{"max_slippage_points":30,"close_only":true}',
            None,
        ]
    replaced = dataclasses.replace(
        grp, members=(GroupMember(account_id=accounts[2].account_id, copy=EVERY_OPTION),)
    )
    await store.replace_group(replaced)
    assert repr(await store.get_group(grp.group_id)) == repr(replaced)

    master = master_order(grp.group_id, accounts)
    children = children_of(master)
    children[1] = dataclasses.replace(children[1], stops_copied=False)
    await store.insert_master_order(master, children)
    # A progress update (the driver path) leaves the flag as it was stored.
    await store.save_progress(children=[filled(c) for c in children])
    assert [c.stops_copied for c in await store.children_of(master.master_order_id)] == [
        True,
        False,
        True,
    ]


async def test_members_and_children_stored_before_revision_0014_read_as_the_defaults(
    empty_database_url: str,
) -> None:
    accounts = [account(i) for i in range(2)]
    grp = group(accounts)
    master = master_order(grp.group_id, accounts)
    children = children_of(master)
    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_schema_at("0013"))
            await conn.execute(
                tables.accounts.insert(), [records.account_values(a) for a in accounts]
            )
            await conn.execute(tables.groups.insert(), records.group_values(grp))
            await conn.execute(
                tables.group_members.insert(),
                [member_values_before_0014(grp.group_id, i, m) for i, m in enumerate(grp.members)],
            )
            await conn.execute(tables.master_orders.insert(), records.master_values(master))
            await bulk.insert_rows(
                conn,
                tables.child_orders,
                CHILD_COLUMNS_BEFORE_0014,
                [child_row_before_0014(c) for c in children],
            )
    finally:
        await engine.dispose()
    store = await Store.open(empty_database_url)
    try:
        stored = await store.get_group(grp.group_id)
        assert stored is not None
        assert [m.copy for m in stored.members] == [DEFAULT_COPY_OPTIONS] * 2
        # Every child stored before carried its master order's SL/TP.
        old = await store.children_of(master.master_order_id)
        assert [c.stops_copied for c in old] == [True, True]
        assert [repr(c) for c in old] == [repr(c) for c in children]
        # The new columns take new values.
        await store.replace_group(
            dataclasses.replace(
                grp, members=(GroupMember(account_id=accounts[0].account_id, copy=EVERY_OPTION),)
            )
        )
        again = await store.get_group(grp.group_id)
        assert again is not None and again.members[0].copy == EVERY_OPTION
        later = master_order(grp.group_id, accounts, n=2)
        fresh = [dataclasses.replace(c, stops_copied=False) for c in children_of(later)]
        await store.insert_master_order(later, fresh)
        assert [c.stops_copied for c in await store.children_of(later.master_order_id)] == [
            False,
            False,
        ]
    finally:
        await store.close()
