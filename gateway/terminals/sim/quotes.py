"""A deterministic quote feed: a seeded random walk per symbol, one step per tick interval.

The price at tick k depends only on (seed, symbol, k), so a run can be replayed exactly.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class QuoteSettings:
    # Mid price at tick 0.
    initial_mid: Decimal
    # Spread in points (ask - bid).
    spread_points: int
    # The largest move of the mid between two ticks, in points.
    step_points: int
    digits: int


@dataclass(slots=True)
class _Walk:
    rng: random.Random
    tick: int
    mid_points: int
    # Bid and ask of `tick`, made once per tick however often they are asked for.
    quote: tuple[Decimal, Decimal] | None = None


class QuoteFeed:
    def __init__(
        self,
        settings: dict[str, QuoteSettings],
        *,
        seed: int = 1,
        tick_interval_ms: int = 250,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._settings = settings
        self._seed = seed
        self._interval_ns = max(1, tick_interval_ms) * 1_000_000
        self._clock_ns = clock_ns
        self._start_ns = clock_ns()
        self._walks: dict[str, _Walk] = {}

    def symbols(self) -> list[str]:
        return sorted(self._settings)

    def has(self, symbol: str) -> bool:
        return symbol in self._settings

    def now(self) -> datetime:
        """The feed's clock: the broker's time (UTC)."""
        return datetime.fromtimestamp(self._clock_ns() / 1e9, UTC)

    def current_tick(self) -> int:
        return (self._clock_ns() - self._start_ns) // self._interval_ns

    def move(self, symbol: str, points: int) -> None:
        """Shifts the symbol's mid by `points` from now on (the walk goes on from there): a
        market move on demand, for tests and demos of pending orders."""
        self.bid_ask(symbol)
        walk = self._walks[symbol]
        walk.mid_points += points
        walk.quote = None

    def bid_ask(self, symbol: str) -> tuple[Decimal, Decimal, datetime]:
        """The quote of the current tick. Raises KeyError for an unknown symbol."""
        settings = self._settings[symbol]
        walk = self._walks.get(symbol)
        if walk is None:
            point = Decimal(1).scaleb(-settings.digits)
            walk = _Walk(
                rng=random.Random(f"{self._seed}:{symbol}"),
                tick=0,
                mid_points=int(settings.initial_mid / point),
            )
            self._walks[symbol] = walk
        clock_ns = self._clock_ns()
        target = (clock_ns - self._start_ns) // self._interval_ns
        if walk.quote is None or walk.tick < target:
            while walk.tick < target:
                walk.mid_points += walk.rng.randint(-settings.step_points, settings.step_points)
                walk.tick += 1
            bid_points = walk.mid_points - settings.spread_points // 2
            walk.quote = (
                Decimal(bid_points).scaleb(-settings.digits),
                Decimal(bid_points + settings.spread_points).scaleb(-settings.digits),
            )
        bid, ask = walk.quote
        return bid, ask, datetime.fromtimestamp(clock_ns / 1e9, UTC)
