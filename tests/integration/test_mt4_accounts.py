"""MT4 accounts through the gateway: Expert Advisors (here the fake EA, speaking the bridge
protocol exactly) connect out to the gateway's MT4 bridge, and a master order over MT4 and
simulated accounts fills on both, through the same engine, each child once."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from gateway._proto.mam.v1 import (
    account_pb2,
    account_service_pb2,
    common_pb2,
    order_pb2,
    trading_service_pb2,
)
from gateway.api.server import RunningGateway, start_gateway
from gateway.domain.accounts import MarginMode
from tests.conftest import client_of
from tests.fakes.fake_mt4_ea import FakeMt4Ea
from tests.fakes.mt4_bridge import make_broker
from tests.integration.helpers import create_accounts, create_group, market_order
from tests.support import make_config

LOGINS = (81_001, 81_002)


@pytest.fixture
async def gateway_with_bridge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunningGateway]:
    for login in LOGINS:
        monkeypatch.setenv(f"MAM_MT4_TOKEN_{login}", f"bridge-token-of-login-{login}")
    config = make_config(tmp_path)
    config = dataclasses.replace(
        config,
        mt4_bridge=dataclasses.replace(config.mt4_bridge, listen="127.0.0.1:0"),
    )
    running = await start_gateway(config)
    try:
        yield running
    finally:
        await running.stop(0.5)


async def test_a_master_order_fills_on_mt4_and_simulated_accounts(
    gateway_with_bridge: RunningGateway,
) -> None:
    gateway = gateway_with_bridge
    assert gateway.mt4_bridge is not None
    host, port = gateway.mt4_bridge.address
    broker = make_broker()  # the MT4 accounts' broker, behind their EAs
    eas = []
    for login in LOGINS:
        broker.open_account(login, balance=Decimal(20_000), margin_mode=MarginMode.HEDGING)
        ea = FakeMt4Ea(broker, login, host=host, port=port, token=f"bridge-token-of-login-{login}")
        assert (await ea.connect())["type"] == "welcome"
        eas.append(ea)
    try:
        async with client_of(gateway) as client:
            mt4_accounts = [
                (
                    await client.accounts.CreateAccount(
                        account_service_pb2.CreateAccountRequest(
                            account=account_pb2.Account(
                                name=f"mt4-{login}",
                                platform=common_pb2.PLATFORM_MT4,
                                login=login,
                                server="Sim-Demo",
                                currency="USD",
                                margin_mode=common_pb2.MARGIN_MODE_HEDGING,
                            )
                        )
                    )
                ).account
                for login in LOGINS
            ]
            sim_accounts = await create_accounts(client.accounts, ["20000"])
            group = await create_group(client.accounts, [*mt4_accounts, *sim_accounts])
            submitted = await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.90"))
            await gateway.engine.wait_idle()
            got = await client.trading.GetMasterOrder(
                trading_service_pb2.GetMasterOrderRequest(
                    master_order_id=submitted.master_order.master_order_id
                )
            )
            master = got.master_order
            assert master.state == order_pb2.MASTER_ORDER_STATE_FILLED, master.state_reason
            by_account = {c.account_id: c for c in master.children}
            assert len(by_account) == 3
            for account in mt4_accounts:
                child = by_account[account.account_id]
                assert Decimal(child.filled_volume) == Decimal("0.30")
                assert child.position_ticket
            # Each MT4 account holds exactly its child's volume: sent once, filled once.
            for login in LOGINS:
                positions = broker.positions(login)
                assert [p.volume for p in positions] == [Decimal("0.30")]
    finally:
        for ea in eas:
            await ea.disconnect()
