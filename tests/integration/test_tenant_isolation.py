"""A key reaches only its own tenant, through every id a request carries, at any depth.

Group A holds accounts a1 and a2, group B holds b1. The manager key is given group A, the
investor key account a1. A write may name only what its caller could read: each id of every
state-changing request (found from the descriptors, so a field added later is covered) is
filled with group B's resource of its kind and sent with the manager and the investor key; the
answer must be PERMISSION_DENIED and the same as for an id that exists nowhere, and nothing may
change. Then what else must not cross tenants: a group's reference account, execution quality,
and a call with two keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from gateway._proto.mam.v1 import (
    account_pb2,
    account_service_pb2,
    admin_service_pb2,
    common_pb2,
    reporting_service_pb2,
    trading_service_pb2,
)
from gateway.api.access_rules import RULES
from gateway.api.resource_references import ResourceKind, kind_of, names_a_resource
from gateway.api.server import RunningGateway, start_gateway
from gateway.domain.access import Role
from tests.conftest import client_of
from tests.integration.helpers import create_accounts, create_group, market_order, open_volume
from tests.integration.test_access_control import mam_methods
from tests.support import KeyedStub, error_details, make_config

# Messages that hold no id: never walked into.
OPAQUE = frozenset(
    {"google.protobuf.FieldMask", "google.protobuf.Timestamp", "google.protobuf.Duration"}
)
# An id of each kind that names nothing, shaped like the real ones.
MISSING = {
    ResourceKind.ACCOUNT: "acc_00000000000000000000",
    ResourceKind.GROUP: "grp_00000000000000000000",
    ResourceKind.MASTER_ORDER: "mo_00000000000000000000",
    ResourceKind.GROUP_OR_ACCOUNT: "grp_00000000000000000000",
    ResourceKind.API_KEY: "0000000000000000",
    ResourceKind.KILL_SWITCH: "ks_00000000000000000000",
    ResourceKind.STOP_OUT: "so_00000000000000000000",
}
NON_ADMINS = {"manager": Role.MANAGER, "investor": Role.INVESTOR}


@dataclasses.dataclass
class World:
    gateway: RunningGateway
    channel: grpc.aio.Channel
    keys: dict[str, str]
    group_a: str
    group_b: str
    a1: str
    a2: str
    b1: str
    order_a: str
    order_b: str
    # A WORKING limit order of group A (there is something to cancel).
    working_a: str
    # Group B's resources no read ever reaches: a key of its manager, a kill switch on it.
    key_b: str
    kill_switch_b: str
    # Group A's source account (mirroring): in the manager's reach, not a member of A.
    source_a: str = ""

    def metadata(self, who: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.keys[who]}"),)

    async def call(self, method: str, request: Any, who: str, *, metadata: Any = None) -> Any:
        descriptor = mam_methods()[method]
        response_class = message_factory.GetMessageClass(descriptor.output_type)
        serializer = type(request).SerializeToString
        sent = self.metadata(who) if metadata is None else metadata
        if descriptor.client_streaming and descriptor.server_streaming:
            call = self.channel.stream_stream(method, serializer, response_class.FromString)
            return [r async for r in call(iter([request]), metadata=sent, timeout=20)]
        if descriptor.server_streaming:
            call = self.channel.unary_stream(method, serializer, response_class.FromString)
            return await anext(aiter(call(request, metadata=sent, timeout=10)))
        call = self.channel.unary_unary(method, serializer, response_class.FromString)
        return await call(request, metadata=sent, timeout=10)

    def foreign(self, kind: ResourceKind) -> str:
        """Group B's resource of this kind."""
        return {
            ResourceKind.ACCOUNT: self.b1,
            ResourceKind.GROUP: self.group_b,
            ResourceKind.MASTER_ORDER: self.order_b,
            ResourceKind.GROUP_OR_ACCOUNT: self.group_b,
            ResourceKind.API_KEY: self.key_b,
            ResourceKind.KILL_SWITCH: self.kill_switch_b,
            # No write applies one (stop-outs are output only), so none needs to exist.
            ResourceKind.STOP_OUT: MISSING[ResourceKind.STOP_OUT],
        }[kind]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    running = await start_gateway(make_config(tmp_path, auth=True))
    admin_key = (tmp_path / "admin.key").read_text().strip()
    admin = (("authorization", f"Bearer {admin_key}"),)
    try:
        async with client_of(running) as client:
            accounts = KeyedStub(client.accounts, admin)
            trading = KeyedStub(client.trading, admin)
            a1, a2, b1, source_a = await create_accounts(
                accounts,  # type: ignore[arg-type]
                ["10000", "20000", "30000", "40000"],
            )
            group_a = await create_group(accounts, [a1, a2], name="A")  # type: ignore[arg-type]
            group_b = await create_group(accounts, [b1], name="B")  # type: ignore[arg-type]
            await accounts.SetGroupSource(
                account_service_pb2.SetGroupSourceRequest(
                    group_id=group_a.group_id,
                    source=account_pb2.GroupSource(account_id=source_a.account_id),
                )
            )
            order_a = await trading.SubmitMasterOrder(market_order(group_a.group_id))
            order_b = await trading.SubmitMasterOrder(market_order(group_b.group_id))
            _, ask, _ = running.broker.feed.bid_ask("EURUSD")
            working_a = await trading.SubmitMasterOrder(
                market_order(
                    group_a.group_id,
                    type=common_pb2.ORDER_TYPE_LIMIT,
                    price=str(ask - Decimal("0.05")),
                    filling_policy=common_pb2.FILLING_POLICY_RETURN,
                )
            )
            await running.engine.wait_idle()
            world = World(
                running,
                client.channel,
                {"admin": admin_key},
                group_a.group_id,
                group_b.group_id,
                a1.account_id,
                a2.account_id,
                b1.account_id,
                order_a.master_order.master_order_id,
                order_b.master_order.master_order_id,
                working_a.master_order.master_order_id,
                "",
                "",
                source_a.account_id,
            )
            for who, role, scope in (
                ("manager", admin_service_pb2.ROLE_MANAGER, {"group_ids": [world.group_a]}),
                ("investor", admin_service_pb2.ROLE_INVESTOR, {"account_ids": [world.a1]}),
                ("manager_b", admin_service_pb2.ROLE_MANAGER, {"group_ids": [world.group_b]}),
            ):
                created = await world.call(
                    "/mam.v1.AdminService/CreateApiKey",
                    admin_service_pb2.CreateApiKeyRequest(
                        api_key=admin_service_pb2.ApiKey(name=who, role=role, **scope)
                    ),
                    "admin",
                )
                world.keys[who] = created.key
                if who == "manager_b":
                    world.key_b = created.api_key.key_id
            switch = await world.call(
                "/mam.v1.AdminService/ActivateKillSwitch",
                admin_service_pb2.ActivateKillSwitchRequest(
                    kill_switch=admin_service_pb2.KillSwitch(
                        scope=admin_service_pb2.KILL_SWITCH_SCOPE_GROUP,
                        target_id=world.group_b,
                        reason="group B is paused",
                    )
                ),
                "admin",
            )
            world.kill_switch_b = switch.kill_switch.kill_switch_id
            yield world
    finally:
        await running.stop(0.5)


