"""Account history: snapshots, deals and positions stored a round at a time, as reporting reads
them. Every test runs on SQLite and PostgreSQL (the `database_url` fixture)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from gateway._proto.mam.v1 import order_pb2, trading_service_pb2
from gateway.api.server import RunningGateway, start_gateway, utc_now
from gateway.domain.account_history import (
    AccountDeal,
    AccountPosition,
    AccountReading,
    DealEntry,
)
from gateway.domain.accounts import AccountSnapshot
from gateway.domain.orders import Side
from gateway.engine.account_monitor import AccountMonitor
from gateway.store import Store, tables
from gateway.store.engines import create_engine
from gateway.terminals.sim import SimTerminal
from tests.conftest import Client
from tests.integration.helpers import create_accounts, create_group, market_order
from tests.integration.test_store import account
from tests.support import make_config

T0 = datetime(2026, 11, 26, 9, 0, 0, 250000, tzinfo=UTC)


# -- the store ----------------------------------------------------------------------------------


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(database_url)
    try:
        for n in range(3):
            await opened.insert_account(account(n))
        yield opened
    finally:
        await opened.close()


def account_id(n: int) -> str:
    return account(n).account_id


def snapshot(at: datetime, equity: str = "10000.25") -> AccountSnapshot:
    return AccountSnapshot(
        balance=Decimal("10000.00"),
        equity=Decimal(equity),
        margin=Decimal("108.45"),
        free_margin=Decimal(equity) - Decimal("108.45"),
        time=at,
    )


def deal(n: int, ticket: int, *, profit: str = "0", at: datetime = T0) -> AccountDeal:
    return AccountDeal(
        account_id=account_id(n),
        ticket=ticket,
        order_ticket=ticket + 1000,
        position_ticket=ticket,
        symbol="EURUSD",
        side=Side.BUY,
        volume=Decimal("0.10"),
        price=Decimal("1.084512345"),
        entry=DealEntry.IN if profit == "0" else DealEntry.OUT,
        profit=Decimal(profit),
        magic=700_001,
        comment=f"mam:{ticket:020d}",
        executed_at=at,
    )


def position(n: int, ticket: int, seen_at: datetime, volume: str = "0.10") -> AccountPosition:
    return AccountPosition(
        account_id=account_id(n),
        ticket=ticket,
        symbol="EURUSD",
        side=Side.SELL,
        volume=Decimal(volume),
        price_open=Decimal("1.08450"),
        magic=700_001,
        comment=f"mam:{ticket}",
        opened_at=T0,
        seen_at=seen_at,
        stop_loss=Decimal("1.09000"),
    )


def reading(
    n: int,
    at: datetime,
    *,
    deals: tuple[AccountDeal, ...] = (),
    positions: tuple[AccountPosition, ...] = (),
    equity: str = "10000.25",
) -> AccountReading:
    return AccountReading(account_id(n), snapshot(at, equity), deals, positions)


async def count(database_url: str, table: str) -> int:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            query = select(func.count()).select_from(tables.metadata.tables[table])
            return int((await conn.execute(query)).scalar_one())
    finally:
        await engine.dispose()


async def test_a_deal_read_again_is_stored_once_as_first_read(store: Store) -> None:
    history = store.history
    first = (deal(0, 11), deal(0, 12, profit="-1.60", at=T0 + timedelta(seconds=1)))
    await history.save_account_history([reading(0, T0, deals=first)])
    # The same deal twice in one round, and again in the next with other values: kept as first.
    again = dataclasses.replace(first[1], profit=Decimal("99"))
    later = deal(0, 13, at=T0 + timedelta(seconds=2))
    stored = await history.save_account_history(
        [reading(0, T0 + timedelta(minutes=1), deals=(again, later, later))]
    )
    assert stored == [account_id(0)]
    assert await history.deals_of(account_id(0), T0, T0 + timedelta(days=1), limit=10) == [
        *first,
        later,
    ]
    assert await history.last_deal_time(account_id(0)) == T0 + timedelta(seconds=2)
    assert await history.last_deal_time(account_id(1)) is None


async def test_a_round_is_stored_whole_or_not_at_all(store: Store, database_url: str) -> None:
    history = store.history
    kept = reading(0, T0, deals=(deal(0, 1),), positions=(position(0, 1, T0),))
    await history.save_account_history([kept])
    later = T0 + timedelta(minutes=1)
    # The second account's positions repeat a ticket: the round fails on its last insert.
    broken = [
        reading(0, later, deals=(deal(0, 2),), positions=()),
        reading(1, later, positions=(position(1, 5, later), position(1, 5, later))),
    ]
    with pytest.raises(IntegrityError):
        await history.save_account_history(broken)
    assert await history.snapshots_of(account_id(0), T0, later + timedelta(1)) == [kept.snapshot]
    assert await history.snapshots_of(account_id(1), T0, later + timedelta(1)) == []
    assert await history.deals_of(account_id(0), T0, later + timedelta(1), limit=10) == [deal(0, 1)]
    assert await history.positions_of(account_id(0)) == [position(0, 1, T0)]
    assert await count(database_url, "positions") == 1
    stored = await store.get_account(account_id(0))
    assert stored is not None and stored.snapshot == kept.snapshot


async def test_positions_are_replaced_for_each_account_read(store: Store) -> None:
    history = store.history
    await history.save_account_history(
        [
            reading(0, T0, positions=(position(0, 1, T0), position(0, 2, T0))),
            reading(1, T0, positions=(position(1, 3, T0),)),
        ]
    )
    later = T0 + timedelta(minutes=1)
    # Account 0 closed ticket 1 and halved ticket 2; account 1 was not read this round.
    await history.save_account_history(
        [reading(0, later, positions=(position(0, 2, later, "0.05"),))]
    )
    assert await history.positions_of(account_id(0)) == [position(0, 2, later, "0.05")]
    assert await history.positions_of(account_id(1)) == [position(1, 3, T0)]
    # An account that holds nothing now: its positions are gone.
    await history.save_account_history([reading(1, later)])
    assert await history.positions_of(account_id(1)) == []


async def test_snapshots_of_a_period_and_the_latest_on_the_account(store: Store) -> None:
    history = store.history
    times = [T0 + timedelta(minutes=m) for m in range(4)]
    for i, at in enumerate(times):
        await history.save_account_history([reading(2, at, equity=f"1000{i}.123456789")])
    # An older round stored late adds a snapshot but leaves the newest on the account row.
    await history.save_account_history([reading(2, T0 - timedelta(minutes=1), equity="1")])
    got = await history.snapshots_of(account_id(2), times[1], times[3])
    assert [s.time for s in got] == times[1:3]
    assert [s.equity for s in got] == [Decimal("10001.123456789"), Decimal("10002.123456789")]
    assert len(await history.snapshots_of(account_id(2), T0 - timedelta(1), T0 + timedelta(1))) == 5
    stored = await store.get_account(account_id(2))
    assert stored is not None and stored.snapshot == snapshot(times[3], "10003.123456789")


async def test_deals_come_in_pages_by_ticket_within_the_period(store: Store) -> None:
    history = store.history
    deals = tuple(deal(0, 100 + i, at=T0 + timedelta(seconds=i)) for i in range(7))
    await history.save_account_history(
        [reading(0, T0, deals=deals), reading(1, T0, deals=(deal(1, 103),))]
    )
    since, until = T0 + timedelta(seconds=1), T0 + timedelta(seconds=6)
    pages, after = [], 0
    while page := await history.deals_of(account_id(0), since, until, limit=2, after_ticket=after):
        pages.append([d.ticket for d in page])
        after = page[-1].ticket
    assert pages == [[101, 102], [103, 104], [105]]


async def test_readings_of_accounts_not_stored_are_left_out(store: Store) -> None:
    unknown = dataclasses.replace(reading(0, T0), account_id="acc_not_stored")
    stored = await store.history.save_account_history([unknown, reading(1, T0)])
    assert stored == [account_id(1)]
    assert len(await store.history.snapshots_of(account_id(1), T0, T0 + timedelta(1))) == 1


# -- the monitor on a running gateway -----------------------------------------------------------


@pytest.fixture
async def gateway(tmp_path: Path, database_url: str) -> AsyncIterator[RunningGateway]:
    """Prices that stay still (a tick an hour), so equity read twice is the same; no timer."""
    config = make_config(tmp_path, database_url=database_url)
    config = dataclasses.replace(
        config,
        engine=dataclasses.replace(config.engine, history_interval_seconds=0),
        simulator=dataclasses.replace(config.simulator, tick_interval_ms=3_600_000),
    )
    running = await start_gateway(config)
    try:
        yield running
    finally:
        await running.stop(0.5)


async def traded_accounts(client: Client, gateway: RunningGateway) -> list[str]:
    """Three accounts that bought 0.60 lots by equity and then closed half of it."""
    accounts = await create_accounts(client.accounts, ["10000", "20000", "30000"])
    group = await create_group(client.accounts, accounts)
    opened = await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.60"))
    await gateway.engine.wait_idle()
    closed = await client.trading.CloseMasterPosition(
        trading_service_pb2.CloseMasterPositionRequest(
            master_order_id=opened.master_order.master_order_id,
            client_order_id="close-half",
            fraction="0.5",
        )
    )
    await gateway.engine.wait_idle()
    got = await client.trading.GetMasterOrder(
        trading_service_pb2.GetMasterOrderRequest(
            master_order_id=closed.master_order.master_order_id
        )
    )
    assert got.master_order.state == order_pb2.MASTER_ORDER_STATE_FILLED
    return [a.account_id for a in accounts]


def sim(gateway: RunningGateway, account_id: str) -> SimTerminal:
    terminal = gateway.registry.get(account_id)
    assert isinstance(terminal, SimTerminal)
    return terminal


ALL_TIME = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


async def test_a_round_stores_what_each_terminal_reports_and_a_deal_once(
    client: Client, gateway: RunningGateway
) -> None:
    account_ids = await traded_accounts(client, gateway)
    first = await gateway.monitor.run_once()
    second = await gateway.monitor.run_once()
    assert sorted(first.stored) == sorted(second.stored) == sorted(account_ids)
    assert first.failed == second.failed == {}
    history = gateway.store.history
    for account_id in account_ids:
        terminal = sim(gateway, account_id)
        info = await terminal.account_info()
        snapshots = await history.snapshots_of(account_id, *ALL_TIME)
        assert len(snapshots) == 2
        assert [(s.balance, s.equity, s.margin, s.free_margin) for s in snapshots] == [
            (info.balance, info.equity, info.margin, info.free_margin)
        ] * 2
        assert snapshots[0].time < snapshots[1].time

        deals = await history.deals_of(account_id, *ALL_TIME, limit=100)
        broker_deals = await terminal.deals(ALL_TIME[0])
        assert [d.entry for d in deals] == [DealEntry.IN, DealEntry.OUT]
        assert [(d.ticket, d.side, d.volume, d.price, d.profit, d.executed_at) for d in deals] == [
            (d.ticket, d.side, d.volume, d.price, d.profit, d.executed_at) for d in broker_deals
        ]
        assert deals[1].profit != 0 and deals[1].volume == deals[0].volume / 2
        assert await history.last_deal_time(account_id) == broker_deals[-1].executed_at

        positions = await history.positions_of(account_id)
        held = await terminal.positions()
        assert [(p.ticket, p.symbol, p.side, p.volume, p.price_open) for p in positions] == [
            (p.ticket, p.symbol, p.side, p.volume, p.price_open) for p in held
        ]
        assert len(held) == 1 and positions[0].seen_at == snapshots[1].time

        row = await gateway.store.get_account(account_id)
        assert row is not None and row.snapshot == snapshots[1]

    # Page by page, one deal at a time.
    pages, after = [], 0
    while page := await history.deals_of(account_ids[0], *ALL_TIME, limit=1, after_ticket=after):
        pages.append(page)
        after = page[-1].ticket
    assert [p[0].entry for p in pages] == [DealEntry.IN, DealEntry.OUT]


async def test_a_disconnected_terminal_leaves_the_others_history_stored(
    client: Client, gateway: RunningGateway
) -> None:
    account_ids = await traded_accounts(client, gateway)
    lost = sim(gateway, account_ids[1])
    lost.disconnect()
    round_ = await gateway.monitor.run_once()
    assert sorted(round_.stored) == sorted([account_ids[0], account_ids[2]])
    assert list(round_.failed) == [account_ids[1]]
    assert "connection to the trade server lost" in round_.failed[account_ids[1]]
    history = gateway.store.history
    for account_id in (account_ids[0], account_ids[2]):
        assert len(await history.snapshots_of(account_id, *ALL_TIME)) == 1
        assert len(await history.deals_of(account_id, *ALL_TIME, limit=10)) == 2
        assert len(await history.positions_of(account_id)) == 1
    assert await history.snapshots_of(account_ids[1], *ALL_TIME) == []
    assert await history.deals_of(account_ids[1], *ALL_TIME, limit=10) == []

    lost.reconnect()
    assert sorted((await gateway.monitor.run_once()).stored) == sorted(account_ids)
    assert len(await history.deals_of(account_ids[1], *ALL_TIME, limit=10)) == 2


async def test_a_busy_terminal_times_out_without_holding_back_the_others(
    client: Client, gateway: RunningGateway
) -> None:
    account_ids = await traded_accounts(client, gateway)
    monitor = AccountMonitor(
        gateway.store, gateway.registry, utc_now, interval_s=0, request_timeout_s=0.2
    )
    # Another request holds the terminal (one request at a time): the monitor waits no longer
    # than its timeout for it.
    async with gateway.registry.lock(account_ids[0]):
        round_ = await monitor.run_once()
    assert sorted(round_.stored) == sorted(account_ids[1:])
    assert list(round_.failed) == [account_ids[0]]
    assert await gateway.store.history.snapshots_of(account_ids[0], *ALL_TIME) == []


async def test_the_monitor_stores_rounds_on_its_timer_until_stopped(
    client: Client, gateway: RunningGateway
) -> None:
    (created,) = await create_accounts(client.accounts, ["10000"])
    history = gateway.store.history

    async def rounds_stored() -> int:
        return len(await history.snapshots_of(created.account_id, *ALL_TIME))

    monitor = AccountMonitor(
        gateway.store, gateway.registry, utc_now, interval_s=0.05, request_timeout_s=5
    )
    monitor.start()
    try:
        async with asyncio.timeout(10):
            while True:
                if await rounds_stored() >= 2:
                    break
                await asyncio.sleep(0.02)
    finally:
        await monitor.stop()
    stopped_at = await rounds_stored()
    await asyncio.sleep(0.2)
    assert await rounds_stored() == stopped_at


async def test_stop_finishes_a_round_under_way_instead_of_cancelling_it(
    client: Client, gateway: RunningGateway
) -> None:
    """A round is one transaction: cancelled mid-statement on PostgreSQL, the driver can wait
    for good and the gateway's stop with it; so a stop lets the round under way finish."""
    (created,) = await create_accounts(client.accounts, ["10000"])
    monitor = AccountMonitor(
        gateway.store, gateway.registry, utc_now, interval_s=0.01, request_timeout_s=5
    )
    terminal = gateway.registry.lock(created.account_id)
    await terminal.acquire()  # the round waits for the terminal
    monitor.start()
    for _ in range(500):  # the timer starts the round within its interval
        if monitor.in_round:
            break
        await asyncio.sleep(0.01)
    assert monitor.in_round
    stopping = asyncio.create_task(monitor.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()
    terminal.release()
    await stopping
    history = gateway.store.history
    assert len(await history.snapshots_of(created.account_id, *ALL_TIME)) == 1
