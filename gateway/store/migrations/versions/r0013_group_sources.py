"""Mirroring: a group's source account (`group_sources`) and the signals stored from it
(`source_signals`).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

A source's book (what it held at the last look, JSON) is stored with the signals the look gave,
in one transaction; a signal's event id is unique per group, so a look taken twice stores its
signals once.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "group_sources",
        sa.Column("group_id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("paused", sa.Integer(), nullable=False),
        sa.Column("max_signal_age_ms", sa.BigInteger(), nullable=False),
        sa.Column("book", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.account_id"],
            name=op.f("fk_group_sources_account_id_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.group_id"], name=op.f("fk_group_sources_group_id_groups")
        ),
        sa.PrimaryKeyConstraint("group_id", name=op.f("pk_group_sources")),
    )
    op.create_table(
        "source_signals",
        sa.Column("sequence", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("group_id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=80), nullable=False),
        sa.Column("source_account_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("ticket", sa.BigInteger(), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("volume", sa.String(length=40), nullable=False),
        sa.Column("fraction", sa.String(length=40), nullable=True),
        sa.Column("order_type", sa.String(length=20), nullable=False),
        sa.Column("price", sa.String(length=40), nullable=True),
        sa.Column("stop_limit_price", sa.String(length=40), nullable=True),
        sa.Column("stop_loss", sa.String(length=40), nullable=True),
        sa.Column("take_profit", sa.String(length=40), nullable=True),
        sa.Column("time_in_force", sa.String(length=20), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("copies", sa.Text(), nullable=False),
        sa.Column("skip", sa.String(length=30), nullable=True),
        sa.Column("source_time", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("master_order_ids", sa.Text(), nullable=False),
        sa.Column("observed_at", sa.BigInteger(), nullable=False),
        sa.Column("settled_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.group_id"], name=op.f("fk_source_signals_group_id_groups")
        ),
        sa.PrimaryKeyConstraint("sequence", name=op.f("pk_source_signals")),
        sa.UniqueConstraint("group_id", "event_id", name="uq_source_signals_group_event"),
    )
    op.create_index(
        "ix_source_signals_group", "source_signals", ["group_id", "sequence"], unique=False
    )
    op.create_index(
        "ix_source_signals_state", "source_signals", ["group_id", "state"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_source_signals_state", table_name="source_signals")
    op.drop_index("ix_source_signals_group", table_name="source_signals")
    op.drop_table("source_signals")
    op.drop_table("group_sources")
