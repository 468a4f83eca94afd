"""Cluster mode's hold on the database: a node's membership, its group leases and the counters
every node numbers from (docs/cluster.md). PostgreSQL only.

A node keeps one connection of its own (outside the store's pool) for the process's life. On it:
- a shared session advisory lock on the database's writer key: a process of the default mode
  (which takes it exclusively, gateway/store/writer_lock.py) cannot start beside a cluster, nor
  a cluster node beside it;
- one session advisory lock per group it owns: the server lets go of them when the session
  ends (the process died, or another node ended the session of one that stopped renewing).

A group's lease is its `group_leases` row: its owner and an epoch that moves on at each
acquisition. Every commit of the group's order progress reads the row with a share lock and
fails (GroupFenced) unless its node still holds that epoch: a takeover's update waits for those
commits, and every later one sees it. Times are the database's clock, so nodes' clocks need
not agree.

Numbers (fills, order events, audit records, signals) come from `sequence_counters`: a
numbering transaction takes its range with an UPDATE of the series' row, holding the row's lock
until it commits, so ranges follow one another in commit order and a rollback gives its range
back: gap-free across nodes.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import socket
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from gateway.domain.ids import GroupId
from gateway.store.writer_lock import ADVISORY_KEY, WriterFenced

log = logging.getLogger(__name__)

# The NOTIFY channel a commit of fills announces its last sequence on (cluster mode).
FILLS_CHANNEL = "mam_fills"
# The channel a revocation of an API key announces the key's id on (cluster mode).
KEYS_CHANNEL = "mam_keys"

# The database's clock in the store's time unit (integer microseconds since the epoch).
_DB_NOW = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::bigint"
# A group's lock key: a 64-bit hash of its id, apart from other users' keys by the seed.
_GROUP_KEY = "hashtextextended(:group_id, 7001)"


class Series(enum.Enum):
    """A numbered series and the counter row it is taken from."""

    FILLS = "fills"
    ORDER_EVENTS = "order_events"
    AUDIT_RECORDS = "audit_records"
    SOURCE_SIGNALS = "source_signals"


# Each series' table, for raising its counter to what is stored.
_TABLES = {
    Series.FILLS: "fills",
    Series.ORDER_EVENTS: "order_events",
    Series.AUDIT_RECORDS: "audit_records",
    Series.SOURCE_SIGNALS: "source_signals",
}


async def take_numbers(conn: AsyncConnection, series: Series, count: int) -> int:
    """The first of `count` numbers of `series` for this transaction, which holds the series'
    counter row locked until it ends (commit order is number order)."""
    last = (
        await conn.execute(
            text(
                "UPDATE sequence_counters SET value = value + :n WHERE name = :name RETURNING value"
            ),
            {"n": count, "name": series.value},
        )
    ).scalar_one()
    return int(last) - count + 1


class GroupFenced(WriterFenced):
    """This node no longer owns these groups: it must not commit their progress."""

    def __init__(self, groups: Collection[GroupId]) -> None:
        super().__init__(
            "this node no longer holds the lease of group(s) "
            + ", ".join(sorted(groups))
            + ": another node took them over"
            if groups
            else "this node dropped the execution: it lost its group's lease"
        )
        self.groups = frozenset(groups)


class ClusterLockHeld(Exception):
    """A process of the default mode holds the database: a cluster node cannot start."""


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    node_id: str
    host: str
    pid: int
    address: str

    @classmethod
    def of_this_process(cls, node_name: str, address: str) -> NodeIdentity:
        host, pid = socket.gethostname(), os.getpid()
        return cls(node_name or f"{host}:{pid}", host, pid, address)


@dataclass(frozen=True, slots=True)
class NodeRow:
    node_id: str
    host: str
    pid: int
    address: str
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    # Whether it renewed within the lease time (by the database's clock).
    live: bool


@dataclass(frozen=True, slots=True)
class LeaseRow:
    group_id: GroupId
    node_id: str
    epoch: int
    acquired_at: datetime
    renewed_at: datetime
    released_at: datetime | None
    takeovers: int


@dataclass(frozen=True, slots=True)
class ClusterView:
    nodes: tuple[NodeRow, ...]
    leases: tuple[LeaseRow, ...]
    # Groups without a lease row yet.
    unleased: tuple[GroupId, ...]


def _time(micros: int | None) -> datetime | None:
    if micros is None:
        return None
    return datetime.fromtimestamp(micros / 1_000_000, UTC)


class ClusterNode:
    """This process as a cluster node: its connection, membership and leases."""

    def __init__(self, url: str, identity: NodeIdentity, *, lease_seconds: float) -> None:
        self.identity = identity
        self.lease_micros = int(lease_seconds * 1_000_000)
        self._engine = create_async_engine(url, poolclass=NullPool)
        self._connection: AsyncConnection | None = None
        # The groups this node holds, with the epoch it took each at.
        self._held: dict[GroupId, int] = {}

    @property
    def held(self) -> Mapping[GroupId, int]:
        return self._held

    def owns(self, group_id: GroupId) -> bool:
        return group_id in self._held

    def forget(self, group_id: GroupId) -> None:
        """No longer held (a commit found it taken over)."""
        self._held.pop(group_id, None)

    # -- membership ---------------------------------------------------------------------------

    async def join(self) -> None:
        """Connects, takes the shared writer lock, registers this node (a node of the same
        name that is not live is replaced: stopped, silent for the lease time, or its session
        gone, as after a crash; a live one refuses the start) and raises every counter to what
        is stored."""
        connection = await self._engine.connect()
        try:
            await connection.execute(
                text("SELECT set_config('application_name', :name, false)"),
                {"name": f"mam-gateway node {self.identity.node_id}"[:63]},
            )
            shared = (
                await connection.execute(
                    text(f"SELECT pg_try_advisory_lock_shared({ADVISORY_KEY})")
                )
            ).scalar()
            if not shared:
                raise ClusterLockHeld(
                    "a gateway process of the default (one process) mode holds this database: "
                    "stop it before starting cluster nodes on it"
                )
            node = self.identity
            existing = (
                await connection.execute(
                    text(
                        "SELECT host, pid, stopped_at IS NULL AND heartbeat_at > "
                        f"{_DB_NOW} - :lease AND EXISTS (SELECT 1 FROM pg_stat_activity a "
                        "WHERE a.pid = cluster_nodes.session_pid) AS live "
                        "FROM cluster_nodes WHERE node_id = :node"
                    ),
                    {"node": node.node_id, "lease": self.lease_micros},
                )
            ).first()
            itself = existing is not None and (existing.host, existing.pid) == (node.host, node.pid)
            if existing is not None and existing.live and not itself:
                raise ClusterLockHeld(
                    f"a live node named {node.node_id!r} is in the cluster: node names are unique"
                )
            await connection.execute(
                text(
                    "INSERT INTO cluster_nodes (node_id, host, pid, address, session_pid, "
                    "started_at, heartbeat_at, stopped_at) VALUES (:node, :host, :pid, "
                    f":address, pg_backend_pid(), {_DB_NOW}, {_DB_NOW}, NULL) "
                    "ON CONFLICT (node_id) DO UPDATE SET host = excluded.host, "
                    "pid = excluded.pid, address = excluded.address, "
                    "session_pid = excluded.session_pid, started_at = excluded.started_at, "
                    "heartbeat_at = excluded.heartbeat_at, stopped_at = NULL"
                ),
                {"node": node.node_id, "host": node.host, "pid": node.pid, "address": node.address},
            )
            for series, table in _TABLES.items():
                await connection.execute(
                    text(
                        "UPDATE sequence_counters SET value = GREATEST(value, "
                        f"(SELECT COALESCE(MAX(sequence), 0) FROM {table})) WHERE name = :name"
                    ),
                    {"name": series.value},
                )
            await connection.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            await self._engine.dispose()
            raise
        self._connection = connection

    async def set_address(self, address: str) -> None:
        """The address callers are told to reach this node at, once its port is bound."""
        self.identity = replace(self.identity, address=address)
        conn = self._conn()
        await conn.execute(
            text("UPDATE cluster_nodes SET address = :address WHERE node_id = :node"),
            {"address": address, "node": self.identity.node_id},
        )
        await conn.commit()

    async def leave(self) -> None:
        """An orderly stop: every lease released (free to take at once), the node marked
        stopped, the session ended."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.execute(
                    text(
                        f"UPDATE group_leases SET released_at = {_DB_NOW} "
                        "WHERE node_id = :node AND released_at IS NULL"
                    ),
                    {"node": self.identity.node_id},
                )
                await connection.execute(
                    text(f"UPDATE cluster_nodes SET stopped_at = {_DB_NOW} WHERE node_id = :node"),
                    {"node": self.identity.node_id},
                )
                await connection.commit()
            with contextlib.suppress(Exception):
                await connection.close()
        self._held.clear()
        await self._engine.dispose()

    def _conn(self) -> AsyncConnection:
        if self._connection is None:
            raise ConnectionError("the node's session is closed")
        return self._connection

    # -- leases -------------------------------------------------------------------------------

    async def renew(self) -> frozenset[GroupId]:
        """The heartbeat and every held lease renewed; returns the groups this node has lost
        (another node took them over, or its session ended): they are no longer held."""
        conn = self._conn()
        node = self.identity.node_id
        try:
            await conn.execute(
                text(f"UPDATE cluster_nodes SET heartbeat_at = {_DB_NOW} WHERE node_id = :node"),
                {"node": node},
            )
            rows = (
                await conn.execute(
                    text(
                        f"UPDATE group_leases SET renewed_at = {_DB_NOW} WHERE node_id = :node "
                        "AND released_at IS NULL RETURNING group_id, epoch"
                    ),
                    {"node": node},
                )
            ).all()
            await conn.commit()
        except Exception:
            # The session (and with it every group lock) may be gone: nothing is held.
            lost = frozenset(self._held)
            self._held.clear()
            with contextlib.suppress(Exception):
                await conn.close()
            self._connection = None
            if lost:
                log.critical("the node's database session was lost: groups %s", sorted(lost))
            raise
        still = {GroupId(r.group_id): int(r.epoch) for r in rows}
        lost = frozenset(g for g, epoch in self._held.items() if still.get(g) != epoch)
        for group_id in lost:
            del self._held[group_id]
        return lost

    async def reconnect(self) -> None:
        """After the session was lost: a new one, holding nothing."""
        if self._connection is not None:
            return
        await self.join()

    async def candidates(self) -> list[GroupId]:
        """Groups this node could take: no lease, released, renewed by nobody for the lease
        time, or still named this node's (its session was lost and it joined again); oldest
        group first."""
        rows = (
            await self._conn().execute(
                text(
                    "SELECT g.group_id FROM groups g LEFT JOIN group_leases l "
                    "ON l.group_id = g.group_id WHERE l.group_id IS NULL "
                    "OR l.released_at IS NOT NULL OR l.node_id = :node "
                    f"OR l.renewed_at < {_DB_NOW} - :lease ORDER BY g.created_at, g.group_id"
                ),
                {"lease": self.lease_micros, "node": self.identity.node_id},
            )
        ).all()
        await self._conn().commit()
        return [GroupId(r.group_id) for r in rows if GroupId(r.group_id) not in self._held]

    async def census(self) -> tuple[int, int]:
        """(live nodes, groups): what a fair share of the groups is counted from."""
        conn = self._conn()
        live = (
            await conn.execute(
                text(
                    "SELECT COUNT(*) FROM cluster_nodes WHERE stopped_at IS NULL "
                    f"AND heartbeat_at > {_DB_NOW} - :lease"
                ),
                {"lease": self.lease_micros},
            )
        ).scalar_one()
        groups = (await conn.execute(text("SELECT COUNT(*) FROM groups"))).scalar_one()
        await conn.commit()
        return max(int(live), 1), int(groups)

    async def try_acquire(self, group_id: GroupId) -> int | None:
        """Takes the group's lease if it is free or stale; its new epoch, or None. A stale
        lease whose holder's session still holds the group's lock (the holder is stopped or
        cut off) is taken by ending that session first."""
        conn = self._conn()
        params = {"group_id": group_id, "lease": self.lease_micros}
        locked = (
            await conn.execute(text(f"SELECT pg_try_advisory_lock({_GROUP_KEY})"), params)
        ).scalar()
        if not locked:
            stale = (
                await conn.execute(
                    text(
                        "SELECT n.session_pid FROM group_leases l JOIN cluster_nodes n "
                        "ON n.node_id = l.node_id WHERE l.group_id = :group_id "
                        f"AND l.released_at IS NULL AND l.renewed_at < {_DB_NOW} - :lease "
                        f"AND n.heartbeat_at < {_DB_NOW} - :lease"
                    ),
                    params,
                )
            ).first()
            if stale is None:
                await conn.commit()
                return None
            log.warning(
                "group %s: its owner stopped renewing; ending its database session (pid %d)",
                group_id,
                stale.session_pid,
            )
            await conn.execute(
                text("SELECT pg_terminate_backend(:pid)"), {"pid": stale.session_pid}
            )
            await conn.commit()
            return None  # taken at the next round, once the server has let go of its locks
        try:
            row = (
                await conn.execute(
                    text(
                        "SELECT node_id, epoch, released_at, renewed_at < "
                        f"{_DB_NOW} - :lease AS stale FROM group_leases "
                        "WHERE group_id = :group_id FOR UPDATE"
                    ),
                    params,
                )
            ).first()
            node = self.identity.node_id
            if row is None:
                epoch = 1
                await conn.execute(
                    text(
                        "INSERT INTO group_leases (group_id, node_id, epoch, acquired_at, "
                        f"renewed_at, released_at, takeovers) VALUES (:group_id, :node, 1, "
                        f"{_DB_NOW}, {_DB_NOW}, NULL, 0)"
                    ),
                    {**params, "node": node},
                )
            else:
                # We hold the group's lock: whoever the row names has no session holding it.
                took_over = row.released_at is None and row.node_id != node
                epoch = int(row.epoch) + 1
                await conn.execute(
                    text(
                        "UPDATE group_leases SET node_id = :node, epoch = :epoch, "
                        f"acquired_at = {_DB_NOW}, renewed_at = {_DB_NOW}, released_at = NULL, "
                        "takeovers = takeovers + :took WHERE group_id = :group_id"
                    ),
                    {**params, "node": node, "epoch": epoch, "took": int(took_over)},
                )
            await conn.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.rollback()
                await conn.execute(text(f"SELECT pg_advisory_unlock({_GROUP_KEY})"), params)
                await conn.commit()
            raise
        self._held[group_id] = epoch
        return epoch

    async def release(self, group_id: GroupId) -> None:
        """Lets go of a group in order: free to take at once. (Whatever the node did with
        the group has stopped: a commit of its progress would now be fenced.)"""
        conn = self._conn()
        params = {"group_id": group_id, "node": self.identity.node_id}
        self._held.pop(group_id, None)
        await conn.execute(
            text(
                f"UPDATE group_leases SET released_at = {_DB_NOW} "
                "WHERE group_id = :group_id AND node_id = :node"
            ),
            params,
        )
        await conn.execute(text(f"SELECT pg_advisory_unlock({_GROUP_KEY})"), params)
        await conn.commit()

    # -- fencing ------------------------------------------------------------------------------

    async def check_groups(
        self,
        conn: AsyncConnection,
        groups: Collection[GroupId],
        epochs: Mapping[GroupId, int] | None = None,
    ) -> None:
        """In a commit of these groups' progress: raises GroupFenced unless this node still
        holds each one's lease, at the epoch `epochs` gives for it (the epoch the execution
        began under: a lease lost and taken again does not let an older execution commit), or
        else at the one it took it at (the rows share-locked until the transaction ends, so a
        takeover waits for it)."""
        expected = {g: self._held.get(g) for g in groups}
        expected.update(epochs or {})
        if not expected:
            return
        wanted = sorted(expected)
        rows = (
            await conn.execute(
                text(
                    "SELECT group_id, node_id, epoch, released_at FROM group_leases "
                    "WHERE group_id = ANY(:groups) FOR SHARE"
                ),
                {"groups": wanted},
            )
        ).all()
        current = {
            r.group_id: int(r.epoch)
            for r in rows
            if r.node_id == self.identity.node_id and r.released_at is None
        }
        lost = [
            g
            for g in wanted
            if expected[g] is None or current.get(g) != expected[g] or g not in self._held
        ]
        if lost:
            for group_id in lost:
                if current.get(group_id) != self._held.get(group_id):
                    self._held.pop(GroupId(group_id), None)
            raise GroupFenced(lost)

    # -- the operator's view --------------------------------------------------------------------

    async def view(self) -> ClusterView:
        return await read_view(self._conn(), self.lease_micros)


