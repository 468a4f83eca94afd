"""Closing orders: what a CloseMasterPosition order closes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

A closing master order names the master order whose position it closes and the fraction; each of
its children names the opening child whose position it closes. NULL on every other order.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("master_orders", sa.Column("closes_master_order_id", sa.String(40)))
    op.add_column("master_orders", sa.Column("close_fraction", sa.String(40)))
    op.create_index("ix_master_orders_closes", "master_orders", ["closes_master_order_id"])
    op.add_column("child_orders", sa.Column("closes_child_order_id", sa.String(40)))


def downgrade() -> None:
    op.drop_column("child_orders", "closes_child_order_id")
    op.drop_index("ix_master_orders_closes", table_name="master_orders")
    op.drop_column("master_orders", "close_fraction")
    op.drop_column("master_orders", "closes_master_order_id")
