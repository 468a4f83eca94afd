"""The simulated broker executes a request as of its arrival (sent + latency): its quote, its
time, its market hours, however late the event loop (or the emulator's thread) runs it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from gateway.domain import retcodes
from gateway.domain.orders import OrderType, Side
from gateway.terminals.mt5 import constants
from gateway.terminals.mt5.emulator import MetaTrader5Emulator
from gateway.terminals.protocol import OrderRequest, OrderResult, TerminalError
from gateway.terminals.sim import (
    Fault,
    LatencySettings,
    QuoteFeed,
    SimBroker,
    SimTerminal,
    SymbolRules,
    TradingSessions,
)
from tests.unit.sim_helpers import (
    HEDGING,
    MONDAY_NOON,
    QUOTES,
    TICK_MS,
    Clock,
    deal,
    make_broker,
    pending,
    points,
)

LATENCY_MS = 20
LATENCY = timedelta(milliseconds=LATENCY_MS)
# How late the loop gets round to the execution: many ticks after the arrival.
LOOP_LAG_S = 7.0
# Sent 10 ms before a tick ends: the request arrives in the next tick.
SENT_AT = MONDAY_NOON + timedelta(milliseconds=TICK_MS - 10)
ARRIVED_AT = SENT_AT + LATENCY
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def broker_at(
    at: datetime, *, rules: SymbolRules | None = None, started: datetime = MONDAY_NOON
) -> tuple[SimBroker, Clock]:
    """make_broker's broker, its feed started at `started` (tick 0), and its clock at `at`."""
    clock = Clock()
    clock.ns = ns(started)
    sim = make_broker(clock, rules=rules)
    clock.ns = ns(at)
    return sim, clock


def ns(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1) * 1_000


def quote_at(at: datetime) -> tuple[Decimal, Decimal]:
    """The bid and ask at `at` of a broker like make_broker's: the seeded walk replayed."""
    reference, _ = broker_at(at)
    bid, ask, _ = reference.feed.bid_ask("EURUSD")
    return bid, ask


async def sent_then_run_late(term: SimTerminal, clock: Clock, request: OrderRequest) -> OrderResult:
    """Sends the request at the clock's time; while it is under way, the clock runs
    LOOP_LAG_S ahead, as it does when the event loop is busy elsewhere."""
    sending = asyncio.create_task(term.send(request))
    await asyncio.sleep(0)  # the request leaves: the terminal reads the clock
    clock.advance(LOOP_LAG_S)
    return await sending


def test_the_arrival_tick_has_another_price_than_the_sending_and_the_late_ones() -> None:
    # The tests below could pass by accident if these were equal.
    at_arrival = quote_at(ARRIVED_AT)
    assert at_arrival != quote_at(SENT_AT)
    assert at_arrival != quote_at(ARRIVED_AT + timedelta(seconds=LOOP_LAG_S))


# -- SimTerminal ----------------------------------------------------------------------------


async def test_a_deal_is_priced_and_stamped_at_its_arrival_however_late_the_loop_runs_it() -> None:
    sim, clock = broker_at(SENT_AT)
    term = SimTerminal("acc_1", HEDGING, sim, latency_ms=LATENCY_MS)
    # At market: the terminal prices it as it leaves; the deviation lets the broker take it.
    request = deal(Side.BUY, "0.10", deviation_points=1_000)
    result = await sent_then_run_late(term, clock, request)
    bid, ask = quote_at(ARRIVED_AT)
    assert result.retcode == retcodes.DONE
    assert result.request_price == quote_at(SENT_AT)[1]
    assert (result.price, result.bid, result.ask) == (ask, bid, ask)
    assert result.executed_at == ARRIVED_AT
    (stored,) = sim.deals(HEDGING, MONDAY_NOON)
    assert (stored.executed_at, stored.price) == (ARRIVED_AT, ask)
    (position,) = sim.positions(HEDGING)
    assert (position.opened_at, position.price_open) == (ARRIVED_AT, ask)


async def test_a_deal_priced_as_it_left_is_requoted_beyond_its_deviation_at_arrival() -> None:
    sim, clock = broker_at(SENT_AT)
    term = SimTerminal("acc_1", HEDGING, sim, latency_ms=LATENCY_MS)
    result = await sent_then_run_late(term, clock, deal(Side.BUY, "0.10", deviation_points=0))
    bid, ask = quote_at(ARRIVED_AT)
    assert result.retcode == retcodes.REQUOTE
    assert (result.request_price, result.bid, result.ask) == (quote_at(SENT_AT)[1], bid, ask)
    assert sim.deals(HEDGING, MONDAY_NOON) == []


async def test_a_pending_order_is_placed_at_its_arrival() -> None:
    sim, clock = broker_at(SENT_AT)
    term = SimTerminal("acc_1", HEDGING, sim, latency_ms=LATENCY_MS)
    bid, ask = quote_at(ARRIVED_AT)
    limit = bid - points(200)
    result = await sent_then_run_late(
        term, clock, pending(Side.BUY, OrderType.LIMIT, "0.10", limit)
    )
    assert result.retcode == retcodes.PLACED
    assert (result.bid, result.ask, result.executed_at) == (bid, ask, ARRIVED_AT)
    (order,) = sim.pending_orders(HEDGING)
    assert order.placed_at == ARRIVED_AT


