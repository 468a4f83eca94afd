"""Who may call what: every mam.v1 RPC with every role and with no key, against a real server.

Group A holds accounts a1 and a2, group B holds b1. The manager key is given group A, the
investor key account a1. Every request aimed at B's resources must be PERMISSION_DENIED for both
(whether or not the resource exists), every call without a key UNAUTHENTICATED, and lists and
streams must show nothing outside the key's reach.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import pkgutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory, timestamp_pb2
from google.protobuf.descriptor import MethodDescriptor
from sqlalchemy import delete, update

import gateway._proto.mam.v1 as mam_v1
from gateway._proto.mam.v1 import (
    account_pb2,
    account_service_pb2,
    admin_service_pb2,
    admin_service_pb2_grpc,
    common_pb2,
    order_pb2,
    reporting_service_pb2,
    trading_service_pb2,
)
from gateway.api.access_rules import RULES
from gateway.api.server import RunningGateway, start_gateway
from gateway.domain.access import Role
from gateway.store import tables
from tests.conftest import Client, client_of
from tests.integration.helpers import create_accounts, create_group, market_order
from tests.support import error_details, make_config

ROLE_NAMES = {Role.ADMIN: "admin", Role.MANAGER: "manager", Role.INVESTOR: "investor"}


def mam_methods() -> dict[str, MethodDescriptor]:
    """Every RPC of every mam.v1 service, by full name."""
    methods: dict[str, MethodDescriptor] = {}
    for module_info in pkgutil.iter_modules(mam_v1.__path__):
        if not module_info.name.endswith("_pb2") or module_info.name.endswith("grpc"):
            continue
        module = importlib.import_module(f"{mam_v1.__name__}.{module_info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                methods[f"/{service.full_name}/{method.name}"] = method
    return methods


def test_every_rpc_has_an_access_rule() -> None:
    methods = mam_methods()
    assert len(methods) >= 26
    missing = sorted(set(methods) - set(RULES))
    assert not missing, f"RPCs without an access rule (add them to RULES): {missing}"
    stale = sorted(set(RULES) - set(methods))
    assert not stale, f"rules for RPCs that do not exist: {stale}"


@dataclass
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

    def metadata(self, who: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.keys[who]}"),) if who in self.keys else ()

    async def call(self, method: str, request: Any, who: str) -> Any:
        descriptor = mam_methods()[method]
        response_class = message_factory.GetMessageClass(descriptor.output_type)
        serializer = type(request).SerializeToString
        if descriptor.client_streaming and descriptor.server_streaming:
            call = self.channel.stream_stream(method, serializer, response_class.FromString)
            responses = call(iter([request]), metadata=self.metadata(who), timeout=10)
            return [r async for r in responses]
        if descriptor.server_streaming:
            call = self.channel.unary_stream(method, serializer, response_class.FromString)
            stream = call(request, metadata=self.metadata(who), timeout=10)
            return await anext(aiter(stream))
        call = self.channel.unary_unary(method, serializer, response_class.FromString)
        return await call(request, metadata=self.metadata(who), timeout=10)


@pytest.fixture
async def world(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    config = make_config(tmp_path, database_url=database_url, auth=True)
    running = await start_gateway(config)
    admin_key = (tmp_path / "admin.key").read_text().strip()
    admin = (("authorization", f"Bearer {admin_key}"),)
    try:
        async with client_of(running) as client:
            stubs = _with_metadata(client, admin)
            a1, a2, b1 = await create_accounts(stubs.accounts, ["10000", "20000", "30000"])
            group_a = await create_group(stubs.accounts, [a1, a2], name="A")
            group_b = await create_group(stubs.accounts, [b1], name="B")
            order_a = await stubs.trading.SubmitMasterOrder(market_order(group_a.group_id))
            order_b = await stubs.trading.SubmitMasterOrder(market_order(group_b.group_id))
            await running.engine.wait_idle()
            admin_stub = admin_service_pb2_grpc.AdminServiceStub(client.channel)
            keys = {"admin": admin_key}
            for who, role, scope in (
                ("manager", admin_service_pb2.ROLE_MANAGER, {"group_ids": [group_a.group_id]}),
                ("investor", admin_service_pb2.ROLE_INVESTOR, {"account_ids": [a1.account_id]}),
            ):
                created = await admin_stub.CreateApiKey(
                    admin_service_pb2.CreateApiKeyRequest(
                        api_key=admin_service_pb2.ApiKey(name=who, role=role, **scope)
                    ),
                    metadata=admin,
                )
                keys[who] = created.key
            yield World(
                running,
                client.channel,
                keys,
                group_a.group_id,
                group_b.group_id,
                a1.account_id,
                a2.account_id,
                b1.account_id,
                order_a.master_order.master_order_id,
                order_b.master_order.master_order_id,
            )
    finally:
        await running.stop(0.5)


def _with_metadata(client: Client, metadata: tuple[tuple[str, str], ...]) -> Client:
    """The client's stubs, each call sending `metadata`."""

    class Bound:
        def __init__(self, stub: Any) -> None:
            self._stub = stub

        def __getattr__(self, name: str) -> Callable[..., Any]:
            method = getattr(self._stub, name)
            return lambda request, **kw: method(request, metadata=metadata, **kw)

    return dataclasses.replace(
        client,
        accounts=Bound(client.accounts),  # type: ignore[arg-type]
        trading=Bound(client.trading),  # type: ignore[arg-type]
    )


