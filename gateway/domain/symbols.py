"""Symbols and the volume and price rules a broker enforces on them."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from gateway.domain.decimals import is_multiple_of


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """What an order on a symbol must respect (MT5 symbol_info fields of the same names)."""

    name: str
    digits: int
    contract_size: Decimal
    volume_min: Decimal
    volume_step: Decimal
    volume_max: Decimal
    # The smallest price change and what it is worth for one lot, in the account currency.
    tick_size: Decimal
    tick_value: Decimal
    currency_base: str = ""
    currency_profit: str = "USD"
    # Distance in points within which SL/TP may not be set (MT5 trade_stops_level).
    stops_level: int = 0

    @property
    def point(self) -> Decimal:
        return Decimal(1).scaleb(-self.digits)

    def __post_init__(self) -> None:
        if self.volume_step <= 0 or self.volume_min <= 0:
            raise ValueError(f"{self.name}: volume_step and volume_min must be > 0")
        if self.volume_max < self.volume_min:
            raise ValueError(f"{self.name}: volume_max below volume_min")
        if not is_multiple_of(self.volume_min, self.volume_step):
            raise ValueError(f"{self.name}: volume_min is not a multiple of volume_step")
        if self.contract_size <= 0 or self.tick_size <= 0 or self.tick_value <= 0:
            raise ValueError(f"{self.name}: contract_size, tick_size and tick_value must be > 0")

    def volume_error(self, volume: Decimal) -> str | None:
        """Why a single order of `volume` lots is not valid here, or None."""
        if volume < self.volume_min:
            return f"below the minimum volume {self.volume_min} of {self.name}"
        if volume > self.volume_max:
            return f"above the maximum volume {self.volume_max} of {self.name}"
        if not is_multiple_of(volume, self.volume_step):
            return f"not a multiple of the volume step {self.volume_step} of {self.name}"
        return None

    def normalize_price(self, price: Decimal) -> Decimal:
        return price.quantize(self.point)
