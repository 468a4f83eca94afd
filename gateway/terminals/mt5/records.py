"""The MetaTrader5 module's records (named tuples of floats and server times) read as the
gateway's exact values.

A float from the module becomes a Decimal through its shortest repr (1.0845 -> "1.0845"), then
is rounded to what the value can be: a price to the symbol's digits, a volume to a multiple of
its volume step, money to the account currency's digits. A float never becomes a lot size
without that rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from gateway.domain.account_history import DealEntry
from gateway.domain.accounts import MarginMode
from gateway.domain.orders import FillingPolicy, OrderType, Side, TimeInForce
from gateway.domain.symbols import SymbolSpec
from gateway.terminals.mt5 import constants as mt5
from gateway.terminals.protocol import Deal, PendingOrder, Position

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_ORDER_TYPES = {
    mt5.ORDER_TYPE_BUY: (Side.BUY, OrderType.MARKET),
    mt5.ORDER_TYPE_SELL: (Side.SELL, OrderType.MARKET),
    mt5.ORDER_TYPE_BUY_LIMIT: (Side.BUY, OrderType.LIMIT),
    mt5.ORDER_TYPE_SELL_LIMIT: (Side.SELL, OrderType.LIMIT),
    mt5.ORDER_TYPE_BUY_STOP: (Side.BUY, OrderType.STOP),
    mt5.ORDER_TYPE_SELL_STOP: (Side.SELL, OrderType.STOP),
    mt5.ORDER_TYPE_BUY_STOP_LIMIT: (Side.BUY, OrderType.STOP_LIMIT),
    mt5.ORDER_TYPE_SELL_STOP_LIMIT: (Side.SELL, OrderType.STOP_LIMIT),
}
_TIME_TYPES = {
    mt5.ORDER_TIME_GTC: TimeInForce.GTC,
    mt5.ORDER_TIME_DAY: TimeInForce.DAY,
    mt5.ORDER_TIME_SPECIFIED: TimeInForce.SPECIFIED,
    mt5.ORDER_TIME_SPECIFIED_DAY: TimeInForce.SPECIFIED,
}
_FILLINGS = {
    mt5.ORDER_FILLING_FOK: FillingPolicy.FOK,
    mt5.ORDER_FILLING_IOC: FillingPolicy.IOC,
    mt5.ORDER_FILLING_RETURN: FillingPolicy.RETURN,
    # Book-or-cancel rests like a RETURN order.
    mt5.ORDER_FILLING_BOC: FillingPolicy.RETURN,
}
_DEAL_SIDES = {mt5.DEAL_TYPE_BUY: Side.BUY, mt5.DEAL_TYPE_SELL: Side.SELL}
_DEAL_ENTRIES = {entry.value: entry for entry in DealEntry}


def decimal_of(value: float) -> Decimal:
    """The decimal a float from the module stands for: its shortest repr."""
    return Decimal(repr(float(value)))


@dataclass(frozen=True, slots=True)
class Rounding:
    """What prices and volumes of one symbol are exact to."""

    point: Decimal
    volume_step: Decimal

    @classmethod
    def of(cls, spec: SymbolSpec) -> Rounding:
        return cls(spec.point, spec.volume_step)

    def price(self, value: float) -> Decimal:
        return decimal_of(value).quantize(self.point)

    def optional_price(self, value: float) -> Decimal | None:
        """None for the module's 0 (no SL/TP, no price)."""
        return None if value == 0 else self.price(value)

    def volume(self, value: float) -> Decimal:
        steps = (decimal_of(value) / self.volume_step).to_integral_value(ROUND_HALF_EVEN)
        return (steps * self.volume_step).quantize(self.volume_step)


# A symbol whose spec cannot be read (no longer quoted): exact to what the floats say.
UNROUNDED = Rounding(Decimal("1E-8"), Decimal("1E-8"))

# SymbolInfo.filling_mode is a bitmask of MQL5's SYMBOL_FILLING_* flags (the Python package does
# not export them): which of FOK and IOC the server accepts.
FILLING_FOK_FLAG = 1
FILLING_IOC_FLAG = 2


@dataclass(frozen=True, slots=True)
class SymbolTerms:
    """What requests for one symbol must respect: its rounding, and how its server executes
    orders (SYMBOL_TRADE_EXECUTION_*) and which fillings it accepts (FILLING_*_FLAG)."""

    rounding: Rounding
    execution_mode: int
    filling_flags: int


def symbol_terms(info: Any) -> SymbolTerms:
    """From a SymbolInfo. Digits and volume step are there even for a symbol outside Market
    Watch (its tick value and prices may not be)."""
    step = decimal_of(info.volume_step) if info.volume_step > 0 else UNROUNDED.volume_step
    return SymbolTerms(
        rounding=Rounding(Decimal(1).scaleb(-int(info.digits)), step),
        execution_mode=int(info.trade_exemode),
        filling_flags=int(info.filling_mode),
    )


