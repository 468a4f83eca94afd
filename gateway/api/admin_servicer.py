"""mam.v1.AdminService: API keys, the audit log and kill switches (admin keys only)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from gateway._proto.mam.v1 import admin_service_pb2 as pb
from gateway._proto.mam.v1 import admin_service_pb2_grpc as pb_grpc
from gateway.api import requests
from gateway.api.access_interceptor import AccessControl, current_principal
from gateway.api.mapping import enum_to_proto, timestamp
from gateway.domain.access import ApiKey, Role, issue_key
from gateway.domain.audit import AuditRecord
from gateway.domain.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Violations,
)
from gateway.domain.ids import AccountId, GroupId
from gateway.domain.kill_switches import KillSwitch, KillSwitchScope
from gateway.engine.group_ownership import GroupOwnership
from gateway.engine.kill_switch_board import KillSwitchBoard
from gateway.store import Store

Context = Any

MAX_REASON = 500
# Ids a key may name: enough for any real desk, small enough to check on every call.
MAX_SCOPE_IDS = 1_000


class AdminServicer(pb_grpc.AdminServiceServicer):
    def __init__(
        self,
        store: Store,
        access: AccessControl,
        kill_switches: KillSwitchBoard,
        clock: Any,
        ownership: GroupOwnership | None = None,
    ) -> None:
        self._store = store
        self._access = access
        self._kill_switches = kill_switches
        self._clock = clock
        self._ownership = ownership

    # -- API keys ---------------------------------------------------------------------------

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: Context
    ) -> pb.CreateApiKeyResponse:
        key = await new_api_key(
            self._store,
            request.api_key,
            created_by=current_principal().actor,
            at=self._clock(),
        )
        issued = issue_key()
        key = replace(key, key_id=issued.key_id, secret_hash=issued.secret_hash)
        await self._store.access.insert_api_key(key)
        return pb.CreateApiKeyResponse(api_key=api_key_to_proto(key), key=issued.key)

    async def ListApiKeys(
        self, request: pb.ListApiKeysRequest, context: Context
    ) -> pb.ListApiKeysResponse:
        limit = requests.page_size(request.page_size, default=100, maximum=1000)
        after = requests.decode_page_token(request.page_token)
        page = await self._store.access.list_api_keys(
            after=after, limit=limit + 1, include_revoked=request.include_revoked
        )
        rows, token = requests.split_page(page, limit, lambda k: k.key_id)
        return pb.ListApiKeysResponse(
            api_keys=[api_key_to_proto(k) for k in rows], next_page_token=token
        )

    async def RevokeApiKey(
        self, request: pb.RevokeApiKeyRequest, context: Context
    ) -> pb.RevokeApiKeyResponse:
        key_id = requests.required_id(request.key_id, "key_id")
        key = await self._store.access.revoke_api_key(
            key_id, self._clock(), current_principal().actor
        )
        if key is None:
            raise NotFound(f"API key {key_id!r} does not exist", reason="API_KEY_NOT_FOUND")
        if self._access.authenticator is not None:
            self._access.authenticator.forget(key_id)
        if self._access.streams is not None:
            # Its open streams end before the revocation is answered, not at their deadlines.
            self._access.streams.key_revoked(key_id)
        return pb.RevokeApiKeyResponse(api_key=api_key_to_proto(key))

    # -- audit log --------------------------------------------------------------------------

    async def ListAuditRecords(
        self, request: pb.ListAuditRecordsRequest, context: Context
    ) -> pb.ListAuditRecordsResponse:
        limit = requests.page_size(request.page_size, default=100, maximum=1000)
        after = _numeric_token(request.page_token)
        since = _time(request, "start_time")
        until = _time(request, "end_time")
        page = await self._store.access.list_audit(
            after_sequence=after,
            limit=limit + 1,
            actor=request.actor,
            method=request.method,
            since=since,
            until=until,
        )
        rows, token = requests.split_page(page, limit, lambda r: str(r.sequence))
        return pb.ListAuditRecordsResponse(
            records=[audit_to_proto(r) for r in rows], next_page_token=token
        )

    # -- kill switches ----------------------------------------------------------------------

    async def ActivateKillSwitch(
        self, request: pb.ActivateKillSwitchRequest, context: Context
    ) -> pb.ActivateKillSwitchResponse:
        message = request.kill_switch
        v = Violations()
        scope = requests.enum_from_proto(
            KillSwitchScope, pb.KillSwitchScope, "KILL_SWITCH_SCOPE", message.scope
        )
        if scope is None:
            v.add("kill_switch.scope", "is required: GLOBAL, GROUP or ACCOUNT")
        target = message.target_id.strip()
        if scope in (KillSwitchScope.GROUP, KillSwitchScope.ACCOUNT) and not target:
            v.add("kill_switch.target_id", f"is required for the {scope.name} scope")
        elif scope is KillSwitchScope.GLOBAL and target:
            v.add("kill_switch.target_id", "must be empty for the GLOBAL scope")
        elif len(target) > requests.MAX_ID:
            v.add("kill_switch.target_id", f"is longer than {requests.MAX_ID} characters")
        reason = message.reason.strip()
        if not reason:
            v.add("kill_switch.reason", "is required: say why, for the record")
        elif len(reason) > MAX_REASON:
            v.add("kill_switch.reason", f"is longer than {MAX_REASON} characters")
        v.raise_if_any()
        assert scope is not None
        switch = await self._kill_switches.activate(
            scope, target, flatten=message.flatten, reason=reason, by=current_principal().actor
        )
        return pb.ActivateKillSwitchResponse(kill_switch=kill_switch_to_proto(switch))

    async def DeactivateKillSwitch(
        self, request: pb.DeactivateKillSwitchRequest, context: Context
    ) -> pb.DeactivateKillSwitchResponse:
        kill_switch_id = requests.required_id(request.kill_switch_id, "kill_switch_id")
        switch = await self._kill_switches.deactivate(kill_switch_id, by=current_principal().actor)
        return pb.DeactivateKillSwitchResponse(kill_switch=kill_switch_to_proto(switch))

    async def ListKillSwitches(
        self, request: pb.ListKillSwitchesRequest, context: Context
    ) -> pb.ListKillSwitchesResponse:
        limit = requests.page_size(request.page_size, default=100, maximum=1000)
        offset = _numeric_token(request.page_token)
        page = await self._store.access.list_kill_switches(
            offset=offset, limit=limit + 1, active_only=request.active_only
        )
        token = requests.encode_page_token(str(offset + limit)) if len(page) > limit else ""
        return pb.ListKillSwitchesResponse(
            kill_switches=[kill_switch_to_proto(s) for s in page[:limit]], next_page_token=token
        )

    # -- cluster --------------------------------------------------------------------------------

    async def GetClusterStatus(
        self, request: pb.GetClusterStatusRequest, context: Context
    ) -> pb.GetClusterStatusResponse:
        ownership = self._ownership
        if ownership is None:
            raise FailedPrecondition(
                "this gateway is not in cluster mode (cluster.enabled): it owns its database alone",
                reason="CLUSTER_MODE_OFF",
            )
        view = await ownership.view()
        held: dict[str, int] = {}
        for lease in view.leases:
            if lease.released_at is None:
                held[lease.node_id] = held.get(lease.node_id, 0) + 1
        return pb.GetClusterStatusResponse(
            nodes=[
                pb.ClusterNode(
                    node_id=n.node_id,
                    host=n.host,
                    pid=n.pid,
                    address=n.address,
                    start_time=timestamp(n.started_at),
                    heartbeat_time=timestamp(n.heartbeat_at),
                    stop_time=timestamp(n.stopped_at),
                    live=n.live,
                    groups_owned=held.get(n.node_id, 0) if n.live else 0,
                    answering=n.node_id == ownership.node_id,
                )
                for n in view.nodes
            ],
            leases=[
                pb.GroupLease(
                    group_id=x.group_id,
                    node_id="" if x.released_at is not None else x.node_id,
                    epoch=x.epoch,
                    acquire_time=timestamp(x.acquired_at),
                    renew_time=timestamp(x.renewed_at),
                    takeovers=x.takeovers,
                )
                for x in view.leases
            ],
            unowned_group_ids=list(view.unleased),
        )


async def new_api_key(store: Store, message: pb.ApiKey, *, created_by: str, at: datetime) -> ApiKey:
    """The validated key a request describes (its secret is issued by the caller)."""
    v = Violations()
    name = message.name.strip()
    if not name:
        v.add("api_key.name", "is required")
    elif len(name) > requests.MAX_NAME:
        v.add("api_key.name", f"is longer than {requests.MAX_NAME} characters")
    role = requests.enum_from_proto(Role, pb.Role, "ROLE", message.role)
    if role is None:
        v.add("api_key.role", "is required: ADMIN, MANAGER or INVESTOR")
    group_ids = frozenset(GroupId(g.strip()) for g in message.group_ids)
    account_ids = frozenset(AccountId(a.strip()) for a in message.account_ids)
    for path, ids in (("api_key.group_ids", group_ids), ("api_key.account_ids", account_ids)):
        if len(ids) > MAX_SCOPE_IDS:
            v.add(path, f"names more than {MAX_SCOPE_IDS} ids")
        if any(not i or len(i) > requests.MAX_ID for i in ids):
            v.add(path, f"ids must be non-empty and at most {requests.MAX_ID} characters")
    if role is Role.MANAGER and not group_ids:
        v.add("api_key.group_ids", "a manager key needs at least one group")
    if role is not Role.MANAGER and group_ids:
        v.add("api_key.group_ids", "only a manager key names groups")
    if role is Role.INVESTOR and not account_ids:
        v.add("api_key.account_ids", "an investor key needs at least one account")
    if role is not Role.INVESTOR and account_ids:
        v.add("api_key.account_ids", "only an investor key names accounts")
    v.raise_if_any()
    assert role is not None
    for group_id in sorted(group_ids):
        if await store.get_group(group_id) is None:
            v.add("api_key.group_ids", f"group {group_id!r} does not exist")
    found = await store.get_accounts(account_ids)
    for account_id in sorted(account_ids - found.keys()):
        v.add("api_key.account_ids", f"account {account_id!r} does not exist")
    v.raise_if_any()
    return ApiKey(
        key_id="",
        name=name,
        role=role,
        secret_hash="",
        created_at=at,
        created_by=created_by,
        group_ids=group_ids,
        account_ids=account_ids,
    )


def _numeric_token(token: str) -> int:
    """The number a page token of this service carries (a sequence or an offset)."""
    text = requests.decode_page_token(token)
    if text and not (text.isdigit() and len(text) <= 19):
        raise InvalidArgument(
            [FieldViolation("page_token", "is not a token from a previous response")]
        )
    return int(text or 0)


def _time(request: Any, field: str) -> datetime | None:
    if not request.HasField(field):
        return None
    value: datetime = getattr(request, field).ToDatetime(tzinfo=UTC)
    return value


def api_key_to_proto(key: ApiKey) -> pb.ApiKey:
    return pb.ApiKey(
        key_id=key.key_id,
        name=key.name,
        role=enum_to_proto(pb.Role, "ROLE", key.role),
        group_ids=sorted(key.group_ids),
        account_ids=sorted(key.account_ids),
        create_time=timestamp(key.created_at),
        created_by=key.created_by,
        revoke_time=timestamp(key.revoked_at),
        revoked_by=key.revoked_by,
    )


def audit_to_proto(record: AuditRecord) -> pb.AuditRecord:
    return pb.AuditRecord(
        sequence=record.sequence,
        time=timestamp(record.at),
        actor=record.actor,
        method=record.method,
        request=record.request,
        status=record.status,
        reason=record.reason,
        result=record.result,
        peer=record.peer,
    )


def kill_switch_to_proto(switch: KillSwitch) -> pb.KillSwitch:
    return pb.KillSwitch(
        kill_switch_id=switch.kill_switch_id,
        scope=enum_to_proto(pb.KillSwitchScope, "KILL_SWITCH_SCOPE", switch.scope),
        target_id=switch.target_id,
        flatten=switch.flatten,
        reason=switch.reason,
        activate_time=timestamp(switch.activated_at),
        activated_by=switch.activated_by,
        deactivate_time=timestamp(switch.deactivated_at),
        deactivated_by=switch.deactivated_by,
        closing_master_order_ids=list(switch.closing_master_order_ids),
    )
