"""mam.v1.AccountService."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from google.protobuf import field_mask_pb2

from gateway._proto.mam.v1 import account_pb2
from gateway._proto.mam.v1 import account_service_pb2 as pb
from gateway._proto.mam.v1 import account_service_pb2_grpc as pb_grpc
from gateway.api import requests
from gateway.api.access_interceptor import current_principal
from gateway.api.errors import NotYetAvailable
from gateway.api.mapping import account_to_proto, group_to_proto, stop_out_to_proto
from gateway.api.stream_registry import StreamRegistry, current_stream
from gateway.domain.access import Role
from gateway.domain.accounts import Group
from gateway.domain.errors import FieldViolation, InvalidArgument, Unavailable
from gateway.domain.group_source import DEFAULT_MAX_SIGNAL_AGE, GroupSource
from gateway.domain.ids import AccountId, GroupId
from gateway.domain.stop_outs import RecordedStopOut, WatchKind
from gateway.engine.account_manager import AccountManager
from gateway.engine.source_watcher import SourceWatchers
from gateway.engine.stop_out_board import StopOutBoard

Context = Any
T = TypeVar("T")

GROUP_UPDATABLE = frozenset(
    {
        "name",
        "members",
        "allocation",
        "allocation.method",
        "allocation.below_min_policy",
        "allocation.reference_equity",
        "allocation.reference_account_id",
        "risk_limits",
        "violation_policy",
        "loss_limits",
    }
)
ACCOUNT_UPDATABLE = frozenset(
    {
        "name",
        "state",
        "loss_limits",
        "loss_limits.daily_loss",
        "loss_limits.max_drawdown",
        "loss_limits.day_time_zone",
        "loss_limits.daily_stop_out_needs_reset",
    }
)


class AccountServicer(pb_grpc.AccountServiceServicer):
    def __init__(
        self,
        accounts: AccountManager,
        *,
        stop_outs: StopOutBoard | None = None,
        heartbeat_s: float = 5.0,
        streams: StreamRegistry | None = None,
        sources: SourceWatchers | None = None,
    ) -> None:
        self._accounts = accounts
        self._stop_outs = stop_outs
        self._heartbeat_s = heartbeat_s
        # Told when accounts leave groups, so open streams stop showing them at once.
        self._streams = streams
        # Told when a group's source is set or removed, so that its watch reads it again now.
        self._sources = sources

    async def WatchStopOuts(
        self, request: pb.WatchStopOutsRequest, context: Context
    ) -> AsyncIterator[pb.WatchStopOutsResponse]:
        """The active stop-outs in scope, then each one that begins or ends."""
        if self._stop_outs is None:
            raise NotYetAvailable("stop-outs are not watched by this gateway")
        if request.account_id and request.group_id:
            raise InvalidArgument(
                [FieldViolation("group_id", "give account_id or group_id, not both")]
            )
        accounts: frozenset[str] | None = None
        groups: frozenset[str] | None = None
        if request.account_id:
            await self._accounts.get_account(
                AccountId(requests.required_id(request.account_id, "account_id"))
            )
            accounts, groups = frozenset({request.account_id}), frozenset()
        elif request.group_id:
            group = await self._accounts.get_group(
                GroupId(requests.required_id(request.group_id, "group_id"))
            )
            accounts, groups = frozenset(group.account_ids), frozenset({group.group_id})
        stream = current_stream()
        if stream is not None and accounts:

            def narrow(kept: frozenset[str]) -> None:
                nonlocal accounts
                accounts = kept

            # An account leaving the key's reach ends a watch that named it and is dropped
            # from a group's watch (docs/access-control.md).
            accounts = await stream.scope_to(
                accounts, explicit=bool(request.account_id), narrow=narrow
            )

        def wanted(stop_out: RecordedStopOut) -> bool:
            if accounts is None or groups is None:
                return True
            if stop_out.kind is WatchKind.ACCOUNT:
                return stop_out.subject_id in accounts
            return stop_out.subject_id in groups

        # Following starts before the active ones are read: nothing falls in between.
        follower = self._stop_outs.feed.follow()
        if stream is not None:
            stream.on_end(functools.partial(self._stop_outs.feed.leave, follower))
        try:
            for stop_out in self._stop_outs.active:
                if wanted(stop_out):
                    yield pb.WatchStopOutsResponse(stop_out=stop_out_to_proto(stop_out))
            while True:
                try:
                    stop_out = await asyncio.wait_for(follower.queue.get(), self._heartbeat_s)
                except TimeoutError:
                    if follower.dropped:
                        raise Unavailable(
                            "this stream fell behind; watch again", reason="FELL_BEHIND"
                        ) from None
                    heartbeat = pb.WatchStopOutsResponse()
                    heartbeat.heartbeat_time.GetCurrentTime()
                    yield heartbeat
                    continue
                if wanted(stop_out):
                    yield pb.WatchStopOutsResponse(stop_out=stop_out_to_proto(stop_out))
        finally:
            self._stop_outs.feed.leave(follower)

    async def CreateAccount(
        self, request: pb.CreateAccountRequest, context: Context
    ) -> pb.CreateAccountResponse:
        new, loss_limits = requests.account_with_risk(request.account)
        account = await self._accounts.create_account(new)
        if loss_limits is not None:
            account = await self._accounts.update_account(
                account.account_id, name=account.name, state=account.state, loss_limits=loss_limits
            )
        return pb.CreateAccountResponse(
            account=account_to_proto(account, self._accounts.account_risk(account.account_id))
        )

    async def GetAccount(
        self, request: pb.GetAccountRequest, context: Context
    ) -> pb.GetAccountResponse:
        account_id = AccountId(requests.required_id(request.account_id, "account_id"))
        account = await self._accounts.get_account(account_id)
        return pb.GetAccountResponse(
            account=account_to_proto(account, self._accounts.account_risk(account_id))
        )

    async def ListAccounts(
        self, request: pb.ListAccountsRequest, context: Context
    ) -> pb.ListAccountsResponse:
        limit = requests.page_size(request.page_size, default=100, maximum=1000)
        after = requests.decode_page_token(request.page_token)
        # A manager lists its groups' members, an investor its own accounts.
        principal = current_principal()
        page = await self._accounts.list_accounts(
            after=after,
            limit=limit + 1,
            group_id=request.group_id,
            within_groups=principal.group_ids if principal.role is Role.MANAGER else None,
            within_accounts=principal.account_ids if principal.role is Role.INVESTOR else None,
        )
        rows, token = requests.split_page(page, limit, lambda a: a.account_id)
        return pb.ListAccountsResponse(
            accounts=[account_to_proto(a, self._accounts.account_risk(a.account_id)) for a in rows],
            next_page_token=token,
        )

    async def UpdateAccount(
        self, request: pb.UpdateAccountRequest, context: Context
    ) -> pb.UpdateAccountResponse:
        account_id = AccountId(
            requests.required_id(request.account.account_id, "account.account_id")
        )
        paths = requests.update_paths(request.update_mask, ACCOUNT_UPDATABLE)
        current = await self._accounts.get_account(account_id)
        # The stored account with the masked fields replaced, validated as a whole.
        merged = account_to_proto(current, self._accounts.account_risk(account_id))
        mask = field_mask_pb2.FieldMask(paths=paths)
        mask.MergeMessage(
            request.account, merged, replace_message_field=True, replace_repeated_field=True
        )
        update = requests.account_update(merged)
        account = await self._accounts.update_account(
            account_id, name=update.name, state=update.state, loss_limits=update.loss_limits
        )
        return pb.UpdateAccountResponse(
            account=account_to_proto(account, self._accounts.account_risk(account_id))
        )

    async def DeleteAccount(
        self, request: pb.DeleteAccountRequest, context: Context
    ) -> pb.DeleteAccountResponse:
        """Retires a flat account (AccountManager.delete_account); its history stays readable
        through ReportingService, while AccountService answers NOT_FOUND for it from now on."""
        account_id = AccountId(requests.required_id(request.account_id, "account_id"))
        await self._accounts.delete_account(account_id)
        if self._streams is not None:
            await self._streams.accounts_left([account_id])
        return pb.DeleteAccountResponse()

    async def CreateGroup(
        self, request: pb.CreateGroupRequest, context: Context
    ) -> pb.CreateGroupResponse:
        new, risk = requests.group_with_risk(request.group)
        group = await self._accounts.create_group(new, risk)
        return pb.CreateGroupResponse(group=await self._group_message(group))

    async def GetGroup(self, request: pb.GetGroupRequest, context: Context) -> pb.GetGroupResponse:
        group_id = GroupId(requests.required_id(request.group_id, "group_id"))
        group = await self._accounts.get_group(group_id)
        return pb.GetGroupResponse(group=await self._group_message(group))

    async def _group_message(self, group: Group) -> account_pb2.Group:
        """The group as answered: with its risk settings and its source."""
        source = await self._accounts.group_source(group.group_id)
        return self._group_with(group, source)

    def _group_with(self, group: Group, source: GroupSource | None) -> account_pb2.Group:
        return group_to_proto(group, self._accounts.group_risk(group.group_id), source)

    async def ListGroups(
        self, request: pb.ListGroupsRequest, context: Context
    ) -> pb.ListGroupsResponse:
        limit = requests.page_size(request.page_size, default=100, maximum=1000)
        after = requests.decode_page_token(request.page_token)
        principal = current_principal()
        page = await self._accounts.list_groups(
            after=after,
            limit=limit + 1,
            within=None if principal.is_admin else principal.group_ids,
        )
        rows, token = requests.split_page(page, limit, lambda g: g.group_id)
        sources = await self._accounts.group_sources() if rows else {}
        return pb.ListGroupsResponse(
            groups=[
                group_to_proto(g, self._accounts.group_risk(g.group_id), sources.get(g.group_id))
                for g in rows
            ],
            next_page_token=token,
        )

    async def UpdateGroup(
        self, request: pb.UpdateGroupRequest, context: Context
    ) -> pb.UpdateGroupResponse:
        group_id = GroupId(requests.required_id(request.group.group_id, "group.group_id"))
        paths = requests.update_paths(request.update_mask, GROUP_UPDATABLE)
        current = await self._accounts.get_group(group_id)
        # The stored group with the masked fields replaced, validated as a whole as on create.
        merged = group_to_proto(current, self._accounts.group_risk(group_id))
        mask = field_mask_pb2.FieldMask(paths=paths)
        mask.MergeMessage(
            request.group, merged, replace_message_field=True, replace_repeated_field=True
        )
        new, risk = requests.group_with_risk(merged)
        group = await self._accounts.update_group(group_id, new, risk)
        if self._streams is not None:
            await self._streams.group_changed(group_id)
        return pb.UpdateGroupResponse(group=await self._group_message(group))

    async def SetGroupSource(
        self, request: pb.SetGroupSourceRequest, context: Context
    ) -> pb.SetGroupSourceResponse:
        """The group's source set, or the masked fields of it changed; the group's watch
        reads it again at once."""
        update = requests.source_update(request)
        await self._accounts.get_group(update.group_id)
        current = await self._accounts.group_source(update.group_id)
        account_id = update.account_id or (current.account_id if current else None)
        if account_id is None:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "source.account_id",
                        "is required: the group has no source yet (name account_id in the mask)",
                    )
                ]
            )
        group, source = await self._accounts.set_group_source(
            update.group_id,
            account_id=account_id,
            paused=_kept(update.paused, current.paused if current else False),
            max_signal_age=_kept(
                update.max_signal_age,
                current.max_signal_age if current else DEFAULT_MAX_SIGNAL_AGE,
            ),
        )
        await self._source_changed(group.group_id)
        return pb.SetGroupSourceResponse(group=self._group_with(group, source))

    async def RemoveGroupSource(
        self, request: pb.RemoveGroupSourceRequest, context: Context
    ) -> pb.RemoveGroupSourceResponse:
        group_id = GroupId(requests.required_id(request.group_id, "group_id"))
        group = await self._accounts.remove_group_source(group_id)
        await self._source_changed(group_id)
        return pb.RemoveGroupSourceResponse(group=self._group_with(group, None))

    async def _source_changed(self, group_id: GroupId) -> None:
        if self._sources is not None:
            self._sources.source_changed(group_id)
        if self._streams is not None:
            # A manager's reach holds its groups' sources: a replaced one leaves it.
            await self._streams.group_changed(group_id)

    async def ResetStopOut(
        self, request: pb.ResetStopOutRequest, context: Context
    ) -> pb.ResetStopOutResponse:
        kind, subject_id = _subject(request)
        rules = requests.loss_rules(request)
        by = current_principal().actor
        lifted = await self._accounts.reset_stop_out(kind, subject_id, rules, by=by)
        return pb.ResetStopOutResponse(stop_outs=[stop_out_to_proto(s) for s in lifted])

    async def ListStopOuts(
        self, request: pb.ListStopOutsRequest, context: Context
    ) -> pb.ListStopOutsResponse:
        limit = requests.page_size(request.page_size, default=100, maximum=1000)
        before = requests.decode_page_token(request.page_token)
        kind: WatchKind | None = None
        subject_id = ""
        if request.account_id and request.group_id:
            raise InvalidArgument(
                [FieldViolation("group_id", "give account_id or group_id, not both")]
            )
        if request.account_id:
            kind = WatchKind.ACCOUNT
            subject_id = requests.required_id(request.account_id, "account_id")
        elif request.group_id:
            kind = WatchKind.GROUP
            subject_id = requests.required_id(request.group_id, "group_id")
        page = await self._accounts.list_stop_outs(
            before=before,
            limit=limit + 1,
            kind=kind,
            subject_id=subject_id,
            active_only=request.active_only,
        )
        rows, token = requests.split_page(page, limit, lambda s: s.stop_out_id)
        return pb.ListStopOutsResponse(
            stop_outs=[stop_out_to_proto(s) for s in rows], next_page_token=token
        )


def _kept(given: T | None, current: T) -> T:
    return current if given is None else given


def _subject(request: pb.ResetStopOutRequest) -> tuple[WatchKind, str]:
    which = request.WhichOneof("subject")
    if which == "group_id":
        return WatchKind.GROUP, requests.required_id(request.group_id, "group_id")
    if which == "account_id":
        return WatchKind.ACCOUNT, requests.required_id(request.account_id, "account_id")
    raise InvalidArgument(
        [FieldViolation("account_id", "one of account_id or group_id is required")]
    )
