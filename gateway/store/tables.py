"""The schema. Decimals as exact text, times as UTC microseconds, enums as their names.

The database is built and upgraded by the alembic revisions in gateway/store/migrations/, never
from this module directly: a change here needs a new revision (autogenerate compares the two, and
tests/integration/test_store.py fails while they differ).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    true,
)

from gateway.store.column_types import DecimalText, UtcMicros

# Constraint names are part of the schema: the same on SQLite and PostgreSQL, so that a later
# revision can drop or alter a constraint by name on both.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(40), primary_key=True),
    # Unique among the accounts not deleted (uq_accounts_live_name): a deleted account's name
    # may be given to a new one.
    Column("name", String(200), nullable=False),
    Column("platform", String(20), nullable=False),
    Column("login", BigInteger, nullable=False),
    Column("server", String(200), nullable=False),
    Column("currency", String(8), nullable=False),
    Column("state", String(20), nullable=False),
    Column("margin_mode", String(20), nullable=False),
    Column("leverage", Integer, nullable=False),
    Column("initial_balance", DecimalText),
    # JSON list of [gateway symbol, broker symbol] pairs.
    Column("symbol_mappings", Text, nullable=False, default="[]"),
    Column("balance", DecimalText),
    Column("equity", DecimalText),
    Column("margin", DecimalText),
    Column("free_margin", DecimalText),
    Column("snapshot_at", UtcMicros),
    Column("created_at", UtcMicros, nullable=False),
    Column("updated_at", UtcMicros, nullable=False),
    # Set by DeleteAccount; the row stays for the account's history.
    Column("deleted_at", UtcMicros),
)
Index(
    "uq_accounts_live_name",
    accounts.c.name,
    unique=True,
    sqlite_where=accounts.c.deleted_at.is_(None),
    postgresql_where=accounts.c.deleted_at.is_(None),
)

groups = Table(
    "groups",
    metadata,
    Column("group_id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("method", String(30), nullable=False),
    Column("below_min_policy", String(30), nullable=False),
    Column("reference_equity", DecimalText),
    Column("reference_account_id", String(40)),
    Column("magic", BigInteger, nullable=False),
    Column("created_at", UtcMicros, nullable=False),
    Column("updated_at", UtcMicros, nullable=False),
)

group_members = Table(
    "group_members",
    metadata,
    Column("group_id", String(40), ForeignKey("groups.group_id"), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.account_id"), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("method", String(30)),
    Column("percentage", DecimalText),
    Column("lot_multiplier", DecimalText),
    Column("fixed_lots", DecimalText),
    Column("risk_percent", DecimalText),
    Column("max_lots", DecimalText),
    # JSON of the member's copy options that differ from the defaults; NULL: all defaults.
    Column("copy_options", Text),
)
Index("ix_group_members_account", group_members.c.account_id)

master_orders = Table(
    "master_orders",
    metadata,
    Column("master_order_id", String(40), primary_key=True),
    Column("client_order_id", String(100), nullable=False),
    # The caller's principal (empty for an anonymous caller): client_order_id is unique per caller.
    Column("submitted_by", String(100), nullable=False, server_default=""),
    Column("group_id", String(40), ForeignKey("groups.group_id"), nullable=False),
    Column("symbol", String(40), nullable=False),
    Column("side", String(10), nullable=False),
    Column("order_type", String(20), nullable=False),
    Column("volume", DecimalText, nullable=False),
    Column("price", DecimalText),
    Column("stop_limit_price", DecimalText),
    Column("stop_loss", DecimalText),
    Column("take_profit", DecimalText),
    Column("max_deviation_points", Integer, nullable=False),
    Column("time_in_force", String(20), nullable=False),
    Column("expire_time", UtcMicros),
    Column("filling_policy", String(10), nullable=False),
    Column("comment", Text, nullable=False),
    Column("state", String(20), nullable=False),
    Column("state_reason", Text, nullable=False),
    Column("magic", BigInteger, nullable=False),
    # The audit record of the allocation: settings, snapshot and every line, as JSON.
    Column("allocation", Text, nullable=False),
    Column("child_count", Integer, nullable=False),
    Column("filled_child_count", Integer, nullable=False),
    Column("rejected_child_count", Integer, nullable=False),
    Column("filled_volume", DecimalText, nullable=False),
    Column("average_fill_price", DecimalText),
    Column("dispatch_skew_us", BigInteger),
    Column("submit_to_last_fill_us", BigInteger),
    Column("average_slippage_points", DecimalText),
    Column("max_slippage_points", DecimalText),
    Column("cancel_requested_at", UtcMicros),
    Column("closes_master_order_id", String(40)),
    Column("close_fraction", DecimalText),
    Column("created_at", UtcMicros, nullable=False),
    Column("updated_at", UtcMicros, nullable=False),
)
Index("ix_master_orders_group", master_orders.c.group_id, master_orders.c.master_order_id)
Index("ix_master_orders_state", master_orders.c.state)
Index("ix_master_orders_closes", master_orders.c.closes_master_order_id)
# Idempotent submission: a resubmitted client_order_id lands on the original order.
Index(
    "uq_master_orders_client_order",
    master_orders.c.submitted_by,
    master_orders.c.client_order_id,
    unique=True,
)

child_orders = Table(
    "child_orders",
    metadata,
    Column("child_order_id", String(40), primary_key=True),
    Column(
        "master_order_id",
        String(40),
        ForeignKey("master_orders.master_order_id"),
        nullable=False,
    ),
    Column("account_id", String(40), ForeignKey("accounts.account_id"), nullable=False),
    Column("symbol", String(40), nullable=False),
    Column("side", String(10), nullable=False),
    Column("volume", DecimalText, nullable=False),
    Column("state", String(20), nullable=False),
    Column("tag", String(32), nullable=False, unique=True),
    Column("magic", BigInteger, nullable=False),
    Column("filled_volume", DecimalText, nullable=False),
    Column("requested_price", DecimalText),
    Column("fill_price", DecimalText),
    Column("slippage_points", DecimalText),
    Column("retcode", Integer, nullable=False),
    Column("status_text", Text, nullable=False),
    Column("broker_order_ticket", BigInteger, nullable=False),
    Column("broker_deal_ticket", BigInteger, nullable=False),
    Column("position_ticket", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("sent_at", UtcMicros),
    Column("filled_at", UtcMicros),
    Column("closes_child_order_id", String(40)),
    Column("created_at", UtcMicros, nullable=False),
    Column("updated_at", UtcMicros, nullable=False),
    # False: an opening child sent without its master order's SL/TP (its member's copy options).
    Column("stops_copied", Boolean, nullable=False, server_default=true()),
)
Index("ix_child_orders_master", child_orders.c.master_order_id)
Index("ix_child_orders_account", child_orders.c.account_id)

fills = Table(
    "fills",
    metadata,
    # Global, gap-free, increasing: assigned by the store's single fill writer at commit.
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("fill_id", String(40), nullable=False, unique=True),
    Column("master_order_id", String(40), nullable=False),
    Column("child_order_id", String(40), ForeignKey("child_orders.child_order_id"), nullable=False),
    Column("account_id", String(40), nullable=False),
    Column("symbol", String(40), nullable=False),
    Column("side", String(10), nullable=False),
    Column("volume", DecimalText, nullable=False),
    Column("price", DecimalText, nullable=False),
    Column("requested_price", DecimalText),
    Column("slippage_points", DecimalText),
    Column("deal_ticket", BigInteger, nullable=False),
    Column("order_ticket", BigInteger, nullable=False),
    Column("position_ticket", BigInteger, nullable=False),
    Column("executed_at", UtcMicros, nullable=False),
    # The fill as the API streams it (the Store's fill_encoder: a serialized mam.v1 Fill),
    # written with the row so that a replay sends it as it is. NULL for a fill stored without
    # an encoder (or before revision 0010): a replay then encodes it from the columns above.
    Column("wire", LargeBinary),
)
Index("ix_fills_master", fills.c.master_order_id, fills.c.sequence)
Index("ix_fills_account", fills.c.account_id, fills.c.sequence)

order_events = Table(
    "order_events",
    metadata,
    # Global, gap-free, increasing: assigned by the store's single writer at commit.
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("master_order_id", String(40), nullable=False),
    # Empty for an event of the master order itself.
    Column("child_order_id", String(40), nullable=False),
    Column("state", String(30), nullable=False),
    Column("detail", Text, nullable=False),
    Column("at", UtcMicros, nullable=False),
)
Index("ix_order_events_master", order_events.c.master_order_id, order_events.c.sequence)

# -- account history: what reporting reads ---------------------------------------------------

account_snapshots = Table(
    "account_snapshots",
    metadata,
    Column("account_id", String(40), ForeignKey("accounts.account_id"), primary_key=True),
    Column("taken_at", UtcMicros, primary_key=True),
    Column("balance", DecimalText, nullable=False),
    Column("equity", DecimalText, nullable=False),
    Column("margin", DecimalText, nullable=False),
    Column("free_margin", DecimalText, nullable=False),
)

# The broker's deal history of each account; a deal read twice is stored once.
deals = Table(
    "deals",
    metadata,
    Column("account_id", String(40), ForeignKey("accounts.account_id"), primary_key=True),
    Column("ticket", BigInteger, primary_key=True, autoincrement=False),
    Column("order_ticket", BigInteger, nullable=False),
    Column("position_ticket", BigInteger, nullable=False),
    Column("symbol", String(40), nullable=False),
    Column("side", String(10), nullable=False),
    Column("volume", DecimalText, nullable=False),
    Column("price", DecimalText, nullable=False),
    # DealEntry name: IN, OUT, INOUT or OUT_BY.
    Column("entry", String(10), nullable=False),
    Column("profit", DecimalText, nullable=False),
    Column("magic", BigInteger, nullable=False),
    Column("comment", Text, nullable=False),
    Column("executed_at", UtcMicros, nullable=False),
)
Index("ix_deals_account_executed", deals.c.account_id, deals.c.executed_at)

# Each account's open positions as last seen: replaced per account on every read.
positions = Table(
    "positions",
    metadata,
    Column("account_id", String(40), ForeignKey("accounts.account_id"), primary_key=True),
    Column("ticket", BigInteger, primary_key=True, autoincrement=False),
    Column("symbol", String(40), nullable=False),
    Column("side", String(10), nullable=False),
    Column("volume", DecimalText, nullable=False),
    Column("price_open", DecimalText, nullable=False),
    Column("stop_loss", DecimalText),
    Column("take_profit", DecimalText),
    Column("magic", BigInteger, nullable=False),
    Column("comment", Text, nullable=False),
    Column("opened_at", UtcMicros, nullable=False),
    Column("seen_at", UtcMicros, nullable=False),
)

# -- access control: API keys, the audit log, kill switches ----------------------------------

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    # Role name: ADMIN, MANAGER or INVESTOR.
    Column("role", String(20), nullable=False),
    # scrypt$N$r$p$salt$hash: the secret itself is never stored.
    Column("secret_hash", String(200), nullable=False),
    # JSON lists of ids: a manager's groups, an investor's accounts.
    Column("group_ids", Text, nullable=False),
    Column("account_ids", Text, nullable=False),
    Column("created_at", UtcMicros, nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("revoked_at", UtcMicros),
    Column("revoked_by", String(100), nullable=False),
)

# Append-only: the revision that creates it adds triggers refusing UPDATE and DELETE.
audit_records = Table(
    "audit_records",
    metadata,
    # Gap-free and increasing, assigned by the store's single writer.
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("at", UtcMicros, nullable=False),
    Column("actor", String(100), nullable=False),
    Column("method", String(200), nullable=False),
    Column("request", Text, nullable=False),
    Column("status", String(40), nullable=False),
    Column("reason", String(100), nullable=False),
    Column("result", Text, nullable=False),
    Column("peer", String(200), nullable=False),
)
Index("ix_audit_records_actor", audit_records.c.actor, audit_records.c.sequence)
Index("ix_audit_records_at", audit_records.c.at)

kill_switches = Table(
    "kill_switches",
    metadata,
    Column("kill_switch_id", String(40), primary_key=True),
    # GLOBAL, GROUP or ACCOUNT.
    Column("scope", String(20), nullable=False),
    Column("target_id", String(40), nullable=False),
    Column("flatten", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("activated_at", UtcMicros, nullable=False),
    Column("activated_by", String(100), nullable=False),
    Column("deactivated_at", UtcMicros),
    Column("deactivated_by", String(100), nullable=False),
    # JSON list of the closing master orders a flatten submitted.
    Column("closing_master_order_ids", Text, nullable=False),
)

# -- reporting: balance operations, fee schedules, fee state and crystallised fees -----------

# Deposits, withdrawals and credit, signed as MT5 reports them (money in positive). The
# operation id is the caller's idempotency key, or "ticket-<n>" for one read from the broker.
balance_operations = Table(
    "balance_operations",
    metadata,
    Column("account_id", String(40), ForeignKey("accounts.account_id"), primary_key=True),
    Column("operation_id", String(100), primary_key=True),
    # BalanceOperationKind name: DEPOSIT, WITHDRAWAL or CREDIT.
    Column("kind", String(20), nullable=False),
    Column("amount", DecimalText, nullable=False),
    Column("occurred_at", UtcMicros, nullable=False),
    # The broker's deal ticket (0: recorded by hand).
    Column("ticket", BigInteger, nullable=False),
    Column("comment", Text, nullable=False),
    Column("recorded_by", String(100), nullable=False),
    Column("recorded_at", UtcMicros, nullable=False),
)
Index(
    "ix_balance_operations_account_occurred",
    balance_operations.c.account_id,
    balance_operations.c.occurred_at,
)

fee_schedules = Table(
    "fee_schedules",
    metadata,
    Column("account_id", String(40), ForeignKey("accounts.account_id"), primary_key=True),
    Column("performance_fee_percent", DecimalText, nullable=False),
    # Frequency name: MONTHLY, QUARTERLY or YEARLY.
    Column("crystallisation", String(20), nullable=False),
    Column("management_fee_percent", DecimalText, nullable=False),
    # ManagementFeeBasis name: AVERAGE_EQUITY or CLOSING_EQUITY.
    Column("management_fee_basis", String(20), nullable=False),
    Column("days_per_year", Integer, nullable=False),
    Column("money_step", DecimalText, nullable=False),
    # Fees are charged from this instant on; nothing before it is ever charged.
    Column("effective_from", UtcMicros, nullable=False),
    Column("updated_at", UtcMicros, nullable=False),
    Column("updated_by", String(100), nullable=False),
)

# The performance fee's carried HighWaterMark, as of the end of the last crystallised period.
fee_states = Table(
    "fee_states",
    metadata,
    Column("account_id", String(40), ForeignKey("accounts.account_id"), primary_key=True),
    Column("high_water_mark", DecimalText, nullable=False),
    Column("equity", DecimalText, nullable=False),
    Column("withdrawn_gain", DecimalText, nullable=False),
    Column("as_of", UtcMicros, nullable=False),
    Column("updated_at", UtcMicros, nullable=False),
)

# One row per crystallised period: stored once, never recomputed.
fee_charges = Table(
    "fee_charges",
    metadata,
    Column("account_id", String(40), ForeignKey("accounts.account_id"), primary_key=True),
    Column("period_start", UtcMicros, primary_key=True),
    Column("period_end", UtcMicros, nullable=False),
    Column("high_water_mark", DecimalText, nullable=False),
    Column("equity", DecimalText, nullable=False),
    Column("withdrawn_gain", DecimalText, nullable=False),
    Column("gain", DecimalText, nullable=False),
    Column("performance_fee", DecimalText, nullable=False),
    Column("closing_high_water_mark", DecimalText, nullable=False),
    Column("management_fee", DecimalText, nullable=False),
    Column("management_fee_basis", String(20), nullable=False),
    Column("management_basis_equity", DecimalText, nullable=False),
    Column("management_days", Integer, nullable=False),
    # The rates charged: a later schedule change does not rewrite them.
    Column("performance_fee_percent", DecimalText, nullable=False),
    Column("management_fee_percent", DecimalText, nullable=False),
    Column("crystallised_at", UtcMicros, nullable=False),
)

# -- risk: pre-trade limits, loss limits, their watches and the stop-outs they triggered -----

# A group's risk settings; no row: no limits, policy SKIP, no loss limits.
group_risk = Table(
    "group_risk",
    metadata,
    Column("group_id", String(40), ForeignKey("groups.group_id"), primary_key=True),
    # JSON: the group's RiskLimits, and {account id: RiskLimits} of members with their own.
    Column("risk_limits", Text, nullable=False),
    Column("member_risk_limits", Text, nullable=False),
    # ViolationPolicy name: CLIP or SKIP.
    Column("violation_policy", String(10), nullable=False),
    # JSON LossLimits on the sum of the members' equity, or null.
    Column("loss_limits", Text, nullable=False),
    Column("updated_at", UtcMicros, nullable=False),
)

account_risk = Table(
    "account_risk",
    metadata,
    Column("account_id", String(40), ForeignKey("accounts.account_id"), primary_key=True),
    # JSON LossLimits on the account's equity, or null.
    Column("loss_limits", Text, nullable=False),
    Column("updated_at", UtcMicros, nullable=False),
)

# Each watched account's or group's DrawdownState after its latest reading.
loss_watches = Table(
    "loss_watches",
    metadata,
    # WatchKind name: ACCOUNT or GROUP.
    Column("kind", String(10), primary_key=True),
    Column("subject_id", String(40), primary_key=True),
    # JSON DrawdownState, its active breaches included.
    Column("state", Text, nullable=False),
    # JSON list of the member ids a group's state sums (empty for an account).
    Column("members", Text, nullable=False),
    Column("updated_at", UtcMicros, nullable=False),
)

# Every stop-out, active (ended_at null) or ended: the record of what a loss limit did.
stop_outs = Table(
    "stop_outs",
    metadata,
    Column("stop_out_id", String(40), primary_key=True),
    Column("kind", String(10), nullable=False),
    Column("subject_id", String(40), nullable=False),
    # LossRule name: DAILY_LOSS or MAX_DRAWDOWN; StopOutAction name.
    Column("rule", String(20), nullable=False),
    Column("action", String(20), nullable=False),
    # The breached limit: amount and LossUnit name (MONEY or PERCENT).
    Column("limit_amount", DecimalText, nullable=False),
    Column("limit_unit", String(10), nullable=False),
    # The breaching reading and the figures at it.
    Column("at", UtcMicros, nullable=False),
    Column("equity", DecimalText, nullable=False),
    Column("high_water_mark", DecimalText, nullable=False),
    Column("day_start_equity", DecimalText, nullable=False),
    Column("loss", DecimalText, nullable=False),
    Column("loss_percent", DecimalText),
    Column("recorded_at", UtcMicros, nullable=False),
    Column("ended_at", UtcMicros),
    Column("ended_by", String(200), nullable=False),
    # JSON list of the closing master orders a FLATTEN submitted.
    Column("closing_master_order_ids", Text, nullable=False),
)
Index("ix_stop_outs_subject", stop_outs.c.kind, stop_outs.c.subject_id, stop_outs.c.stop_out_id)

# The one process that may write this database (gateway/store/writer_lock.py): one row, whose
# epoch moves on each time a process takes the writer lock. Every numbering commit reads it and
# fails unless it is still the epoch its process took, so a process that lost the lock (and was
# replaced) cannot commit.
writer_fence = Table(
    "writer_fence",
    metadata,
    Column("fence_id", Integer, primary_key=True, autoincrement=False),
    Column("epoch", BigInteger, nullable=False),
    Column("holder_host", String(255), nullable=False),
    Column("holder_pid", Integer, nullable=False),
    Column("held_since", UtcMicros, nullable=False),
    # Set when the holder let go in an orderly stop; null while held or after a crash.
    Column("released_at", UtcMicros),
)

# -- mirroring: a group's source account and the signals stored from it ------------------------

# A group's source (gateway/domain/group_source.py), and the source's book as last seen (JSON,
# gateway/domain/source_book.py), stored in the same transaction as the signals it gave.
group_sources = Table(
    "group_sources",
    metadata,
    Column("group_id", String(40), ForeignKey("groups.group_id"), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.account_id"), nullable=False),
    # 1 while paused.
    Column("paused", Integer, nullable=False),
    Column("max_signal_age_ms", BigInteger, nullable=False),
    # Empty until the first look; emptied when the source moves to another account.
    Column("book", Text, nullable=False),
    Column("created_at", UtcMicros, nullable=False),
    Column("updated_at", UtcMicros, nullable=False),
)

source_signals = Table(
    "source_signals",
    metadata,
    # Global, increasing: assigned anew at each change of the row (stored, settled).
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("group_id", String(40), ForeignKey("groups.group_id"), nullable=False),
    # Stable across looks and restarts (gateway/domain/source_book.py): one row per change.
    Column("event_id", String(80), nullable=False),
    Column("source_account_id", String(40), nullable=False),
    Column("kind", String(30), nullable=False),
    Column("ticket", BigInteger, nullable=False),
    Column("symbol", String(64), nullable=False),
    Column("side", String(8), nullable=False),
    Column("volume", DecimalText, nullable=False),
    Column("fraction", DecimalText),
    Column("order_type", String(20), nullable=False),
    Column("price", DecimalText),
    Column("stop_limit_price", DecimalText),
    Column("stop_loss", DecimalText),
    Column("take_profit", DecimalText),
    Column("time_in_force", String(20), nullable=False),
    Column("expires_at", UtcMicros),
    # JSON list of the event ids of the copies the signal acts on.
    Column("copies", Text, nullable=False),
    Column("skip", String(30)),
    Column("source_time", UtcMicros, nullable=False),
    Column("state", String(20), nullable=False),
    Column("detail", Text, nullable=False),
    # JSON list of the master orders it made or acted on.
    Column("master_order_ids", Text, nullable=False),
    Column("observed_at", UtcMicros, nullable=False),
    Column("settled_at", UtcMicros),
    UniqueConstraint("group_id", "event_id", name="uq_source_signals_group_event"),
)
Index("ix_source_signals_group", source_signals.c.group_id, source_signals.c.sequence)
Index("ix_source_signals_state", source_signals.c.group_id, source_signals.c.state)

# -- cluster mode (gateway/store/cluster.py, docs/cluster.md) ----------------------------------

# The numbers that must be gap-free and in commit order across processes: one row a series,
# whose value is the last number handed out. A numbering transaction takes its range with an
# UPDATE of the row, and so holds the row's lock until it commits: the next one's range follows
# it, in commit order. One process alone (the default) numbers in process and leaves them be.
sequence_counters = Table(
    "sequence_counters",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# The gateway processes of a cluster, as each last said it was alive (the database's clock).
cluster_nodes = Table(
    "cluster_nodes",
    metadata,
    Column("node_id", String(120), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("address", String(255), nullable=False),
    # The database session that holds the node's group locks: ended by a node taking over a
    # lease this node stopped renewing (it may be stopped or cut off, its session still open).
    Column("session_pid", Integer, nullable=False),
    Column("started_at", UtcMicros, nullable=False),
    Column("heartbeat_at", UtcMicros, nullable=False),
    # Set at an orderly stop.
    Column("stopped_at", UtcMicros),
)

# Who owns each group: the node, and the epoch that moves on at every takeover. Every commit of
# a group's orders reads the row with a share lock and fails unless the epoch is the one its
# node took (fencing); a takeover's update waits for those commits and is seen by later ones.
group_leases = Table(
    "group_leases",
    metadata,
    Column("group_id", String(40), ForeignKey("groups.group_id"), primary_key=True),
    Column("node_id", String(120), nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("acquired_at", UtcMicros, nullable=False),
    Column("renewed_at", UtcMicros, nullable=False),
    # Set when the owner let go in order (drained or stopped): free to take at once.
    Column("released_at", UtcMicros),
    Column("takeovers", Integer, nullable=False),
)
Index("ix_group_leases_node", group_leases.c.node_id)

# Calls about a group made to a node that does not own it, for the owner to do (submissions and
# closes): the asking node waits for the row to be done and answers its caller then
# (gateway/engine/request_forwarding.py). The payload is the call's, as JSON.
forwarded_requests = Table(
    "forwarded_requests",
    metadata,
    Column("request_id", String(40), primary_key=True),
    Column("group_id", String(40), nullable=False),
    # "submit" or "close".
    Column("kind", String(20), nullable=False),
    Column("payload", Text, nullable=False),
    Column("asked_by_node", String(120), nullable=False),
    Column("asked_at", UtcMicros, nullable=False),
    # WAITING, then CLAIMED by the owner, then DONE or FAILED.
    Column("state", String(10), nullable=False),
    Column("claimed_by_node", String(120)),
    Column("master_order_id", String(40)),
    Column("replayed", Integer, nullable=False, server_default="0"),
    # 1 when the call's audit record was stored with the order.
    Column("audited", Integer, nullable=False, server_default="0"),
    # FAILED: the error the owner met, as the caller is to get it.
    Column("error", Text),
    Column("done_at", UtcMicros),
)
Index("ix_forwarded_requests_waiting", forwarded_requests.c.state, forwarded_requests.c.group_id)
