"""The view of a master order (AIP-157): MASTER_ORDER_VIEW_BASIC answers leave out the
allocation's lines and nothing else; an unset view answers as FULL did before views; a view
the enum does not have is INVALID_ARGUMENT on `view` and stores nothing."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from gateway._proto.mam.v1 import order_pb2, trading_service_pb2
from gateway.api.server import RunningGateway
from tests.conftest import Client
from tests.integration.helpers import create_accounts, create_group, market_order
from tests.support import error_details

BASIC = order_pb2.MASTER_ORDER_VIEW_BASIC
FULL = order_pb2.MASTER_ORDER_VIEW_FULL
EQUITIES = ["10000", "20000", "30000", "40000"]


@pytest.fixture
async def group_id(client: Client) -> str:
    accounts = await create_accounts(client.accounts, EQUITIES)
    return (await create_group(client.accounts, accounts)).group_id


def without_lines(master: order_pb2.MasterOrder) -> order_pb2.MasterOrder:
    copy = order_pb2.MasterOrder()
    copy.CopyFrom(master)
    copy.allocation.ClearField("lines")
    return copy


def viewed(
    request: trading_service_pb2.SubmitMasterOrderRequest, view: int
) -> trading_service_pb2.SubmitMasterOrderRequest:
    copy = trading_service_pb2.SubmitMasterOrderRequest()
    copy.CopyFrom(request)
    copy.view = view
    return copy


async def get(client: Client, master_order_id: str, view: int = 0) -> order_pb2.MasterOrder:
    response = await client.trading.GetMasterOrder(
        trading_service_pb2.GetMasterOrderRequest(
            master_order_id=master_order_id,
            view=view,
        )
    )
    return response.master_order


async def stored_orders(client: Client) -> list[order_pb2.MasterOrder]:
    listed = await client.trading.ListMasterOrders(trading_service_pb2.ListMasterOrdersRequest())
    return list(listed.master_orders)


async def test_a_basic_answer_is_the_full_one_without_allocation_lines(
    client: Client, gateway: RunningGateway, group_id: str
) -> None:
    request = market_order(group_id, "1.00")
    first = await client.trading.SubmitMasterOrder(viewed(request, BASIC))
    assert not first.replayed
    basic = first.master_order
    assert basic.master_order_id and basic.child_count == len(EQUITIES)
    assert list(basic.allocation.lines) == []
    # The allocation's summary stays.
    assert basic.allocation.requested_volume == basic.allocation.allocated_volume == "1.00"
    assert basic.allocation.HasField("snapshot_time")
    await gateway.engine.wait_idle()

    # Resubmissions of the final order: each answers in the view it asks for.
    full = (await client.trading.SubmitMasterOrder(viewed(request, FULL))).master_order
    unset = (await client.trading.SubmitMasterOrder(request)).master_order
    again = await client.trading.SubmitMasterOrder(viewed(request, BASIC))
    assert again.replayed
    assert len(full.allocation.lines) == len(EQUITIES)
    assert unset == full
    assert again.master_order == without_lines(full)
    # The first answer came at acceptance, before any fill: the same order, an earlier state.
    assert (basic.master_order_id, basic.spec, basic.magic, basic.create_time) == (
        full.master_order_id, full.spec, full.magic, full.create_time,
    )  # fmt: skip
    assert basic.allocation == without_lines(full).allocation
    assert basic.child_count == full.child_count
    assert len(await stored_orders(client)) == 1


async def test_an_unset_view_answers_a_new_submission_in_full(
    client: Client, gateway: RunningGateway, group_id: str
) -> None:
    answer = (await client.trading.SubmitMasterOrder(market_order(group_id, "1.00"))).master_order
    stored = await get(client, answer.master_order_id, FULL)
    assert len(answer.allocation.lines) == len(EQUITIES)
    assert answer.allocation == stored.allocation


async def test_get_and_list_with_basic_keep_everything_but_the_lines(
    client: Client, gateway: RunningGateway, group_id: str
) -> None:
    submitted = await client.trading.SubmitMasterOrder(market_order(group_id, "1.00"))
    await gateway.engine.wait_idle()
    master_order_id = submitted.master_order.master_order_id
    full = await get(client, master_order_id, FULL)
    basic = await get(client, master_order_id, BASIC)
    assert await get(client, master_order_id) == full
    assert len(full.allocation.lines) == len(EQUITIES)
    assert basic == without_lines(full)
    assert len(basic.children) == basic.child_count == len(EQUITIES)  # children stay

    listed = await client.trading.ListMasterOrders(
        trading_service_pb2.ListMasterOrdersRequest(view=BASIC)
    )
    (only,) = listed.master_orders
    (unset,) = await stored_orders(client)
    assert len(unset.allocation.lines) == len(EQUITIES)
    assert only == without_lines(unset)


def stream_request(
    request: trading_service_pb2.SubmitMasterOrderRequest, view: int = 0
) -> trading_service_pb2.StreamMasterOrdersRequest:
    return trading_service_pb2.StreamMasterOrdersRequest(
        order=request.order,
        view=view,
    )


async def read_to_end(call) -> list[trading_service_pb2.StreamMasterOrdersResponse]:
    messages = []
    async with asyncio.timeout(30):
        while (message := await call.read()) is not grpc.aio.EOF:
            messages.append(message)
    return messages


async def test_each_stream_submission_is_answered_in_its_own_view(
    client: Client, gateway: RunningGateway, group_id: str
) -> None:
    call = client.trading.StreamMasterOrders()
    await call.write(stream_request(market_order(group_id, "1.00", client_order_id="b"), BASIC))
    await call.write(stream_request(market_order(group_id, "1.00", client_order_id="bad"), 9))
    await call.write(stream_request(market_order(group_id, "1.00", client_order_id="u")))
    await call.done_writing()
    messages = await read_to_end(call)
    assert await call.code() is grpc.StatusCode.OK

    answers = {m.client_order_id: m for m in messages if m.WhichOneof("event") != "update"}
    assert list(answers) == ["b", "bad", "u"]
    rejected = answers["bad"].rejected
    assert rejected.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert (rejected.reason, list(rejected.fields)) == ("INVALID_ARGUMENT", ["view"])
    basic, unset = answers["b"].accepted, answers["u"].accepted
    assert list(basic.allocation.lines) == [] and basic.allocation.allocated_volume == "1.00"
    assert basic.child_count == len(EQUITIES)
    assert len(unset.allocation.lines) == len(EQUITIES)

    # The master orders of each submission's events are in its view too.
    events: dict[str, list[order_pb2.MasterOrder]] = {"b": [], "u": []}
    for message in messages:
        if message.WhichOneof("event") == "update" and message.update.HasField("master_order"):
            events[message.client_order_id].append(message.update.master_order)
    assert events["b"] and events["u"]
    assert all(list(m.allocation.lines) == [] for m in events["b"])
    assert all(len(m.allocation.lines) == len(EQUITIES) for m in events["u"])
    assert events["b"][-1].state == order_pb2.MASTER_ORDER_STATE_FILLED
    stored = without_lines(await get(client, basic.master_order_id))
    stored.ClearField("children")  # events carry the master order without its children
    assert events["b"][-1] == stored
    assert {m.spec.client_order_id for m in await stored_orders(client)} == {"b", "u"}


@pytest.mark.parametrize("number", [3, 99, -1])
async def test_an_unknown_view_is_invalid_argument_on_view_and_stores_nothing(
    client: Client, gateway: RunningGateway, group_id: str, number: int
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.trading.SubmitMasterOrder(viewed(market_order(group_id), number))
    details = error_details(caught.value)
    assert (details.code, details.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert set(details.field_violations) == {"view"}
    assert "MASTER_ORDER_VIEW_BASIC" in details.field_violations["view"]
    assert await stored_orders(client) == []
    assert gateway.store.last_sequence == 0


async def test_an_unknown_view_is_reported_with_the_orders_own_bad_fields(
    client: Client, gateway: RunningGateway, group_id: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.trading.SubmitMasterOrder(viewed(market_order(group_id, volume="abc"), 5))
    assert set(error_details(caught.value).field_violations) == {"order.volume", "view"}
    assert await stored_orders(client) == []


async def test_get_and_list_refuse_an_unknown_view(
    client: Client, gateway: RunningGateway, group_id: str
) -> None:
    submitted = await client.trading.SubmitMasterOrder(market_order(group_id))
    calls = [
        client.trading.GetMasterOrder(
            trading_service_pb2.GetMasterOrderRequest(
                master_order_id=submitted.master_order.master_order_id,
                view=7,
            )
        ),
        client.trading.ListMasterOrders(trading_service_pb2.ListMasterOrdersRequest(view=7)),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        details = error_details(caught.value)
        assert details.code is grpc.StatusCode.INVALID_ARGUMENT
        assert set(details.field_violations) == {"view"}
    await gateway.engine.wait_idle()
