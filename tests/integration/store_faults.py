"""Database faults injected under a running gateway's store, switched on and off by a test.

The store's engine is wrapped: each transaction it begins can be made to fail before its COMMIT
(the database refused it: nothing stored), or to fail after its COMMIT (the reply was lost with
the connection: stored, but the gateway is told it failed), and the whole database can be made
unreachable. Which transactions: those that insert fills, the store's group commits of results.
The errors raised are the ones a lost connection raises (OSError), which the gateway must treat
as a passing fault. The real-fault tests (tests/fault/) break real databases instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.store import Store

_FILLS_INSERTED = "test_fills_inserted"


class FaultyDatabase:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._engine: AsyncEngine = store._engine
        # The whole database unreachable: every transaction and connection fails.
        self.down = False
        # The next N group commits of fills fail before COMMIT / after it.
        self.fail_before_commit = 0
        self.fail_after_commit = 0
        self.injected = 0
        event.listen(self._engine.sync_engine, "before_cursor_execute", _note_fill_inserts)
        store._engine = self  # type: ignore[assignment]

    def restore(self) -> None:
        self._store._engine = self._engine
        event.remove(self._engine.sync_engine, "before_cursor_execute", _note_fill_inserts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        self._refuse_if_down()
        async with self._engine.connect() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        self._refuse_if_down()
        async with self._engine.begin() as conn:
            conn.sync_connection.info[_FILLS_INSERTED] = False  # type: ignore[union-attr]
            yield conn
            inserted = conn.sync_connection.info[_FILLS_INSERTED]  # type: ignore[union-attr]
            if inserted and self.fail_before_commit:
                self.fail_before_commit -= 1
                self.injected += 1
                raise ConnectionResetError("injected: the connection was lost before COMMIT")
        if inserted and self.fail_after_commit:
            self.fail_after_commit -= 1
            self.injected += 1
            raise ConnectionResetError("injected: the connection was lost during COMMIT")

    def _refuse_if_down(self) -> None:
        if self.down:
            self.injected += 1
            raise ConnectionRefusedError("injected: the database is unreachable")


def _note_fill_inserts(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    if statement.lstrip().upper().startswith("INSERT INTO FILLS"):
        conn.info[_FILLS_INSERTED] = True
