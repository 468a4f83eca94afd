"""Kill switches: nothing opening is sent once one is on; flatten closes what is open; only an
explicit call lifts one; a restart keeps it on."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import grpc
import pytest

from gateway._proto.mam.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    order_pb2,
    trading_service_pb2,
)
from gateway.api.server import RunningGateway, start_gateway
from tests.conftest import Client, client_of
from tests.integration.helpers import create_accounts, create_group, market_order, open_volume
from tests.support import error_details, make_config

FILLED = order_pb2.CHILD_ORDER_STATE_FILLED
CANCELLED = order_pb2.CHILD_ORDER_STATE_CANCELLED


def switch(scope: int, target: str = "", *, flatten: bool = False) -> object:
    return admin_service_pb2.ActivateKillSwitchRequest(
        kill_switch=admin_service_pb2.KillSwitch(
            scope=scope, target_id=target, flatten=flatten, reason="risk desk: test"
        )
    )


async def children_of(client: Client, master_order_id: str) -> list[order_pb2.ChildOrder]:
    got = await client.trading.GetMasterOrder(
        trading_service_pb2.GetMasterOrderRequest(master_order_id=master_order_id)
    )
    return list(got.master_order.children)


async def test_an_account_switch_cancels_that_accounts_children_only(
    client: Client, gateway: RunningGateway
) -> None:
    admin = admin_service_pb2_grpc.AdminServiceStub(client.channel)
    accounts = await create_accounts(client.accounts, ["10000", "20000", "30000"])
    group = await create_group(client.accounts, accounts)
    killed = accounts[1].account_id
    on = await admin.ActivateKillSwitch(switch(admin_service_pb2.KILL_SWITCH_SCOPE_ACCOUNT, killed))
    assert on.kill_switch.kill_switch_id and on.kill_switch.HasField("activate_time")
    submitted = await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.60"))
    await gateway.engine.wait_idle()
    children = await children_of(client, submitted.master_order.master_order_id)
    by_account = {c.account_id: c for c in children}
    assert by_account[killed].state == CANCELLED
    assert on.kill_switch.kill_switch_id in by_account[killed].status_text
    assert all(c.state == FILLED for c in children if c.account_id != killed)
    assert await open_volume(gateway, [killed]) == 0
    # Lifted explicitly: the account trades again.
    off = await admin.DeactivateKillSwitch(
        admin_service_pb2.DeactivateKillSwitchRequest(kill_switch_id=on.kill_switch.kill_switch_id)
    )
    assert off.kill_switch.HasField("deactivate_time")
    again = await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.60"))
    await gateway.engine.wait_idle()
    assert {c.state for c in await children_of(client, again.master_order.master_order_id)} == {
        FILLED
    }


async def test_a_group_switch_refuses_new_orders_of_the_group(
    client: Client, gateway: RunningGateway
) -> None:
    admin = admin_service_pb2_grpc.AdminServiceStub(client.channel)
    accounts = await create_accounts(client.accounts, ["10000", "20000"])
    group = await create_group(client.accounts, accounts, name="stopped")
    other = await create_group(client.accounts, accounts, name="still-trading")
    await admin.ActivateKillSwitch(
        switch(admin_service_pb2.KILL_SWITCH_SCOPE_GROUP, group.group_id)
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.trading.SubmitMasterOrder(market_order(group.group_id))
    details = error_details(refused.value)
    assert details.code == grpc.StatusCode.FAILED_PRECONDITION
    assert details.reason == "KILL_SWITCH_ACTIVE"
    # Nothing stored for the refused order; the members still trade in their other group.
    listed = await client.trading.ListMasterOrders(
        trading_service_pb2.ListMasterOrdersRequest(group_id=group.group_id)
    )
    assert not listed.master_orders
    submitted = await client.trading.SubmitMasterOrder(market_order(other.group_id, "0.30"))
    await gateway.engine.wait_idle()
    assert {c.state for c in await children_of(client, submitted.master_order.master_order_id)} == {
        FILLED
    }


@pytest.fixture
async def slow_gateway(tmp_path: Path, database_url: str) -> AsyncIterator[RunningGateway]:
    """50 ms per broker request, 2 in flight: a 30-account order takes ~0.75 s to send."""
    config = make_config(tmp_path, database_url=database_url, latency_ms=50)
    config = dataclasses.replace(
        config, engine=dataclasses.replace(config.engine, max_concurrency=2)
    )
    running = await start_gateway(config)
    try:
        yield running
    finally:
        await running.stop(0.5)


async def test_a_global_switch_stops_a_dispatch_in_progress(
    tmp_path: Path, slow_gateway: RunningGateway
) -> None:
    gateway = slow_gateway
    async with client_of(gateway) as client:
        admin = admin_service_pb2_grpc.AdminServiceStub(client.channel)
        accounts = await create_accounts(client.accounts, [str(10_000 + i) for i in range(30)])
        group = await create_group(client.accounts, accounts)
        submitted = await client.trading.SubmitMasterOrder(market_order(group.group_id, "3.00"))
        await admin.ActivateKillSwitch(switch(admin_service_pb2.KILL_SWITCH_SCOPE_GLOBAL))
        await gateway.engine.wait_idle()
        children = await children_of(client, submitted.master_order.master_order_id)
        states = [c.state for c in children]
        assert states.count(CANCELLED) >= 20, states
        assert set(states) <= {FILLED, CANCELLED}
        # What the brokers hold is exactly what the filled children say: nothing was sent after.
        filled = sum((Decimal(c.filled_volume) for c in children), Decimal(0))
        assert await open_volume(gateway, [a.account_id for a in accounts]) == filled
        requests_sent = sum(t.requests_sent for t in gateway.registry.attached())  # type: ignore[attr-defined]
        assert requests_sent == states.count(FILLED)


async def test_flatten_waits_for_an_order_still_executing_then_closes_all_it_filled(
    slow_gateway: RunningGateway,
) -> None:
    gateway = slow_gateway
    async with client_of(gateway) as client:
        accounts = await create_accounts(client.accounts, [str(10_000 + i) for i in range(30)])
        ids = [a.account_id for a in accounts]
        group = await create_group(client.accounts, accounts)
        submitted = await client.trading.SubmitMasterOrder(market_order(group.group_id, "3.00"))
        assert submitted.master_order.state == order_pb2.MASTER_ORDER_STATE_DISPATCHING
        # Refused while the order executes (~0.75 s): waited for, then closed once final.
        closing_ids = [
            closing_id
            async for closing_id in gateway.engine.flatten(
                label="desk-flatten", submitted_by="test", group_id=group.group_id
            )
        ]
        assert len(closing_ids) == 1
        got = await client.trading.GetMasterOrder(
            trading_service_pb2.GetMasterOrderRequest(
                master_order_id=submitted.master_order.master_order_id
            )
        )
        assert got.master_order.state == order_pb2.MASTER_ORDER_STATE_FILLED
        await gateway.engine.wait_idle()
        assert {c.state for c in await children_of(client, closing_ids[0])} == {FILLED}
        assert await open_volume(gateway, ids) == 0


async def test_flatten_closes_what_the_group_holds_and_survives_a_restart(
    tmp_path: Path, database_url: str
) -> None:
    config = make_config(tmp_path, database_url=database_url)
    gateway = await start_gateway(config)
    try:
        async with client_of(gateway) as client:
            admin = admin_service_pb2_grpc.AdminServiceStub(client.channel)
            accounts = await create_accounts(client.accounts, ["10000", "20000", "30000"])
            ids = [a.account_id for a in accounts]
            group = await create_group(client.accounts, accounts)
            for _ in range(2):
                await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.60"))
            await gateway.engine.wait_idle()
            assert await open_volume(gateway, ids) == Decimal("1.20")
            on = await admin.ActivateKillSwitch(
                switch(admin_service_pb2.KILL_SWITCH_SCOPE_GROUP, group.group_id, flatten=True)
            )
            assert len(on.kill_switch.closing_master_order_ids) == 2
            await gateway.engine.wait_idle()
            assert await open_volume(gateway, ids) == 0
            for closing_id in on.kill_switch.closing_master_order_ids:
                assert {c.state for c in await children_of(client, closing_id)} == {FILLED}
            switch_id = on.kill_switch.kill_switch_id
    finally:
        await gateway.stop(0.5)
    # The switch is still on after a restart, and finishing its flatten closes nothing twice.
    gateway = await start_gateway(config)
    try:
        async with client_of(gateway) as client:
            admin = admin_service_pb2_grpc.AdminServiceStub(client.channel)
            listed = await admin.ListKillSwitches(
                admin_service_pb2.ListKillSwitchesRequest(active_only=True)
            )
            assert [s.kill_switch_id for s in listed.kill_switches] == [switch_id]
            assert len(listed.kill_switches[0].closing_master_order_ids) == 2
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await client.trading.SubmitMasterOrder(market_order(group.group_id))
            assert error_details(refused.value).reason == "KILL_SWITCH_ACTIVE"
            await gateway.engine.wait_idle()
            orders = await client.trading.ListMasterOrders(
                trading_service_pb2.ListMasterOrdersRequest(group_id=group.group_id)
            )
            assert len(orders.master_orders) == 4  # two opening orders, two closes, no more
    finally:
        await gateway.stop(0.5)


async def test_a_switch_request_is_validated(client: Client) -> None:
    admin = admin_service_pb2_grpc.AdminServiceStub(client.channel)
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await admin.ActivateKillSwitch(
            admin_service_pb2.ActivateKillSwitchRequest(
                kill_switch=admin_service_pb2.KillSwitch(
                    scope=admin_service_pb2.KILL_SWITCH_SCOPE_ACCOUNT
                )
            )
        )
    details = error_details(bad.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(details.field_violations) == {"kill_switch.target_id", "kill_switch.reason"}
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await admin.ActivateKillSwitch(
            switch(admin_service_pb2.KILL_SWITCH_SCOPE_GROUP, "grp_does_not_exist")
        )
    assert error_details(unknown.value).reason == "GROUP_NOT_FOUND"
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await admin.DeactivateKillSwitch(
            admin_service_pb2.DeactivateKillSwitchRequest(kill_switch_id="ks_nope")
        )
    assert error_details(missing.value).reason == "KILL_SWITCH_NOT_FOUND"
    listed = await admin.ListKillSwitches(admin_service_pb2.ListKillSwitchesRequest())
    assert not listed.kill_switches  # nothing stored by the refused requests
