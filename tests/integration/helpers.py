"""RPC helpers for integration and end-to-end tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING

import grpc

from gateway._proto.mam.v1 import (
    account_pb2,
    account_service_pb2,
    account_service_pb2_grpc,
    common_pb2,
    order_pb2,
    trading_service_pb2,
)
from gateway.api.server import RunningGateway

if TYPE_CHECKING:
    from tests.conftest import Client

# 20 accounts from about 500 to 250,000 of equity.
EQUITIES = [
    "500", "1000", "2500", "5000", "7500", "10000", "15000", "20000", "25000", "30000",
    "40000", "50000", "60000", "75000", "100000", "120000", "150000", "180000", "200000",
    "250000",
]  # fmt: skip


async def create_accounts(
    accounts: account_service_pb2_grpc.AccountServiceStub,
    equities: list[str] = EQUITIES,
    *,
    prefix: str = "client",
    first_login: int = 70001,
) -> list[account_pb2.Account]:
    created = []
    for i, equity in enumerate(equities):
        response = await accounts.CreateAccount(
            account_service_pb2.CreateAccountRequest(
                account=account_pb2.Account(
                    name=f"{prefix}-{i:03d}",
                    platform=common_pb2.PLATFORM_SIMULATED,
                    login=first_login + i,
                    server="mam-sim",
                    currency="USD",
                    simulated=account_pb2.SimulatedAccount(initial_balance=equity),
                )
            )
        )
        created.append(response.account)
    return created


async def create_group(
    accounts: account_service_pb2_grpc.AccountServiceStub,
    members: list[account_pb2.Account],
    *,
    name: str = "clients",
    copy_options: Mapping[int, account_pb2.CopyOptions] | None = None,
) -> account_pb2.Group:
    """An EQUITY group of `members`; `copy_options`: those of the members at these indexes."""
    options = copy_options or {}
    response = await accounts.CreateGroup(
        account_service_pb2.CreateGroupRequest(
            group=account_pb2.Group(
                name=name,
                allocation=account_pb2.AllocationSettings(
                    method=account_pb2.ALLOCATION_METHOD_EQUITY
                ),
                members=[
                    account_pb2.GroupMember(account_id=a.account_id, copy_options=options.get(i))
                    for i, a in enumerate(members)
                ],
            )
        )
    )
    return response.group


def market_order(
    group_id: str, volume: str = "1.00", symbol: str = "EURUSD", **fields: object
) -> trading_service_pb2.SubmitMasterOrderRequest:
    spec = order_pb2.MasterOrderSpec(
        client_order_id=f"test-{uuid.uuid4().hex}",
        group_id=group_id,
        symbol=symbol,
        side=common_pb2.SIDE_BUY,
        type=common_pb2.ORDER_TYPE_MARKET,
        volume=volume,
    )
    for name, value in fields.items():
        setattr(spec, name, value)
    return trading_service_pb2.SubmitMasterOrderRequest(order=spec)


def equity_share(volume: str, equity: str, participants: list[str]) -> Decimal:
    total = sum(Decimal(e) for e in participants)
    return Decimal(volume) * Decimal(equity) / total


async def open_volume(gateway: RunningGateway, account_ids: list[str]) -> Decimal:
    """What the accounts hold at their broker: the proof of how often an order traded."""
    total = Decimal(0)
    for account_id in account_ids:
        terminal = gateway.registry.get(account_id)
        assert terminal is not None
        total += sum((p.volume for p in await terminal.positions()), Decimal(0))
    return total


async def demo_group_id(client: Client) -> str:
    groups = await client.accounts.ListGroups(account_service_pb2.ListGroupsRequest())
    return next(g.group_id for g in groups.groups if g.name == "demo")


async def fill_order(client: Client, group_id: str, volume: str = "1.00") -> tuple[str, int]:
    """Submits a market order and reads the fill stream until every child has filled; returns
    the order's id and its child count."""
    fills = client.trading.SubscribeFills(trading_service_pb2.SubscribeFillsRequest(live_only=True))
    try:
        first = await fills.read()  # the heartbeat that says the stream is live
        assert not first.HasField("batch")
        submitted = await client.trading.SubmitMasterOrder(market_order(group_id, volume))
        master = submitted.master_order
        received = 0
        async with asyncio.timeout(20):
            while received < master.child_count:
                message = await fills.read()
                assert message is not grpc.aio.EOF
                received += sum(
                    1 for f in message.batch.fills if f.master_order_id == master.master_order_id
                )
    finally:
        fills.cancel()
    return master.master_order_id, master.child_count
