"""Which database failures pass: a fault of the database or the way to it, not of the request.

A transient fault (SQLite busy, locked, full or failing I/O; a PostgreSQL connection dropped or
refused, the server shutting down or starting up, a serialization failure or deadlock, a disk
full on the server) is worth trying again once the database is back: the engine keeps what it
was writing and retries. Anything else (a constraint violated, a value the schema refuses, a
bug) fails the same way every time, and is reported instead.
"""

from __future__ import annotations

import sqlite3

import asyncpg
from sqlalchemy import exc as sa_exc

# SQLite primary result codes (the low byte of an extended code) that pass with time or room.
_SQLITE_TRANSIENT = frozenset(
    {
        5,  # SQLITE_BUSY
        6,  # SQLITE_LOCKED
        7,  # SQLITE_NOMEM
        10,  # SQLITE_IOERR
        13,  # SQLITE_FULL
        14,  # SQLITE_CANTOPEN
        15,  # SQLITE_PROTOCOL
    }
)
# PostgreSQL SQLSTATE classes: connection exception, transaction rollback (serialization
# failure, deadlock), insufficient resources (disk full, out of memory, too many connections),
# operator intervention (admin or crash shutdown, cannot connect now), system error (I/O).
_POSTGRES_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57", "58"})


class StoreUnavailable(Exception):
    """The database cannot be reached or cannot take writes now; the caller may try again."""


def is_transient(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, is a passing fault of the database."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _transient_itself(current):
            return True
        orig = current.orig if isinstance(current, sa_exc.DBAPIError) else None
        if orig is not None and _transient_itself(orig):
            return True
        current = current.__cause__ or current.__context__
    return False


def _transient_itself(error: BaseException) -> bool:
    if isinstance(error, StoreUnavailable | OSError | TimeoutError):
        return True
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    # The pool had no connection to give within its timeout (the server is unreachable).
    if isinstance(error, sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return True
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        if code is None:  # no code: judged by what SQLite said
            return isinstance(error, sqlite3.OperationalError)
        return (code & 0xFF) in _SQLITE_TRANSIENT
    if isinstance(error, asyncpg.PostgresError):
        state = getattr(error, "sqlstate", None) or ""
        return state[:2] in _POSTGRES_TRANSIENT_CLASSES
    # asyncpg's own: the connection closed or was lost under a query.
    return isinstance(
        error, asyncpg.exceptions.InterfaceError | asyncpg.exceptions.ConnectionDoesNotExistError
    )
