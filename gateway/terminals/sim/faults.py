"""Faults a simulated terminal injects into trade requests, to exercise every retcode path.

Each request draws at most one fault, with the configured probabilities, from a generator
seeded per terminal: the same seed gives the same faults on the same request sequence. Tests
can also force the next faults explicitly (`fail_next`).
"""

from __future__ import annotations

import enum
import random
from collections import deque
from dataclasses import dataclass, fields
from decimal import ROUND_FLOOR, Decimal

from gateway.domain.symbols import SymbolSpec


class Fault(enum.Enum):
    # Refused with TRADE_RETCODE_REQUOTE and the current bid/ask.
    REQUOTE = "REQUOTE"
    # Refused with TRADE_RETCODE_PRICE_OFF (no quotes).
    PRICE_OFF = "PRICE_OFF"
    # Refused with TRADE_RETCODE_TOO_MANY_REQUESTS.
    TOO_MANY_REQUESTS = "TOO_MANY_REQUESTS"
    # The market has only part of the volume; the filling policy decides what happens.
    PARTIAL_FILL = "PARTIAL_FILL"
    # The connection drops before the request reaches the broker: nothing executed.
    DISCONNECT_BEFORE = "DISCONNECT_BEFORE"
    # The broker executes, then the connection drops before the answer: the ambiguous case.
    DISCONNECT_AFTER = "DISCONNECT_AFTER"
    # No answer for far longer than any timeout; the request never executed.
    HANG_BEFORE = "HANG_BEFORE"
    # The broker executes, then the answer takes far longer than any timeout.
    HANG_AFTER = "HANG_AFTER"


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """The probability of each fault per trade request (their sum at most 1)."""

    requote: float = 0.0
    price_off: float = 0.0
    too_many_requests: float = 0.0
    partial_fill: float = 0.0
    disconnect_before: float = 0.0
    disconnect_after: float = 0.0
    hang: float = 0.0
    # Whether a hanging request executed before it hung (HANG_AFTER) or not (HANG_BEFORE).
    hang_executes: bool = False
    hang_seconds: float = 3600.0

    def __post_init__(self) -> None:
        probabilities = [getattr(self, name) for name in PROBABILITY_FIELDS]
        if any(not 0 <= p <= 1 for p in probabilities):
            raise ValueError("fault probabilities must lie between 0 and 1")
        if sum(probabilities) > 1:
            raise ValueError("fault probabilities must add up to at most 1")
        if self.hang_seconds <= 0:
            raise ValueError("hang_seconds must be greater than 0")

    def chances(self) -> list[tuple[Fault, float]]:
        hang = Fault.HANG_AFTER if self.hang_executes else Fault.HANG_BEFORE
        return [
            (Fault.REQUOTE, self.requote),
            (Fault.PRICE_OFF, self.price_off),
            (Fault.TOO_MANY_REQUESTS, self.too_many_requests),
            (Fault.PARTIAL_FILL, self.partial_fill),
            (Fault.DISCONNECT_BEFORE, self.disconnect_before),
            (Fault.DISCONNECT_AFTER, self.disconnect_after),
            (hang, self.hang),
        ]


PROBABILITY_FIELDS = tuple(
    f.name for f in fields(FaultSettings) if f.name not in {"hang_executes", "hang_seconds"}
)


class FaultInjector:
    def __init__(self, settings: FaultSettings, *, seed: str) -> None:
        self._settings = settings
        self._chances = settings.chances()
        self._rng = random.Random(seed)
        self._forced: deque[Fault | None] = deque()

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    @settings.setter
    def settings(self, settings: FaultSettings) -> None:
        self._settings = settings
        self._chances = settings.chances()

    def fail_next(self, *faults: Fault | None) -> None:
        """The next requests get these faults, in order (None: no fault), before any draw."""
        self._forced.extend(faults)

    def draw(self) -> Fault | None:
        """The fault for the next request, or None. Every request consumes one draw (a partial
        fill one more), so the faults depend only on the seed and the requests sent."""
        if self._forced:
            return self._forced.popleft()
        point = self._rng.random()
        for fault, chance in self._chances:
            if point < chance:
                return fault
            point -= chance
        return None

    def partial_volume(self, spec: SymbolSpec, volume: Decimal) -> Decimal:
        """The part of `volume` the market has: 10-90 % rounded down to the volume step, at
        least the minimum volume. Equals `volume` when it cannot be split."""
        fraction = Decimal(self._rng.randint(10, 90)) / 100
        steps = (volume * fraction / spec.volume_step).to_integral_value(ROUND_FLOOR)
        return min(volume, max(spec.volume_min, steps * spec.volume_step))
