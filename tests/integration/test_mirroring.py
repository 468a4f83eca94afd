"""Mirroring on the simulator: a source account trades by hand, the group follows, each step
checked on every member's broker against the group's allocation; on both databases."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from gateway._proto.mam.v1 import (
    account_pb2,
    account_service_pb2,
    common_pb2,
    reporting_service_pb2,
    reporting_service_pb2_grpc,
)
from gateway.api.server import RunningGateway
from gateway.domain.accounts import MarginMode
from gateway.domain.group_source import GroupSource, SignalRecord, SignalState
from gateway.domain.ids import AccountId, GroupId
from gateway.domain.orders import MasterOrderSpec, OrderType, Side
from gateway.domain.source_book import SignalKind
from gateway.engine.source_watcher import SourceWatchers, SourceWatchSettings
from gateway.terminals.protocol import OrderRequest, Position, TradeAction
from gateway.terminals.sim import SimTerminal
from tests.conftest import Client, client_of
from tests.fakes.fake_mt4_ea import FakeMt4Ea
from tests.fakes.mt4_bridge import make_broker
from tests.integration.helpers import create_accounts, create_group
from tests.integration.test_mt5_accounts import (
    BEHAVIOURS,
    create_mt5_accounts,
    gateway_over_mt5,
    mt5_terminal,
)
from tests.support import make_config, running, until

D = Decimal
MEMBER_EQUITIES = ["10000", "25000", "40000", "15000", "60000"]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Desk:
    gateway: RunningGateway
    group_id: GroupId
    source_id: AccountId
    members: list[AccountId]
    watchers: SourceWatchers

    async def trade(self, request: OrderRequest) -> int:
        """A trade the manager makes by hand at the source; its retcode."""
        terminal = self.gateway.registry.get(self.source_id)
        assert terminal is not None
        result = await terminal.send(request)
        assert result.retcode in (10008, 10009), result
        return result.order_ticket or result.position_ticket

    async def source_positions(self) -> list[Position]:
        terminal = self.gateway.registry.get(self.source_id)
        assert terminal is not None
        return await terminal.positions()

    async def signals(self) -> list[SignalRecord]:
        return await self.gateway.store.sources.list_signals(group_id=self.group_id)

    async def settled(self, count: int) -> list[SignalRecord]:
        """Waits until `count` signals are stored, none waiting and every master order they
        made final; returns them, latest state of each."""

        async def done() -> bool:
            records = await self.signals()
            if len(records) < count or any(r.state is SignalState.WAITING for r in records):
                return False
            for record in records:
                for master_id in record.master_order_ids:
                    master, _ = await self.gateway.engine.get(master_id)
                    working = master.spec.order_type is not OrderType.MARKET
                    if not master.state.is_final and not working:
                        return False
            return True

        await until(done, timeout_s=20)
        return await self.signals()

    async def member_positions(self) -> dict[AccountId, list[Position]]:
        held = {}
        for account_id in self.members:
            terminal = self.gateway.registry.get(account_id)
            assert terminal is not None
            held[account_id] = await terminal.positions()
        return held


@contextlib.asynccontextmanager
async def desk(
    tmp_path: Path,
    database_url: str,
    *,
    netting: bool = False,
    copy_options: dict[int, account_pb2.CopyOptions] | None = None,
) -> AsyncIterator[Desk]:
    config = make_config(tmp_path, database_url=database_url)
    async with running(config) as gateway:
        async with client_of(gateway) as client:
            members = await create_accounts(client.accounts, MEMBER_EQUITIES, prefix="member")
            if netting:
                source = await _netting_source(client)
            else:
                (source,) = await create_accounts(
                    client.accounts, ["100000"], prefix="source", first_login=90001
                )
            group = await create_group(client.accounts, members, copy_options=copy_options)
        group_id = GroupId(group.group_id)
        source_id = AccountId(source.account_id)
        now = _now()
        await gateway.store.sources.set_group_source(
            GroupSource(group_id, source_id, False, timedelta(seconds=60), now, now)
        )
        watchers = SourceWatchers(
            store=gateway.store,
            registry=gateway.registry,
            engine=gateway.engine,
            clock=_now,
            settings=SourceWatchSettings(look_interval_s=0.05),
        )
        await watchers.start()
        await first_look(gateway, group_id)
        try:
            yield Desk(
                gateway, group_id, source_id, [AccountId(m.account_id) for m in members], watchers
            )
        finally:
            await watchers.stop()


async def _netting_source(client: Client) -> account_pb2.Account:
    created = await client.accounts.CreateAccount(
        account_service_pb2.CreateAccountRequest(
            account=account_pb2.Account(
                name="source-netting",
                platform=common_pb2.PLATFORM_SIMULATED,
                login=90101,
                server="mam-sim",
                currency="USD",
                margin_mode=common_pb2.MARGIN_MODE_NETTING,
                simulated=account_pb2.SimulatedAccount(initial_balance="100000"),
            )
        )
    )
    return created.account


async def first_look(gateway: RunningGateway, group_id: GroupId) -> None:
    """Waits for the source's first look: what it holds then is not copied."""

    async def looked() -> bool:
        return await gateway.store.sources.source_book(group_id) != ""

    await until(looked)


