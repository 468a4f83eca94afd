"""The source watcher's wait between looks: the interval, a wake, or a trade its source's
terminal is told of, whichever first; a trade told of while the group was looking is not
missed, by any of the groups mirroring that source."""

from __future__ import annotations

import asyncio

import pytest

from gateway.engine.look_pacer import LookPacer
from gateway.terminals.protocol import TradeEventSource

pytestmark = pytest.mark.timeout(10)

# Long enough that a wait ending means something other than the interval ended it.
FOREVER_S = 60.0


class ToldOfTrades:
    """A TradeEventSource whose trades the test makes."""

    def __init__(self) -> None:
        self.trade_events = 0
        self._changed = asyncio.Condition()

    async def wait_for_trade_event(self, *, after: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.trade_events > after)

    async def trade(self) -> None:
        self.trade_events += 1
        async with self._changed:
            self._changed.notify_all()


async def ended(pacer: LookPacer, terminal: object, *, wake: asyncio.Event | None = None) -> bool:
    """Whether a wait with no interval to speak of ends within a moment."""
    try:
        async with asyncio.timeout(0.2):
            await pacer.wait(FOREVER_S, wake=wake or asyncio.Event(), terminal=terminal)
    except TimeoutError:
        return False
    return True


def test_a_terminal_told_of_trades_is_a_trade_event_source() -> None:
    assert isinstance(ToldOfTrades(), TradeEventSource)
    assert not isinstance(object(), TradeEventSource)


async def test_a_terminal_not_told_of_trades_is_looked_at_every_interval_or_on_a_wake() -> None:
    pacer = LookPacer()
    await pacer.wait(0.01, wake=asyncio.Event(), terminal=object())  # the interval ends it
    wake = asyncio.Event()
    wake.set()
    assert await ended(pacer, None, wake=wake)
    assert not await ended(pacer, object())


async def test_a_trade_ends_the_wait_at_once() -> None:
    source, pacer = ToldOfTrades(), LookPacer()
    waiting = asyncio.create_task(pacer.wait(FOREVER_S, wake=asyncio.Event(), terminal=source))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await source.trade()
    async with asyncio.timeout(1):
        await waiting
    # Nothing new since: the next wait lasts.
    assert not await ended(pacer, source)


async def test_a_trade_made_while_the_group_was_looking_ends_the_next_wait_at_once() -> None:
    source, pacer = ToldOfTrades(), LookPacer()
    await source.trade()
    assert await ended(pacer, source)  # a first wait: what was told before is news once
    await source.trade()  # ...during the look that followed
    assert await ended(pacer, source)
    assert not await ended(pacer, source)


async def test_every_group_mirroring_one_source_sees_each_trade() -> None:
    source, first, second = ToldOfTrades(), LookPacer(), LookPacer()
    for pacer in (first, second):
        assert not await ended(pacer, source)
    await source.trade()
    assert await ended(first, source)
    assert await ended(second, source)


async def test_another_source_s_trades_are_news_once() -> None:
    old, new, pacer = ToldOfTrades(), ToldOfTrades(), LookPacer()
    for _ in range(3):
        await old.trade()
    await new.trade()
    assert await ended(pacer, old)
    assert await ended(pacer, new)
    assert not await ended(pacer, new)


async def test_a_wake_ends_the_wait_of_a_terminal_told_of_trades() -> None:
    source, pacer = ToldOfTrades(), LookPacer()
    wake = asyncio.Event()
    wake.set()
    assert await ended(pacer, source, wake=wake)
