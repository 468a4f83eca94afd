"""Mirroring through the API: a group's source set, changed by field mask and removed
(SetGroupSource, RemoveGroupSource, the group's `source`), each bad request refused with its
reason and field, who may do it, and the signals of a source that trades, listed and streamed;
on both databases.

Group A holds m1 and m2; s is an account of no group; group B holds b1; group C holds c1. The
manager key reaches groups A and C (so c1 is an account it may name), the other manager group B
only, the investor m1.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from gateway._proto.mam.v1 import (
    account_pb2,
    account_service_pb2,
    admin_service_pb2,
    admin_service_pb2_grpc,
    signal_pb2,
    trading_service_pb2,
)
from gateway.api.server import RunningGateway, start_gateway
from gateway.config import SourcesConfig
from gateway.domain.orders import Side
from gateway.terminals.protocol import OrderRequest, TradeAction
from tests.conftest import Client, client_of
from tests.integration.helpers import create_accounts, create_group
from tests.support import KeyedStub, error_details, make_config

D = Decimal
SET = "/mam.v1.AccountService/SetGroupSource"
REMOVE = "/mam.v1.AccountService/RemoveGroupSource"


@dataclass
class Desk:
    gateway: RunningGateway
    client: Client
    keys: dict[str, tuple[tuple[str, str], ...]]
    group_a: str
    group_b: str
    group_c: str
    m1: str
    m2: str
    s: str
    b1: str
    c1: str

    def accounts(self, who: str = "admin") -> Any:
        return KeyedStub(self.client.accounts, self.keys[who])

    def trading(self, who: str = "admin") -> Any:
        return KeyedStub(self.client.trading, self.keys[who])

    async def set_source(
        self, who: str = "admin", *, paths: tuple[str, ...] = (), **fields: Any
    ) -> account_pb2.Group:
        group_id = fields.pop("group_id", self.group_a)
        request = account_service_pb2.SetGroupSourceRequest(
            group_id=group_id,
            source=account_pb2.GroupSource(**fields),
            update_mask={"paths": list(paths)},
        )
        response = await self.accounts(who).SetGroupSource(request)
        return response.group

    async def group(self, group_id: str = "") -> account_pb2.Group:
        response = await self.accounts().GetGroup(
            account_service_pb2.GetGroupRequest(group_id=group_id or self.group_a)
        )
        return response.group

    async def trade_at_source(self, request: OrderRequest) -> int:
        """A trade the manager makes by hand at the source account's own terminal."""
        terminal = self.gateway.registry.get(self.s)
        assert terminal is not None
        result = await terminal.send(request)
        assert result.retcode in (10008, 10009), result
        return result.order_ticket or result.position_ticket