async def test_market_hours_are_those_of_the_arrival() -> None:
    # Open until noon; the request arrives at 11:59:59.995, runs when the market has closed.
    rules = SymbolRules(sessions=TradingSessions.parse(["Mon 00:00-12:00"]))
    sent_at = MONDAY_NOON - timedelta(milliseconds=5) - LATENCY
    sim, clock = broker_at(sent_at, rules=rules, started=MONDAY_NOON - timedelta(minutes=1))
    term = SimTerminal("acc_1", HEDGING, sim, latency_ms=LATENCY_MS)
    result = await sent_then_run_late(term, clock, deal(Side.BUY, "0.10"))
    assert result.retcode == retcodes.DONE
    assert result.executed_at == sent_at + LATENCY
    # What the closed market answers now.
    assert sim.execute(HEDGING, deal(Side.BUY, "0.10")).retcode == retcodes.MARKET_CLOSED


async def test_a_requote_carries_the_prices_of_the_arrival() -> None:
    sim, clock = broker_at(SENT_AT)
    term = SimTerminal("acc_1", HEDGING, sim, latency_ms=LATENCY_MS)
    term.faults.fail_next(Fault.REQUOTE)
    result = await sent_then_run_late(term, clock, deal(Side.BUY, "0.10"))
    assert (result.retcode, result.bid, result.ask) == (retcodes.REQUOTE, *quote_at(ARRIVED_AT))


async def test_a_request_arriving_after_a_disconnect_is_still_refused() -> None:
    sim, _ = broker_at(SENT_AT)
    term = SimTerminal("acc_1", HEDGING, sim, latency_ms=LATENCY_MS)
    sending = asyncio.create_task(term.send(deal(Side.BUY, "0.10")))
    await asyncio.sleep(0)
    term.disconnect()
    with pytest.raises(TerminalError):
        await sending
    assert sim.deals(HEDGING, MONDAY_NOON) == []


async def test_without_latency_a_request_executes_at_the_time_it_is_sent() -> None:
    sim, _ = broker_at(SENT_AT)
    term = SimTerminal("acc_1", HEDGING, sim)
    result = await term.send(deal(Side.BUY, "0.10"))
    assert (result.executed_at, result.price) == (SENT_AT, quote_at(SENT_AT)[1])


# -- SimBroker ------------------------------------------------------------------------------


def test_execute_without_a_time_executes_now() -> None:
    sim, _ = broker_at(ARRIVED_AT)
    result = sim.execute(HEDGING, deal(Side.BUY, "0.10"))
    assert (result.executed_at, result.price) == (ARRIVED_AT, quote_at(ARRIVED_AT)[1])


def test_a_pending_order_touched_by_a_late_request_fills_at_its_arrival() -> None:
    sim, clock = broker_at(SENT_AT)
    bid, _, _ = sim.feed.bid_ask("EURUSD")
    placed = sim.execute(HEDGING, pending(Side.BUY, OrderType.LIMIT, "0.10", bid - points(50)))
    assert placed.retcode == retcodes.PLACED
    sim.feed.move("EURUSD", -80)  # from now on the ask is below the limit
    arrival_ns = clock.ns + 1_200_000_000  # a tick after the order was placed
    _, ask_at_arrival, arrival = sim.feed.bid_ask_at("EURUSD", arrival_ns)
    clock.advance(LOOP_LAG_S)
    assert sim.feed.bid_ask("EURUSD")[1] != ask_at_arrival
    sim.execute(HEDGING, deal(Side.SELL, "0.01"), at_ns=arrival_ns)
    (fill,) = [d for d in sim.deals(HEDGING, MONDAY_NOON) if d.order_ticket == placed.order_ticket]
    assert (fill.executed_at, fill.price) == (arrival, ask_at_arrival)


# -- the MT5 emulator -----------------------------------------------------------------------


def test_the_emulator_executes_at_the_arrival_however_late_its_thread_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim, clock = broker_at(SENT_AT)
    mt5 = MetaTrader5Emulator()
    mt5.emulator_attach(
        sim, login=HEDGING, password="pw", latency=LatencySettings(ms=float(LATENCY_MS))
    )
    assert mt5.initialize(login=HEDGING, password="pw")
    assert mt5.symbol_select("EURUSD", True)

    def late_sleep(seconds: float) -> None:
        clock.advance(seconds + LOOP_LAG_S)

    monkeypatch.setattr(time, "sleep", late_sleep)
    request = {
        "action": constants.TRADE_ACTION_DEAL,
        "symbol": "EURUSD",
        "volume": 0.1,
        "type": constants.ORDER_TYPE_BUY,
        "magic": 7,
        "comment": "mam:T",
    }
    result = mt5.order_send(request)
    monkeypatch.undo()
    bid, ask = quote_at(ARRIVED_AT)
    assert result.retcode == constants.TRADE_RETCODE_DONE
    assert (result.price, result.bid, result.ask) == (float(ask), float(bid), float(ask))
    (stored,) = sim.deals(HEDGING, MONDAY_NOON)
    assert (stored.executed_at, stored.price) == (ARRIVED_AT, ask)


