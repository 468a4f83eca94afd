"""Account history: money snapshots, the broker's deals and the open positions of each account.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

What reporting (performance, statements) reads. Snapshots accumulate, one per account and read;
a deal is stored once per (account, ticket) however often it is read; positions are the last
seen set of each account, replaced on every read. Decimals are exact text (VARCHAR(40)), times
UTC microseconds since the epoch (BIGINT), as in revision 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _decimal() -> sa.String:
    return sa.String(40)


def _micros() -> sa.BigInteger:
    return sa.BigInteger()


def _account_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["account_id"], ["accounts.account_id"], name=f"fk_{table}_account_id_accounts"
    )


def upgrade() -> None:
    op.create_table(
        "account_snapshots",
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("taken_at", _micros(), nullable=False),
        sa.Column("balance", _decimal(), nullable=False),
        sa.Column("equity", _decimal(), nullable=False),
        sa.Column("margin", _decimal(), nullable=False),
        sa.Column("free_margin", _decimal(), nullable=False),
        _account_fk("account_snapshots"),
        sa.PrimaryKeyConstraint("account_id", "taken_at", name="pk_account_snapshots"),
    )
    op.create_table(
        "deals",
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("ticket", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("order_ticket", sa.BigInteger(), nullable=False),
        sa.Column("position_ticket", sa.BigInteger(), nullable=False),
        sa.Column("symbol", sa.String(40), nullable=False),
        sa.Column("side", sa.String(10), nullable=False),
        sa.Column("volume", _decimal(), nullable=False),
        sa.Column("price", _decimal(), nullable=False),
        sa.Column("entry", sa.String(10), nullable=False),
        sa.Column("profit", _decimal(), nullable=False),
        sa.Column("magic", sa.BigInteger(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("executed_at", _micros(), nullable=False),
        _account_fk("deals"),
        sa.PrimaryKeyConstraint("account_id", "ticket", name="pk_deals"),
    )
    op.create_index("ix_deals_account_executed", "deals", ["account_id", "executed_at"])
    op.create_table(
        "positions",
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("ticket", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("symbol", sa.String(40), nullable=False),
        sa.Column("side", sa.String(10), nullable=False),
        sa.Column("volume", _decimal(), nullable=False),
        sa.Column("price_open", _decimal(), nullable=False),
        sa.Column("stop_loss", _decimal(), nullable=True),
        sa.Column("take_profit", _decimal(), nullable=True),
        sa.Column("magic", sa.BigInteger(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("opened_at", _micros(), nullable=False),
        sa.Column("seen_at", _micros(), nullable=False),
        _account_fk("positions"),
        sa.PrimaryKeyConstraint("account_id", "ticket", name="pk_positions"),
    )


def downgrade() -> None:
    op.drop_table("positions")
    op.drop_index("ix_deals_account_executed", table_name="deals")
    op.drop_table("deals")
    op.drop_table("account_snapshots")