# Requests aimed at group B's resources (or at nothing a key could name), per method.
def foreign_requests(w: World) -> dict[str, Any]:
    spec_b = market_order(w.group_b).order
    return {
        "/mam.v1.AccountService/CreateAccount": account_service_pb2.CreateAccountRequest(),
        "/mam.v1.AccountService/GetAccount": account_service_pb2.GetAccountRequest(account_id=w.b1),
        "/mam.v1.AccountService/ListAccounts": account_service_pb2.ListAccountsRequest(
            group_id=w.group_b
        ),
        "/mam.v1.AccountService/UpdateAccount": account_service_pb2.UpdateAccountRequest(
            account=account_pb2.Account(account_id=w.b1)
        ),
        "/mam.v1.AccountService/DeleteAccount": account_service_pb2.DeleteAccountRequest(
            account_id=w.b1
        ),
        "/mam.v1.AccountService/CreateGroup": account_service_pb2.CreateGroupRequest(),
        "/mam.v1.AccountService/GetGroup": account_service_pb2.GetGroupRequest(group_id=w.group_b),
        "/mam.v1.AccountService/ListGroups": account_service_pb2.ListGroupsRequest(),
        "/mam.v1.AccountService/UpdateGroup": account_service_pb2.UpdateGroupRequest(
            group=account_pb2.Group(group_id=w.group_b)
        ),
        "/mam.v1.AccountService/ResetStopOut": account_service_pb2.ResetStopOutRequest(
            group_id=w.group_b
        ),
        "/mam.v1.AccountService/ListStopOuts": account_service_pb2.ListStopOutsRequest(
            account_id=w.b1
        ),
        "/mam.v1.TradingService/SubmitMasterOrder": trading_service_pb2.SubmitMasterOrderRequest(
            order=spec_b
        ),
        "/mam.v1.TradingService/StreamMasterOrders": (
            trading_service_pb2.StreamMasterOrdersRequest(order=spec_b)
        ),
        "/mam.v1.TradingService/PreviewAllocation": trading_service_pb2.PreviewAllocationRequest(
            order=spec_b
        ),
        "/mam.v1.TradingService/GetMasterOrder": trading_service_pb2.GetMasterOrderRequest(
            master_order_id=w.order_b
        ),
        "/mam.v1.TradingService/ListMasterOrders": trading_service_pb2.ListMasterOrdersRequest(
            group_id=w.group_b
        ),
        "/mam.v1.TradingService/CancelMasterOrder": trading_service_pb2.CancelMasterOrderRequest(
            master_order_id=w.order_b
        ),
        "/mam.v1.TradingService/ModifyMasterOrder": trading_service_pb2.ModifyMasterOrderRequest(
            master_order_id=w.order_b, stop_loss="1.0"
        ),
        "/mam.v1.TradingService/CloseMasterPosition": (
            trading_service_pb2.CloseMasterPositionRequest(
                master_order_id=w.order_b, client_order_id="close-b", fraction="1"
            )
        ),
        "/mam.v1.TradingService/SubscribeFills": trading_service_pb2.SubscribeFillsRequest(
            account_ids=[w.b1]
        ),
        "/mam.v1.AccountService/SetGroupSource": account_service_pb2.SetGroupSourceRequest(
            group_id=w.group_b, source=account_pb2.GroupSource(account_id=w.b1)
        ),
        "/mam.v1.AccountService/RemoveGroupSource": account_service_pb2.RemoveGroupSourceRequest(
            group_id=w.group_b
        ),
        "/mam.v1.TradingService/ListSignals": trading_service_pb2.ListSignalsRequest(
            group_id=w.group_b
        ),
        "/mam.v1.TradingService/StreamSignals": trading_service_pb2.StreamSignalsRequest(
            group_id=w.group_b
        ),
        **reporting_requests(w),
    }


