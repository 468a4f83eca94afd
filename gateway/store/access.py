"""API keys, the audit log and kill switches; reached as `Store.access`.

Audit records are numbered here, in process, under a lock, like fills: gap-free and increasing
for one gateway process per database (the writer lock, gateway/store/writer_lock.py), each
numbering transaction fenced. A batch of records is one transaction (group commit). After a
numbering transaction failed, its numbers are in doubt (it may have committed): the next one
reads the largest stored sequence again first.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.domain.access import ApiKey, Role
from gateway.domain.audit import AuditRecord
from gateway.domain.kill_switches import KillSwitch, KillSwitchScope
from gateway.store import tables
from gateway.store.cluster import KEYS_CHANNEL, Series, take_numbers

Row = Mapping[Any, Any]
# Raises unless this process may still commit numbered rows (the store's writer fence).
FenceCheck = Callable[[AsyncConnection], Awaitable[None]]


class AccessStore:
    def __init__(
        self,
        engine: AsyncEngine,
        last_audit_sequence: int,
        *,
        fence: FenceCheck | None = None,
        counted: bool = False,
    ) -> None:
        self._engine = engine
        # Cluster mode: sequences from the database's counter (gateway/store/cluster.py).
        self._counted = counted
        self._last_audit = last_audit_sequence
        self._audit_lock = asyncio.Lock()
        self._fence = fence
        self._in_doubt = False
        # The append_audit under way (its attempt and numbered records), and those found
        # stored after they failed.
        self._pending: tuple[object, list[AuditRecord]] | None = None
        self._landed: dict[object, list[AuditRecord]] = {}

    @classmethod
    async def open(
        cls, engine: AsyncEngine, *, fence: FenceCheck | None = None, counted: bool = False
    ) -> AccessStore:
        async with engine.connect() as conn:
            last = (await conn.execute(select(func.max(tables.audit_records.c.sequence)))).scalar()
        return cls(engine, int(last or 0), fence=fence, counted=counted)

    # -- API keys ---------------------------------------------------------------------------

    async def insert_api_key(self, key: ApiKey) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(tables.api_keys.insert().values(**_key_values(key)))

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(tables.api_keys).where(tables.api_keys.c.key_id == key_id)
                )
            ).first()
        return _key_of(row._mapping) if row else None

    async def get_api_keys(self, key_ids: Collection[str]) -> dict[str, ApiKey]:
        """The stored keys among `key_ids`, by id (a missing one is left out); a query per
        500 ids, well below any database's limit on bound parameters."""
        table = tables.api_keys
        wanted = sorted(set(key_ids))
        found: dict[str, ApiKey] = {}
        async with self._engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                rows = (await conn.execute(select(table).where(table.c.key_id.in_(chunk)))).all()
                for row in rows:
                    key = _key_of(row._mapping)
                    found[key.key_id] = key
        return found

    async def list_api_keys(
        self, *, after: str, limit: int, include_revoked: bool = False
    ) -> list[ApiKey]:
        """In creation order (then key id), after the key `after` (empty: from the start)."""
        table = tables.api_keys
        query = select(table).order_by(table.c.created_at, table.c.key_id).limit(limit)
        if after:
            anchor = select(table.c.created_at).where(table.c.key_id == after).scalar_subquery()
            query = query.where(
                (table.c.created_at > anchor)
                | ((table.c.created_at == anchor) & (table.c.key_id > after))
            )
        if not include_revoked:
            query = query.where(table.c.revoked_at.is_(None))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_key_of(r._mapping) for r in rows]

    async def revoke_api_key(self, key_id: str, at: datetime, by: str) -> ApiKey | None:
        """Revokes once: a second revocation keeps the first one's time and author."""
        table = tables.api_keys
        async with self._engine.begin() as conn:
            await conn.execute(
                update(table)
                .where(table.c.key_id == key_id, table.c.revoked_at.is_(None))
                .values(revoked_at=at, revoked_by=by)
            )
            row = (await conn.execute(select(table).where(table.c.key_id == key_id))).first()
            if self._counted:
                # Cluster mode: every node drops the key from its cache at the commit.
                await conn.execute(
                    text("SELECT pg_notify(:channel, :key_id)"),
                    {"channel": KEYS_CHANNEL, "key_id": key_id},
                )
        return _key_of(row._mapping) if row else None

    async def has_admin_key(self) -> bool:
        table = tables.api_keys
        async with self._engine.connect() as conn:
            found = (
                await conn.execute(
                    select(table.c.key_id)
                    .where(table.c.role == Role.ADMIN.name, table.c.revoked_at.is_(None))
                    .limit(1)
                )
            ).first()
        return found is not None

    # -- audit log --------------------------------------------------------------------------

    async def append_audit(
        self, records: Sequence[AuditRecord], *, attempt: object = None
    ) -> list[AuditRecord]:
        """Stores the records in one transaction, numbered in order; returns them numbered.
        `attempt`: the same object on each try of one batch; a try that failed but was stored
        all the same (a connection lost during COMMIT) is returned, not stored twice."""
        if not records:
            return []
        async with self._audit_lock:
            await self.settle_doubt()
            if attempt is not None and attempt in self._landed:
                return self._landed.pop(attempt)
            self._in_doubt = True  # until the commit is known to have happened
            async with self._engine.begin() as conn:
                first = await self._first(conn, len(records))
                numbered = [replace(r, sequence=first + i) for i, r in enumerate(records)]
                self._pending = None if attempt is None else (attempt, numbered)
                await conn.execute(
                    tables.audit_records.insert(), [audit_values(r) for r in numbered]
                )
                # After the write, which takes SQLite's write lock (see Store._numbering).
                if self._fence is not None:
                    await self._fence(conn)
            self._last_audit = max(self._last_audit, numbered[-1].sequence)
            self._in_doubt = False
            self._pending = None
        return numbered

    async def _first(self, conn: AsyncConnection, count: int) -> int:
        if self._counted:
            return await take_numbers(conn, Series.AUDIT_RECORDS, count)
        return self._last_audit + 1

    async def settle_doubt(self) -> None:
        """Call with audit_lock held: after a failed numbering transaction, the largest stored
        sequence read again (it may have committed; nothing else has written since)."""
        if not self._in_doubt:
            return
        if self._counted:
            # Other nodes number too: the attempt landed if its first record is there.
            if self._pending is not None:
                attempt, numbered = self._pending
                if await self._stored_as_numbered(numbered[0]):
                    self._landed[attempt] = numbered
            self._pending = None
            self._in_doubt = False
            return
        async with self._engine.connect() as conn:
            last = (await conn.execute(select(func.max(tables.audit_records.c.sequence)))).scalar()
        if int(last or 0) > self._last_audit and self._pending is not None:
            attempt, numbered = self._pending
            self._landed[attempt] = numbered
        self._pending = None
        self._last_audit = int(last or 0)
        self._in_doubt = False

    def doubted(self) -> None:
        """A transaction of the store's that stores a numbered record is about to commit: in
        doubt until `stored`."""
        self._in_doubt = True
        self._pending = None

    @property
    def audit_lock(self) -> asyncio.Lock:
        """Held while an audit record is numbered and committed (by append_audit, or by a
        transaction of the store that stores one with what it records)."""
        return self._audit_lock

    async def _stored_as_numbered(self, record: AuditRecord) -> bool:
        table = tables.audit_records
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(table.c.sequence).where(
                        table.c.sequence == record.sequence,
                        table.c.at == record.at,
                        table.c.actor == record.actor,
                        table.c.method == record.method,
                    )
                )
            ).first()
        return row is not None

    async def numbered_in(self, conn: AsyncConnection, record: AuditRecord) -> AuditRecord:
        """The record with the next sequence, for the transaction on `conn`; call with
        audit_lock held, then `stored` after the commit."""
        return replace(record, sequence=await self._first(conn, 1))

    def stored(self, record: AuditRecord) -> None:
        self._last_audit = max(self._last_audit, record.sequence)
        self._in_doubt = False

    async def list_audit(
        self,
        *,
        after_sequence: int,
        limit: int,
        actor: str = "",
        method: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[AuditRecord]:
        table = tables.audit_records
        query = (
            select(table)
            .where(table.c.sequence > after_sequence)
            .order_by(table.c.sequence)
            .limit(limit)
        )
        if actor:
            query = query.where(table.c.actor == actor)
        if method:
            query = query.where(table.c.method == method)
        if since is not None:
            query = query.where(table.c.at >= since)
        if until is not None:
            query = query.where(table.c.at < until)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_audit_of(r._mapping) for r in rows]

    # -- kill switches ----------------------------------------------------------------------

    async def insert_kill_switch(self, switch: KillSwitch) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(tables.kill_switches.insert().values(**_switch_values(switch)))

    async def get_kill_switch(self, kill_switch_id: str) -> KillSwitch | None:
        table = tables.kill_switches
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(table).where(table.c.kill_switch_id == kill_switch_id))
            ).first()
        return _switch_of(row._mapping) if row else None

    async def deactivate_kill_switch(
        self, kill_switch_id: str, at: datetime, by: str
    ) -> KillSwitch | None:
        table = tables.kill_switches
        async with self._engine.begin() as conn:
            await conn.execute(
                update(table)
                .where(table.c.kill_switch_id == kill_switch_id, table.c.deactivated_at.is_(None))
                .values(deactivated_at=at, deactivated_by=by)
            )
            row = (
                await conn.execute(select(table).where(table.c.kill_switch_id == kill_switch_id))
            ).first()
        return _switch_of(row._mapping) if row else None

    async def set_closing_orders(
        self, kill_switch_id: str, master_order_ids: Sequence[str]
    ) -> None:
        table = tables.kill_switches
        async with self._engine.begin() as conn:
            await conn.execute(
                update(table)
                .where(table.c.kill_switch_id == kill_switch_id)
                .values(closing_master_order_ids=json.dumps(list(master_order_ids)))
            )

    async def list_kill_switches(
        self, *, offset: int, limit: int, active_only: bool = False
    ) -> list[KillSwitch]:
        """Newest first."""
        table = tables.kill_switches
        query = (
            select(table)
            .order_by(table.c.activated_at.desc(), table.c.kill_switch_id.desc())
            .offset(offset)
            .limit(limit)
        )
        if active_only:
            query = query.where(table.c.deactivated_at.is_(None))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_switch_of(r._mapping) for r in rows]


