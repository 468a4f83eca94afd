"""An OrderRequest as the request dict of MetaTrader5.order_send (MqlTradeRequest keys).

Decimals become floats only here, at the module's edge, from values already exact to the
symbol's digits and volume step: float(Decimal) is the nearest double, which the terminal reads
back as the same decimal. Keys a request does not use are left out (the module zeroes them).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from gateway.domain.orders import FillingPolicy, OrderType, Side, TimeInForce
from gateway.terminals.mt5 import constants as mt5
from gateway.terminals.mt5.records import FILLING_FOK_FLAG, FILLING_IOC_FLAG, SymbolTerms
from gateway.terminals.protocol import OrderRequest, TradeAction

_MARKET_TYPES = {Side.BUY: mt5.ORDER_TYPE_BUY, Side.SELL: mt5.ORDER_TYPE_SELL}
_PENDING_TYPES = {
    (Side.BUY, OrderType.LIMIT): mt5.ORDER_TYPE_BUY_LIMIT,
    (Side.SELL, OrderType.LIMIT): mt5.ORDER_TYPE_SELL_LIMIT,
    (Side.BUY, OrderType.STOP): mt5.ORDER_TYPE_BUY_STOP,
    (Side.SELL, OrderType.STOP): mt5.ORDER_TYPE_SELL_STOP,
    (Side.BUY, OrderType.STOP_LIMIT): mt5.ORDER_TYPE_BUY_STOP_LIMIT,
    (Side.SELL, OrderType.STOP_LIMIT): mt5.ORDER_TYPE_SELL_STOP_LIMIT,
}
_FILLINGS = {
    FillingPolicy.FOK: mt5.ORDER_FILLING_FOK,
    FillingPolicy.IOC: mt5.ORDER_FILLING_IOC,
    FillingPolicy.RETURN: mt5.ORDER_FILLING_RETURN,
}
_TIME_TYPES = {
    TimeInForce.GTC: mt5.ORDER_TIME_GTC,
    TimeInForce.DAY: mt5.ORDER_TIME_DAY,
    TimeInForce.SPECIFIED: mt5.ORDER_TIME_SPECIFIED,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
# Execution modes where the dealer quotes the price: a market order is always FOK.
_QUOTED_EXECUTION = (mt5.SYMBOL_TRADE_EXECUTION_REQUEST, mt5.SYMBOL_TRADE_EXECUTION_INSTANT)
# When the symbol refuses the filling asked for, the nearest it takes, in this order. FOK and
# IOC leave nothing resting (an IOC partial fill is stored and its rest sent again by the
# engine); RETURN, which leaves the rest working, comes last.
_FILLING_FALLBACKS = {
    FillingPolicy.FOK: (FillingPolicy.IOC, FillingPolicy.RETURN),
    FillingPolicy.IOC: (FillingPolicy.FOK, FillingPolicy.RETURN),
    FillingPolicy.RETURN: (FillingPolicy.IOC, FillingPolicy.FOK),
}


class UnsendableRequest(ValueError):
    """The request cannot be put in MT5 terms (e.g. a pending order without a price)."""


def order_send_request(
    request: OrderRequest,
    *,
    server_utc_offset: timedelta = timedelta(0),
    current_price: Decimal | None = None,
) -> dict[str, Any]:
    """The order_send dict. `current_price`: a MODIFY that keeps its price sends this one (MT5
    has no "unchanged" price). Raises UnsendableRequest."""
    common: dict[str, Any] = {
        "action": request.action.value,
        "magic": request.magic,
        "comment": request.tag,
    }
    action = request.action
    if action is TradeAction.DEAL:
        return common | _deal(request)
    if action is TradeAction.PENDING:
        return common | _pending(request, server_utc_offset)
    if action is TradeAction.MODIFY:
        return common | _modify(request, server_utc_offset, current_price)
    if action is TradeAction.REMOVE:
        return common | {"order": request.order_ticket}
    if action is TradeAction.SLTP:
        return common | {
            "symbol": request.symbol,
            "position": request.position_ticket,
            "sl": _price_or_zero(request.stop_loss),
            "tp": _price_or_zero(request.take_profit),
        }
    return common | {
        "symbol": request.symbol,
        "position": request.position_ticket,
        "position_by": request.position_by,
    }


def allowed_fillings(action: TradeAction, terms: SymbolTerms) -> frozenset[FillingPolicy]:
    """The fillings the symbol's server accepts for a deal or a pending order (MetaTrader 5's
    fill policy rules): a market order in Request or Instant execution is always FOK; in Market
    execution FOK and IOC as the symbol's flags allow, never RETURN; in Exchange execution those
    and RETURN. A pending order may always RETURN, and FOK or IOC as the flags allow."""
    by_flags = {
        policy
        for flag, policy in (
            (FILLING_FOK_FLAG, FillingPolicy.FOK),
            (FILLING_IOC_FLAG, FillingPolicy.IOC),
        )
        if terms.filling_flags & flag
    }
    if action is not TradeAction.DEAL:
        return frozenset({*by_flags, FillingPolicy.RETURN})
    if terms.execution_mode in _QUOTED_EXECUTION:
        return frozenset({FillingPolicy.FOK})
    if terms.execution_mode == mt5.SYMBOL_TRADE_EXECUTION_EXCHANGE:
        return frozenset({*by_flags, FillingPolicy.RETURN})
    return frozenset(by_flags)


def filling_for(request: OrderRequest, terms: SymbolTerms) -> FillingPolicy:
    """The filling to send: the request's (the master order's policy) when the symbol accepts
    it, else the nearest one it accepts (_FILLING_FALLBACKS); the request's when it accepts
    none (the server then says why)."""
    allowed = allowed_fillings(request.action, terms)
    if request.filling in allowed:
        return request.filling
    return next((f for f in _FILLING_FALLBACKS[request.filling] if f in allowed), request.filling)


def _deal(request: OrderRequest) -> dict[str, Any]:
    if request.order_type is not OrderType.MARKET:
        raise UnsendableRequest(f"a deal is a market order, not {request.order_type.value}")
    fields: dict[str, Any] = {
        "symbol": request.symbol,
        "volume": float(request.volume),
        "type": _MARKET_TYPES[request.side],
        "deviation": request.deviation_points,
        "type_filling": _FILLINGS[request.filling],
    }
    if request.price is not None:
        fields["price"] = float(request.price)
    if request.position_ticket:
        fields["position"] = request.position_ticket
    if request.stop_loss is not None:
        fields["sl"] = float(request.stop_loss)
    if request.take_profit is not None:
        fields["tp"] = float(request.take_profit)
    return fields


def _pending(request: OrderRequest, offset: timedelta) -> dict[str, Any]:
    order_type = _PENDING_TYPES.get((request.side, request.order_type))
    if order_type is None:
        raise UnsendableRequest("a pending order is a LIMIT, STOP or STOP_LIMIT")
    if request.price is None:
        raise UnsendableRequest("a pending order needs its price")
    fields: dict[str, Any] = {
        "symbol": request.symbol,
        "volume": float(request.volume),
        "type": order_type,
        "price": float(request.price),
        "type_filling": _FILLINGS[request.filling],
    }
    if request.order_type is OrderType.STOP_LIMIT:
        if request.stop_limit_price is None:
            raise UnsendableRequest("a stop limit order needs its limit price")
        fields["stoplimit"] = float(request.stop_limit_price)
    if request.stop_loss is not None:
        fields["sl"] = float(request.stop_loss)
    if request.take_profit is not None:
        fields["tp"] = float(request.take_profit)
    return fields | _expiry(request, offset)


def _modify(
    request: OrderRequest, offset: timedelta, current_price: Decimal | None
) -> dict[str, Any]:
    price = request.price if request.price is not None else current_price
    if price is None:
        raise UnsendableRequest(f"order {request.order_ticket}: no price to keep")
    fields: dict[str, Any] = {
        "order": request.order_ticket,
        "price": float(price),
        "sl": _price_or_zero(request.stop_loss),
        "tp": _price_or_zero(request.take_profit),
    }
    if request.symbol:
        fields["symbol"] = request.symbol
    if request.stop_limit_price is not None:
        fields["stoplimit"] = float(request.stop_limit_price)
    return fields | _expiry(request, offset)


def _expiry(request: OrderRequest, offset: timedelta) -> dict[str, Any]:
    fields: dict[str, Any] = {"type_time": _TIME_TYPES[request.time_in_force]}
    if request.time_in_force is TimeInForce.SPECIFIED:
        if request.expires_at is None:
            raise UnsendableRequest("a SPECIFIED order needs its expiration time")
        fields["expiration"] = server_seconds(request.expires_at, offset)
    return fields


def server_seconds(at: datetime, offset: timedelta) -> int:
    """Whole seconds since the epoch on the trade server's clock (`offset` ahead of UTC)."""
    return (at + offset - _EPOCH) // _SECOND


def _price_or_zero(price: Decimal | None) -> float:
    # MT5 reads 0 as "no SL/TP".
    return 0.0 if price is None else float(price)
