"""Cancellation requests: when a master order's cancellation was requested.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

Stored with the order so that a gateway restarted after the request still sends none of its
children that had not reached a broker.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("master_orders", sa.Column("cancel_requested_at", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("master_orders", "cancel_requested_at")