def seconds(value: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromTimedelta(timedelta(seconds=value))
    return duration


@pytest.fixture
async def desk(tmp_path: Path, database_url: str) -> AsyncIterator[Desk]:
    config = make_config(tmp_path, database_url=database_url, auth=True)
    config = dataclasses.replace(
        config, sources=SourcesConfig(look_interval_seconds=0.05, look_timeout_seconds=5)
    )
    running = await start_gateway(config)
    admin = (("authorization", f"Bearer {(tmp_path / 'admin.key').read_text().strip()}"),)
    try:
        async with client_of(running) as client:
            accounts = KeyedStub(client.accounts, admin)
            m1, m2, s, b1, c1 = await create_accounts(
                accounts,  # type: ignore[arg-type]
                ["20000", "40000", "100000", "30000", "10000"],
            )
            group_a = await create_group(accounts, [m1, m2], name="A")  # type: ignore[arg-type]
            group_b = await create_group(accounts, [b1], name="B")  # type: ignore[arg-type]
            group_c = await create_group(accounts, [c1], name="C")  # type: ignore[arg-type]
            keys = {"admin": admin}
            admin_stub = admin_service_pb2_grpc.AdminServiceStub(client.channel)
            for who, role, scope in (
                (
                    "manager",
                    admin_service_pb2.ROLE_MANAGER,
                    {"group_ids": [group_a.group_id, group_c.group_id]},
                ),
                ("manager_b", admin_service_pb2.ROLE_MANAGER, {"group_ids": [group_b.group_id]}),
                ("investor", admin_service_pb2.ROLE_INVESTOR, {"account_ids": [m1.account_id]}),
            ):
                created = await admin_stub.CreateApiKey(
                    admin_service_pb2.CreateApiKeyRequest(
                        api_key=admin_service_pb2.ApiKey(name=who, role=role, **scope)
                    ),
                    metadata=admin,
                )
                keys[who] = (("authorization", f"Bearer {created.key}"),)
            yield Desk(
                running,
                client,
                keys,
                group_a.group_id,
                group_b.group_id,
                group_c.group_id,
                m1.account_id,
                m2.account_id,
                s.account_id,
                b1.account_id,
                c1.account_id,
            )
    finally:
        await running.stop(0.5)


async def refused(call: Any) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return error_details(caught.value)


async def test_a_source_is_set_changed_by_field_mask_and_removed(desk: Desk) -> None:
    # No mask on a group without a source: the source as given.
    group = await desk.set_source(account_id=desk.s, max_signal_age=seconds(30))
    source = group.source
    assert group.group_id == desk.group_a and group.HasField("source")
    assert (source.account_id, source.paused) == (desk.s, False)
    assert source.max_signal_age.ToTimedelta() == timedelta(seconds=30)
    assert source.create_time.seconds > 0 and source.update_time.seconds > 0
    assert [m.account_id for m in group.members] == [desk.m1, desk.m2]
    # Read back by GetGroup and ListGroups; group B has none.
    assert (await desk.group()).source == source
    listed = await desk.accounts().ListGroups(account_service_pb2.ListGroupsRequest())
    by_id = {g.group_id: g for g in listed.groups}
    assert by_id[desk.group_a].source == source
    assert not by_id[desk.group_b].HasField("source")

    # A mask changes only what it names.
    paused = await desk.set_source(paths=("paused",), paused=True)
    assert (paused.source.account_id, paused.source.paused) == (desk.s, True)
    assert paused.source.max_signal_age.ToTimedelta() == timedelta(seconds=30)
    assert paused.source.create_time == source.create_time
    # A masked field left unset goes back to its default (60 s).
    reset = await desk.set_source(paths=("max_signal_age",))
    assert reset.source.max_signal_age.ToTimedelta() == timedelta(seconds=60)
    assert reset.source.paused
    assert (await desk.group()).source == reset.source

    # Removed: the group answers without a source; removing again is harmless.
    removed = await desk.accounts().RemoveGroupSource(
        account_service_pb2.RemoveGroupSourceRequest(group_id=desk.group_a)
    )
    assert removed.group.group_id == desk.group_a and not removed.group.HasField("source")
    assert not (await desk.group()).HasField("source")
    again = await desk.accounts().RemoveGroupSource(
        account_service_pb2.RemoveGroupSourceRequest(group_id=desk.group_a)
    )
    assert not again.group.HasField("source")

    # Each set and remove is on the audit record, with the group it changed.
    records = []
    for method in (SET, REMOVE):
        response = await KeyedStub(
            admin_service_pb2_grpc.AdminServiceStub(desk.client.channel), desk.keys["admin"]
        ).ListAuditRecords(admin_service_pb2.ListAuditRecordsRequest(method=method))
        records += list(response.records)
    assert sorted((r.method, r.status) for r in records) == [
        (REMOVE, "OK"),
        (REMOVE, "OK"),
        (SET, "OK"),
        (SET, "OK"),
        (SET, "OK"),
    ]
    assert all(f"group_id={desk.group_a}" in r.result for r in records)
    assert any(desk.s in r.request for r in records if r.method == SET)


async def test_each_bad_source_is_refused_with_its_reason_and_field(desk: Desk) -> None:
    deleted = (await create_accounts(desk.accounts(), ["5000"], prefix="gone", first_login=78001))[
        0
    ].account_id
    await desk.accounts().DeleteAccount(
        account_service_pb2.DeleteAccountRequest(account_id=deleted)
    )
    invalid = [
        # (fields, mask, reason, field path)
        ({}, (), "INVALID_ARGUMENT", "source.account_id"),
        ({"paused": True}, ("paused",), "INVALID_ARGUMENT", "source.account_id"),
        ({"account_id": desk.s}, ("account_id", "name"), "INVALID_ARGUMENT", "update_mask.paths"),
        (
            {"account_id": desk.s, "max_signal_age": seconds(0)},
            (),
            "INVALID_ARGUMENT",
            "source.max_signal_age",
        ),
        (
            {"account_id": desk.s, "max_signal_age": seconds(-5)},
            (),
            "INVALID_ARGUMENT",
            "source.max_signal_age",
        ),
        (
            {"account_id": desk.s, "max_signal_age": seconds(2 * 86_400)},
            (),
            "INVALID_ARGUMENT",
            "source.max_signal_age",
        ),
        ({"account_id": desk.m1}, (), "SOURCE_IS_MEMBER", "source.account_id"),
        ({"account_id": desk.m2}, ("account_id",), "SOURCE_IS_MEMBER", "source.account_id"),
        ({"group_id": "", "account_id": desk.s}, (), "INVALID_ARGUMENT", "group_id"),
    ]
    for fields, paths, reason, field in invalid:
        details = await refused(desk.set_source(paths=paths, **fields))
        assert details.code == grpc.StatusCode.INVALID_ARGUMENT, (fields, details)
        assert details.reason == reason, (fields, details)
        assert field in details.field_violations, (fields, details)
    for fields, reason in (
        ({"account_id": "acc_00000000000000000000"}, "ACCOUNT_NOT_FOUND"),
        ({"account_id": deleted}, "ACCOUNT_NOT_FOUND"),
        ({"group_id": "grp_00000000000000000000", "account_id": desk.s}, "GROUP_NOT_FOUND"),
    ):
        details = await refused(desk.set_source(**fields))
        assert (details.code, details.reason) == (grpc.StatusCode.NOT_FOUND, reason), fields
    assert not (await desk.group()).HasField("source")

    # With s the group's source, s cannot become a member of the group either.
    await desk.set_source(account_id=desk.s)
    members = [account_pb2.GroupMember(account_id=a) for a in (desk.m1, desk.m2, desk.s)]
    details = await refused(
        desk.accounts().UpdateGroup(
            account_service_pb2.UpdateGroupRequest(
                group=account_pb2.Group(group_id=desk.group_a, members=members),
                update_mask={"paths": ["members"]},
            )
        )
    )
    assert (details.code, details.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "SOURCE_IS_MEMBER")
    assert "group.members[2].account_id" in details.field_violations
    group = await desk.group()
    assert [m.account_id for m in group.members] == [desk.m1, desk.m2]
    assert group.source.account_id == desk.s


async def test_who_may_set_remove_and_read_a_groups_source(desk: Desk) -> None:
    # The manager of A and C may name C's member as A's source: an account it reaches.
    group = await desk.set_source("manager", account_id=desk.c1)
    assert group.source.account_id == desk.c1
    # ...and then pause it (its source is within its reach), but never name B's account.
    paused = await desk.set_source(
        "manager", paths=("account_id", "paused"), account_id=desk.c1, paused=True
    )
    assert paused.source.paused
    details = await refused(desk.set_source("manager", account_id=desk.b1))
    assert (details.code, details.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
    )
    missing = await refused(desk.set_source("manager", account_id="acc_00000000000000000000"))
    assert (missing.code, missing.reason) == (details.code, details.reason)

    # Another group's manager may neither set, remove nor read A's source or signals.
    for call in (
        desk.set_source("manager_b", account_id=desk.s),
        desk.accounts("manager_b").RemoveGroupSource(
            account_service_pb2.RemoveGroupSourceRequest(group_id=desk.group_a)
        ),
        desk.trading("manager_b").ListSignals(
            trading_service_pb2.ListSignalsRequest(group_id=desk.group_a)
        ),
        anext(
            aiter(
                desk.trading("manager_b").StreamSignals(
                    trading_service_pb2.StreamSignalsRequest(group_id=desk.group_a)
                )
            )
        ),
    ):
        details = await refused(call)
        assert (details.code, details.reason) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "PERMISSION_DENIED",
        )
    # An investor may do none of it, on its own account's group either.
    for call in (
        desk.set_source("investor", account_id=desk.s),
        desk.accounts("investor").RemoveGroupSource(
            account_service_pb2.RemoveGroupSourceRequest(group_id=desk.group_a)
        ),
        desk.trading("investor").ListSignals(trading_service_pb2.ListSignalsRequest()),
        anext(
            aiter(
                desk.trading("investor").StreamSignals(trading_service_pb2.StreamSignalsRequest())
            )
        ),
    ):
        details = await refused(call)
        assert details.code == grpc.StatusCode.PERMISSION_DENIED
    group = await desk.group()
    assert (group.source.account_id, group.source.paused) == (desk.c1, True)

    # The manager removes it; the refusals above were audited as such.
    removed = await desk.accounts("manager").RemoveGroupSource(
        account_service_pb2.RemoveGroupSourceRequest(group_id=desk.group_a)
    )
    assert not removed.group.HasField("source")
    audit = await KeyedStub(
        admin_service_pb2_grpc.AdminServiceStub(desk.client.channel), desk.keys["admin"]
    ).ListAuditRecords(admin_service_pb2.ListAuditRecordsRequest(method=SET))
    statuses = sorted(r.status for r in audit.records)
    assert statuses.count("OK") == 2 and statuses.count("PERMISSION_DENIED") == 4


