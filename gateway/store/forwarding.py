"""Cluster mode: calls about a group made to a node that does not own it, stored for the owner
to do (gateway/engine/request_forwarding.py). PostgreSQL only.

A row is stored WAITING and announced on FORWARD_CHANNEL (delivered at the commit); the owner
claims the waiting rows of its groups (FOR UPDATE SKIP LOCKED: two claims never take one row),
does each, and stores DONE with the master order, or FAILED with the error, announcing it on
FORWARD_DONE_CHANNEL; the asking node reads the row then.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.domain.ids import GroupId, MasterOrderId
from gateway.store import tables

FORWARD_CHANNEL = "mam_forward"
FORWARD_DONE_CHANNEL = "mam_forward_done"


@dataclass(frozen=True, slots=True)
class ForwardedRequest:
    request_id: str
    group_id: GroupId
    kind: str
    payload: str
    state: str = "WAITING"
    master_order_id: MasterOrderId | None = None
    replayed: bool = False
    error: str | None = None
    audited: bool = False


class ForwardedRequests:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def ask(self, request: ForwardedRequest, *, node_id: str, at: datetime) -> None:
        table = tables.forwarded_requests
        async with self._engine.begin() as conn:
            await conn.execute(
                table.insert().values(
                    request_id=request.request_id,
                    group_id=request.group_id,
                    kind=request.kind,
                    payload=request.payload,
                    asked_by_node=node_id,
                    asked_at=at,
                    state="WAITING",
                )
            )
            await conn.execute(
                text("SELECT pg_notify(:channel, :group_id)"),
                {"channel": FORWARD_CHANNEL, "group_id": request.group_id},
            )

    async def claim(self, groups: Collection[GroupId], *, node_id: str) -> list[ForwardedRequest]:
        """The waiting requests of these groups, now this node's to do, oldest first."""
        if not groups:
            return []
        async with self._engine.begin() as conn:
            rows = (
                await conn.execute(
                    text(
                        "UPDATE forwarded_requests SET state = 'CLAIMED', claimed_by_node = :node "
                        "WHERE request_id IN (SELECT request_id FROM forwarded_requests "
                        "WHERE state = 'WAITING' AND group_id = ANY(:groups) "
                        "ORDER BY asked_at FOR UPDATE SKIP LOCKED) "
                        "RETURNING request_id, group_id, kind, payload, asked_at"
                    ),
                    {"node": node_id, "groups": sorted(groups)},
                )
            ).all()
        return [
            ForwardedRequest(r.request_id, GroupId(r.group_id), r.kind, r.payload)
            for r in sorted(rows, key=lambda r: r.asked_at)
        ]

    async def finish(
        self,
        request_id: str,
        *,
        at: datetime,
        master_order_id: MasterOrderId | None = None,
        replayed: bool = False,
        audited: bool = False,
        error: str | None = None,
    ) -> None:
        table = tables.forwarded_requests
        async with self._engine.begin() as conn:
            await conn.execute(
                update(table)
                .where(table.c.request_id == request_id)
                .values(
                    state="FAILED" if error is not None else "DONE",
                    master_order_id=master_order_id,
                    replayed=int(replayed),
                    audited=int(audited),
                    error=error,
                    done_at=at,
                )
            )
            await conn.execute(
                text("SELECT pg_notify(:channel, :request_id)"),
                {"channel": FORWARD_DONE_CHANNEL, "request_id": request_id},
            )

    async def give_back(self, request_id: str) -> None:
        """A claimed request this node could not do (it lost the group): waiting again."""
        table = tables.forwarded_requests
        async with self._engine.begin() as conn:
            await conn.execute(
                update(table)
                .where(table.c.request_id == request_id, table.c.state == "CLAIMED")
                .values(state="WAITING", claimed_by_node=None)
            )

    async def get(self, request_id: str) -> ForwardedRequest | None:
        table = tables.forwarded_requests
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(table).where(table.c.request_id == request_id))
            ).first()
        if row is None:
            return None
        return ForwardedRequest(
            row.request_id,
            GroupId(row.group_id),
            row.kind,
            row.payload,
            row.state,
            None if row.master_order_id is None else MasterOrderId(row.master_order_id),
            bool(row.replayed),
            row.error,
            bool(row.audited),
        )