async def read_view(conn: AsyncConnection, lease_micros: int) -> ClusterView:
    """Every node and lease as the database has them."""
    nodes = (
        await conn.execute(
            text(
                "SELECT node_id, host, pid, address, started_at, heartbeat_at, stopped_at, "
                f"stopped_at IS NULL AND heartbeat_at > {_DB_NOW} - :lease AS live "
                "FROM cluster_nodes ORDER BY node_id"
            ),
            {"lease": lease_micros},
        )
    ).all()
    leases = (
        await conn.execute(
            text(
                "SELECT group_id, node_id, epoch, acquired_at, renewed_at, released_at, "
                "takeovers FROM group_leases ORDER BY group_id"
            )
        )
    ).all()
    unleased = (
        await conn.execute(
            text(
                "SELECT g.group_id FROM groups g LEFT JOIN group_leases l "
                "ON l.group_id = g.group_id WHERE l.group_id IS NULL ORDER BY g.group_id"
            )
        )
    ).all()
    await conn.commit()
    return ClusterView(
        nodes=tuple(
            NodeRow(
                r.node_id, r.host, r.pid, r.address, _time(r.started_at),  # type: ignore[arg-type]
                _time(r.heartbeat_at), _time(r.stopped_at), bool(r.live),  # type: ignore[arg-type]
            )
            for r in nodes
        ),
        leases=tuple(
            LeaseRow(
                GroupId(r.group_id), r.node_id, int(r.epoch),
                _time(r.acquired_at), _time(r.renewed_at),  # type: ignore[arg-type]
                _time(r.released_at), int(r.takeovers),
            )
            for r in leases
        ),
        unleased=tuple(GroupId(r.group_id) for r in unleased),
    )  # fmt: skip
