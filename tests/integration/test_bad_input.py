"""Bad input gets a clear status with an ErrorInfo reason and a field violation, and stores
nothing."""

from __future__ import annotations

import grpc
import pytest

from gateway._proto.mam.v1 import (
    account_pb2,
    account_service_pb2,
    common_pb2,
    trading_service_pb2,
)
from gateway.api.server import RunningGateway
from tests.conftest import Client
from tests.integration.helpers import create_accounts, create_group, market_order
from tests.support import error_details

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
async def group_id(client: Client) -> str:
    accounts = await create_accounts(client.accounts, ["10000", "20000", "40000"])
    return (await create_group(client.accounts, accounts)).group_id


async def submit_error(client: Client, request: trading_service_pb2.SubmitMasterOrderRequest):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.trading.SubmitMasterOrder(request)
    return error_details(caught.value)


async def assert_nothing_stored(client: Client, gateway: RunningGateway) -> None:
    listed = await client.trading.ListMasterOrders(trading_service_pb2.ListMasterOrdersRequest())
    assert list(listed.master_orders) == []
    assert gateway.store.last_sequence == 0
    for terminal_id in [a.account_id for a in await gateway.accounts.all_accounts()]:
        terminal = gateway.registry.get(terminal_id)
        assert terminal is not None and await terminal.positions() == []


@pytest.mark.parametrize(
    ("volume", "description"),
    [
        ("", "is required"),
        ("abc", "must be a decimal number"),
        ("1e2", "must be a decimal number"),
        ("NaN", "must be a decimal number"),
        ("0", "must be greater than 0"),
        ("-1.00", "must be greater than 0"),
        ("1000000", "above the gateway's limit"),
        ("99999999999999999999999999999999", "above the gateway's limit"),
        ("1.005", "not a multiple of the volume step"),
    ],
)
async def test_bad_volume_is_invalid_argument_naming_order_volume(
    client: Client, gateway: RunningGateway, group_id: str, volume: str, description: str
) -> None:
    details = await submit_error(client, market_order(group_id, volume=volume))
    assert details.code is INVALID
    assert description in details.field_violations["order.volume"]
    assert details.reason in {"INVALID_ARGUMENT", "INVALID_VOLUME"}
    await assert_nothing_stored(client, gateway)


async def test_unknown_symbol_is_invalid_argument_naming_order_symbol(
    client: Client, gateway: RunningGateway, group_id: str
) -> None:
    details = await submit_error(client, market_order(group_id, symbol="NOPE"))
    assert details.code is INVALID
    assert details.reason == "UNKNOWN_SYMBOL"
    assert "unknown symbol 'NOPE'" in details.field_violations["order.symbol"]
    await assert_nothing_stored(client, gateway)


async def test_unspecified_side_and_type_are_both_reported(
    client: Client, gateway: RunningGateway, group_id: str
) -> None:
    request = market_order(group_id)
    request.order.side = common_pb2.SIDE_UNSPECIFIED
    request.order.type = common_pb2.ORDER_TYPE_UNSPECIFIED
    details = await submit_error(client, request)
    assert details.code is INVALID
    assert set(details.field_violations) == {"order.side", "order.type"}
    await assert_nothing_stored(client, gateway)


async def test_missing_order_reports_every_required_field(
    client: Client, gateway: RunningGateway
) -> None:
    details = await submit_error(client, trading_service_pb2.SubmitMasterOrderRequest())
    assert details.code is INVALID
    assert {"order.group_id", "order.symbol", "order.side", "order.type", "order.volume"} <= set(
        details.field_violations
    )


async def test_unknown_group_is_not_found(client: Client, gateway: RunningGateway) -> None:
    details = await submit_error(client, market_order("grp_DOESNOTEXIST"))
    assert details.code is grpc.StatusCode.NOT_FOUND
    assert details.reason == "GROUP_NOT_FOUND"
    await assert_nothing_stored(client, gateway)


async def test_unknown_account_is_not_found(client: Client) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.accounts.GetAccount(account_service_pb2.GetAccountRequest(account_id="acc_X"))
    details = error_details(caught.value)
    assert details.code is grpc.StatusCode.NOT_FOUND
    assert details.reason == "ACCOUNT_NOT_FOUND"


async def test_group_with_unknown_member_is_not_found_and_not_created(client: Client) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.accounts.CreateGroup(
            account_service_pb2.CreateGroupRequest(
                group=account_pb2.Group(
                    name="ghosts", members=[account_pb2.GroupMember(account_id="acc_GHOST")]
                )
            )
        )
    assert error_details(caught.value).code is grpc.StatusCode.NOT_FOUND
    groups = await client.accounts.ListGroups(account_service_pb2.ListGroupsRequest())
    assert list(groups.groups) == []


async def test_unknown_master_order_is_not_found(client: Client) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.trading.GetMasterOrder(
            trading_service_pb2.GetMasterOrderRequest(master_order_id="mo_NOPE")
        )
    details = error_details(caught.value)
    assert (details.code, details.reason) == (grpc.StatusCode.NOT_FOUND, "MASTER_ORDER_NOT_FOUND")


async def test_bad_account_fields_are_each_reported_and_nothing_is_created(
    client: Client,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.accounts.CreateAccount(
            account_service_pb2.CreateAccountRequest(
                account=account_pb2.Account(
                    platform=common_pb2.PLATFORM_SIMULATED,
                    currency="dollars",
                    leverage=100000,
                    simulated=account_pb2.SimulatedAccount(initial_balance="lots"),
                )
            )
        )
    details = error_details(caught.value)
    assert details.code is INVALID
    assert set(details.field_violations) == {
        "account.name",
        "account.login",
        "account.currency",
        "account.leverage",
        "account.simulated.initial_balance",
    }
    listed = await client.accounts.ListAccounts(account_service_pb2.ListAccountsRequest())
    assert list(listed.accounts) == []


async def test_duplicate_account_name_is_already_exists(client: Client) -> None:
    await create_accounts(client.accounts, ["1000"], prefix="same")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create_accounts(client.accounts, ["1000"], prefix="same", first_login=80000)
    details = error_details(caught.value)
    assert (details.code, details.reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "ACCOUNT_NAME_TAKEN",
    )


async def test_garbage_page_token_is_invalid_argument(client: Client) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.accounts.ListAccounts(
            account_service_pb2.ListAccountsRequest(page_token="not-a-token")
        )
    details = error_details(caught.value)
    assert details.code is INVALID
    assert "page_token" in details.field_violations


async def test_delete_account_without_an_id_is_a_field_violation(client: Client) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.accounts.DeleteAccount(account_service_pb2.DeleteAccountRequest())
    details = error_details(caught.value)
    assert details.code is INVALID
    assert set(details.field_violations) == {"account_id"}


async def test_a_fill_sequence_beyond_64_bits_is_a_field_violation(client: Client) -> None:
    stream = client.trading.SubscribeFills(
        trading_service_pb2.SubscribeFillsRequest(after_sequence=2**64 - 1)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream.read()
    details = error_details(caught.value)
    assert details.code is INVALID
    assert set(details.field_violations) == {"after_sequence"}


async def test_a_magic_number_beyond_what_mt4_accepts_is_a_field_violation(
    client: Client,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.accounts.CreateGroup(
            account_service_pb2.CreateGroupRequest(group=account_pb2.Group(name="g", magic=2**31))
        )
    details = error_details(caught.value)
    assert details.code is INVALID
    assert set(details.field_violations) == {"group.magic"}
