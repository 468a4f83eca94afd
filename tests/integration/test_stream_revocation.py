"""A revoked key's open streams end at once, and an open stream stops showing an account the
moment that account leaves its key's reach (issue 19).

Found before: a SubscribeFills opened before RevokeApiKey delivered every fill of orders
submitted after the revocation, until the client's own deadline. Group A holds a1, a2 and a3,
group C holds a2 alone (so that a2 still trades once it has left A). The "manager" and "other"
keys are both managers of group A; only the manager's key is revoked or loses reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from gateway._proto.mam.v1 import (
    account_pb2,
    account_service_pb2,
    account_service_pb2_grpc,
    admin_service_pb2,
    admin_service_pb2_grpc,
    order_pb2,
    trading_service_pb2,
    trading_service_pb2_grpc,
)
from gateway.api.server import RunningGateway, start_gateway
from tests.integration.helpers import create_accounts, create_group, market_order
from tests.support import DEMO_CONFIG, ROOT, KeyedStub, error_details, make_config

# Ended "at once": well within this, on a loaded test machine.
AT_ONCE_S = 1.0


@dataclass
class Desk:
    gateway: RunningGateway
    channel: grpc.aio.Channel
    keys: dict[str, str]
    group_a: str
    group_c: str
    a1: str
    a2: str
    a3: str

    def metadata(self, who: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.keys[who]}"),)

    def key_id(self, who: str) -> str:
        return self.keys[who].split("_")[1]

    @property
    def trading(self) -> trading_service_pb2_grpc.TradingServiceStub:
        return trading_service_pb2_grpc.TradingServiceStub(self.channel)

    @property
    def accounts(self) -> account_service_pb2_grpc.AccountServiceStub:
        return account_service_pb2_grpc.AccountServiceStub(self.channel)

    @property
    def admin(self) -> admin_service_pb2_grpc.AdminServiceStub:
        return admin_service_pb2_grpc.AdminServiceStub(self.channel)

    async def live_fills(self, who: str, *account_ids: str) -> Any:
        """A live SubscribeFills of `who`, read up to its first heartbeat: it is live."""
        call = self.trading.SubscribeFills(
            trading_service_pb2.SubscribeFillsRequest(account_ids=account_ids, live_only=True),
            metadata=self.metadata(who),
        )
        first = await call.read()
        assert not first.HasField("batch"), first
        return call

    async def stop_out_watch(self, who: str, **subject: str) -> Any:
        """A WatchStopOuts of `who`, read up to its first heartbeat."""
        call = self.accounts.WatchStopOuts(
            account_service_pb2.WatchStopOutsRequest(**subject), metadata=self.metadata(who)
        )
        first = await call.read()
        assert first.HasField("heartbeat_time"), first
        return call

    async def submit(self, group_id: str) -> str:
        response = await self.trading.SubmitMasterOrder(
            market_order(group_id, "0.30"), metadata=self.metadata("admin")
        )
        return str(response.master_order.master_order_id)

    async def revoke(self, who: str) -> None:
        await self.admin.RevokeApiKey(
            admin_service_pb2.RevokeApiKeyRequest(key_id=self.key_id(who)),
            metadata=self.metadata("admin"),
        )

    async def set_group_a(self, *members: str) -> None:
        await self.accounts.UpdateGroup(
            account_service_pb2.UpdateGroupRequest(
                group=account_pb2.Group(
                    group_id=self.group_a,
                    members=[account_pb2.GroupMember(account_id=a) for a in members],
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["members"]),
            ),
            metadata=self.metadata("admin"),
        )


@contextlib.asynccontextmanager
async def open_desk(tmp_path: Path, *, stream_recheck_s: float = 5.0) -> AsyncIterator[Desk]:
    config = make_config(tmp_path, auth=True)
    config = dataclasses.replace(
        config, auth=dataclasses.replace(config.auth, stream_recheck_seconds=stream_recheck_s)
    )
    running = await start_gateway(config)
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            keys = {"admin": (tmp_path / "admin.key").read_text().strip()}
            admin = (("authorization", f"Bearer {keys['admin']}"),)
            accounts = account_service_pb2_grpc.AccountServiceStub(channel)
            bound = KeyedStub(accounts, admin)
            a1, a2, a3 = await create_accounts(bound, ["10000", "20000", "30000"])
            group_a = await create_group(bound, [a1, a2, a3], name="A")
            group_c = await create_group(bound, [a2], name="C")
            admin_stub = admin_service_pb2_grpc.AdminServiceStub(channel)
            for who in ("manager", "other"):
                created = await admin_stub.CreateApiKey(
                    admin_service_pb2.CreateApiKeyRequest(
                        api_key=admin_service_pb2.ApiKey(
                            name=who,
                            role=admin_service_pb2.ROLE_MANAGER,
                            group_ids=[group_a.group_id],
                        )
                    ),
                    metadata=admin,
                )
                keys[who] = created.key
            yield Desk(
                running,
                channel,
                keys,
                group_a.group_id,
                group_c.group_id,
                a1.account_id,
                a2.account_id,
                a3.account_id,
            )
    finally:
        await running.stop(0.5)


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    async with open_desk(tmp_path) as opened:
        yield opened


async def status_within(call: Any, seconds: float) -> tuple[grpc.aio.AioRpcError, list[Any]]:
    """The status `call` ends with, read within `seconds`, and what it delivered before it."""
    received: list[Any] = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                try:
                    message = await call.read()
                except grpc.aio.AioRpcError as error:
                    return error, received
                assert message is not grpc.aio.EOF, "the stream ended without a status"
                received.append(message)
    except TimeoutError:
        call.cancel()
        pytest.fail(f"the stream was still open {seconds} s later, having sent {received}")


def assert_refused(error: grpc.aio.AioRpcError, code: grpc.StatusCode, reason: str) -> None:
    details = error_details(error)
    assert (details.code, details.reason) == (code, reason), details


async def fills_until(
    call: Any, master_order_id: str, timeout_s: float = 10.0
) -> list[order_pb2.Fill]:
    """Every fill `call` delivers up to and including the first of `master_order_id`."""
    fills: list[order_pb2.Fill] = []
    async with asyncio.timeout(timeout_s):
        while not any(f.master_order_id == master_order_id for f in fills):
            message = await call.read()
            assert message is not grpc.aio.EOF
            fills.extend(message.batch.fills)
    return fills


async def test_revoking_a_key_ends_its_fill_streams_at_once_and_leaves_others_open(
    desk: Desk,
) -> None:
    revoked = await desk.live_fills("manager")
    other = await desk.live_fills("other")
    await desk.revoke("manager")
    order = await desk.submit(desk.group_a)
    error, received = await status_within(revoked, AT_ONCE_S)
    assert_refused(error, grpc.StatusCode.UNAUTHENTICATED, "API_KEY_REVOKED")
    assert [f for m in received for f in m.batch.fills] == []
    # Another key's stream on the same group goes on, and gets the order's fills.
    assert {f.master_order_id for f in await fills_until(other, order)} == {order}
    # The revoked stream's live buffer was freed with it: the other stream's is the only one.
    assert desk.gateway.bus.subscriber_count == 1
    other.cancel()


async def test_revoking_a_key_ends_its_submission_stream_at_once(desk: Desk) -> None:
    call = desk.trading.StreamMasterOrders(metadata=desk.metadata("manager"))
    await call.write(
        trading_service_pb2.StreamMasterOrdersRequest(order=market_order(desk.group_a).order)
    )
    acknowledgement = await call.read()
    assert acknowledgement.HasField("accepted"), acknowledgement
    # Not half-closed: the stream would stay open, taking submissions, until the deadline.
    await desk.revoke("manager")
    error, _ = await status_within(call, AT_ONCE_S)
    assert_refused(error, grpc.StatusCode.UNAUTHENTICATED, "API_KEY_REVOKED")


async def test_revoking_a_key_ends_its_stop_out_watch_at_once(desk: Desk) -> None:
    revoked = await desk.stop_out_watch("manager", group_id=desk.group_a)
    other = await desk.stop_out_watch("other", group_id=desk.group_a)
    await desk.revoke("manager")
    error, _ = await status_within(revoked, AT_ONCE_S)
    assert_refused(error, grpc.StatusCode.UNAUTHENTICATED, "API_KEY_REVOKED")
    heartbeat = await asyncio.wait_for(other.read(), 5.0)
    assert heartbeat.HasField("heartbeat_time")
    other.cancel()


async def test_a_member_removed_from_a_managers_group_leaves_its_open_fill_stream(
    desk: Desk,
) -> None:
    everything = await desk.live_fills("manager")  # no filter: every account the key reaches
    await desk.set_group_a(desk.a1, desk.a3)
    # a2 still trades, in group C, which this key never reached.
    outside = await desk.submit(desk.group_c)
    await desk.gateway.engine.wait_idle()
    inside = await desk.submit(desk.group_a)
    fills = await fills_until(everything, inside)
    assert {f.account_id for f in fills} <= {desk.a1, desk.a3}
    assert outside not in {f.master_order_id for f in fills}
    everything.cancel()


async def test_a_fill_stream_naming_a_removed_member_ends_with_permission_denied(
    desk: Desk,
) -> None:
    named = await desk.live_fills("manager", desk.a2)
    kept = await desk.live_fills("manager", desk.a1)
    await desk.set_group_a(desk.a1, desk.a3)
    error, _ = await status_within(named, AT_ONCE_S)
    assert_refused(error, grpc.StatusCode.PERMISSION_DENIED, "ACCESS_SCOPE_CHANGED")
    # The same key's stream of an account it still reaches goes on.
    order = await desk.submit(desk.group_a)
    assert {f.account_id for f in await fills_until(kept, order)} == {desk.a1}
    kept.cancel()


async def test_deleting_an_account_ends_the_streams_that_name_it(desk: Desk) -> None:
    fills = await desk.live_fills("manager", desk.a3)
    watch = await desk.stop_out_watch("manager", account_id=desk.a3)
    await desk.accounts.DeleteAccount(
        account_service_pb2.DeleteAccountRequest(account_id=desk.a3),
        metadata=desk.metadata("admin"),
    )
    for call in (fills, watch):
        error, _ = await status_within(call, AT_ONCE_S)
        assert_refused(error, grpc.StatusCode.PERMISSION_DENIED, "ACCESS_SCOPE_CHANGED")


async def test_a_key_revoked_straight_in_the_database_ends_its_streams_at_the_next_recheck(
    tmp_path: Path,
) -> None:
    async with open_desk(tmp_path, stream_recheck_s=0.2) as desk:
        fills = await desk.live_fills("manager")
        watch = await desk.stop_out_watch("manager", group_id=desk.group_a)
        other = await desk.live_fills("other")
        cli = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "--config",
            str(DEMO_CONFIG),
            "keys",
            "revoke",
            desk.key_id("manager"),
            cwd=ROOT,
            env={**os.environ, "MAM__DATABASE__URL": desk.gateway.config.database_url},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await cli.communicate()
        assert cli.returncode == 0, err.decode()
        assert f"revoked {desk.key_id('manager')}" in out.decode()
        # Ended within the re-check period (0.2 s) and a little scheduling.
        for call in (fills, watch):
            error, _ = await status_within(call, 2.0)
            assert_refused(error, grpc.StatusCode.UNAUTHENTICATED, "API_KEY_REVOKED")
        # New calls with the key are refused from then on too, not after the key cache's 60 s.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await desk.accounts.GetGroup(
                account_service_pb2.GetGroupRequest(group_id=desk.group_a),
                metadata=desk.metadata("manager"),
            )
        assert_refused(refused.value, grpc.StatusCode.UNAUTHENTICATED, "API_KEY_REVOKED")
        order = await desk.submit(desk.group_a)
        assert {f.master_order_id for f in await fills_until(other, order)} == {order}
        other.cancel()
