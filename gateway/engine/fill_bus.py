"""Committed fills to live subscribers, through bounded per-subscriber buffers.

Publishing never waits: a subscription that falls more than `max_pending` fills behind is
marked overflowed and dropped from its buffer (its reader then catches up from the store, where
every published fill already is) rather than slow the engine or grow memory without bound.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from gateway.domain.fills import Fill
from gateway.store import FillFilter


class Subscription:
    def __init__(self, fill_filter: FillFilter, max_pending: int) -> None:
        self.filter = fill_filter
        self.max_pending = max_pending
        self.overflowed = False
        self.on_overflow: Callable[[], None] = lambda: None
        self._pending: deque[Fill] = deque()
        self._ready = asyncio.Event()

    def offer(self, fills: list[Fill]) -> None:
        if self.overflowed:
            return
        wanted = [f for f in fills if self.filter.matches(f)]
        if not wanted:
            return
        if len(self._pending) + len(wanted) > self.max_pending:
            self.overflowed = True
            self._pending.clear()
            self.on_overflow()
        else:
            self._pending.extend(wanted)
        self._ready.set()

    def wake(self) -> None:
        self._ready.set()

    async def next_batch(self, max_fills: int, wait_s: float | None = None) -> list[Fill]:
        """Waits for fills (or overflow, or the timeout) and takes up to max_fills of them."""
        if not self._pending and not self.overflowed:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), wait_s)
            except TimeoutError:
                return []
        batch: list[Fill] = []
        while self._pending and len(batch) < max_fills:
            batch.append(self._pending.popleft())
        return batch


class FillBus:
    # Fills buffered per subscriber: a few large master orders. Past it the reader catches up
    # from the store, so the bound costs a slow reader some store reads, never a fill.
    DEFAULT_MAX_PENDING = 20_000

    def __init__(self, *, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self.max_pending = max_pending
        # How many subscriptions overflowed since start (for metrics and tests).
        self.overflows = 0
        # Set when the gateway stops: readers end their streams instead of waiting.
        self.stopping = False
        self._subscriptions: set[Subscription] = set()

    def stop(self) -> None:
        self.stopping = True
        for subscription in self._subscriptions:
            subscription.wake()

    def subscribe(self, fill_filter: FillFilter) -> Subscription:
        subscription = Subscription(fill_filter, self.max_pending)
        subscription.on_overflow = self._count_overflow
        self._subscriptions.add(subscription)
        return subscription

    def _count_overflow(self) -> None:
        self.overflows += 1

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def publish(self, fills: list[Fill]) -> None:
        """Called only with committed fills, in sequence order."""
        if fills:
            for subscription in list(self._subscriptions):
                subscription.offer(fills)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)
