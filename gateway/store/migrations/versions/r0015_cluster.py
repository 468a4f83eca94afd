"""Cluster mode: `sequence_counters`, `cluster_nodes`, `group_leases`, `forwarded_requests`.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08

Several gateway processes on one PostgreSQL database number fills, order events, audit records
and signals from one counter row per series (gateway/store/cluster.py); each counter starts at
the largest number stored. A process of the default mode numbers in process and leaves them;
a cluster process raises each to the largest stored number when it starts, as nothing numbers
meanwhile (a process of the default mode holds the database's writer lock, which keeps
cluster processes out, and the other way round).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (counter name, the table its numbers are stored in)
SERIES = (
    ("fills", "fills"),
    ("order_events", "order_events"),
    ("audit_records", "audit_records"),
    ("source_signals", "source_signals"),
)


def upgrade() -> None:
    counters = op.create_table(
        "sequence_counters",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
    )
    connection = op.get_bind()
    rows = []
    for name, table in SERIES:
        last = connection.execute(sa.text(f"SELECT MAX(sequence) FROM {table}")).scalar()
        rows.append({"name": name, "value": int(last or 0)})
    op.bulk_insert(counters, rows)
    op.create_table(
        "cluster_nodes",
        sa.Column("node_id", sa.String(120), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(255), nullable=False),
        sa.Column("session_pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("heartbeat_at", sa.BigInteger(), nullable=False),
        sa.Column("stopped_at", sa.BigInteger()),
    )
    op.create_table(
        "group_leases",
        sa.Column("group_id", sa.String(40), sa.ForeignKey("groups.group_id"), primary_key=True),
        sa.Column("node_id", sa.String(120), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", sa.BigInteger(), nullable=False),
        sa.Column("renewed_at", sa.BigInteger(), nullable=False),
        sa.Column("released_at", sa.BigInteger()),
        sa.Column("takeovers", sa.Integer(), nullable=False),
    )
    op.create_index("ix_group_leases_node", "group_leases", ["node_id"])
    op.create_table(
        "forwarded_requests",
        sa.Column("request_id", sa.String(40), primary_key=True),
        sa.Column("group_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("asked_by_node", sa.String(120), nullable=False),
        sa.Column("asked_at", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("claimed_by_node", sa.String(120)),
        sa.Column("master_order_id", sa.String(40)),
        sa.Column("replayed", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("audited", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("error", sa.Text()),
        sa.Column("done_at", sa.BigInteger()),
    )
    op.create_index("ix_forwarded_requests_waiting", "forwarded_requests", ["state", "group_id"])


def downgrade() -> None:
    op.drop_index("ix_forwarded_requests_waiting", table_name="forwarded_requests")
    op.drop_table("forwarded_requests")
    op.drop_index("ix_group_leases_node", table_name="group_leases")
    op.drop_table("group_leases")
    op.drop_table("cluster_nodes")
    op.drop_table("sequence_counters")
