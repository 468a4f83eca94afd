"""Risk settings, loss watch states and stop-outs; reached as `Store.risk`.

Settings are few and read whole at start (the engine keeps them in memory); a group's or an
account's row is replaced when it changes. A round of the loss watch (its new states, the
stop-outs it triggered and those that ended) is one transaction, so a stop-out and the state
that holds its breach are never stored apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.domain.drawdown_monitor import LossLimits
from gateway.domain.risk_limits import ViolationPolicy
from gateway.domain.risk_settings import GroupRisk
from gateway.domain.stop_outs import LossWatchState, RecordedStopOut, WatchKind
from gateway.store import records, tables

# Subjects per IN (...) list: well below SQLite's and asyncpg's bind parameter limits.
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class RiskSettings:
    """Every stored setting: groups' risk, accounts' loss limits."""

    groups: Mapping[str, GroupRisk]
    accounts: Mapping[str, LossLimits]


class RiskStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # -- settings ---------------------------------------------------------------------------

    async def settings(self) -> RiskSettings:
        async with self._engine.connect() as conn:
            group_rows = (await conn.execute(select(tables.group_risk))).mappings().all()
            account_rows = (await conn.execute(select(tables.account_risk))).mappings().all()
        groups = {row["group_id"]: _group_risk_of(row) for row in group_rows}
        accounts = {}
        for row in account_rows:
            limits = records.loss_limits_of_json(row["loss_limits"])
            if limits is not None:
                accounts[row["account_id"]] = limits
        return RiskSettings(groups, accounts)

    async def set_group_risk(self, group_id: str, risk: GroupRisk, at: datetime) -> None:
        table = tables.group_risk
        values = {
            "group_id": group_id,
            "risk_limits": records.risk_limits_json(risk.limits),
            "member_risk_limits": records.member_risk_limits_json(risk.member_limits),
            "violation_policy": risk.policy.value,
            "loss_limits": records.loss_limits_json(risk.loss_limits),
            "updated_at": at,
        }
        async with self._engine.begin() as conn:
            await conn.execute(delete(table).where(table.c.group_id == group_id))
            await conn.execute(table.insert().values(**values))

    async def set_account_loss_limits(
        self, account_id: str, limits: LossLimits | None, at: datetime
    ) -> None:
        table = tables.account_risk
        async with self._engine.begin() as conn:
            await conn.execute(delete(table).where(table.c.account_id == account_id))
            await conn.execute(
                table.insert().values(
                    account_id=account_id,
                    loss_limits=records.loss_limits_json(limits),
                    updated_at=at,
                )
            )

    # -- loss watches and stop-outs ---------------------------------------------------------

    async def watches(self) -> list[LossWatchState]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(tables.loss_watches))).mappings().all()
        return [
            LossWatchState(
                kind=WatchKind(row["kind"]),
                subject_id=row["subject_id"],
                state=records.drawdown_state_of_json(row["state"]),
                members=tuple(json.loads(row["members"])),
            )
            for row in rows
        ]

    async def active_stop_outs(self) -> list[RecordedStopOut]:
        table = tables.stop_outs
        query = select(table).where(table.c.ended_at.is_(None)).order_by(table.c.stop_out_id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [records.stop_out_from_row(row) for row in rows]

    async def save_watch_round(
        self,
        watches: Sequence[LossWatchState],
        *,
        triggered: Sequence[RecordedStopOut] = (),
        ended: Sequence[RecordedStopOut] = (),
        at: datetime,
    ) -> None:
        """New states, new stop-outs and ended ones (their ended_at and ended_by): together."""
        async with self._engine.begin() as conn:
            await _replace_watches(conn, watches, at)
            if triggered:
                await conn.execute(
                    tables.stop_outs.insert(), [records.stop_out_values(s) for s in triggered]
                )
            table = tables.stop_outs
            for stop_out in ended:
                await conn.execute(
                    update(table)
                    .where(table.c.stop_out_id == stop_out.stop_out_id, table.c.ended_at.is_(None))
                    .values(ended_at=stop_out.ended_at, ended_by=stop_out.ended_by)
                )

    async def set_closing_orders(self, stop_out_id: str, master_order_ids: Sequence[str]) -> None:
        table = tables.stop_outs
        async with self._engine.begin() as conn:
            await conn.execute(
                update(table)
                .where(table.c.stop_out_id == stop_out_id)
                .values(closing_master_order_ids=json.dumps(list(master_order_ids)))
            )

    async def list_stop_outs(
        self,
        *,
        before: str,
        limit: int,
        kind: WatchKind | None = None,
        subject_id: str = "",
        active_only: bool = False,
    ) -> list[RecordedStopOut]:
        """Newest first (ids sort by creation time), before the stop-out `before` if given."""
        table = tables.stop_outs
        query = select(table).order_by(table.c.stop_out_id.desc()).limit(limit)
        if before:
            query = query.where(table.c.stop_out_id < before)
        if kind is not None:
            query = query.where(table.c.kind == kind.value, table.c.subject_id == subject_id)
        if active_only:
            query = query.where(table.c.ended_at.is_(None))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [records.stop_out_from_row(row) for row in rows]


async def _replace_watches(
    conn: AsyncConnection, watches: Sequence[LossWatchState], at: datetime
) -> None:
    if not watches:
        return
    table = tables.loss_watches
    for kind in WatchKind:
        ids = sorted({w.subject_id for w in watches if w.kind is kind})
        for start in range(0, len(ids), _CHUNK):
            await conn.execute(
                delete(table).where(
                    table.c.kind == kind.value, table.c.subject_id.in_(ids[start : start + _CHUNK])
                )
            )
    await conn.execute(
        table.insert(),
        [
            {
                "kind": w.kind.value,
                "subject_id": w.subject_id,
                "state": records.drawdown_state_json(w.state),
                "members": json.dumps(list(w.members)),
                "updated_at": at,
            }
            for w in watches
        ],
    )


def _group_risk_of(row: Mapping[Any, Any]) -> GroupRisk:
    return GroupRisk(
        limits=records.risk_limits_of_json(row["risk_limits"]),
        policy=ViolationPolicy(row["violation_policy"]),
        member_limits=records.member_risk_limits_of_json(row["member_risk_limits"]),
        loss_limits=records.loss_limits_of_json(row["loss_limits"]),
    )
