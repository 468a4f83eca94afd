"""Committed fills to live subscribers, through bounded per-subscriber buffers.

Publishing never waits: a subscription that falls more than `max_pending` fills behind is
marked overflowed and dropped from its buffer (its reader then catches up from the store, where
every published fill already is) rather than slow the engine or grow memory without bound.

Fills travel with the message they were stored with (CommittedFill.wire): every subscriber sends
those same bytes, so a fill is encoded once however many subscribers it reaches. Filters match
on the fill itself; a subscription filtered to fewer accounts than a publish has fills takes
them from the publish's fills grouped by account (made once, for all such subscriptions)
instead of testing every fill: with 100 subscribers of 10 accounts each, a tenth of the cost.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence

from gateway.store import CommittedFill, FillFilter


class Subscription:
    def __init__(self, fill_filter: FillFilter, max_pending: int) -> None:
        self.filter = fill_filter
        self.max_pending = max_pending
        self.overflowed = False
        # Set by `narrow`: what the reader read from the store under the wider filter is not
        # to be sent.
        self.narrowed = False
        self.on_overflow: Callable[[], None] = lambda: None
        self._pending: deque[CommittedFill] = deque()
        self._ready = asyncio.Event()
        # When each publish's fills were offered (its last sequence, time.monotonic()): one
        # entry a commit, never one a fill, for the lag of what next_batch takes.
        self._published: deque[tuple[int, float]] = deque()
        # The offer time of the oldest fill of the batch next_batch took last (0: none).
        self.oldest_published_at = 0.0

    def offer(
        self,
        fills: Sequence[CommittedFill],
        by_account: _ByAccount | None = None,
        published_at: float = 0.0,
    ) -> None:
        """Takes the fills the filter matches, in order. `by_account`: the same fills grouped
        by account, for a filter of fewer accounts than there are fills; `published_at`:
        time.monotonic() of their publish."""
        if self.overflowed:
            return
        fill_filter = self.filter
        wanted: Sequence[CommittedFill]
        if by_account is not None and 0 < len(fill_filter.account_ids) < len(fills):
            wanted = by_account.of(fill_filter.account_ids)
            if fill_filter.master_order_id:
                master_order_id = fill_filter.master_order_id
                wanted = [f for f in wanted if f.fill.master_order_id == master_order_id]
        else:
            matches = fill_filter.matches
            wanted = [f for f in fills if matches(f.fill)]
        if not wanted:
            return
        if len(self._pending) + len(wanted) > self.max_pending:
            self.overflowed = True
            self._pending.clear()
            self._published.clear()
            self.on_overflow()
        else:
            self._pending.extend(wanted)
            self._published.append((wanted[-1].fill.sequence, published_at))
        self._ready.set()

    def narrow(self, fill_filter: FillFilter) -> None:
        """Replaces the filter with a narrower one (the reader may see fewer accounts than
        when it subscribed): the fills buffered that it no longer matches are dropped now, so
        that none of them is sent. Once per change of reach, never per fill."""
        self.filter = fill_filter
        self.narrowed = True
        if self._pending:
            matches = fill_filter.matches
            self._pending = deque(f for f in self._pending if matches(f.fill))

    def wake(self) -> None:
        self._ready.set()

    async def next_batch(self, max_fills: int, wait_s: float | None = None) -> list[CommittedFill]:
        """Waits for fills (or overflow, or the timeout) and takes up to max_fills of them."""
        if not self._pending and not self.overflowed:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), wait_s)
            except TimeoutError:
                return []
        batch: list[CommittedFill] = []
        while self._pending and len(batch) < max_fills:
            batch.append(self._pending.popleft())
        published = self._published
        if batch and published:
            # The entry of the batch's first fill, then those the batch took whole go.
            first, last = batch[0].fill.sequence, batch[-1].fill.sequence
            while len(published) > 1 and published[0][0] < first:
                published.popleft()
            self.oldest_published_at = published[0][1]
            while published and published[0][0] <= last:
                published.popleft()
        return batch

    @property
    def buffered(self) -> int:
        """Fills waiting to be taken."""
        return len(self._pending)


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

    def publish(self, fills: list[CommittedFill]) -> None:
        """Called only with committed fills, in sequence order."""
        if fills:
            by_account = _ByAccount(fills)
            now = time.monotonic()
            for subscription in list(self._subscriptions):
                subscription.offer(fills, by_account, now)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def buffer_depths(self) -> list[int]:
        """Each subscription's buffered fills (for metrics)."""
        return [s.buffered for s in self._subscriptions]


class _ByAccount:
    """One publish's fills grouped by account, grouped when a subscription first asks."""

    def __init__(self, fills: Sequence[CommittedFill]) -> None:
        self._fills = fills
        self._groups: dict[str, list[CommittedFill]] | None = None

    def of(self, account_ids: Collection[str]) -> Sequence[CommittedFill]:
        """The fills of these accounts, in sequence order (a list shared with other callers:
        not to be changed)."""
        groups = self._groups
        if groups is None:
            groups = {}
            for committed in self._fills:
                account_id = committed.fill.account_id
                group = groups.get(account_id)
                if group is None:
                    groups[account_id] = [committed]
                else:
                    group.append(committed)
            self._groups = groups
        found = [group for a in account_ids if (group := groups.get(a)) is not None]
        if len(found) <= 1:
            return found[0] if found else ()
        return sorted(itertools.chain.from_iterable(found), key=_sequence)


def _sequence(committed: CommittedFill) -> int:
    return committed.fill.sequence
