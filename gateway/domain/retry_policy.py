"""How often and how soon something that failed for a passing reason is tried again.

Modelled on temporalio's RetryPolicy: the first wait, a coefficient each later wait is
multiplied by, a ceiling on any one wait, and a bound on attempts. Every wait is spread by a
random jitter so that many waiters released by one fault (a database back after a restart,
say) do not all come back in the same instant.

`OrderRetryPolicy` is the same for a child order at its broker, with the limit a priced retry
keeps to: how far the market may have moved from the first price sent.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    initial_interval_s: float = 0.05
    backoff_coefficient: float = 2.0
    maximum_interval_s: float = 2.0
    # Attempts in all, the first included; 0 tries until the caller gives up.
    maximum_attempts: int = 0
    # Each wait is drawn from [wait * (1 - jitter), wait * (1 + jitter)].
    jitter: float = 0.2

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise ValueError(f"invalid {type(self).__name__}: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        problems = []
        if not self.initial_interval_s > 0:
            problems.append(f"initial_interval_s must be > 0, not {self.initial_interval_s}")
        if not self.backoff_coefficient >= 1:
            problems.append(f"backoff_coefficient must be >= 1, not {self.backoff_coefficient}")
        if not self.maximum_interval_s >= self.initial_interval_s:
            problems.append(
                f"maximum_interval_s ({self.maximum_interval_s}) must be >= "
                f"initial_interval_s ({self.initial_interval_s})"
            )
        if self.maximum_attempts < 0:
            problems.append(f"maximum_attempts must be >= 0, not {self.maximum_attempts}")
        if not 0 <= self.jitter < 1:
            problems.append(f"jitter must be in [0, 1), not {self.jitter}")
        return problems

    def allows(self, attempts: int) -> bool:
        """Whether another attempt may follow `attempts` made so far."""
        return self.maximum_attempts == 0 or attempts < self.maximum_attempts

    def delay_s(self, attempts: int, uniform: Callable[[], float] = random.random) -> float:
        """The wait before the next attempt, after `attempts` (>= 1) have failed.
        `uniform`: a draw from [0, 1) (injectable so tests can pin the jitter)."""
        # The exponent is bounded: an endless retry must not overflow a float.
        growth = self.backoff_coefficient ** min(max(attempts - 1, 0), 64)
        base = min(self.maximum_interval_s, self.initial_interval_s * growth)
        return base * (1 - self.jitter + 2 * self.jitter * uniform())


@dataclass(frozen=True, slots=True)
class OrderRetryPolicy(RetryPolicy):
    """A child order at its broker, tried again after a passing refusal (a requote, a busy
    server) or once an unknown outcome is found provably absent. The waits start at 50 ms and
    double, at most a second each; the attempts are always bounded (every child ends).

    A retry at market chases the market only so far: within `default_deviation_points` (in the
    symbol's points) either side of the first price sent, unless the master order sets its own
    maximum deviation. Beyond that band the manager's price is gone and the child ends."""

    maximum_interval_s: float = 1.0
    maximum_attempts: int = 4
    default_deviation_points: int = 20

    def _problems(self) -> list[str]:
        problems = RetryPolicy._problems(self)
        if self.maximum_attempts == 0:
            problems.append("maximum_attempts must be >= 1: a child order's attempts end")
        if self.default_deviation_points < 1:
            problems.append(
                f"default_deviation_points must be >= 1, not {self.default_deviation_points}"
            )
        return problems

    def deviation_points(self, of_order: int) -> int:
        """The price band's half-width in points: the master order's own maximum deviation
        (`of_order`; 0 when it sets none), else the default."""
        return of_order or self.default_deviation_points
