"""The demo (`make run`): group `demo` mirrors a source account of its own, `demo-source`, on
which the seeded demo strategy trades; within seconds the group's signal stream shows its steps
copied. With the strategy off, the source is still set and nothing trades."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import grpc

from gateway._proto.mam.v1 import signal_pb2, trading_service_pb2
from gateway.config import GatewayConfig, SourcesConfig
from tests.conftest import client_of
from tests.support import make_config, running


def demo_config(tmp_path: Path, *, strategy: bool) -> GatewayConfig:
    config = make_config(tmp_path, demo=True)
    assert config.demo is not None and config.demo.source is not None
    return dataclasses.replace(
        config,
        demo=dataclasses.replace(
            config.demo, strategy=strategy, strategy_interval_seconds=0.4, strategy_seed=3
        ),
        sources=SourcesConfig(look_interval_seconds=0.05, look_timeout_seconds=5),
    )


async def test_the_demo_strategy_trades_on_the_source_and_the_group_mirrors_it(
    tmp_path: Path,
) -> None:
    async with running(demo_config(tmp_path, strategy=True)) as gateway:
        group = await gateway.accounts.find_group_by_name("demo")
        assert group is not None
        source = await gateway.accounts.group_source(group.group_id)
        assert source is not None and not source.paused
        account = await gateway.accounts.get_account(source.account_id)
        assert account.name == "demo-source"
        assert account.account_id not in group.account_ids
        assert gateway.demo_strategy is not None

        copied: dict[int, signal_pb2.Signal] = {}
        wanted = {
            signal_pb2.SIGNAL_KIND_POSITION_OPENED,
            signal_pb2.SIGNAL_KIND_ORDER_PLACED,
            signal_pb2.SIGNAL_KIND_ORDER_REMOVED,
        }
        async with client_of(gateway) as client:
            stream = client.trading.StreamSignals(
                trading_service_pb2.StreamSignalsRequest(group_id=group.group_id)
            )

            async def until_copied() -> None:
                while not (wanted <= copied.keys() and len(copied) >= 4):
                    message = await stream.read()
                    assert message is not grpc.aio.EOF
                    for signal in message.signals:
                        assert signal.group_id == group.group_id
                        assert signal.source_account_id == account.account_id
                        if signal.state == signal_pb2.SIGNAL_STATE_COPIED:
                            copied.setdefault(signal.kind, signal)

            try:
                await asyncio.wait_for(until_copied(), 30)
            finally:
                stream.cancel()
            # The opening was copied as a master order of the group, from the signal's id.
            opened = copied[signal_pb2.SIGNAL_KIND_POSITION_OPENED]
            (master_id,) = opened.master_order_ids
            master = await client.trading.GetMasterOrder(
                trading_service_pb2.GetMasterOrderRequest(master_order_id=master_id)
            )
            assert master.master_order.spec.group_id == group.group_id
            assert master.master_order.spec.client_order_id == f"src:{opened.event_id}"
            assert master.master_order.spec.volume == opened.volume
        assert gateway.demo_strategy.steps_done >= 4


async def test_with_the_strategy_off_the_source_is_set_once_and_nothing_trades(
    tmp_path: Path,
) -> None:
    config = demo_config(tmp_path, strategy=False)
    async with running(config) as gateway:
        assert gateway.demo_strategy is None
        group = await gateway.accounts.find_group_by_name("demo")
        assert group is not None
        source = await gateway.accounts.group_source(group.group_id)
        assert source is not None
        await asyncio.sleep(0.5)
        assert await gateway.store.sources.list_signals() == []
        terminal = gateway.registry.get(source.account_id)
        assert terminal is not None and await terminal.positions() == []
    # A later start finds the account and the source as they are: nothing is made again.
    async with running(config) as gateway:
        accounts = [a for a in await gateway.accounts.all_accounts() if a.name == "demo-source"]
        assert [a.account_id for a in accounts] == [source.account_id]
        assert await gateway.accounts.group_source(group.group_id) == source
