"""Fills keep their encoded message: what SubscribeFills streams, encoded once when stored.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28

`fills.wire` holds the fill as the API layer encodes it (a serialized mam.v1 Fill, from the
Store's fill_encoder), written in the same row as the fill; a replay sends those bytes instead of
building a message per fill per subscriber. Nullable: the fills stored before this revision (or
by a Store without an encoder) have none and are encoded from their columns when replayed, so
nothing is rewritten here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("fills", sa.Column("wire", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    op.drop_column("fills", "wire")