def deal(side: Side, volume: str, *, position: int = 0, **fields: object) -> OrderRequest:
    return OrderRequest(
        action=TradeAction.DEAL,
        symbol="EURUSD",
        side=side,
        volume=D(volume),
        tag="",
        magic=0,
        position_ticket=position,
        **fields,  # type: ignore[arg-type]
    )


async def test_open_scale_out_move_stops_and_close_are_done_on_every_member(
    tmp_path: Path, database_url: str
) -> None:
    async with desk(tmp_path, database_url) as d:
        # Opened by hand at the source: the group gets a master order of the same volume.
        ticket = await d.trade(deal(Side.BUY, "1.00"))
        (opened,) = await d.settled(1)
        assert opened.signal.kind is SignalKind.POSITION_OPENED
        assert opened.state is SignalState.COPIED
        (master_id,) = opened.master_order_ids
        master, _ = await d.gateway.engine.get(master_id)
        assert master.spec.volume == D("1.00") and master.spec.side is Side.BUY
        assert master.spec.client_order_id == f"src:pos:{ticket}:open"
        lines = {line.account_id: line.volume for line in master.allocation.lines}
        held = await d.member_positions()
        assert {a: sum((p.volume for p in ps), D(0)) for a, ps in held.items()} == lines

        # A partial close of 40 %: each member closes its share, rounded as closes are.
        await d.trade(deal(Side.SELL, "0.40", position=ticket))
        records = await d.settled(2)
        reduced = records[-1]
        assert reduced.signal.kind is SignalKind.POSITION_REDUCED
        assert reduced.signal.fraction == D("0.4") and reduced.state is SignalState.COPIED
        (closing_id,) = reduced.master_order_ids
        closing, closing_children = await d.gateway.engine.get(closing_id)
        assert closing.spec.closes_master_order_id == master_id
        closed = {c.account_id: c.filled_volume for c in closing_children}
        held = await d.member_positions()
        for account_id, volume in lines.items():
            left = sum((p.volume for p in held[account_id]), D(0))
            assert left == volume - closed.get(account_id, D(0))
            assert closed.get(account_id, D(0)) <= volume * D("0.4")

        # Stops moved at the source: every member's position carries them.
        quote_terminal = d.gateway.registry.get(d.source_id)
        assert quote_terminal is not None
        quote = await quote_terminal.quote("EURUSD")
        stop_loss = (quote.bid - D("0.00500")).quantize(D("0.00001"))
        take_profit = (quote.ask + D("0.00500")).quantize(D("0.00001"))
        request = OrderRequest(
            action=TradeAction.SLTP,
            symbol="EURUSD",
            side=Side.BUY,
            volume=D(0),
            tag="",
            magic=0,
            position_ticket=ticket,
            stop_loss=stop_loss,
            take_profit=take_profit,
        )
        await d.trade(request)
        records = await d.settled(3)
        assert records[-1].signal.kind is SignalKind.STOPS_CHANGED
        assert records[-1].state is SignalState.COPIED, records[-1].detail
        for positions in (await d.member_positions()).values():
            for position in positions:
                assert (position.stop_loss, position.take_profit) == (stop_loss, take_profit)

        # Closed at the source: the group holds nothing.
        (source_position,) = await d.source_positions()
        await d.trade(deal(Side.SELL, str(source_position.volume), position=ticket))
        records = await d.settled(4)
        assert records[-1].signal.kind is SignalKind.POSITION_CLOSED
        assert records[-1].state is SignalState.COPIED
        assert all(not ps for ps in (await d.member_positions()).values())
        # Each change was one signal, acted on once.
        assert [r.signal.event_id for r in records] == [
            f"pos:{ticket}:open",
            f"pos:{ticket}:1",
            f"pos:{ticket}:2",
            f"pos:{ticket}:3",
        ]


