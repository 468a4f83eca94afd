"""Exact decimal parsing and lot-step arithmetic. A float never touches a volume or a price."""

from __future__ import annotations

import functools
import re
from decimal import Decimal, DecimalTuple

_DECIMAL_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
# Anything longer is not a price, volume or amount of money; it is an attack or a bug.
MAX_DECIMAL_TEXT = 40


def parse_decimal(text: str) -> Decimal:
    """Parses a wire decimal ("1.00", "-0.5"). Raises ValueError on anything else: exponents,
    NaN, infinity, spaces, empty strings."""
    if len(text) > MAX_DECIMAL_TEXT or not _DECIMAL_TEXT.fullmatch(text):
        raise ValueError(f"not a decimal number: {text[:MAX_DECIMAL_TEXT]!r}")
    return Decimal(text)


def format_decimal(value: Decimal) -> str:
    """The wire form: plain notation, never an exponent, trailing zeros kept as they are."""
    return f"{value:f}"


def is_multiple_of(value: Decimal, step: Decimal) -> bool:
    return step > 0 and value % step == 0


def to_steps(value: Decimal, step: Decimal) -> int:
    """An exact multiple of `step` as an integer count of steps."""
    count, rest = divmod(value, step)
    if rest != 0:
        raise ValueError(f"{value} is not a multiple of {step}")
    return int(count)


def from_steps(count: int, step: Decimal) -> Decimal:
    """`count` steps as a volume, with the step's exponent ("0.01" x 7 -> "0.07")."""
    # Cached by the step's digits and exponent, not by the Decimal: "0.1" and "0.10" are
    # equal (one key for a Decimal) but give volumes of different exponents.
    try:
        mantissa, exponent = _step_parts(step.as_tuple())
    except ValueError:
        raise ValueError(f"not a positive finite step: {step}") from None
    return Decimal(count * mantissa).scaleb(exponent)


@functools.lru_cache(maxsize=256)
def _step_parts(step: DecimalTuple) -> tuple[int, int]:
    """A step as mantissa x 10**exponent with an integer mantissa: "0.05" -> (5, -2)."""
    sign, digits, exponent = step
    if sign or not isinstance(exponent, int):
        raise ValueError("not a positive finite step")
    return int("".join(map(str, digits)) or "0"), exponent


def scaled_integer(value: Decimal, exponent: int) -> int:
    """`value` x 10**exponent as an exact integer (value must have at most `exponent` decimals)."""
    scaled = value.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} has more than {exponent} decimals")
    return int(scaled)


def decimal_places(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)
