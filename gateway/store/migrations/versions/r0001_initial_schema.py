"""The initial schema: accounts, groups and members, master and child orders, fills.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Written out with plain column types, not the store's TypeDecorators, so that this revision
stays as it is whatever later happens to gateway/store/column_types.py: decimals are exact text
(VARCHAR(40)), times are UTC microseconds since the epoch (BIGINT).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _decimal() -> sa.String:
    return sa.String(40)


def _micros() -> sa.BigInteger:
    return sa.BigInteger()


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("platform", sa.String(20), nullable=False),
        sa.Column("login", sa.BigInteger(), nullable=False),
        sa.Column("server", sa.String(200), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("margin_mode", sa.String(20), nullable=False),
        sa.Column("leverage", sa.Integer(), nullable=False),
        sa.Column("initial_balance", _decimal(), nullable=True),
        sa.Column("symbol_mappings", sa.Text(), nullable=False),
        sa.Column("balance", _decimal(), nullable=True),
        sa.Column("equity", _decimal(), nullable=True),
        sa.Column("margin", _decimal(), nullable=True),
        sa.Column("free_margin", _decimal(), nullable=True),
        sa.Column("snapshot_at", _micros(), nullable=True),
        sa.Column("created_at", _micros(), nullable=False),
        sa.Column("updated_at", _micros(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_accounts"),
        sa.UniqueConstraint("name", name="uq_accounts_name"),
    )
    op.create_table(
        "groups",
        sa.Column("group_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("method", sa.String(30), nullable=False),
        sa.Column("below_min_policy", sa.String(30), nullable=False),
        sa.Column("reference_equity", _decimal(), nullable=True),
        sa.Column("reference_account_id", sa.String(40), nullable=True),
        sa.Column("magic", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _micros(), nullable=False),
        sa.Column("updated_at", _micros(), nullable=False),
        sa.PrimaryKeyConstraint("group_id", name="pk_groups"),
        sa.UniqueConstraint("name", name="uq_groups_name"),
    )
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.String(40), nullable=False),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(30), nullable=True),
        sa.Column("percentage", _decimal(), nullable=True),
        sa.Column("lot_multiplier", _decimal(), nullable=True),
        sa.Column("fixed_lots", _decimal(), nullable=True),
        sa.Column("risk_percent", _decimal(), nullable=True),
        sa.Column("max_lots", _decimal(), nullable=True),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.group_id"], name="fk_group_members_group_id_groups"
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.account_id"], name="fk_group_members_account_id_accounts"
        ),
        sa.PrimaryKeyConstraint("group_id", "account_id", name="pk_group_members"),
    )
    op.create_index("ix_group_members_account", "group_members", ["account_id"])
    op.create_table(
        "master_orders",
        sa.Column("master_order_id", sa.String(40), nullable=False),
        sa.Column("client_order_id", sa.String(100), nullable=False),
        sa.Column("group_id", sa.String(40), nullable=False),
        sa.Column("symbol", sa.String(40), nullable=False),
        sa.Column("side", sa.String(10), nullable=False),
        sa.Column("order_type", sa.String(20), nullable=False),
        sa.Column("volume", _decimal(), nullable=False),
        sa.Column("price", _decimal(), nullable=True),
        sa.Column("stop_limit_price", _decimal(), nullable=True),
        sa.Column("stop_loss", _decimal(), nullable=True),
        sa.Column("take_profit", _decimal(), nullable=True),
        sa.Column("max_deviation_points", sa.Integer(), nullable=False),
        sa.Column("time_in_force", sa.String(20), nullable=False),
        sa.Column("expire_time", _micros(), nullable=True),
        sa.Column("filling_policy", sa.String(10), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=False),
        sa.Column("magic", sa.BigInteger(), nullable=False),
        sa.Column("allocation", sa.Text(), nullable=False),
        sa.Column("child_count", sa.Integer(), nullable=False),
        sa.Column("filled_child_count", sa.Integer(), nullable=False),
        sa.Column("rejected_child_count", sa.Integer(), nullable=False),
        sa.Column("filled_volume", _decimal(), nullable=False),
        sa.Column("average_fill_price", _decimal(), nullable=True),
        sa.Column("dispatch_skew_us", sa.BigInteger(), nullable=True),
        sa.Column("submit_to_last_fill_us", sa.BigInteger(), nullable=True),
        sa.Column("average_slippage_points", _decimal(), nullable=True),
        sa.Column("max_slippage_points", _decimal(), nullable=True),
        sa.Column("created_at", _micros(), nullable=False),
        sa.Column("updated_at", _micros(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.group_id"], name="fk_master_orders_group_id_groups"
        ),
        sa.PrimaryKeyConstraint("master_order_id", name="pk_master_orders"),
    )
    op.create_index("ix_master_orders_group", "master_orders", ["group_id", "master_order_id"])
    op.create_index("ix_master_orders_state", "master_orders", ["state"])
    op.create_table(
        "child_orders",
        sa.Column("child_order_id", sa.String(40), nullable=False),
        sa.Column("master_order_id", sa.String(40), nullable=False),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("symbol", sa.String(40), nullable=False),
        sa.Column("side", sa.String(10), nullable=False),
        sa.Column("volume", _decimal(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("tag", sa.String(32), nullable=False),
        sa.Column("magic", sa.BigInteger(), nullable=False),
        sa.Column("filled_volume", _decimal(), nullable=False),
        sa.Column("requested_price", _decimal(), nullable=True),
        sa.Column("fill_price", _decimal(), nullable=True),
        sa.Column("slippage_points", _decimal(), nullable=True),
        sa.Column("retcode", sa.Integer(), nullable=False),
        sa.Column("status_text", sa.Text(), nullable=False),
        sa.Column("broker_order_ticket", sa.BigInteger(), nullable=False),
        sa.Column("broker_deal_ticket", sa.BigInteger(), nullable=False),
        sa.Column("position_ticket", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sent_at", _micros(), nullable=True),
        sa.Column("filled_at", _micros(), nullable=True),
        sa.Column("created_at", _micros(), nullable=False),
        sa.Column("updated_at", _micros(), nullable=False),
        sa.ForeignKeyConstraint(
            ["master_order_id"],
            ["master_orders.master_order_id"],
            name="fk_child_orders_master_order_id_master_orders",
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.account_id"], name="fk_child_orders_account_id_accounts"
        ),
        sa.PrimaryKeyConstraint("child_order_id", name="pk_child_orders"),
        sa.UniqueConstraint("tag", name="uq_child_orders_tag"),
    )
    op.create_index("ix_child_orders_master", "child_orders", ["master_order_id"])
    op.create_index("ix_child_orders_account", "child_orders", ["account_id"])
    op.create_table(
        "fills",
        sa.Column("sequence", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("fill_id", sa.String(40), nullable=False),
        sa.Column("master_order_id", sa.String(40), nullable=False),
        sa.Column("child_order_id", sa.String(40), nullable=False),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("symbol", sa.String(40), nullable=False),
        sa.Column("side", sa.String(10), nullable=False),
        sa.Column("volume", _decimal(), nullable=False),
        sa.Column("price", _decimal(), nullable=False),
        sa.Column("requested_price", _decimal(), nullable=True),
        sa.Column("slippage_points", _decimal(), nullable=True),
        sa.Column("deal_ticket", sa.BigInteger(), nullable=False),
        sa.Column("order_ticket", sa.BigInteger(), nullable=False),
        sa.Column("position_ticket", sa.BigInteger(), nullable=False),
        sa.Column("executed_at", _micros(), nullable=False),
        sa.ForeignKeyConstraint(
            ["child_order_id"],
            ["child_orders.child_order_id"],
            name="fk_fills_child_order_id_child_orders",
        ),
        sa.PrimaryKeyConstraint("sequence", name="pk_fills"),
        sa.UniqueConstraint("fill_id", name="uq_fills_fill_id"),
    )
    op.create_index("ix_fills_master", "fills", ["master_order_id", "sequence"])
    op.create_index("ix_fills_account", "fills", ["account_id", "sequence"])


def downgrade() -> None:
    op.drop_table("fills")
    op.drop_table("child_orders")
    op.drop_table("master_orders")
    op.drop_table("group_members")
    op.drop_table("groups")
    op.drop_table("accounts")
