"""A master order's stop loss and take profit reach every account's position."""

from __future__ import annotations

from decimal import Decimal

import grpc
import pytest

from gateway._proto.mam.v1 import order_pb2, trading_service_pb2
from gateway.api.server import RunningGateway
from tests.conftest import Client
from tests.integration.helpers import create_accounts, create_group, market_order
from tests.support import error_details


async def test_stops_of_the_master_order_are_set_on_every_position(
    client: Client, gateway: RunningGateway
) -> None:
    accounts = await create_accounts(client.accounts, ["10000", "20000", "30000"])
    group = await create_group(client.accounts, accounts)
    terminal = gateway.registry.get(accounts[0].account_id)
    assert terminal is not None
    quote = await terminal.quote("EURUSD")
    stop_loss = (quote.bid - Decimal("0.01000")).quantize(Decimal("0.00001"))
    take_profit = (quote.ask + Decimal("0.01000")).quantize(Decimal("0.00001"))
    response = await client.trading.SubmitMasterOrder(
        market_order(group.group_id, "0.60", stop_loss=str(stop_loss), take_profit=str(take_profit))
    )
    await gateway.engine.wait_idle()
    got = await client.trading.GetMasterOrder(
        trading_service_pb2.GetMasterOrderRequest(
            master_order_id=response.master_order.master_order_id
        )
    )
    assert got.master_order.state == order_pb2.MASTER_ORDER_STATE_FILLED
    for account in accounts:
        terminal = gateway.registry.get(account.account_id)
        assert terminal is not None
        (position,) = await terminal.positions()
        assert (position.stop_loss, position.take_profit) == (stop_loss, take_profit)


async def test_modify_sets_the_stops_of_every_open_position_and_reports_each_account(
    client: Client, gateway: RunningGateway
) -> None:
    accounts = await create_accounts(client.accounts, ["10000", "20000"])
    group = await create_group(client.accounts, accounts)
    response = await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.30"))
    master_order_id = response.master_order.master_order_id
    await gateway.engine.wait_idle()
    terminal = gateway.registry.get(accounts[0].account_id)
    assert terminal is not None
    quote = await terminal.quote("EURUSD")
    stop_loss = (quote.bid - Decimal("0.02000")).quantize(Decimal("0.00001"))

    modified = await client.trading.ModifyMasterOrder(
        trading_service_pb2.ModifyMasterOrderRequest(
            master_order_id=master_order_id, stop_loss=str(stop_loss)
        )
    )
    assert sorted(r.account_id for r in modified.results) == sorted(a.account_id for a in accounts)
    assert all(r.done and r.retcode == 10009 for r in modified.results)
    again = await client.trading.ModifyMasterOrder(
        trading_service_pb2.ModifyMasterOrderRequest(
            master_order_id=master_order_id, stop_loss=str(stop_loss)
        )
    )
    assert all(r.done and r.retcode == 10025 for r in again.results)  # NO_CHANGES
    for account in accounts:
        terminal = gateway.registry.get(account.account_id)
        assert terminal is not None
        (position,) = await terminal.positions()
        assert (position.stop_loss, position.take_profit) == (stop_loss, None)

    # A stop on the wrong side is the broker's INVALID_STOPS for every account; nothing changes.
    wrong = await client.trading.ModifyMasterOrder(
        trading_service_pb2.ModifyMasterOrderRequest(
            master_order_id=master_order_id, stop_loss=str(quote.ask + Decimal("0.01"))
        )
    )
    assert {(r.done, r.retcode) for r in wrong.results} == {(False, 10016)}
    removed = await client.trading.ModifyMasterOrder(
        trading_service_pb2.ModifyMasterOrderRequest(master_order_id=master_order_id, stop_loss="0")
    )
    assert all(r.done for r in removed.results)
    for account in accounts:
        terminal = gateway.registry.get(account.account_id)
        assert terminal is not None
        (position,) = await terminal.positions()
        assert position.stop_loss is None
    details = [e.detail for e in await gateway.store.events_of(master_order_id)]
    assert sum("stops sl=" in d for d in details) == 6


async def test_modify_needs_something_to_change(client: Client) -> None:
    for request, field in (
        (trading_service_pb2.ModifyMasterOrderRequest(master_order_id="mo_1"), "stop_loss"),
        (
            trading_service_pb2.ModifyMasterOrderRequest(master_order_id="mo_1", price="-1.1"),
            "price",
        ),
        (
            trading_service_pb2.ModifyMasterOrderRequest(master_order_id="mo_1", stop_loss="-1"),
            "stop_loss",
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.trading.ModifyMasterOrder(request)
        details = error_details(caught.value)
        assert details.code is grpc.StatusCode.INVALID_ARGUMENT
        assert set(details.field_violations) == {field}


async def test_a_price_is_only_for_a_working_pending_order(client: Client) -> None:
    accounts = await create_accounts(client.accounts, ["10000"])
    group = await create_group(client.accounts, accounts)
    submitted = await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.10"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.trading.ModifyMasterOrder(
            trading_service_pb2.ModifyMasterOrderRequest(
                master_order_id=submitted.master_order.master_order_id, price="1.1"
            )
        )
    details = error_details(caught.value)
    assert (details.code, details.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NOT_WORKING")
