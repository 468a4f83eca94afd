"""A member's copy options through the API: written with the group (CreateGroup, UpdateGroup),
answered as they were given (GetGroup, ListGroups, the writes' answers), and refused field by
field when wrong, with nothing stored. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2

from gateway._proto.mam.v1 import account_pb2, account_service_pb2
from gateway.api.server import start_gateway
from tests.conftest import Client, client_of
from tests.integration.helpers import create_accounts
from tests.support import ErrorDetails, error_details, make_config

M = account_pb2
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def seconds(value: int, nanos: int = 0) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=value, nanos=nanos)


# Every option away from its default.
EVERY_OPTION = M.CopyOptions(
    reverse=True,
    direction=M.COPY_DIRECTION_SELL_ONLY,
    skip_stops=True,
    skip_pending_orders=True,
    min_volume="0.05",
    min_volume_policy=M.MIN_VOLUME_POLICY_RAISE,
    max_slippage_points=30,
    max_signal_age=seconds(5, 250_000_000),
)


async def create_group(client: Client, group: account_pb2.Group) -> account_pb2.Group:
    request = account_service_pb2.CreateGroupRequest(group=group)
    return (await client.accounts.CreateGroup(request)).group


async def get_group(client: Client, group_id: str) -> account_pb2.Group:
    request = account_service_pb2.GetGroupRequest(group_id=group_id)
    return (await client.accounts.GetGroup(request)).group


async def update_group(client: Client, group: account_pb2.Group, *paths: str) -> Any:
    return await client.accounts.UpdateGroup(
        account_service_pb2.UpdateGroupRequest(
            group=group, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
        )
    )


async def refused(call: Any, request: Any) -> ErrorDetails:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(request)
    return error_details(caught.value)


def options_of(group: account_pb2.Group) -> list[account_pb2.CopyOptions | None]:
    return [m.copy_options if m.HasField("copy_options") else None for m in group.members]


async def test_copy_options_come_back_as_given_from_every_read_and_write(client: Client) -> None:
    accounts = await create_accounts(client.accounts, ["1000", "2000", "3000"])
    ids = [a.account_id for a in accounts]
    # 0 slippage points is a limit, not "unset"; a reversed-only member leaves the rest default.
    zero_slippage = M.CopyOptions(max_slippage_points=0, close_only=True)
    created = await create_group(
        client,
        M.Group(
            name="copiers",
            members=[
                M.GroupMember(account_id=ids[0], copy_options=EVERY_OPTION),
                M.GroupMember(account_id=ids[1], copy_options=zero_slippage),
                M.GroupMember(account_id=ids[2]),
            ],
        ),
    )
    # Enums come back named (BOTH and SKIP for the ones left unspecified).
    answered_zero = M.CopyOptions(
        direction=M.COPY_DIRECTION_BOTH,
        min_volume_policy=M.MIN_VOLUME_POLICY_SKIP,
        max_slippage_points=0,
        close_only=True,
    )
    expected = [EVERY_OPTION, answered_zero, None]
    assert options_of(created) == expected
    assert created.members[1].copy_options.HasField("max_slippage_points")
    assert not created.members[1].copy_options.HasField("max_signal_age")
    assert options_of(await get_group(client, created.group_id)) == expected
    listed = await client.accounts.ListGroups(account_service_pb2.ListGroupsRequest())
    assert [options_of(g) for g in listed.groups] == [expected]

    # Options all at their defaults are no options: the member copies every order as it is.
    defaults = M.CopyOptions(
        direction=M.COPY_DIRECTION_BOTH, min_volume_policy=M.MIN_VOLUME_POLICY_SKIP
    )
    reversed_only = M.CopyOptions(reverse=True)
    members = [
        M.GroupMember(account_id=ids[2], copy_options=reversed_only),
        M.GroupMember(account_id=ids[0], copy_options=defaults),
    ]
    updated = await update_group(
        client, M.Group(group_id=created.group_id, members=members), "members"
    )
    answered_reversed = M.CopyOptions(
        reverse=True, direction=M.COPY_DIRECTION_BOTH, min_volume_policy=M.MIN_VOLUME_POLICY_SKIP
    )
    assert options_of(updated.group) == [answered_reversed, None]
    assert [m.account_id for m in updated.group.members] == [ids[2], ids[0]]

    # The options travel with the members: an update of anything else keeps them.
    renamed = await update_group(client, M.Group(group_id=created.group_id, name="renamed"), "name")
    assert renamed.group.name == "renamed"
    assert options_of(renamed.group) == [answered_reversed, None]
    assert options_of(await get_group(client, created.group_id)) == [answered_reversed, None]


async def test_copy_options_are_read_back_from_the_database_after_a_restart(
    tmp_path: Path, database_url: str
) -> None:
    config = make_config(tmp_path, database_url=database_url)
    first = await start_gateway(config)
    try:
        async with client_of(first) as client:
            [account] = await create_accounts(client.accounts, ["1000"])
            member = M.GroupMember(account_id=account.account_id, copy_options=EVERY_OPTION)
            created = await create_group(client, M.Group(name="kept", members=[member]))
    finally:
        await first.stop(0.5)
    again = await start_gateway(config)
    try:
        async with client_of(again) as client:
            assert options_of(await get_group(client, created.group_id)) == [EVERY_OPTION]
    finally:
        await again.stop(0.5)


# (the options of the group's second member, the field at fault, part of its description)
BAD_OPTIONS = [
    (M.CopyOptions(min_volume="abc"), "min_volume", "must be a decimal number"),
    (M.CopyOptions(min_volume="1e-2"), "min_volume", "must be a decimal number"),
    (M.CopyOptions(min_volume="0"), "min_volume", "must be > 0"),
    (M.CopyOptions(min_volume="-0.01"), "min_volume", "must be > 0"),
    (M.CopyOptions(min_volume="100000.01"), "min_volume", "at most 100000"),
    (
        M.CopyOptions(min_volume_policy=M.MIN_VOLUME_POLICY_RAISE),
        "min_volume_policy",
        "needs a min_volume",
    ),
    (M.CopyOptions(min_volume_policy=9), "min_volume_policy", "unknown"),
    (M.CopyOptions(direction=7), "direction", "unknown"),
    (M.CopyOptions(max_slippage_points=-1), "max_slippage_points", "must be in [0, 1000000]"),
    (M.CopyOptions(max_slippage_points=1_000_001), "max_slippage_points", "must be in"),
    (M.CopyOptions(max_signal_age=seconds(0)), "max_signal_age", "must be > 0"),
    (M.CopyOptions(max_signal_age=seconds(-5)), "max_signal_age", "must be > 0"),
    (M.CopyOptions(max_signal_age=seconds(7 * 86_400 + 1)), "max_signal_age", "at most 7 days"),
    (
        M.CopyOptions(close_only=True, direction=M.COPY_DIRECTION_BUY_ONLY),
        "direction",
        "close-only",
    ),
]


@pytest.mark.parametrize(("options", "field", "description"), BAD_OPTIONS)
async def test_a_bad_copy_option_is_refused_by_create_naming_its_field_and_nothing_is_stored(
    client: Client, options: account_pb2.CopyOptions, field: str, description: str
) -> None:
    accounts = await create_accounts(client.accounts, ["1000", "2000"])
    details = await refused(
        client.accounts.CreateGroup,
        account_service_pb2.CreateGroupRequest(
            group=M.Group(
                name="bad",
                members=[
                    M.GroupMember(account_id=accounts[0].account_id, copy_options=EVERY_OPTION),
                    M.GroupMember(account_id=accounts[1].account_id, copy_options=options),
                ],
            )
        ),
    )
    assert details.code is INVALID
    assert details.reason == "INVALID_ARGUMENT"
    assert list(details.field_violations) == [f"group.members[1].copy_options.{field}"]
    assert description in details.field_violations[f"group.members[1].copy_options.{field}"]
    listed = await client.accounts.ListGroups(account_service_pb2.ListGroupsRequest())
    assert list(listed.groups) == []


@pytest.mark.parametrize(("options", "field", "description"), BAD_OPTIONS)
async def test_a_bad_copy_option_is_refused_by_update_and_the_group_is_left_as_it_was(
    client: Client, options: account_pb2.CopyOptions, field: str, description: str
) -> None:
    accounts = await create_accounts(client.accounts, ["1000", "2000"])
    ids = [a.account_id for a in accounts]
    group = await create_group(
        client, M.Group(name="kept", members=[M.GroupMember(account_id=ids[0])])
    )
    members = [
        M.GroupMember(account_id=ids[0], copy_options=EVERY_OPTION),
        M.GroupMember(account_id=ids[1], copy_options=options),
    ]
    request = account_service_pb2.UpdateGroupRequest(
        group=M.Group(group_id=group.group_id, members=members),
        update_mask=field_mask_pb2.FieldMask(paths=["members"]),
    )
    details = await refused(client.accounts.UpdateGroup, request)
    assert details.code is INVALID
    assert description in details.field_violations[f"group.members[1].copy_options.{field}"]
    assert await get_group(client, group.group_id) == group


async def test_a_min_volume_above_the_members_max_lots_is_refused(client: Client) -> None:
    [account] = await create_accounts(client.accounts, ["1000"])
    details = await refused(
        client.accounts.CreateGroup,
        account_service_pb2.CreateGroupRequest(
            group=M.Group(
                name="bad",
                members=[
                    M.GroupMember(
                        account_id=account.account_id,
                        max_lots="0.50",
                        copy_options=M.CopyOptions(min_volume="0.60"),
                    )
                ],
            )
        ),
    )
    assert details.code is INVALID
    assert (
        "above the member's max_lots 0.50"
        in (details.field_violations["group.members[0].copy_options.min_volume"])
    )


async def test_every_bad_copy_option_of_a_request_is_reported_at_once(client: Client) -> None:
    accounts = await create_accounts(client.accounts, ["1000", "2000"])
    details = await refused(
        client.accounts.CreateGroup,
        account_service_pb2.CreateGroupRequest(
            group=M.Group(
                name="bad",
                members=[
                    M.GroupMember(
                        account_id=accounts[0].account_id,
                        copy_options=M.CopyOptions(
                            min_volume="0", max_slippage_points=-3, max_signal_age=seconds(0)
                        ),
                    ),
                    M.GroupMember(
                        account_id=accounts[1].account_id,
                        copy_options=M.CopyOptions(min_volume_policy=M.MIN_VOLUME_POLICY_RAISE),
                    ),
                ],
            )
        ),
    )
    assert sorted(details.field_violations) == [
        "group.members[0].copy_options.max_signal_age",
        "group.members[0].copy_options.max_slippage_points",
        "group.members[0].copy_options.min_volume",
        "group.members[1].copy_options.min_volume_policy",
    ]


async def test_a_max_signal_age_outside_the_duration_range_is_refused_as_a_bad_time(
    client: Client,
) -> None:
    [account] = await create_accounts(client.accounts, ["1000"])
    options = M.CopyOptions(max_signal_age=seconds(1, -5))  # opposite signs
    details = await refused(
        client.accounts.CreateGroup,
        account_service_pb2.CreateGroupRequest(
            group=M.Group(
                name="bad",
                members=[M.GroupMember(account_id=account.account_id, copy_options=options)],
            )
        ),
    )
    assert details.code is INVALID
    assert details.reason == "INVALID_TIME"
    assert (
        "opposite signs" in details.field_violations["group.members[0].copy_options.max_signal_age"]
    )