# -- the resources a write names ---------------------------------------------------------------


def test_every_id_a_request_can_carry_is_classified() -> None:
    """A new `_id` field must be given a kind (or a reason it names nothing) before it ships:
    until then access control refuses it to every non-admin."""
    unclassified = sorted(
        f"{method}: {'.'.join(f.name for f in chain)}"
        for method, descriptor in mam_methods().items()
        if not RULES[method].own_authentication
        for chain in id_fields(descriptor.input_type)
        if kind_of(chain[-1].name) is ResourceKind.UNRECOGNISED
    )
    assert not unclassified, (
        "classify these fields in gateway/api/resource_references.py: " + ", ".join(unclassified)
    )


def id_fields(
    descriptor: Descriptor, seen: tuple[str, ...] = ()
) -> Iterator[list[FieldDescriptor]]:
    """Every field under `descriptor` named like an id, as the chain of fields that reaches it
    (messages that contain themselves are followed once)."""
    for field in descriptor.fields:
        kind = field.message_type
        if kind is not None:
            if kind.full_name in OPAQUE or kind.full_name in seen:
                continue
            for chain in id_fields(kind, (*seen, descriptor.full_name)):
                yield [field, *chain]
        elif names_a_resource(field):
            yield [field]


def own_requests(w: World) -> dict[str, Message]:
    """For each write, a request aimed at the manager's own resources (group A, a1, its orders)
    that its allowed roles may make: the test changes one id of it at a time."""
    period_start = timestamp_pb2.Timestamp(seconds=1_767_225_600)
    return {
        "/mam.v1.AccountService/CreateAccount": account_service_pb2.CreateAccountRequest(
            account=account_pb2.Account(
                name="new",
                platform=common_pb2.PLATFORM_SIMULATED,
                login=79001,
                server="mam-sim",
                currency="USD",
                simulated=account_pb2.SimulatedAccount(initial_balance="1000"),
            )
        ),
        "/mam.v1.AccountService/UpdateAccount": account_service_pb2.UpdateAccountRequest(
            account=account_pb2.Account(account_id=w.a1, name="a1, renamed"),
            update_mask={"paths": ["name"]},
        ),
        "/mam.v1.AccountService/DeleteAccount": account_service_pb2.DeleteAccountRequest(
            account_id=w.a2
        ),
        "/mam.v1.AccountService/CreateGroup": account_service_pb2.CreateGroupRequest(
            group=account_pb2.Group(
                name="A too", members=[account_pb2.GroupMember(account_id=w.a1)]
            )
        ),
        "/mam.v1.AccountService/UpdateGroup": account_service_pb2.UpdateGroupRequest(
            group=account_pb2.Group(
                group_id=w.group_a,
                allocation=account_pb2.AllocationSettings(
                    method=account_pb2.ALLOCATION_METHOD_EQUITY_RATIO,
                    reference_account_id=w.a1,
                ),
                members=[
                    account_pb2.GroupMember(account_id=w.a1),
                    account_pb2.GroupMember(account_id=w.a2),
                ],
            ),
            update_mask={"paths": ["allocation", "members"]},
        ),
        "/mam.v1.AccountService/ResetStopOut": account_service_pb2.ResetStopOutRequest(
            account_id=w.a1
        ),
        # Pauses group A's copying of its source, which the manager reaches through group A.
        "/mam.v1.AccountService/SetGroupSource": account_service_pb2.SetGroupSourceRequest(
            group_id=w.group_a,
            source=account_pb2.GroupSource(account_id=w.source_a, paused=True),
            update_mask={"paths": ["account_id", "paused"]},
        ),
        "/mam.v1.AccountService/RemoveGroupSource": account_service_pb2.RemoveGroupSourceRequest(
            group_id=w.group_a
        ),
        "/mam.v1.TradingService/SubmitMasterOrder": market_order(w.group_a),
        "/mam.v1.TradingService/StreamMasterOrders": trading_service_pb2.StreamMasterOrdersRequest(
            order=market_order(w.group_a).order
        ),
        "/mam.v1.TradingService/CancelMasterOrder": trading_service_pb2.CancelMasterOrderRequest(
            master_order_id=w.working_a
        ),
        "/mam.v1.TradingService/ModifyMasterOrder": trading_service_pb2.ModifyMasterOrderRequest(
            master_order_id=w.order_a, stop_loss="0.5"
        ),
        "/mam.v1.TradingService/CloseMasterPosition": (
            trading_service_pb2.CloseMasterPositionRequest(
                master_order_id=w.order_a, client_order_id="close-a", fraction="1"
            )
        ),
        "/mam.v1.AdminService/CreateApiKey": admin_service_pb2.CreateApiKeyRequest(
            api_key=admin_service_pb2.ApiKey(
                name="desk", role=admin_service_pb2.ROLE_MANAGER, group_ids=[w.group_a]
            )
        ),
        "/mam.v1.AdminService/RevokeApiKey": admin_service_pb2.RevokeApiKeyRequest(
            key_id=w.keys["manager"].split("_")[1]
        ),
        "/mam.v1.AdminService/ActivateKillSwitch": admin_service_pb2.ActivateKillSwitchRequest(
            kill_switch=admin_service_pb2.KillSwitch(
                scope=admin_service_pb2.KILL_SWITCH_SCOPE_GROUP,
                target_id=w.group_a,
                reason="pause A",
            )
        ),
        "/mam.v1.AdminService/DeactivateKillSwitch": (
            admin_service_pb2.DeactivateKillSwitchRequest(
                kill_switch_id=MISSING[ResourceKind.KILL_SWITCH]
            )
        ),
        "/mam.v1.ReportingService/RecordBalanceOperation": (
            reporting_service_pb2.RecordBalanceOperationRequest(
                balance_operation=reporting_service_pb2.BalanceOperation(
                    account_id=w.a1,
                    operation_id="dep-a1",
                    kind=reporting_service_pb2.BALANCE_OPERATION_KIND_DEPOSIT,
                    amount="100",
                    time=period_start,
                )
            )
        ),
        "/mam.v1.ReportingService/UpdateFeeSchedule": (
            reporting_service_pb2.UpdateFeeScheduleRequest(
                fee_schedule=reporting_service_pb2.FeeSchedule(
                    account_id=w.a1, performance_fee_percent="20"
                )
            )
        ),
    }


