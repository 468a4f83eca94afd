"""DeleteAccount: a flat account leaves the lists, its groups and trading, for good (a restart
keeps it so), while its history stays readable through reporting; an account with anything open,
or whose terminal cannot be asked, is refused and nothing changes."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2

from gateway._proto.mam.v1 import (
    account_pb2,
    account_service_pb2,
    admin_service_pb2,
    admin_service_pb2_grpc,
    common_pb2,
    order_pb2,
    reporting_service_pb2,
    reporting_service_pb2_grpc,
    trading_service_pb2,
    worker_service_pb2,
)
from gateway.api.server import RunningGateway, start_gateway
from gateway.config import GatewayConfig
from tests.conftest import Client, client_of
from tests.integration.helpers import create_accounts, create_group, market_order, open_volume
from tests.support import ErrorDetails, error_details, make_config

NOT_FOUND = grpc.StatusCode.NOT_FOUND
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
POINT = Decimal("0.00001")


def config_for(tmp_path: Path, database_url: str) -> GatewayConfig:
    config = make_config(tmp_path, database_url=database_url)
    return dataclasses.replace(
        config,
        # No history rounds: what reporting finds of a deleted account is its last reading,
        # taken by the deletion itself.
        engine=dataclasses.replace(
            config.engine, history_interval_seconds=0, pending_check_interval_seconds=0.05
        ),
        # The broker's books survive a restart of the gateway, like a real broker's.
        simulator=dataclasses.replace(config.simulator, state_path=tmp_path / "broker.db"),
    )


@pytest.fixture
async def deleting(tmp_path: Path, database_url: str) -> AsyncIterator[RunningGateway]:
    running = await start_gateway(config_for(tmp_path, database_url))
    try:
        yield running
    finally:
        await running.stop(0.5)


async def refusal(call: Awaitable[Any]) -> ErrorDetails:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return error_details(caught.value)


def delete(client: Client, account_id: str) -> Awaitable[Any]:
    return client.accounts.DeleteAccount(
        account_service_pb2.DeleteAccountRequest(account_id=account_id)
    )


async def listed_ids(client: Client) -> set[str]:
    listed = await client.accounts.ListAccounts(account_service_pb2.ListAccountsRequest())
    return {a.account_id for a in listed.accounts}


async def member_ids(client: Client, group_id: str) -> list[str]:
    got = await client.accounts.GetGroup(account_service_pb2.GetGroupRequest(group_id=group_id))
    return [m.account_id for m in got.group.members]


async def deals_of(client: Client, account_id: str) -> list[reporting_service_pb2.AccountDeal]:
    reporting = reporting_service_pb2_grpc.ReportingServiceStub(client.channel)
    page = await reporting.ListAccountDeals(
        reporting_service_pb2.ListAccountDealsRequest(account_id=account_id)
    )
    return list(page.deals)


async def statement_csv(client: Client, account_id: str) -> str:
    reporting = reporting_service_pb2_grpc.ReportingServiceStub(client.channel)
    request = reporting_service_pb2.GetAccountStatementRequest(
        account_id=account_id,
        format=reporting_service_pb2.STATEMENT_FORMAT_CSV,
        start_time=_stamp(datetime(2000, 1, 1, tzinfo=UTC)),
        end_time=_stamp(datetime(2100, 1, 1, tzinfo=UTC)),
    )
    return b"".join([c.data async for c in reporting.GetAccountStatement(request)]).decode()


def _stamp(at: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(at)
    return stamp


async def test_a_flat_account_leaves_lists_groups_and_trading_and_keeps_its_history(
    tmp_path: Path, database_url: str
) -> None:
    config = config_for(tmp_path, database_url)
    running = await start_gateway(config)
    try:
        async with client_of(running) as client:
            accounts = await create_accounts(client.accounts, ["10000", "20000", "30000"])
            ids = [a.account_id for a in accounts]
            gone, kept = ids[0], ids[1:]
            group = await create_group(client.accounts, accounts)
            opened = await client.trading.SubmitMasterOrder(market_order(group.group_id))
            await running.engine.wait_idle()
            await client.trading.CloseMasterPosition(
                trading_service_pb2.CloseMasterPositionRequest(
                    master_order_id=opened.master_order.master_order_id,
                    client_order_id="close-all",
                    fraction="1",
                )
            )
            await running.engine.wait_idle()
            assert await open_volume(running, ids) == 0

            assert await delete(client, gone) == account_service_pb2.DeleteAccountResponse()

            assert await listed_ids(client) == set(kept)
            assert await member_ids(client, group.group_id) == kept
            assert running.registry.get(gone) is None
            for details in (
                await refusal(
                    client.accounts.GetAccount(
                        account_service_pb2.GetAccountRequest(account_id=gone)
                    )
                ),
                await refusal(delete(client, gone)),
            ):
                assert (details.code, details.reason) == (NOT_FOUND, "ACCOUNT_NOT_FOUND")

            # The group's next order is shared among the others only.
            after = await client.trading.SubmitMasterOrder(market_order(group.group_id))
            await running.engine.wait_idle()
            assert {line.account_id for line in after.master_order.allocation.lines} == set(kept)
            got = await client.trading.GetMasterOrder(
                trading_service_pb2.GetMasterOrderRequest(
                    master_order_id=after.master_order.master_order_id
                )
            )
            assert got.master_order.state == order_pb2.MASTER_ORDER_STATE_FILLED
            assert {c.account_id for c in got.master_order.children} == set(kept)

            # Its deals (read at the deletion: no history round ran) and statement stay.
            deals = await deals_of(client, gone)
            assert sorted(d.entry for d in deals) == sorted(
                [worker_service_pb2.DEAL_ENTRY_IN, worker_service_pb2.DEAL_ENTRY_OUT]
            )
            statement = await statement_csv(client, gone)
            assert all(str(d.ticket) in statement for d in deals)

            admin = admin_service_pb2_grpc.AdminServiceStub(client.channel)
            audit = await admin.ListAuditRecords(
                admin_service_pb2.ListAuditRecordsRequest(
                    method="/mam.v1.AccountService/DeleteAccount"
                )
            )
            assert [(r.status, r.reason) for r in audit.records] == [
                ("OK", ""),
                ("NOT_FOUND", "ACCOUNT_NOT_FOUND"),
            ]
            assert gone in audit.records[0].request

            # Nothing takes it back: no group, no reference, no kill switch.
            details = await refusal(
                client.accounts.UpdateGroup(
                    account_service_pb2.UpdateGroupRequest(
                        group=account_pb2.Group(
                            group_id=group.group_id,
                            members=[account_pb2.GroupMember(account_id=i) for i in ids],
                        ),
                        update_mask=field_mask_pb2.FieldMask(paths=["members"]),
                    )
                )
            )
            assert (details.code, details.reason) == (NOT_FOUND, "ACCOUNT_NOT_FOUND")
            assert gone in details.message
            details = await refusal(
                client.accounts.CreateGroup(
                    account_service_pb2.CreateGroupRequest(
                        group=account_pb2.Group(
                            name="with-the-deleted",
                            allocation=account_pb2.AllocationSettings(
                                method=account_pb2.ALLOCATION_METHOD_EQUITY_RATIO,
                                reference_account_id=gone,
                            ),
                            members=[account_pb2.GroupMember(account_id=kept[0])],
                        )
                    )
                )
            )
            assert (details.code, details.reason) == (NOT_FOUND, "ACCOUNT_NOT_FOUND")
            details = await refusal(
                admin.ActivateKillSwitch(
                    admin_service_pb2.ActivateKillSwitchRequest(
                        kill_switch=admin_service_pb2.KillSwitch(
                            scope=admin_service_pb2.KILL_SWITCH_SCOPE_ACCOUNT,
                            target_id=gone,
                            reason="a deleted account trades nothing",
                        )
                    )
                )
            )
            assert (details.code, details.reason) == (NOT_FOUND, "ACCOUNT_NOT_FOUND")

            # Its name is free for a new account.
            reborn = await create_accounts(
                client.accounts, ["5000"], prefix="client", first_login=71001
            )
            assert reborn[0].name == accounts[0].name and reborn[0].account_id != gone
    finally:
        await running.stop(0.5)

    # After a restart on the same database it is still deleted, and not attached.
    running = await start_gateway(config)
    try:
        async with client_of(running) as client:
            assert running.registry.get(gone) is None
            assert gone not in await listed_ids(client)
            assert await member_ids(client, group.group_id) == kept
            details = await refusal(
                client.accounts.GetAccount(account_service_pb2.GetAccountRequest(account_id=gone))
            )
            assert (details.code, details.reason) == (NOT_FOUND, "ACCOUNT_NOT_FOUND")
            assert [d.ticket for d in await deals_of(client, gone)] == [d.ticket for d in deals]
    finally:
        await running.stop(0.5)


async def test_an_account_with_an_open_position_is_refused_and_nothing_changes(
    deleting: RunningGateway,
) -> None:
    async with client_of(deleting) as client:
        accounts = await create_accounts(client.accounts, ["10000", "20000"])
        ids = [a.account_id for a in accounts]
        group = await create_group(client.accounts, accounts)
        await client.trading.SubmitMasterOrder(market_order(group.group_id))
        await deleting.engine.wait_idle()
        terminal = deleting.registry.get(ids[0])
        assert terminal is not None
        positions = await terminal.positions()
        assert positions

        details = await refusal(delete(client, ids[0]))

        assert (details.code, details.reason) == (FAILED_PRECONDITION, "ACCOUNT_NOT_FLAT")
        for position in positions:
            assert f"#{position.ticket} EURUSD BUY {position.volume:f}" in details.message
        assert deleting.registry.get(ids[0]) is terminal
        assert await listed_ids(client) == set(ids)
        assert await member_ids(client, group.group_id) == ids
        await client.accounts.GetAccount(account_service_pb2.GetAccountRequest(account_id=ids[0]))


async def test_an_account_with_a_working_order_is_refused_until_it_is_cancelled(
    deleting: RunningGateway,
) -> None:
    async with client_of(deleting) as client:
        accounts = await create_accounts(client.accounts, ["10000", "20000"])
        ids = [a.account_id for a in accounts]
        group = await create_group(client.accounts, accounts)
        _, ask, _ = deleting.broker.feed.bid_ask("EURUSD")
        submitted = await client.trading.SubmitMasterOrder(
            market_order(
                group.group_id,
                type=common_pb2.ORDER_TYPE_LIMIT,
                price=str(ask - 300 * POINT),
                filling_policy=common_pb2.FILLING_POLICY_RETURN,
            )
        )
        master_order_id = submitted.master_order.master_order_id
        await _until_state(client, master_order_id, order_pb2.MASTER_ORDER_STATE_WORKING)

        details = await refusal(delete(client, ids[0]))

        assert (details.code, details.reason) == (FAILED_PRECONDITION, "ACCOUNT_NOT_FLAT")
        assert "working orders #" in details.message
        assert f"{master_order_id} (WORKING; child " in details.message
        assert await member_ids(client, group.group_id) == ids

        await client.trading.CancelMasterOrder(
            trading_service_pb2.CancelMasterOrderRequest(master_order_id=master_order_id)
        )
        await _until_state(client, master_order_id, order_pb2.MASTER_ORDER_STATE_CANCELLED)
        await delete(client, ids[0])
        assert await member_ids(client, group.group_id) == ids[1:]


async def test_a_reference_account_is_refused(deleting: RunningGateway) -> None:
    async with client_of(deleting) as client:
        reference, member = await create_accounts(client.accounts, ["50000", "10000"])
        created = await client.accounts.CreateGroup(
            account_service_pb2.CreateGroupRequest(
                group=account_pb2.Group(
                    name="mirrors",
                    allocation=account_pb2.AllocationSettings(
                        method=account_pb2.ALLOCATION_METHOD_EQUITY_RATIO,
                        reference_account_id=reference.account_id,
                    ),
                    members=[account_pb2.GroupMember(account_id=member.account_id)],
                )
            )
        )

        details = await refusal(delete(client, reference.account_id))

        assert (details.code, details.reason) == (
            FAILED_PRECONDITION,
            "ACCOUNT_IS_ALLOCATION_REFERENCE",
        )
        assert created.group.group_id in details.message
        assert reference.account_id in await listed_ids(client)


async def test_a_group_source_is_refused_until_the_source_is_removed(
    deleting: RunningGateway,
) -> None:
    async with client_of(deleting) as client:
        source, member = await create_accounts(client.accounts, ["50000", "10000"])
        group = await create_group(client.accounts, [member], name="copies")
        await client.accounts.SetGroupSource(
            account_service_pb2.SetGroupSourceRequest(
                group_id=group.group_id,
                source=account_pb2.GroupSource(account_id=source.account_id),
            )
        )

        details = await refusal(delete(client, source.account_id))

        assert (details.code, details.reason) == (FAILED_PRECONDITION, "ACCOUNT_IS_GROUP_SOURCE")
        assert group.group_id in details.message
        assert source.account_id in await listed_ids(client)
        await client.accounts.RemoveGroupSource(
            account_service_pb2.RemoveGroupSourceRequest(group_id=group.group_id)
        )
        await delete(client, source.account_id)
        assert source.account_id not in await listed_ids(client)


async def test_an_account_whose_terminal_cannot_be_asked_is_not_deleted_blind(
    deleting: RunningGateway,
) -> None:
    async with client_of(deleting) as client:
        # No MT5 backend serves this login here: the account waits for its terminal.
        waiting = (
            await client.accounts.CreateAccount(
                account_service_pb2.CreateAccountRequest(
                    account=account_pb2.Account(
                        name="mt5-waiting",
                        platform=common_pb2.PLATFORM_MT5,
                        login=5_550_001,
                        server="Broker-Demo",
                        currency="USD",
                        margin_mode=common_pb2.MARGIN_MODE_HEDGING,
                    )
                )
            )
        ).account
        assert deleting.registry.get(waiting.account_id) is None

        details = await refusal(delete(client, waiting.account_id))

        assert (details.code, details.reason) == (
            grpc.StatusCode.UNAVAILABLE,
            "TERMINAL_UNAVAILABLE",
        )
        assert "not connected" in details.message
        assert waiting.account_id in await listed_ids(client)


async def _until_state(
    client: Client, master_order_id: str, state: int, timeout_s: float = 15.0
) -> None:
    """Polls until the master order reaches `state` (a timeout fails the test; it is no
    measure of speed)."""
    async with asyncio.timeout(timeout_s):
        while True:
            got = await client.trading.GetMasterOrder(
                trading_service_pb2.GetMasterOrderRequest(master_order_id=master_order_id)
            )
            if got.master_order.state == state:
                return
            await asyncio.sleep(0.05)
