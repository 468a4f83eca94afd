"""When a group's source is looked at next (gateway/engine/source_watcher.py): after the look
interval, when the group's source is changed (its task is woken), or as soon as the source's
terminal is told of a trade (a TradeEventSource, gateway/terminals/protocol.py: an MT4 EA
pushing its trades), whichever comes first. Other terminals are looked at every interval."""

from __future__ import annotations

import asyncio
import contextlib

from gateway.terminals.protocol import TradeEventSource


class LookPacer:
    """One group's waits between looks. It keeps how many trade events the source's terminal
    had been told of when the last wait ended, so that one told of during the look and the
    acting that followed ends the next wait at once instead of being missed."""

    def __init__(self) -> None:
        self._terminal: TradeEventSource | None = None
        self._seen = 0

    async def wait(self, interval_s: float, *, wake: asyncio.Event, terminal: object) -> None:
        if not isinstance(terminal, TradeEventSource):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), interval_s)
            return
        if terminal is not self._terminal:
            # A first wait, or another source: what it was told of before is news once.
            self._terminal, self._seen = terminal, 0
        waits = [
            asyncio.ensure_future(wake.wait()),
            asyncio.ensure_future(terminal.wait_for_trade_event(after=self._seen)),
        ]
        try:
            await asyncio.wait(waits, timeout=interval_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        self._seen = terminal.trade_events