async def test_a_pending_order_placed_moved_and_cancelled_at_the_source(
    tmp_path: Path, database_url: str
) -> None:
    async with desk(tmp_path, database_url) as d:
        source = d.gateway.registry.get(d.source_id)
        assert source is not None
        quote = await source.quote("EURUSD")
        price = (quote.ask - D("0.01000")).quantize(D("0.00001"))
        ticket = await d.trade(
            OrderRequest(
                action=TradeAction.PENDING,
                symbol="EURUSD",
                side=Side.BUY,
                volume=D("0.50"),
                tag="",
                magic=0,
                price=price,
                order_type=OrderType.LIMIT,
            )
        )
        (placed,) = await d.settled(1)
        assert placed.signal.kind is SignalKind.ORDER_PLACED and placed.state is SignalState.COPIED
        (master_id,) = placed.master_order_ids

        async def resting_prices() -> set[Decimal]:
            prices = set()
            for account_id in d.members:
                terminal = d.gateway.registry.get(account_id)
                assert terminal is not None
                prices |= {o.price for o in await terminal.pending_orders()}
            return prices

        async def resting_at(wanted: set[Decimal]) -> bool:
            return await resting_prices() == wanted

        await until(lambda: resting_at({price}))
        moved = price - D("0.00200")
        await d.trade(
            OrderRequest(
                action=TradeAction.MODIFY,
                symbol="EURUSD",
                side=Side.BUY,
                volume=D("0.50"),
                tag="",
                magic=0,
                price=moved,
                order_ticket=ticket,
                order_type=OrderType.LIMIT,
            )
        )
        records = await d.settled(2)
        assert records[-1].signal.kind is SignalKind.ORDER_MODIFIED
        assert records[-1].state is SignalState.COPIED, records[-1].detail
        await until(lambda: resting_at({moved}))
        await d.trade(
            OrderRequest(
                action=TradeAction.REMOVE,
                symbol="EURUSD",
                side=Side.BUY,
                volume=D(0),
                tag="",
                magic=0,
                order_ticket=ticket,
            )
        )
        records = await d.settled(3)
        assert records[-1].signal.kind is SignalKind.ORDER_REMOVED
        assert records[-1].state is SignalState.COPIED
        await until(lambda: resting_at(set()))
        master, _ = await d.gateway.engine.get(master_id)
        assert master.state.is_final


