"""Groups' source accounts and the signals stored from them; reached as `Store.sources`.

A look at a source is one transaction: the source's new book and the look's signals, each new
signal numbered with the next sequence (the writer fence checked, as every numbering commit
does). A signal's event id is unique per group: a look taken again after a crash stores
nothing twice. Settling a signal (what was done with it) numbers it again, so a reader that
resumes after the last sequence it read sees every change.

Each transaction writes first and checks the fence last (as Store._numbering does): on SQLite
a transaction that reads first pins a snapshot that a concurrent writer's commit makes stale,
and its write then fails at once ("database is locked", SQLITE_BUSY) instead of waiting.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.domain.group_source import GroupSource, SignalRecord, SignalState, first_state
from gateway.domain.ids import AccountId, GroupId, MasterOrderId
from gateway.domain.orders import OrderType, Side, TimeInForce
from gateway.domain.source_book import (
    SignalKind,
    SkipReason,
    SourceBook,
    SourceSignal,
    book_to_json,
)
from gateway.store import tables
from gateway.store.cluster import Series, take_numbers

Fence = Callable[[AsyncConnection], Awaitable[None]]


class SourceStore:
    def __init__(
        self, engine: AsyncEngine, *, fence: Fence | None = None, counted: bool = False
    ) -> None:
        self._engine = engine
        self._fence = fence
        # Cluster mode: sequences from the database's counter (gateway/store/cluster.py).
        self._counted = counted
        # Signals are numbered by this process, the database's one writer: one numbering
        # transaction at a time.
        self._numbering = asyncio.Lock()

    # -- sources --------------------------------------------------------------------------

    async def group_sources(self) -> list[GroupSource]:
        table = tables.group_sources
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(table).order_by(table.c.group_id))).mappings()
            return [_source_of(row) for row in rows.all()]

    async def get_group_source(self, group_id: GroupId) -> GroupSource | None:
        table = tables.group_sources
        async with self._engine.connect() as conn:
            row = (
                (await conn.execute(select(table).where(table.c.group_id == group_id)))
                .mappings()
                .first()
            )
        return None if row is None else _source_of(row)

    async def source_of_account(self, account_id: AccountId) -> GroupSource | None:
        """The group the account is the source of, if any."""
        table = tables.group_sources
        async with self._engine.connect() as conn:
            row = (
                (await conn.execute(select(table).where(table.c.account_id == account_id)))
                .mappings()
                .first()
            )
        return None if row is None else _source_of(row)

    async def set_group_source(self, source: GroupSource) -> None:
        """Stores the group's source; a new account starts with an empty book (its first look
        records what it holds without copying it)."""
        table = tables.group_sources
        values: dict[str, Any] = {
            "account_id": source.account_id,
            "paused": int(source.paused),
            "max_signal_age_ms": int(source.max_signal_age / timedelta(milliseconds=1)),
            "updated_at": source.updated_at,
        }
        async with self._engine.begin() as conn:
            changed = await conn.execute(
                update(table)
                .where(table.c.group_id == source.group_id)
                .values(
                    book=case((table.c.account_id == source.account_id, table.c.book), else_=""),
                    **values,
                )
            )
            if not changed.rowcount:
                await conn.execute(
                    table.insert().values(
                        group_id=source.group_id,
                        book="",
                        created_at=source.created_at,
                        **values,
                    )
                )

    async def remove_group_source(self, group_id: GroupId) -> bool:
        table = tables.group_sources
        async with self._engine.begin() as conn:
            result = await conn.execute(table.delete().where(table.c.group_id == group_id))
        return bool(result.rowcount)

    async def source_book(self, group_id: GroupId) -> str:
        table = tables.group_sources
        async with self._engine.connect() as conn:
            book = (
                await conn.execute(select(table.c.book).where(table.c.group_id == group_id))
            ).scalar()
        return book or ""

    # -- signals --------------------------------------------------------------------------

    async def record_source_look(
        self,
        group_id: GroupId,
        account_id: AccountId,
        book: SourceBook,
        signals: Sequence[SourceSignal],
        *,
        observed_at: datetime,
    ) -> list[SignalRecord]:
        """The source's new book and the look's new signals, together; returns the signals
        stored (one already stored under its event id is not stored again)."""
        table = tables.source_signals
        async with self._numbering, self._engine.begin() as conn:
            await conn.execute(
                update(tables.group_sources)
                .where(tables.group_sources.c.group_id == group_id)
                .values(book=book_to_json(book))
            )
            if not signals:
                if self._fence is not None:
                    await self._fence(conn)
                return []
            known = set(
                (
                    await conn.execute(
                        select(table.c.event_id).where(
                            table.c.group_id == group_id,
                            table.c.event_id.in_([s.event_id for s in signals]),
                        )
                    )
                ).scalars()
            )
            new = []
            for signal in signals:
                if signal.event_id not in known:
                    known.add(signal.event_id)
                    new.append(signal)
            if not new:
                if self._fence is not None:
                    await self._fence(conn)
                return []
            if self._counted:
                sequence = await take_numbers(conn, Series.SOURCE_SIGNALS, len(new)) - 1
            else:
                sequence = await _last_sequence(conn)
            stored = []
            for signal in new:
                sequence += 1
                state, detail = first_state(signal)
                stored.append(
                    SignalRecord(
                        sequence=sequence,
                        group_id=group_id,
                        source_account_id=account_id,
                        signal=signal,
                        state=state,
                        detail=detail,
                        master_order_ids=(),
                        observed_at=observed_at,
                        settled_at=observed_at if state is not SignalState.WAITING else None,
                    )
                )
            if stored:
                await conn.execute(table.insert(), [_signal_values(r) for r in stored])
            if self._fence is not None:
                await self._fence(conn)
        return stored

    async def waiting_signals(self, group_id: GroupId) -> list[SignalRecord]:
        """The group's signals still to act on, in the order they were stored."""
        table = tables.source_signals
        query = (
            select(table)
            .where(table.c.group_id == group_id, table.c.state == SignalState.WAITING.value)
            .order_by(table.c.sequence)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_signal_of(row) for row in rows]

    async def settle_signal(
        self,
        group_id: GroupId,
        event_id: str,
        *,
        state: SignalState,
        detail: str,
        master_order_ids: Sequence[MasterOrderId],
        at: datetime,
    ) -> SignalRecord | None:
        """What was done with a WAITING signal; None when it was settled already."""
        table = tables.source_signals
        where = (
            table.c.group_id == group_id,
            table.c.event_id == event_id,
            table.c.state == SignalState.WAITING.value,
        )
        # The next sequence is read by the update itself (its first statement is a write).
        next_sequence: Any = (
            select(func.coalesce(func.max(table.c.sequence), 0) + 1)
            .select_from(table)
            .scalar_subquery()
        )
        async with self._numbering, self._engine.begin() as conn:
            if self._counted:
                next_sequence = await take_numbers(conn, Series.SOURCE_SIGNALS, 1)
            result = await conn.execute(
                update(table)
                .where(*where)
                .values(
                    sequence=next_sequence,
                    state=state.value,
                    detail=detail,
                    master_order_ids=json.dumps(list(master_order_ids)),
                    settled_at=at,
                )
            )
            if not result.rowcount:
                return None
            row = (
                (
                    await conn.execute(
                        select(table).where(
                            table.c.group_id == group_id, table.c.event_id == event_id
                        )
                    )
                )
                .mappings()
                .one()
            )
            if self._fence is not None:
                await self._fence(conn)
        return _signal_of(row)

    async def list_signals(
        self,
        *,
        group_id: GroupId | None = None,
        after_sequence: int = 0,
        limit: int = 1_000,
        within_groups: frozenset[GroupId] | None = None,
    ) -> list[SignalRecord]:
        """Signals changed after `after_sequence`, oldest change first; of one group, or of
        `within_groups` (a caller's groups), or all."""
        table = tables.source_signals
        query = select(table).where(table.c.sequence > after_sequence)
        if group_id is not None:
            query = query.where(table.c.group_id == group_id)
        if within_groups is not None:
            query = query.where(table.c.group_id.in_(sorted(within_groups)))
        query = query.order_by(table.c.sequence).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_signal_of(row) for row in rows]

    async def signal_times(
        self, signals: Sequence[tuple[GroupId, str]]
    ) -> dict[tuple[GroupId, str], datetime]:
        """When the source made each change, by (group, signal id): what execution quality
        measures a copy's latency from."""
        table = tables.source_signals
        times: dict[tuple[GroupId, str], datetime] = {}
        wanted = sorted(set(signals))
        async with self._engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                query = select(table.c.group_id, table.c.event_id, table.c.source_time).where(
                    table.c.group_id.in_({g for g, _ in chunk}),
                    table.c.event_id.in_({e for _, e in chunk}),
                )
                for row in (await conn.execute(query)).all():
                    times[(row.group_id, row.event_id)] = row.source_time
        return times


