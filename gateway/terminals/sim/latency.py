"""How long a simulated terminal takes to answer a trade request.

Real MT5 round trips are skewed (median tens of ms, a long tail), so besides a fixed delay the
simulator draws from a normal or a lognormal distribution. Draws are seeded per terminal, so a
run replays exactly; a draw is never negative.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass


class LatencyDistribution(enum.Enum):
    FIXED = "fixed"
    NORMAL = "normal"
    LOGNORMAL = "lognormal"


@dataclass(frozen=True, slots=True)
class LatencySettings:
    distribution: LatencyDistribution = LatencyDistribution.FIXED
    # The fixed delay; the mean of the normal; the median of the lognormal.
    ms: float = 0.0
    # NORMAL: the standard deviation in ms.
    sd_ms: float = 0.0
    # LOGNORMAL: the standard deviation of the log of the delay (0.5 gives p99 ~ 3.2 x median).
    sigma: float = 0.0

    def __post_init__(self) -> None:
        if self.ms < 0 or self.sd_ms < 0 or self.sigma < 0:
            raise ValueError("latency ms, sd_ms and sigma must not be negative")


class LatencyModel:
    def __init__(self, settings: LatencySettings, *, seed: str) -> None:
        self.settings = settings
        self._rng = random.Random(seed)

    def sample_ms(self) -> float:
        """The next delay in milliseconds (>= 0)."""
        s = self.settings
        if s.distribution is LatencyDistribution.NORMAL:
            return max(0.0, self._rng.gauss(s.ms, s.sd_ms))
        if s.distribution is LatencyDistribution.LOGNORMAL:
            if s.ms == 0:
                return 0.0
            return self._rng.lognormvariate(math.log(s.ms), s.sigma)
        return s.ms
