"""The group commit on each backend: save_progress of 1,000 child results + 1,000 fills.

One batch is what the execution recorder commits when a 1,000-account master order fills: every
child's new state, every fill (numbered), the master order's progress. Measured on a SQLite file
(WAL, synchronous=NORMAL: no fsync per commit) and on PostgreSQL, durable (synchronous_commit=on,
fsync per commit) and with synchronous_commit=off (the closer match to SQLite's setting). The
PostgreSQL server is a throwaway one (tests/postgres.py) with default settings, unless
MAM_BENCH_POSTGRES_URL names a database (postgresql+asyncpg://...) to use instead; it must be empty.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

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

ACCOUNTS = 1_000
RUNS = 7
T0 = datetime.now(UTC)


def _accounts() -> list[Account]:
    return [
        Account(
            account_id=f"acc_{i:020d}",
            name=f"bench-{i:05d}",
            platform=Platform.SIMULATED,
            login=900_000 + i,
            server="mam-sim",
            currency="USD",
            state=AccountState.ACTIVE,
            margin_mode=MarginMode.HEDGING,
            leverage=100,
            created_at=T0,
            updated_at=T0,
            initial_balance=Decimal("100000.00"),
        )
        for i in range(ACCOUNTS)
    ]


def _order(group: Group) -> tuple[MasterOrder, list[ChildOrder]]:
    master_id = new_id("mo")
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
            group_id=group.group_id,
            symbol="EURUSD",
            side=Side.BUY,
            order_type=OrderType.MARKET,
            volume=Decimal("10.00"),
        ),
        state=MasterOrderState.DISPATCHING,
        magic=group.magic,
        allocation=Allocation(
            method=AllocationMethod.EQUAL,
            below_min_policy=BelowMinPolicy.SKIP,
            requested_volume=Decimal("10.00"),
            allocated_volume=Decimal("10.00"),
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
        child_id = new_id("co")
        children.append(
            ChildOrder(
                child_order_id=child_id,
                master_order_id=master_id,
                account_id=line.account_id,
                symbol="EURUSD",
                side=Side.BUY,
                volume=Decimal("0.01"),
                state=ChildOrderState.SENT,
                tag=tag_for_child(child_id),
                magic=group.magic,
                created_at=T0,
                updated_at=T0,
                sent_at=T0,
                attempts=1,
            )
        )
    return master, children


def _results(
    master: MasterOrder, children: list[ChildOrder]
) -> tuple[MasterOrder, list[ChildOrder], list[Fill]]:
    done_at = T0 + timedelta(milliseconds=20)
    filled = [
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
    fills = [
        Fill(
            sequence=0,
            fill_id=new_id("fl"),
            master_order_id=c.master_order_id,
            child_order_id=c.child_order_id,
            account_id=c.account_id,
            symbol=c.symbol,
            side=c.side,
            volume=c.filled_volume,
            price=Decimal("1.08500"),
            requested_price=Decimal("1.08490"),
            slippage_points=Decimal("1.0"),
            deal_ticket=c.broker_deal_ticket,
            order_ticket=c.broker_order_ticket,
            position_ticket=c.position_ticket,
            executed_at=done_at,
        )
        for c in filled
    ]
    progressed = dataclasses.replace(
        master,
        state=MasterOrderState.FILLED,
        filled_child_count=len(filled),
        filled_volume=master.spec.volume,
        average_fill_price=Decimal("1.08500000"),
        updated_at=done_at,
    )
    return progressed, filled, fills


async def _measure(url: str) -> dict[str, Any]:
    store = await Store.open(url)
    try:
        accounts = _accounts()
        for account in accounts:
            await store.insert_account(account)
        group = Group(
            group_id=new_id("grp"),
            name="bench",
            allocation=AllocationSettings(method=AllocationMethod.EQUAL),
            members=tuple(GroupMember(account_id=a.account_id) for a in accounts),
            magic=700_001,
            created_at=T0,
            updated_at=T0,
        )
        await store.insert_group(group)
        timings = []
        for _ in range(RUNS):
            master, children = _order(group)
            await store.insert_master_order(master, children)
            progressed, filled, fills = _results(master, children)
            start = time.perf_counter_ns()
            numbered = await store.save_progress(masters=[progressed], children=filled, fills=fills)
            timings.append((time.perf_counter_ns() - start) / 1e6)
            assert len(numbered) == ACCOUNTS
        return {
            "runs": RUNS,
            "median_ms": round(statistics.median(timings), 1),
            "min_ms": round(min(timings), 1),
            "max_ms": round(max(timings), 1),
        }
    finally:
        await store.close()


async def run() -> dict[str, Any]:
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as directory:
        rows["sqlite"] = await _measure(f"sqlite+aiosqlite:///{directory}/bench.db")
    external = os.environ.get("MAM_BENCH_POSTGRES_URL")
    if external:
        rows["postgresql"] = await _measure(external)
    else:
        from tests.postgres import PostgresServer  # noqa: PLC0415 (only for this benchmark)

        server = PostgresServer.start()
        try:
            durable = await server.create_database(name="bench_durable")
            rows["postgresql"] = await _measure(server.url(durable))
            relaxed = await server.create_database(name="bench_async_commit")
            await server.execute(f"ALTER DATABASE {relaxed} SET synchronous_commit = off")
            rows["postgresql_async_commit"] = await _measure(server.url(relaxed))
        finally:
            server.stop()
    summary = ", ".join(f"{name} {row['median_ms']} ms" for name, row in rows.items())
    return {
        "batch": f"{ACCOUNTS} child updates + {ACCOUNTS} fills + 1 master order",
        "rows": rows,
        "summary": f"save_progress of {ACCOUNTS} children + {ACCOUNTS} fills, median: {summary}",
    }
