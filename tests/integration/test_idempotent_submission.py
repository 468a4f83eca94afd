"""A resubmitted client_order_id never trades twice: same payload -> the original order,
another payload -> ALREADY_EXISTS, concurrent resubmissions -> one order. Both backends."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import grpc
import pytest

from gateway._proto.mam.v1 import order_pb2, trading_service_pb2
from gateway.api.server import RunningGateway
from tests.conftest import Client
from tests.integration.helpers import create_accounts, create_group, market_order, open_volume
from tests.support import error_details


async def stored_orders(client: Client) -> list[order_pb2.MasterOrder]:
    listed = await client.trading.ListMasterOrders(trading_service_pb2.ListMasterOrdersRequest())
    return list(listed.master_orders)


async def test_the_same_payload_returns_the_original_order_in_flight_and_finished(
    client: Client, gateway: RunningGateway
) -> None:
    accounts = await create_accounts(client.accounts, ["10000", "20000", "30000"])
    group = await create_group(client.accounts, accounts)
    request = market_order(group.group_id, "0.60")
    first = await client.trading.SubmitMasterOrder(request)
    assert not first.replayed
    in_flight = await client.trading.SubmitMasterOrder(request)
    await gateway.engine.wait_idle()
    finished = await client.trading.SubmitMasterOrder(request)

    original = first.master_order.master_order_id
    assert in_flight.replayed and finished.replayed
    assert in_flight.master_order.master_order_id == original
    assert finished.master_order.master_order_id == original
    assert finished.master_order.state == order_pb2.MASTER_ORDER_STATE_FILLED
    assert [m.master_order_id for m in await stored_orders(client)] == [original]
    # Traded once: the accounts hold exactly the master volume.
    assert await open_volume(gateway, [a.account_id for a in accounts]) == Decimal("0.60")


async def test_the_same_id_with_another_payload_is_already_exists_and_changes_nothing(
    client: Client, gateway: RunningGateway
) -> None:
    accounts = await create_accounts(client.accounts, ["10000"])
    group = await create_group(client.accounts, accounts)
    first = await client.trading.SubmitMasterOrder(
        market_order(group.group_id, "0.10", client_order_id="desk-42")
    )
    await gateway.engine.wait_idle()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.trading.SubmitMasterOrder(
            market_order(group.group_id, "0.20", client_order_id="desk-42")
        )
    details = error_details(caught.value)
    assert details.code is grpc.StatusCode.ALREADY_EXISTS
    assert details.reason == "DUPLICATE_CLIENT_ORDER_ID"
    assert first.master_order.master_order_id in details.message
    assert len(await stored_orders(client)) == 1
    assert await open_volume(gateway, [accounts[0].account_id]) == Decimal("0.10")


async def test_concurrent_resubmissions_store_and_trade_one_order(
    client: Client, gateway: RunningGateway
) -> None:
    accounts = await create_accounts(client.accounts, ["5000", "10000", "15000", "20000"])
    group = await create_group(client.accounts, accounts)
    request = market_order(group.group_id, "1.00", client_order_id="retry-storm")
    answers = await asyncio.gather(*(client.trading.SubmitMasterOrder(request) for _ in range(12)))
    await gateway.engine.wait_idle()
    assert len({a.master_order.master_order_id for a in answers}) == 1
    assert sum(1 for a in answers if not a.replayed) == 1
    assert len(await stored_orders(client)) == 1
    assert await open_volume(gateway, [a.account_id for a in accounts]) == Decimal("1.00")


async def test_a_submission_needs_a_client_order_id_and_a_preview_does_not(
    client: Client, gateway: RunningGateway
) -> None:
    accounts = await create_accounts(client.accounts, ["10000"])
    group = await create_group(client.accounts, accounts)
    request = market_order(group.group_id, "0.10", client_order_id="")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.trading.SubmitMasterOrder(request)
    details = error_details(caught.value)
    assert details.code is grpc.StatusCode.INVALID_ARGUMENT
    assert set(details.field_violations) == {"order.client_order_id"}
    preview = await client.trading.PreviewAllocation(
        trading_service_pb2.PreviewAllocationRequest(order=request.order)
    )
    assert preview.allocation.allocated_volume == "0.10"
    assert await stored_orders(client) == []


async def test_a_caller_gone_while_its_order_is_stored_leaves_it_stored_and_traded(
    client: Client, gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client's deadline or disconnect while its order is being stored: the submission is
    carried through (stored and dispatched, never stored and left unstarted, nor cancelled
    mid-statement), and the resubmission finds it."""
    accounts = await create_accounts(client.accounts, ["10000", "20000"])
    group = await create_group(client.accounts, accounts)
    storing, go_on, caller_gone = asyncio.Event(), asyncio.Event(), asyncio.Event()
    storings: list[asyncio.Task[object]] = []
    insert = type(gateway.store).insert_master_order
    submit = type(gateway.engine).submit

    async def held(self: object, *args: object, **kwargs: object) -> None:
        storings.append(asyncio.current_task())  # type: ignore[arg-type]
        storing.set()
        await go_on.wait()
        await insert(self, *args, **kwargs)  # type: ignore[arg-type]

    async def noting_the_caller_gone(self: object, *args: object, **kwargs: object) -> object:
        try:
            return await submit(self, *args, **kwargs)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            caller_gone.set()
            raise

    monkeypatch.setattr(type(gateway.store), "insert_master_order", held)
    monkeypatch.setattr(type(gateway.engine), "submit", noting_the_caller_gone)
    request = market_order(group.group_id, "0.30")
    call = client.trading.SubmitMasterOrder(request)
    waiting = asyncio.ensure_future(call)
    await storing.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # The cancellation reaches the gateway's handler while the store is held.
    await caller_gone.wait()
    go_on.set()
    # The storing's done callbacks run in the order they were added: the engine's, which
    # starts the stored order, was added as the cancellation reached it, before this wait's.
    await asyncio.wait(storings)
    await gateway.engine.wait_idle()
    again = await client.trading.SubmitMasterOrder(request)
    assert again.replayed
    assert again.master_order.state == order_pb2.MASTER_ORDER_STATE_FILLED
    assert await open_volume(gateway, [a.account_id for a in accounts]) == Decimal("0.30")
