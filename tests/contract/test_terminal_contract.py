"""The Terminal protocol as every backend must keep it (see gateway/terminals/protocol.py).

Each test runs once per backend in backends.BACKENDS, on a fresh funded account; quotes stand
still during a test, so the prices it reads are the prices the broker executes at.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from gateway.domain import retcodes
from gateway.domain.account_history import DealEntry
from gateway.domain.accounts import MarginMode
from gateway.domain.ids import new_id, tag_for_child
from gateway.domain.orders import OrderType, Side, TimeInForce
from gateway.domain.symbols import SymbolSpec
from gateway.terminals.protocol import (
    OrderRequest,
    SymbolNotFound,
    Terminal,
    TerminalError,
    TradeAction,
)
from gateway.terminals.sim import SymbolRules, TradingSessions
from tests.contract.backends import (
    EURUSD,
    OPENING_BALANCE,
    XAUUSD,
    Backend,
    FreshAccount,
    OpenTerminal,
)

D = Decimal
MAGIC = 700_001
HEDGING, NETTING = MarginMode.HEDGING, MarginMode.NETTING
NEVER_OPEN = TradingSessions(tuple(() for _ in range(7)))


def points(count: int, spec: SymbolSpec = EURUSD) -> Decimal:
    return spec.point * count


def market(
    side: Side, volume: str, tag: str, *, price: Decimal | None = None, **fields: object
) -> OrderRequest:
    return OrderRequest(
        TradeAction.DEAL,
        "EURUSD",
        side,
        D(volume),
        tag,
        MAGIC,
        price=price,
        deviation_points=20,
        **fields,  # type: ignore[arg-type]
    )


def pending(
    side: Side, order_type: OrderType, volume: str, price: Decimal, tag: str, **fields: object
) -> OrderRequest:
    return OrderRequest(
        TradeAction.PENDING,
        "EURUSD",
        side,
        D(volume),
        tag,
        MAGIC,
        price=price,
        order_type=order_type,
        **fields,  # type: ignore[arg-type]
    )


def on_ticket(action: TradeAction, tag: str = "mam:M", **fields: object) -> OrderRequest:
    """A request about an existing order or position (MODIFY, REMOVE, SLTP, CLOSE_BY)."""
    return OrderRequest(action, "EURUSD", Side.BUY, D(0), tag, MAGIC, **fields)  # type: ignore[arg-type]


async def bought(terminal: Terminal, volume: str, tag: str) -> int:
    """Opens a buy position; its ticket."""
    quote = await terminal.quote("EURUSD")
    result = await terminal.send(market(Side.BUY, volume, tag, price=quote.ask))
    assert result.retcode == retcodes.DONE, result
    return result.position_ticket


async def sold(terminal: Terminal, volume: str, tag: str) -> int:
    quote = await terminal.quote("EURUSD")
    result = await terminal.send(market(Side.SELL, volume, tag, price=quote.bid))
    assert result.retcode == retcodes.DONE, result
    return result.position_ticket


# -- account, symbols, quotes ------------------------------------------------------------------


async def test_a_backend_is_a_terminal(terminal: Terminal) -> None:
    assert isinstance(terminal, Terminal)
    assert terminal.account_id == "contract"


@pytest.mark.parametrize("margin_mode", [HEDGING, NETTING])
async def test_account_info_reports_the_fresh_account(
    open_terminal: OpenTerminal, margin_mode: MarginMode
) -> None:
    terminal = await open_terminal(FreshAccount(margin_mode=margin_mode, leverage=200))
    info = await terminal.account_info()
    assert (info.currency, info.leverage, info.margin_mode) == ("USD", 200, margin_mode)
    assert (info.balance, info.equity, info.margin, info.free_margin) == (
        OPENING_BALANCE,
        OPENING_BALANCE,
        0,
        OPENING_BALANCE,
    )


async def test_account_info_counts_the_margin_of_open_positions(terminal: Terminal) -> None:
    await bought(terminal, "1.00", "mam:A")
    info = await terminal.account_info()
    quote = await terminal.quote("EURUSD")
    # 1 lot of 100 000 EUR at the ask, at 1:100.
    assert info.margin == (quote.ask * 1000).quantize(D("0.01"))
    assert info.free_margin == info.equity - info.margin
    # Bought at the ask, valued at the bid: the spread is lost at once.
    assert info.equity == OPENING_BALANCE - (quote.ask - quote.bid) / points(1)


@pytest.mark.parametrize("spec", [EURUSD, XAUUSD], ids=lambda s: s.name)
async def test_symbol_spec_is_the_brokers(terminal: Terminal, spec: SymbolSpec) -> None:
    got = await terminal.symbol_spec(spec.name)
    assert got == spec
    assert got.volume_step.as_tuple().exponent == -2


async def test_an_unknown_symbol_is_not_found(terminal: Terminal) -> None:
    with pytest.raises(SymbolNotFound):
        await terminal.symbol_spec("NOSUCH")
    with pytest.raises(SymbolNotFound):
        await terminal.quote("NOSUCH")


async def test_a_quote_is_exact_to_the_symbols_digits(terminal: Terminal) -> None:
    before = datetime.now(UTC)
    quote = await terminal.quote("EURUSD")
    assert (quote.symbol, quote.bid, quote.ask) == ("EURUSD", D("1.08446"), D("1.08454"))
    assert quote.bid.as_tuple().exponent == -5
    gold = await terminal.quote("XAUUSD")
    assert (gold.bid, gold.ask) == (D("2349.85"), D("2350.15"))
    # In UTC, whatever clock the trade server keeps (MT5 times are whole milliseconds, MT4's
    # whole seconds).
    assert before - timedelta(seconds=1) <= quote.time <= datetime.now(UTC)


# -- market deals ------------------------------------------------------------------------------


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
async def test_a_market_deal_opens_a_position_at_the_market_price(
    terminal: Terminal, side: Side
) -> None:
    quote = await terminal.quote("EURUSD")
    price = quote.ask if side is Side.BUY else quote.bid
    result = await terminal.send(market(side, "0.10", "mam:D1", price=price))
    assert (result.retcode, result.volume, result.price) == (retcodes.DONE, D("0.10"), price)
    assert result.order_ticket and result.deal_ticket and result.position_ticket
    assert (result.bid, result.ask) == (quote.bid, quote.ask)
    assert result.executed_at is not None
    [position] = await terminal.positions()
    assert (
        position.ticket,
        position.symbol,
        position.side,
        position.volume,
        position.price_open,
        position.magic,
        position.comment,
    ) == (result.position_ticket, "EURUSD", side, D("0.10"), price, MAGIC, "mam:D1")
    assert position.opened_at == result.executed_at


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
async def test_a_market_deal_without_a_price_is_priced_by_the_terminal(
    terminal: Terminal, side: Side
) -> None:
    quote = await terminal.quote("EURUSD")
    price = quote.ask if side is Side.BUY else quote.bid
    result = await terminal.send(market(side, "0.05", "mam:D2"))
    # Its own price as it sent the deal, reported with the answer.
    assert (result.retcode, result.price, result.request_price) == (retcodes.DONE, price, price)


async def test_a_deal_priced_by_the_caller_reports_no_price_of_the_terminals(
    terminal: Terminal,
) -> None:
    quote = await terminal.quote("EURUSD")
    result = await terminal.send(market(Side.BUY, "0.05", "mam:D4", price=quote.ask))
    assert (result.retcode, result.request_price) == (retcodes.DONE, None)


async def test_a_deal_at_market_inside_its_price_band_is_sent(terminal: Terminal) -> None:
    quote = await terminal.quote("EURUSD")
    band = {"lowest_price": quote.ask - points(5), "highest_price": quote.ask + points(5)}
    result = await terminal.send(market(Side.BUY, "0.05", "mam:D5", **band))
    assert (result.retcode, result.request_price) == (retcodes.DONE, quote.ask)


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
@pytest.mark.parametrize("beyond", ["low", "high"])
async def test_a_deal_at_market_outside_its_price_band_is_not_sent(
    terminal: Terminal, side: Side, beyond: str
) -> None:
    quote = await terminal.quote("EURUSD")
    price = quote.ask if side is Side.BUY else quote.bid
    band = (
        {"lowest_price": price + points(1)}
        if beyond == "low"
        else {"highest_price": price - points(1)}
    )
    tag = "mam:D6"
    result = await terminal.send(market(side, "0.05", tag, **band))
    assert (result.retcode, result.request_price) == (retcodes.PRICE_CHANGED, None)
    assert (result.bid, result.ask) == (quote.bid, quote.ask)
    # Nothing reached the broker.
    found = await terminal.find_by_tag(tag)
    assert (found.orders, found.positions, found.deals) == ((), (), ())
    assert await terminal.positions() == []


async def test_a_deal_priced_beyond_its_deviation_is_requoted(terminal: Terminal) -> None:
    quote = await terminal.quote("EURUSD")
    result = await terminal.send(market(Side.BUY, "0.10", "mam:D3", price=quote.ask - points(50)))
    assert (result.retcode, result.bid, result.ask) == (retcodes.REQUOTE, quote.bid, quote.ask)
    assert await terminal.positions() == []


async def test_a_hedging_account_keeps_opposite_positions_apart(terminal: Terminal) -> None:
    long = await bought(terminal, "0.10", "mam:H1")
    short = await sold(terminal, "0.10", "mam:H2")
    assert long != short
    sides = {p.ticket: (p.side, p.volume) for p in await terminal.positions()}
    assert sides == {long: (Side.BUY, D("0.10")), short: (Side.SELL, D("0.10"))}


async def test_a_netting_account_nets_reduces_and_reverses(open_terminal: OpenTerminal) -> None:
    terminal = await open_terminal(FreshAccount(margin_mode=NETTING))
    ticket = await bought(terminal, "0.30", "mam:N1")
    assert await sold(terminal, "0.10", "mam:N2") == ticket
    [position] = await terminal.positions()
    assert (position.ticket, position.side, position.volume) == (ticket, Side.BUY, D("0.20"))
    assert await sold(terminal, "0.50", "mam:N3") == ticket
    [position] = await terminal.positions()
    assert (position.side, position.volume) == (Side.SELL, D("0.30"))
    since = datetime(2000, 1, 1, tzinfo=UTC)
    entries = [d.entry for d in await terminal.deals(since)]
    assert entries == [DealEntry.IN, DealEntry.OUT, DealEntry.INOUT]


@pytest.mark.parametrize("margin_mode", [HEDGING, NETTING])
async def test_a_partial_close_by_position_ticket_keeps_the_ticket(
    open_terminal: OpenTerminal, margin_mode: MarginMode
) -> None:
    terminal = await open_terminal(FreshAccount(margin_mode=margin_mode))
    ticket = await bought(terminal, "0.30", "mam:C1")
    quote = await terminal.quote("EURUSD")
    closed = await terminal.send(
        market(Side.SELL, "0.10", "mam:C2", price=quote.bid, position_ticket=ticket)
    )
    assert (closed.retcode, closed.volume, closed.position_ticket) == (
        retcodes.DONE,
        D("0.10"),
        ticket,
    )
    [position] = await terminal.positions()
    assert (position.ticket, position.volume) == (ticket, D("0.20"))
    [closing] = (await terminal.find_by_tag("mam:C2")).deals
    assert (closing.entry, closing.position_ticket, closing.volume) == (
        DealEntry.OUT,
        ticket,
        D("0.10"),
    )
    # Bought at the ask, sold at the bid: 8 points of 0.10 lots lost.
    assert closing.profit == D("-0.80")
    rest = await terminal.send(
        market(Side.SELL, "0.20", "mam:C3", price=quote.bid, position_ticket=ticket)
    )
    assert rest.retcode == retcodes.DONE
    assert await terminal.positions() == []
    info = await terminal.account_info()
    assert info.balance == OPENING_BALANCE - D("2.40")


# -- pending orders ----------------------------------------------------------------------------


async def test_a_pending_order_is_placed_modified_and_removed(terminal: Terminal) -> None:
    quote = await terminal.quote("EURUSD")
    price = quote.ask - points(100)
    placed = await terminal.send(pending(Side.BUY, OrderType.LIMIT, "0.20", price, "mam:P1"))
    assert (placed.retcode, placed.volume, placed.price) == (retcodes.PLACED, D("0.20"), price)
    ticket = placed.order_ticket
    [order] = await terminal.pending_orders()
    assert (
        order.ticket,
        order.symbol,
        order.side,
        order.order_type,
        order.volume,
        order.price,
        order.magic,
        order.comment,
        order.stop_loss,
        order.time_in_force,
    ) == (
        ticket,
        "EURUSD",
        Side.BUY,
        OrderType.LIMIT,
        D("0.20"),
        price,
        MAGIC,
        "mam:P1",
        None,
        TimeInForce.GTC,
    )

    moved = await terminal.send(
        on_ticket(TradeAction.MODIFY, price=price - points(50), order_ticket=ticket)
    )
    assert moved.retcode == retcodes.DONE
    [order] = await terminal.pending_orders()
    assert (order.ticket, order.price) == (ticket, price - points(50))

    # No price: the order keeps its own; SL and TP are set as given.
    stop = price - points(300)
    guarded = await terminal.send(
        on_ticket(TradeAction.MODIFY, order_ticket=ticket, stop_loss=stop)
    )
    assert guarded.retcode == retcodes.DONE
    [order] = await terminal.pending_orders()
    assert (order.price, order.stop_loss, order.take_profit) == (price - points(50), stop, None)

    removed = await terminal.send(on_ticket(TradeAction.REMOVE, order_ticket=ticket))
    assert removed.retcode == retcodes.DONE
    assert await terminal.pending_orders() == []
    assert await terminal.positions() == []


async def test_a_stop_limit_order_keeps_its_limit_price(
    terminal: Terminal, backend: Backend
) -> None:
    quote = await terminal.quote("EURUSD")
    stop, limit = quote.ask + points(100), quote.ask + points(80)
    placed = await terminal.send(
        pending(Side.BUY, OrderType.STOP_LIMIT, "0.10", stop, "mam:P2", stop_limit_price=limit)
    )
    if not backend.stop_limit_orders:
        # A platform without them refuses plainly; nothing rests at the broker.
        assert retcodes.classify(placed.retcode) is retcodes.RetcodeClass.PERMANENT
        assert await terminal.pending_orders() == []
        return
    assert placed.retcode == retcodes.PLACED
    [order] = await terminal.pending_orders()
    assert (order.order_type, order.price, order.stop_limit_price) == (
        OrderType.STOP_LIMIT,
        stop,
        limit,
    )


async def test_a_pending_order_expires_when_asked(terminal: Terminal) -> None:
    quote = await terminal.quote("EURUSD")
    # Expirations are whole seconds in MT5.
    expires_at = quote.time.replace(microsecond=0) + timedelta(days=1)
    placed = await terminal.send(
        pending(
            Side.SELL,
            OrderType.STOP,
            "0.10",
            quote.bid - points(100),
            "mam:P3",
            time_in_force=TimeInForce.SPECIFIED,
            expires_at=expires_at,
        )
    )
    assert placed.retcode == retcodes.PLACED
    [order] = await terminal.pending_orders()
    assert (order.side, order.order_type, order.time_in_force, order.expires_at) == (
        Side.SELL,
        OrderType.STOP,
        TimeInForce.SPECIFIED,
        expires_at,
    )


async def test_pending_orders_on_the_wrong_side_of_the_market_are_refused(
    terminal: Terminal,
) -> None:
    quote = await terminal.quote("EURUSD")
    above = await terminal.send(
        pending(Side.BUY, OrderType.LIMIT, "0.10", quote.ask + points(100), "mam:P4")
    )
    expired = await terminal.send(
        pending(
            Side.BUY,
            OrderType.LIMIT,
            "0.10",
            quote.ask - points(100),
            "mam:P5",
            time_in_force=TimeInForce.SPECIFIED,
            expires_at=quote.time.replace(microsecond=0) - timedelta(hours=1),
        )
    )
    assert (above.retcode, expired.retcode) == (retcodes.INVALID_PRICE, retcodes.INVALID_EXPIRATION)
    assert await terminal.pending_orders() == []


# -- stops and close-by ------------------------------------------------------------------------


async def test_stops_of_a_position_are_set_and_removed(terminal: Terminal) -> None:
    ticket = await bought(terminal, "0.10", "mam:S1")
    quote = await terminal.quote("EURUSD")
    stop_loss, take_profit = quote.bid - points(50), quote.bid + points(50)
    set_stops = on_ticket(
        TradeAction.SLTP, position_ticket=ticket, stop_loss=stop_loss, take_profit=take_profit
    )
    result = await terminal.send(set_stops)
    assert (result.retcode, result.position_ticket) == (retcodes.DONE, ticket)
    [position] = await terminal.positions()
    assert (position.stop_loss, position.take_profit) == (stop_loss, take_profit)
    assert (await terminal.send(set_stops)).retcode == retcodes.NO_CHANGES
    too_close = on_ticket(TradeAction.SLTP, position_ticket=ticket, stop_loss=quote.bid - points(5))
    assert (await terminal.send(too_close)).retcode == retcodes.INVALID_STOPS
    cleared = await terminal.send(on_ticket(TradeAction.SLTP, position_ticket=ticket))
    assert cleared.retcode == retcodes.DONE
    [position] = await terminal.positions()
    assert (position.stop_loss, position.take_profit) == (None, None)


async def test_a_market_deal_carries_its_stops_onto_the_position(terminal: Terminal) -> None:
    quote = await terminal.quote("EURUSD")
    stop_loss = quote.bid - points(100)
    result = await terminal.send(
        market(Side.BUY, "0.10", "mam:S2", price=quote.ask, stop_loss=stop_loss)
    )
    assert result.retcode == retcodes.DONE
    [position] = await terminal.positions()
    assert (position.stop_loss, position.take_profit) == (stop_loss, None)


async def test_close_by_closes_opposite_positions_against_each_other(terminal: Terminal) -> None:
    long = await bought(terminal, "0.30", "mam:B1")
    short = await sold(terminal, "0.10", "mam:B2")
    result = await terminal.send(
        on_ticket(TradeAction.CLOSE_BY, "mam:B3", position_ticket=long, position_by=short)
    )
    assert (result.retcode, result.position_ticket, result.volume) == (
        retcodes.DONE,
        long,
        D("0.10"),
    )
    [position] = await terminal.positions()
    assert (position.ticket, position.side, position.volume) == (long, Side.BUY, D("0.20"))
    closing = (await terminal.find_by_tag("mam:B3")).deals
    assert sorted((d.position_ticket, d.entry) for d in closing) == sorted(
        [(long, DealEntry.OUT_BY), (short, DealEntry.OUT_BY)]
    )


# -- reconciliation and history ----------------------------------------------------------------


async def test_find_by_tag_finds_orders_positions_and_deals(terminal: Terminal) -> None:
    tag = tag_for_child(new_id("ch"))
    quote = await terminal.quote("EURUSD")
    placed = await terminal.send(
        pending(Side.SELL, OrderType.LIMIT, "0.10", quote.bid + points(100), "mam:F1")
    )
    opened = await terminal.send(market(Side.BUY, "0.20", tag, price=quote.ask))
    await bought(terminal, "0.10", "mam:F2")

    [order] = (await terminal.find_by_tag("mam:F1")).orders
    assert order.ticket == placed.order_ticket

    found = await terminal.find_by_tag(tag)
    assert found.orders == ()
    [position] = found.positions
    [deal] = found.deals
    assert (position.ticket, position.volume, position.comment) == (
        opened.position_ticket,
        D("0.20"),
        tag,
    )
    assert (deal.ticket, deal.order_ticket, deal.position_ticket) == (
        opened.deal_ticket,
        opened.order_ticket,
        opened.position_ticket,
    )
    assert (deal.side, deal.volume, deal.price, deal.magic, deal.comment, deal.entry) == (
        Side.BUY,
        D("0.20"),
        quote.ask,
        MAGIC,
        tag,
        DealEntry.IN,
    )
    assert deal.executed_at == opened.executed_at


async def test_find_by_tag_of_a_tag_never_sent_is_empty(terminal: Terminal) -> None:
    await bought(terminal, "0.10", "mam:E1")
    found = await terminal.find_by_tag(tag_for_child(new_id("ch")))
    assert (found.orders, found.positions, found.deals) == ((), (), ())


async def test_deals_since_a_time_are_the_trades_after_it(
    terminal: Terminal, backend: Backend
) -> None:
    before = (await terminal.quote("EURUSD")).time
    ticket = await bought(terminal, "0.20", "mam:H1")
    quote = await terminal.quote("EURUSD")
    await terminal.send(
        market(Side.SELL, "0.20", "mam:H2", price=quote.bid, position_ticket=ticket)
    )
    deals = await terminal.deals(before)
    # Trades only: a deposit is not a deal of the protocol.
    assert [(d.comment, d.side, d.entry) for d in deals] == [
        ("mam:H1", Side.BUY, DealEntry.IN),
        ("mam:H2", Side.SELL, DealEntry.OUT),
    ]
    last = deals[-1].executed_at
    assert "mam:H2" in [d.comment for d in await terminal.deals(last)]
    assert (
        await terminal.deals(last + max(backend.time_resolution, timedelta(milliseconds=1))) == []
    )


# -- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("volume", ["0.015", "0.001", "101"])
async def test_a_volume_off_the_symbols_rules_is_refused(terminal: Terminal, volume: str) -> None:
    quote = await terminal.quote("EURUSD")
    result = await terminal.send(market(Side.BUY, volume, "mam:V1", price=quote.ask))
    assert result.retcode == retcodes.INVALID_VOLUME
    assert await terminal.positions() == []


async def test_a_deal_beyond_the_free_margin_is_refused(terminal: Terminal) -> None:
    quote = await terminal.quote("EURUSD")
    result = await terminal.send(market(Side.BUY, "100", "mam:M1", price=quote.ask))
    assert result.retcode == retcodes.NO_MONEY
    assert await terminal.positions() == []
    assert (await terminal.account_info()).balance == OPENING_BALANCE


async def test_a_closed_market_refuses_deals(open_terminal: OpenTerminal) -> None:
    terminal = await open_terminal(
        FreshAccount(rules=(("EURUSD", SymbolRules(sessions=NEVER_OPEN)),))
    )
    quote = await terminal.quote("EURUSD")
    result = await terminal.send(market(Side.BUY, "0.10", "mam:K1", price=quote.ask))
    assert result.retcode == retcodes.MARKET_CLOSED
    assert await terminal.positions() == []


async def test_closing_what_is_not_there_is_refused(terminal: Terminal) -> None:
    ticket = await bought(terminal, "0.10", "mam:X1")
    quote = await terminal.quote("EURUSD")
    too_much = await terminal.send(
        market(Side.SELL, "0.20", "mam:X2", price=quote.bid, position_ticket=ticket)
    )
    unknown = await terminal.send(
        market(Side.SELL, "0.10", "mam:X3", price=quote.bid, position_ticket=ticket + 999)
    )
    no_order = await terminal.send(on_ticket(TradeAction.REMOVE, order_ticket=ticket + 999))
    assert too_much.retcode == retcodes.INVALID_CLOSE_VOLUME
    assert unknown.retcode == retcodes.POSITION_CLOSED
    assert retcodes.classify(no_order.retcode) is retcodes.RetcodeClass.PERMANENT
    [position] = await terminal.positions()
    assert position.volume == D("0.10")


# -- health and close --------------------------------------------------------------------------


async def test_a_connected_terminal_is_healthy(terminal: Terminal) -> None:
    health = await terminal.health()
    assert health.connected, health.detail


async def test_a_closed_terminal_answers_nothing_more(terminal: Terminal) -> None:
    await terminal.close()
    assert not (await terminal.health()).connected
    with pytest.raises(TerminalError):
        await terminal.account_info()
    with pytest.raises(TerminalError):
        await terminal.send(market(Side.BUY, "0.10", "mam:Z1"))
    await terminal.close()  # closing twice is harmless