def money(value: float, digits: int = 2) -> Decimal:
    return decimal_of(value).quantize(Decimal(1).scaleb(-digits))


def utc_time(server_msc: int, server_utc_offset: timedelta) -> datetime:
    """A time the module gives in milliseconds of the trade server's clock, in UTC."""
    return _EPOCH + timedelta(milliseconds=int(server_msc)) - server_utc_offset


def margin_mode(value: int) -> MarginMode:
    # Exchange accounts book like retail netting: one position per symbol.
    if value == mt5.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING:
        return MarginMode.HEDGING
    return MarginMode.NETTING


def symbol_spec(info: Any) -> SymbolSpec:
    """A SymbolInfo as the spec orders are sized by. Raises ValueError when the terminal's values
    make no valid spec (e.g. a tick value of 0 while the symbol has no quotes)."""
    return SymbolSpec(
        name=info.name,
        digits=int(info.digits),
        contract_size=decimal_of(info.trade_contract_size),
        volume_min=decimal_of(info.volume_min),
        volume_step=decimal_of(info.volume_step),
        volume_max=decimal_of(info.volume_max),
        tick_size=decimal_of(info.trade_tick_size),
        tick_value=decimal_of(info.trade_tick_value),
        currency_base=info.currency_base,
        currency_profit=info.currency_profit,
        stops_level=int(info.trade_stops_level),
    )


def position(record: Any, rounding: Rounding, server_utc_offset: timedelta) -> Position:
    return Position(
        ticket=int(record.ticket),
        symbol=record.symbol,
        side=Side.BUY if record.type == mt5.POSITION_TYPE_BUY else Side.SELL,
        volume=rounding.volume(record.volume),
        price_open=rounding.price(record.price_open),
        magic=int(record.magic),
        comment=record.comment,
        opened_at=utc_time(record.time_msc, server_utc_offset),
        stop_loss=rounding.optional_price(record.sl),
        take_profit=rounding.optional_price(record.tp),
    )


def pending_order(record: Any, rounding: Rounding, server_utc_offset: timedelta) -> PendingOrder:
    side, order_type = order_side_and_type(record)
    stop_limit = None
    if order_type is OrderType.STOP_LIMIT:
        stop_limit = rounding.optional_price(record.price_stoplimit)
    expires_at = None
    if record.time_expiration:
        expires_at = utc_time(int(record.time_expiration) * 1000, server_utc_offset)
    return PendingOrder(
        ticket=int(record.ticket),
        symbol=record.symbol,
        side=side,
        volume=rounding.volume(record.volume_current),
        price=rounding.price(record.price_open),
        magic=int(record.magic),
        comment=record.comment,
        placed_at=utc_time(record.time_setup_msc, server_utc_offset),
        order_type=order_type,
        stop_limit_price=stop_limit,
        stop_loss=rounding.optional_price(record.sl),
        take_profit=rounding.optional_price(record.tp),
        time_in_force=_TIME_TYPES.get(record.type_time, TimeInForce.GTC),
        expires_at=expires_at,
        filling=_FILLINGS.get(record.type_filling, FillingPolicy.RETURN),
        volume_initial=rounding.volume(record.volume_initial),
    )


def is_trade(record: Any) -> bool:
    """Whether a history deal bought or sold (not a deposit, credit, commission...)."""
    return record.type in _DEAL_SIDES


def deal_side(record: Any) -> Side:
    """The side of a trade deal (see is_trade)."""
    return _DEAL_SIDES[record.type]


def order_side_and_type(record: Any) -> tuple[Side, OrderType]:
    """Of an order record (active or history), by its ORDER_TYPE_*."""
    return _ORDER_TYPES.get(record.type, (Side.BUY, OrderType.LIMIT))


def deal(
    record: Any, rounding: Rounding, server_utc_offset: timedelta, currency_digits: int
) -> Deal:
    """A trade deal (see is_trade). Its profit is what it credited to the balance: the
    profit with the deal's commission, swap and fee."""
    return Deal(
        ticket=int(record.ticket),
        order_ticket=int(record.order),
        position_ticket=int(record.position_id),
        symbol=record.symbol,
        side=_DEAL_SIDES[record.type],
        volume=rounding.volume(record.volume),
        price=rounding.price(record.price),
        magic=int(record.magic),
        comment=record.comment,
        executed_at=utc_time(record.time_msc, server_utc_offset),
        entry=_DEAL_ENTRIES.get(record.entry, DealEntry.IN),
        profit=money(record.profit, currency_digits)
        + money(record.commission, currency_digits)
        + money(record.swap, currency_digits)
        + money(record.fee, currency_digits),
    )
