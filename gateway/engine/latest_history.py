"""The account's latest state, read when a statement or a report is asked for.

The history rounds (AccountMonitor) read every terminal once a minute or so: a statement made
seconds after a close would miss the closing deals. Before building one, the reporting service
asks the account's terminal itself, as a round of that account alone (its money, its open
positions, its deals since the last stored one, stored as any round is), and values the open
positions at the terminal's current prices. A terminal that cannot be read leaves the stored
history as it is, and the statement says as of when it is.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection
from decimal import Decimal
from typing import TypeVar

from gateway.domain.open_positions import ValuedPosition, value_position
from gateway.engine.account_monitor import AccountMonitor
from gateway.engine.terminal_registry import TerminalRegistry
from gateway.store import Store
from gateway.terminals.protocol import Terminal

log = logging.getLogger(__name__)

_T = TypeVar("_T")

# An account read for a statement or report this recently is not read again: many reports asked
# at once (a dashboard, a month of statements) read its terminal once.
FRESH_FOR_S = 2.0


class LatestHistory:
    def __init__(
        self,
        store: Store,
        registry: TerminalRegistry,
        monitor: AccountMonitor,
        *,
        request_timeout_s: float,
        fresh_for_s: float = FRESH_FOR_S,
    ) -> None:
        self._store = store
        self._registry = registry
        self._monitor = monitor
        self._request_timeout_s = request_timeout_s
        self._fresh_for_s = fresh_for_s
        # When each account was last read here (the monotonic clock).
        self._read_at: dict[str, float] = {}

    async def refresh(self, account_ids: Collection[str]) -> dict[str, str]:
        """Reads and stores the accounts' terminals now (those not read here within the last
        fresh_for_s); returns why an account could not be read (absent: read and stored)."""
        now = time.monotonic()
        wanted = {
            a for a in account_ids if now - self._read_at.get(a, -math.inf) >= self._fresh_for_s
        }
        if not wanted:
            return {}
        done = await self._monitor.run_once(account_ids=wanted)
        for account_id in done.stored:
            self._read_at[account_id] = now
        problems = dict(done.failed)
        for account_id in wanted - set(done.stored) - set(problems):
            problems[account_id] = (
                "no terminal is attached"
                if self._registry.get(account_id) is None
                else "its reading was not stored"
            )
        return problems

    async def valued_positions(self, account_id: str) -> tuple[ValuedPosition, ...]:
        """The account's stored open positions, each valued at its terminal's current price
        (unvalued where the terminal cannot quote the symbol)."""
        positions = await self._store.history.positions_of(account_id)
        if not positions:
            return ()
        terminal = self._registry.get(account_id)
        quotes: dict[str, tuple[Decimal, Decimal, Decimal, Decimal] | None] = {}
        if terminal is not None:
            for symbol in sorted({p.symbol for p in positions}):
                quotes[symbol] = await self._quote(terminal, symbol)
        valued = []
        for position in positions:
            quote = quotes.get(position.symbol)
            bid, ask, tick_size, tick_value = quote if quote else (None, None, None, None)
            valued.append(
                value_position(
                    position, bid=bid, ask=ask, tick_size=tick_size, tick_value=tick_value
                )
            )
        return tuple(valued)

    async def _quote(
        self, terminal: Terminal, symbol: str
    ) -> tuple[Decimal, Decimal, Decimal, Decimal] | None:
        """The symbol's bid, ask, tick size and tick value at the terminal; None when it cannot
        say."""
        account_id = terminal.account_id
        try:
            quote = await self._ask(account_id, lambda: terminal.quote(symbol))
            spec = await self._ask(account_id, lambda: terminal.symbol_spec(symbol))
        except Exception as error:
            log.info("account %s: %s not valued for a statement: %s", account_id, symbol, error)
            return None
        return quote.bid, quote.ask, spec.tick_size, spec.tick_value

    async def _ask(self, account_id: str, request: Callable[[], Awaitable[_T]]) -> _T:
        """One request under the terminal's lock; the timeout includes waiting for the lock."""
        async with asyncio.timeout(self._request_timeout_s), self._registry.lock(account_id):
            return await request()
