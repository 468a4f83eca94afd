"""Soak: many master orders at once against a broker that misbehaves at random, then an audit of
the books. Not a speed figure: the count of faults survived and of disagreements found (which
must be 0).

An in-process gateway (SQLite) trades N simulated accounts whose broker draws, per request,
requotes, missing prices, throttling, partial fills, connections lost before and after
execution, and requests that hang past the timeout. Orders are submitted concurrently in waves;
afterwards every deal at every broker is matched to the stored fills, each child's volume to
its deals, each account's positions to its fills, and the fill sequence checked for gaps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc

from bench.common import RunContext
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
from gateway.terminals.sim.faults import FaultSettings

FAULTS = FaultSettings(
    requote=0.04,
    price_off=0.02,
    too_many_requests=0.03,
    partial_fill=0.05,
    disconnect_before=0.02,
    disconnect_after=0.03,
    hang=0.01,
    hang_executes=True,
    hang_seconds=1.0,
)
FIRST_LOGIN = 60_001
CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "config" / "demo.toml"


async def run(context: RunContext) -> dict[str, Any]:
    accounts, orders, wave = context.sizes.soak_accounts, context.sizes.soak_orders, 10
    with tempfile.TemporaryDirectory(prefix="mam-soak-") as scratch:
        config = load_config(CONFIG, environ={})
        config = dataclasses.replace(
            config,
            server=dataclasses.replace(config.server, listen="127.0.0.1:0"),
            metrics=dataclasses.replace(config.metrics, listen="127.0.0.1:0"),
            auth=dataclasses.replace(config.auth, required=False, bootstrap_admin_key_file=None),
            database_url=f"sqlite+aiosqlite:///{Path(scratch) / 'soak.db'}",
            engine=dataclasses.replace(
                config.engine, request_timeout_seconds=0.3, max_attempts=6, max_concurrency=200
            ),
            simulator=dataclasses.replace(
                config.simulator, faults=FAULTS, seed=20261125, latency_ms=2
            ),
            demo=None,
            log_level="ERROR",
        )
        gateway = await start_gateway(config)
        try:
            return await _soak(gateway, accounts, orders, wave)
        finally:
            await gateway.stop(1.0)


async def _soak(gateway: Any, accounts: int, orders: int, wave: int) -> dict[str, Any]:
    started_at = datetime.now(UTC) - timedelta(seconds=1)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        account_stub = account_service_pb2_grpc.AccountServiceStub(channel)
        trading = trading_service_pb2_grpc.TradingServiceStub(channel)
        members = []
        for i in range(accounts):
            created = await account_stub.CreateAccount(
                account_service_pb2.CreateAccountRequest(
                    account=account_pb2.Account(
                        name=f"soak-{i:05d}",
                        platform=common_pb2.PLATFORM_SIMULATED,
                        login=FIRST_LOGIN + i,
                        server="mam-sim",
                        currency="USD",
                        simulated=account_pb2.SimulatedAccount(initial_balance=str(5_000 + 10 * i)),
                    )
                )
            )
            members.append(created.account)
        group = (
            await account_stub.CreateGroup(
                account_service_pb2.CreateGroupRequest(
                    group=account_pb2.Group(
                        name="soak",
                        allocation=account_pb2.AllocationSettings(
                            method=account_pb2.ALLOCATION_METHOD_EQUITY
                        ),
                        members=[account_pb2.GroupMember(account_id=a.account_id) for a in members],
                    )
                )
            )
        ).group
        start = time.perf_counter()
        master_ids: list[str] = []
        for first in range(0, orders, wave):
            responses = await asyncio.gather(
                *(
                    trading.SubmitMasterOrder(
                        trading_service_pb2.SubmitMasterOrderRequest(
                            order=order_pb2.MasterOrderSpec(
                                client_order_id=f"soak-{n}",
                                group_id=group.group_id,
                                symbol="EURUSD",
                                side=common_pb2.SIDE_SELL if n % 3 == 2 else common_pb2.SIDE_BUY,
                                type=common_pb2.ORDER_TYPE_MARKET,
                                volume=f"{max(1, accounts // 10)}.00",
                                filling_policy=common_pb2.FILLING_POLICY_IOC,
                            )
                        )
                    )
                    for n in range(first, min(first + wave, orders))
                )
            )
            master_ids.extend(r.master_order.master_order_id for r in responses)
        await gateway.engine.wait_idle()
        elapsed = time.perf_counter() - start
        children = []
        for master_order_id in master_ids:
            got = await trading.GetMasterOrder(
                trading_service_pb2.GetMasterOrderRequest(master_order_id=master_order_id)
            )
            children.extend(got.master_order.children)
    fills = [f for m in master_ids for f in await gateway.store.fills_of(m)]
    return _audit(gateway, members, children, fills, started_at, elapsed, len(master_ids))


def _audit(
    gateway: Any,
    members: list[Any],
    children: list[Any],
    fills: list[Any],
    started_at: datetime,
    elapsed_s: float,
    orders: int,
) -> dict[str, Any]:
    disagreements: list[str] = []
    by_child: dict[str, Decimal] = defaultdict(Decimal)
    for fill in fills:
        by_child[fill.child_order_id] += fill.volume
    for child in children:
        if by_child[child.child_order_id] != Decimal(child.filled_volume):
            disagreements.append(f"child {child.child_order_id}: fills != filled volume")
    tags = {c.tag for c in children}
    deals = [
        d
        for i in range(len(members))
        for d in gateway.broker.deals(FIRST_LOGIN + i, started_at)
        if d.comment in tags
    ]
    if sorted(d.ticket for d in deals) != sorted(f.deal_ticket for f in fills):
        disagreements.append("broker deals and stored fills differ")
    if len({f.deal_ticket for f in fills}) != len(fills):
        disagreements.append("a deal stored as two fills")
    held: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for i, member in enumerate(members):
        for position in gateway.broker.positions(FIRST_LOGIN + i):
            held[member.account_id, position.side.name] += position.volume
    traded: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for fill in fills:
        traded[fill.account_id, fill.side.name] += fill.volume
    if {k: v for k, v in held.items() if v} != {k: v for k, v in traded.items() if v}:
        disagreements.append("positions at the brokers differ from the fills")
    sequences = sorted(f.sequence for f in fills)
    if sequences and sequences != list(range(sequences[0], sequences[0] + len(sequences))):
        disagreements.append("a gap in the fill sequence")
    states = Counter(order_pb2.ChildOrderState.Name(c.state) for c in children)
    attempts = Counter(c.attempts for c in children)
    retried = sum(v for k, v in attempts.items() if k > 1)
    rejected = Counter(
        c.status_text.split(":", 1)[0]
        for c in children
        if c.state == order_pb2.CHILD_ORDER_STATE_REJECTED
    )
    return {
        "summary": (
            f"{orders} orders x {len(members)} accounts under random faults: {len(children)} "
            f"children, {retried} retried, {len(fills)} fills, "
            f"{len(disagreements)} disagreements"
        ),
        "accounts": len(members),
        "orders": orders,
        "children": len(children),
        "fills": len(fills),
        "faults": dataclasses.asdict(FAULTS),
        "child_states": dict(sorted(states.items())),
        "attempts": {str(k): v for k, v in sorted(attempts.items())},
        "retried_children": retried,
        "rejected_by": dict(rejected.most_common()),
        "disagreements": disagreements,
        "elapsed_s": round(elapsed_s, 2),
    }
