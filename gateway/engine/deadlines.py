"""Timeouts for thousands of concurrent awaits, at the cost of a dict entry each.

`asyncio.timeout` arms and disarms a loop timer per block: a fan-out of 1,000 children with a
quote, a send and an account read each pays for 3,000 of them, ~6 % of the gateway's CPU per
order. Here every block guarded by one `Deadlines` shares its timeout, so blocks entered later
expire later: they are kept in entry order and one watcher task, awake only while some block is
guarded, wakes every `resolution_s`, cancels the tasks whose deadline passed (scanning stops at
the first that has not) and goes back to sleep. A block runs over by at most `resolution_s`.

An expired block raises TimeoutError, exactly as under `asyncio.timeout`: the watcher cancels
the task and the guard turns that cancellation back into a TimeoutError on the way out; a
cancellation from anyone else stays a cancellation.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class Deadlines:
    def __init__(self, seconds: float, *, resolution_s: float = 0.02) -> None:
        if seconds <= 0 or resolution_s <= 0:
            raise ValueError("a timeout and its resolution must be positive")
        self.seconds = seconds
        # A short timeout is not stretched by more than a tenth.
        self._resolution_s = min(resolution_s, seconds / 10)
        # Guards in entry order, hence in deadline order (one timeout for all).
        self._guards: dict[_Guard, float] = {}
        self._watcher: asyncio.Task[None] | None = None

    def guard(self) -> _Guard:
        """`with deadlines.guard():` (in a task) the block raises TimeoutError once it has run
        for `seconds` (give or take the resolution). A plain context manager: entering and
        leaving it makes no coroutine."""
        return _Guard(self)

    def _enter(self, guard: _Guard) -> None:
        loop = asyncio.get_running_loop()
        self._guards[guard] = loop.time() + self.seconds
        watcher = self._watcher
        # A watcher left behind by a loop that was closed under it watches nothing.
        if watcher is None or watcher.get_loop() is not loop:
            self._watcher = loop.create_task(self._watch(), name="deadlines")

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._guards:
                await asyncio.sleep(self._resolution_s)
                now = loop.time()
                expired = []
                for guard, deadline in self._guards.items():
                    if deadline > now:
                        break
                    expired.append(guard)
                for guard in expired:
                    del self._guards[guard]
                    guard.expire()
        finally:
            if self._watcher is asyncio.current_task():
                self._watcher = None


class _Guard:
    __slots__ = ("_cancelling", "_deadlines", "_expired", "_task")

    def __init__(self, deadlines: Deadlines) -> None:
        self._deadlines = deadlines
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._expired = False

    def __enter__(self) -> _Guard:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadlines guard a task's awaits; there is no current task")
        self._task = task
        self._cancelling = task.cancelling()
        self._deadlines._enter(self)
        return self

    def expire(self) -> None:
        # The guarded task is suspended inside the block (the watcher runs only then), so
        # the cancellation is raised there.
        assert self._task is not None
        self._expired = True
        self._task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._deadlines._guards.pop(self, None)
        if not self._expired:
            return
        assert self._task is not None
        if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc
