"""StreamMasterOrders: many submissions on one stream, each acknowledged and followed to its end."""

from __future__ import annotations

import asyncio
import gc
import inspect
from collections import defaultdict

import grpc

from gateway._proto.mam.v1 import order_pb2, trading_service_pb2
from gateway.api.server import RunningGateway
from gateway.api.trading_servicer import TradingServicer
from tests.conftest import Client
from tests.integration.helpers import create_accounts, create_group, market_order

FINAL = {
    order_pb2.MASTER_ORDER_STATE_FILLED,
    order_pb2.MASTER_ORDER_STATE_PARTIALLY_FILLED,
    order_pb2.MASTER_ORDER_STATE_REJECTED,
    order_pb2.MASTER_ORDER_STATE_CANCELLED,
    order_pb2.MASTER_ORDER_STATE_FAILED,
}


def request(order: trading_service_pb2.SubmitMasterOrderRequest):
    return trading_service_pb2.StreamMasterOrdersRequest(order=order.order)


async def read_to_end(
    call, timeout_s: float = 30
) -> list[trading_service_pb2.StreamMasterOrdersResponse]:
    messages = []
    async with asyncio.timeout(timeout_s):
        while (message := await call.read()) is not grpc.aio.EOF:
            messages.append(message)
    return messages


async def test_each_submission_is_acknowledged_then_followed_to_its_final_state(
    client: Client, gateway: RunningGateway
) -> None:
    accounts = await create_accounts(client.accounts, ["10000", "20000", "30000", "40000"])
    group = await create_group(client.accounts, accounts)
    orders = [market_order(group.group_id, "0.50", client_order_id=f"s-{n}") for n in range(3)]
    bad = market_order(group.group_id, "0.005", client_order_id="s-bad")
    call = client.trading.StreamMasterOrders()
    for order in (orders[0], bad, orders[1], orders[2]):
        await call.write(request(order))
    await call.done_writing()
    messages = await read_to_end(call)  # the stream ends by itself once all are final
    assert await call.code() is grpc.StatusCode.OK

    answers = [m for m in messages if m.WhichOneof("event") in ("accepted", "rejected")]
    assert [m.client_order_id for m in answers] == ["s-0", "s-bad", "s-1", "s-2"]
    rejected = answers[1].rejected
    assert rejected.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert rejected.reason == "INVALID_VOLUME" and list(rejected.fields) == ["order.volume"]

    ids = {
        m.client_order_id: m.accepted.master_order_id for m in answers if m.accepted.master_order_id
    }
    child_states: dict[str, list[int]] = defaultdict(list)
    final_events = {}
    for position, message in enumerate(messages):
        if message.WhichOneof("event") != "update":
            continue
        event = message.update
        master_order_id = event.master_order_id
        ack = next(
            i for i, m in enumerate(messages) if m.accepted.master_order_id == master_order_id
        )
        assert ack < position, "an order's events come after its acknowledgement"
        assert message.client_order_id == next(k for k, v in ids.items() if v == master_order_id)
        for child in event.children:
            child_states[child.child_order_id].append(child.state)
        if event.state in FINAL:
            assert master_order_id not in final_events, "one final event per order"
            final_events[master_order_id] = event
    assert set(final_events) == set(ids.values())
    for event in final_events.values():
        assert event.state == order_pb2.MASTER_ORDER_STATE_FILLED
        assert event.master_order.filled_volume == "0.50"
    for master_order_id in ids.values():
        stored = await client.trading.GetMasterOrder(
            trading_service_pb2.GetMasterOrderRequest(master_order_id=master_order_id)
        )
        for child in stored.master_order.children:
            # Every state of every child, in order.
            assert child_states[child.child_order_id] == [
                order_pb2.CHILD_ORDER_STATE_SENT,
                order_pb2.CHILD_ORDER_STATE_FILLED,
            ]


