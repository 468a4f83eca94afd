"""An account's open positions valued at the market: what a statement shows a client of what
is still open, with its floating profit."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from gateway.domain.account_history import AccountPosition
from gateway.domain.orders import Side


@dataclass(frozen=True, slots=True)
class ValuedPosition:
    """A position and what it would close at now: the price (bid for a buy, ask for a sell) and
    its floating profit in the account currency; both None when the terminal could not say."""

    position: AccountPosition
    price: Decimal | None = None
    profit: Decimal | None = None


def closing_price(side: Side, bid: Decimal, ask: Decimal) -> Decimal:
    """The price a position of `side` closes at: a buy sells at the bid, a sell buys at the
    ask."""
    return bid if side is Side.BUY else ask


def floating_profit(
    position: AccountPosition, price: Decimal, *, tick_size: Decimal, tick_value: Decimal
) -> Decimal:
    """What closing `position` at `price` would realize, in the account currency: its move in
    ticks, times a tick's value for one lot, times its lots (as MetaTrader values a position
    whose profit currency is the account's; commission and swap are not in it)."""
    if tick_size <= 0:
        raise ValueError(f"tick_size must be > 0, not {tick_size}")
    move = price - position.price_open
    if position.side is Side.SELL:
        move = -move
    return move / tick_size * tick_value * position.volume


def value_position(
    position: AccountPosition,
    *,
    bid: Decimal | None,
    ask: Decimal | None,
    tick_size: Decimal | None,
    tick_value: Decimal | None,
) -> ValuedPosition:
    """The position valued at the quote; unvalued when the quote or the tick is unknown."""
    if bid is None or ask is None:
        return ValuedPosition(position)
    price = closing_price(position.side, bid, ask)
    if tick_size is None or tick_value is None or tick_size <= 0:
        return ValuedPosition(position, price)
    return ValuedPosition(
        position,
        price,
        floating_profit(position, price, tick_size=tick_size, tick_value=tick_value),
    )
