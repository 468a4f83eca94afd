"""Deleted accounts: `accounts.deleted_at`, and names unique among the accounts not deleted.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

DeleteAccount keeps the account's row (its orders, fills, deals and statements name it) and sets
`deleted_at` (UTC microseconds). A deleted account's name may be given to a new account, so the
unique constraint uq_accounts_name becomes a partial unique index over the rows whose
`deleted_at` is null (both databases have partial indexes).

PostgreSQL drops the constraint in place. SQLite cannot drop a constraint: the table is built
again, inside this revision's transaction, with the foreign keys that point at it (group members,
child orders, account history, risk) deferred to the commit: the rows are held in a copy while
the table is dropped and created again, then put back, which satisfies every deferred reference
again before the commit checks them. A row missing would fail the commit and change nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIVE = "deleted_at IS NULL"
_HELD = "_accounts_r0011"


def _columns(*, deleted_at: bool) -> list[sa.Column[Any]]:
    """The accounts columns of revision 0001, and deleted_at if asked."""
    columns: list[sa.Column[Any]] = [
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("platform", sa.String(20), nullable=False),
        sa.Column("login", sa.BigInteger(), nullable=False),
        sa.Column("server", sa.String(200), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("margin_mode", sa.String(20), nullable=False),
        sa.Column("leverage", sa.Integer(), nullable=False),
        sa.Column("initial_balance", sa.String(40), nullable=True),
        sa.Column("symbol_mappings", sa.Text(), nullable=False),
        sa.Column("balance", sa.String(40), nullable=True),
        sa.Column("equity", sa.String(40), nullable=True),
        sa.Column("margin", sa.String(40), nullable=True),
        sa.Column("free_margin", sa.String(40), nullable=True),
        sa.Column("snapshot_at", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    ]
    if deleted_at:
        columns.append(sa.Column("deleted_at", sa.BigInteger(), nullable=True))
    return columns


def _rebuild_sqlite_accounts(*, deleted_at: bool, unique_name: bool) -> None:
    # Deferred: the DROP below leaves every referencing row without its account until the
    # rows are put back; the commit checks them all.
    op.execute("PRAGMA defer_foreign_keys = ON")
    kept = [c.name for c in _columns(deleted_at=False)]
    op.execute(f"CREATE TABLE {_HELD} AS SELECT * FROM accounts")
    op.drop_table("accounts")
    constraints: list[sa.Constraint] = [sa.PrimaryKeyConstraint("account_id", name="pk_accounts")]
    if unique_name:
        constraints.append(sa.UniqueConstraint("name", name="uq_accounts_name"))
    op.create_table("accounts", *_columns(deleted_at=deleted_at), *constraints)
    names = ", ".join(kept + (["deleted_at"] if deleted_at else []))
    source = ", ".join(kept + (["NULL"] if deleted_at else []))
    op.execute(f"INSERT INTO accounts ({names}) SELECT {source} FROM {_HELD}")
    op.drop_table(_HELD)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite_accounts(deleted_at=True, unique_name=False)
    else:
        op.add_column("accounts", sa.Column("deleted_at", sa.BigInteger(), nullable=True))
        op.drop_constraint("uq_accounts_name", "accounts", type_="unique")
    op.create_index(
        "uq_accounts_live_name",
        "accounts",
        ["name"],
        unique=True,
        sqlite_where=sa.text(_LIVE),
        postgresql_where=sa.text(_LIVE),
    )


def downgrade() -> None:
    deleted = op.get_bind().execute(
        sa.text("SELECT count(*) FROM accounts WHERE deleted_at IS NOT NULL")
    )
    if deleted.scalar():
        # Without deleted_at they would be live accounts again: attached and traded.
        raise RuntimeError(
            "the database has deleted accounts; revision 0010 cannot tell them from live ones"
        )
    op.drop_index("uq_accounts_live_name", table_name="accounts")
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite_accounts(deleted_at=False, unique_name=True)
    else:
        op.drop_column("accounts", "deleted_at")
        op.create_unique_constraint("uq_accounts_name", "accounts", ["name"])