def reporting_requests(w: World) -> dict[str, Any]:
    """ReportingService requests aimed at group B and its account b1."""
    service = "/mam.v1.ReportingService/"
    period = {
        "start_time": timestamp_pb2.Timestamp(seconds=1_767_225_600),
        "end_time": timestamp_pb2.Timestamp(seconds=1_798_761_600),
    }
    b1 = w.b1
    return {
        service + "RecordBalanceOperation": reporting_service_pb2.RecordBalanceOperationRequest(
            balance_operation=reporting_service_pb2.BalanceOperation(
                account_id=b1,
                operation_id="dep-b",
                kind=reporting_service_pb2.BALANCE_OPERATION_KIND_DEPOSIT,
                amount="100",
                time=period["start_time"],
            )
        ),
        service + "ListBalanceOperations": reporting_service_pb2.ListBalanceOperationsRequest(
            account_id=b1
        ),
        service + "ListAccountDeals": reporting_service_pb2.ListAccountDealsRequest(account_id=b1),
        service + "ListAccountPositions": reporting_service_pb2.ListAccountPositionsRequest(
            account_id=b1
        ),
        service + "GetAccountPerformance": reporting_service_pb2.GetAccountPerformanceRequest(
            account_id=b1, **period
        ),
        service + "GetGroupPerformance": reporting_service_pb2.GetGroupPerformanceRequest(
            group_id=w.group_b, **period
        ),
        service + "GetFeeSchedule": reporting_service_pb2.GetFeeScheduleRequest(account_id=b1),
        service + "UpdateFeeSchedule": reporting_service_pb2.UpdateFeeScheduleRequest(
            fee_schedule=reporting_service_pb2.FeeSchedule(
                account_id=b1, performance_fee_percent="20"
            )
        ),
        service + "ListFeeCharges": reporting_service_pb2.ListFeeChargesRequest(account_id=b1),
        service + "GetExecutionQuality": reporting_service_pb2.GetExecutionQualityRequest(
            account_id=b1, **period
        ),
        service + "GetAccountStatement": reporting_service_pb2.GetAccountStatementRequest(
            account_id=b1, format=reporting_service_pb2.STATEMENT_FORMAT_PDF, **period
        ),
    }


