"""A database fault under a running gateway loses no fill: commit first, then believe it.

Each test runs on SQLite and PostgreSQL with faults injected under the store (store_faults.py):
a group commit refused before its COMMIT, one whose COMMIT happened but whose reply was lost,
the whole database unreachable for a while, and an outcome that can never be stored. Proven each
time: every child reaches its true state once, every fill is stored once, sequences stay
gap-free, and a subscriber sees each fill exactly once.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway._proto.mam.v1 import order_pb2, trading_service_pb2
from gateway.api.server import RunningGateway, start_gateway
from gateway.domain.orders import MasterOrderState
from tests.conftest import Client, client_of
from tests.integration.helpers import create_accounts, create_group, market_order, open_volume
from tests.integration.store_faults import FaultyDatabase
from tests.support import error_details, make_config, running, until

EQUITIES = ["10000", "20000", "30000"]


@pytest.fixture
async def slow_gateway(tmp_path: Path, database_url: str) -> AsyncIterator[RunningGateway]:
    """Brokers answering after 150 ms: a test can break the database while orders execute."""
    async with running(make_config(tmp_path, database_url=database_url, latency_ms=150)) as started:
        yield started


@pytest.fixture
async def slow_client(slow_gateway: RunningGateway) -> AsyncIterator[Client]:
    async with client_of(slow_gateway) as connected:
        yield connected


class Subscriber:
    """A live SubscribeFills stream read in the background, every fill kept as it arrives
    (a read cut short by a timeout would cancel the call itself)."""

    def __init__(self, client: Client) -> None:
        self.fills: list[order_pb2.Fill] = []
        self._stream = client.trading.SubscribeFills(trading_service_pb2.SubscribeFillsRequest())
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while (message := await self._stream.read()) is not grpc.aio.EOF:
            self.fills.extend(message.batch.fills)

    async def has(self, count: int) -> list[order_pb2.Fill]:
        async def arrived() -> bool:
            assert not self._reader.done(), "the stream ended"
            return len(self.fills) >= count

        await until(arrived, timeout_s=20, every_s=0.01)
        return list(self.fills)

    async def close(self) -> None:
        self._stream.cancel()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


async def _submit(client: Client, group_id: str, volume: str) -> order_pb2.MasterOrder:
    response = await client.trading.SubmitMasterOrder(market_order(group_id, volume))
    return response.master_order


async def _final(gateway: RunningGateway, master_order_id: str) -> None:
    async def final() -> bool:
        stored = await gateway.store.get_master_order(master_order_id)
        return stored is not None and stored.state.is_final

    await until(final, timeout_s=20)


async def _health_is(health: health_pb2_grpc.HealthStub, status: int) -> bool:
    answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
    return bool(answer.status == status)


async def _check_exactly_once(
    gateway: RunningGateway, master: order_pb2.MasterOrder, seen: list[order_pb2.Fill]
) -> None:
    """The order FILLED with each child once, each fill stored once and seen once."""
    stored = await gateway.store.get_master_order(master.master_order_id)
    assert stored is not None and stored.state is MasterOrderState.FILLED
    assert stored.filled_volume == Decimal(master.spec.volume)
    children = await gateway.store.children_of(master.master_order_id)
    assert all(c.filled_volume == c.volume for c in children)
    fills = await gateway.store.fills_of(master.master_order_id)
    assert sorted(f.child_order_id for f in fills) == sorted(c.child_order_id for c in children)
    assert [f.sequence for f in fills] == list(range(1, len(fills) + 1))
    assert sorted(f.sequence for f in seen) == [f.sequence for f in fills]
    accounts = [c.account_id for c in children]
    assert await open_volume(gateway, accounts) == Decimal(master.spec.volume)


@pytest.mark.parametrize(
    "fault",
    [
        # The database refused the commit: nothing stored, the batch is tried again.
        "fail_before_commit",
        # The COMMIT happened, its reply was lost: stored, and must not be stored twice.
        "fail_after_commit",
    ],
)
async def test_a_group_commit_that_failed_once_loses_and_doubles_nothing(
    client: Client, gateway: RunningGateway, fault: str
) -> None:
    accounts = await create_accounts(client.accounts, EQUITIES)
    group = await create_group(client.accounts, accounts)
    subscriber = Subscriber(client)
    faults = FaultyDatabase(gateway.store)
    setattr(faults, fault, 1)
    try:
        master = await _submit(client, group.group_id, "0.60")
        seen = await subscriber.has(master.child_count)
        await _final(gateway, master.master_order_id)
    finally:
        faults.restore()
    assert faults.injected == 1
    await _check_exactly_once(gateway, master, seen)
    await asyncio.sleep(0.5)  # nothing more comes
    assert subscriber.fills == seen
    await subscriber.close()
    # The order's trail holds each state change once, in commit order.
    events = await gateway.store.events_of(master.master_order_id)
    changes = [(e.child_order_id, e.state) for e in events]
    assert len(changes) == len(set(changes))
    assert [e.sequence for e in events] == sorted(e.sequence for e in events)


async def test_while_the_database_is_down_submissions_are_refused_and_results_wait(
    slow_client: Client, slow_gateway: RunningGateway
) -> None:
    client, gateway = slow_client, slow_gateway
    accounts = await create_accounts(client.accounts, EQUITIES)
    group = await create_group(client.accounts, accounts)
    subscriber = Subscriber(client)
    health = health_pb2_grpc.HealthStub(client.channel)
    faults = FaultyDatabase(gateway.store)
    try:
        master = await _submit(client, group.group_id, "0.60")
        faults.down = True  # the results arrive 150 ms later, with nowhere to go
        await until(lambda: _health_is(health, health_pb2.HealthCheckResponse.NOT_SERVING))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _submit(client, group.group_id, "0.30")
        details = error_details(refused.value)
        assert details.code is grpc.StatusCode.UNAVAILABLE
        assert details.reason == "STORE_UNAVAILABLE"
        assert details.retry_delay_s > 0
        # Nothing was told before it was stored.
        await asyncio.sleep(0.3)
        assert subscriber.fills == []
        faults.down = False
        seen = await subscriber.has(master.child_count)
        await _final(gateway, master.master_order_id)
        await until(lambda: _health_is(health, health_pb2.HealthCheckResponse.SERVING))
    finally:
        faults.restore()
    await _check_exactly_once(gateway, master, seen)
    await asyncio.sleep(0.5)  # nothing more comes
    assert subscriber.fills == seen
    await subscriber.close()
    # Back in service: the same submission goes through.
    again = await _submit(client, group.group_id, "0.30")
    assert again.state == order_pb2.MASTER_ORDER_STATE_DISPATCHING


async def test_an_outcome_that_can_never_be_stored_blocks_nothing_else_and_is_found_at_restart(
    tmp_path: Path, database_url: str
) -> None:
    config = make_config(tmp_path, database_url=database_url)
    config = dataclasses.replace(
        config,
        simulator=dataclasses.replace(config.simulator, state_path=tmp_path / "broker.db"),
    )
    gateway = await start_gateway(config)
    try:
        async with client_of(gateway) as client:
            accounts = await create_accounts(client.accounts, EQUITIES)
            group = await create_group(client.accounts, accounts)
            poisoned = accounts[1].account_id
            store = gateway.store
            save_progress = store.save_progress

            async def refusing(**batch: object) -> object:
                children = batch.get("children") or []
                if any(c.account_id == poisoned for c in children):  # type: ignore[attr-defined]
                    raise ValueError("injected: a value the database refuses")
                return await save_progress(**batch)  # type: ignore[arg-type]

            store.save_progress = refusing  # type: ignore[method-assign]
            master = await _submit(client, group.group_id, "0.60")
            await gateway.engine.wait_idle()
            children = {c.account_id: c for c in await store.children_of(master.master_order_id)}
            # The others are stored; the poisoned child stays as last stored (SENT).
            assert children[poisoned].filled_volume == 0
            assert sum(c.filled_volume > 0 for c in children.values()) == len(EQUITIES) - 1
            stored = await store.get_master_order(master.master_order_id)
            assert stored is not None and not stored.state.is_final
    finally:
        await gateway.stop(0.5)

    restarted = await start_gateway(config)
    try:
        await restarted.engine.wait_idle()
        await _final(restarted, master.master_order_id)
        fills = await restarted.store.fills_of(master.master_order_id)
        await _check_exactly_once(restarted, master, fills_as_seen(fills))
    finally:
        await restarted.stop(0.5)


def fills_as_seen(fills: list[object]) -> list[order_pb2.Fill]:
    return [order_pb2.Fill(sequence=f.sequence) for f in fills]  # type: ignore[attr-defined]