async def _last_sequence(conn: AsyncConnection) -> int:
    last = (await conn.execute(select(func.max(tables.source_signals.c.sequence)))).scalar()
    return int(last or 0)


def _source_of(row: Any) -> GroupSource:
    return GroupSource(
        group_id=row["group_id"],
        account_id=row["account_id"],
        paused=bool(row["paused"]),
        max_signal_age=timedelta(milliseconds=row["max_signal_age_ms"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _signal_values(record: SignalRecord) -> dict[str, Any]:
    s = record.signal
    return {
        "sequence": record.sequence,
        "group_id": record.group_id,
        "event_id": s.event_id,
        "source_account_id": record.source_account_id,
        "kind": s.kind.value,
        "ticket": s.ticket,
        "symbol": s.symbol,
        "side": s.side.value,
        "volume": s.volume,
        "fraction": s.fraction,
        "order_type": s.order_type.value,
        "price": s.price,
        "stop_limit_price": s.stop_limit_price,
        "stop_loss": s.stop_loss,
        "take_profit": s.take_profit,
        "time_in_force": s.time_in_force.value,
        "expires_at": s.expires_at,
        "copies": json.dumps(list(s.copies)),
        "skip": None if s.skip is None else s.skip.value,
        "source_time": s.source_time,
        "state": record.state.value,
        "detail": record.detail,
        "master_order_ids": json.dumps(list(record.master_order_ids)),
        "observed_at": record.observed_at,
        "settled_at": record.settled_at,
    }


def _signal_of(row: Any) -> SignalRecord:
    signal = SourceSignal(
        event_id=row["event_id"],
        kind=SignalKind(row["kind"]),
        ticket=row["ticket"],
        symbol=row["symbol"],
        side=Side(row["side"]),
        volume=row["volume"],
        source_time=row["source_time"],
        fraction=row["fraction"],
        order_type=OrderType(row["order_type"]),
        price=row["price"],
        stop_limit_price=row["stop_limit_price"],
        stop_loss=row["stop_loss"],
        take_profit=row["take_profit"],
        time_in_force=TimeInForce(row["time_in_force"]),
        expires_at=row["expires_at"],
        copies=tuple(json.loads(row["copies"])),
        skip=None if row["skip"] is None else SkipReason(row["skip"]),
    )
    return SignalRecord(
        sequence=row["sequence"],
        group_id=row["group_id"],
        source_account_id=row["source_account_id"],
        signal=signal,
        state=SignalState(row["state"]),
        detail=row["detail"],
        master_order_ids=tuple(json.loads(row["master_order_ids"])),
        observed_at=row["observed_at"],
        settled_at=row["settled_at"],
    )
