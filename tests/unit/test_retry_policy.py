"""RetryPolicy: validated where it is built; waits grow by the coefficient up to the ceiling,
spread by the jitter; attempts bounded when asked. OrderRetryPolicy, a child order's at its
broker: the same, always bounded, with the price band a retry keeps to."""

from __future__ import annotations

import re

import pytest

from gateway.domain.retry_policy import OrderRetryPolicy, RetryPolicy


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


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"maximum_attempts": 0}, "maximum_attempts must be >= 1"),
        ({"default_deviation_points": 0}, "default_deviation_points must be >= 1"),
        ({"jitter": -0.1}, "jitter must be in [0, 1)"),
    ],
)
def test_an_order_retry_policy_that_makes_no_sense_is_refused_naming_the_field(
    fields: dict[str, float], complaint: str
) -> None:
    with pytest.raises(ValueError, match=r"invalid OrderRetryPolicy: .*" + re.escape(complaint)):
        OrderRetryPolicy(**fields)  # type: ignore[arg-type]


def test_an_order_is_retried_first_after_50_ms_then_twice_as_long_up_to_a_second() -> None:
    policy = OrderRetryPolicy()
    middle = 0.5  # the jitter's draw that spreads nothing
    waits = [round(policy.delay_s(n, uniform=lambda: middle), 6) for n in range(1, 8)]
    assert waits == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert policy.maximum_attempts == 4
    # Each wait spread by a fifth either way.
    assert policy.delay_s(1, uniform=lambda: 0.0) == pytest.approx(0.04)


def test_the_master_orders_own_deviation_overrides_the_default_band() -> None:
    policy = OrderRetryPolicy(default_deviation_points=20)
    assert policy.deviation_points(0) == 20  # the master order sets none
    assert policy.deviation_points(5) == 5
