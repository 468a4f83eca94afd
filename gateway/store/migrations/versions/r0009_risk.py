"""Risk: groups' pre-trade limits and loss limits, accounts' loss limits, the loss watches'
states and every stop-out.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27

Settings are JSON text (as symbol mappings are): they are read whole and never queried by
field. A group or account without a row has no limits. A loss watch's state is replaced at each
reading; stop-outs are kept, active (ended_at null) or ended, as the record of what a loss limit
did. Decimals are exact text, times UTC microseconds, as in revision 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "group_risk",
        sa.Column("group_id", sa.String(40), nullable=False),
        sa.Column("risk_limits", sa.Text(), nullable=False),
        sa.Column("member_risk_limits", sa.Text(), nullable=False),
        sa.Column("violation_policy", sa.String(10), nullable=False),
        sa.Column("loss_limits", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.group_id"], name="fk_group_risk_group_id_groups"
        ),
        sa.PrimaryKeyConstraint("group_id", name="pk_group_risk"),
    )
    op.create_table(
        "account_risk",
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("loss_limits", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.account_id"], name="fk_account_risk_account_id_accounts"
        ),
        sa.PrimaryKeyConstraint("account_id", name="pk_account_risk"),
    )
    op.create_table(
        "loss_watches",
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("subject_id", sa.String(40), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("members", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "subject_id", name="pk_loss_watches"),
    )
    op.create_table(
        "stop_outs",
        sa.Column("stop_out_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("subject_id", sa.String(40), nullable=False),
        sa.Column("rule", sa.String(20), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("limit_amount", sa.String(40), nullable=False),
        sa.Column("limit_unit", sa.String(10), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("equity", sa.String(40), nullable=False),
        sa.Column("high_water_mark", sa.String(40), nullable=False),
        sa.Column("day_start_equity", sa.String(40), nullable=False),
        sa.Column("loss", sa.String(40), nullable=False),
        sa.Column("loss_percent", sa.String(40), nullable=True),
        sa.Column("recorded_at", sa.BigInteger(), nullable=False),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
        sa.Column("ended_by", sa.String(200), nullable=False),
        sa.Column("closing_master_order_ids", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("stop_out_id", name="pk_stop_outs"),
    )
    op.create_index("ix_stop_outs_subject", "stop_outs", ["kind", "subject_id", "stop_out_id"])


def downgrade() -> None:
    op.drop_index("ix_stop_outs_subject", table_name="stop_outs")
    op.drop_table("stop_outs")
    op.drop_table("loss_watches")
    op.drop_table("account_risk")
    op.drop_table("group_risk")
