"""CancelMasterOrder: no child is sent after it; children already at the broker go on."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import grpc
import pytest

from gateway._proto.mam.v1 import order_pb2, trading_service_pb2
from gateway.api.server import RunningGateway, start_gateway
from tests.conftest import Client, client_of
from tests.integration.helpers import create_accounts, create_group, market_order, open_volume
from tests.support import error_details, make_config


@pytest.fixture
async def slow_gateway(tmp_path: Path, database_url: str) -> AsyncIterator[RunningGateway]:
    """200 ms per broker request and 4 requests in flight: a 40-account order takes ~2 s, and
    the requests in flight when it is cancelled keep it open for up to 200 ms after."""
    config = make_config(tmp_path, database_url=database_url, latency_ms=200)
    config = dataclasses.replace(
        config, engine=dataclasses.replace(config.engine, max_concurrency=4)
    )
    running = await start_gateway(config)
    try:
        yield running
    finally:
        await running.stop(0.5)


@pytest.fixture
async def slow_client(slow_gateway: RunningGateway) -> AsyncIterator[Client]:
    async with client_of(slow_gateway) as connected:
        yield connected


async def test_cancelling_mid_dispatch_sends_nothing_more(
    slow_client: Client, slow_gateway: RunningGateway
) -> None:
    client, gateway = slow_client, slow_gateway
    accounts = await create_accounts(client.accounts, [str(10_000 + 100 * i) for i in range(40)])
    group = await create_group(client.accounts, accounts)
    submitted = (
        await client.trading.SubmitMasterOrder(market_order(group.group_id, "4.00"))
    ).master_order
    master_order_id = submitted.master_order_id
    cancelled = (
        await client.trading.CancelMasterOrder(
            trading_service_pb2.CancelMasterOrderRequest(master_order_id=master_order_id)
        )
    ).master_order
    assert cancelled.HasField("cancel_request_time")
    again = await client.trading.CancelMasterOrder(
        trading_service_pb2.CancelMasterOrderRequest(master_order_id=master_order_id)
    )
    assert again.master_order.cancel_request_time == cancelled.cancel_request_time
    await gateway.engine.wait_idle()

    final = (
        await client.trading.GetMasterOrder(
            trading_service_pb2.GetMasterOrderRequest(master_order_id=master_order_id)
        )
    ).master_order
    states = [c.state for c in final.children]
    filled = [c for c in final.children if c.state == order_pb2.CHILD_ORDER_STATE_FILLED]
    not_sent = states.count(order_pb2.CHILD_ORDER_STATE_CANCELLED)
    assert len(filled) + not_sent == len(states) == submitted.child_count
    assert not_sent > 0, "the cancel came too late to test anything"
    assert final.state in (
        order_pb2.MASTER_ORDER_STATE_PARTIALLY_FILLED,
        order_pb2.MASTER_ORDER_STATE_CANCELLED,
    )
    assert final.state_reason == (
        f"cancelled on request: {not_sent} of {submitted.child_count} child orders not sent"
    )
    # The brokers hold exactly what the filled children say, nothing of the cancelled ones.
    held = await open_volume(gateway, [a.account_id for a in accounts])
    assert held == sum((Decimal(c.filled_volume) for c in filled), Decimal(0))
    assert Decimal(final.filled_volume) == held
    events = await gateway.store.events_of(master_order_id)
    assert "cancellation requested" in " ".join(e.detail for e in events)


async def test_a_final_order_cannot_be_cancelled_and_an_unknown_one_is_not_found(
    client: Client, gateway: RunningGateway
) -> None:
    accounts = await create_accounts(client.accounts, ["10000"])
    group = await create_group(client.accounts, accounts)
    submitted = await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.10"))
    await gateway.engine.wait_idle()
    for master_order_id, code, reason in (
        (
            submitted.master_order.master_order_id,
            grpc.StatusCode.FAILED_PRECONDITION,
            "MASTER_ORDER_FINAL",
        ),
        ("mo_NOSUCHORDER", grpc.StatusCode.NOT_FOUND, "MASTER_ORDER_NOT_FOUND"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.trading.CancelMasterOrder(
                trading_service_pb2.CancelMasterOrderRequest(master_order_id=master_order_id)
            )
        details = error_details(caught.value)
        assert (details.code, details.reason) == (code, reason)
    final = await client.trading.GetMasterOrder(
        trading_service_pb2.GetMasterOrderRequest(
            master_order_id=submitted.master_order.master_order_id
        )
    )
    assert final.master_order.state == order_pb2.MASTER_ORDER_STATE_FILLED
    assert not final.master_order.HasField("cancel_request_time")
