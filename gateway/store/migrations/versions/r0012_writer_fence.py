"""The writer fence: which process may write the database, and since which takeover.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

One row (fence_id 1), epoch 0 until a gateway first takes the writer lock
(gateway/store/writer_lock.py); each takeover moves the epoch on and names the holder, so a second
gateway can say who holds the database, and a process that lost the lock cannot commit.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    fence = op.create_table(
        "writer_fence",
        sa.Column("fence_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("holder_host", sa.String(length=255), nullable=False),
        sa.Column("holder_pid", sa.Integer(), nullable=False),
        sa.Column("held_since", sa.BigInteger(), nullable=False),
        sa.Column("released_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("fence_id", name=op.f("pk_writer_fence")),
    )
    op.bulk_insert(
        fence,
        [
            {
                "fence_id": 1,
                "epoch": 0,
                "holder_host": "",
                "holder_pid": 0,
                # UTC microseconds (UtcMicros): never held, so released at the epoch.
                "held_since": 0,
                "released_at": 0,
            }
        ],
    )


def downgrade() -> None:
    op.drop_table("writer_fence")
