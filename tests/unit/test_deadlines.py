"""Deadlines: shared-watcher timeouts behave as asyncio.timeout does."""

from __future__ import annotations

import asyncio

import pytest

from gateway.engine.deadlines import Deadlines


async def test_a_block_that_ends_in_time_is_untouched_and_the_watcher_stops() -> None:
    deadlines = Deadlines(0.2)
    with deadlines.guard():
        await asyncio.sleep(0.01)
    assert not deadlines._guards
    await asyncio.sleep(0.1)  # the watcher's next round finds nothing guarded
    assert deadlines._watcher is None


async def test_a_block_running_over_raises_timeout_error() -> None:
    deadlines = Deadlines(0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError), deadlines.guard():
        await asyncio.sleep(10)
    # Raised after the timeout, not long after it (the resolution is a tenth of it).
    assert 0.05 <= loop.time() - started < 5
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # nothing left to cancel the task


async def test_only_the_expired_blocks_of_many_time_out() -> None:
    deadlines = Deadlines(0.1)

    async def quick() -> str:
        with deadlines.guard():
            await asyncio.sleep(0.01)
        return "done"

    async def hung() -> str:
        try:
            with deadlines.guard():
                await asyncio.sleep(10)
        except TimeoutError:
            return "timed out"
        return "done"

    results = await asyncio.gather(*(quick() if i % 2 else hung() for i in range(200)))
    assert results == ["timed out" if i % 2 == 0 else "done" for i in range(200)]
    assert not deadlines._guards


async def test_a_later_block_expires_later() -> None:
    deadlines = Deadlines(0.1)
    order: list[str] = []

    async def guarded(name: str) -> None:
        try:
            with deadlines.guard():
                await asyncio.sleep(10)
        except TimeoutError:
            order.append(name)

    first = asyncio.create_task(guarded("first"))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(guarded("second"))
    await asyncio.gather(second, first)
    assert order == ["first", "second"]


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    deadlines = Deadlines(5)
    entered = asyncio.Event()

    async def guarded() -> None:
        with deadlines.guard():
            entered.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(guarded())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not deadlines._guards


async def test_an_error_inside_the_block_passes_through() -> None:
    deadlines = Deadlines(5)
    with pytest.raises(KeyError), deadlines.guard():
        raise KeyError("x")
    assert not deadlines._guards


def test_a_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Deadlines(0)


def test_deadlines_serve_one_event_loop_after_another() -> None:
    deadlines = Deadlines(0.05)

    async def leave_while_watched() -> None:
        with deadlines.guard():
            await asyncio.sleep(0)  # the watcher starts; this loop ends before it wakes

    async def times_out() -> bool:
        try:
            with deadlines.guard():
                await asyncio.sleep(10)
        except TimeoutError:
            return True
        return False

    asyncio.run(leave_while_watched())
    assert asyncio.run(times_out())
