"""Stop-outs as they begin and end, to every follower (AccountService.WatchStopOuts).

Published only after the stop-out (or its end) is stored. A follower too slow to take what is
published (FOLLOWER_BUFFER events waiting: stop-outs are rare, so this means a stuck reader) is
dropped and told so; it resubscribes and gets the active stop-outs again first.
"""

from __future__ import annotations

import asyncio

from gateway.domain.stop_outs import RecordedStopOut

FOLLOWER_BUFFER = 1_000


class StopOutFollower:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[RecordedStopOut] = asyncio.Queue(FOLLOWER_BUFFER)
        self.dropped = False


class StopOutFeed:
    def __init__(self) -> None:
        self._followers: set[StopOutFollower] = set()

    def follow(self) -> StopOutFollower:
        follower = StopOutFollower()
        self._followers.add(follower)
        return follower

    def leave(self, follower: StopOutFollower) -> None:
        self._followers.discard(follower)

    def publish(self, stop_outs: list[RecordedStopOut]) -> None:
        for follower in list(self._followers):
            for stop_out in stop_outs:
                try:
                    follower.queue.put_nowait(stop_out)
                except asyncio.QueueFull:
                    follower.dropped = True
                    self._followers.discard(follower)
                    break
