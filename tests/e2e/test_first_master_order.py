"""The foundation's promise, end to end through a real gateway process.

A 1.00-lot EURUSD buy over 20 accounts of 500 to 250,000 equity: exactly one fill per child,
volumes on the lot step summing to the master volume, each within one step of its equity
share; the master order FILLED with its children; all of it still there after a restart.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import grpc

from gateway._proto.mam.v1 import (
    account_service_pb2_grpc,
    order_pb2,
    trading_service_pb2,
    trading_service_pb2_grpc,
)
from tests.e2e.gateway_process import GatewayProcess, write_config
from tests.integration.helpers import EQUITIES, create_accounts, create_group, market_order
from tests.support import steps

STEP = Decimal("0.01")


async def test_master_order_fills_every_child_once_and_survives_a_restart(tmp_path: Path) -> None:
    gateway = GatewayProcess(write_config(tmp_path), tmp_path / "gateway.db")
    address = await gateway.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            accounts = account_service_pb2_grpc.AccountServiceStub(channel)
            trading = trading_service_pb2_grpc.TradingServiceStub(channel)
            created = await create_accounts(accounts)
            group = await create_group(accounts, created)
            equity_of = {a.account_id: a.snapshot.equity for a in created}
            assert sorted(Decimal(e) for e in equity_of.values()) == sorted(
                Decimal(e) for e in EQUITIES
            )

            stream = trading.SubscribeFills(trading_service_pb2.SubscribeFillsRequest())
            first = await stream.read()
            assert first.heartbeat_sequence == 0 and not first.batch.fills

            submitted = (await trading.SubmitMasterOrder(market_order(group.group_id))).master_order
            # Stored with its children SENT before the answer: dispatching from the start.
            assert submitted.state == order_pb2.MASTER_ORDER_STATE_DISPATCHING
            child_count = submitted.child_count
            assert child_count > 0

            fills: list[order_pb2.Fill] = []
            async with asyncio.timeout(30):
                while len(fills) < child_count:
                    message = await stream.read()
                    assert message is not grpc.aio.EOF
                    fills.extend(message.batch.fills)
                    if message.batch.fills:
                        assert message.batch.last_sequence == message.batch.fills[-1].sequence
                # Nothing more arrives for this order: the next message is a heartbeat.
                message = await stream.read()
                assert not message.batch.fills
            stream.cancel()

            master_id = submitted.master_order_id
            assert {f.master_order_id for f in fills} == {master_id}
            assert len({f.child_order_id for f in fills}) == child_count == len(fills)
            assert [f.sequence for f in fills] == list(range(1, child_count + 1))
            volumes = {f.account_id: Decimal(f.volume) for f in fills}
            assert sum(volumes.values()) == Decimal("1.00")
            for volume in volumes.values():
                assert volume >= STEP and steps(volume) * STEP == volume
            participants = [equity_of[a] for a in volumes]
            total = sum(Decimal(e) for e in participants)
            for account_id, volume in volumes.items():
                share = Decimal("1.00") * Decimal(equity_of[account_id]) / total
                assert abs(volume - share) <= STEP, (account_id, volume, share)
            skipped = set(equity_of) - set(volumes)
            if skipped:
                # Only the smallest accounts are left out, and only when below the minimum.
                assert max(Decimal(equity_of[a]) for a in skipped) <= min(
                    Decimal(e) for e in participants
                )

            # The master order is final in the same commit as its last fill.
            got = (
                await trading.GetMasterOrder(
                    trading_service_pb2.GetMasterOrderRequest(master_order_id=master_id)
                )
            ).master_order
            assert got.state == order_pb2.MASTER_ORDER_STATE_FILLED
            assert got.filled_volume == "1.00"
            assert got.filled_child_count == child_count
            children = {c.child_order_id: c for c in got.children}
            assert set(children) == {f.child_order_id for f in fills}
            for fill in fills:
                child = children[fill.child_order_id]
                assert child.state == order_pb2.CHILD_ORDER_STATE_FILLED
                assert (child.fill_price, child.volume) == (fill.price, fill.volume)
                assert child.tag.startswith("mam:") and len(child.tag) <= 26
            lines = {line.account_id: line for line in got.allocation.lines}
            assert set(lines) == set(equity_of)
    finally:
        assert await gateway.stop() == 0

    restarted = GatewayProcess(gateway.config, gateway.database)
    address = await restarted.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            trading = trading_service_pb2_grpc.TradingServiceStub(channel)
            again = (
                await trading.GetMasterOrder(
                    trading_service_pb2.GetMasterOrderRequest(master_order_id=master_id)
                )
            ).master_order
            assert again.state == order_pb2.MASTER_ORDER_STATE_FILLED
            assert len(again.children) == child_count
            listed = await trading.ListMasterOrders(trading_service_pb2.ListMasterOrdersRequest())
            assert [m.master_order_id for m in listed.master_orders] == [master_id]
            # The stored fills replay from the start after the restart, in sequence.
            replay = trading.SubscribeFills(trading_service_pb2.SubscribeFillsRequest())
            replayed = await replay.read()
            assert [f.sequence for f in replayed.batch.fills] == list(range(1, child_count + 1))
            replay.cancel()
    finally:
        assert await restarted.stop() == 0