async def test_a_source_trade_is_listed_and_streamed_as_a_copied_signal(desk: Desk) -> None:
    await desk.set_source(account_id=desk.s)
    stream = desk.trading("manager").StreamSignals(
        trading_service_pb2.StreamSignalsRequest(group_id=desk.group_a)
    )
    # Nothing stored yet: the first message is the heartbeat that ends the catch-up.
    first = await asyncio.wait_for(stream.read(), 10)
    assert first.HasField("heartbeat_time") and not first.signals

    ticket = await desk.trade_at_source(
        OrderRequest(
            action=TradeAction.DEAL,
            symbol="EURUSD",
            side=Side.BUY,
            volume=D("1.00"),
            tag="",
            magic=0,
        )
    )
    streamed: list[signal_pb2.Signal] = []

    async def until_copied() -> signal_pb2.Signal:
        while True:
            message = await stream.read()
            assert message is not grpc.aio.EOF
            streamed.extend(message.signals)
            for signal in message.signals:
                if signal.state == signal_pb2.SIGNAL_STATE_COPIED:
                    return signal

    copied = await asyncio.wait_for(until_copied(), 20)
    stream.cancel()
    assert copied.kind == signal_pb2.SIGNAL_KIND_POSITION_OPENED
    assert (copied.group_id, copied.source_account_id) == (desk.group_a, desk.s)
    assert (copied.event_id, copied.ticket) == (f"pos:{ticket}:open", ticket)
    assert (copied.symbol, copied.volume, copied.side) == ("EURUSD", "1.00", 1)
    assert copied.settle_time.seconds > 0 and copied.observe_time.seconds > 0
    # Sequences increase; the signal came first WAITING, then COPIED with a later sequence.
    sequences = [s.sequence for s in streamed]
    assert sequences == sorted(set(sequences))
    assert [s.state for s in streamed if s.event_id == copied.event_id][-1] == (
        signal_pb2.SIGNAL_STATE_COPIED
    )
    # Its master order exists, in group A, made from the signal's id.
    (master_id,) = copied.master_order_ids
    master = await desk.trading("manager").GetMasterOrder(
        trading_service_pb2.GetMasterOrderRequest(master_order_id=master_id)
    )
    spec = master.master_order.spec
    assert (spec.group_id, spec.volume, spec.client_order_id) == (
        desk.group_a,
        "1.00",
        f"src:{copied.event_id}",
    )

    # Listed: once, in its latest state; pages by token; after a sequence; only its group's.
    listed = await desk.trading("manager").ListSignals(
        trading_service_pb2.ListSignalsRequest(group_id=desk.group_a)
    )
    assert [s.event_id for s in listed.signals] == [copied.event_id]
    assert listed.signals[0] == copied and not listed.next_page_token
    everything = await desk.trading("manager").ListSignals(trading_service_pb2.ListSignalsRequest())
    assert [s.event_id for s in everything.signals] == [copied.event_id]
    assert not (
        await desk.trading("manager_b").ListSignals(trading_service_pb2.ListSignalsRequest())
    ).signals
    later = await desk.trading().ListSignals(
        trading_service_pb2.ListSignalsRequest(after_sequence=copied.sequence)
    )
    assert not later.signals

    # Closed at the source: a second signal; two pages of one.
    await desk.trade_at_source(
        OrderRequest(
            action=TradeAction.DEAL,
            symbol="EURUSD",
            side=Side.SELL,
            volume=D("1.00"),
            tag="",
            magic=0,
            position_ticket=ticket,
        )
    )

    async def closed_copied() -> list[signal_pb2.Signal]:
        while True:
            page = await desk.trading().ListSignals(
                trading_service_pb2.ListSignalsRequest(group_id=desk.group_a)
            )
            if len(page.signals) == 2 and all(
                s.state == signal_pb2.SIGNAL_STATE_COPIED for s in page.signals
            ):
                return list(page.signals)
            await asyncio.sleep(0.05)

    both = await asyncio.wait_for(closed_copied(), 20)
    assert both[1].kind == signal_pb2.SIGNAL_KIND_POSITION_CLOSED
    assert both[1].fraction == "1"
    first_page = await desk.trading().ListSignals(
        trading_service_pb2.ListSignalsRequest(group_id=desk.group_a, page_size=1)
    )
    second_page = await desk.trading().ListSignals(
        trading_service_pb2.ListSignalsRequest(
            group_id=desk.group_a, page_size=1, page_token=first_page.next_page_token
        )
    )
    assert [*first_page.signals, *second_page.signals] == both
    assert not second_page.next_page_token

    # A stream opened after it all replays the stored signals first, then its heartbeat.
    replay = desk.trading().StreamSignals(
        trading_service_pb2.StreamSignalsRequest(group_id=desk.group_a)
    )
    stored = await asyncio.wait_for(replay.read(), 10)
    assert list(stored.signals) == both
    caught_up = await asyncio.wait_for(replay.read(), 10)
    assert caught_up.HasField("heartbeat_time")
    replay.cancel()

    bad = await refused(
        desk.trading().ListSignals(trading_service_pb2.ListSignalsRequest(page_token="nonsense"))
    )
    assert "page_token" in bad.field_violations


