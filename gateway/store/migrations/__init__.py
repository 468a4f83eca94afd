"""Schema migrations: the alembic revisions in versions/, applied by `Store.open` at every start.

`upgrade_to_head` runs on a connection the caller already holds, inside its transaction
(alembic's connection-sharing recipe: the connection reaches env.py through
`Config.attributes["connection"]`, and the synchronous alembic API runs under
`AsyncConnection.run_sync`). A database already at head gets no statement but reads.

Developers use the alembic command line on the same environment, for example:

    MAM__DATABASE__URL=sqlite+aiosqlite:///var/dev.db python3 -m uv run \\
        alembic -c gateway/store/migrations/alembic.ini revision --autogenerate -m "what changed"

(`upgrade head --sql` prints the DDL for a database administrator instead of running it.)
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from gateway.store import tables

log = logging.getLogger(__name__)

DIRECTORY = Path(__file__).resolve().parent
# The first revision: exactly the schema the store created with metadata.create_all before it
# had migrations, so such a database is adopted by stamping it with this revision.
BASELINE = "0001"
# The tables of that schema (later revisions add others).
BASELINE_TABLES = frozenset(
    {"accounts", "groups", "group_members", "master_orders", "child_orders", "fills"}
)


def alembic_config(connection: Connection | None = None) -> Config:
    """A Config without an ini file: the script location is this package."""
    config = Config()
    # The value goes through ConfigParser interpolation: a '%' in the path must be doubled.
    config.set_main_option("script_location", str(DIRECTORY).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no alembic revision in {DIRECTORY / 'versions'}")
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at; None for a database alembic never touched."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade_to_head(connection: Connection) -> None:
    """Brings the database to the newest revision, in the caller's transaction.

    An empty database gets every revision; one at head is left alone; one created by
    metadata.create_all before migrations existed is stamped with the baseline first. Two
    processes upgrading the same database at once are not supported (one gateway per database).
    """
    current = current_revision(connection)
    head = head_revision()
    if current == head:
        return
    config = alembic_config(connection)
    if current is None and _adopt_unversioned(connection):
        command.stamp(config, BASELINE)
        current = BASELINE
    command.upgrade(config, "head")
    log.info("database schema upgraded from %s to %s", current or "nothing", head)


def _adopt_unversioned(connection: Connection) -> bool:
    """Whether an unversioned database holds the pre-migration schema (else it must be empty)."""
    ours = set(BASELINE_TABLES)
    present = set(tables.metadata.tables) & set(inspect(connection).get_table_names())
    if not present:
        return False
    if present != ours:
        missing = ", ".join(sorted(ours - present))
        raise RuntimeError(
            f"the database has some of the gateway's tables but no alembic_version table and "
            f"misses {missing}: it was not made by mam-gateway; refusing to migrate it"
        )
    log.warning("database without alembic_version: adopting it at revision %s", BASELINE)
    return True
