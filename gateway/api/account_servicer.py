"""mam.v1.AccountService."""

from __future__ import annotations

from typing import Any

from google.protobuf import field_mask_pb2

from gateway._proto.mam.v1 import account_service_pb2 as pb
from gateway._proto.mam.v1 import account_service_pb2_grpc as pb_grpc
from gateway.api import requests
from gateway.api.errors import NotYetAvailable
from gateway.api.mapping import account_to_proto, group_to_proto
from gateway.engine.account_manager import AccountManager

Context = Any

GROUP_UPDATABLE = frozenset(
    {
        "name",
        "members",
        "allocation",
        "allocation.method",
        "allocation.below_min_policy",
        "allocation.reference_equity",
        "allocation.reference_account_id",
    }
)


class AccountServicer(pb_grpc.AccountServiceServicer):
    def __init__(self, accounts: AccountManager) -> None:
        self._accounts = accounts

    async def CreateAccount(
        self, request: pb.CreateAccountRequest, context: Context
    ) -> pb.CreateAccountResponse:
        new = requests.new_account(request.account)
        account = await self._accounts.create_account(new)
        return pb.CreateAccountResponse(account=account_to_proto(account))

    async def GetAccount(
        self, request: pb.GetAccountRequest, context: Context
    ) -> pb.GetAccountResponse:
        account_id = requests.required_id(request.account_id, "account_id")
        account = await self._accounts.get_account(account_id)
        return pb.GetAccountResponse(account=account_to_proto(account))

    async def ListAccounts(
        self, request: pb.ListAccountsRequest, context: Context
    ) -> pb.ListAccountsResponse:
        limit = requests.page_size(request.page_size, default=100, maximum=1000)
        after = requests.decode_page_token(request.page_token)
        page = await self._accounts.list_accounts(
            after=after, limit=limit + 1, group_id=request.group_id
        )
        rows, token = requests.split_page(page, limit, lambda a: a.account_id)
        return pb.ListAccountsResponse(
            accounts=[account_to_proto(a) for a in rows], next_page_token=token
        )

    async def UpdateAccount(
        self, request: pb.UpdateAccountRequest, context: Context
    ) -> pb.UpdateAccountResponse:
        raise NotYetAvailable("UpdateAccount is not available in this version")

    async def DeleteAccount(
        self, request: pb.DeleteAccountRequest, context: Context
    ) -> pb.DeleteAccountResponse:
        raise NotYetAvailable("DeleteAccount is not available in this version")

    async def CreateGroup(
        self, request: pb.CreateGroupRequest, context: Context
    ) -> pb.CreateGroupResponse:
        new = requests.new_group(request.group)
        group = await self._accounts.create_group(new)
        return pb.CreateGroupResponse(group=group_to_proto(group))

    async def GetGroup(self, request: pb.GetGroupRequest, context: Context) -> pb.GetGroupResponse:
        group_id = requests.required_id(request.group_id, "group_id")
        group = await self._accounts.get_group(group_id)
        return pb.GetGroupResponse(group=group_to_proto(group))

    async def ListGroups(
        self, request: pb.ListGroupsRequest, context: Context
    ) -> pb.ListGroupsResponse:
        limit = requests.page_size(request.page_size, default=100, maximum=1000)
        after = requests.decode_page_token(request.page_token)
        page = await self._accounts.list_groups(after=after, limit=limit + 1)
        rows, token = requests.split_page(page, limit, lambda g: g.group_id)
        return pb.ListGroupsResponse(
            groups=[group_to_proto(g) for g in rows], next_page_token=token
        )

    async def UpdateGroup(
        self, request: pb.UpdateGroupRequest, context: Context
    ) -> pb.UpdateGroupResponse:
        group_id = requests.required_id(request.group.group_id, "group.group_id")
        paths = requests.update_paths(request.update_mask, GROUP_UPDATABLE)
        current = await self._accounts.get_group(group_id)
        # The stored group with the masked fields replaced, validated as a whole as on create.
        merged = group_to_proto(current)
        mask = field_mask_pb2.FieldMask(paths=paths)
        mask.MergeMessage(
            request.group, merged, replace_message_field=True, replace_repeated_field=True
        )
        group = await self._accounts.update_group(group_id, requests.new_group(merged))
        return pb.UpdateGroupResponse(group=group_to_proto(group))
