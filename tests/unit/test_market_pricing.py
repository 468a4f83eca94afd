"""A deal at market priced by its terminal: the side's price, inside its band or not sent."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.domain import retcodes
from gateway.domain.orders import Side
from gateway.terminals.market import needs_pricing, priced_at_market, sent_at
from gateway.terminals.protocol import OrderRequest, OrderResult, TradeAction

D = Decimal
BID, ASK = D("1.08446"), D("1.08454")


def deal(side: Side, **fields: object) -> OrderRequest:
    return OrderRequest(TradeAction.DEAL, "EURUSD", side, D("0.10"), "mam:T", 7, **fields)  # type: ignore[arg-type]


def test_only_a_deal_without_a_price_is_priced_by_the_terminal() -> None:
    assert needs_pricing(deal(Side.BUY))
    assert not needs_pricing(deal(Side.BUY, price=ASK))
    pending = OrderRequest(TradeAction.PENDING, "EURUSD", Side.BUY, D("0.10"), "mam:T", 7)
    assert not needs_pricing(pending)


@pytest.mark.parametrize(("side", "price"), [(Side.BUY, ASK), (Side.SELL, BID)])
def test_a_buy_takes_the_ask_and_a_sell_the_bid(side: Side, price: Decimal) -> None:
    priced = priced_at_market(deal(side, deviation_points=20), BID, ASK)
    assert isinstance(priced, OrderRequest)
    assert (priced.price, priced.deviation_points) == (price, 20)
    assert (priced.lowest_price, priced.highest_price) == (None, None)


@pytest.mark.parametrize(
    ("low", "high", "sent"),
    [
        (ASK, ASK, True),  # the band's ends are inside it
        (ASK - D("0.0002"), None, True),
        (None, ASK + D("0.0002"), True),
        (ASK + D("0.00001"), None, False),
        (None, ASK - D("0.00001"), False),
    ],
)
def test_a_price_outside_the_band_is_refused_unsent(
    low: Decimal | None, high: Decimal | None, sent: bool
) -> None:
    priced = priced_at_market(deal(Side.BUY, lowest_price=low, highest_price=high), BID, ASK)
    if sent:
        assert isinstance(priced, OrderRequest) and priced.price == ASK
        return
    assert isinstance(priced, OrderResult)
    assert (priced.retcode, priced.bid, priced.ask, priced.request_price) == (
        retcodes.PRICE_CHANGED,
        BID,
        ASK,
        None,
    )
    assert "not sent" in priced.text


def test_the_answer_carries_the_price_the_deal_was_sent_at() -> None:
    priced = priced_at_market(deal(Side.SELL), BID, ASK)
    assert isinstance(priced, OrderRequest)
    answer = OrderResult(retcodes.DONE, "Request executed", volume=D("0.10"), price=BID)
    assert sent_at(answer, priced) == OrderResult(
        retcodes.DONE, "Request executed", volume=D("0.10"), price=BID, request_price=BID
    )
