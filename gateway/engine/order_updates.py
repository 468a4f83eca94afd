"""Committed order changes to the callers that follow them, through bounded buffers.

The engine publishes each committed batch of master and child order changes. A follower (one
StreamMasterOrders call) gets its acknowledgements and the updates of the master orders it
follows in commit order. Publishing never waits: when a follower has more than `max_pending`
child changes waiting, its buffered updates are dropped and their master orders marked stale;
its reader then sends each stale order's current state from the store instead. A reader too slow
for every intermediate state thus still gets every latest one, in bounded memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.domain.ids import MasterOrderId
from gateway.domain.orders import ChildOrder, MasterOrder


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    master_order_id: MasterOrderId
    # Set when the master order itself changed.
    master: MasterOrder | None
    # The child orders that changed, in their new state.
    children: tuple[ChildOrder, ...]


class Follower:
    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
        self.following: set[MasterOrderId] = set()
        # Master orders whose buffered updates were dropped: to be re-read from the store.
        self.stale: set[MasterOrderId] = set()
        self._items: deque[object] = deque()
        self._pending_children = 0
        self._ready = asyncio.Event()
        # How often this follower's buffer overflowed (for metrics and tests).
        self.overflows = 0

    def follow(self, master_order_id: MasterOrderId) -> None:
        self.following.add(master_order_id)

    def unfollow(self, master_order_id: MasterOrderId) -> None:
        self.following.discard(master_order_id)
        self.stale.discard(master_order_id)

    def mark_stale(self, master_order_id: MasterOrderId) -> None:
        self.stale.add(master_order_id)
        self._ready.set()

    def put(self, item: object) -> None:
        """Anything but an update (an acknowledgement), kept in order with the updates; its
        producer bounds how many are outstanding."""
        self._items.append(item)
        self._ready.set()

    @property
    def has_items(self) -> bool:
        return bool(self._items)

    def wake(self) -> None:
        self._ready.set()

    def offer(self, updates: Sequence[OrderUpdate]) -> None:
        wanted = [u for u in updates if u.master_order_id in self.following]
        if not wanted:
            return
        size = sum(len(u.children) or 1 for u in wanted)
        if self._pending_children + size > self.max_pending:
            kept: deque[object] = deque()
            for item in self._items:
                if isinstance(item, OrderUpdate):
                    self.stale.add(item.master_order_id)
                else:
                    kept.append(item)
            self._items = kept
            self._pending_children = 0
            self.stale.update(u.master_order_id for u in wanted)
            self.overflows += 1
        else:
            self._items.extend(wanted)
            self._pending_children += size
        self._ready.set()

    async def next_items(self, wait_s: float | None = None) -> list[object]:
        """Waits for items, stale orders or a wake-up (or the timeout); takes every item."""
        if not self._items and not self.stale:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), wait_s)
            except TimeoutError:
                return []
        items = list(self._items)
        self._items.clear()
        self._pending_children = 0
        return items


class OrderUpdateBus:
    # Child changes buffered per follower: a few large master orders.
    DEFAULT_MAX_PENDING = 20_000

    def __init__(self, *, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self.max_pending = max_pending
        # Overflows of closed followers, since start.
        self.overflows = 0
        # Set when the gateway stops: followers end their streams instead of waiting.
        self.stopping = False
        self._followers: set[Follower] = set()

    def stop(self) -> None:
        self.stopping = True
        for follower in self._followers:
            follower.wake()

    def open(self) -> Follower:
        follower = Follower(self.max_pending)
        self._followers.add(follower)
        return follower

    def close(self, follower: Follower) -> None:
        self.overflows += follower.overflows
        self._followers.discard(follower)

    def publish(self, masters: Sequence[MasterOrder], children: Sequence[ChildOrder]) -> None:
        """Called only with committed changes, in commit order."""
        if not self._followers or not (masters or children):
            return
        by_master: dict[MasterOrderId, list[ChildOrder]] = {}
        for child in children:
            by_master.setdefault(child.master_order_id, []).append(child)
        changed = {m.master_order_id: m for m in masters}
        updates = [
            OrderUpdate(master_id, changed.get(master_id), tuple(by_master.get(master_id, ())))
            for master_id in dict.fromkeys([*changed, *by_master])
        ]
        for follower in list(self._followers):
            follower.offer(updates)

    @property
    def follower_count(self) -> int:
        return len(self._followers)
