"""The simulated broker's order lifecycle and broker rules, answered as an MT5 trade server."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.domain import retcodes
from gateway.domain.account_history import DealEntry
from gateway.domain.orders import FillingPolicy, OrderType, Side, TimeInForce
from gateway.terminals.protocol import TradeAction
from gateway.terminals.sim import SymbolRules, SymbolTradeMode, TradingSessions
from tests.unit.sim_helpers import (
    HEDGING,
    MONDAY_NOON,
    NETTING,
    Clock,
    D,
    deal,
    make_broker,
    on_ticket,
    pending,
    points,
)

# -- closing positions ------------------------------------------------------------------------


def test_partial_close_on_hedging_keeps_the_ticket_and_credits_the_realized_profit() -> None:
    clock = Clock()
    sim = make_broker(clock)
    opened = sim.execute(HEDGING, deal(Side.BUY, "0.30"))
    clock.advance(40)  # the quote walks away from the open price
    bid, _, _ = sim.feed.bid_ask("EURUSD")
    assert bid != opened.price
    closed = sim.execute(
        HEDGING, deal(Side.SELL, "0.10", tag="mam:C", position_ticket=opened.position_ticket)
    )
    assert (closed.retcode, closed.position_ticket, closed.price) == (
        retcodes.DONE,
        opened.position_ticket,
        bid,
    )
    [position] = sim.positions(HEDGING)
    assert (position.ticket, position.volume) == (opened.position_ticket, D("0.20"))
    assert opened.price is not None
    # 0.10 lots of EURUSD: one point is worth 0.10 USD.
    expected = (bid - opened.price) / points(1) * D("0.10")
    [closing_deal] = sim.find_by_tag(HEDGING, "mam:C").deals
    assert (closing_deal.entry, closing_deal.profit) == (DealEntry.OUT, expected)
    assert sim.account_info(HEDGING).balance == D(10_000) + expected


def test_closing_the_rest_removes_the_position() -> None:
    sim = make_broker()
    opened = sim.execute(HEDGING, deal(Side.BUY, "0.30"))
    for _ in range(3):
        result = sim.execute(
            HEDGING, deal(Side.SELL, "0.10", position_ticket=opened.position_ticket)
        )
        assert result.retcode == retcodes.DONE
    assert sim.positions(HEDGING) == []
    entries = [d.entry for d in sim.deals(HEDGING, MONDAY_NOON)]
    assert entries == [DealEntry.IN, DealEntry.OUT, DealEntry.OUT, DealEntry.OUT]


def test_closes_the_broker_cannot_do_are_refused_with_mt5_retcodes() -> None:
    sim = make_broker()
    opened = sim.execute(HEDGING, deal(Side.BUY, "0.30"))
    ticket = opened.position_ticket
    too_much = sim.execute(HEDGING, deal(Side.SELL, "0.40", position_ticket=ticket))
    same_side = sim.execute(HEDGING, deal(Side.BUY, "0.10", position_ticket=ticket))
    unknown = sim.execute(HEDGING, deal(Side.SELL, "0.10", position_ticket=ticket + 999))
    assert too_much.retcode == retcodes.INVALID_CLOSE_VOLUME
    assert same_side.retcode == retcodes.INVALID
    assert unknown.retcode == retcodes.POSITION_CLOSED
    assert [p.volume for p in sim.positions(HEDGING)] == [D("0.30")]


def test_an_opposite_deal_without_a_ticket_opens_a_second_position_on_hedging() -> None:
    sim = make_broker()
    sim.execute(HEDGING, deal(Side.BUY, "0.30"))
    sim.execute(HEDGING, deal(Side.SELL, "0.10"))
    assert sorted((p.side.value, p.volume) for p in sim.positions(HEDGING)) == [
        ("BUY", D("0.30")),
        ("SELL", D("0.10")),
    ]


def test_netting_reduces_closes_and_reverses_the_one_position_keeping_its_ticket() -> None:
    clock = Clock()
    sim = make_broker(clock)
    opened = sim.execute(NETTING, deal(Side.BUY, "0.30"))
    added = sim.execute(NETTING, deal(Side.BUY, "0.10"))
    [position] = sim.positions(NETTING)
    assert (position.volume, added.position_ticket) == (D("0.40"), opened.position_ticket)
    assert opened.price is not None and added.price is not None
    # Same quote: the average open price is the same price.
    assert position.price_open == opened.price

    clock.advance(30)
    bid, ask, _ = sim.feed.bid_ask("EURUSD")
    reduced = sim.execute(NETTING, deal(Side.SELL, "0.15", tag="mam:R"))
    [position] = sim.positions(NETTING)
    assert (position.side, position.volume) == (Side.BUY, D("0.25"))
    [reducing] = sim.find_by_tag(NETTING, "mam:R").deals
    assert reducing.entry is DealEntry.OUT
    assert reducing.profit == (bid - opened.price) / points(1) * D("0.15")
    assert reduced.position_ticket == opened.position_ticket

    reversed_ = sim.execute(NETTING, deal(Side.SELL, "0.40", tag="mam:V"))
    [position] = sim.positions(NETTING)
    assert (position.ticket, position.side, position.volume) == (
        opened.position_ticket,
        Side.SELL,
        D("0.15"),
    )
    assert position.price_open == bid == reversed_.price
    [reversing] = sim.find_by_tag(NETTING, "mam:V").deals
    assert reversing.entry is DealEntry.INOUT
    assert reversing.profit == (bid - opened.price) / points(1) * D("0.25")
    balance = sim.account_info(NETTING).balance
    assert balance == D(10_000) + reducing.profit + reversing.profit
    assert ask > bid


def test_partial_close_of_a_netting_position_by_its_ticket_cannot_reverse_it() -> None:
    sim = make_broker()
    opened = sim.execute(NETTING, deal(Side.BUY, "0.20"))
    refused = sim.execute(NETTING, deal(Side.SELL, "0.30", position_ticket=opened.position_ticket))
    closed = sim.execute(NETTING, deal(Side.SELL, "0.05", position_ticket=opened.position_ticket))
    assert refused.retcode == retcodes.INVALID_CLOSE_VOLUME
    assert closed.retcode == retcodes.DONE
    assert [p.volume for p in sim.positions(NETTING)] == [D("0.15")]


def test_close_by_realizes_the_difference_of_the_two_open_prices() -> None:
    clock = Clock()
    sim = make_broker(clock)
    bought = sim.execute(HEDGING, deal(Side.BUY, "0.30"))
    clock.advance(50)
    sold = sim.execute(HEDGING, deal(Side.SELL, "0.10"))
    assert bought.price is not None and sold.price is not None
    result = sim.execute(
        HEDGING,
        on_ticket(
            TradeAction.CLOSE_BY,
            position_ticket=bought.position_ticket,
            position_by=sold.position_ticket,
        ),
    )
    assert result.retcode == retcodes.DONE
    [rest] = sim.positions(HEDGING)
    assert (rest.ticket, rest.volume) == (bought.position_ticket, D("0.20"))
    closing = [d for d in sim.find_by_tag(HEDGING, "mam:M").deals]
    assert [d.entry for d in closing] == [DealEntry.OUT_BY, DealEntry.OUT_BY]
    profit = (sold.price - bought.price) / points(1) * D("0.10")
    assert sum(d.profit for d in closing) == profit
    assert sim.account_info(HEDGING).balance == D(10_000) + profit


def test_close_by_is_refused_on_netting_and_for_same_side_positions() -> None:
    sim = make_broker()
    first = sim.execute(HEDGING, deal(Side.BUY, "0.10"))
    second = sim.execute(HEDGING, deal(Side.BUY, "0.10"))
    same_side = sim.execute(
        HEDGING,
        on_ticket(
            TradeAction.CLOSE_BY,
            position_ticket=first.position_ticket,
            position_by=second.position_ticket,
        ),
    )
    netted = sim.execute(NETTING, deal(Side.BUY, "0.10"))
    on_netting = sim.execute(
        NETTING,
        on_ticket(
            TradeAction.CLOSE_BY,
            position_ticket=netted.position_ticket,
            position_by=netted.position_ticket,
        ),
    )
    assert same_side.retcode == retcodes.INVALID
    assert on_netting.retcode == retcodes.INVALID


# -- SL/TP ----------------------------------------------------------------------------------


def test_sltp_sets_the_stops_of_a_position_and_refuses_bad_or_unchanged_ones() -> None:
    sim = make_broker()
    opened = sim.execute(HEDGING, deal(Side.BUY, "0.10"))
    bid, _, _ = sim.feed.bid_ask("EURUSD")
    ticket = opened.position_ticket

    def sltp(sl: Decimal | None, tp: Decimal | None) -> int:
        request = on_ticket(TradeAction.SLTP, position_ticket=ticket, stop_loss=sl, take_profit=tp)
        return sim.execute(HEDGING, request).retcode

    # stops_level is 10 points: SL at least 10 points below the bid, TP 10 above.
    assert sltp(bid - points(9), None) == retcodes.INVALID_STOPS
    assert sltp(None, bid - points(20)) == retcodes.INVALID_STOPS
    assert sltp(bid - points(10), bid + points(10)) == retcodes.DONE
    [position] = sim.positions(HEDGING)
    assert (position.stop_loss, position.take_profit) == (bid - points(10), bid + points(10))
    assert sltp(bid - points(10), bid + points(10)) == retcodes.NO_CHANGES
    assert sltp(None, None) == retcodes.DONE
    assert sim.positions(HEDGING)[0].stop_loss is None
    gone = on_ticket(TradeAction.SLTP, position_ticket=ticket + 999, stop_loss=bid - points(50))
    assert sim.execute(HEDGING, gone).retcode == retcodes.POSITION_CLOSED


def test_a_deal_with_stops_on_the_wrong_side_is_invalid_stops() -> None:
    sim = make_broker()
    _, ask, _ = sim.feed.bid_ask("EURUSD")
    result = sim.execute(HEDGING, deal(Side.SELL, "0.10", stop_loss=ask - points(50)))
    assert result.retcode == retcodes.INVALID_STOPS
    ok = sim.execute(HEDGING, deal(Side.SELL, "0.10", stop_loss=ask + points(50)))
    assert ok.retcode == retcodes.DONE
    assert sim.positions(HEDGING)[0].stop_loss == ask + points(50)


# -- pending orders ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "order_type", "offset", "placed"),
    [
        (Side.BUY, OrderType.LIMIT, -20, True),
        (Side.BUY, OrderType.LIMIT, 20, False),
        (Side.BUY, OrderType.LIMIT, -5, False),  # closer than the stops level
        (Side.SELL, OrderType.LIMIT, 20, True),
        (Side.SELL, OrderType.LIMIT, -20, False),
        (Side.BUY, OrderType.STOP, 20, True),
        (Side.BUY, OrderType.STOP, -20, False),
        (Side.SELL, OrderType.STOP, -20, True),
        (Side.SELL, OrderType.STOP, 20, False),
    ],
)
def test_pending_prices_must_lie_on_the_right_side_of_the_market(
    side: Side, order_type: OrderType, offset: int, placed: bool
) -> None:
    sim = make_broker()
    bid, ask, _ = sim.feed.bid_ask("EURUSD")
    market = ask if side is Side.BUY else bid
    result = sim.execute(HEDGING, pending(side, order_type, "0.10", market + points(offset)))
    if placed:
        assert (result.retcode, result.order_ticket > 0) == (retcodes.PLACED, True)
        [order] = sim.pending_orders(HEDGING)
        assert (order.ticket, order.order_type, order.side) == (
            result.order_ticket,
            order_type,
            side,
        )
    else:
        assert result.retcode == retcodes.INVALID_PRICE
        assert sim.pending_orders(HEDGING) == []


def test_pending_placement_refusals() -> None:
    sim = make_broker()
    bid, ask, now = sim.feed.bid_ask("EURUSD")
    below = ask - points(20)
    market_type = sim.execute(HEDGING, pending(Side.BUY, OrderType.MARKET, "0.10", below))
    no_price = sim.execute(HEDGING, pending(Side.BUY, OrderType.LIMIT, "0.10", None))
    bad_volume = sim.execute(HEDGING, pending(Side.BUY, OrderType.LIMIT, "0.015", below))
    bad_stops = sim.execute(
        HEDGING, pending(Side.BUY, OrderType.LIMIT, "0.10", below, stop_loss=below + points(5))
    )
    past = sim.execute(
        HEDGING,
        pending(
            Side.BUY,
            OrderType.LIMIT,
            "0.10",
            below,
            time_in_force=TimeInForce.SPECIFIED,
            expires_at=now - timedelta(seconds=1),
        ),
    )
    wrong_limit = sim.execute(
        HEDGING,
        pending(
            Side.BUY,
            OrderType.STOP_LIMIT,
            "0.10",
            ask + points(20),
            stop_limit_price=ask + points(30),
        ),
    )
    assert market_type.retcode == retcodes.INVALID
    assert no_price.retcode == retcodes.INVALID_PRICE
    assert bad_volume.retcode == retcodes.INVALID_VOLUME
    assert bad_stops.retcode == retcodes.INVALID_STOPS
    assert past.retcode == retcodes.INVALID_EXPIRATION
    assert wrong_limit.retcode == retcodes.INVALID_PRICE
    assert sim.pending_orders(HEDGING) == []
    assert bid < ask


def test_modify_and_remove_a_pending_order() -> None:
    sim = make_broker()
    _, ask, _ = sim.feed.bid_ask("EURUSD")
    placed = sim.execute(HEDGING, pending(Side.BUY, OrderType.LIMIT, "0.10", ask - points(20)))
    ticket = placed.order_ticket

    moved = sim.execute(
        HEDGING,
        on_ticket(
            TradeAction.MODIFY,
            order_ticket=ticket,
            price=ask - points(40),
            take_profit=ask + points(40),
        ),
    )
    assert moved.retcode == retcodes.DONE
    [order] = sim.pending_orders(HEDGING)
    assert (order.price, order.take_profit) == (ask - points(40), ask + points(40))
    same = on_ticket(
        TradeAction.MODIFY,
        order_ticket=ticket,
        price=ask - points(40),
        take_profit=ask + points(40),
    )
    assert sim.execute(HEDGING, same).retcode == retcodes.NO_CHANGES
    wrong_side = on_ticket(TradeAction.MODIFY, order_ticket=ticket, price=ask + points(40))
    assert sim.execute(HEDGING, wrong_side).retcode == retcodes.INVALID_PRICE
    unknown = on_ticket(TradeAction.REMOVE, order_ticket=ticket + 999)
    assert sim.execute(HEDGING, unknown).retcode == retcodes.INVALID

    removed = sim.execute(HEDGING, on_ticket(TradeAction.REMOVE, order_ticket=ticket))
    assert (removed.retcode, removed.order_ticket) == (retcodes.DONE, ticket)
    assert sim.pending_orders(HEDGING) == []
    assert sim.positions(HEDGING) == []


def _walk_until(clock: Clock, condition: object, limit: int = 5_000) -> int:
    for step in range(limit):
        if condition():  # type: ignore[operator]
            return step
        clock.advance(1)
    raise AssertionError("the quote never got there")


def test_a_buy_limit_fills_when_the_ask_comes_down_to_its_price() -> None:
    clock = Clock()
    sim = make_broker(clock)
    _, ask, _ = sim.feed.bid_ask("EURUSD")
    limit = ask - points(15)
    placed = sim.execute(HEDGING, pending(Side.BUY, OrderType.LIMIT, "0.10", limit, tag="mam:L"))

    def filled() -> bool:
        asks = sim.feed.bid_ask("EURUSD")[1]
        waiting = bool(sim.pending_orders(HEDGING))
        # Resting exactly while the ask is above the limit.
        assert waiting == (asks > limit)
        return not waiting

    assert _walk_until(clock, filled) > 0
    records = sim.find_by_tag(HEDGING, "mam:L")
    [position] = records.positions
    [fill] = records.deals
    assert records.orders == ()
    assert position.ticket == fill.order_ticket == placed.order_ticket
    assert (fill.entry, fill.volume) == (DealEntry.IN, D("0.10"))
    assert fill.price <= limit


def test_a_sell_stop_fills_when_the_bid_falls_to_it() -> None:
    clock = Clock()
    sim = make_broker(clock)
    bid, _, _ = sim.feed.bid_ask("EURUSD")
    stop = bid - points(15)
    sim.execute(NETTING, pending(Side.SELL, OrderType.STOP, "0.20", stop, tag="mam:S"))
    _walk_until(clock, lambda: not sim.pending_orders(NETTING))
    [position] = sim.positions(NETTING)
    assert (position.side, position.volume) == (Side.SELL, D("0.20"))
    assert position.price_open <= stop


def test_a_stop_limit_becomes_a_limit_order_when_its_stop_is_reached() -> None:
    clock = Clock()
    sim = make_broker(clock)
    _, ask, _ = sim.feed.bid_ask("EURUSD")
    stop, limit = ask + points(15), ask + points(5)
    placed = sim.execute(
        HEDGING, pending(Side.BUY, OrderType.STOP_LIMIT, "0.10", stop, stop_limit_price=limit)
    )
    assert placed.retcode == retcodes.PLACED

    def activated() -> bool:
        orders = sim.pending_orders(HEDGING)
        return not orders or orders[0].order_type is OrderType.LIMIT

    _walk_until(clock, activated)
    orders = sim.pending_orders(HEDGING)
    if orders:  # activated, waiting for the ask to come back down to the limit
        assert (orders[0].price, orders[0].ticket) == (limit, placed.order_ticket)
        _walk_until(clock, lambda: not sim.pending_orders(HEDGING))
    [position] = sim.positions(HEDGING)
    assert position.ticket == placed.order_ticket and position.price_open <= limit


def test_pending_orders_expire_at_their_time_and_day_orders_at_midnight() -> None:
    clock = Clock()
    sim = make_broker(clock)
    _, ask, now = sim.feed.bid_ask("EURUSD")
    far = ask - points(5_000)  # never reached
    sim.execute(
        HEDGING,
        pending(
            Side.BUY,
            OrderType.LIMIT,
            "0.10",
            far,
            tag="mam:X",
            time_in_force=TimeInForce.SPECIFIED,
            expires_at=now + timedelta(minutes=5),
        ),
    )
    sim.execute(
        HEDGING,
        pending(Side.BUY, OrderType.LIMIT, "0.10", far, tag="mam:Y", time_in_force=TimeInForce.DAY),
    )
    assert len(sim.pending_orders(HEDGING)) == 2
    clock.advance(5 * 60)
    assert [o.comment for o in sim.pending_orders(HEDGING)] == ["mam:Y"]
    clock.advance(12 * 3600)  # past midnight UTC
    assert sim.pending_orders(HEDGING) == []
    assert sim.positions(HEDGING) == []


# -- broker rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "side", "retcode"),
    [
        (SymbolTradeMode.DISABLED, Side.BUY, retcodes.TRADE_DISABLED),
        (SymbolTradeMode.LONGONLY, Side.SELL, retcodes.LONG_ONLY),
        (SymbolTradeMode.LONGONLY, Side.BUY, retcodes.DONE),
        (SymbolTradeMode.SHORTONLY, Side.BUY, retcodes.SHORT_ONLY),
        (SymbolTradeMode.SHORTONLY, Side.SELL, retcodes.DONE),
        (SymbolTradeMode.CLOSEONLY, Side.BUY, retcodes.CLOSE_ONLY),
        (SymbolTradeMode.FULL, Side.SELL, retcodes.DONE),
    ],
)
def test_trade_modes_refuse_what_they_forbid(
    mode: SymbolTradeMode, side: Side, retcode: int
) -> None:
    sim = make_broker(rules=SymbolRules(trade_mode=mode))
    assert sim.execute(HEDGING, deal(side, "0.10")).retcode == retcode
    _, ask, _ = sim.feed.bid_ask("EURUSD")
    away = ask - points(50) if side is Side.BUY else ask + points(50)
    limit = pending(side, OrderType.LIMIT, "0.10", away)
    expected_pending = retcodes.PLACED if retcode == retcodes.DONE else retcode
    assert sim.execute(HEDGING, limit).retcode == expected_pending


@pytest.mark.parametrize("mode", [SymbolTradeMode.CLOSEONLY, SymbolTradeMode.SHORTONLY])
def test_reducing_a_long_position_is_allowed_where_opening_is_not(
    tmp_path: Path, mode: SymbolTradeMode
) -> None:
    state = tmp_path / "broker.db"
    before = make_broker(state_path=state)
    opened = before.execute(NETTING, deal(Side.BUY, "0.20"))
    before.close()
    # The same books, now under a restrictive trade mode.
    after = make_broker(state_path=state, rules=SymbolRules(trade_mode=mode))
    reduce = after.execute(NETTING, deal(Side.SELL, "0.05"))
    reverse = after.execute(NETTING, deal(Side.SELL, "0.30"))  # would open 0.15 short
    close = after.execute(NETTING, deal(Side.SELL, "0.15", position_ticket=opened.position_ticket))
    assert reduce.retcode == retcodes.DONE
    assert reverse.retcode == (
        retcodes.CLOSE_ONLY if mode is SymbolTradeMode.CLOSEONLY else retcodes.DONE
    )
    if mode is SymbolTradeMode.CLOSEONLY:
        assert close.retcode == retcodes.DONE
        assert after.positions(NETTING) == []
    else:  # short only: the reversal left 0.15 short, which cannot be closed by a buy ticket
        assert close.retcode == retcodes.INVALID
    after.close()


def test_outside_its_sessions_a_symbol_is_market_closed() -> None:
    # Weekdays 08:00-16:00 UTC only.
    sessions = TradingSessions.parse(["Mon-Fri 08:00-16:00"])
    clock = Clock()  # Monday 12:00
    sim = make_broker(clock, rules=SymbolRules(sessions=sessions))
    assert sim.execute(HEDGING, deal(Side.BUY, "0.10")).retcode == retcodes.DONE
    clock.advance(4 * 3600)  # 16:00
    closed = sim.execute(HEDGING, deal(Side.BUY, "0.10"))
    assert closed.retcode == retcodes.MARKET_CLOSED and closed.bid is not None
    clock.advance(5 * 86400 - 8 * 3600)  # Saturday 08:00
    assert sim.execute(HEDGING, deal(Side.BUY, "0.10")).retcode == retcodes.MARKET_CLOSED
    clock.advance(2 * 86400)  # Monday 08:00
    assert sim.execute(HEDGING, deal(Side.BUY, "0.10")).retcode == retcodes.DONE


def test_sessions_parse_weekday_ranges_and_refuse_nonsense() -> None:
    sessions = TradingSessions.parse(["Mon-Thu 00:00-24:00", "Fri 00:00-21:00", "Sun 22:00-24:00"])
    assert sessions.by_weekday[4] == ((0, 21 * 60),)
    assert sessions.by_weekday[5] == ()
    assert sessions.by_weekday[6] == ((22 * 60, 24 * 60),)
    for bad in ("Mon 10:00", "Xyz 00:00-01:00", "Mon 12:00-11:00", "Mon 00:00-25:00"):
        with pytest.raises(ValueError, match="session"):
            TradingSessions.parse([bad])


def test_no_money_refuses_opening_but_not_closing() -> None:
    sim = make_broker(balance=D(1_000))
    # 0.90 lots need ~976 USD of margin at 1:100; a second 0.90 does not fit.
    first = sim.execute(NETTING, deal(Side.BUY, "0.90"))
    second = sim.execute(NETTING, deal(Side.BUY, "0.90"))
    closing = sim.execute(NETTING, deal(Side.SELL, "0.90"))
    assert (first.retcode, second.retcode, closing.retcode) == (
        retcodes.DONE,
        retcodes.NO_MONEY,
        retcodes.DONE,
    )


def test_free_margin_is_what_a_new_order_is_checked_against() -> None:
    sim = make_broker()
    bought = sim.execute(HEDGING, deal(Side.BUY, "0.50"))
    info = sim.account_info(HEDGING)
    assert bought.price is not None
    assert info.margin == (D("0.50") * 100_000 * bought.price / 100).quantize(D("0.01"))
    assert info.free_margin == info.equity - info.margin


def test_a_fok_market_order_without_enough_liquidity_is_rejected_whole() -> None:
    sim = make_broker()
    result = sim.execute(HEDGING, deal(Side.BUY, "0.50"), available_volume=D("0.20"))
    assert (result.retcode, result.volume) == (retcodes.REJECT, 0)
    assert sim.positions(HEDGING) == []


def test_ioc_fills_what_is_available_and_cancels_the_rest() -> None:
    sim = make_broker()
    request = deal(Side.BUY, "0.50", filling=FillingPolicy.IOC)
    result = sim.execute(HEDGING, request, available_volume=D("0.20"))
    assert (result.retcode, result.volume) == (retcodes.DONE_PARTIAL, D("0.20"))
    assert [p.volume for p in sim.positions(HEDGING)] == [D("0.20")]
    assert sim.pending_orders(HEDGING) == []


def test_return_fills_what_is_available_and_leaves_the_rest_working() -> None:
    clock = Clock()
    sim = make_broker(clock)
    request = deal(Side.BUY, "0.50", tag="mam:R", filling=FillingPolicy.RETURN)
    result = sim.execute(HEDGING, request, available_volume=D("0.20"))
    assert (result.retcode, result.volume) == (retcodes.DONE_PARTIAL, D("0.20"))
    records = sim.find_by_tag(HEDGING, "mam:R")
    [rest] = records.orders
    assert (rest.ticket, rest.volume, rest.volume_initial, rest.price) == (
        result.order_ticket,
        D("0.30"),
        D("0.50"),
        result.price,
    )
    assert [d.volume for d in records.deals] == [D("0.20")]
    # On a later tick at or below its price, the rest fills under the same order ticket.
    _walk_until(clock, lambda: not sim.pending_orders(HEDGING))
    deals = sim.find_by_tag(HEDGING, "mam:R").deals
    assert [d.volume for d in deals] == [D("0.20"), D("0.30")]
    assert {d.order_ticket for d in deals} == {result.order_ticket}
    [position] = sim.positions(HEDGING)
    assert (position.ticket, position.volume) == (result.order_ticket, D("0.50"))


def test_find_by_tag_returns_orders_positions_and_deals_of_that_tag_only() -> None:
    sim = make_broker()
    _, ask, _ = sim.feed.bid_ask("EURUSD")
    sim.execute(HEDGING, deal(Side.BUY, "0.10", tag="mam:A"))
    sim.execute(HEDGING, deal(Side.BUY, "0.10", tag="mam:B"))
    sim.execute(HEDGING, pending(Side.BUY, OrderType.LIMIT, "0.10", ask - points(50), tag="mam:A"))
    records = sim.find_by_tag(HEDGING, "mam:A")
    assert (len(records.orders), len(records.positions), len(records.deals)) == (1, 1, 1)
    assert sim.find_by_tag(HEDGING, "mam:none").deals == ()