def naming(request: Message, chain: list[FieldDescriptor], resource_id: str) -> Message:
    """`request` with the id at `chain` set to `resource_id` (the first element of a repeated
    message on the way, added if there is none; appended to a list of ids), and, inside the
    resource of an update, the field it is in added to the update mask."""
    copy = type(request)()
    copy.CopyFrom(request)
    message: Any = copy
    for field in chain[:-1]:
        if field.is_repeated:
            items = getattr(message, field.name)
            message = items[0] if len(items) else items.add()
        else:
            message = getattr(message, field.name)
    last = chain[-1]
    if last.is_repeated:
        getattr(message, last.name).append(resource_id)
    else:
        setattr(message, last.name, resource_id)
    fields = copy.DESCRIPTOR.fields_by_name
    if "update_mask" in fields and len(chain) > 1 and chain[1].name != f"{chain[0].name}_id":
        paths = copy.update_mask.paths  # type: ignore[attr-defined]
        if not any(p == chain[1].name or p.startswith(chain[1].name + ".") for p in paths):
            paths.append(chain[1].name)
    return copy


@dataclasses.dataclass(frozen=True)
class Outcome:
    code: str
    reason: str = ""
    message: str = ""

    def without(self, resource_id: str) -> Outcome:
        return dataclasses.replace(self, message=self.message.replace(resource_id, "<id>"))


