"""Reporting: balance operations, each account's fee schedule, fee state and crystallised fees.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27

A balance operation is stored once per (account, operation id): the id is the caller's (or
"ticket-<n>" for one read from the broker), so a retried record lands on the original. The fee
state is what the performance fee carries from one crystallisation to the next (the high-water
mark, the equity and the gain withdrawn since); a crystallised charge is stored once per
(account, period start) and never recomputed, so a flow recorded late does not rewrite a fee
already charged. Decimals are exact text, times UTC microseconds, as in revision 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
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
        "balance_operations",
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("operation_id", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("amount", _decimal(), nullable=False),
        sa.Column("occurred_at", _micros(), nullable=False),
        sa.Column("ticket", sa.BigInteger(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("recorded_by", sa.String(100), nullable=False),
        sa.Column("recorded_at", _micros(), nullable=False),
        _account_fk("balance_operations"),
        sa.PrimaryKeyConstraint("account_id", "operation_id", name="pk_balance_operations"),
    )
    op.create_index(
        "ix_balance_operations_account_occurred",
        "balance_operations",
        ["account_id", "occurred_at"],
    )
    op.create_table(
        "fee_schedules",
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("performance_fee_percent", _decimal(), nullable=False),
        sa.Column("crystallisation", sa.String(20), nullable=False),
        sa.Column("management_fee_percent", _decimal(), nullable=False),
        sa.Column("management_fee_basis", sa.String(20), nullable=False),
        sa.Column("days_per_year", sa.Integer(), nullable=False),
        sa.Column("money_step", _decimal(), nullable=False),
        sa.Column("effective_from", _micros(), nullable=False),
        sa.Column("updated_at", _micros(), nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
        _account_fk("fee_schedules"),
        sa.PrimaryKeyConstraint("account_id", name="pk_fee_schedules"),
    )
    op.create_table(
        "fee_states",
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("high_water_mark", _decimal(), nullable=False),
        sa.Column("equity", _decimal(), nullable=False),
        sa.Column("withdrawn_gain", _decimal(), nullable=False),
        sa.Column("as_of", _micros(), nullable=False),
        sa.Column("updated_at", _micros(), nullable=False),
        _account_fk("fee_states"),
        sa.PrimaryKeyConstraint("account_id", name="pk_fee_states"),
    )
    op.create_table(
        "fee_charges",
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("period_start", _micros(), nullable=False),
        sa.Column("period_end", _micros(), nullable=False),
        sa.Column("high_water_mark", _decimal(), nullable=False),
        sa.Column("equity", _decimal(), nullable=False),
        sa.Column("withdrawn_gain", _decimal(), nullable=False),
        sa.Column("gain", _decimal(), nullable=False),
        sa.Column("performance_fee", _decimal(), nullable=False),
        sa.Column("closing_high_water_mark", _decimal(), nullable=False),
        sa.Column("management_fee", _decimal(), nullable=False),
        sa.Column("management_fee_basis", sa.String(20), nullable=False),
        sa.Column("management_basis_equity", _decimal(), nullable=False),
        sa.Column("management_days", sa.Integer(), nullable=False),
        sa.Column("performance_fee_percent", _decimal(), nullable=False),
        sa.Column("management_fee_percent", _decimal(), nullable=False),
        sa.Column("crystallised_at", _micros(), nullable=False),
        _account_fk("fee_charges"),
        sa.PrimaryKeyConstraint("account_id", "period_start", name="pk_fee_charges"),
    )


def downgrade() -> None:
    op.drop_table("fee_charges")
    op.drop_table("fee_states")
    op.drop_table("fee_schedules")
    op.drop_index("ix_balance_operations_account_occurred", table_name="balance_operations")
    op.drop_table("balance_operations")
