"""Access control: API keys (salted hashes only), the append-only audit log, kill switches.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25

The audit log refuses UPDATE and DELETE at the database itself (a trigger on SQLite and on
PostgreSQL), so that not even a bug in the gateway can rewrite what happened.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SQLITE_GUARDS = [
    f"""
    CREATE TRIGGER audit_records_no_{verb.lower()} BEFORE {verb} ON audit_records
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END
    """
    for verb in ("UPDATE", "DELETE")
]

_POSTGRESQL_GUARDS = [
    """
    CREATE FUNCTION audit_records_append_only() RETURNS trigger AS $$
    BEGIN RAISE EXCEPTION 'the audit log is append-only'; END
    $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_records_append_only()
    """,
]


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("secret_hash", sa.String(200), nullable=False),
        sa.Column("group_ids", sa.Text(), nullable=False),
        sa.Column("account_ids", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.Column("revoked_by", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name="pk_api_keys"),
    )
    op.create_table(
        "audit_records",
        sa.Column("sequence", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("method", sa.String(200), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("status", sa.String(40), nullable=False),
        sa.Column("reason", sa.String(100), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("peer", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("sequence", name="pk_audit_records"),
    )
    op.create_index("ix_audit_records_actor", "audit_records", ["actor", "sequence"])
    op.create_index("ix_audit_records_at", "audit_records", ["at"])
    op.create_table(
        "kill_switches",
        sa.Column("kill_switch_id", sa.String(40), nullable=False),
        sa.Column("scope", sa.String(20), nullable=False),
        sa.Column("target_id", sa.String(40), nullable=False),
        sa.Column("flatten", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("activated_at", sa.BigInteger(), nullable=False),
        sa.Column("activated_by", sa.String(100), nullable=False),
        sa.Column("deactivated_at", sa.BigInteger(), nullable=True),
        sa.Column("deactivated_by", sa.String(100), nullable=False),
        sa.Column("closing_master_order_ids", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("kill_switch_id", name="pk_kill_switches"),
    )
    guards = _POSTGRESQL_GUARDS if op.get_bind().dialect.name == "postgresql" else _SQLITE_GUARDS
    for statement in guards:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_records_append_only ON audit_records")
        op.execute("DROP FUNCTION audit_records_append_only()")
    op.drop_table("kill_switches")
    op.drop_index("ix_audit_records_at", table_name="audit_records")
    op.drop_index("ix_audit_records_actor", table_name="audit_records")
    op.drop_table("audit_records")
    op.drop_table("api_keys")
