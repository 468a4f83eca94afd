"""Many master orders at once against a broker that misbehaves at random: requotes, no prices,
throttling, partial fills, connections lost before and after execution, requests that hang
past the timeout. Whatever the faults, the books must agree: every deal at a broker is one fill,
every fill is one deal, each child's volume is what its deals add up to, and the fill sequence
has no gap. (The same run, larger, is `python -m bench soak`.)"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from gateway._proto.mam.v1 import common_pb2, order_pb2, trading_service_pb2
from gateway.api.server import RunningGateway, start_gateway
from gateway.domain.orders import Side
from gateway.terminals.sim.faults import FaultSettings
from tests.conftest import client_of
from tests.integration.helpers import create_accounts, create_group, market_order
from tests.support import make_config

FAULTS = FaultSettings(
    requote=0.05,
    price_off=0.03,
    too_many_requests=0.03,
    partial_fill=0.06,
    disconnect_before=0.03,
    disconnect_after=0.04,
    hang=0.02,
    hang_executes=True,
    hang_seconds=1.0,
)
ACCOUNTS = 30
ORDERS = 12
FIRST_LOGIN = 70001


@pytest.fixture
async def faulty_gateway(tmp_path: Path, database_url: str) -> AsyncIterator[RunningGateway]:
    config = make_config(tmp_path, database_url=database_url)
    config = dataclasses.replace(
        config,
        engine=dataclasses.replace(
            config.engine, request_timeout_seconds=0.3, max_attempts=6, max_concurrency=50
        ),
        simulator=dataclasses.replace(config.simulator, faults=FAULTS, seed=4242),
    )
    running = await start_gateway(config)
    try:
        yield running
    finally:
        await running.stop(0.5)


async def test_the_books_agree_whatever_the_faults(faulty_gateway: RunningGateway) -> None:
    gateway = faulty_gateway
    started = datetime.now(UTC) - timedelta(seconds=1)
    async with client_of(gateway) as client:
        accounts = await create_accounts(
            client.accounts, [str(5_000 + 500 * i) for i in range(ACCOUNTS)]
        )
        group = await create_group(client.accounts, accounts)
        submitted = await asyncio.gather(
            *(
                client.trading.SubmitMasterOrder(
                    market_order(
                        group.group_id,
                        "3.00",
                        side=common_pb2.SIDE_SELL if i % 3 == 2 else common_pb2.SIDE_BUY,
                        filling_policy=common_pb2.FILLING_POLICY_IOC,
                    )
                )
                for i in range(ORDERS)
            )
        )
        await gateway.engine.wait_idle()
        children: list[order_pb2.ChildOrder] = []
        for response in submitted:
            got = await client.trading.GetMasterOrder(
                trading_service_pb2.GetMasterOrderRequest(
                    master_order_id=response.master_order.master_order_id
                )
            )
            children.extend(got.master_order.children)
    fills = [
        f for r in submitted for f in await gateway.store.fills_of(r.master_order.master_order_id)
    ]
    # The faults happened: some children needed several attempts, some were partly filled.
    assert any(c.attempts > 1 for c in children)
    states = {c.state for c in children}
    assert order_pb2.CHILD_ORDER_STATE_FILLED in states
    assert states <= {
        order_pb2.CHILD_ORDER_STATE_FILLED,
        order_pb2.CHILD_ORDER_STATE_PARTIALLY_FILLED,
        order_pb2.CHILD_ORDER_STATE_REJECTED,
        order_pb2.CHILD_ORDER_STATE_UNKNOWN,
    }
    # Each child's volume is what its fills add up to.
    filled_by_child: dict[str, Decimal] = defaultdict(Decimal)
    for fill in fills:
        filled_by_child[fill.child_order_id] += fill.volume
    for child in children:
        assert filled_by_child[child.child_order_id] == Decimal(child.filled_volume), child
    # Every deal at the brokers is exactly one fill, and every fill one deal.
    tags = {c.tag: c.child_order_id for c in children}
    broker_deals = [
        d
        for i in range(ACCOUNTS)
        for d in gateway.broker.deals(FIRST_LOGIN + i, started)
        if d.comment in tags
    ]
    assert sorted(d.ticket for d in broker_deals) == sorted(f.deal_ticket for f in fills)
    assert len({f.deal_ticket for f in fills}) == len(fills)
    # What the brokers hold is what the fills say, side by side.
    held: dict[tuple[str, Side], Decimal] = defaultdict(Decimal)
    for i, account in enumerate(accounts):
        for position in gateway.broker.positions(FIRST_LOGIN + i):
            held[account.account_id, position.side] += position.volume
    traded: dict[tuple[str, Side], Decimal] = defaultdict(Decimal)
    for fill in fills:
        traded[fill.account_id, fill.side] += fill.volume
    assert {k: v for k, v in held.items() if v} == {k: v for k, v in traded.items() if v}
    # Sequences: gap-free over the whole run.
    sequences = sorted(f.sequence for f in fills)
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