def _key_values(key: ApiKey) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "name": key.name,
        "role": key.role.name,
        "secret_hash": key.secret_hash,
        "group_ids": json.dumps(sorted(key.group_ids)),
        "account_ids": json.dumps(sorted(key.account_ids)),
        "created_at": key.created_at,
        "created_by": key.created_by,
        "revoked_at": key.revoked_at,
        "revoked_by": key.revoked_by,
    }


def _key_of(row: Row) -> ApiKey:
    return ApiKey(
        key_id=row["key_id"],
        name=row["name"],
        role=Role[row["role"]],
        secret_hash=row["secret_hash"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        group_ids=frozenset(json.loads(row["group_ids"])),
        account_ids=frozenset(json.loads(row["account_ids"])),
        revoked_at=row["revoked_at"],
        revoked_by=row["revoked_by"],
    )


def audit_values(record: AuditRecord) -> dict[str, Any]:
    return {
        "sequence": record.sequence,
        "at": record.at,
        "actor": record.actor,
        "method": record.method,
        "request": record.request,
        "status": record.status,
        "reason": record.reason,
        "result": record.result,
        "peer": record.peer,
    }


def _audit_of(row: Row) -> AuditRecord:
    return AuditRecord(
        sequence=row["sequence"],
        at=row["at"],
        actor=row["actor"],
        method=row["method"],
        request=row["request"],
        status=row["status"],
        reason=row["reason"],
        result=row["result"],
        peer=row["peer"],
    )


def _switch_values(switch: KillSwitch) -> dict[str, Any]:
    return {
        "kill_switch_id": switch.kill_switch_id,
        "scope": switch.scope.name,
        "target_id": switch.target_id,
        "flatten": int(switch.flatten),
        "reason": switch.reason,
        "activated_at": switch.activated_at,
        "activated_by": switch.activated_by,
        "deactivated_at": switch.deactivated_at,
        "deactivated_by": switch.deactivated_by,
        "closing_master_order_ids": json.dumps(list(switch.closing_master_order_ids)),
    }


def _switch_of(row: Row) -> KillSwitch:
    return KillSwitch(
        kill_switch_id=row["kill_switch_id"],
        scope=KillSwitchScope[row["scope"]],
        target_id=row["target_id"],
        flatten=bool(row["flatten"]),
        reason=row["reason"],
        activated_at=row["activated_at"],
        activated_by=row["activated_by"],
        deactivated_at=row["deactivated_at"],
        deactivated_by=row["deactivated_by"],
        closing_master_order_ids=tuple(json.loads(row["closing_master_order_ids"])),
    )
