"""Async engines for the two supported databases, set up the way the store relies on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# PostgreSQL: the gateway holds at most a few connections at once (one group-commit writer,
# the master order inserts, and short reads for List/Get RPCs and fill stream replays), so a
# small pool with some overflow for bursts of readers is enough; pre-ping drops connections a
# server restart has closed instead of failing the next call.
PG_POOL_SIZE = 8
PG_MAX_OVERFLOW = 8
PG_POOL_TIMEOUT_S = 30
PG_POOL_RECYCLE_S = 1800


def create_engine(url: str) -> AsyncEngine:
    """An engine for sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST:PORT/DB."""
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    if url.startswith("postgresql"):
        return create_async_engine(
            url,
            pool_size=PG_POOL_SIZE,
            max_overflow=PG_MAX_OVERFLOW,
            pool_timeout=PG_POOL_TIMEOUT_S,
            pool_recycle=PG_POOL_RECYCLE_S,
            pool_pre_ping=True,
        )
    raise ValueError(
        f"unsupported database URL scheme {url.split(':', 1)[0]!r}: expected "
        "sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST:PORT/DATABASE"
    )


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer; NORMAL: durable at checkpoints, ~1 ms commits.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
    # The driver would BEGIN only before DML, so DDL (a migration) would run outside any
    # transaction; SQLAlchemy's documented fix: no implicit BEGIN, ours on every begin event.
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN")
