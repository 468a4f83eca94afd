"""Alembic's environment for the gateway schema (gateway/store/tables.py), on async engines.

From `Store.open` (gateway/store/migrations/__init__.py) a connection arrives in
`config.attributes["connection"]` and the migrations run on it, synchronously, inside the
caller's transaction. From the alembic command line, an engine is opened on `sqlalchemy.url`
or the MAM__DATABASE__URL environment variable.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from gateway.store import tables
from gateway.store.engines import create_engine

config = context.config
target_metadata = tables.metadata

# The command line's alembic.ini configures logging; the gateway's own logging stays untouched.
if config.config_file_name is not None and "connection" not in config.attributes:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("MAM__DATABASE__URL", "")
    if not url:
        raise RuntimeError("no database: set MAM__DATABASE__URL (or sqlalchemy.url)")
    return url


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: autogenerate writes batch (table rebuild) operations.
        render_as_batch=True,
        # Our SQLite engines emit BEGIN themselves (gateway/store/engines.py), so DDL is
        # transactional there too: a failed revision leaves nothing half done.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_on_own_engine() -> None:
    engine = create_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


def _run_offline() -> None:
    context.configure(
        url=_url().replace("+aiosqlite", "").replace("+asyncpg", ""),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
elif (shared := config.attributes.get("connection")) is not None:
    run_migrations(shared)
else:
    asyncio.run(_run_on_own_engine())
