"""Mirroring survives SIGKILL: the demo strategy trades on the demo group's source while the
gateway is killed again and again; after a last start that only catches up, every change the
source made was done on the group once, and nothing else was.

What is checked at the brokers (the simulated broker's books, read from its file after the last
stop), on both databases:
- no signal is left WAITING, and none FAILED;
- every opening master order of the group is the copy of exactly one copied signal (its client
  order id is `src:<signal id>`), and every copied opening signal has its one master order;
- every position a member holds carries the tag of a child of a copy of a position the source
  still holds, and every pending order a member holds one of a copy of an order still resting
  at the source: nothing the source closed or cancelled is left open on the group, and nothing
  was opened twice under another id.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc

from gateway._proto.mam.v1 import (
    account_service_pb2,
    account_service_pb2_grpc,
    order_pb2,
    signal_pb2,
    trading_service_pb2,
    trading_service_pb2_grpc,
)
from gateway.api.server import simulated_broker
from gateway.config import load_config
from gateway.terminals.sim import SimBroker
from tests.e2e.gateway_process import GatewayProcess, write_config
from tests.support import DEMO_CONFIG

KILLS = 4
SEED = 20261207
SOURCE_LOGIN = 59001
OPENING_KINDS = {
    signal_pb2.SIGNAL_KIND_POSITION_OPENED,
    signal_pb2.SIGNAL_KIND_POSITION_INCREASED,
    signal_pb2.SIGNAL_KIND_ORDER_PLACED,
}


def _broker(state: Path) -> SimBroker:
    config = load_config(DEMO_CONFIG, environ={"MAM__SIMULATOR__STATE_PATH": str(state)})
    return simulated_broker(config)


async def _signals(trading: trading_service_pb2_grpc.TradingServiceStub) -> list[signal_pb2.Signal]:
    found, token = [], ""
    while True:
        page = await trading.ListSignals(
            trading_service_pb2.ListSignalsRequest(page_size=500, page_token=token)
        )
        found.extend(page.signals)
        token = page.next_page_token
        if not token:
            return found


async def _settled(
    trading: trading_service_pb2_grpc.TradingServiceStub, timeout_s: float = 60
) -> list[signal_pb2.Signal]:
    """The signals once none is waiting and every master order they made is final or
    working (a pending copy rests until its price)."""
    working = order_pb2.MASTER_ORDER_STATE_WORKING
    final = {
        order_pb2.MASTER_ORDER_STATE_FILLED,
        order_pb2.MASTER_ORDER_STATE_PARTIALLY_FILLED,
        order_pb2.MASTER_ORDER_STATE_REJECTED,
        order_pb2.MASTER_ORDER_STATE_CANCELLED,
        order_pb2.MASTER_ORDER_STATE_FAILED,
        working,
    }
    async with asyncio.timeout(timeout_s):
        while True:
            signals = await _signals(trading)
            if not any(s.state == signal_pb2.SIGNAL_STATE_WAITING for s in signals):
                states = [
                    (await _master(trading, master_id)).state
                    for s in signals
                    for master_id in s.master_order_ids
                ]
                if all(state in final for state in states):
                    return signals
            await asyncio.sleep(0.2)


async def _master(
    trading: trading_service_pb2_grpc.TradingServiceStub, master_id: str
) -> order_pb2.MasterOrder:
    got = await trading.GetMasterOrder(
        trading_service_pb2.GetMasterOrderRequest(master_order_id=master_id)
    )
    return got.master_order


async def _all_masters(
    trading: trading_service_pb2_grpc.TradingServiceStub,
) -> AsyncIterator[order_pb2.MasterOrder]:
    token = ""
    while True:
        page = await trading.ListMasterOrders(
            trading_service_pb2.ListMasterOrdersRequest(page_size=200, page_token=token)
        )
        for master in page.master_orders:
            yield master
        token = page.next_page_token
        if not token:
            return


async def test_sigkill_while_the_source_trades_copies_every_change_once(
    tmp_path: Path, database_url: str
) -> None:
    config = write_config(tmp_path, demo=True)
    state = tmp_path / "broker.db"
    trading_env = {
        "MAM__DEMO__STRATEGY": "true",
        "MAM__DEMO__STRATEGY_INTERVAL_SECONDS": "0.15",
        "MAM__SOURCES__LOOK_INTERVAL_SECONDS": "0.1",
    }

    def gateway(environment: dict[str, str]) -> GatewayProcess:
        return GatewayProcess(
            config,
            tmp_path / "gateway.db",
            latency_ms=5,
            broker_state=state,
            database_url=database_url,
            environment=environment,
        )

    draw = random.Random(SEED)
    for _ in range(KILLS):
        killed = gateway(trading_env)
        await killed.start()
        await asyncio.sleep(draw.uniform(1.0, 3.0))
        await killed.kill()

    # The last start only catches up: the source trades no more.
    last = gateway({"MAM__SOURCES__LOOK_INTERVAL_SECONDS": "0.1"})
    address = await last.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            trading = trading_service_pb2_grpc.TradingServiceStub(channel)
            accounts = account_service_pb2_grpc.AccountServiceStub(channel)
            signals = await _settled(trading)
            masters = {m.master_order_id: m async for m in _all_masters(trading)}
            children = {
                master_id: (await _master(trading, master_id)).children for master_id in masters
            }
            listed = await accounts.ListAccounts(
                account_service_pb2.ListAccountsRequest(page_size=100)
            )
            logins = {a.account_id: a.login for a in listed.accounts}
    finally:
        assert await last.stop() == 0

    by_state: dict[int, int] = {}
    for s in signals:
        by_state[s.state] = by_state.get(s.state, 0) + 1
    assert not [s for s in signals if s.state == signal_pb2.SIGNAL_STATE_WAITING]
    assert not [s for s in signals if s.state == signal_pb2.SIGNAL_STATE_FAILED], [
        (s.event_id, s.detail) for s in signals if s.state == signal_pb2.SIGNAL_STATE_FAILED
    ]
    copied_openings = [
        s for s in signals if s.kind in OPENING_KINDS and s.state == signal_pb2.SIGNAL_STATE_COPIED
    ]
    assert len(copied_openings) >= 3, by_state  # the strategy traded across the kills

    # Every opening master order is the copy of one copied signal, and each has one.
    openings = {master_id: m for master_id, m in masters.items() if not m.closes_master_order_id}
    copy_of = {m.spec.client_order_id: master_id for master_id, m in openings.items()}
    assert len(copy_of) == len(openings)
    assert set(copy_of) == {f"src:{s.event_id}" for s in copied_openings}
    for s in copied_openings:
        assert list(s.master_order_ids) == [copy_of[f"src:{s.event_id}"]]

    broker = _broker(state)
    try:
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        assert broker.deals(SOURCE_LOGIN, epoch), "the source never traded"
        open_at_source = {p.ticket for p in broker.positions(SOURCE_LOGIN)}
        resting_at_source = {o.ticket for o in broker.pending_orders(SOURCE_LOGIN)}
        live = {
            copy_of[f"src:{s.event_id}"]
            for s in copied_openings
            if s.ticket in open_at_source | resting_at_source
        }
        tags_of = {master_id: {c.tag for c in children[master_id]} for master_id in openings}
        live_tags = set().union(*(tags_of[m] for m in live)) if live else set()
        member_logins = [login for account_id, login in logins.items() if login != SOURCE_LOGIN]
        held = [p for login in member_logins for p in broker.positions(login)]
        resting = [o for login in member_logins for o in broker.pending_orders(login)]
    finally:
        broker.close()
    assert all(p.comment in live_tags for p in held), [
        (p.comment, p.volume) for p in held if p.comment not in live_tags
    ]
    assert all(o.comment in live_tags for o in resting), [
        (o.comment, o.volume) for o in resting if o.comment not in live_tags
    ]
