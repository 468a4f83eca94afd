"""Symbols and the volume and price rules a broker enforces on them."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from gateway.domain.decimals import is_multiple_of

_POINTS = {digits: Decimal(1).scaleb(-digits) for digits in range(16)}


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
        # Asked for on every request: made once per number of digits.
        point = _POINTS.get(self.digits)
        return Decimal(1).scaleb(-self.digits) if point is None else point

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


class SpecInterner:
    """One object for every spec of the same exact value, within one use (an order's plan).

    Terminals may answer symbol_spec() with a new object per call; the allocation computes a
    spec's step volumes once per object, and once in all when every member shares one.
    Exact value: the text of every decimal too, since a spec's exponents shape the volumes it
    gives ("0.01" and "0.010" are equal, but not the same spec here).
    """

    __slots__ = ("_by_id", "_by_value")

    def __init__(self) -> None:
        # By identity first: the usual case is a few objects shared by many members. The
        # objects are held here, so an id is never reused while this lives.
        self._by_id: dict[int, tuple[SymbolSpec, SymbolSpec]] = {}
        self._by_value: dict[tuple[object, ...], SymbolSpec] = {}

    def __call__(self, spec: SymbolSpec) -> SymbolSpec:
        found = self._by_id.get(id(spec))
        if found is None:
            key = (
                spec.name, spec.digits, str(spec.contract_size), str(spec.volume_min),
                str(spec.volume_step), str(spec.volume_max), str(spec.tick_size),
                str(spec.tick_value), spec.currency_base, spec.currency_profit,
                spec.stops_level,
            )  # fmt: skip
            found = self._by_id[id(spec)] = (spec, self._by_value.setdefault(key, spec))
        return found[1]
