"""Copy options: `group_members.copy_options` and `child_orders.stops_copied`.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-09

A group member's copy options are stored as JSON of those that differ from the defaults; NULL
(every member stored before) is the defaults: it copies each order as it is. Whether a child
order carries its master order's SL/TP (false: its member's copy options left them out) is
`stops_copied`; a child stored before carried them, as every child did then, so it is true (the
server default, which both databases fill in as they add the column).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("group_members", sa.Column("copy_options", sa.Text(), nullable=True))
    op.add_column(
        "child_orders",
        sa.Column("stops_copied", sa.Boolean(), nullable=False, server_default=sa.true()),
    )


def downgrade() -> None:
    op.drop_column("child_orders", "stops_copied")
    op.drop_column("group_members", "copy_options")