@pytest.mark.parametrize("restart", ["stop"])
async def test_changes_made_while_the_gateway_is_down_are_caught_up_once(
    tmp_path: Path, database_url: str, restart: str
) -> None:
    async with desk(tmp_path, database_url) as d:
        ticket = await d.trade(deal(Side.BUY, "1.00"))
        await d.settled(1)
        await d.watchers.stop()
        # While nobody watches: a partial close and a new position.
        await d.trade(deal(Side.SELL, "0.50", position=ticket))
        second = await d.trade(deal(Side.SELL, "0.30"))
        watchers = SourceWatchers(
            store=d.gateway.store,
            registry=d.gateway.registry,
            engine=d.gateway.engine,
            clock=_now,
            settings=SourceWatchSettings(look_interval_s=0.05),
        )
        d.watchers = watchers
        await watchers.start()
        records = await d.settled(3)
        assert [(r.signal.event_id, r.state) for r in records] == [
            (f"pos:{ticket}:open", SignalState.COPIED),
            (f"pos:{ticket}:1", SignalState.COPIED),
            (f"pos:{second}:open", SignalState.COPIED),
        ]
        held = await d.member_positions()
        sells = sum((p.volume for ps in held.values() for p in ps if p.side is Side.SELL), D(0))
        buys = sum((p.volume for ps in held.values() for p in ps if p.side is Side.BUY), D(0))
        assert sells == D("0.30") or abs(sells - D("0.30")) <= D("0.05")
        assert D("0.45") <= buys <= D("0.55")


async def net_open(d: Desk) -> dict[Side, Decimal]:
    """What the members hold in all, by side."""
    held: dict[Side, Decimal] = {Side.BUY: D(0), Side.SELL: D(0)}
    for positions in (await d.member_positions()).values():
        for position in positions:
            held[position.side] += position.volume
    return held


async def test_a_close_by_at_the_source_closes_each_position_s_copies(
    tmp_path: Path, database_url: str
) -> None:
    async with desk(tmp_path, database_url) as d:
        long = await d.trade(deal(Side.BUY, "1.00"))
        short = await d.trade(deal(Side.SELL, "0.40"))
        await d.settled(2)
        assert await net_open(d) == {Side.BUY: D("1.00"), Side.SELL: D("0.40")}
        await d.trade(
            OrderRequest(
                action=TradeAction.CLOSE_BY,
                symbol="EURUSD",
                side=Side.BUY,
                volume=D(0),
                tag="",
                magic=0,
                position_ticket=long,
                position_by=short,
            )
        )
        records = await d.settled(4)
        assert [(r.signal.event_id, r.signal.kind, r.state) for r in records[2:]] == [
            (f"pos:{long}:1", SignalKind.POSITION_REDUCED, SignalState.COPIED),
            (f"pos:{short}:1", SignalKind.POSITION_CLOSED, SignalState.COPIED),
        ]
        assert records[2].signal.fraction == D("0.4")
        held = await net_open(d)
        assert held[Side.SELL] == 0
        # Each member closed its share of the long copy, rounded down to its step.
        assert D("0.60") <= held[Side.BUY] <= D("0.65")


async def test_a_netting_reversal_at_the_source_closes_the_copies_and_opens_the_other_side(
    tmp_path: Path, database_url: str
) -> None:
    async with desk(tmp_path, database_url, netting=True) as d:
        ticket = await d.trade(deal(Side.BUY, "1.00"))
        await d.settled(1)
        (held,) = await d.source_positions()
        await d.trade(deal(Side.SELL, "1.50"))
        (reversed_,) = await d.source_positions()
        assert reversed_.side is Side.SELL and reversed_.volume == D("0.50")
        records = await d.settled(3)
        kinds = [(r.signal.kind, r.state) for r in records[1:]]
        assert kinds == [
            (SignalKind.POSITION_CLOSED, SignalState.COPIED),
            (SignalKind.POSITION_OPENED, SignalState.COPIED),
        ]
        opened = records[2].signal
        assert (opened.side, opened.volume) == (Side.SELL, D("0.50"))
        # The netting position keeps its ticket: the close and the new side are its changes.
        assert ticket == held.ticket == reversed_.ticket
        assert [r.signal.event_id for r in records] == [
            f"pos:{ticket}:open",
            f"pos:{ticket}:1",
            f"pos:{ticket}:2",
        ]
        assert await net_open(d) == {Side.BUY: D(0), Side.SELL: D("0.50")}


