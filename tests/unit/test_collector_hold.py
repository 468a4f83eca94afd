"""The collector stays off for the callbacks ready at a burst's start, and only for them."""

from __future__ import annotations

import asyncio
import gc

from gateway.engine.collector_hold import none_until_ready_callbacks_ran


async def test_no_collection_until_the_ready_callbacks_ran() -> None:
    loop = asyncio.get_running_loop()
    seen: list[bool] = []
    gc.enable()
    try:
        ready = [loop.call_soon(lambda: seen.append(gc.isenabled())) for _ in range(3)]
        none_until_ready_callbacks_ran(loop)
        assert not gc.isenabled()
        await asyncio.sleep(0)
        assert seen == [False, False, False] and all(not h.cancelled() for h in ready)
        assert gc.isenabled()
    finally:
        gc.enable()


async def test_a_collector_switched_off_elsewhere_stays_off() -> None:
    loop = asyncio.get_running_loop()
    gc.disable()
    try:
        none_until_ready_callbacks_ran(loop)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert not gc.isenabled()
    finally:
        gc.enable()