async def test_a_reader_that_falls_behind_still_gets_every_latest_state(
    client: Client, gateway: RunningGateway
) -> None:
    gateway.recorder.updates.max_pending = 5  # any larger batch of changes overflows
    accounts = await create_accounts(client.accounts, [str(5000 + 100 * i) for i in range(40)])
    group = await create_group(client.accounts, accounts)
    call = client.trading.StreamMasterOrders()
    await call.write(request(market_order(group.group_id, "2.00", client_order_id="slow-1")))
    await call.done_writing()
    await gateway.engine.wait_idle()  # everything happened before the first read
    messages = await read_to_end(call)
    assert messages[0].WhichOneof("event") == "accepted"
    master_order_id = messages[0].accepted.master_order_id
    latest: dict[str, int] = {}
    for message in messages[1:]:
        for child in message.update.children:
            latest[child.child_order_id] = child.state
    assert len(latest) == messages[0].accepted.child_count
    assert set(latest.values()) == {order_pb2.CHILD_ORDER_STATE_FILLED}
    assert messages[-1].update.state == order_pb2.MASTER_ORDER_STATE_FILLED
    assert messages[-1].update.master_order_id == master_order_id
    assert gateway.recorder.updates.follower_count == 0
    assert gateway.recorder.updates.overflows >= 1, "nothing overflowed: nothing was tested"


async def test_a_resubmission_on_a_stream_returns_the_original_order(
    client: Client, gateway: RunningGateway
) -> None:
    accounts = await create_accounts(client.accounts, ["10000", "20000"])
    group = await create_group(client.accounts, accounts)
    order = market_order(group.group_id, "0.30", client_order_id="again")
    first = await client.trading.SubmitMasterOrder(order)
    await gateway.engine.wait_idle()
    call = client.trading.StreamMasterOrders()
    await call.write(request(order))
    await call.done_writing()
    messages = await read_to_end(call)
    assert len(messages) == 1  # already final: the acknowledgement says it all
    assert messages[0].accepted.master_order_id == first.master_order.master_order_id
    assert messages[0].accepted.state == order_pb2.MASTER_ORDER_STATE_FILLED


def bookkeeping_of_open_streams() -> list[dict[str, int]]:
    """The size of each dict every running StreamMasterOrders call holds, by its name: what a
    stream keeps per order has no outward sign but the memory it holds."""
    return [
        {
            name: len(value)
            for name, value in call.ag_frame.f_locals.items()
            if isinstance(value, dict)
        }
        for call in gc.get_objects()
        if inspect.isasyncgen(call)
        and call.ag_code is TradingServicer.StreamMasterOrders.__code__
        and call.ag_frame is not None
    ]


async def test_a_long_stream_keeps_nothing_of_the_orders_that_reached_their_final_state(
    client: Client, gateway: RunningGateway
) -> None:
    accounts = await create_accounts(client.accounts, ["10000", "20000"])
    group = await create_group(client.accounts, accounts)
    done_before = market_order(group.group_id, "0.30", client_order_id="done-before")
    await client.trading.SubmitMasterOrder(done_before)
    await gateway.engine.wait_idle()
    orders = [market_order(group.group_id, "0.10", client_order_id=f"long-{n}") for n in range(40)]
    call = client.trading.StreamMasterOrders()
    await call.write(request(done_before))  # acknowledged final: never followed
    for order in orders:
        await call.write(request(order))
    final: set[str] = set()
    async with asyncio.timeout(60):
        while len(final) < len(orders):
            message = await call.read()
            if message.WhichOneof("event") == "update" and message.update.state in FINAL:
                final.add(message.client_order_id)
        # Answered in turn after every final event above was sent and the stream went on.
        await call.write(request(market_order(group.group_id, "0.005", client_order_id="bad")))
        while (message := await call.read()).WhichOneof("event") != "rejected":
            pass
    assert final == {o.order.client_order_id for o in orders}

    [kept] = bookkeeping_of_open_streams()
    assert kept, "no bookkeeping found: nothing was tested"
    assert not any(kept.values()), f"entries kept per finished order: {kept}"

    await call.done_writing()
    assert await read_to_end(call) == []
    assert await call.code() is grpc.StatusCode.OK