async def outcome_of(world: World, method: str, request: Message, who: str) -> Outcome:
    try:
        result = await world.call(method, request, who)
    except grpc.aio.AioRpcError as error:
        details = error_details(error)
        return Outcome(error.code().name, details.reason, details.message)
    if isinstance(result, list):  # StreamMasterOrders answers each submission on the stream
        for response in result:
            if response.HasField("rejected"):
                rejected = response.rejected
                code = next(c for c in grpc.StatusCode if c.value[0] == rejected.code)
                return Outcome(code.name, rejected.reason, rejected.message)
    return Outcome("OK")


async def tenant_state(world: World) -> list[Any]:
    """Everything a refused write could have changed, as the admin reads it."""
    admin_reads: list[tuple[str, Message]] = [
        ("/mam.v1.AccountService/ListAccounts", account_service_pb2.ListAccountsRequest()),
        ("/mam.v1.AccountService/ListGroups", account_service_pb2.ListGroupsRequest()),
        ("/mam.v1.AccountService/ListStopOuts", account_service_pb2.ListStopOutsRequest()),
        ("/mam.v1.TradingService/ListMasterOrders", trading_service_pb2.ListMasterOrdersRequest()),
        ("/mam.v1.AdminService/ListApiKeys", admin_service_pb2.ListApiKeysRequest()),
        ("/mam.v1.AdminService/ListKillSwitches", admin_service_pb2.ListKillSwitchesRequest()),
    ]
    for account_id in (world.a1, world.a2, world.b1):
        admin_reads += [
            (
                "/mam.v1.ReportingService/ListBalanceOperations",
                reporting_service_pb2.ListBalanceOperationsRequest(account_id=account_id),
            ),
            (
                "/mam.v1.ReportingService/GetFeeSchedule",
                reporting_service_pb2.GetFeeScheduleRequest(account_id=account_id),
            ),
        ]
    state: list[Any] = []
    for method, request in admin_reads:
        try:
            response = await world.call(method, request, "admin")
        except grpc.aio.AioRpcError as error:
            state.append((method, error.code().name))
            continue
        if isinstance(response, account_service_pb2.ListAccountsResponse):
            for account in response.accounts:
                # What the terminal reads on its own, not what a call changes.
                account.ClearField("snapshot")
                account.ClearField("loss_watch")
        state.append(response)
    state.append(await open_volume(world.gateway, [world.a1, world.a2, world.b1]))
    return state


