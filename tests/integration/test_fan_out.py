"""Fan-out: a 1,000-account master order is in flight at every terminal at once, one request
per terminal, so it takes about one broker latency rather than a thousand of them."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway._proto.mam.v1 import order_pb2, trading_service_pb2
from gateway.api.server import RunningGateway, start_gateway
from gateway.terminals.protocol import OrderRequest, OrderResult
from gateway.terminals.sim import SimTerminal
from tests.conftest import Client, client_of
from tests.integration.helpers import create_accounts, create_group, market_order
from tests.support import make_config

ACCOUNTS = 1_000
# Long enough that every request can leave before the first one is answered: the gateway's
# work before a request leaves is tens of microseconds per child.
LATENCY_MS = 1_000


@pytest.fixture
async def slow_gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    config = make_config(tmp_path, latency_ms=LATENCY_MS)
    config = dataclasses.replace(
        config, engine=dataclasses.replace(config.engine, max_concurrency=ACCOUNTS)
    )
    running = await start_gateway(config)
    try:
        yield running
    finally:
        await running.stop(0.5)


@pytest.fixture
async def slow_client(slow_gateway: RunningGateway) -> AsyncIterator[Client]:
    async with client_of(slow_gateway) as connected:
        yield connected


async def test_every_child_is_in_flight_at_once_one_per_terminal(
    slow_client: Client, slow_gateway: RunningGateway
) -> None:
    client, gateway = slow_client, slow_gateway
    batches = await asyncio.gather(
        *(
            create_accounts(
                client.accounts,
                ["10000"] * 50,
                prefix=f"fan{start}",
                first_login=80_000 + start,
            )
            for start in range(0, ACCOUNTS, 50)
        )
    )
    accounts = [a for batch in batches for a in batch]
    group = await create_group(client.accounts, accounts)
    terminals = [gateway.registry.get(a.account_id) for a in accounts]
    assert all(isinstance(t, SimTerminal) for t in terminals)
    sims = [t for t in terminals if isinstance(t, SimTerminal)]

    # Requests in flight over all terminals, sampled while the order executes.
    peak = 0
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, sum(t.in_flight for t in sims))
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    try:
        submitted = await client.trading.SubmitMasterOrder(market_order(group.group_id, "10.00"))
        await gateway.engine.wait_idle()
    finally:
        sampling = False
        await sampler

    stored = (
        await client.trading.GetMasterOrder(
            trading_service_pb2.GetMasterOrderRequest(
                master_order_id=submitted.master_order.master_order_id
            )
        )
    ).master_order
    assert stored.state == order_pb2.MASTER_ORDER_STATE_FILLED
    assert len(stored.children) == ACCOUNTS
    assert all(c.state == order_pb2.CHILD_ORDER_STATE_FILLED for c in stored.children)
    # Sequentially this order would take ACCOUNTS x LATENCY_MS: all its requests were out at
    # one moment instead, and no terminal ever had two.
    assert peak == ACCOUNTS
    assert all(t.max_in_flight == 1 and t.requests_sent == 1 for t in sims)
    # Each child's sent time is its request leaving, and its deal executed one latency later
    # at the broker (the simulated broker executes as of arrival): the times are the requests'
    # own, not the order's.
    latency_ns = LATENCY_MS * 1_000_000
    for child in stored.children:
        sent, filled = child.sent_time.ToNanoseconds(), child.fill_time.ToNanoseconds()
        assert sent > 0 and 0 <= filled - sent - latency_ns < 50_000_000
    sent_times = sorted(c.sent_time.ToNanoseconds() for c in stored.children)
    assert sent_times[-1] - sent_times[0] < latency_ns  # all out before the first answer


async def _once_idle(
    client: Client,
    gateway: RunningGateway,
    submitted: trading_service_pb2.SubmitMasterOrderResponse,
) -> order_pb2.MasterOrder:
    """The submitted master order as stored once the engine has nothing left to do."""
    await gateway.engine.wait_idle()
    got = await client.trading.GetMasterOrder(
        trading_service_pb2.GetMasterOrderRequest(
            master_order_id=submitted.master_order.master_order_id
        )
    )
    return got.master_order


async def test_each_terminal_is_asked_its_symbol_once_per_order(
    client: Client, gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spec read for the allocation serves the dispatch: over a remote worker each extra
    question is a round trip before the child's request can leave."""
    accounts = await create_accounts(client.accounts, ["10000", "20000", "30000", "40000"])
    group = await create_group(client.accounts, accounts)
    asked: list[str] = []
    original = SimTerminal.symbol_spec

    async def counted(self: SimTerminal, symbol: str) -> object:
        asked.append(symbol)
        return await original(self, symbol)

    monkeypatch.setattr(SimTerminal, "symbol_spec", counted)
    submitted = await client.trading.SubmitMasterOrder(market_order(group.group_id, "1.00"))
    stored = await _once_idle(client, gateway, submitted)
    assert stored.state == order_pb2.MASTER_ORDER_STATE_FILLED
    assert stored.child_count == len(accounts)
    assert asked == ["EURUSD"] * len(accounts)  # the allocation's reads, and no more


async def test_the_first_requests_leave_together_once_every_one_is_built(
    client: Client, gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fairness: each child's first request is held until every child of the order has built
    its own, so the requests leave back to back (the spread of their arrival at the brokers is
    the sending alone, not the building). Seen from the terminals: when the first request
    arrives, every child already holds its terminal, even with brokers answering at once."""
    accounts = await create_accounts(client.accounts, ["10000"] * 20, prefix="together")
    group = await create_group(client.accounts, accounts)
    held_at_send: list[int] = []
    original = SimTerminal.send

    async def observed(self: SimTerminal, request: OrderRequest) -> OrderResult:
        held_at_send.append(sum(gateway.registry.lock(a.account_id).locked() for a in accounts))
        return await original(self, request)

    monkeypatch.setattr(SimTerminal, "send", observed)
    submitted = await client.trading.SubmitMasterOrder(market_order(group.group_id, "2.00"))
    stored = await _once_idle(client, gateway, submitted)
    assert stored.state == order_pb2.MASTER_ORDER_STATE_FILLED
    assert len(held_at_send) == len(accounts)
    assert held_at_send[0] == len(accounts)
