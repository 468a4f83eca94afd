"""OrderRequest -> the order_send dict: MT5's keys and values, exact floats, server times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from gateway.domain.orders import FillingPolicy, OrderType, Side, TimeInForce
from gateway.terminals.mt5 import constants as mt5
from gateway.terminals.mt5.requests import UnsendableRequest, order_send_request, server_seconds
from gateway.terminals.protocol import OrderRequest, TradeAction

D = Decimal
NOON = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def request(action: TradeAction, **fields: Any) -> OrderRequest:
    fields.setdefault("side", Side.BUY)
    fields.setdefault("volume", D("0.10"))
    return OrderRequest(action=action, symbol="EURUSD", tag="mam:T", magic=7, **fields)


def test_a_market_deal() -> None:
    sent = order_send_request(
        request(
            TradeAction.DEAL,
            side=Side.SELL,
            volume=D("0.30"),
            price=D("1.08446"),
            deviation_points=15,
            stop_loss=D("1.09000"),
            filling=FillingPolicy.IOC,
        )
    )
    assert sent == {
        "action": mt5.TRADE_ACTION_DEAL,
        "magic": 7,
        "comment": "mam:T",
        "symbol": "EURUSD",
        "volume": 0.3,
        "type": mt5.ORDER_TYPE_SELL,
        "price": 1.08446,
        "deviation": 15,
        "sl": 1.09,
        "type_filling": mt5.ORDER_FILLING_IOC,
    }
    # The nearest double of each decimal, which reads back as the same decimal.
    assert D(repr(sent["volume"])) == D("0.3")


def test_a_close_names_its_position_and_a_deal_at_market_has_no_price() -> None:
    sent = order_send_request(request(TradeAction.DEAL, side=Side.SELL, position_ticket=42))
    assert sent["position"] == 42
    assert "price" not in sent and "sl" not in sent


@pytest.mark.parametrize(
    ("side", "order_type", "expected"),
    [
        (Side.BUY, OrderType.LIMIT, mt5.ORDER_TYPE_BUY_LIMIT),
        (Side.SELL, OrderType.LIMIT, mt5.ORDER_TYPE_SELL_LIMIT),
        (Side.BUY, OrderType.STOP, mt5.ORDER_TYPE_BUY_STOP),
        (Side.SELL, OrderType.STOP, mt5.ORDER_TYPE_SELL_STOP),
        (Side.SELL, OrderType.STOP_LIMIT, mt5.ORDER_TYPE_SELL_STOP_LIMIT),
    ],
)
def test_pending_order_types(side: Side, order_type: OrderType, expected: int) -> None:
    sent = order_send_request(
        request(
            TradeAction.PENDING,
            side=side,
            order_type=order_type,
            price=D("1.08000"),
            stop_limit_price=D("1.08100"),
            filling=FillingPolicy.RETURN,
        )
    )
    assert (sent["action"], sent["type"], sent["price"]) == (
        mt5.TRADE_ACTION_PENDING,
        expected,
        1.08,
    )
    assert sent["type_time"] == mt5.ORDER_TIME_GTC
    assert sent["type_filling"] == mt5.ORDER_FILLING_RETURN
    assert ("stoplimit" in sent) is (order_type is OrderType.STOP_LIMIT)


def test_an_expiration_is_in_whole_seconds_of_the_servers_clock() -> None:
    expires = NOON + timedelta(hours=5, milliseconds=700)
    sent = order_send_request(
        request(
            TradeAction.PENDING,
            order_type=OrderType.LIMIT,
            price=D("1.08"),
            time_in_force=TimeInForce.SPECIFIED,
            expires_at=expires,
        ),
        server_utc_offset=timedelta(hours=2),
    )
    assert sent["type_time"] == mt5.ORDER_TIME_SPECIFIED
    assert sent["expiration"] == int((NOON + timedelta(hours=7)).timestamp())
    assert server_seconds(NOON, timedelta(0)) == int(NOON.timestamp())


def test_modify_remove_sltp_and_close_by_name_their_tickets() -> None:
    modify = order_send_request(
        request(TradeAction.MODIFY, order_ticket=9, price=D("1.07"), take_profit=D("1.2"))
    )
    assert (modify["order"], modify["price"], modify["sl"], modify["tp"]) == (9, 1.07, 0.0, 1.2)
    assert order_send_request(request(TradeAction.REMOVE, order_ticket=9)) == {
        "action": mt5.TRADE_ACTION_REMOVE,
        "magic": 7,
        "comment": "mam:T",
        "order": 9,
    }
    sltp = order_send_request(request(TradeAction.SLTP, position_ticket=5, stop_loss=D("1.0")))
    assert (sltp["position"], sltp["sl"], sltp["tp"]) == (5, 1.0, 0.0)
    close_by = order_send_request(request(TradeAction.CLOSE_BY, position_ticket=5, position_by=6))
    assert (close_by["action"], close_by["position"], close_by["position_by"]) == (10, 5, 6)


def test_a_modify_keeping_its_price_sends_the_current_one() -> None:
    keep = request(TradeAction.MODIFY, order_ticket=9)
    assert order_send_request(keep, current_price=D("1.07500"))["price"] == 1.075
    with pytest.raises(UnsendableRequest):
        order_send_request(keep)


@pytest.mark.parametrize(
    "unsendable",
    [
        request(TradeAction.PENDING, order_type=OrderType.LIMIT),
        request(TradeAction.PENDING, order_type=OrderType.MARKET, price=D("1")),
        request(TradeAction.PENDING, order_type=OrderType.STOP_LIMIT, price=D("1")),
        request(
            TradeAction.PENDING,
            order_type=OrderType.LIMIT,
            price=D("1"),
            time_in_force=TimeInForce.SPECIFIED,
        ),
        request(TradeAction.DEAL, order_type=OrderType.LIMIT),
    ],
)
def test_requests_mt5_cannot_express_are_refused(unsendable: OrderRequest) -> None:
    with pytest.raises(UnsendableRequest):
        order_send_request(unsendable)
