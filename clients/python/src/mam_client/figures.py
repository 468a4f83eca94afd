"""How a number is shown to a trader: volumes to the symbol's volume step (0.50, not 0.5; 2.00,
not 2), prices to the symbol's digits (1.08441, not 1.08441000), money to 2 places, returns and
ratios rounded, and never a negative zero (-0.0 slippage on a sell is 0.0).

The same text is kept in gateway/domain/figures.py (statements and reports) and in
clients/python/src/mam_client/figures.py (mamctl's tables and JSON): the gateway and the client
are separate distributions, neither installs the other. tests/unit/test_figures.py holds both to
the same cases and the two files to the same text.

The value functions return exact Decimals, for data (JSON); the `_text` functions return what a
table or a page prints. A symbol whose step or digits are unknown has its values shown exactly
as they came: digits are never guessed by trimming zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal

MONEY_PLACES = 2
# Returns, rates and shares as fractions: 0.000001 is 0.0001%.
FRACTION_PLACES = 6
# Ratios (Sharpe, Sortino, profit factor) in data; their text has 2 places.
RATIO_PLACES = 4
RATIO_TEXT_PLACES = 2
POINTS_PLACES = 1
PERCENT_TEXT_PLACES = 2

# Wide enough for any amount (the default 28 digits would refuse 10**27 to 2 places).
_CONTEXT = Context(prec=80)


@dataclass(frozen=True, slots=True)
class SymbolPrecision:
    """What a symbol's volumes and prices are shown to; None: unknown (shown as they came)."""

    volume_step: Decimal | None = None
    digits: int | None = None

    def volume(self, value: Decimal) -> Decimal:
        return volume(value, self.volume_step)

    def price(self, value: Decimal) -> Decimal:
        return price(value, self.digits)

    def volume_text(self, value: Decimal) -> str:
        return plain(self.volume(value))

    def price_text(self, value: Decimal) -> str:
        return plain(self.price(value))


UNKNOWN = SymbolPrecision()


def volume(value: Decimal, step: Decimal | None) -> Decimal:
    """Lots with the decimals of the volume step (0.50 for a step of 0.01, 2.0 for 0.1, 3 for
    1). A volume is exact: a finer digit it really has (an unrounded target share) is kept,
    never rounded away. Step None: the value as it came."""
    if step is None or step <= 0:
        return _no_negative_zero(value)
    places = max(_places(step), _places(value))
    return _quantize(value, places, ROUND_HALF_EVEN)


def price(value: Decimal, digits: int | None) -> Decimal:
    """A price to the symbol's digits, half to even (an average of fill prices has more);
    digits None: the value as it came."""
    if digits is None or digits < 0:
        return _no_negative_zero(value)
    return _quantize(value, digits, ROUND_HALF_EVEN)


def money(value: Decimal) -> Decimal:
    """Money to 2 places, half up."""
    return _quantize(value, MONEY_PLACES, ROUND_HALF_UP)


def fraction(value: Decimal) -> Decimal:
    """A return, rate or share as a fraction (0.05 is 5%), to 6 places."""
    return _quantize(value, FRACTION_PLACES, ROUND_HALF_EVEN)


def ratio(value: Decimal) -> Decimal:
    """A ratio (Sharpe, Sortino, profit factor) to 4 places."""
    return _quantize(value, RATIO_PLACES, ROUND_HALF_EVEN)


def points(value: Decimal) -> Decimal:
    """A distance in points (slippage) to 1 place."""
    return _quantize(value, POINTS_PLACES, ROUND_HALF_EVEN)


def plain(value: Decimal) -> str:
    """Plain notation, never an exponent, never "-0"."""
    return f"{_no_negative_zero(value):f}"


def grouped(value: Decimal) -> str:
    """Plain notation with thousands separators (12,500.25), never "-0"."""
    return f"{_no_negative_zero(value):,f}"


def volume_text(value: Decimal, step: Decimal | None) -> str:
    return plain(volume(value, step))


def price_text(value: Decimal, digits: int | None) -> str:
    return plain(price(value, digits))


def money_text(value: Decimal) -> str:
    """12,500.25"""
    return grouped(money(value))


def percent_text(fraction_value: Decimal) -> str:
    """A fraction as a percentage to 2 places: -0.00029032 is "-0.03%", 0.5 is "50.00%"."""
    return grouped(_quantize(fraction_value * 100, PERCENT_TEXT_PLACES, ROUND_HALF_EVEN)) + "%"


def ratio_text(value: Decimal) -> str:
    return grouped(_quantize(value, RATIO_TEXT_PLACES, ROUND_HALF_EVEN))


def points_text(value: Decimal) -> str:
    return plain(points(value))


def _places(value: Decimal) -> int:
    """Decimal places a value needs: 0.50 -> 1, 2.00 -> 0, 0.01 -> 2."""
    if not value.is_finite():
        raise ValueError(f"not a finite number: {value}")
    exponent = value.normalize(_CONTEXT).as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def _quantize(value: Decimal, places: int, rounding: str) -> Decimal:
    if not value.is_finite():
        raise ValueError(f"not a finite number: {value}")
    quantum = Decimal(1).scaleb(-places)
    return _no_negative_zero(value.quantize(quantum, rounding=rounding, context=_CONTEXT))


def _no_negative_zero(value: Decimal) -> Decimal:
    return value.copy_abs() if value.is_zero() else value
