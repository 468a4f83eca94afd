"""A deterministic quote feed: a seeded random walk per symbol, one step per tick interval.

The price at tick k depends only on (seed, symbol, k), so a run can be replayed exactly.
Each symbol keeps a bounded history of its recent quotes, so the broker can price a request as
of the time it arrived (`bid_ask_at`) however late it gets round to executing it.
"""

from __future__ import annotations

import random
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

# How many mid changes (ticks and moves) each symbol keeps: 4 minutes of 250 ms ticks.
HISTORY_LENGTH = 1024


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
    settings: QuoteSettings
    rng: random.Random
    tick: int
    mid_points: int
    # (from_ns, mid_points): the mid from that clock time on, oldest first, one entry per tick
    # and per move; the last entry is the current mid. Bounded by the deque's maxlen.
    history: deque[tuple[int, int]]
    # Bid and ask of the current mid, made once however often they are asked for.
    quote: tuple[Decimal, Decimal] | None = field(default=None)


class QuoteFeed:
    def __init__(
        self,
        settings: dict[str, QuoteSettings],
        *,
        seed: int = 1,
        tick_interval_ms: int = 250,
        clock_ns: Callable[[], int] = time.time_ns,
        history_length: int = HISTORY_LENGTH,
    ) -> None:
        """`history_length`: how many mid changes per symbol `bid_ask_at` can look back over."""
        if history_length < 1:
            raise ValueError("history_length must be at least 1")
        self._settings = settings
        self._seed = seed
        self._interval_ns = max(1, tick_interval_ms) * 1_000_000
        self._clock_ns = clock_ns
        self._start_ns = clock_ns()
        self._history_length = history_length
        self._walks: dict[str, _Walk] = {}

    def symbols(self) -> list[str]:
        return sorted(self._settings)

    def has(self, symbol: str) -> bool:
        return symbol in self._settings

    def clock_ns(self) -> int:
        """The feed's clock in nanoseconds since the epoch (UTC)."""
        return self._clock_ns()

    def now(self) -> datetime:
        """The feed's clock: the broker's time (UTC)."""
        return datetime.fromtimestamp(self._clock_ns() / 1e9, UTC)

    def current_tick(self) -> int:
        return (self._clock_ns() - self._start_ns) // self._interval_ns

    def move(self, symbol: str, points: int) -> None:
        """Shifts the symbol's mid by `points` from now on (the walk goes on from there): a
        market move on demand, for tests and demos of pending orders. Quotes before now keep
        their prices in the history."""
        self.bid_ask(symbol)
        walk = self._walks[symbol]
        walk.mid_points += points
        walk.quote = None
        # Never before the last change: the walk may already be ahead of the clock (bid_ask_at).
        walk.history.append((max(self._clock_ns(), walk.history[-1][0]), walk.mid_points))

    def bid_ask(self, symbol: str) -> tuple[Decimal, Decimal, datetime]:
        """The quote of the current tick. Raises KeyError for an unknown symbol."""
        clock_ns = self._clock_ns()
        bid, ask = self.prices_now(symbol, clock_ns)
        return bid, ask, datetime.fromtimestamp(clock_ns / 1e9, UTC)

    def prices_now(self, symbol: str, clock_ns: int) -> tuple[Decimal, Decimal]:
        """Bid and ask of the current tick, the clock read by the caller as `clock_ns` (the
        time a request leaves, in the terminal's send path). Raises KeyError for an unknown
        symbol."""
        walk = self._walks.get(symbol) or self._walk(symbol)
        target = (clock_ns - self._start_ns) // self._interval_ns
        quote = walk.quote
        if quote is None or walk.tick < target:
            quote = self._advance(walk, target)
        return quote

    def bid_ask_at(self, symbol: str, at_ns: int) -> tuple[Decimal, Decimal, datetime]:
        """The quote as it stood at clock time `at_ns` (ns since the epoch), with that time.

        A time beyond the walk advances it there, as the clock reaching it would (bid_ask then
        answers that tick's quote too: the walk only moves forward). A time older than the
        kept history answers the oldest kept quote. Raises KeyError for an unknown symbol.
        """
        walk = self._walks.get(symbol) or self._walk(symbol)
        target = (at_ns - self._start_ns) // self._interval_ns
        quote = walk.quote
        if quote is None or walk.tick < target:
            quote = self._advance(walk, target)
        history = walk.history
        if at_ns < history[-1][0]:
            # The last change at or before at_ns; before every kept one, the oldest.
            index = max(0, bisect_right(history, at_ns, key=_from_ns) - 1)
            quote = _quote(walk.settings, history[index][1])
        bid, ask = quote
        return bid, ask, datetime.fromtimestamp(at_ns / 1e9, UTC)

    def _walk(self, symbol: str) -> _Walk:
        settings = self._settings[symbol]
        point = Decimal(1).scaleb(-settings.digits)
        mid_points = int(settings.initial_mid / point)
        walk = _Walk(
            settings=settings,
            rng=random.Random(f"{self._seed}:{symbol}"),
            tick=0,
            mid_points=mid_points,
            history=deque([(self._start_ns, mid_points)], maxlen=self._history_length),
        )
        self._walks[symbol] = walk
        return walk

    def _advance(self, walk: _Walk, target: int) -> tuple[Decimal, Decimal]:
        """Walks to tick `target` (if ahead), recording each tick; makes the current quote."""
        step = walk.settings.step_points
        while walk.tick < target:
            walk.mid_points += walk.rng.randint(-step, step)
            walk.tick += 1
            walk.history.append((self._start_ns + walk.tick * self._interval_ns, walk.mid_points))
        quote = walk.quote = _quote(walk.settings, walk.mid_points)
        return quote


def _quote(settings: QuoteSettings, mid_points: int) -> tuple[Decimal, Decimal]:
    bid_points = mid_points - settings.spread_points // 2
    return (
        Decimal(bid_points).scaleb(-settings.digits),
        Decimal(bid_points + settings.spread_points).scaleb(-settings.digits),
    )


def _from_ns(entry: tuple[int, int]) -> int:
    return entry[0]
