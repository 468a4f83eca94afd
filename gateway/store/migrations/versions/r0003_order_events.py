"""Order events: the outbox and audit trail of every master and child order state change.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

Each row is written in the same transaction as the state change it records, with a global,
gap-free sequence assigned by the store (as for fills).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "order_events",
        sa.Column("sequence", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("master_order_id", sa.String(40), nullable=False),
        sa.Column("child_order_id", sa.String(40), nullable=False),
        sa.Column("state", sa.String(30), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("sequence", name=op.f("pk_order_events")),
    )
    op.create_index(
        "ix_order_events_master", "order_events", ["master_order_id", "sequence"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_order_events_master", table_name="order_events")
    op.drop_table("order_events")
