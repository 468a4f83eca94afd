"""Pending master orders (LIMIT, STOP, STOP_LIMIT): placed at every broker, WORKING until their
price comes, then filled; moved by ModifyMasterOrder, removed by CancelMasterOrder, ended by
their expiry; and followed again after a restart."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from google.protobuf import timestamp_pb2

from gateway._proto.mam.v1 import common_pb2, order_pb2, trading_service_pb2
from gateway.api.server import RunningGateway, start_gateway
from gateway.config import GatewayConfig
from gateway.terminals.sim.faults import Fault
from tests.conftest import Client, client_of
from tests.integration.helpers import create_accounts, create_group, market_order, open_volume
from tests.support import make_config

POINT = Decimal("0.00001")
PLACED = order_pb2.CHILD_ORDER_STATE_PLACED
WORKING = order_pb2.MASTER_ORDER_STATE_WORKING


def config_for(tmp_path: Path, database_url: str) -> GatewayConfig:
    config = make_config(tmp_path, database_url=database_url)
    return dataclasses.replace(
        config,
        engine=dataclasses.replace(config.engine, pending_check_interval_seconds=0.05),
        # The broker's books survive a restart of the gateway, like a real broker's.
        simulator=dataclasses.replace(config.simulator, state_path=tmp_path / "broker.db"),
    )


@pytest.fixture
async def pending_gateway(tmp_path: Path, database_url: str) -> AsyncIterator[RunningGateway]:
    running = await start_gateway(config_for(tmp_path, database_url))
    try:
        yield running
    finally:
        await running.stop(0.5)


def buy_limit(
    gateway: RunningGateway, group_id: str, below_points: int, **fields: object
) -> object:
    _, ask, _ = gateway.broker.feed.bid_ask("EURUSD")
    return market_order(
        group_id,
        "1.00",
        type=common_pb2.ORDER_TYPE_LIMIT,
        price=str(ask - below_points * POINT),
        filling_policy=common_pb2.FILLING_POLICY_RETURN,
        **fields,
    )


async def master_of(client: Client, master_order_id: str) -> order_pb2.MasterOrder:
    got = await client.trading.GetMasterOrder(
        trading_service_pb2.GetMasterOrderRequest(master_order_id=master_order_id)
    )
    return got.master_order


async def until_state(
    client: Client, master_order_id: str, state: int, timeout_s: float = 15.0
) -> order_pb2.MasterOrder:
    """Polls until the master order reaches `state` (a timeout fails the test, it is no
    measure of speed)."""
    async with asyncio.timeout(timeout_s):
        while True:
            master = await master_of(client, master_order_id)
            if master.state == state:
                return master
            await asyncio.sleep(0.05)


async def resting_orders(gateway: RunningGateway, account_ids: list[str]) -> list[object]:
    found = []
    for account_id in account_ids:
        terminal = gateway.registry.get(account_id)
        assert terminal is not None
        found.extend(await terminal.pending_orders())
    return found


async def test_a_limit_order_works_at_every_broker_until_its_price_comes(
    pending_gateway: RunningGateway,
) -> None:
    gateway = pending_gateway
    async with client_of(gateway) as client:
        accounts = await create_accounts(client.accounts, ["10000", "20000", "30000", "40000"])
        ids = [a.account_id for a in accounts]
        group = await create_group(client.accounts, accounts)
        request = buy_limit(gateway, group.group_id, below_points=300)
        submitted = await client.trading.SubmitMasterOrder(request)
        master_order_id = submitted.master_order.master_order_id
        working = await until_state(client, master_order_id, WORKING)
        assert {c.state for c in working.children} == {PLACED}
        assert all(c.broker_order_ticket for c in working.children)
        resting = await resting_orders(gateway, ids)
        assert len(resting) == len(working.children)
        assert {o.price for o in resting} == {Decimal(request.order.price)}  # type: ignore[attr-defined]
        assert await open_volume(gateway, ids) == 0
        # The market falls through the limit: every child fills at its broker.
        gateway.broker.feed.move("EURUSD", -600)
        filled = await until_state(client, master_order_id, order_pb2.MASTER_ORDER_STATE_FILLED)
        assert Decimal(filled.filled_volume) == Decimal("1.00")
        assert await open_volume(gateway, ids) == Decimal("1.00")
        assert await resting_orders(gateway, ids) == []
        for child in filled.children:
            assert child.state == order_pb2.CHILD_ORDER_STATE_FILLED
            assert Decimal(child.requested_price) == Decimal(request.order.price)  # type: ignore[attr-defined]
            # A buy limit fills at its price or better: never a positive slippage.
            assert Decimal(child.slippage_points) <= 0
        fills = await _fills_of(client, master_order_id)
        assert sorted(f.child_order_id for f in fills) == sorted(
            c.child_order_id for c in filled.children
        )


async def _fills_of(client: Client, master_order_id: str) -> list[order_pb2.Fill]:
    fills: list[order_pb2.Fill] = []
    stream = client.trading.SubscribeFills(
        trading_service_pb2.SubscribeFillsRequest(master_order_id=master_order_id)
    )
    async for response in stream:
        if not response.HasField("batch"):
            break
        fills.extend(response.batch.fills)
    stream.cancel()
    return fills


async def test_cancelling_a_working_order_removes_it_everywhere(
    pending_gateway: RunningGateway,
) -> None:
    gateway = pending_gateway
    async with client_of(gateway) as client:
        accounts = await create_accounts(client.accounts, ["10000", "20000", "30000"])
        ids = [a.account_id for a in accounts]
        group = await create_group(client.accounts, accounts)
        submitted = await client.trading.SubmitMasterOrder(
            buy_limit(gateway, group.group_id, below_points=300)
        )
        master_order_id = submitted.master_order.master_order_id
        await until_state(client, master_order_id, WORKING)
        await client.trading.CancelMasterOrder(
            trading_service_pb2.CancelMasterOrderRequest(master_order_id=master_order_id)
        )
        cancelled = await until_state(
            client, master_order_id, order_pb2.MASTER_ORDER_STATE_CANCELLED
        )
        assert {c.state for c in cancelled.children} == {order_pb2.CHILD_ORDER_STATE_CANCELLED}
        assert all("removed on request" in c.status_text for c in cancelled.children)
        assert await resting_orders(gateway, ids) == []
        # The market comes later: nothing fills.
        gateway.broker.feed.move("EURUSD", -600)
        await asyncio.sleep(0.2)
        assert await open_volume(gateway, ids) == 0


async def test_modify_moves_the_price_of_every_resting_child(
    pending_gateway: RunningGateway,
) -> None:
    gateway = pending_gateway
    async with client_of(gateway) as client:
        accounts = await create_accounts(client.accounts, ["10000", "20000"])
        ids = [a.account_id for a in accounts]
        group = await create_group(client.accounts, accounts)
        request = buy_limit(gateway, group.group_id, below_points=300)
        submitted = await client.trading.SubmitMasterOrder(request)
        master_order_id = submitted.master_order.master_order_id
        await until_state(client, master_order_id, WORKING)
        lower = Decimal(request.order.price) - 200 * POINT  # type: ignore[attr-defined]
        modified = await client.trading.ModifyMasterOrder(
            trading_service_pb2.ModifyMasterOrderRequest(
                master_order_id=master_order_id,
                price=str(lower),
                stop_loss=str(lower - 500 * POINT),
            )
        )
        assert all(r.done for r in modified.results) and len(modified.results) == 2
        assert Decimal(modified.master_order.spec.price) == lower
        resting = await resting_orders(gateway, ids)
        assert {(o.price, o.stop_loss) for o in resting} == {(lower, lower - 500 * POINT)}  # type: ignore[attr-defined]
        stored = await master_of(client, master_order_id)
        assert Decimal(stored.spec.price) == lower


async def test_an_expired_order_ends_cancelled(pending_gateway: RunningGateway) -> None:
    gateway = pending_gateway
    async with client_of(gateway) as client:
        accounts = await create_accounts(client.accounts, ["10000", "20000"])
        group = await create_group(client.accounts, accounts)
        expiry = timestamp_pb2.Timestamp()
        expiry.FromDatetime(datetime.now(UTC) + timedelta(seconds=1))
        request = buy_limit(
            gateway,
            group.group_id,
            below_points=300,
            time_in_force=common_pb2.TIME_IN_FORCE_SPECIFIED,
        )
        request.order.expire_time.CopyFrom(expiry)  # type: ignore[attr-defined]
        submitted = await client.trading.SubmitMasterOrder(request)
        master_order_id = submitted.master_order.master_order_id
        ended = await until_state(client, master_order_id, order_pb2.MASTER_ORDER_STATE_CANCELLED)
        assert all("expired" in c.status_text for c in ended.children)


async def test_a_working_order_is_followed_again_after_a_restart(
    tmp_path: Path, database_url: str
) -> None:
    config = config_for(tmp_path, database_url)
    gateway = await start_gateway(config)
    try:
        async with client_of(gateway) as client:
            accounts = await create_accounts(client.accounts, ["10000", "20000", "30000"])
            ids = [a.account_id for a in accounts]
            group = await create_group(client.accounts, accounts)
            submitted = await client.trading.SubmitMasterOrder(
                buy_limit(gateway, group.group_id, below_points=300)
            )
            master_order_id = submitted.master_order.master_order_id
            await until_state(client, master_order_id, WORKING)
    finally:
        await gateway.stop(0.5)
    gateway = await start_gateway(config)
    try:
        async with client_of(gateway) as client:
            assert (await master_of(client, master_order_id)).state == WORKING
            gateway.broker.feed.move("EURUSD", -600)
            await until_state(client, master_order_id, order_pb2.MASTER_ORDER_STATE_FILLED)
            assert await open_volume(gateway, ids) == Decimal("1.00")
            fills = await _fills_of(client, master_order_id)
            assert len({f.deal_ticket for f in fills}) == len(fills) == 3
    finally:
        await gateway.stop(0.5)


async def test_an_unknown_placement_is_found_by_tag_never_placed_twice(
    pending_gateway: RunningGateway,
) -> None:
    gateway = pending_gateway
    async with client_of(gateway) as client:
        accounts = await create_accounts(client.accounts, ["10000", "20000"])
        ids = [a.account_id for a in accounts]
        group = await create_group(client.accounts, accounts)
        placed_then_lost = gateway.registry.get(ids[0])
        never_arrived = gateway.registry.get(ids[1])
        placed_then_lost.faults.fail_next(Fault.DISCONNECT_AFTER)  # type: ignore[union-attr]
        never_arrived.faults.fail_next(Fault.DISCONNECT_BEFORE)  # type: ignore[union-attr]
        submitted = await client.trading.SubmitMasterOrder(
            buy_limit(gateway, group.group_id, below_points=300)
        )
        working = await until_state(client, submitted.master_order.master_order_id, WORKING)
        assert {c.state for c in working.children} == {PLACED}
        # Exactly one resting order per account: the lost answer was found, not placed again.
        resting = await resting_orders(gateway, ids)
        assert len(resting) == 2
        assert {c.broker_order_ticket for c in working.children} == {o.ticket for o in resting}  # type: ignore[attr-defined]
