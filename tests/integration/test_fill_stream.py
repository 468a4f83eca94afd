"""SubscribeFills: stored fills first, then live ones, with no gap and no duplicate."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from gateway._proto.mam.v1 import order_pb2, trading_service_pb2, trading_service_pb2_grpc
from gateway.api.server import RunningGateway, start_gateway
from tests.conftest import Client
from tests.integration.helpers import create_accounts, create_group, market_order
from tests.support import error_details, make_config


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


async def test_a_subscriber_too_slow_for_its_buffer_catches_up_from_the_store(
    client: Client, gateway: RunningGateway
) -> None:
    gateway.bus.max_pending = 5  # any batch of more than 5 fills overflows the live buffer
    accounts = await create_accounts(client.accounts, [str(5000 + 100 * i) for i in range(40)])
    group = await create_group(client.accounts, accounts)
    stream = client.trading.SubscribeFills(trading_service_pb2.SubscribeFillsRequest())
    first = await stream.read()
    assert first.heartbeat_sequence == 0
    children = 0
    for _ in range(6):
        response = await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.80"))
        children += response.master_order.child_count
    await gateway.engine.wait_idle()
    # The reader has not read a fill yet; everything it gets now is in order, once.
    fills = await read_fills(stream, children)
    # Each fall-back replaced the subscription: none is left behind.
    assert gateway.bus.subscriber_count == 1
    stream.cancel()
    assert gateway.bus.overflows >= 1, "the live buffer never overflowed: nothing was tested"
    assert [f.sequence for f in fills] == list(range(1, children + 1))


async def test_stopping_the_gateway_ends_open_streams_at_once_with_where_to_resume(
    tmp_path, database_url: str
) -> None:
    gateway = await start_gateway(make_config(tmp_path, database_url=database_url))
    stopped = False
    try:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            trading = trading_service_pb2_grpc.TradingServiceStub(channel)
            fills = trading.SubscribeFills(trading_service_pb2.SubscribeFillsRequest())
            assert (await fills.read()).heartbeat_sequence == 0
            orders = trading.StreamMasterOrders()
            # An empty submission's rejection: the call has reached the gateway's handler.
            await orders.write(trading_service_pb2.StreamMasterOrdersRequest())
            assert (await orders.read()).rejected.reason == "INVALID_ARGUMENT"
            stopping = asyncio.create_task(gateway.stop(grace_s=30))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async with asyncio.timeout(10):  # far below the 30 s grace
                    await fills.read()
            details = error_details(caught.value)
            assert (details.code, details.reason) == (
                grpc.StatusCode.UNAVAILABLE,
                "GATEWAY_STOPPING",
            )
            assert "after_sequence=0" in details.message
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async with asyncio.timeout(10):
                    await orders.read()
            assert error_details(caught.value).reason == "GATEWAY_STOPPING"
            await stopping
            stopped = True
    finally:
        if not stopped:
            await gateway.stop(0.5)