async def test_a_signal_stream_ends_when_its_key_is_revoked(desk: Desk) -> None:
    stream = desk.trading("manager").StreamSignals(trading_service_pb2.StreamSignalsRequest())
    first = await asyncio.wait_for(stream.read(), 10)
    assert first.HasField("heartbeat_time")
    admin = KeyedStub(
        admin_service_pb2_grpc.AdminServiceStub(desk.client.channel), desk.keys["admin"]
    )
    keys = await admin.ListApiKeys(admin_service_pb2.ListApiKeysRequest())
    (manager,) = [k for k in keys.api_keys if k.name == "manager"]
    await admin.RevokeApiKey(admin_service_pb2.RevokeApiKeyRequest(key_id=manager.key_id))
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        while True:
            await asyncio.wait_for(stream.read(), 10)
    details = error_details(ended.value)
    assert (details.code, details.reason) == (grpc.StatusCode.UNAUTHENTICATED, "API_KEY_REVOKED")


async def test_a_signal_stream_ends_with_gateway_stopping(tmp_path: Path) -> None:
    gateway = await start_gateway(make_config(tmp_path))
    try:
        async with client_of(gateway) as client:
            stream = client.trading.StreamSignals(trading_service_pb2.StreamSignalsRequest())
            assert (await asyncio.wait_for(stream.read(), 10)).HasField("heartbeat_time")
            stopping = asyncio.create_task(gateway.stop(5))
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                while True:
                    await asyncio.wait_for(stream.read(), 10)
            details = error_details(ended.value)
            assert (details.code, details.reason) == (
                grpc.StatusCode.UNAVAILABLE,
                "GATEWAY_STOPPING",
            )
            await stopping
    finally:
        if not gateway.sources or not gateway.sources.stopping:
            await gateway.stop(0.5)