async def test_a_write_naming_another_tenants_resource_is_refused_like_a_missing_one(
    world: World,
) -> None:
    writes = {method: rule for method, rule in RULES.items() if rule.changes_state}
    requests = own_requests(world)
    assert set(requests) == set(writes), "give every write a request in own_requests()"
    methods = mam_methods()
    before = await tenant_state(world)
    checked = 0
    for method, request in requests.items():
        chains = [
            chain
            for chain in id_fields(methods[method].input_type)
            if kind_of(chain[-1].name) is not None
        ]
        for chain in chains:
            kind = kind_of(chain[-1].name)
            assert kind is not None and kind is not ResourceKind.UNRECOGNISED
            foreign, missing = world.foreign(kind), MISSING[kind]
            where = f"{method} {'.'.join(f.name for f in chain)}"
            for who in NON_ADMINS:
                refused = await outcome_of(world, method, naming(request, chain, foreign), who)
                absent = await outcome_of(world, method, naming(request, chain, missing), who)
                assert (refused.code, refused.reason) == (
                    "PERMISSION_DENIED",
                    "PERMISSION_DENIED",
                ), (
                    where,
                    who,
                    refused,
                )
                assert refused.without(foreign) == absent.without(missing), (where, who)
                checked += 1
    assert checked >= 2 * 40
    assert await tenant_state(world) == before
    # Each request as given is within its allowed callers' reach: the refusals came from the
    # one id that was changed.
    for method, request in requests.items():
        for who, role in NON_ADMINS.items():
            if role in writes[method].roles:
                outcome = await outcome_of(world, method, request, who)
                assert outcome.code == "OK", (method, who, outcome)