async def test_a_source_disconnected_while_it_trades_is_caught_up_on_reconnect(
    tmp_path: Path, database_url: str
) -> None:
    async with desk(tmp_path, database_url) as d:
        ticket = await d.trade(deal(Side.BUY, "1.00"))
        await d.settled(1)
        watched = d.gateway.registry.get(d.source_id)
        assert isinstance(watched, SimTerminal)
        watched.disconnect()
        # The manager goes on trading at the broker through their own terminal.
        login = (await d.gateway.store.get_account(d.source_id)).login  # type: ignore[union-attr]
        own = SimTerminal(d.source_id, login, d.gateway.broker)
        closed = await own.send(deal(Side.SELL, "0.50", position=ticket))
        opened = await own.send(deal(Side.SELL, "0.20"))
        assert {closed.retcode, opened.retcode} <= {10008, 10009}
        await asyncio.sleep(0.3)  # several looks fail meanwhile: nothing is stored from them
        assert len(await d.signals()) == 1
        watched.reconnect()
        records = await d.settled(3)
        assert [(r.signal.kind, r.state) for r in records[1:]] == [
            (SignalKind.POSITION_REDUCED, SignalState.COPIED),
            (SignalKind.POSITION_OPENED, SignalState.COPIED),
        ]
        held = await net_open(d)
        assert D("0.45") <= held[Side.BUY] <= D("0.55")
        assert held[Side.SELL] == D("0.20")


@pytest.mark.parametrize("behaviour", ["plain", "like-a-real-terminal"])
async def test_an_mt5_source_is_mirrored_through_the_metatrader5_api(
    tmp_path: Path, behaviour: str
) -> None:
    # The source's terminal is driven through the MetaTrader5 API (its emulator, in a worker
    # process, answering as a real terminal does when asked), set as the source over the API.
    async with (
        gateway_over_mt5(tmp_path, BEHAVIOURS[behaviour]) as gateway,
        client_of(gateway) as client,
    ):
        source, _ = await create_mt5_accounts(client)
        members = await create_accounts(client.accounts, MEMBER_EQUITIES, prefix="member")
        group = await create_group(client.accounts, members)
        await client.accounts.SetGroupSource(
            account_service_pb2.SetGroupSourceRequest(
                group_id=group.group_id,
                source=account_pb2.GroupSource(account_id=source.account_id),
            )
        )
        group_id = GroupId(group.group_id)
        await first_look(gateway, group_id)
        terminal = mt5_terminal(gateway, source.account_id)
        opened = await terminal.send(deal(Side.BUY, "1.00"))
        assert opened.retcode in (10008, 10009), opened
        d = Desk(
            gateway,
            group_id,
            AccountId(source.account_id),
            [AccountId(m.account_id) for m in members],
            watchers=gateway.sources,  # type: ignore[arg-type]
        )
        (signal,) = await d.settled(1)
        assert (signal.signal.kind, signal.state) == (
            SignalKind.POSITION_OPENED,
            SignalState.COPIED,
        )
        assert await net_open(d) == {Side.BUY: D("1.00"), Side.SELL: D(0)}
        (position,) = await terminal.positions()
        closed = await terminal.send(deal(Side.SELL, "1.00", position=position.ticket))
        assert closed.retcode in (10008, 10009), closed
        records = await d.settled(2)
        assert (records[-1].signal.kind, records[-1].state) == (
            SignalKind.POSITION_CLOSED,
            SignalState.COPIED,
        )
        assert await net_open(d) == {Side.BUY: D(0), Side.SELL: D(0)}


