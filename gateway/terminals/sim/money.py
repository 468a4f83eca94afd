"""Profit and margin as an MT5 forex/CFD trade server computes them, in the account currency."""

from __future__ import annotations

from decimal import Decimal

from gateway.domain.orders import Side
from gateway.domain.symbols import SymbolSpec

CENT = Decimal("0.01")


def profit(
    spec: SymbolSpec, side: Side, price_open: Decimal, volume: Decimal, price_close: Decimal
) -> Decimal:
    """(Δprice / tick_size) x tick_value x lots, to the cent."""
    direction = 1 if side is Side.BUY else -1
    ticks = (price_close - price_open) * direction / spec.tick_size
    return (ticks * spec.tick_value * volume).quantize(CENT)


def margin(spec: SymbolSpec, volume: Decimal, price: Decimal, leverage: int) -> Decimal:
    # The margin currency is the account currency for the symbols the simulator quotes (USD).
    return volume * spec.contract_size * price / leverage


def closing_price(side: Side, bid: Decimal, ask: Decimal) -> Decimal:
    """A buy position closes at the bid, a sell position at the ask."""
    return bid if side is Side.BUY else ask


def opening_price(side: Side, bid: Decimal, ask: Decimal) -> Decimal:
    return ask if side is Side.BUY else bid