async def test_a_manager_cannot_take_another_groups_account_as_its_reference(
    world: World,
) -> None:
    """The equity of a group B account, read through group A's EQUITY_RATIO reference, would
    size A's orders and show in its previews while GetAccount on it is refused."""
    update = "/mam.v1.AccountService/UpdateGroup"
    preview = "/mam.v1.TradingService/PreviewAllocation"

    def with_reference(account_id: str) -> account_service_pb2.UpdateGroupRequest:
        return account_service_pb2.UpdateGroupRequest(
            group=account_pb2.Group(
                group_id=world.group_a,
                allocation=account_pb2.AllocationSettings(
                    method=account_pb2.ALLOCATION_METHOD_EQUITY_RATIO,
                    reference_account_id=account_id,
                ),
            ),
            update_mask={"paths": ["allocation"]},
        )

    for paths in (["allocation"], ["allocation.reference_account_id", "allocation.method"]):
        foreign = with_reference(world.b1)
        foreign.update_mask.paths[:] = paths
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await world.call(update, foreign, "manager")
        assert error_details(refused.value).reason == "PERMISSION_DENIED", paths
    group = await world.call(
        "/mam.v1.AccountService/GetGroup",
        account_service_pb2.GetGroupRequest(group_id=world.group_a),
        "manager",
    )
    assert group.group.allocation.reference_account_id == ""
    # Its own account may be the reference, and the preview is measured from it.
    await world.call(update, with_reference(world.a2), "manager")
    previewed = await world.call(
        preview,
        trading_service_pb2.PreviewAllocationRequest(order=market_order(world.group_a).order),
        "manager",
    )
    assert Decimal(previewed.allocation.reference_equity) < Decimal("25000")  # a2's, not b1's
    # A field the update mask leaves out is not applied, so it names nothing: a read-modify-write
    # may carry whatever it read.
    renamed = with_reference(world.b1)
    renamed.group.name = "A, renamed"
    renamed.update_mask.paths[:] = ["name"]
    answer = await world.call(update, renamed, "manager")
    assert answer.group.allocation.reference_account_id == world.a2


async def test_an_investor_reads_only_its_own_accounts_execution_quality(world: World) -> None:
    method = "/mam.v1.ReportingService/GetExecutionQuality"
    now = datetime.now(UTC)
    period: dict[str, Any] = {
        "start_time": timestamp_pb2.Timestamp(seconds=int((now - timedelta(days=1)).timestamp())),
        "end_time": timestamp_pb2.Timestamp(seconds=int((now + timedelta(days=1)).timestamp())),
    }
    own = reporting_service_pb2.GetExecutionQualityRequest(account_id=world.a1, **period)
    managed = await world.call(method, own, "manager")
    assert [
        s.accounts_sent for s in managed.dispatch_skews if s.master_order_id == world.order_a
    ] == [2]
    assert managed.HasField("average_dispatch_delay")
    invested = await world.call(method, own, "investor")
    # Its own figures, as the manager sees them ...
    assert invested.orders == managed.orders > 0
    assert invested.volumes == managed.volumes and invested.slippage == managed.slippage
    assert invested.average_send_latency == managed.average_send_latency
    # ... and nothing measured on the order's other accounts.
    assert not invested.dispatch_skews
    assert not invested.HasField("average_dispatch_delay")
    assert not invested.HasField("max_dispatch_delay")
    with pytest.raises(grpc.aio.AioRpcError) as other:
        await world.call(
            method,
            reporting_service_pb2.GetExecutionQualityRequest(account_id=world.a2, **period),
            "investor",
        )
    assert other.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_call_with_two_authorization_headers_is_refused(world: World) -> None:
    method = "/mam.v1.AccountService/GetAccount"
    request = account_service_pb2.GetAccountRequest(account_id=world.b1)
    investor, admin = world.metadata("investor")[0], world.metadata("admin")[0]
    for metadata in ((investor, admin), (admin, investor), (admin, admin)):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await world.call(method, request, "", metadata=metadata)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_details(refused.value).reason == "API_KEY_AMBIGUOUS"
    got = await world.call(method, request, "admin")
    assert got.account.account_id == world.b1