# -- QuoteFeed.bid_ask_at -------------------------------------------------------------------

SETTINGS = {"EURUSD": QUOTES}
MS = 1_000_000


def feed(clock: list[int], *, history_length: int = 1024) -> QuoteFeed:
    """A feed with 1 ms ticks starting at 0 on the clock `clock[0]`."""
    return QuoteFeed(
        SETTINGS,
        seed=5,
        tick_interval_ms=1,
        clock_ns=lambda: clock[0],
        history_length=history_length,
    )


def test_bid_ask_at_a_past_time_is_what_bid_ask_answered_then() -> None:
    now = [0]
    quotes = feed(now)
    seen = []
    # Asked at uneven times, some ticks skipped, several asks in one tick.
    for at in range(0, 200 * MS, 370_001):
        now[0] = at
        seen.append((at, quotes.bid_ask("EURUSD")))
    assert len({quote[:2] for _, quote in seen}) > 1
    for at, quote in seen:
        assert quotes.bid_ask_at("EURUSD", at) == quote


def fresh_quote(at: int) -> tuple[Decimal, Decimal]:
    """The quote at `at` of a feed with the same seed, asked only then."""
    clock = [0]
    fresh = feed(clock)
    clock[0] = at
    bid, ask, _ = fresh.bid_ask("EURUSD")
    return bid, ask


def test_bid_ask_at_a_future_time_advances_the_walk_as_the_clock_would() -> None:
    now = [0]
    ahead = feed(now)
    assert ahead.bid_ask_at("EURUSD", 50 * MS + 3)[:2] == fresh_quote(50 * MS + 3)
    # The walk only moves forward: bid_ask before that time answers the tick reached...
    now[0] = 10 * MS
    assert ahead.bid_ask("EURUSD")[:2] == fresh_quote(50 * MS)
    # ...and bid_ask_at still answers each tick walked over.
    for at in range(0, 50 * MS, MS):
        assert ahead.bid_ask_at("EURUSD", at)[:2] == fresh_quote(at)


def test_bid_ask_at_answers_the_time_asked_for() -> None:
    now = [0]
    quotes = feed(now)
    now[0] = 7 * MS
    at = 3 * MS + 1_000
    assert quotes.bid_ask_at("EURUSD", at)[2] == datetime.fromtimestamp(at / 1e9, UTC)


def test_the_history_is_bounded_older_times_answer_the_oldest_kept_quote() -> None:
    now = [0]
    quotes = feed(now, history_length=50)
    by_tick = {}
    for tick in range(5_000):
        now[0] = tick * MS
        by_tick[tick] = quotes.bid_ask("EURUSD")[:2]
    oldest_kept = 5_000 - 50
    assert by_tick[0] != by_tick[oldest_kept]
    for at in (0, 10 * MS, (oldest_kept - 1) * MS, oldest_kept * MS - 1):
        assert quotes.bid_ask_at("EURUSD", at)[:2] == by_tick[oldest_kept]
    for tick in range(oldest_kept, 5_000):
        assert quotes.bid_ask_at("EURUSD", tick * MS + MS // 2)[:2] == by_tick[tick]


def test_a_history_length_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="history_length"):
        QuoteFeed(SETTINGS, history_length=0)


def test_a_move_does_not_rewrite_past_quotes() -> None:
    now = [0]
    quotes = feed(now)
    before = {}
    for at in range(0, 10 * MS, MS // 2):
        now[0] = at
        before[at] = quotes.bid_ask("EURUSD")[:2]
    # Half-way through tick 10, the market moves 100 points up.
    now[0] = 10 * MS
    start_of_tick = quotes.bid_ask("EURUSD")[:2]
    now[0] = 10 * MS + MS // 2
    quotes.move("EURUSD", 100)
    moved = quotes.bid_ask("EURUSD")[:2]
    assert moved == (start_of_tick[0] + points(100), start_of_tick[1] + points(100))
    for at, quote in before.items():
        assert quotes.bid_ask_at("EURUSD", at)[:2] == quote
    # The same tick before the move keeps its quote; from the move on, the moved one.
    assert quotes.bid_ask_at("EURUSD", 10 * MS + MS // 2 - 1)[:2] == start_of_tick
    assert quotes.bid_ask_at("EURUSD", 10 * MS + MS // 2)[:2] == moved
    # The walk goes on from the moved mid.
    now[0] = 20 * MS
    later = quotes.bid_ask("EURUSD")[:2]
    assert quotes.bid_ask_at("EURUSD", 20 * MS)[:2] == later
    assert later == tuple(price + points(100) for price in fresh_quote(20 * MS))
