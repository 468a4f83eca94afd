"""Idempotent submission: who submitted each master order, and one order per caller's id.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

`submitted_by` names the caller (its API key's principal; empty for an anonymous caller).
A unique index on (submitted_by, client_order_id) makes a resubmission land on the original
order instead of trading twice. Before this revision nothing enforced uniqueness, so existing
rows are made unique first: an empty client_order_id takes the master order's id, and every
repeat of an id after its first use (oldest master_order_id first) gets "#<master_order_id>"
appended (cut to fit the column); the first order keeps the id its caller knows.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_orders = sa.table(
    "master_orders",
    sa.column("master_order_id", sa.String),
    sa.column("client_order_id", sa.String),
)


def upgrade() -> None:
    op.add_column(
        "master_orders",
        sa.Column("submitted_by", sa.String(100), nullable=False, server_default=""),
    )
    connection = op.get_bind()
    connection.execute(
        _orders.update()
        .where(_orders.c.client_order_id == "")
        .values(client_order_id=_orders.c.master_order_id)
    )
    rows = connection.execute(
        sa.select(_orders.c.master_order_id, _orders.c.client_order_id).order_by(
            _orders.c.master_order_id
        )
    ).all()
    seen: set[str] = set()
    for master_order_id, client_order_id in rows:
        if client_order_id in seen:
            connection.execute(
                _orders.update()
                .where(_orders.c.master_order_id == master_order_id)
                .values(client_order_id=f"{client_order_id[:70]}#{master_order_id}")
            )
        seen.add(client_order_id)
    op.create_index(
        "uq_master_orders_client_order",
        "master_orders",
        ["submitted_by", "client_order_id"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_master_orders_client_order", table_name="master_orders")
    op.drop_column("master_orders", "submitted_by")
