"""RetryPolicy: validated where it is built; waits grow by the coefficient up to the ceiling,
spread by the jitter; attempts bounded when asked."""

from __future__ import annotations

import re

import pytest

from gateway.domain.retry_policy import RetryPolicy


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"initial_interval_s": 0}, "initial_interval_s must be > 0"),
        ({"backoff_coefficient": 0.5}, "backoff_coefficient must be >= 1"),
        ({"initial_interval_s": 2, "maximum_interval_s": 1}, "maximum_interval_s (1)"),
        ({"maximum_attempts": -1}, "maximum_attempts must be >= 0"),
        ({"jitter": 1.0}, "jitter must be in [0, 1)"),
    ],
)
def test_a_policy_that_makes_no_sense_is_refused_naming_the_field(
    fields: dict[str, float], complaint: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        RetryPolicy(**fields)  # type: ignore[arg-type]


def test_waits_double_up_to_the_ceiling_without_jitter() -> None:
    policy = RetryPolicy(initial_interval_s=0.1, maximum_interval_s=1.0, jitter=0)
    assert [round(policy.delay_s(n), 6) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_jitter_spreads_each_wait_both_ways() -> None:
    policy = RetryPolicy(initial_interval_s=1.0, maximum_interval_s=1.0, jitter=0.2)
    assert policy.delay_s(1, uniform=lambda: 0.0) == pytest.approx(0.8)
    assert policy.delay_s(1, uniform=lambda: 0.5) == pytest.approx(1.0)
    assert policy.delay_s(1, uniform=lambda: 0.999999) == pytest.approx(1.2, abs=1e-5)


def test_an_endless_retry_never_overflows() -> None:
    assert RetryPolicy(jitter=0).delay_s(100_000) == 2.0


def test_attempts_are_bounded_only_when_asked() -> None:
    assert RetryPolicy().allows(1_000_000)
    bounded = RetryPolicy(maximum_attempts=3)
    assert [bounded.allows(n) for n in (1, 2, 3)] == [True, True, False]