@dataclass
class Mt4Source:
    """A desk whose source is an MT4 account behind its Expert Advisor (the fake EA, speaking
    the bridge protocol exactly, over the gateway's own bridge)."""

    desk: Desk
    ea: FakeMt4Ea
    login: int

    def by_hand(self, request: OrderRequest) -> int:
        """A trade made in the MT4 terminal itself, not through the gateway: only the EA sees
        it (and pushes it, or is asked); the position's or order's ticket."""
        result = self.ea.broker.execute(self.login, request)
        assert result.retcode in (10008, 10009), result
        return result.order_ticket or result.position_ticket


@contextlib.asynccontextmanager
async def mt4_source_desk(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    protocol_max: int = 2,
    look_interval_s: float | None = None,
) -> AsyncIterator[Mt4Source]:
    """`protocol_max` 2: an EA that pushes its trades; 1: one from before, always asked."""
    login = 81_501
    monkeypatch.setenv(f"MAM_MT4_TOKEN_{login}", "source-ea-token-81501")
    config = make_config(tmp_path)
    config = dataclasses.replace(
        config, mt4_bridge=dataclasses.replace(config.mt4_bridge, listen="127.0.0.1:0")
    )
    if look_interval_s is not None:
        config = dataclasses.replace(
            config,
            sources=dataclasses.replace(config.sources, look_interval_seconds=look_interval_s),
        )
    async with running(config) as gateway, client_of(gateway) as client:
        assert gateway.mt4_bridge is not None
        host, port = gateway.mt4_bridge.address
        broker = make_broker()
        broker.open_account(login, balance=D(100_000), margin_mode=MarginMode.HEDGING)
        ea = FakeMt4Ea(
            broker,
            login,
            host=host,
            port=port,
            token="source-ea-token-81501",
            protocol_max=protocol_max,
        )
        assert (await ea.connect())["type"] == "welcome"
        try:
            source = (
                await client.accounts.CreateAccount(
                    account_service_pb2.CreateAccountRequest(
                        account=account_pb2.Account(
                            name="mt4-source",
                            platform=common_pb2.PLATFORM_MT4,
                            login=login,
                            server="Sim-Demo",
                            currency="USD",
                            margin_mode=common_pb2.MARGIN_MODE_HEDGING,
                        )
                    )
                )
            ).account
            members = await create_accounts(client.accounts, MEMBER_EQUITIES, prefix="member")
            group = await create_group(client.accounts, members)
            await client.accounts.SetGroupSource(
                account_service_pb2.SetGroupSourceRequest(
                    group_id=group.group_id,
                    source=account_pb2.GroupSource(account_id=source.account_id),
                )
            )
            group_id = GroupId(group.group_id)

            async def attached() -> bool:
                return gateway.registry.get(source.account_id) is not None

            await until(attached)
            await first_look(gateway, group_id)
            d = Desk(
                gateway,
                group_id,
                AccountId(source.account_id),
                [AccountId(m.account_id) for m in members],
                watchers=gateway.sources,  # type: ignore[arg-type]
            )
            yield Mt4Source(d, ea, login)
        finally:
            await ea.disconnect()


@pytest.mark.parametrize("protocol_max", [2, 1], ids=["pushing-ea", "ea-from-before-pushes"])
async def test_an_mt4_source_behind_its_ea_is_mirrored_through_a_partial_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol_max: int
) -> None:
    # MT4 gives a partial close's rest a new ticket, which the gateway still reads as the same
    # position; whether the EA pushes its trades or is asked at every look.
    async with mt4_source_desk(tmp_path, monkeypatch, protocol_max=protocol_max) as source:
        d = source.desk
        ticket = await d.trade(deal(Side.BUY, "1.00"))
        await d.settled(1)
        assert await net_open(d) == {Side.BUY: D("1.00"), Side.SELL: D(0)}
        await d.trade(deal(Side.SELL, "0.40", position=ticket))
        records = await d.settled(2)
        assert (records[-1].signal.kind, records[-1].signal.fraction) == (
            SignalKind.POSITION_REDUCED,
            D("0.4"),
        )
        assert records[-1].state is SignalState.COPIED
        assert D("0.55") <= (await net_open(d))[Side.BUY] <= D("0.65")
        (rest,) = await d.source_positions()
        await d.trade(deal(Side.SELL, str(rest.volume), position=rest.ticket))
        records = await d.settled(3)
        assert (records[-1].signal.kind, records[-1].state) == (
            SignalKind.POSITION_CLOSED,
            SignalState.COPIED,
        )
        assert await net_open(d) == {Side.BUY: D(0), Side.SELL: D(0)}


