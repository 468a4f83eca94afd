"""A deal at market, priced where it is sent.

The engine sends a DEAL without a price; the terminal takes its own ask (a buy) or bid (a sell)
right before sending. Read at the gateway instead, the price would be one round trip old by
the time the request leaves a remote worker, and the request would wait that round trip too.
A retry carries a price band (the first price sent, plus or minus the order's maximum
deviation): outside it the terminal sends nothing and answers PRICE_CHANGED with the prices it
saw. Every backend prices through `priced_at_market` and reports the price it sent with
`sent_at`, so they behave alike (the contract suite checks it).
"""

from __future__ import annotations

from decimal import Decimal

from gateway.domain import retcodes
from gateway.domain.field_copies import copier
from gateway.domain.orders import Side
from gateway.terminals.protocol import OrderRequest, OrderResult, TradeAction

# Every child's request and answer pass through here: copies without dataclasses.replace.
_copy_request = copier(OrderRequest)
_copy_result = copier(OrderResult)


def needs_pricing(request: OrderRequest) -> bool:
    """A deal at market: the terminal prices it."""
    return request.action is TradeAction.DEAL and request.price is None


def priced_at_market(
    request: OrderRequest, bid: Decimal, ask: Decimal
) -> OrderRequest | OrderResult:
    """The deal to send at the terminal's current price, or the refusal when that price lies
    outside the request's band (nothing is sent then)."""
    price = ask if request.side is Side.BUY else bid
    low, high = request.lowest_price, request.highest_price
    if (low is not None and price < low) or (high is not None and price > high):
        band = f"[{'-' if low is None else low}, {'-' if high is None else high}]"
        return OrderResult(
            retcodes.PRICE_CHANGED,
            f"Prices changed: {price} is outside the band {band}; not sent",
            bid=bid,
            ask=ask,
        )
    return _copy_request(request, {"price": price, "lowest_price": None, "highest_price": None})


def sent_at(result: OrderResult, request: OrderRequest) -> OrderResult:
    """The broker's answer to a deal the terminal priced, with the price it was sent at."""
    return _copy_result(result, {"request_price": request.price})
