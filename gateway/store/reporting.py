"""What reporting reads and keeps: balance operations, fee schedules, the fee state carried
between crystallisations and the crystallised charges; and, assembled from the account history
(Store.history) and the master orders, the inputs of the domain's reporting functions.

A balance operation is stored once per (account, operation id) and a crystallised charge once
per (account, period start): writing either again stores nothing (INSERT ... ON CONFLICT DO
NOTHING, on SQLite and PostgreSQL alike), so a retried call finds the first write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import Any

from sqlalchemy import Table, and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import Insert

from gateway.domain.balance_operations import BalanceOperation, BalanceOperationKind
from gateway.domain.errors import FailedPrecondition
from gateway.domain.fees import (
    FeeSchedule,
    HighWaterMark,
    ManagementFeeBasis,
    ManagementFeeCharge,
    PerformanceFeeCharge,
)
from gateway.domain.orders import ChildOrder, MasterOrder
from gateway.domain.performance import AccountActivity, EquityPoint, TradeDeal
from gateway.domain.reporting_period import Frequency, Period
from gateway.store import records, tables
from gateway.store.history import AccountHistory

Row = Mapping[Any, Any]

# Deals read per query while assembling a period's activity.
_DEAL_BATCH = 5_000
_AVERAGE_QUANTUM = Decimal("1E-10")
# Master orders per IN (...) list: well below SQLite's and asyncpg's bind parameter limits.
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class RecordedBalanceOperation:
    """A balance operation as recorded: the caller's id for it, and who recorded it when."""

    account_id: str
    operation_id: str
    operation: BalanceOperation
    recorded_by: str
    recorded_at: datetime

    def same_operation(self, other: RecordedBalanceOperation) -> bool:
        """Whether both record the same money movement (who and when recorded aside)."""
        return (self.account_id, self.operation_id, self.operation) == (
            other.account_id,
            other.operation_id,
            other.operation,
        )


@dataclass(frozen=True, slots=True)
class AccountFeeSchedule:
    account_id: str
    schedule: FeeSchedule
    # Fees are charged from here on: the first high-water mark is the first snapshot after it.
    effective_from: datetime
    updated_at: datetime
    updated_by: str


@dataclass(frozen=True, slots=True)
class CrystallisedFee:
    """One crystallisation period's charge, as stored: never recomputed."""

    account_id: str
    performance: PerformanceFeeCharge
    management: ManagementFeeCharge
    performance_fee_percent: Decimal
    management_fee_percent: Decimal
    crystallised_at: datetime

    @property
    def period(self) -> Period:
        return self.performance.period

    @property
    def total(self) -> Decimal:
        return self.performance.fee + self.management.fee


@dataclass(frozen=True, slots=True)
class AccountOrder:
    """A master order an account took part in, with every child of the order (all accounts':
    dispatch skew compares them)."""

    master: MasterOrder
    children: tuple[ChildOrder, ...]


class ReportingStore:
    """The reporting tables, and reporting's reads of the history; reached as `Store.reporting`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._history = AccountHistory(engine)

    # -- balance operations ---------------------------------------------------------------------

    async def record_balance_operation(
        self, recorded: RecordedBalanceOperation
    ) -> tuple[RecordedBalanceOperation, bool]:
        """Stores the operation unless its (account, operation id) is taken; returns what is
        stored under them and whether it was there already.

        FailedPrecondition (FEES_CRYSTALLISED) when it falls before the end of the account's
        last crystallised fee period: the fees charged then did not count it, and are final.
        """
        table = tables.balance_operations
        async with self._engine.begin() as conn:
            existing = await _balance_operation(conn, recorded.account_id, recorded.operation_id)
            if existing is not None:
                return existing, True
            state = await _fee_state(conn, recorded.account_id)
            if state is not None and recorded.operation.time < state.as_of:
                raise FailedPrecondition(
                    f"the account's fees are crystallised up to {state.as_of.isoformat()}: an "
                    f"operation at {recorded.operation.time.isoformat()} would change fees "
                    "already charged",
                    reason="FEES_CRYSTALLISED",
                )
            await conn.execute(
                _insert_if_absent(conn, table), [_balance_operation_values(recorded)]
            )
            stored = await _balance_operation(conn, recorded.account_id, recorded.operation_id)
        assert stored is not None
        return stored, stored != recorded

    async def list_balance_operations(
        self,
        account_id: str,
        *,
        since: datetime | None,
        until: datetime | None,
        limit: int,
        after: tuple[datetime, str] | None = None,
    ) -> list[RecordedBalanceOperation]:
        """A page of the account's operations by (time, operation id), after `after`."""
        table = tables.balance_operations
        query = select(table).where(table.c.account_id == account_id)
        if since is not None:
            query = query.where(table.c.occurred_at >= since)
        if until is not None:
            query = query.where(table.c.occurred_at < until)
        if after is not None:
            at, operation_id = after
            query = query.where(
                or_(
                    table.c.occurred_at > at,
                    and_(table.c.occurred_at == at, table.c.operation_id > operation_id),
                )
            )
        query = query.order_by(table.c.occurred_at, table.c.operation_id).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_balance_operation_from_row(r) for r in rows]

    async def balance_operations_of(
        self, account_id: str, since: datetime, until: datetime
    ) -> list[BalanceOperation]:
        """Every operation of the account in [since, until), by time."""
        table = tables.balance_operations
        query = (
            select(table)
            .where(
                table.c.account_id == account_id,
                table.c.occurred_at >= since,
                table.c.occurred_at < until,
            )
            .order_by(table.c.occurred_at, table.c.operation_id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_balance_operation_from_row(r).operation for r in rows]

    # -- activity: what the domain's reporting functions read -----------------------------------

    async def account_activity(
        self, account_id: str, since: datetime, until: datetime
    ) -> AccountActivity:
        """The account's snapshots, balance operations and deals in [since, until)."""
        snapshots = await self._history.snapshots_of(account_id, since, until)
        return AccountActivity(
            account_id=account_id,
            points=tuple(EquityPoint.of(s) for s in snapshots),
            operations=tuple(await self.balance_operations_of(account_id, since, until)),
            deals=tuple(await self.trade_deals(account_id, since, until)),
        )

    async def trade_deals(
        self, account_id: str, since: datetime, until: datetime
    ) -> list[TradeDeal]:
        """Every deal of the account executed in [since, until), by time then ticket."""
        deals: list[TradeDeal] = []
        after = 0
        while True:
            page = await self._history.deals_of(
                account_id, since, until, limit=_DEAL_BATCH, after_ticket=after
            )
            deals.extend(TradeDeal.of(d) for d in page)
            if len(page) < _DEAL_BATCH:
                break
            after = page[-1].ticket
        return sorted(deals, key=lambda d: (d.executed_at, d.ticket))

    async def accounts_activity(
        self, account_ids: Iterable[str], since: datetime, until: datetime
    ) -> list[AccountActivity]:
        """account_activity of each account, in the order given."""
        return [await self.account_activity(a, since, until) for a in account_ids]

    # -- fees -----------------------------------------------------------------------------------

    async def get_fee_schedule(self, account_id: str) -> AccountFeeSchedule | None:
        table = tables.fee_schedules
        async with self._engine.connect() as conn:
            row = (
                (await conn.execute(select(table).where(table.c.account_id == account_id)))
                .mappings()
                .first()
            )
        return _fee_schedule_from_row(row) if row else None

    async def put_fee_schedule(self, schedule: AccountFeeSchedule) -> None:
        """Creates or replaces the account's schedule."""
        table = tables.fee_schedules
        values = _fee_schedule_values(schedule)
        async with self._engine.begin() as conn:
            updated = await conn.execute(
                table.update().where(table.c.account_id == schedule.account_id).values(values)
            )
            if updated.rowcount == 0:
                await conn.execute(table.insert(), [values])

    async def get_fee_state(self, account_id: str) -> HighWaterMark | None:
        """The high-water mark as of the end of the last crystallised period; None before one."""
        async with self._engine.connect() as conn:
            return await _fee_state(conn, account_id)

    async def save_crystallisation(
        self,
        account_id: str,
        charges: Sequence[CrystallisedFee],
        state: HighWaterMark,
        *,
        at: datetime,
    ) -> None:
        """The charges of newly crystallised periods and the state after them, in one
        transaction. A charge stored already (same period start) is kept as it was."""
        state_table = tables.fee_states
        state_values = {
            "high_water_mark": state.value,
            "equity": state.equity,
            "withdrawn_gain": state.withdrawn_gain,
            "as_of": state.as_of,
            "updated_at": at,
        }
        async with self._engine.begin() as conn:
            if charges:
                await conn.execute(
                    _insert_if_absent(conn, tables.fee_charges),
                    [_fee_charge_values(c) for c in charges],
                )
            updated = await conn.execute(
                state_table.update()
                .where(state_table.c.account_id == account_id)
                .values(state_values)
            )
            if updated.rowcount == 0:
                await conn.execute(
                    state_table.insert(), [{"account_id": account_id, **state_values}]
                )

    async def list_fee_charges(
        self, account_id: str, *, limit: int, after: datetime | None = None
    ) -> list[CrystallisedFee]:
        """A page of the account's crystallised charges, oldest first, after `after` (a period
        start)."""
        table = tables.fee_charges
        query = select(table).where(table.c.account_id == account_id)
        if after is not None:
            query = query.where(table.c.period_start > after)
        query = query.order_by(table.c.period_start).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_fee_charge_from_row(r) for r in rows]

    async def fee_charge_ending_at(self, account_id: str, end: datetime) -> CrystallisedFee | None:
        """The crystallised charge of the period that ends exactly at `end`, if any."""
        table = tables.fee_charges
        query = select(table).where(table.c.account_id == account_id, table.c.period_end == end)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return _fee_charge_from_row(row) if row else None

    # -- execution quality ----------------------------------------------------------------------

    async def orders_of_account(
        self, account_id: str, since: datetime, until: datetime, *, limit: int
    ) -> list[AccountOrder]:
        """The master orders created in [since, until) with a child for the account, oldest
        first, at most `limit`, each with all its children."""
        m, c = tables.master_orders, tables.child_orders
        ids_query = (
            select(m.c.master_order_id)
            .where(
                m.c.created_at >= since,
                m.c.created_at < until,
                m.c.master_order_id.in_(
                    select(c.c.master_order_id).where(c.c.account_id == account_id)
                ),
            )
            .order_by(m.c.created_at, m.c.master_order_id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            ids = list((await conn.execute(ids_query)).scalars())
            masters: dict[str, MasterOrder] = {}
            children: dict[str, list[ChildOrder]] = {i: [] for i in ids}
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                for row in (
                    await conn.execute(select(m).where(m.c.master_order_id.in_(chunk)))
                ).mappings():
                    master = records.master_from_row(row)
                    masters[master.master_order_id] = master
                child_query = (
                    select(c)
                    .where(c.c.master_order_id.in_(chunk))
                    .order_by(c.c.master_order_id, c.c.child_order_id)
                )
                for row in (await conn.execute(child_query)).mappings():
                    child = records.child_from_row(row)
                    children[child.master_order_id].append(child)
        return [AccountOrder(masters[i], tuple(children[i])) for i in ids if i in masters]


# -- helpers -------------------------------------------------------------------------------------


def _insert_if_absent(conn: AsyncConnection, table: Table) -> Insert:
    """INSERT that skips rows whose primary key is stored already."""
    keys = list(table.primary_key.columns)
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=keys)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=keys)
    # The URL check (engines.create_engine) admits only these two databases.
    raise ValueError(f"unsupported database {conn.dialect.name!r}")


async def _balance_operation(
    conn: AsyncConnection, account_id: str, operation_id: str
) -> RecordedBalanceOperation | None:
    table = tables.balance_operations
    query = select(table).where(
        table.c.account_id == account_id, table.c.operation_id == operation_id
    )
    row = (await conn.execute(query)).mappings().first()
    return _balance_operation_from_row(row) if row else None


async def _fee_state(conn: AsyncConnection, account_id: str) -> HighWaterMark | None:
    table = tables.fee_states
    row = (
        (await conn.execute(select(table).where(table.c.account_id == account_id)))
        .mappings()
        .first()
    )
    if row is None:
        return None
    return HighWaterMark(
        value=row["high_water_mark"],
        equity=row["equity"],
        as_of=row["as_of"],
        withdrawn_gain=row["withdrawn_gain"],
    )


def _balance_operation_values(recorded: RecordedBalanceOperation) -> dict[str, Any]:
    operation = recorded.operation
    return {
        "account_id": recorded.account_id,
        "operation_id": recorded.operation_id,
        "kind": operation.kind.value,
        "amount": operation.amount,
        "occurred_at": operation.time,
        "ticket": operation.ticket,
        "comment": operation.comment,
        "recorded_by": recorded.recorded_by,
        "recorded_at": recorded.recorded_at,
    }


def _balance_operation_from_row(row: Row) -> RecordedBalanceOperation:
    return RecordedBalanceOperation(
        account_id=row["account_id"],
        operation_id=row["operation_id"],
        operation=BalanceOperation(
            time=row["occurred_at"],
            kind=BalanceOperationKind(row["kind"]),
            amount=row["amount"],
            ticket=row["ticket"],
            comment=row["comment"],
        ),
        recorded_by=row["recorded_by"],
        recorded_at=row["recorded_at"],
    )


def _fee_schedule_values(stored: AccountFeeSchedule) -> dict[str, Any]:
    schedule = stored.schedule
    return {
        "account_id": stored.account_id,
        "performance_fee_percent": schedule.performance_fee_percent,
        "crystallisation": schedule.crystallisation.value,
        "management_fee_percent": schedule.management_fee_percent,
        "management_fee_basis": schedule.management_fee_basis.value,
        "days_per_year": schedule.days_per_year,
        "money_step": schedule.money_step,
        "effective_from": stored.effective_from,
        "updated_at": stored.updated_at,
        "updated_by": stored.updated_by,
    }


def _fee_schedule_from_row(row: Row) -> AccountFeeSchedule:
    return AccountFeeSchedule(
        account_id=row["account_id"],
        schedule=FeeSchedule(
            performance_fee_percent=row["performance_fee_percent"],
            crystallisation=Frequency(row["crystallisation"]),
            management_fee_percent=row["management_fee_percent"],
            management_fee_basis=ManagementFeeBasis(row["management_fee_basis"]),
            days_per_year=row["days_per_year"],
            money_step=row["money_step"],
        ),
        effective_from=row["effective_from"],
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
    )


def _fee_charge_values(charge: CrystallisedFee) -> dict[str, Any]:
    performance, management = charge.performance, charge.management
    return {
        "account_id": charge.account_id,
        "period_start": performance.period.start,
        "period_end": performance.period.end,
        "high_water_mark": performance.high_water_mark,
        "equity": performance.equity,
        "withdrawn_gain": performance.withdrawn_gain,
        "gain": performance.gain,
        "performance_fee": performance.fee,
        "closing_high_water_mark": performance.closing_high_water_mark,
        "management_fee": management.fee,
        "management_basis_equity": _stored_average(management.basis_equity),
        "management_days": management.days,
        "performance_fee_percent": charge.performance_fee_percent,
        "management_fee_percent": charge.management_fee_percent,
        "crystallised_at": charge.crystallised_at,
        "management_fee_basis": management.basis.value,
    }


def _stored_average(value: Decimal) -> Decimal:
    """An average (34 significant digits) kept to 10 decimals: it then fits the exact decimal
    text of the column; the fee itself was computed from the unrounded value."""
    with localcontext(Context(prec=60)):
        return value.quantize(_AVERAGE_QUANTUM, rounding=ROUND_HALF_EVEN)


def _fee_charge_from_row(row: Row) -> CrystallisedFee:
    period = Period(row["period_start"], row["period_end"])
    return CrystallisedFee(
        account_id=row["account_id"],
        performance=PerformanceFeeCharge(
            period=period,
            high_water_mark=row["high_water_mark"],
            equity=row["equity"],
            withdrawn_gain=row["withdrawn_gain"],
            gain=row["gain"],
            fee=row["performance_fee"],
            crystallised=True,
            closing_high_water_mark=row["closing_high_water_mark"],
        ),
        management=ManagementFeeCharge(
            period=period,
            basis=ManagementFeeBasis(row["management_fee_basis"]),
            days=row["management_days"],
            basis_equity=row["management_basis_equity"],
            fee=row["management_fee"],
        ),
        performance_fee_percent=row["performance_fee_percent"],
        management_fee_percent=row["management_fee_percent"],
        crystallised_at=row["crystallised_at"],
    )
