"""The request dict of order_send and order_check: checked as the package checks its arguments,
then read as a request to the simulated trade server.

A dict the package cannot read (a key it does not know, a value of the wrong type, a comment it
refuses) makes order_send answer None with RES_E_INVALID_PARAMS; a readable request the server
refuses gets a result with a retcode. Keys left out are zero, as in the MqlTradeRequest the
package fills in (so a missing type_filling is FOK, as on a real terminal).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from gateway.domain import retcodes
from gateway.domain.orders import FillingPolicy, OrderType, Side, TimeInForce
from gateway.terminals.mt5 import constants as mt5
from gateway.terminals.mt5.emulator.records import TradeRequest
from gateway.terminals.protocol import OrderRequest, TradeAction

# The longest comment the package accepts.
MAX_COMMENT_LENGTH = 31
# Float noise below this is not a volume: 0.30000000000000004 lots is 0.3.
_VOLUME_QUANTUM = Decimal("1E-8")

_FLOAT_KEYS = ("volume", "price", "stoplimit", "sl", "tp")
_INT_KEYS = (
    "action",
    "magic",
    "order",
    "deviation",
    "type",
    "type_filling",
    "type_time",
    "expiration",
    "position",
    "position_by",
)
_TEXT_KEYS = ("symbol", "comment")

_ACTIONS = {action.value: action for action in TradeAction}
_PENDING_TYPES = {
    mt5.ORDER_TYPE_BUY_LIMIT: (Side.BUY, OrderType.LIMIT),
    mt5.ORDER_TYPE_SELL_LIMIT: (Side.SELL, OrderType.LIMIT),
    mt5.ORDER_TYPE_BUY_STOP: (Side.BUY, OrderType.STOP),
    mt5.ORDER_TYPE_SELL_STOP: (Side.SELL, OrderType.STOP),
    mt5.ORDER_TYPE_BUY_STOP_LIMIT: (Side.BUY, OrderType.STOP_LIMIT),
    mt5.ORDER_TYPE_SELL_STOP_LIMIT: (Side.SELL, OrderType.STOP_LIMIT),
}
_FILLINGS = {
    mt5.ORDER_FILLING_FOK: FillingPolicy.FOK,
    mt5.ORDER_FILLING_IOC: FillingPolicy.IOC,
    mt5.ORDER_FILLING_RETURN: FillingPolicy.RETURN,
}


class MalformedRequest(Exception):
    """The package cannot read the request: order_send answers None."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """The trade server refuses the request before looking at the account."""

    retcode: int
    text: str


def parse(request: object, *, truncates_long_comments: bool = False) -> Any:
    """The request as the package's TradeRequest tuple. Raises MalformedRequest.
    `truncates_long_comments`: a comment over MAX_COMMENT_LENGTH is cut, not refused."""
    if not isinstance(request, dict):
        raise MalformedRequest("Invalid arguments")
    for key in request:
        if key not in TradeRequest._fields:
            raise MalformedRequest(f'Invalid "{key}" argument')
    values: dict[str, object] = {}
    for key in _FLOAT_KEYS:
        value = request.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MalformedRequest(f'Invalid "{key}" argument')
        values[key] = float(value)
    for key in _INT_KEYS:
        value = request.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise MalformedRequest(f'Invalid "{key}" argument')
        values[key] = value
    for key in _TEXT_KEYS:
        value = request.get(key, "")
        if not isinstance(value, str):
            raise MalformedRequest(f'Invalid "{key}" argument')
        values[key] = value
    comment = str(values["comment"])
    if len(comment) > MAX_COMMENT_LENGTH and truncates_long_comments:
        comment = values["comment"] = comment[:MAX_COMMENT_LENGTH]
    if len(comment) > MAX_COMMENT_LENGTH or not comment.isascii():
        raise MalformedRequest('Invalid "comment" argument')
    return TradeRequest(**values)


def price_of(value: float, digits: int | None) -> Decimal | None:
    """A price the server reads from a double: 0 is none; rounded to the symbol's digits."""
    if value == 0:
        return None
    price = Decimal(repr(value))
    return price if digits is None else price.quantize(Decimal(1).scaleb(-digits))


def volume_of(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(_VOLUME_QUANTUM).normalize()


def server_time_to_utc(seconds: int, offset: timedelta) -> datetime:
    return datetime.fromtimestamp(seconds, UTC) - offset


def to_order_request(
    trade: Any, *, digits: int | None, server_utc_offset: timedelta
) -> OrderRequest | Refusal:
    """The request for the simulated trade server, or the server's refusal of its form.
    `digits`: of the symbol the request is about, if known."""
    action = _ACTIONS.get(trade.action)
    if action is None:
        return Refusal(retcodes.INVALID, "Invalid request")
    filling = _FILLINGS.get(trade.type_filling)
    if filling is None:
        return Refusal(retcodes.INVALID_FILL, "Unsupported filling mode")
    side, order_type = Side.BUY, OrderType.MARKET
    if action is TradeAction.DEAL:
        if trade.type not in (mt5.ORDER_TYPE_BUY, mt5.ORDER_TYPE_SELL):
            return Refusal(retcodes.INVALID, "Invalid request")
        side = Side.BUY if trade.type == mt5.ORDER_TYPE_BUY else Side.SELL
    elif action is TradeAction.PENDING:
        if trade.type not in _PENDING_TYPES:
            return Refusal(retcodes.INVALID, "Invalid request")
        side, order_type = _PENDING_TYPES[trade.type]
    time_in_force, expires_at = TimeInForce.GTC, None
    if action in (TradeAction.PENDING, TradeAction.MODIFY):
        expiry = _expiry(trade.type_time, trade.expiration, server_utc_offset)
        if isinstance(expiry, Refusal):
            return expiry
        time_in_force, expires_at = expiry
    return OrderRequest(
        action=action,
        symbol=trade.symbol,
        side=side,
        volume=volume_of(trade.volume),
        tag=trade.comment,
        magic=trade.magic,
        price=price_of(trade.price, digits),
        deviation_points=trade.deviation,
        stop_loss=price_of(trade.sl, digits),
        take_profit=price_of(trade.tp, digits),
        position_ticket=trade.position,
        order_type=order_type,
        stop_limit_price=price_of(trade.stoplimit, digits),
        time_in_force=time_in_force,
        expires_at=expires_at,
        filling=filling,
        order_ticket=trade.order,
        position_by=trade.position_by,
    )


def _expiry(
    type_time: int, expiration: int, offset: timedelta
) -> tuple[TimeInForce, datetime | None] | Refusal:
    if type_time == mt5.ORDER_TIME_GTC:
        return TimeInForce.GTC, None
    if type_time == mt5.ORDER_TIME_DAY:
        return TimeInForce.DAY, None
    if type_time not in (mt5.ORDER_TIME_SPECIFIED, mt5.ORDER_TIME_SPECIFIED_DAY):
        return Refusal(retcodes.INVALID_EXPIRATION, "Invalid expiration")
    if expiration == 0:
        return Refusal(retcodes.INVALID_EXPIRATION, "Invalid expiration")
    if type_time == mt5.ORDER_TIME_SPECIFIED:
        return TimeInForce.SPECIFIED, server_time_to_utc(expiration, offset)
    # SPECIFIED_DAY: until the end of that day of the server's calendar.
    day = datetime.fromtimestamp(expiration, UTC).date() + timedelta(days=1)
    end = datetime.combine(day, datetime.min.time(), UTC)
    return TimeInForce.SPECIFIED, end - offset
