"""Exact decimals: counts of lot steps as volumes, with the step's own exponent."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.domain.decimals import from_steps


def test_a_count_of_steps_takes_the_steps_exponent() -> None:
    assert str(from_steps(7, Decimal("0.01"))) == "0.07"
    assert str(from_steps(3, Decimal("0.05"))) == "0.15"
    assert str(from_steps(0, Decimal("0.01"))) == "0.00"


def test_equal_steps_written_differently_give_their_own_exponents_in_any_order() -> None:
    # "0.10" and "0.1" are equal Decimals: a cache keyed by the Decimal once answered the
    # second with the first's exponent ("5.00" for 50 steps of 0.1).
    for first, second in ((Decimal("0.10"), Decimal("0.1")), (Decimal("0.1"), Decimal("0.10"))):
        one, other = from_steps(50, first), from_steps(50, second)
        assert (one.as_tuple().exponent, other.as_tuple().exponent) == (
            first.as_tuple().exponent,
            second.as_tuple().exponent,
        )
    assert str(from_steps(50, Decimal("0.1"))) == "5.0"
    assert str(from_steps(50, Decimal("0.10"))) == "5.00"


@pytest.mark.parametrize("step", [Decimal("-0.01"), Decimal("NaN"), Decimal("Infinity")])
def test_a_step_that_is_not_positive_and_finite_is_refused(step: Decimal) -> None:
    with pytest.raises(ValueError, match="positive finite"):
        from_steps(1, step)
