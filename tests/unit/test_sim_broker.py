"""The simulated broker answers like an MT5 trade server."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.domain import retcodes
from gateway.domain.accounts import MarginMode
from gateway.domain.orders import Side
from gateway.domain.symbols import SymbolSpec
from gateway.terminals.protocol import OrderRequest, TradeAction
from gateway.terminals.sim import SimBroker, SimSymbol, SimTerminal
from gateway.terminals.sim.quotes import QuoteFeed, QuoteSettings

D = Decimal
EURUSD = SymbolSpec("EURUSD", 5, D(100000), D("0.01"), D("0.01"), D(100), D("0.00001"), D(1))
QUOTES = QuoteSettings(initial_mid=D("1.08450"), spread_points=8, step_points=3, digits=5)


def broker() -> SimBroker:
    sim = SimBroker([SimSymbol(EURUSD, QUOTES)], seed=3, tick_interval_ms=60_000)
    sim.open_account(1, balance=D(10_000))
    sim.open_account(2, balance=D(10_000), margin_mode=MarginMode.NETTING)
    return sim


def deal(side: Side, volume: str, **fields: object) -> OrderRequest:
    return OrderRequest(TradeAction.DEAL, "EURUSD", side, D(volume), "mam:T", 7, **fields)


def test_a_buy_fills_at_the_ask_and_a_sell_at_the_bid() -> None:
    sim = broker()
    bid, ask, _ = sim.feed.bid_ask("EURUSD")
    assert ask - bid == D("0.00008")
    bought = sim.execute(1, deal(Side.BUY, "0.10"))
    sold = sim.execute(1, deal(Side.SELL, "0.10"))
    assert (bought.retcode, bought.price) == (retcodes.DONE, ask)
    assert (sold.retcode, sold.price) == (retcodes.DONE, bid)
    assert len(sim.positions(1)) == 2  # hedging: each deal its own position
    assert sim.find_by_tag(1, "mam:T").deals[0].ticket == bought.deal_ticket


def test_netting_account_nets_an_opposite_deal() -> None:
    sim = broker()
    sim.execute(2, deal(Side.BUY, "0.30"))
    sim.execute(2, deal(Side.SELL, "0.10"))
    [position] = sim.positions(2)
    assert (position.side, position.volume) == (Side.BUY, D("0.20"))


@pytest.mark.parametrize("volume", ["0.001", "0.015", "101"])
def test_volume_off_the_rules_is_invalid_volume(volume: str) -> None:
    assert broker().execute(1, deal(Side.BUY, volume)).retcode == retcodes.INVALID_VOLUME


def test_price_beyond_the_deviation_is_requoted() -> None:
    sim = broker()
    _, ask, _ = sim.feed.bid_ask("EURUSD")
    result = sim.execute(1, deal(Side.BUY, "0.10", price=ask - D("0.00010"), deviation_points=5))
    assert result.retcode == retcodes.REQUOTE and result.ask == ask


def test_margin_beyond_free_margin_is_no_money() -> None:
    # 10 lots of EURUSD at 1:100 needs ~10,845 USD of margin; the account has 10,000.
    assert broker().execute(1, deal(Side.BUY, "10.00")).retcode == retcodes.NO_MONEY


def test_the_quote_path_is_reproducible_from_its_seed() -> None:
    now = [0]
    feed = QuoteFeed({"EURUSD": QUOTES}, seed=5, tick_interval_ms=1, clock_ns=lambda: now[0])
    replay = QuoteFeed({"EURUSD": QUOTES}, seed=5, tick_interval_ms=1, clock_ns=lambda: now[0])
    other = QuoteFeed({"EURUSD": QUOTES}, seed=6, tick_interval_ms=1, clock_ns=lambda: now[0])
    assert feed.bid_ask("EURUSD")[0] == D("1.08446")
    path, replayed, different = [], [], []
    for tick in range(1, 40):
        now[0] = tick * 1_000_000
        path.append(feed.bid_ask("EURUSD")[0])
        replayed.append(replay.bid_ask("EURUSD")[0])
        different.append(other.bid_ask("EURUSD")[0])
    assert path == replayed
    assert path != different
    assert len(set(path)) > 1


def test_equity_moves_with_the_quote_on_open_positions() -> None:
    now = [0]
    sim = SimBroker([SimSymbol(EURUSD, QUOTES)], seed=3, tick_interval_ms=1)
    sim.feed = QuoteFeed({"EURUSD": QUOTES}, seed=3, tick_interval_ms=1, clock_ns=lambda: now[0])
    sim.open_account(1, balance=D(10_000))
    sim.execute(1, deal(Side.BUY, "1.00"))
    equities = set()
    for tick in range(1, 30):
        now[0] = tick * 1_000_000
        info = sim.account_info(1)
        bid, _, _ = sim.feed.bid_ask("EURUSD")
        position = sim.positions(1)[0]
        # 1 lot of EURUSD: one point (0.00001) is worth 1 USD.
        assert info.equity == D(10_000) + (bid - position.price_open) * 100_000
        equities.add(info.equity)
    assert len(equities) > 1


async def test_terminal_reports_one_request_in_flight_when_used_serially() -> None:
    sim = broker()
    terminal = SimTerminal("acc_1", 1, sim, latency_ms=1)
    for _ in range(3):
        assert (await terminal.send(deal(Side.BUY, "0.01"))).retcode == retcodes.DONE
    assert terminal.max_in_flight == 1
    info = await terminal.account_info()
    assert info.balance == D(10_000) and info.margin > 0
