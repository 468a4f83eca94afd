"""Cluster mode: every node's committed fills to this node's live subscribers, in sequence
order (docs/cluster.md).

A node does not publish its own commits to its FillBus: it would publish them out of the
global order, between other nodes' commits it has not seen yet. Instead every commit of fills
NOTIFYs their last sequence (delivered at the commit), and this feed, woken by it (or every
`poll_s`, should a notification be lost with a connection), reads the fills after the last one
it published from the store and publishes them, each with its stored message. Sequences are
handed out in commit order (gateway/store/cluster.py), so what the feed reads after sequence
N is never followed by a commit below it: nothing is skipped, nothing published twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.engine.fill_bus import FillBus
from gateway.engine.notices import listen_and_work
from gateway.store import Store
from gateway.store.cluster import FILLS_CHANNEL

log = logging.getLogger(__name__)

_PAGE = 2_000


class ClusterFillFeed:
    def __init__(self, store: Store, bus: FillBus, url: str, *, poll_s: float = 1.0) -> None:
        self._store = store
        self._bus = bus
        self._url = url
        self._poll_s = poll_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last = 0

    @property
    def last_published(self) -> int:
        return self._last

    async def start(self) -> None:
        """From the newest stored fill on: what was stored before is the replay's."""
        self._last = await self._store.last_fill_sequence()
        self._store.saw_fills_up_to(self._last)
        self._task = asyncio.create_task(self._run(), name="cluster-fill-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        await listen_and_work(
            self._url,
            [FILLS_CHANNEL],
            heard=lambda channel, payload: self._wake.set(),
            wake=self._wake,
            work=self._publish_new,
            poll_s=self._poll_s,
            name="cluster fill feed",
        )

    async def _publish_new(self) -> None:
        while True:
            fills = await self._store.committed_fills_after(self._last, limit=_PAGE)
            if not fills:
                return
            self._bus.publish(fills)
            self._last = fills[-1].fill.sequence
            self._store.saw_fills_up_to(self._last)
            if len(fills) < _PAGE:
                return
