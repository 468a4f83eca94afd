"""CloseMasterPosition: each account closes its share of the order's position, to its lot step."""

from __future__ import annotations

from decimal import Decimal

import grpc
import pytest

from gateway._proto.mam.v1 import (
    account_pb2,
    account_service_pb2,
    common_pb2,
    order_pb2,
    trading_service_pb2,
)
from gateway.api.server import RunningGateway
from tests.conftest import Client
from tests.integration.helpers import create_group, market_order
from tests.support import error_details


async def accounts_with(
    client: Client, equities: list[str], margin_mode: int, prefix: str
) -> list[account_pb2.Account]:
    created = []
    for i, equity in enumerate(equities):
        response = await client.accounts.CreateAccount(
            account_service_pb2.CreateAccountRequest(
                account=account_pb2.Account(
                    name=f"{prefix}-{i}",
                    platform=common_pb2.PLATFORM_SIMULATED,
                    login=91_000 + 100 * (margin_mode) + i,
                    server="mam-sim",
                    currency="USD",
                    margin_mode=margin_mode,
                    simulated=account_pb2.SimulatedAccount(initial_balance=equity),
                )
            )
        )
        created.append(response.account)
    return created


async def positions_by_account(
    gateway: RunningGateway, accounts: list[account_pb2.Account]
) -> dict[str, list[tuple[int, Decimal]]]:
    held = {}
    for account in accounts:
        terminal = gateway.registry.get(account.account_id)
        assert terminal is not None
        held[account.account_id] = sorted((p.ticket, p.volume) for p in await terminal.positions())
    return held


def close(master_order_id: str, client_order_id: str, **amount: str):
    return trading_service_pb2.CloseMasterPositionRequest(
        master_order_id=master_order_id, client_order_id=client_order_id, **amount
    )


async def opened(client: Client, gateway: RunningGateway, group_id: str, volume: str):
    response = await client.trading.SubmitMasterOrder(market_order(group_id, volume))
    await gateway.engine.wait_idle()
    got = await client.trading.GetMasterOrder(
        trading_service_pb2.GetMasterOrderRequest(
            master_order_id=response.master_order.master_order_id
        )
    )
    assert got.master_order.state == order_pb2.MASTER_ORDER_STATE_FILLED
    return got.master_order


async def test_hedging_accounts_close_their_share_of_the_same_position_ticket(
    client: Client, gateway: RunningGateway
) -> None:
    accounts = await accounts_with(
        client, ["10000", "20000", "30000"], common_pb2.MARGIN_MODE_HEDGING, "h"
    )
    group = await create_group(client.accounts, accounts)
    master = await opened(client, gateway, group.group_id, "0.60")
    before = await positions_by_account(gateway, accounts)
    assert [v for held in before.values() for _, v in held] == [
        Decimal("0.10"),
        Decimal("0.20"),
        Decimal("0.30"),
    ]

    half = await client.trading.CloseMasterPosition(
        close(master.master_order_id, "c1", fraction="0.5")
    )
    await gateway.engine.wait_idle()
    closing = half.master_order
    assert closing.closes_master_order_id == master.master_order_id
    assert closing.spec.side == common_pb2.SIDE_SELL and closing.close_fraction == "0.5"
    assert {line.account_id: line.volume for line in closing.allocation.lines} == {
        a.account_id: str(Decimal(v) / 2)
        for a, v in zip(accounts, ["0.10", "0.20", "0.30"], strict=True)
    }
    after = await positions_by_account(gateway, accounts)
    for account in accounts:
        ((ticket, volume),) = after[account.account_id]
        ((opened_ticket, opened_volume),) = before[account.account_id]
        assert ticket == opened_ticket and volume == opened_volume / 2

    replay = await client.trading.CloseMasterPosition(
        close(master.master_order_id, "c1", fraction="0.5")
    )
    assert replay.replayed and replay.master_order.master_order_id == closing.master_order_id

    # A volume of the master position: 0.30 of the 0.30 still open closes everything.
    rest = await client.trading.CloseMasterPosition(
        close(master.master_order_id, "c2", volume="0.30")
    )
    await gateway.engine.wait_idle()
    final = await client.trading.GetMasterOrder(
        trading_service_pb2.GetMasterOrderRequest(master_order_id=rest.master_order.master_order_id)
    )
    assert final.master_order.state == order_pb2.MASTER_ORDER_STATE_FILLED
    assert final.master_order.filled_volume == "0.30"
    assert all(held == [] for held in (await positions_by_account(gateway, accounts)).values())

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.trading.CloseMasterPosition(close(master.master_order_id, "c3", fraction="1"))
    assert error_details(caught.value).reason == "NOTHING_TO_CLOSE"