# Methods whose foreign request an allowed non-admin may still make: it is filtered, not refused;
# or it names nothing of anyone's (the gateway's symbols).
FILTERED_NOT_REFUSED = {
    ("manager", "/mam.v1.AccountService/ListGroups"),
    ("manager", "/mam.v1.TradingService/ListSymbols"),
    ("investor", "/mam.v1.TradingService/ListSymbols"),
}


def _denied(error: grpc.aio.AioRpcError) -> bool:
    return error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_every_rpc_with_every_role_and_without_a_key(world: World) -> None:
    methods = mam_methods()
    requests = foreign_requests(world)
    checked = 0
    for method, rule in RULES.items():
        if rule.own_authentication:
            continue
        request = requests.get(method)
        if request is None:
            request = message_factory.GetMessageClass(methods[method].input_type)()
        # No key: refused before anything else, for every method.
        with pytest.raises(grpc.aio.AioRpcError) as no_key:
            await world.call(method, request, "nobody")
        assert no_key.value.code() == grpc.StatusCode.UNAUTHENTICATED, method
        assert error_details(no_key.value).reason == "API_KEY_MISSING"
        for role, who in ROLE_NAMES.items():
            outcome = await _outcome(world, method, request, who)
            if role not in rule.roles:
                assert outcome == "PERMISSION_DENIED", (method, who, outcome)
            elif role is Role.ADMIN:
                assert outcome not in ("PERMISSION_DENIED", "UNAUTHENTICATED"), (method, outcome)
            elif (who, method) in FILTERED_NOT_REFUSED:
                assert outcome == "OK", (method, who, outcome)
            else:
                assert outcome == "PERMISSION_DENIED", (method, who, outcome)
            checked += 1
    assert checked == 3 * (len(RULES) - 1)


async def _outcome(world: World, method: str, request: Any, who: str) -> str:
    try:
        result = await world.call(method, request, who)
    except grpc.aio.AioRpcError as error:
        return error.code().name
    if isinstance(result, list):  # StreamMasterOrders: refusals come per submission
        rejected = [r.rejected for r in result if r.HasField("rejected")]
        if rejected:
            return "PERMISSION_DENIED" if rejected[0].reason == "PERMISSION_DENIED" else "REJECTED"
    return "OK"


