"""A stop that takes too long logs where each task waits."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.slow_stop import describe_tasks, report_if_slow


async def _waits_forever(event: asyncio.Event) -> None:
    await event.wait()


async def test_each_task_is_described_with_its_await() -> None:
    event = asyncio.Event()
    task = asyncio.create_task(_waits_forever(event), name="stuck-on-event")
    await asyncio.sleep(0)
    try:
        text = describe_tasks()
        assert "stuck-on-event" in text and "_waits_forever" in text
    finally:
        event.set()
        await task


async def test_the_report_comes_only_once_the_time_has_passed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway"):
        early = asyncio.create_task(report_if_slow(10))
        await asyncio.sleep(0.01)
        early.cancel()
        await report_if_slow(0.01)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and messages[0].startswith("still stopping after 0 s")


async def test_tasks_waiting_at_one_place_are_told_once() -> None:
    event = asyncio.Event()
    tasks = [asyncio.create_task(_waits_forever(event), name=f"child-{i}") for i in range(30)]
    await asyncio.sleep(0)
    try:
        text = describe_tasks()
        assert "30 task(s) (child-0, child-1, child-10, child-11, child-12, ...)" in text
        assert text.count("_waits_forever") == 1
    finally:
        event.set()
        await asyncio.gather(*tasks)