async def test_netting_accounts_close_by_an_opposite_deal_rounded_down_to_the_step(
    client: Client, gateway: RunningGateway
) -> None:
    accounts = await accounts_with(
        client, ["1000", "2000", "4000"], common_pb2.MARGIN_MODE_NETTING, "n"
    )
    group = await create_group(client.accounts, accounts)
    master = await opened(client, gateway, group.group_id, "0.07")
    response = await client.trading.CloseMasterPosition(
        close(master.master_order_id, "n1", fraction="0.5")
    )
    await gateway.engine.wait_idle()
    lines = {line.account_id: line for line in response.master_order.allocation.lines}
    small, middle, large = (lines[a.account_id] for a in accounts)
    # 0.01 x 0.5 = 0.005 is below the 0.01 minimum: that account keeps its position.
    assert (small.volume, list(small.reasons)) == (
        "0.00",
        [order_pb2.ALLOCATION_REASON_SKIPPED_BELOW_MIN],
    )
    assert (middle.target_volume, middle.volume) == ("0.01", "0.01")
    assert (large.target_volume, large.volume) == ("0.02", "0.02")
    held = await positions_by_account(gateway, accounts)
    assert [[v for _, v in held[a.account_id]] for a in accounts] == [
        [Decimal("0.01")],
        [Decimal("0.01")],
        [Decimal("0.02")],
    ]
    # Partial closes add up: a third of what is left, then the rest.
    third = await client.trading.CloseMasterPosition(
        close(master.master_order_id, "n2", volume="0.04")
    )
    await gateway.engine.wait_idle()
    assert sum(Decimal(line.volume) for line in third.master_order.allocation.lines) == Decimal(
        "0.04"
    )
    assert all(held == [] for held in (await positions_by_account(gateway, accounts)).values())


async def test_bad_closes_are_refused_and_change_nothing(
    client: Client, gateway: RunningGateway
) -> None:
    accounts = await accounts_with(client, ["10000", "20000"], common_pb2.MARGIN_MODE_HEDGING, "b")
    group = await create_group(client.accounts, accounts)
    master = await opened(client, gateway, group.group_id, "0.30")
    cases = [
        (close(master.master_order_id, "x1", volume="0.31"), "INVALID_VOLUME", {"volume"}),
        (close(master.master_order_id, "x2", fraction="1.5"), "INVALID_ARGUMENT", {"fraction"}),
        (close(master.master_order_id, "x3"), "INVALID_ARGUMENT", {"fraction"}),
        (close(master.master_order_id, "", fraction="1"), "INVALID_ARGUMENT", {"client_order_id"}),
        (close("mo_NOSUCHORDER", "x4", fraction="1"), "MASTER_ORDER_NOT_FOUND", set()),
    ]
    for request, reason, fields in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.trading.CloseMasterPosition(request)
        details = error_details(caught.value)
        assert (details.reason, set(details.field_violations)) == (reason, fields)
    closing = await client.trading.CloseMasterPosition(
        close(master.master_order_id, "ok", fraction="1")
    )
    await gateway.engine.wait_idle()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.trading.CloseMasterPosition(
            close(closing.master_order.master_order_id, "x5", fraction="1")
        )
    assert error_details(caught.value).reason == "NOT_AN_OPENING_ORDER"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.trading.CloseMasterPosition(
            close(master.master_order_id, "ok", fraction="0.5")
        )
    assert error_details(caught.value).reason == "DUPLICATE_CLIENT_ORDER_ID"
