"""Per-member copy options on the simulator, on both databases: a source trades, each member
copies it as its options say (reversed, filtered, without stops, raised, close-only, without
pending orders, too far or too late), each skip on its allocation line, and closes close what
each account holds whatever its options."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from google.protobuf.duration_pb2 import Duration

from gateway._proto.mam.v1 import (
    account_pb2,
    account_service_pb2,
    common_pb2,
    order_pb2,
    trading_service_pb2,
)
from gateway.domain.allocation import AllocationReason
from gateway.domain.copying import CopyReference
from gateway.domain.group_source import SignalState
from gateway.domain.ids import AccountId, GroupId, MasterOrderId
from gateway.domain.orders import MasterOrder, MasterOrderSpec, OrderType, Side
from gateway.domain.source_book import SignalKind
from gateway.terminals.protocol import OrderRequest, Position, TradeAction
from tests.conftest import client_of
from tests.integration.helpers import create_accounts, create_group, market_order
from tests.integration.test_mirroring import Desk, deal, desk
from tests.support import make_config, running, until

D = Decimal
R = AllocationReason
POINT = D("0.00001")

# Members (equity 10,000 25,000 40,000 15,000 60,000 of 150,000): a source's 1.50 lots are
# 0.10, 0.25, 0.40, 0.15 and 0.60 before the options.
OPTIONS = {
    0: account_pb2.CopyOptions(reverse=True),
    1: account_pb2.CopyOptions(direction=account_pb2.COPY_DIRECTION_SELL_ONLY),
    2: account_pb2.CopyOptions(skip_stops=True),
    3: account_pb2.CopyOptions(close_only=True),
    4: account_pb2.CopyOptions(
        min_volume="0.80", min_volume_policy=account_pb2.MIN_VOLUME_POLICY_RAISE
    ),
}


def held(positions: list[Position]) -> dict[Side, Decimal]:
    out: dict[Side, Decimal] = {}
    for p in positions:
        out[p.side] = out.get(p.side, D(0)) + p.volume
    return out


def reasons_by_account(master: MasterOrder) -> dict[AccountId, tuple[R, ...]]:
    return {line.account_id: line.reasons for line in master.allocation.lines}


async def master_of(d: Desk, index: int) -> MasterOrder:
    records = await d.settled(index + 1)
    record = records[index]
    assert record.state is SignalState.COPIED, record.detail
    (master_id,) = record.master_order_ids
    master, _ = await d.gateway.engine.get(master_id)
    return master


async def stops(d: Desk, price_offset: str) -> tuple[Decimal, Decimal]:
    terminal = d.gateway.registry.get(d.source_id)
    assert terminal is not None
    quote = await terminal.quote("EURUSD")
    offset = D(price_offset)
    return (quote.bid - offset).quantize(POINT), (quote.ask + offset).quantize(POINT)


async def test_each_member_copies_a_position_as_its_options_say_and_closes_what_it_holds(
    tmp_path: Path, database_url: str
) -> None:
    async with desk(tmp_path, database_url, copy_options=OPTIONS) as d:
        m = d.members
        stop_loss, take_profit = await stops(d, "0.02000")
        ticket = await d.trade(deal(Side.BUY, "1.50", stop_loss=stop_loss, take_profit=take_profit))
        master = await master_of(d, 0)
        reasons = reasons_by_account(master)
        assert R.REVERSED in reasons[m[0]]
        assert reasons[m[1]][-1] is R.DIRECTION_FILTERED
        assert R.STOPS_NOT_COPIED in reasons[m[2]]
        assert reasons[m[3]][-1] is R.CLOSE_ONLY
        assert R.RAISED_TO_COPY_MIN in reasons[m[4]]
        # 0.10 + 0.40 + 0.80 lots traded: 1.30 (the reversed one counts as volume traded).
        assert master.allocation.allocated_volume == D("1.30")
        positions = await d.member_positions()
        assert held(positions[m[0]]) == {Side.SELL: D("0.10")}
        assert held(positions[m[1]]) == {} and held(positions[m[3]]) == {}
        assert held(positions[m[2]]) == {Side.BUY: D("0.40")}
        assert held(positions[m[4]]) == {Side.BUY: D("0.80")}
        # The reversed copy's SL is the source's TP and its TP the source's SL.
        (reversed_position,) = positions[m[0]]
        assert (reversed_position.stop_loss, reversed_position.take_profit) == (
            take_profit,
            stop_loss,
        )
        (bare,) = positions[m[2]]
        assert (bare.stop_loss, bare.take_profit) == (None, None)
        (raised,) = positions[m[4]]
        assert (raised.stop_loss, raised.take_profit) == (stop_loss, take_profit)
        # What each child copies is stored with it (a restart sends the same).
        _, children = await d.gateway.engine.get(master.master_order_id)
        by_account = {c.account_id: c for c in children}
        assert by_account[m[0]].side is Side.SELL and by_account[m[0]].stops_copied
        assert by_account[m[2]].side is Side.BUY and not by_account[m[2]].stops_copied

        # The source moves its stop loss: the reversed copy's take profit follows, the member
        # without stops is left alone.
        moved_stop = stop_loss + D("0.00100")
        await d.trade(
            OrderRequest(
                action=TradeAction.SLTP, symbol="EURUSD", side=Side.BUY, volume=D(0), tag="",
                magic=0, position_ticket=ticket, stop_loss=moved_stop, take_profit=take_profit,
            )
        )  # fmt: skip
        records = await d.settled(2)
        assert records[1].signal.kind is SignalKind.STOPS_CHANGED
        assert records[1].state is SignalState.COPIED, records[1].detail
        positions = await d.member_positions()
        (reversed_position,) = positions[m[0]]
        assert (reversed_position.stop_loss, reversed_position.take_profit) == (
            take_profit,
            moved_stop,
        )
        (bare,) = positions[m[2]]
        assert (bare.stop_loss, bare.take_profit) == (None, None)
        (raised,) = positions[m[4]]
        assert raised.stop_loss == moved_stop

        # 40 % closed at the source: each copy closes 40 % of what it holds, on its own side.
        await d.trade(deal(Side.SELL, "0.60", position=ticket))
        records = await d.settled(3)
        assert records[2].state is SignalState.COPIED, records[2].detail
        positions = await d.member_positions()
        assert held(positions[m[0]]) == {Side.SELL: D("0.06")}
        assert held(positions[m[2]]) == {Side.BUY: D("0.24")}
        assert held(positions[m[4]]) == {Side.BUY: D("0.48")}

        # A sell at the source: the sell-only member copies this one, the reversed one buys.
        second = await d.trade(deal(Side.SELL, "0.30"))
        master = await master_of(d, 3)
        assert master.spec.side is Side.SELL
        positions = await d.member_positions()
        assert held(positions[m[0]]) == {Side.SELL: D("0.06"), Side.BUY: D("0.02")}
        assert held(positions[m[1]]) == {Side.SELL: D("0.05")}
        assert held(positions[m[3]]) == {}
        assert held(positions[m[4]]) == {Side.BUY: D("0.48"), Side.SELL: D("0.80")}

        # Both closed at the source: every member is flat.
        await d.trade(deal(Side.SELL, "0.90", position=ticket))
        await d.trade(deal(Side.BUY, "0.30", position=second))
        records = await d.settled(6)
        assert all(r.state is SignalState.COPIED for r in records), [r.detail for r in records]
        assert all(not ps for ps in (await d.member_positions()).values())


async def test_pending_orders_are_mirrored_reversed_or_not_at_all(
    tmp_path: Path, database_url: str
) -> None:
    options = {
        0: account_pb2.CopyOptions(reverse=True),
        1: account_pb2.CopyOptions(skip_pending_orders=True),
    }
    async with desk(tmp_path, database_url, copy_options=options) as d:
        m = d.members
        source = d.gateway.registry.get(d.source_id)
        assert source is not None
        quote = await source.quote("EURUSD")
        price = (quote.ask - D("0.01000")).quantize(POINT)
        stop_loss, take_profit = price - D("0.01000"), price + D("0.02000")
        ticket = await d.trade(
            OrderRequest(
                action=TradeAction.PENDING, symbol="EURUSD", side=Side.BUY, volume=D("1.50"),
                tag="", magic=0, price=price, order_type=OrderType.LIMIT, stop_loss=stop_loss,
                take_profit=take_profit,
            )
        )  # fmt: skip
        master = await master_of(d, 0)
        reasons = reasons_by_account(master)
        assert R.REVERSED in reasons[m[0]]
        assert reasons[m[1]][-1] is R.PENDING_NOT_COPIED

        async def resting() -> dict[AccountId, list[tuple[Side, OrderType, Decimal]]]:
            out = {}
            for account_id in m:
                terminal = d.gateway.registry.get(account_id)
                assert terminal is not None
                out[account_id] = [
                    (o.side, o.order_type, o.price) for o in await terminal.pending_orders()
                ]
            return out

        async def all_placed() -> bool:
            return sum(len(v) for v in (await resting()).values()) == 4

        await until(all_placed)
        orders = await resting()
        # A buy limit below the market, reversed: a sell stop at the same price.
        assert orders[m[0]] == [(Side.SELL, OrderType.STOP, price)]
        assert orders[m[1]] == []
        assert orders[m[2]] == [(Side.BUY, OrderType.LIMIT, price)]
        terminal = d.gateway.registry.get(m[0])
        assert terminal is not None
        (reversed_order,) = await terminal.pending_orders()
        assert (reversed_order.stop_loss, reversed_order.take_profit) == (take_profit, stop_loss)

        # Cancelled at the source: cancelled on every member that copied it.
        await d.trade(
            OrderRequest(
                action=TradeAction.REMOVE, symbol="EURUSD", side=Side.BUY, volume=D(0), tag="",
                magic=0, order_ticket=ticket,
            )
        )  # fmt: skip
        records = await d.settled(2)
        assert records[1].signal.kind is SignalKind.ORDER_REMOVED

        async def none_resting() -> bool:
            return all(not v for v in (await resting()).values())

        await until(none_resting)


async def test_slippage_and_age_compare_with_the_source_and_not_an_api_order(
    tmp_path: Path, database_url: str
) -> None:
    config = make_config(tmp_path, database_url=database_url)
    async with running(config) as gateway, client_of(gateway) as client:
        members = await create_accounts(client.accounts, ["10000"] * 4, prefix="m")
        group = await create_group(
            client.accounts,
            members,
            copy_options={
                0: account_pb2.CopyOptions(max_slippage_points=50),
                1: account_pb2.CopyOptions(max_slippage_points=150),
                2: account_pb2.CopyOptions(max_signal_age=Duration(seconds=5)),
            },
        )
        ids = [AccountId(a.account_id) for a in members]
        terminal = gateway.registry.get(ids[0])
        assert terminal is not None
        quote = await terminal.quote("EURUSD")
        # The source bought 100 points below the members' ask, 10 s ago.
        source = CopyReference(
            price=quote.ask - 100 * POINT, signal_time=datetime.now(UTC) - timedelta(seconds=10)
        )
        spec = MasterOrderSpec(
            GroupId(group.group_id), "EURUSD", Side.BUY, OrderType.MARKET, D("0.40"), "copied-1"
        )
        preview = await gateway.engine.preview(spec, reference=source)
        reasons = {line.account_id: line.reasons for line in preview.lines}
        assert reasons[ids[0]][-1] is R.SLIPPAGE_TOO_HIGH
        assert reasons[ids[2]][-1] is R.SIGNAL_TOO_OLD
        assert R.SLIPPAGE_TOO_HIGH not in reasons[ids[1]] and not reasons[ids[3]]
        submission = await gateway.engine.submit(spec, submitted_by="test", reference=source)
        master_id = MasterOrderId(submission.master.master_order_id)

        async def final() -> bool:
            master, _ = await gateway.engine.get(master_id)
            return master.state.is_final

        await until(final)
        traded = {}
        for account_id in ids:
            account = gateway.registry.get(account_id)
            assert account is not None
            traded[account_id] = sum((p.volume for p in await account.positions()), D(0))
        assert traded == {ids[0]: 0, ids[1]: D("0.10"), ids[2]: 0, ids[3]: D("0.10")}

        # Over the API there is no source to compare with: every member copies, and the
        # preview shows the same.
        previewed = await client.trading.PreviewAllocation(
            trading_service_pb2.PreviewAllocationRequest(
                order=market_order(group.group_id, "0.40").order
            )
        )
        assert [line.volume for line in previewed.allocation.lines] == ["0.10"] * 4


async def test_the_preview_shows_each_members_copy_options_at_work(
    tmp_path: Path, database_url: str
) -> None:
    config = make_config(tmp_path, database_url=database_url)
    async with running(config) as gateway, client_of(gateway) as client:
        members = await create_accounts(client.accounts, ["10000"] * 3, prefix="m")
        group = await create_group(
            client.accounts,
            members,
            copy_options={
                0: account_pb2.CopyOptions(reverse=True),
                1: account_pb2.CopyOptions(close_only=True),
            },
        )
        previewed = await client.trading.PreviewAllocation(
            trading_service_pb2.PreviewAllocationRequest(
                order=market_order(group.group_id, "0.30").order
            )
        )
        lines = {line.account_id: line for line in previewed.allocation.lines}
        first, second, third = (lines[a.account_id] for a in members)
        assert order_pb2.ALLOCATION_REASON_REVERSED in first.reasons and first.volume == "0.10"
        assert list(second.reasons)[-1] == order_pb2.ALLOCATION_REASON_CLOSE_ONLY
        assert second.volume in ("0", "0.00") and not second.child_volumes
        assert third.volume == "0.10"
        assert previewed.allocation.allocated_volume == "0.20"


async def test_a_reversed_member_is_risk_checked_on_the_side_it_trades(
    tmp_path: Path, database_url: str
) -> None:
    """Two netting accounts long 0.20 each, at most 0.30 lot open per symbol: the group's buy
    of 0.20 each would take the plain member to 0.40 (skipped), while the reversed member's
    sell of 0.20 flattens it (sent)."""
    config = make_config(tmp_path, database_url=database_url)
    async with running(config) as gateway, client_of(gateway) as client:
        members = []
        for i in range(2):
            created = await client.accounts.CreateAccount(
                account_service_pb2.CreateAccountRequest(
                    account=account_pb2.Account(
                        name=f"netting-{i}", platform=common_pb2.PLATFORM_SIMULATED,
                        login=81001 + i, server="mam-sim", currency="USD",
                        margin_mode=common_pb2.MARGIN_MODE_NETTING,
                        simulated=account_pb2.SimulatedAccount(initial_balance="10000"),
                    )
                )
            )  # fmt: skip
            members.append(created.account)
        created_group = await client.accounts.CreateGroup(
            account_service_pb2.CreateGroupRequest(
                group=account_pb2.Group(
                    name="netting",
                    allocation=account_pb2.AllocationSettings(
                        method=account_pb2.ALLOCATION_METHOD_EQUAL
                    ),
                    members=[
                        account_pb2.GroupMember(
                            account_id=members[0].account_id,
                            copy_options=account_pb2.CopyOptions(reverse=True),
                        ),
                        account_pb2.GroupMember(account_id=members[1].account_id),
                    ],
                    risk_limits=account_pb2.RiskLimits(max_symbol_volume="0.30"),
                )
            )
        )
        group_id = GroupId(created_group.group.group_id)
        ids = [AccountId(a.account_id) for a in members]
        for account_id in ids:
            terminal = gateway.registry.get(account_id)
            assert terminal is not None
            await terminal.send(deal(Side.BUY, "0.20"))
        spec = MasterOrderSpec(group_id, "EURUSD", Side.BUY, OrderType.MARKET, D("0.40"), "r-1")
        submission = await gateway.engine.submit(spec, submitted_by="test")
        master_id = MasterOrderId(submission.master.master_order_id)

        async def final() -> bool:
            master, _ = await gateway.engine.get(master_id)
            return master.state.is_final

        await until(final)
        master, _ = await gateway.engine.get(master_id)
        reasons = reasons_by_account(master)
        assert R.REVERSED in reasons[ids[0]] and R.RISK_SKIPPED not in reasons[ids[0]]
        assert R.RISK_SKIPPED in reasons[ids[1]]
        flattened = gateway.registry.get(ids[0])
        plain = gateway.registry.get(ids[1])
        assert flattened is not None and plain is not None
        assert held(await flattened.positions()) == {}
        assert held(await plain.positions()) == {Side.BUY: D("0.20")}
