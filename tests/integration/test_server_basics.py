"""What every caller relies on: health, reflection, paging, internal errors as INTERNAL."""

from __future__ import annotations

import logging

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gateway._proto.mam.v1 import account_service_pb2, order_pb2, trading_service_pb2
from gateway.api.server import RunningGateway
from tests.conftest import Client
from tests.integration.helpers import create_accounts, create_group, market_order
from tests.support import error_details


async def test_health_reports_serving_for_the_server_and_each_service(client: Client) -> None:
    health = health_pb2_grpc.HealthStub(client.channel)
    for service in ("", "mam.v1.AccountService", "mam.v1.TradingService"):
        response = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_health_watch_on_the_api_port_streams_serving(client: Client) -> None:
    # Watch writes with context.write: the error mapping must pass such a handler through.
    watch = health_pb2_grpc.HealthStub(client.channel).Watch(
        health_pb2.HealthCheckRequest(service="")
    )
    first = await watch.read()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()


async def test_reflection_lists_the_mam_services(client: Client) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    call = stub.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    response = await call.read()
    await call.done_writing()
    names = {s.name for s in response.list_services_response.service}
    assert {"mam.v1.AccountService", "mam.v1.TradingService", "mam.v1.WorkerService"} <= names


async def test_a_server_side_bug_is_internal_with_an_incident_id_in_the_log(
    client: Client, gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    async def broken(master_order_id: str) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(gateway.engine, "get", broken)
    with (
        caplog.at_level(logging.ERROR, logger="gateway.api.errors"),
        pytest.raises(grpc.aio.AioRpcError) as caught,
    ):
        await client.trading.GetMasterOrder(
            trading_service_pb2.GetMasterOrderRequest(master_order_id="mo_1"), timeout=5
        )
    details = error_details(caught.value)
    assert details.code is grpc.StatusCode.INTERNAL
    incident = details.metadata["incident_id"]
    assert incident in details.message
    assert any(incident in record.getMessage() for record in caplog.records)
    assert "simulated bug" not in details.message  # internals stay in the log


async def test_a_bug_inside_a_stream_ends_it_with_internal(
    client: Client, gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(gateway.store, "encoded_fills_after", broken)
    stream = client.trading.SubscribeFills(trading_service_pb2.SubscribeFillsRequest(), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream.read()
    assert error_details(caught.value).code is grpc.StatusCode.INTERNAL


async def test_accounts_page_through_without_gaps_or_repeats(client: Client) -> None:
    created = await create_accounts(client.accounts, [str(1000 + i) for i in range(7)])
    seen: list[str] = []
    token = ""
    while True:
        page = await client.accounts.ListAccounts(
            account_service_pb2.ListAccountsRequest(page_size=3, page_token=token)
        )
        assert len(page.accounts) <= 3
        seen.extend(a.account_id for a in page.accounts)
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(a.account_id for a in created)


async def test_preview_matches_the_submitted_allocation_and_stores_nothing(
    client: Client, gateway: RunningGateway
) -> None:
    accounts = await create_accounts(client.accounts, ["1000", "2000", "4000"])
    group = await create_group(client.accounts, accounts)
    order = market_order(group.group_id, volume="0.07").order
    preview = await client.trading.PreviewAllocation(
        trading_service_pb2.PreviewAllocationRequest(order=order)
    )
    listed = await client.trading.ListMasterOrders(trading_service_pb2.ListMasterOrdersRequest())
    assert list(listed.master_orders) == []
    by_equity = {line.basis: line.volume for line in preview.allocation.lines}
    assert by_equity == {"1000.00": "0.01", "2000.00": "0.02", "4000.00": "0.04"}

    submitted = await client.trading.SubmitMasterOrder(
        trading_service_pb2.SubmitMasterOrderRequest(order=order)
    )
    submitted_lines = [
        (line.account_id, line.volume, list(line.reasons))
        for line in submitted.master_order.allocation.lines
    ]
    preview_lines = [
        (line.account_id, line.volume, list(line.reasons)) for line in preview.allocation.lines
    ]
    assert submitted_lines == preview_lines
    await gateway.engine.wait_idle()


async def test_list_master_orders_is_newest_first_and_filters_by_group(
    client: Client, gateway: RunningGateway
) -> None:
    accounts = await create_accounts(client.accounts, ["10000", "20000"])
    first = await create_group(client.accounts, accounts[:1], name="first")
    second = await create_group(client.accounts, accounts[1:], name="second")
    ids = []
    for group in (first, second, first):
        response = await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.01"))
        ids.append(response.master_order.master_order_id)
    await gateway.engine.wait_idle()
    everything = await client.trading.ListMasterOrders(
        trading_service_pb2.ListMasterOrdersRequest()
    )
    assert [m.master_order_id for m in everything.master_orders] == ids[::-1]
    assert all(m.state == order_pb2.MASTER_ORDER_STATE_FILLED for m in everything.master_orders)
    only_first = await client.trading.ListMasterOrders(
        trading_service_pb2.ListMasterOrdersRequest(group_id=first.group_id, page_size=1)
    )
    assert [m.master_order_id for m in only_first.master_orders] == [ids[2]]
    rest = await client.trading.ListMasterOrders(
        trading_service_pb2.ListMasterOrdersRequest(
            group_id=first.group_id, page_token=only_first.next_page_token
        )
    )
    assert [m.master_order_id for m in rest.master_orders] == [ids[0]]
    assert rest.next_page_token == ""
