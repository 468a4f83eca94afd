"""The decimal contexts an allocation computes in."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, DivisionByZero, Inexact, InvalidOperation

# Wide enough that products of volumes, equities and contract sizes are always exact.
EXACT = Context(prec=80)
# Targets are shown, not traded: 28 digits are plenty.
DISPLAY = Context(prec=28)
# The display rounding of a target to TARGET_DISPLAY_QUANTUM.
DISPLAY_ROUNDING = Context(prec=EXACT.prec, rounding=ROUND_HALF_EVEN)
# An exact quotient or an exception, never a rounded one.
EXACT_OR_RAISE = Context(prec=EXACT.prec, traps=[Inexact, InvalidOperation, DivisionByZero])
