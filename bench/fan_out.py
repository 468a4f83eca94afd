"""End to end in one process: a master order over N simulated accounts, submit to last fill.

Measures, per simulated broker latency, the time from SubmitMasterOrder (through the real gRPC
server) to the last fill received on SubscribeFills, and the dispatch skew (first to last fill
at the broker). Compared with what sequential dispatch would cost (N x latency).
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc

from gateway._proto.mam.v1 import (
    account_pb2,
    account_service_pb2,
    account_service_pb2_grpc,
    common_pb2,
    order_pb2,
    trading_service_pb2,
    trading_service_pb2_grpc,
)
from gateway.api.server import start_gateway
from gateway.config import load_config

CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "config" / "demo.toml"


async def _one_latency(accounts: int, latency_ms: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        base = load_config(CONFIG, environ={})
        config = dataclasses.replace(
            base,
            server=dataclasses.replace(base.server, listen="127.0.0.1:0"),
            database_url=f"sqlite+aiosqlite:///{directory}/bench.db",
            simulator=dataclasses.replace(base.simulator, latency_ms=latency_ms),
            demo=None,
            log_level="WARNING",
        )
        gateway = await start_gateway(config)
        try:
            async with grpc.aio.insecure_channel(gateway.address) as channel:
                return await _measure(channel, accounts, latency_ms, rounds)
        finally:
            await gateway.stop(1.0)


async def _measure(
    channel: grpc.aio.Channel, count: int, latency_ms: int, rounds: int
) -> dict[str, Any]:
    accounts = account_service_pb2_grpc.AccountServiceStub(channel)
    trading = trading_service_pb2_grpc.TradingServiceStub(channel)
    members = []
    for i in range(count):
        created = await accounts.CreateAccount(
            account_service_pb2.CreateAccountRequest(
                account=account_pb2.Account(
                    name=f"bench-{i:05d}", platform=common_pb2.PLATFORM_SIMULATED,
                    login=900_000 + i, server="mam-sim",
                    simulated=account_pb2.SimulatedAccount(initial_balance="100000"),
                )
            )
        )  # fmt: skip
        members.append(account_pb2.GroupMember(account_id=created.account.account_id))
    group = (
        await accounts.CreateGroup(
            account_service_pb2.CreateGroupRequest(
                group=account_pb2.Group(name="bench", members=members)
            )
        )
    ).group
    # Equal equities and 0.01 lot each: every account gets exactly one child order.
    volume = str((Decimal("0.01") * count).quantize(Decimal("0.01")))
    totals, skews, commits = [], [], []
    stream = trading.SubscribeFills(trading_service_pb2.SubscribeFillsRequest(live_only=True))
    await stream.read()
    for _ in range(rounds):
        start = time.perf_counter()
        response = await trading.SubmitMasterOrder(
            trading_service_pb2.SubmitMasterOrderRequest(
                order=order_pb2.MasterOrderSpec(
                    group_id=group.group_id, symbol="EURUSD", side=common_pb2.SIDE_BUY,
                    type=common_pb2.ORDER_TYPE_MARKET, volume=volume, max_deviation_points=1000,
                )
            )
        )  # fmt: skip
        acknowledged = time.perf_counter()
        received = 0
        while received < response.master_order.child_count:
            message = await stream.read()
            received += len(message.batch.fills)
        totals.append((time.perf_counter() - start) * 1000)
        commits.append((acknowledged - start) * 1000)
        master = (
            await trading.GetMasterOrder(
                trading_service_pb2.GetMasterOrderRequest(
                    master_order_id=response.master_order.master_order_id
                )
            )
        ).master_order
        skews.append(master.execution.dispatch_skew.ToMicroseconds() / 1000)
    stream.cancel()
    median_total = statistics.median(totals)
    sequential = count * latency_ms
    return {
        "accounts": count,
        "latency_ms": latency_ms,
        "rounds": rounds,
        "submit_ack_median_ms": round(statistics.median(commits), 2),
        "submit_to_last_fill_median_ms": round(median_total, 2),
        "submit_to_last_fill_max_ms": round(max(totals), 2),
        "dispatch_skew_median_ms": round(statistics.median(skews), 2),
        "dispatch_skew_max_ms": round(max(skews), 2),
        "sequential_dispatch_ms": sequential,
        "speedup_vs_sequential": round(sequential / median_total, 1) if sequential else None,
    }


async def run(accounts: int = 1_000, rounds: int = 5) -> dict[str, Any]:
    rows = [await _one_latency(accounts, latency, rounds) for latency in (0, 50)]
    at_50 = rows[-1]
    return {
        "rows": rows,
        "summary": (
            f"{accounts} accounts at 50 ms: submit to last fill median "
            f"{at_50['submit_to_last_fill_median_ms']} ms, skew median "
            f"{at_50['dispatch_skew_median_ms']} ms, {at_50['speedup_vs_sequential']}x faster "
            f"than sequential ({at_50['sequential_dispatch_ms']} ms)"
        ),
    }
