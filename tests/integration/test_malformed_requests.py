"""Input that used to end in INTERNAL, UNKNOWN or a refused trailer gets a clear status instead:
bytes that do not parse, times outside their documented ranges, Health/List, and errors that list
a thousand ids or violations. On SQLite only: none of this reaches the database."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway._proto.mam.v1 import (
    account_pb2,
    account_service_pb2,
    admin_service_pb2,
    reporting_service_pb2,
    trading_service_pb2,
    worker_service_pb2,
)
from gateway.api.errors import MAX_LISTED_VIOLATIONS, MAX_MESSAGE_BYTES
from gateway.api.server import SERVICE_NAMES, RunningGateway, start_gateway
from gateway.api.well_known_checks import MAX_TIMESTAMP_SECONDS
from gateway.config import WorkersConfig, WorkerToken
from tests.conftest import Client
from tests.integration.helpers import create_accounts, create_group, market_order
from tests.support import ErrorDetails, error_details, make_config

INVALID = grpc.StatusCode.INVALID_ARGUMENT
GARBAGE = b"\xff" * 20
WORKER_TOKEN = "malformed-requests-worker-token"
TIMESTAMP = "google.protobuf.Timestamp"


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    config = make_config(tmp_path)
    workers = WorkersConfig(enabled=True, tokens=(WorkerToken(WORKER_TOKEN),))
    running = await start_gateway(dataclasses.replace(config, workers=workers))
    try:
        yield running
    finally:
        await running.stop(0.5)


async def _raw_error(channel: grpc.aio.Channel, path: str, *payloads: bytes) -> ErrorDetails:
    """Sends the bytes as they are (no serializer) and returns the call's error; a streaming
    call is read to its end."""
    kind = _KINDS.get(path, "unary_unary")
    call: Any
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if kind == "unary_unary":
            await channel.unary_unary(path)(payloads[0], timeout=10)
        elif kind == "unary_stream":
            call = channel.unary_stream(path)(payloads[0], timeout=10)
            async for _ in call:
                pass
        else:
            call = channel.stream_stream(path)(iter(payloads), timeout=10)
            async for _ in call:
                pass
    return error_details(caught.value)


_KINDS = {
    "/mam.v1.AccountService/GetAccount": "unary_unary",
    "/mam.v1.TradingService/SubscribeFills": "unary_stream",
    "/mam.v1.TradingService/StreamMasterOrders": "stream_stream",
    "/mam.v1.WorkerService/Connect": "stream_stream",
}


@pytest.mark.parametrize("path", sorted(_KINDS))
async def test_bytes_that_do_not_parse_are_invalid_argument_on_every_kind_of_call(
    client: Client, path: str
) -> None:
    details = await _raw_error(client.channel, path, GARBAGE)
    assert details.code is INVALID, details
    assert details.reason == "MALFORMED_REQUEST"
    assert "20 bytes do not parse as mam.v1." in details.field_violations[""]
    # Still serving.
    await client.accounts.ListAccounts(account_service_pb2.ListAccountsRequest())


async def test_a_stream_message_that_does_not_parse_ends_the_stream_with_invalid_argument(
    client: Client,
) -> None:
    members = await create_accounts(client.accounts, ["10000", "20000"])
    group = await create_group(client.accounts, members)
    valid = trading_service_pb2.StreamMasterOrdersRequest(
        order=market_order(group.group_id, "0.10").order
    ).SerializeToString()
    details = await _raw_error(
        client.channel, "/mam.v1.TradingService/StreamMasterOrders", valid, GARBAGE
    )
    assert (details.code, details.reason) == (INVALID, "MALFORMED_REQUEST")


async def test_a_worker_message_that_does_not_parse_after_its_hello_is_invalid_argument(
    client: Client,
) -> None:
    # The servicer reads a worker's messages in a task of its own, which takes any exception
    # for a broken stream: the stream used to end without an error.
    hello = worker_service_pb2.ConnectRequest(
        hello=worker_service_pb2.WorkerHello(worker_id="w-garbage", token=WORKER_TOKEN)
    ).SerializeToString()
    details = await _raw_error(client.channel, "/mam.v1.WorkerService/Connect", hello, GARBAGE)
    assert (details.code, details.reason) == (INVALID, "MALFORMED_REQUEST")


async def test_bytes_that_do_not_parse_without_a_key_are_never_unknown(tmp_path: Path) -> None:
    running = await start_gateway(make_config(tmp_path, auth=True))
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            for path in (
                "/mam.v1.AccountService/GetAccount",
                "/mam.v1.TradingService/SubscribeFills",
            ):
                details = await _raw_error(channel, path, GARBAGE)
                assert details.code in {grpc.StatusCode.UNAUTHENTICATED, INVALID}, details
                assert details.reason in {"API_KEY_MISSING", "MALFORMED_REQUEST"}, details
    finally:
        await running.stop(0.5)


def _time_path(descriptor: pb_descriptor.Descriptor, prefix: str = "") -> str:
    """The first singular Timestamp field of a request type, by its path."""
    for field in descriptor.fields:
        if field.message_type is None or field.is_repeated:
            continue
        if field.message_type.full_name == TIMESTAMP:
            return prefix + field.name
        inner = _time_path(field.message_type, f"{prefix}{field.name}.")
        if inner:
            return inner
    return ""


def _with_time(descriptor: pb_descriptor.Descriptor, path: str, seconds: int, nanos: int) -> Any:
    request = message_factory.GetMessageClass(descriptor)()
    target = request
    for name in path.split("."):
        target = getattr(target, name)
    target.seconds, target.nanos = seconds, nanos
    return request


_TIMED_METHODS = (
    [
        trading_service_pb2.DESCRIPTOR.services_by_name["TradingService"].methods_by_name[name]
        for name in ("SubmitMasterOrder", "PreviewAllocation")
    ]
    + [
        admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].methods_by_name[
            "ListAuditRecords"
        ]
    ]
    + [
        reporting_service_pb2.DESCRIPTOR.services_by_name["ReportingService"].methods_by_name[name]
        for name in (
            "RecordBalanceOperation",
            "ListBalanceOperations",
            "ListAccountDeals",
            "GetAccountPerformance",
            "GetGroupPerformance",
            "UpdateFeeSchedule",
            "GetExecutionQuality",
        )
    ]
)


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(MAX_TIMESTAMP_SECONDS + 1, 0), (0, -1), (0, 1_000_000_000), (-(2**62), 0)],
    ids=["after-9999", "negative-nanos", "nanos-a-second", "before-year-1"],
)
@pytest.mark.parametrize("method", _TIMED_METHODS, ids=lambda m: m.name)
async def test_a_timestamp_out_of_range_is_invalid_argument_naming_its_field(
    client: Client, method: pb_descriptor.MethodDescriptor, seconds: int, nanos: int
) -> None:
    path = _time_path(method.input_type)
    assert path, method.full_name
    request = _with_time(method.input_type, path, seconds, nanos)
    rpc = f"/{method.containing_service.full_name}/{method.name}"
    details = await _raw_error(client.channel, rpc, request.SerializeToString())
    assert (details.code, details.reason) == (INVALID, "INVALID_TIME"), details
    assert list(details.field_violations) == [path]


async def test_a_submission_with_an_expiry_after_9999_is_refused_and_nothing_is_stored(
    client: Client,
) -> None:
    members = await create_accounts(client.accounts, ["10000", "20000"])
    group = await create_group(client.accounts, members)
    request = market_order(group.group_id)
    request.order.expire_time.seconds = MAX_TIMESTAMP_SECONDS + 1
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.trading.SubmitMasterOrder(request)
    details = error_details(caught.value)
    assert (details.code, details.reason) == (INVALID, "INVALID_TIME")
    assert "9999-12-31" in details.field_violations["order.expire_time"]
    listed = await client.trading.ListMasterOrders(trading_service_pb2.ListMasterOrdersRequest())
    assert list(listed.master_orders) == []
    # On a stream, the submission is refused as it is read.
    stream = client.trading.StreamMasterOrders(
        iter([trading_service_pb2.StreamMasterOrdersRequest(order=request.order)])
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stream:
            pass
    details = error_details(caught.value)
    assert (details.code, list(details.field_violations)) == (INVALID, ["order.expire_time"])


async def test_health_list_gives_every_registered_name_with_its_status(client: Client) -> None:
    health = health_pb2_grpc.HealthStub(client.channel)
    listed = await health.List(health_pb2.HealthListRequest())
    statuses = {name: response.status for name, response in listed.statuses.items()}
    serving = health_pb2.HealthCheckResponse.SERVING
    assert {name: statuses[name] for name in ("", *SERVICE_NAMES)} == dict.fromkeys(
        ("", *SERVICE_NAMES), serving
    )
    assert statuses["remote-terminals"] in {serving, health_pb2.HealthCheckResponse.NOT_SERVING}


def _unknown_ids(count: int) -> list[str]:
    return [f"acc-{i:06d}-unknown" for i in range(count)]


def _assert_cut_list_of_ids(details: ErrorDetails, count: int) -> None:
    assert (details.code, details.reason) == (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")
    message = details.message
    assert len(message.encode()) <= MAX_MESSAGE_BYTES
    shown = message.count("-unknown'")
    more = int(message.rsplit("… and ", 1)[1].removesuffix(" more").replace(",", ""))
    assert shown > 0 and shown + more == count


async def test_a_group_of_a_thousand_unknown_members_is_not_found_with_a_cut_message(
    client: Client,
) -> None:
    request = account_service_pb2.CreateGroupRequest(
        group=account_pb2.Group(
            name="many-unknown",
            allocation=account_pb2.AllocationSettings(method=account_pb2.ALLOCATION_METHOD_EQUITY),
            members=[account_pb2.GroupMember(account_id=a) for a in _unknown_ids(1_000)],
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.accounts.CreateGroup(request)
    _assert_cut_list_of_ids(error_details(caught.value), 1_000)


async def test_fills_of_a_thousand_unknown_accounts_are_not_found_with_a_cut_message(
    client: Client,
) -> None:
    stream = client.trading.SubscribeFills(
        trading_service_pb2.SubscribeFillsRequest(account_ids=_unknown_ids(1_000))
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stream:
            pass
    _assert_cut_list_of_ids(error_details(caught.value), 1_000)


async def test_a_thousand_field_violations_are_listed_up_to_the_budget_then_counted(
    client: Client,
) -> None:
    [member] = await create_accounts(client.accounts, ["10000"])
    request = account_service_pb2.CreateGroupRequest(
        group=account_pb2.Group(
            name="listed-twice",
            allocation=account_pb2.AllocationSettings(method=account_pb2.ALLOCATION_METHOD_EQUITY),
            members=[account_pb2.GroupMember(account_id=member.account_id)] * 1_001,
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.accounts.CreateGroup(request)
    details = error_details(caught.value)
    assert details.code is INVALID, details
    listed = len(details.field_violations) - 1  # the last one counts the rest
    assert 0 < listed <= MAX_LISTED_VIOLATIONS
    omitted = int(details.metadata["omitted_violations"])
    assert listed + omitted == 1_000
    assert details.field_violations[""] == f"{omitted:,} more field violations not listed"
    assert len(details.message.encode()) <= MAX_MESSAGE_BYTES
    # Still serving, and nothing was created.
    groups = await client.accounts.ListGroups(account_service_pb2.ListGroupsRequest())
    assert list(groups.groups) == []


async def test_a_worker_heartbeat_with_an_impossible_time_does_not_end_its_stream(
    client: Client,
) -> None:
    # WorkerService.Connect decodes its messages' times itself (a result whose time does not
    # read fails its one command): a refusal would end the worker and all its terminals.
    messages = [
        worker_service_pb2.ConnectRequest(
            hello=worker_service_pb2.WorkerHello(worker_id="w-times", token=WORKER_TOKEN)
        ),
        worker_service_pb2.ConnectRequest(heartbeat=worker_service_pb2.Heartbeat()),
    ]
    messages[1].heartbeat.time.nanos = -1
    call = client.channel.stream_stream("/mam.v1.WorkerService/Connect")(
        iter([m.SerializeToString() for m in messages]), timeout=10
    )
    answers = [worker_service_pb2.ConnectResponse.FromString(raw) async for raw in call]
    assert answers[0].WhichOneof("message") == "welcome"
    assert await call.code() is grpc.StatusCode.OK
