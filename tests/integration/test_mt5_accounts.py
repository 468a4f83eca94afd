"""MT5 accounts through the gateway: each account's terminal in its own worker process,
driven through the MetaTrader5 API (here its emulator, backed by the simulated broker), and a
master order over MT5 and simulated accounts filled on both, each child once."""

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
from gateway.config import Mt5Config
from gateway.domain.accounts import MarginMode
from gateway.terminals.mt5 import ModuleSpec, Mt5Settings
from gateway.terminals.mt5.emulator import EmulatorAccount, EmulatorConfig
from gateway.terminals.sim import SimSymbol
from gateway.terminals.sim.quotes import QuoteSettings
from tests.conftest import client_of
from tests.integration.helpers import create_accounts, create_group, market_order
from tests.support import make_config

LOGINS = (91_001, 91_002)
SERVER = "MAM-Emulated"


@pytest.fixture
async def gateway_with_mt5(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    config = make_config(tmp_path)
    symbols = tuple(
        SimSymbol(
            s.spec,
            QuoteSettings(
                initial_mid=s.initial_price,
                spread_points=s.spread_points,
                step_points=s.step_points,
                digits=s.spec.digits,
            ),
        )
        for s in config.symbols
    )
    by_login = {
        login: Mt5Settings(
            login=login,
            password=f"secret-{login}",
            server=SERVER,
            module=ModuleSpec.emulator(
                EmulatorConfig(
                    symbols=symbols,
                    account=EmulatorAccount(
                        login=login,
                        balance=Decimal(20_000),
                        password=f"secret-{login}",
                        server=SERVER,
                        margin_mode=MarginMode.HEDGING,
                    ),
                    state_path=tmp_path / f"mt5-{login}.db",
                )
            ),
        )
        for login in LOGINS
    }
    running = await start_gateway(dataclasses.replace(config, mt5=Mt5Config(by_login=by_login)))
    try:
        yield running
    finally:
        await running.stop(0.5)


async def test_a_master_order_fills_on_mt5_and_simulated_accounts(
    gateway_with_mt5: RunningGateway,
) -> None:
    gateway = gateway_with_mt5
    async with client_of(gateway) as client:
        mt5_accounts = [
            (
                await client.accounts.CreateAccount(
                    account_service_pb2.CreateAccountRequest(
                        account=account_pb2.Account(
                            name=f"mt5-{login}",
                            platform=common_pb2.PLATFORM_MT5,
                            login=login,
                            server=SERVER,
                            currency="USD",
                            margin_mode=common_pb2.MARGIN_MODE_HEDGING,
                        )
                    )
                )
            ).account
            for login in LOGINS
        ]
        sim_accounts = await create_accounts(client.accounts, ["20000"])
        group = await create_group(client.accounts, [*mt5_accounts, *sim_accounts])
        submitted = await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.90"))
        await gateway.engine.wait_idle()
        master = (
            await client.trading.GetMasterOrder(
                trading_service_pb2.GetMasterOrderRequest(
                    master_order_id=submitted.master_order.master_order_id
                )
            )
        ).master_order
        assert master.state == order_pb2.MASTER_ORDER_STATE_FILLED, master.state_reason
        by_account = {c.account_id: c for c in master.children}
        for account in mt5_accounts:
            child = by_account[account.account_id]
            assert Decimal(child.filled_volume) == Decimal("0.30")
            terminal = gateway.registry.get(account.account_id)
            assert terminal is not None
            # Exactly the child's volume at the broker: sent once, filled once.
            assert [p.volume for p in await terminal.positions()] == [Decimal("0.30")]
            assert [p.comment for p in await terminal.positions()] == [child.tag]
