"""The gateway's symbols (TradingService.ListSymbols): the volume and price rules a client shows
volumes and prices with (mam_client.figures), and what an order on a symbol must respect."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from mam_client import _convert
from mam_client._proto.mam.v1 import trading_service_pb2
from mam_client.figures import SymbolPrecision


@dataclass(frozen=True, slots=True)
class Symbol:
    """A symbol the gateway trades, as its broker specifies it (MT5 symbol_info names)."""

    name: str
    # Decimal places of its prices.
    digits: int
    volume_min: Decimal
    volume_step: Decimal
    volume_max: Decimal
    contract_size: Decimal
    tick_size: Decimal
    tick_value: Decimal
    currency_base: str
    currency_profit: str

    @property
    def precision(self) -> SymbolPrecision:
        return SymbolPrecision(volume_step=self.volume_step, digits=self.digits)


def symbol_from_wire(message: trading_service_pb2.Symbol) -> Symbol:
    return Symbol(
        name=message.name,
        digits=message.digits,
        volume_min=_convert.decimal_or_zero(message.volume_min),
        volume_step=_convert.decimal_or_zero(message.volume_step),
        volume_max=_convert.decimal_or_zero(message.volume_max),
        contract_size=_convert.decimal_or_zero(message.contract_size),
        tick_size=_convert.decimal_or_zero(message.tick_size),
        tick_value=_convert.decimal_or_zero(message.tick_value),
        currency_base=message.currency_base,
        currency_profit=message.currency_profit,
    )
