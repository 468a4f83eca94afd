"""SubscribeFills: stored fills first, then live ones, with no gap and no duplicate."""

from __future__ import annotations

import asyncio

import grpc

from gateway._proto.mam.v1 import order_pb2, trading_service_pb2
from gateway.api.server import RunningGateway
from tests.conftest import Client
from tests.integration.helpers import create_accounts, create_group, market_order


async def read_fills(
    stream: grpc.aio.UnaryStreamCall, count: int, timeout_s: float = 20
) -> list[order_pb2.Fill]:
    fills: list[order_pb2.Fill] = []
    async with asyncio.timeout(timeout_s):
        while len(fills) < count:
            message = await stream.read()
            assert message is not grpc.aio.EOF
            fills.extend(message.batch.fills)
    return fills


async def test_a_subscriber_joining_while_orders_execute_misses_and_repeats_nothing(
    client: Client, gateway: RunningGateway
) -> None:
    accounts = await create_accounts(client.accounts, [str(5000 + 100 * i) for i in range(30)])
    group = await create_group(client.accounts, accounts)
    orders = 12

    async def writer() -> int:
        children = 0
        for _ in range(orders):
            response = await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.30"))
            children += response.master_order.child_count
            await asyncio.sleep(0.005)
        return children

    writing = asyncio.create_task(writer())
    await asyncio.sleep(0.02)  # some fills are stored before the subscriber arrives
    stream = client.trading.SubscribeFills(trading_service_pb2.SubscribeFillsRequest())
    total = await writing
    fills = await read_fills(stream, total)
    stream.cancel()
    assert [f.sequence for f in fills] == list(range(1, total + 1))


async def test_resuming_after_a_sequence_replays_only_what_follows(
    client: Client, gateway: RunningGateway
) -> None:
    accounts = await create_accounts(client.accounts, ["10000", "20000", "30000"])
    group = await create_group(client.accounts, accounts)
    for _ in range(3):
        await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.06"))
    await gateway.engine.wait_idle()
    assert gateway.store.last_sequence == 9
    stream = client.trading.SubscribeFills(
        trading_service_pb2.SubscribeFillsRequest(after_sequence=4)
    )
    fills = await read_fills(stream, 5)
    stream.cancel()
    assert [f.sequence for f in fills] == [5, 6, 7, 8, 9]


async def test_filters_by_account_and_master_order(client: Client, gateway: RunningGateway) -> None:
    accounts = await create_accounts(client.accounts, ["10000", "20000", "30000"])
    group = await create_group(client.accounts, accounts)
    first = await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.06"))
    await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.06"))
    await gateway.engine.wait_idle()
    one_account = client.trading.SubscribeFills(
        trading_service_pb2.SubscribeFillsRequest(account_ids=[accounts[1].account_id])
    )
    fills = await read_fills(one_account, 2)
    assert {f.account_id for f in fills} == {accounts[1].account_id}
    heartbeat = await one_account.read()
    assert not heartbeat.batch.fills and heartbeat.heartbeat_sequence == 6
    one_account.cancel()
    one_order = client.trading.SubscribeFills(
        trading_service_pb2.SubscribeFillsRequest(
            master_order_id=first.master_order.master_order_id
        )
    )
    fills = await read_fills(one_order, 3)
    assert {f.master_order_id for f in fills} == {first.master_order.master_order_id}
    one_order.cancel()


async def test_live_only_starts_at_the_present(client: Client, gateway: RunningGateway) -> None:
    accounts = await create_accounts(client.accounts, ["10000"])
    group = await create_group(client.accounts, accounts)
    await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.01"))
    await gateway.engine.wait_idle()
    stream = client.trading.SubscribeFills(
        trading_service_pb2.SubscribeFillsRequest(live_only=True)
    )
    ready = await stream.read()
    assert ready.heartbeat_sequence == 1
    await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.01"))
    fills = await read_fills(stream, 1)
    stream.cancel()
    assert [f.sequence for f in fills] == [2]
