"""What one request can make the gateway hold: its size, its repeated fields, and how long a
refused request stays in memory (issue 19, item 3).

tests/abuse/ measures the same on a gateway subprocess's resident memory; these pin each limit
on a gateway in this process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from gateway._proto.mam.v1 import (
    account_pb2,
    account_service_pb2,
    common_pb2,
    trading_service_pb2,
)
from gateway.api.server import RunningGateway, start_gateway
from tests.support import error_details, make_config, until

CREATE_GROUP = "/mam.v1.AccountService/CreateGroup"
CREATE_ACCOUNT = "/mam.v1.AccountService/CreateAccount"
SUBSCRIBE_FILLS = "/mam.v1.TradingService/SubscribeFills"
MIB = 1024 * 1024


@dataclasses.dataclass
class Gateway:
    running: RunningGateway
    channel: grpc.aio.Channel
    admin: tuple[tuple[str, str], ...]

    async def unary(
        self, method: str, body: bytes, metadata: tuple[tuple[str, str], ...] = ()
    ) -> grpc.aio.AioRpcError:
        """The error a unary call with these raw bytes gets (it must fail)."""
        call = self.channel.unary_unary(method)  # bytes in, bytes out: no message kept here
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(body, metadata=metadata, timeout=30)
        return refused.value

    async def first_message_error(
        self, method: str, body: bytes, metadata: tuple[tuple[str, str], ...] = ()
    ) -> grpc.aio.AioRpcError:
        call = self.channel.unary_stream(method)(body, metadata=metadata, timeout=30)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call.read()
        return refused.value


async def _started(tmp_path: Path, *, auth: bool, max_repeated_items: int = 0) -> Gateway:
    config = make_config(tmp_path, auth=auth)
    if max_repeated_items:
        config = dataclasses.replace(
            config,
            server=dataclasses.replace(config.server, max_repeated_items=max_repeated_items),
        )
    running = await start_gateway(config)
    admin: tuple[tuple[str, str], ...] = ()
    if auth:
        admin = (("authorization", f"Bearer {(tmp_path / 'admin.key').read_text().strip()}"),)
    # Large requests go out whole: the client's own limits are not what is tested.
    channel = grpc.aio.insecure_channel(
        running.address, options=[("grpc.max_send_message_length", 64 * MIB)]
    )
    return Gateway(running, channel, admin)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    started = await _started(tmp_path, auth=True)
    try:
        yield started
    finally:
        await started.channel.close()
        await started.running.stop(0.5)


async def test_a_call_without_a_valid_key_is_refused_before_its_request_is_read(
    gateway: Gateway,
) -> None:
    unknown_key = (("authorization", "Bearer mam_0123456789abcdef_" + "A" * 43),)
    not_a_message = b"\xff\xff\xff\xff"
    above_any_limit = account_service_pb2.CreateGroupRequest(
        group=account_pb2.Group(name="x" * (17 * MIB))
    ).SerializeToString()
    for metadata, reason in (((), "API_KEY_MISSING"), (unknown_key, "API_KEY_INVALID")):
        for body in (not_a_message, above_any_limit):
            refused = await gateway.unary(CREATE_GROUP, body, metadata)
            # Not MALFORMED_REQUEST, not gRPC's RESOURCE_EXHAUSTED: the body was never read.
            assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
            assert error_details(refused).reason == reason
    # The same bytes with a valid key are read, and refused for what they are.
    malformed = await gateway.unary(CREATE_GROUP, not_a_message, gateway.admin)
    assert error_details(malformed).reason == "MALFORMED_REQUEST"
    too_big = await gateway.unary(CREATE_GROUP, above_any_limit, gateway.admin)
    assert too_big.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_request_above_4_mib_is_refused_by_default(gateway: Gateway) -> None:
    def account_named(size: int) -> bytes:
        return account_service_pb2.CreateAccountRequest(
            account=account_pb2.Account(name="x" * size, platform=common_pb2.PLATFORM_MT5)
        ).SerializeToString()

    too_big = await gateway.unary(CREATE_ACCOUNT, account_named(5 * MIB), gateway.admin)
    assert too_big.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    read = await gateway.unary(CREATE_ACCOUNT, account_named(3 * MIB), gateway.admin)
    assert read.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "account.name" in error_details(read).field_violations


async def test_a_repeated_field_above_5000_items_is_refused_naming_the_field(
    gateway: Gateway,
) -> None:
    ids = [f"ac_{i:024x}" for i in range(5_001)]
    fills = trading_service_pb2.SubscribeFillsRequest(account_ids=ids).SerializeToString()
    refused = await gateway.first_message_error(SUBSCRIBE_FILLS, fills, gateway.admin)
    details = error_details(refused)
    assert (details.code, details.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "TOO_MANY_ITEMS")
    assert details.field_violations == {"account_ids": "at most 5,000 items, got 5,001"}
    group = account_service_pb2.CreateGroupRequest(
        group=account_pb2.Group(
            name="big", members=[account_pb2.GroupMember(account_id=i) for i in ids]
        )
    ).SerializeToString()
    refused = await gateway.unary(CREATE_GROUP, group, gateway.admin)
    assert error_details(refused).reason == "TOO_MANY_ITEMS"
    assert set(error_details(refused).field_violations) == {"group.members"}


async def test_the_repeated_field_limit_is_the_configured_one(tmp_path: Path) -> None:
    started = await _started(tmp_path, auth=False, max_repeated_items=3)
    try:
        for count, reason in ((3, "ACCOUNT_NOT_FOUND"), (4, "TOO_MANY_ITEMS")):
            request = trading_service_pb2.SubscribeFillsRequest(
                account_ids=[f"ac_{i:024x}" for i in range(count)]
            )
            refused = await started.first_message_error(
                SUBSCRIBE_FILLS, request.SerializeToString()
            )
            assert error_details(refused).reason == reason
    finally:
        await started.channel.close()
        await started.running.stop(0.5)


@pytest.fixture
def collector_off() -> Iterator[None]:
    """Only reference counting frees memory here: what a cycle holds stays."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@pytest.mark.parametrize("auth", [True, False], ids=["authenticated", "authentication-off"])
@pytest.mark.usefixtures("collector_off")
async def test_a_refused_request_is_freed_when_its_call_ends(tmp_path: Path, auth: bool) -> None:
    started = await _started(tmp_path, auth=auth)
    name_length = 300_001  # refused: names are at most 200 characters
    body = account_service_pb2.CreateAccountRequest(
        account=account_pb2.Account(name="n" * name_length, platform=common_pb2.PLATFORM_MT5)
    ).SerializeToString()
    try:
        for _ in range(3):
            refused = await started.unary(CREATE_ACCOUNT, body, started.admin)
            assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT

        async def all_freed() -> bool:
            await asyncio.sleep(0)
            return not any(
                isinstance(o, account_service_pb2.CreateAccountRequest)
                and len(o.account.name) == name_length
                for o in gc.get_objects()
            )

        await until(all_freed, timeout_s=3.0, every_s=0.2)
    finally:
        await started.channel.close()
        await started.running.stop(0.5)
