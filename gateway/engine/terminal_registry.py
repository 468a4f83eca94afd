"""Which terminal trades which account, and the rule of one request in flight per terminal."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from gateway.domain.accounts import Account
from gateway.terminals.protocol import Terminal

TerminalFactory = Callable[[Account], Terminal | None]


class TerminalRegistry:
    def __init__(self, factory: TerminalFactory) -> None:
        self._factory = factory
        self._terminals: dict[str, Terminal] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def attach(self, account: Account) -> Terminal | None:
        """Connects the account's terminal if a backend serves its platform."""
        terminal = self._terminals.get(account.account_id)
        if terminal is None:
            terminal = self._factory(account)
            if terminal is not None:
                self._terminals[account.account_id] = terminal
        return terminal

    def get(self, account_id: str) -> Terminal | None:
        return self._terminals.get(account_id)

    def detach(self, account_id: str) -> Terminal | None:
        """Forgets the account's terminal (a deleted account): nothing is sent to it any more
        and no round reads it. Returns it for the caller to close."""
        return self._terminals.pop(account_id, None)

    def attached(self) -> list[Terminal]:
        """Every connected terminal, in the order they were attached."""
        return list(self._terminals.values())

    def lock(self, account_id: str) -> asyncio.Lock:
        """Held around every request: a MetaTrader terminal trades one request at a time."""
        lock = self._locks.get(account_id)
        if lock is None:
            lock = self._locks[account_id] = asyncio.Lock()
        return lock

    async def close_all(self) -> None:
        for terminal in list(self._terminals.values()):
            with contextlib.suppress(Exception):
                await terminal.close()
        self._terminals.clear()