async def test_a_missing_resource_is_denied_like_a_foreign_one(world: World) -> None:
    for who in ("manager", "investor"):
        for method, request in (
            (
                "/mam.v1.TradingService/GetMasterOrder",
                trading_service_pb2.GetMasterOrderRequest(master_order_id="mo_does_not_exist"),
            ),
            (
                "/mam.v1.AccountService/GetAccount",
                account_service_pb2.GetAccountRequest(account_id="ac_does_not_exist"),
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await world.call(method, request, who)
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED, (who, method)
            assert "does_not_exist" not in (denied.value.details() or "").replace(
                "'mo_does_not_exist'", ""
            ).replace("'ac_does_not_exist'", "")


async def test_a_manager_sees_and_trades_only_its_groups(world: World) -> None:
    listed = await world.call(
        "/mam.v1.AccountService/ListAccounts", account_service_pb2.ListAccountsRequest(), "manager"
    )
    assert {a.account_id for a in listed.accounts} == {world.a1, world.a2}
    groups = await world.call(
        "/mam.v1.AccountService/ListGroups", account_service_pb2.ListGroupsRequest(), "manager"
    )
    assert [g.group_id for g in groups.groups] == [world.group_a]
    orders = await world.call(
        "/mam.v1.TradingService/ListMasterOrders",
        trading_service_pb2.ListMasterOrdersRequest(),
        "manager",
    )
    assert {m.master_order_id for m in orders.master_orders} == {world.order_a}
    submitted = await world.call(
        "/mam.v1.TradingService/SubmitMasterOrder", market_order(world.group_a), "manager"
    )
    assert submitted.master_order.spec.group_id == world.group_a
    got = await world.call(
        "/mam.v1.TradingService/GetMasterOrder",
        trading_service_pb2.GetMasterOrderRequest(master_order_id=world.order_a),
        "manager",
    )
    assert {c.account_id for c in got.master_order.children} == {world.a1, world.a2}
    fills = await _fills(world, "manager", trading_service_pb2.SubscribeFillsRequest())
    assert fills and {f.account_id for f in fills} == {world.a1, world.a2}


async def test_an_investor_sees_only_its_own_account(world: World) -> None:
    got = await world.call(
        "/mam.v1.AccountService/GetAccount",
        account_service_pb2.GetAccountRequest(account_id=world.a1),
        "investor",
    )
    assert got.account.account_id == world.a1
    listed = await world.call(
        "/mam.v1.AccountService/ListAccounts", account_service_pb2.ListAccountsRequest(), "investor"
    )
    assert [a.account_id for a in listed.accounts] == [world.a1]
    everything = await _fills(world, "investor", trading_service_pb2.SubscribeFillsRequest())
    assert everything and {f.account_id for f in everything} == {world.a1}
    of_order = await _fills(
        world, "investor", trading_service_pb2.SubscribeFillsRequest(master_order_id=world.order_a)
    )
    assert of_order and {f.account_id for f in of_order} == {world.a1}
    # An order of a group it is not in: nothing at all, not an error that says it exists.
    of_other = await _fills(
        world, "investor", trading_service_pb2.SubscribeFillsRequest(master_order_id=world.order_b)
    )
    assert of_other == []


async def _fills(
    world: World, who: str, request: trading_service_pb2.SubscribeFillsRequest
) -> list[order_pb2.Fill]:
    """The replayed fills, up to the first heartbeat."""
    descriptor = mam_methods()["/mam.v1.TradingService/SubscribeFills"]
    call = world.channel.unary_stream(
        "/mam.v1.TradingService/SubscribeFills",
        trading_service_pb2.SubscribeFillsRequest.SerializeToString,
        message_factory.GetMessageClass(descriptor.output_type).FromString,
    )
    fills: list[order_pb2.Fill] = []
    async for response in call(request, metadata=world.metadata(who), timeout=10):
        if response.HasField("batch"):
            fills.extend(response.batch.fills)
        else:
            break
    return fills


async def test_bad_keys_are_unauthenticated_and_revocation_is_immediate(world: World) -> None:
    get = "/mam.v1.AccountService/GetAccount"
    request = account_service_pb2.GetAccountRequest(account_id=world.a1)
    investor = world.keys["investor"]
    tampered = investor[:-1] + ("A" if investor[-1] != "A" else "B")
    for key, reason in (
        ("not-a-key", "API_KEY_INVALID"),
        ("mam_0123456789abcdef_" + "x" * 43, "API_KEY_INVALID"),
        (tampered, "API_KEY_INVALID"),
    ):
        world.keys["probe"] = key
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await world.call(get, request, "probe")
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_details(refused.value).reason == reason
    assert (await world.call(get, request, "investor")).account.account_id == world.a1
    key_id = investor.split("_")[1]
    revoked = await world.call(
        "/mam.v1.AdminService/RevokeApiKey",
        admin_service_pb2.RevokeApiKeyRequest(key_id=key_id),
        "admin",
    )
    assert revoked.api_key.HasField("revoke_time")
    with pytest.raises(grpc.aio.AioRpcError) as after:
        await world.call(get, request, "investor")
    assert after.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_details(after.value).reason == "API_KEY_REVOKED"
    listed = await world.call(
        "/mam.v1.AdminService/ListApiKeys", admin_service_pb2.ListApiKeysRequest(), "admin"
    )
    assert key_id not in {k.key_id for k in listed.api_keys}
    # Keys are never listed with their secrets, nor stored in the clear.
    assert investor not in str(listed)
    stored = await world.gateway.store.access.get_api_key(key_id)
    assert stored is not None and investor.split("_", 2)[2] not in stored.secret_hash


async def test_state_changes_are_audited_reads_are_not(world: World) -> None:
    before = await _audit(world)
    submitted = await world.call(
        "/mam.v1.TradingService/SubmitMasterOrder", market_order(world.group_a), "manager"
    )
    await world.call(
        "/mam.v1.AccountService/GetAccount",
        account_service_pb2.GetAccountRequest(account_id=world.a1),
        "manager",
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await world.call(
            "/mam.v1.TradingService/CancelMasterOrder",
            trading_service_pb2.CancelMasterOrderRequest(master_order_id=world.order_b),
            "manager",
        )
    records = (await _audit(world))[len(before) :]
    manager_id = world.keys["manager"].split("_")[1]
    assert [(r.method.rsplit("/", 1)[1], r.status, r.actor) for r in records] == [
        ("SubmitMasterOrder", "OK", f"manager:{manager_id}"),
        ("CancelMasterOrder", "PERMISSION_DENIED", f"manager:{manager_id}"),
    ]
    assert submitted.master_order.master_order_id in records[0].result
    assert world.group_a in records[0].request
    assert records[1].reason == "PERMISSION_DENIED"
    sequences = [r.sequence for r in await _audit(world)]
    assert sequences == list(range(1, len(sequences) + 1))
    # The key a CreateApiKey returns is never in the log.
    assert all(world.keys["manager"] not in r.request + r.result for r in await _audit(world))


async def _audit(world: World) -> list[admin_service_pb2.AuditRecord]:
    records: list[admin_service_pb2.AuditRecord] = []
    token = ""
    while True:
        page = await world.call(
            "/mam.v1.AdminService/ListAuditRecords",
            admin_service_pb2.ListAuditRecordsRequest(page_size=3, page_token=token),
            "admin",
        )
        records.extend(page.records)
        token = page.next_page_token
        if not token:
            return records


async def test_the_audit_log_refuses_changes_at_the_database(world: World) -> None:
    assert await _audit(world)
    engine = world.gateway.store._engine
    for statement in (
        update(tables.audit_records).values(actor="someone else"),
        delete(tables.audit_records),
    ):
        with pytest.raises(Exception, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(statement)


async def test_stream_submissions_are_checked_and_audited_one_by_one(world: World) -> None:
    method = "/mam.v1.TradingService/StreamMasterOrders"
    own = trading_service_pb2.StreamMasterOrdersRequest(order=market_order(world.group_a).order)
    foreign = trading_service_pb2.StreamMasterOrdersRequest(order=market_order(world.group_b).order)
    call = world.channel.stream_stream(
        method,
        trading_service_pb2.StreamMasterOrdersRequest.SerializeToString,
        trading_service_pb2.StreamMasterOrdersResponse.FromString,
    )
    responses = [
        r async for r in call(iter([own, foreign]), metadata=world.metadata("manager"), timeout=20)
    ]
    answers = {
        r.client_order_id: r for r in responses if r.HasField("accepted") or r.HasField("rejected")
    }
    assert answers[own.order.client_order_id].HasField("accepted")
    assert answers[foreign.order.client_order_id].rejected.reason == "PERMISSION_DENIED"
    streamed = [r for r in await _audit(world) if r.method == method]
    assert [r.status for r in streamed] == ["OK", "PERMISSION_DENIED"]


async def test_investors_and_managers_cannot_create_keys(world: World) -> None:
    for who in ("manager", "investor"):
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await world.call(
                "/mam.v1.AdminService/CreateApiKey",
                admin_service_pb2.CreateApiKeyRequest(
                    api_key=admin_service_pb2.ApiKey(name="x", role=admin_service_pb2.ROLE_ADMIN)
                ),
                who,
            )
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_key_request_is_validated_field_by_field(world: World) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await world.call(
            "/mam.v1.AdminService/CreateApiKey",
            admin_service_pb2.CreateApiKeyRequest(
                api_key=admin_service_pb2.ApiKey(
                    role=admin_service_pb2.ROLE_MANAGER, account_ids=["ac_x"]
                )
            ),
            "admin",
        )
    details = error_details(bad.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(details.field_violations) == {
        "api_key.name",
        "api_key.group_ids",
        "api_key.account_ids",
    }
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await world.call(
            "/mam.v1.AdminService/CreateApiKey",
            admin_service_pb2.CreateApiKeyRequest(
                api_key=admin_service_pb2.ApiKey(
                    name="ghost", role=admin_service_pb2.ROLE_INVESTOR, account_ids=["ac_ghost"]
                )
            ),
            "admin",
        )
    assert "api_key.account_ids" in error_details(unknown.value).field_violations


@pytest.fixture
async def limited(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    """Five calls of allowance per key and 64 KiB messages."""
    config = make_config(tmp_path, database_url=database_url, auth=True)
    config = dataclasses.replace(
        config,
        auth=dataclasses.replace(config.auth, rate_per_second=0.5, burst=5),
        server=dataclasses.replace(config.server, max_message_bytes=64 * 1024),
    )
    running = await start_gateway(config)
    key = (tmp_path / "admin.key").read_text().strip()
    try:
        async with client_of(running) as client:
            yield World(running, client.channel, {"admin": key}, *[""] * 7)
    finally:
        await running.stop(0.5)


async def test_a_key_above_its_rate_gets_resource_exhausted(limited: World) -> None:
    method = "/mam.v1.AccountService/ListGroups"
    request = account_service_pb2.ListGroupsRequest()
    for _ in range(5):
        await limited.call(method, request, "admin")
    with pytest.raises(grpc.aio.AioRpcError) as exhausted:
        await limited.call(method, request, "admin")
    assert exhausted.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_details(exhausted.value).reason == "RATE_LIMITED"
    assert error_details(exhausted.value).retry_delay_s > 0


async def test_an_oversized_message_gets_resource_exhausted(limited: World) -> None:
    request = account_service_pb2.CreateAccountRequest(
        account=account_pb2.Account(name="x" * (100 * 1024), platform=common_pb2.PLATFORM_MT5)
    )
    with pytest.raises(grpc.aio.AioRpcError) as too_big:
        await limited.call("/mam.v1.AccountService/CreateAccount", request, "admin")
    assert too_big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The server stays fine for everyone else.
    await limited.call(
        "/mam.v1.AccountService/ListGroups", account_service_pb2.ListGroupsRequest(), "admin"
    )


async def test_the_bootstrap_key_is_created_once_and_owner_only(tmp_path: Path) -> None:
    config = make_config(tmp_path, auth=True)
    first = await start_gateway(config)
    await first.stop(0.2)
    key = (tmp_path / "admin.key").read_text()
    assert (tmp_path / "admin.key").stat().st_mode & 0o777 == 0o600
    again = await start_gateway(config)
    try:
        assert (tmp_path / "admin.key").read_text() == key  # an admin exists: nothing new
        async with client_of(again) as client:
            listed = await admin_service_pb2_grpc.AdminServiceStub(client.channel).ListApiKeys(
                admin_service_pb2.ListApiKeysRequest(),
                metadata=(("authorization", f"Bearer {key.strip()}"),),
            )
        assert [k.name for k in listed.api_keys] == ["bootstrap admin"]
    finally:
        await again.stop(0.2)


async def test_concurrent_state_changes_share_audit_commits(world: World) -> None:
    before = len(await _audit(world))
    await asyncio.gather(
        *(
            world.call(
                "/mam.v1.TradingService/SubmitMasterOrder", market_order(world.group_a), "manager"
            )
            for _ in range(20)
        )
    )
    records = (await _audit(world))[before:]
    assert len(records) == 20 and all(r.status == "OK" for r in records)
