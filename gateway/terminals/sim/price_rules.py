"""Where a pending order's price and a stop loss / take profit may lie, relative to the market.

A trade server refuses prices on the wrong side of the market or closer to it than the
symbol's stops level (trade_stops_level, in points): INVALID_PRICE for a pending order's
price, INVALID_STOPS for SL/TP.
"""

from __future__ import annotations

from decimal import Decimal

from gateway.domain.orders import OrderType, Side


def _below(price: Decimal, reference: Decimal, distance: Decimal) -> bool:
    return price < reference and reference - price >= distance


def _above(price: Decimal, reference: Decimal, distance: Decimal) -> bool:
    return price > reference and price - reference >= distance


def pending_price_error(
    order_type: OrderType,
    side: Side,
    price: Decimal,
    stop_limit_price: Decimal | None,
    bid: Decimal,
    ask: Decimal,
    distance: Decimal,
) -> str | None:
    """Why a pending order cannot rest at `price` now (buys are checked against the ask, sells
    against the bid), or None."""
    market = ask if side is Side.BUY else bid
    # A buy limit waits below the market, a buy stop above it; sells the other way round.
    wants_below = (order_type is OrderType.LIMIT) == (side is Side.BUY)
    placed = _below if wants_below else _above
    if not placed(price, market, distance):
        where = "below" if wants_below else "above"
        return (
            f"a {side.value.lower()} {order_type.value.lower()} at {price} must be {where} "
            f"{market} by at least {distance}"
        )
    if order_type is OrderType.STOP_LIMIT:
        if stop_limit_price is None:
            return "a stop limit order needs its limit price"
        # Once the stop triggers, the limit order must rest on the right side of the stop.
        limit_ok = stop_limit_price <= price if side is Side.BUY else stop_limit_price >= price
        if not limit_ok:
            return f"limit price {stop_limit_price} is on the wrong side of the stop {price}"
    return None


def stops_error(
    side: Side,
    reference: Decimal,
    stop_loss: Decimal | None,
    take_profit: Decimal | None,
    distance: Decimal,
) -> str | None:
    """Why SL/TP cannot be set on a `side` position priced at `reference`, or None.

    For an open position the reference is its closing price (bid for a buy, ask for a sell);
    for a pending order, the price it opens at.
    """
    loss_ok = _below if side is Side.BUY else _above
    profit_ok = _above if side is Side.BUY else _below
    if stop_loss is not None and not loss_ok(stop_loss, reference, distance):
        return f"stop loss {stop_loss} too close to or on the wrong side of {reference}"
    if take_profit is not None and not profit_ok(take_profit, reference, distance):
        return f"take profit {take_profit} too close to or on the wrong side of {reference}"
    return None


def triggered(
    order_type: OrderType, side: Side, price: Decimal, bid: Decimal, ask: Decimal
) -> bool:
    """Whether the market has reached a resting order's price (the stop price of a stop
    limit)."""
    market = ask if side is Side.BUY else bid
    if order_type is OrderType.LIMIT:
        return market <= price if side is Side.BUY else market >= price
    return market >= price if side is Side.BUY else market <= price