async def test_an_mt4_source_whose_ea_pushes_its_trades_is_copied_without_waiting_for_a_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One look a minute: only the EA's push of each trade made by hand in its terminal can have
    # it copied within the wait of `settled` (20 s), and seen well before the next look.
    look_interval = timedelta(seconds=60)
    async with mt4_source_desk(
        tmp_path, monkeypatch, look_interval_s=look_interval.total_seconds()
    ) as source:
        d = source.desk
        made_at = _now()
        ticket = source.by_hand(deal(Side.BUY, "1.00"))
        (opened,) = await d.settled(1)
        assert (opened.signal.kind, opened.state) == (
            SignalKind.POSITION_OPENED,
            SignalState.COPIED,
        )
        assert opened.observed_at - made_at < look_interval / 4
        assert await net_open(d) == {Side.BUY: D("1.00"), Side.SELL: D(0)}
        made_at = _now()
        source.by_hand(deal(Side.SELL, "1.00", position=ticket))
        records = await d.settled(2)
        assert (records[-1].signal.kind, records[-1].state) == (
            SignalKind.POSITION_CLOSED,
            SignalState.COPIED,
        )
        assert records[-1].observed_at - made_at < look_interval / 4
        assert await net_open(d) == {Side.BUY: D(0), Side.SELL: D(0)}
        # Every look read the pool the EA pushed: none asked it.
        assert source.ea.orders_requests == 0


async def test_execution_quality_measures_each_copy_from_the_change_at_the_source(
    tmp_path: Path, database_url: str
) -> None:
    async with desk(tmp_path, database_url) as d:
        before = _now()
        ticket = await d.trade(deal(Side.BUY, "1.00"))
        await d.settled(1)
        await d.trade(deal(Side.SELL, "1.00", position=ticket))
        records = await d.settled(2)
        copies = [m for r in records for m in r.master_order_ids]
        direct = await d.gateway.engine.submit(
            MasterOrderSpec(d.group_id, "EURUSD", Side.BUY, OrderType.MARKET, D("0.50"), "desk-1")
        )
        await d.gateway.engine.wait_idle()
        period = {"start_time": timestamp(before - timedelta(minutes=1))}
        period["end_time"] = timestamp(_now() + timedelta(minutes=1))
        async with grpc.aio.insecure_channel(d.gateway.address) as channel:
            reporting = reporting_service_pb2_grpc.ReportingServiceStub(channel)
            quality = await reporting.GetExecutionQuality(
                reporting_service_pb2.GetExecutionQualityRequest(account_id=d.members[-1], **period)
            )
        assert quality.orders == 3 and quality.copied_orders == 2
        to_send = quality.average_signal_to_send.ToTimedelta()
        to_fill = quality.max_signal_to_fill.ToTimedelta()
        # The look interval (50 ms here) and the copy's own path: well under a few seconds.
        assert timedelta(0) < to_send <= to_fill < timedelta(seconds=5)
        by_master = {s.master_order_id: s for s in quality.dispatch_skews}
        for master_id in copies:
            assert by_master[master_id].HasField("signal_to_first_send")
            assert by_master[master_id].HasField("signal_to_last_fill")
        own = by_master[direct.master.master_order_id]
        assert not own.HasField("signal_to_first_send")


def timestamp(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp
