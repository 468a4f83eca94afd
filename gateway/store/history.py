"""Each account's history, the record reporting reads: money snapshots, the broker's deals and
the open positions, written a round (many accounts) at a time.

A round is one transaction (group commit): its snapshots, the deals not stored yet, each read
account's positions replaced, and each account's latest money on its `accounts` row. A deal is
identified by (account_id, ticket): reading it again, in the same round or a later one, stores
nothing (INSERT ... ON CONFLICT DO NOTHING, on SQLite and PostgreSQL alike), so a reader may
overlap the deals it asks a terminal for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import Insert

from gateway.domain.account_history import (
    AccountDeal,
    AccountPosition,
    AccountReading,
    DealEntry,
)
from gateway.domain.accounts import AccountSnapshot
from gateway.domain.orders import Side
from gateway.store import tables

Row = Mapping[Any, Any]

# Accounts per IN (...) list: well below SQLite's and asyncpg's bind parameter limits.
_CHUNK = 500


class AccountHistory:
    """The account history tables; reached as `Store.history`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def save_account_history(self, readings: Sequence[AccountReading]) -> list[str]:
        """Stores a round of readings in one transaction: all of it, or (on error) nothing.

        Readings of accounts not stored (yet: a terminal is attached just before its account
        is inserted) are left out rather than fail the round. Returns the accounts stored.
        """
        if not readings:
            return []
        async with self._engine.begin() as conn:
            known = await _stored_accounts(conn, {r.account_id for r in readings})
            readings = [r for r in readings if r.account_id in known]
            if not readings:
                return []
            account_ids = sorted({r.account_id for r in readings})
            snapshots = [_snapshot_values(r) for r in readings]
            deals = [_deal_values(d) for r in readings for d in r.deals]
            positions = [_position_values(p) for r in readings for p in r.positions]
            await conn.execute(_insert_if_absent(conn, tables.account_snapshots), snapshots)
            if deals:
                await conn.execute(_insert_if_absent(conn, tables.deals), deals)
            for start in range(0, len(account_ids), _CHUNK):
                chunk = account_ids[start : start + _CHUNK]
                await conn.execute(
                    delete(tables.positions).where(tables.positions.c.account_id.in_(chunk))
                )
            if positions:
                await conn.execute(tables.positions.insert(), positions)
            await _refresh_latest_snapshots(conn, readings)
        return account_ids

    async def snapshots_of(
        self, account_id: str, since: datetime, until: datetime
    ) -> list[AccountSnapshot]:
        """The account's snapshots taken in [since, until), oldest first."""
        table = tables.account_snapshots
        query = (
            select(table)
            .where(
                table.c.account_id == account_id,
                table.c.taken_at >= since,
                table.c.taken_at < until,
            )
            .order_by(table.c.taken_at)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_snapshot_from_row(r) for r in rows]

    async def deals_of(
        self,
        account_id: str,
        since: datetime,
        until: datetime,
        *,
        limit: int,
        after_ticket: int = 0,
    ) -> list[AccountDeal]:
        """A page of the account's deals executed in [since, until), by ticket: the next page
        starts after the last ticket of this one."""
        table = tables.deals
        query = (
            select(table)
            .where(
                table.c.account_id == account_id,
                table.c.ticket > after_ticket,
                table.c.executed_at >= since,
                table.c.executed_at < until,
            )
            .order_by(table.c.ticket)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_deal_from_row(r) for r in rows]

    async def positions_of(self, account_id: str) -> list[AccountPosition]:
        """The account's open positions when its terminal was last read, by ticket."""
        table = tables.positions
        query = select(table).where(table.c.account_id == account_id).order_by(table.c.ticket)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_position_from_row(r) for r in rows]

    async def last_deal_time(self, account_id: str) -> datetime | None:
        """When the account's newest stored deal was executed; None before any."""
        return (await self.last_deal_times([account_id])).get(account_id)

    async def last_deal_times(self, account_ids: Iterable[str]) -> dict[str, datetime]:
        """last_deal_time of many accounts in one read; accounts without deals are absent."""
        ids = sorted(set(account_ids))
        table = tables.deals
        found: dict[str, datetime] = {}
        async with self._engine.connect() as conn:
            for start in range(0, len(ids), _CHUNK):
                query = (
                    select(table.c.account_id, func.max(table.c.executed_at))
                    .where(table.c.account_id.in_(ids[start : start + _CHUNK]))
                    .group_by(table.c.account_id)
                )
                for account_id, executed_at in await conn.execute(query):
                    found[account_id] = executed_at
        return found


async def _stored_accounts(conn: AsyncConnection, account_ids: set[str]) -> set[str]:
    ids = sorted(account_ids)
    table = tables.accounts
    found: set[str] = set()
    for start in range(0, len(ids), _CHUNK):
        query = select(table.c.account_id).where(
            table.c.account_id.in_(ids[start : start + _CHUNK])
        )
        found.update((await conn.execute(query)).scalars())
    return found


def _insert_if_absent(conn: AsyncConnection, table: Table) -> Insert:
    """INSERT that skips rows whose primary key is stored already."""
    keys = list(table.primary_key.columns)
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=keys)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=keys)
    # The URL check (engines.create_engine) admits only these two databases.
    raise ValueError(f"unsupported database {conn.dialect.name!r}")


async def _refresh_latest_snapshots(
    conn: AsyncConnection, readings: Sequence[AccountReading]
) -> None:
    """Each account row's latest money, unless it already holds a newer snapshot."""
    table = tables.accounts
    statement = (
        update(table)
        .where(
            table.c.account_id == bindparam("b_account_id"),
            or_(table.c.snapshot_at.is_(None), table.c.snapshot_at < bindparam("b_newer_than")),
        )
        .values(
            balance=bindparam("b_balance"),
            equity=bindparam("b_equity"),
            margin=bindparam("b_margin"),
            free_margin=bindparam("b_free_margin"),
            snapshot_at=bindparam("b_snapshot_at"),
        )
    )
    params = [
        {
            "b_account_id": r.account_id,
            "b_newer_than": r.taken_at,
            "b_balance": r.snapshot.balance,
            "b_equity": r.snapshot.equity,
            "b_margin": r.snapshot.margin,
            "b_free_margin": r.snapshot.free_margin,
            "b_snapshot_at": r.taken_at,
        }
        for r in readings
    ]
    await conn.execute(statement, params)


# -- rows <-> domain objects -------------------------------------------------------------------


def _snapshot_values(reading: AccountReading) -> dict[str, Any]:
    snapshot = reading.snapshot
    return {
        "account_id": reading.account_id,
        "taken_at": snapshot.time,
        "balance": snapshot.balance,
        "equity": snapshot.equity,
        "margin": snapshot.margin,
        "free_margin": snapshot.free_margin,
    }


def _snapshot_from_row(row: Row) -> AccountSnapshot:
    return AccountSnapshot(
        balance=row["balance"],
        equity=row["equity"],
        margin=row["margin"],
        free_margin=row["free_margin"],
        time=row["taken_at"],
    )


_DEAL_FIELDS = (
    "account_id",
    "ticket",
    "order_ticket",
    "position_ticket",
    "symbol",
    "volume",
    "price",
    "profit",
    "magic",
    "comment",
    "executed_at",
)


def _deal_values(deal: AccountDeal) -> dict[str, Any]:
    values = {name: getattr(deal, name) for name in _DEAL_FIELDS}
    values.update(side=deal.side.value, entry=deal.entry.name)
    return values


def _deal_from_row(row: Row) -> AccountDeal:
    return AccountDeal(
        side=Side(row["side"]),
        entry=DealEntry[row["entry"]],
        **{name: row[name] for name in _DEAL_FIELDS},
    )


_POSITION_FIELDS = (
    "account_id",
    "ticket",
    "symbol",
    "volume",
    "price_open",
    "stop_loss",
    "take_profit",
    "magic",
    "comment",
    "opened_at",
    "seen_at",
)


def _position_values(position: AccountPosition) -> dict[str, Any]:
    values = {name: getattr(position, name) for name in _POSITION_FIELDS}
    values["side"] = position.side.value
    return values


def _position_from_row(row: Row) -> AccountPosition:
    return AccountPosition(side=Side(row["side"]), **{name: row[name] for name in _POSITION_FIELDS})
