"""The gateway's repository: every durable read and write goes through here.

Writes that belong together share one transaction: a master order with its allocation and
children; a batch of child results with their fills and master order progress (group commit);
a group's settings with its members.

The same code runs on SQLite (sqlite+aiosqlite://, WAL) and PostgreSQL (postgresql+asyncpg://);
the schema comes from the alembic revisions in gateway/store/migrations/, applied by `open`.

One gateway process per database: fill and order event sequences are assigned here, in process,
under a lock, starting from the largest stored sequences read at `open`. That makes them gap-free
and increasing without a database sequence (which would leave gaps on rollback), and is why a
Store opened as the writer (the default) takes the database's writer lock first and checks the
writer fence in every transaction that numbers something (gateway/store/writer_lock.py): a
second process is refused at `open`, and a process that lost the lock cannot commit.

A transaction that numbers something and fails may still have committed (a connection lost
during COMMIT): the numbers are then in doubt. The next such transaction first reads the largest
stored sequences again (nothing else can have written meanwhile), and a `save_progress` retried
with the same `attempt` learns whether its earlier try was stored instead of storing it twice.

Outbox: every state change of a master or child order is written with its OrderEvent row in the
same transaction, so the audit trail and the state never disagree, even after a crash.

Encoded fills: given a `fill_encoder` (the API layer's, gateway/api/fill_wire.py; the store does not
know the format), every fill is stored with its encoded message, made once at commit, and
replays and live subscribers send those bytes. A fill stored without one (before revision 0010,
or by a Store opened without an encoder) is read back as a Fill for the reader to encode.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import Table, delete, func, select, text, type_coerce, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator

from gateway.domain.accounts import (
    FIRST_MAGIC,
    MAX_MAGIC,
    Account,
    AccountSnapshot,
    AccountState,
    Group,
)
from gateway.domain.audit import AuditRecord
from gateway.domain.fills import Fill
from gateway.domain.ids import NO_CHILD_ORDER_ID, AccountId, ChildOrderId, GroupId, MasterOrderId
from gateway.domain.order_events import OrderEvent, child_event, master_event
from gateway.domain.orders import ChildOrder, ChildOrderState, MasterOrder, MasterOrderState
from gateway.store import bulk, migrations, records, tables
from gateway.store.access import AccessStore, audit_values
from gateway.store.cluster import FILLS_CHANNEL, ClusterNode, Series, take_numbers
from gateway.store.engines import create_engine
from gateway.store.forwarding import ForwardedRequests
from gateway.store.history import AccountHistory
from gateway.store.reporting import ReportingStore
from gateway.store.risk import RiskStore
from gateway.store.settings_cache import SettingsCache
from gateway.store.sources import SourceStore
from gateway.store.writer_lock import (
    WriterFenced,
    WriterIdentity,
    WriterLock,
    fence_epoch,
    release_fence,
    take_fence,
    writer_lock_for,
)


class DuplicateClientOrderId(Exception):
    """A master order with this (submitted_by, client_order_id) is already stored."""

    def __init__(self, existing: MasterOrder) -> None:
        super().__init__(
            f"client_order_id {existing.spec.client_order_id!r} is taken by "
            f"{existing.master_order_id}"
        )
        self.existing = existing


@dataclass(frozen=True, slots=True)
class UnfinishedChild:
    """A child order of an account still executing: not final, or its master order is not."""

    master_order_id: MasterOrderId
    master_state: MasterOrderState
    child_order_id: ChildOrderId
    child_state: ChildOrderState


class AccountInUse(Exception):
    """The account cannot be deleted: it has unfinished children, or groups take their
    reference equity from it."""

    def __init__(
        self,
        account_id: AccountId,
        unfinished: Sequence[UnfinishedChild],
        referencing_groups: Sequence[GroupId],
    ) -> None:
        super().__init__(f"account {account_id!r} is in use")
        self.unfinished = tuple(unfinished)
        self.referencing_groups = tuple(referencing_groups)


@dataclass(frozen=True, slots=True)
class FillFilter:
    """Which fills a reader wants; empty means all."""

    account_ids: frozenset[str] = frozenset()
    master_order_id: str = ""

    def matches(self, fill: Fill) -> bool:
        if self.account_ids and fill.account_id not in self.account_ids:
            return False
        return not (self.master_order_id and fill.master_order_id != self.master_order_id)


# A numbered fill's message as readers receive it; stored with the fill (fills.wire).
FillEncoder = Callable[[Fill], bytes]


class CommittedFill(NamedTuple):
    """A fill just committed, numbered, with its encoded message (None without an encoder)."""

    fill: Fill
    wire: bytes | None


@dataclass(slots=True)
class _Writer:
    """This process's hold on the database: its lock (None for an in-memory database) and
    the fence epoch it took."""

    lock: WriterLock | None
    identity: WriterIdentity
    epoch: int
    # Whether the process before this one let go in an orderly stop (False after a crash).
    previous_released: bool


@dataclass(slots=True)
class _PendingProgress:
    """A save_progress transaction under way: what it stores, should it turn out stored."""

    attempt: object
    committed: list[CommittedFill]
    # Cluster mode: its first order event as numbered (sequence, master, child, state), which
    # only this transaction can have stored: found stored, the transaction was.
    first_event: tuple[int, str, str, str] | None = None


class Store:
    def __init__(
        self,
        engine: AsyncEngine,
        last_sequence: int,
        last_event: int = 0,
        access: AccessStore | None = None,
        *,
        fill_encoder: FillEncoder | None = None,
        writer: _Writer | None = None,
        cluster: ClusterNode | None = None,
    ) -> None:
        self._engine = engine
        self._writer = writer
        # Cluster mode: numbers from the database's counters, progress fenced per group.
        self._cluster = cluster
        self._access = (
            access if access is not None else AccessStore(engine, 0, fence=self._check_fence)
        )
        self._last_sequence = last_sequence
        self._last_event = last_event
        self._fill_encoder = fill_encoder
        # Held by every write that numbers fills or events: one numbering writer at a time.
        self._write_lock = asyncio.Lock()
        self._settings = SettingsCache(keeping=cluster is None)
        # A numbering transaction failed: its numbers may or may not be stored (see above).
        self._in_doubt = False
        self._pending: _PendingProgress | None = None
        # save_progress attempts found stored after they failed: what they committed.
        self._landed: dict[object, list[CommittedFill]] = {}
        self._on_fenced: Callable[[], None] | None = None
        self._forwarded = ForwardedRequests(engine)
        self._sources = SourceStore(
            engine,
            fence=self._check_fence if writer or cluster else None,
            counted=cluster is not None,
        )

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        fill_encoder: FillEncoder | None = None,
        writer: bool = True,
        cluster: ClusterNode | None = None,
    ) -> Store:
        """Connects and upgrades the schema to the newest migration (nothing if it is there).

        sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST:PORT/DATABASE. `writer`:
        takes the database's writer lock first (WriterLockHeld if another process holds it)
        and moves the writer fence on; a Store opened with writer=False (a tool reading, or
        writing keys beside a running gateway) must not number anything. `fill_encoder`: what
        each fill is stored with for its readers (see the module docstring); without it,
        nothing. `cluster`: this process is that cluster node (PostgreSQL): it joins the
        cluster instead of taking the writer lock, and numbers from the database's counters.
        """
        engine = create_engine(url)
        writer = writer and cluster is None
        lock = writer_lock_for(url) if writer else None
        identity = WriterIdentity.of_this_process(datetime.now(UTC))
        try:
            if lock is not None:
                await lock.acquire(identity)
            async with engine.begin() as conn:
                await conn.run_sync(migrations.upgrade_to_head)
                last = (await conn.execute(select(func.max(tables.fills.c.sequence)))).scalar()
                last_event = (
                    await conn.execute(select(func.max(tables.order_events.c.sequence)))
                ).scalar()
                held = None
                if writer:
                    epoch, previous_released = await take_fence(conn, identity)
                    held = _Writer(lock, identity, epoch, previous_released)
            if cluster is not None:
                await cluster.join()
            store = cls(
                engine,
                int(last or 0),
                int(last_event or 0),
                fill_encoder=fill_encoder,
                writer=held,
                cluster=cluster,
            )
            store._access = await AccessStore.open(
                engine,
                fence=store._check_fence if writer or cluster else None,
                counted=cluster is not None,
            )
        except BaseException:
            if lock is not None:
                await lock.release()
            if cluster is not None:
                await cluster.leave()
            await engine.dispose()
            raise
        return store

    async def close(self) -> None:
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            await cluster.leave()
        writer, self._writer = self._writer, None
        if writer is not None:
            # An orderly stop: the next holder need not wait for this one's sends to settle.
            with contextlib.suppress(Exception):
                async with self._engine.begin() as conn:
                    await release_fence(conn, writer.epoch, datetime.now(UTC))
            if writer.lock is not None:
                await writer.lock.release()
        await self._engine.dispose()

    @property
    def writer(self) -> WriterIdentity | None:
        """This process, while it holds the database's writer lock."""
        return None if self._writer is None else self._writer.identity

    @property
    def previous_writer_released(self) -> bool:
        """Whether the process that held the writer lock before this one stopped in order."""
        return self._writer is None or self._writer.previous_released

    def watch_writer_lock(self, on_lost: Callable[[], None]) -> None:
        """Keeps the writer lock held while the process runs (PostgreSQL: its session is
        checked, and taken again if lost); `on_lost` once another process has taken it."""
        self._on_fenced = on_lost
        if self._writer is not None and self._writer.lock is not None:
            self._writer.lock.watch(self._fence_is_ours, on_lost)

    async def probe_write(self) -> None:
        """Raises unless the database takes a write from this process now: a fenced
        transaction that rewrites the fence row as it is (reads alone can succeed on a full
        disk)."""
        fence = tables.writer_fence
        async with self._engine.begin() as conn:
            await conn.execute(
                update(fence).where(fence.c.fence_id == 1).values(epoch=fence.c.epoch)
            )
            await self._check_fence(conn)

    async def _fence_is_ours(self, conn: AsyncConnection) -> bool:
        writer = self._writer
        if writer is None:
            return False
        if writer.lock is None:
            return True  # an in-memory database: no other process can open it
        held = writer.lock.held_here()
        if held is not None:
            return held
        return await fence_epoch(conn) == writer.epoch

    @property
    def cluster(self) -> ClusterNode | None:
        return self._cluster

    @property
    def forwarded(self) -> ForwardedRequests:
        """Cluster mode: calls about groups this node does not own, for their owners."""
        return self._forwarded

    async def _check_fence(self, conn: AsyncConnection) -> None:
        """In every numbering transaction: only the holder of the writer lock commits. (A
        cluster node holds no database-wide lock: its order progress is fenced per group.)"""
        if self._cluster is not None:
            return
        if self._writer is None:
            raise WriterFenced("this store was opened without the writer lock: it numbers nothing")
        if not await self._fence_is_ours(conn):
            if self._on_fenced is not None:
                self._on_fenced()
            raise WriterFenced(
                "another process took the database's writer lock: this one may not commit"
            )

    @contextlib.asynccontextmanager
    async def _numbering(
        self, pending: _PendingProgress | None = None
    ) -> AsyncIterator[AsyncConnection]:
        """A transaction that numbers fills or events, fenced; the caller holds _write_lock
        and moves its counters on once this exits without an error. `pending`: a
        save_progress's attempt and what it commits, kept should the commit be in doubt."""
        if self._in_doubt:
            await self._resolve_doubt()
        self._pending = pending
        try:
            async with self._engine.begin() as conn:
                yield conn
                # Last, once the transaction holds SQLite's write lock (a read first would
                # pin a snapshot that a concurrent writer makes stale: SQLITE_BUSY).
                await self._check_fence(conn)
        except BaseException:
            self._in_doubt = True
            raise
        self._pending = None

    async def _resolve_doubt(self) -> None:
        """After a numbering transaction failed: whether it was stored after all, read from
        the largest stored sequences (every such transaction stores at least one event, and
        none has run since). A cluster node's numbers are the database's: only whether a
        save_progress attempt landed is in doubt, read from its first event."""
        if self._cluster is not None:
            await self._resolve_doubt_in_cluster()
            return
        async with self._engine.connect() as conn:
            last_fill = (await conn.execute(select(func.max(tables.fills.c.sequence)))).scalar()
            last_event = (
                await conn.execute(select(func.max(tables.order_events.c.sequence)))
            ).scalar()
        stored = int(last_event or 0) > self._last_event
        if stored and self._pending is not None:
            self._landed[self._pending.attempt] = self._pending.committed
        self._pending = None
        self._last_sequence = int(last_fill or 0)
        self._last_event = int(last_event or 0)
        self._in_doubt = False

    async def _resolve_doubt_in_cluster(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and pending.first_event is not None:
            sequence, master_order_id, child_order_id, state = pending.first_event
            events = tables.order_events
            async with self._engine.connect() as conn:
                found = (
                    await conn.execute(
                        select(events.c.sequence).where(
                            events.c.sequence == sequence,
                            events.c.master_order_id == master_order_id,
                            events.c.child_order_id == child_order_id,
                            events.c.state == state,
                        )
                    )
                ).first()
            if found is not None:
                self._landed[pending.attempt] = pending.committed
        self._in_doubt = False

    async def _first_number(self, conn: AsyncConnection, series: Series, count: int) -> int:
        """The first of `count` numbers of `series` for the transaction on `conn`: the next
        after this process's last (one process per database), or the database's counter's."""
        if self._cluster is not None:
            return await take_numbers(conn, series, count) if count else 0
        return (self._last_sequence if series is Series.FILLS else self._last_event) + 1

    def _numbered_up_to(self, series: Series, last: int) -> None:
        """After a commit: the last number it used."""
        if series is Series.FILLS:
            self._last_sequence = max(self._last_sequence, last)
        else:
            self._last_event = max(self._last_event, last)

    @property
    def last_sequence(self) -> int:
        """The sequence of the newest committed fill (a cluster node's own newest)."""
        return self._last_sequence

    @property
    def engine(self) -> Engine:
        return self._engine.sync_engine

    @property
    def history(self) -> AccountHistory:
        """Each account's snapshots, deals and positions: what reporting reads."""
        return AccountHistory(self._engine)

    @property
    def reporting(self) -> ReportingStore:
        """Balance operations, fee schedules and charges, and reporting's reads of history."""
        return ReportingStore(self._engine)

    @property
    def access(self) -> AccessStore:
        """API keys, the audit log and kill switches."""
        return self._access

    @property
    def sources(self) -> SourceStore:
        """Groups' source accounts and the signals stored from them (mirroring)."""
        return self._sources

    @property
    def risk(self) -> RiskStore:
        """Risk settings, loss watch states and stop-outs."""
        return RiskStore(self._engine)

    # -- accounts ---------------------------------------------------------------------------

    async def insert_account(self, account: Account) -> None:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(tables.accounts.insert(), records.account_values(account))
        finally:
            self._settings.changed(account_ids=[account.account_id])

    async def rename_account(
        self, account_id: AccountId, *, name: str, state: AccountState, updated_at: datetime
    ) -> None:
        """An account's new name and state (UpdateAccount). Raises the database's
        IntegrityError (nothing changed) for a name another account has."""
        table = tables.accounts
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    update(table)
                    .where(table.c.account_id == account_id)
                    .values(name=name, state=state.value, updated_at=updated_at)
                )
        finally:
            self._settings.changed(account_ids=[account_id])

    async def account_name_taken(self, name: str) -> bool:
        """Whether an account not deleted has this name (a deleted account's name is free)."""
        table = tables.accounts
        async with self._engine.connect() as conn:
            query = select(table.c.account_id).where(
                table.c.name == name, table.c.deleted_at.is_(None)
            )
            return (await conn.execute(query)).first() is not None

    async def get_account(self, account_id: AccountId) -> Account | None:
        """The account, deleted or not (`deleted_at`): its history stays readable. Callers
        acting on live accounts treat a deleted one as missing."""
        async with self._engine.connect() as conn:
            query = select(*_STORED_ACCOUNT_COLUMNS).where(
                tables.accounts.c.account_id == account_id
            )
            row = (await conn.execute(query)).first()
        return records.account_from_columns(tuple(row)) if row else None

    async def get_account_settings(
        self, account_ids: Iterable[AccountId]
    ) -> dict[AccountId, Account]:
        """The accounts found, without their latest money (`snapshot` is None): what trading
        reads for each order (state, margin mode, symbol mappings), kept in memory between
        orders (settings_cache.py). Money is read from the terminals."""
        found, missing = self._settings.accounts(account_ids)
        if missing:
            generation = self._settings.generation
            read = await self.get_accounts(missing)
            found.update(self._settings.keep_accounts(generation, read.values()))
        return found

    async def get_accounts(self, account_ids: Iterable[AccountId]) -> dict[AccountId, Account]:
        """The accounts found, deleted ones too (see get_account)."""
        ids = list(account_ids)
        found: dict[AccountId, Account] = {}
        async with self._engine.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                query = select(*_STORED_ACCOUNT_COLUMNS).where(
                    tables.accounts.c.account_id.in_(chunk)
                )
                for row in (await conn.execute(query)).all():
                    account = records.account_from_columns(tuple(row))
                    found[account.account_id] = account
        return found

    async def list_accounts(
        self,
        *,
        after: str,
        limit: int,
        group_id: str = "",
        within_groups: frozenset[str] | None = None,
        within_accounts: frozenset[str] | None = None,
    ) -> list[Account]:
        """The accounts not deleted. `within_groups` / `within_accounts`: only the members of
        these groups / these accounts (what a manager's or an investor's key reaches); None: no
        such bound."""
        query = select(*_STORED_ACCOUNT_COLUMNS).where(
            tables.accounts.c.account_id > after, tables.accounts.c.deleted_at.is_(None)
        )
        if group_id:
            members = select(tables.group_members.c.account_id).where(
                tables.group_members.c.group_id == group_id
            )
            query = query.where(tables.accounts.c.account_id.in_(members))
        if within_groups is not None:
            members = select(tables.group_members.c.account_id).where(
                tables.group_members.c.group_id.in_(sorted(within_groups))
            )
            query = query.where(tables.accounts.c.account_id.in_(members))
        if within_accounts is not None:
            query = query.where(tables.accounts.c.account_id.in_(sorted(within_accounts)))
        query = query.order_by(tables.accounts.c.account_id).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [records.account_from_columns(tuple(r)) for r in rows]

    async def all_accounts(self) -> list[Account]:
        """Every account not deleted: those whose terminals are attached at start."""
        async with self._engine.connect() as conn:
            query = (
                select(*_STORED_ACCOUNT_COLUMNS)
                .where(tables.accounts.c.deleted_at.is_(None))
                .order_by(tables.accounts.c.account_id)
            )
            rows = (await conn.execute(query)).all()
        return [records.account_from_columns(tuple(r)) for r in rows]

    async def unfinished_children_of(self, account_id: AccountId) -> list[UnfinishedChild]:
        """The account's child orders that are not final or whose master order is not."""
        async with self._engine.connect() as conn:
            return await _unfinished_children(conn, account_id)

    async def groups_referencing(self, account_id: AccountId) -> list[GroupId]:
        """The groups whose allocation takes its reference equity from this account."""
        async with self._engine.connect() as conn:
            return await _groups_referencing(conn, account_id)

    async def groups_trading(self, account_ids: Collection[AccountId]) -> dict[AccountId, GroupId]:
        """Of these accounts, those a group trades (a member, or its source), with a group
        (one of them, if several)."""
        if not account_ids:
            return {}
        wanted = list(account_ids)
        members, sources = tables.group_members, tables.group_sources
        async with self._engine.connect() as conn:
            rows = list(
                (
                    await conn.execute(
                        select(members.c.account_id, members.c.group_id).where(
                            members.c.account_id.in_(wanted)
                        )
                    )
                ).all()
            )
            rows += (
                await conn.execute(
                    select(sources.c.account_id, sources.c.group_id).where(
                        sources.c.account_id.in_(wanted)
                    )
                )
            ).all()
        return {AccountId(r.account_id): GroupId(r.group_id) for r in rows}

    async def delete_account(self, account_id: AccountId, *, at: datetime) -> list[Group]:
        """Marks the account deleted and takes it out of every group: one transaction.

        Each group it was in is stored as replace_group stores it (members renumbered,
        updated_at = `at`); the groups changed are returned. The account's row and history
        stay. Raises LookupError (nothing changed) if the account does not exist or is already
        deleted, and AccountInUse (nothing changed) if it has unfinished children or is a
        group's allocation reference: checked in the transaction, so an order stored since the
        caller's own checks is not missed.
        """
        accounts, members = tables.accounts, tables.group_members
        touched: list[GroupId] = []
        changed: list[Group] = []
        try:
            async with self._engine.begin() as conn:
                marked = await conn.execute(
                    update(accounts)
                    .where(accounts.c.account_id == account_id, accounts.c.deleted_at.is_(None))
                    .values(deleted_at=at, updated_at=at)
                )
                if marked.rowcount != 1:
                    raise LookupError(f"no account {account_id!r} to delete")
                unfinished = await _unfinished_children(conn, account_id)
                referencing = await _groups_referencing(conn, account_id)
                if unfinished or referencing:
                    raise AccountInUse(account_id, unfinished, referencing)
                query = (
                    select(members.c.group_id)
                    .where(members.c.account_id == account_id)
                    .order_by(members.c.group_id)
                )
                touched = list((await conn.execute(query)).scalars())
                for group_id in touched:
                    group = await _load_group(conn, group_id)
                    assert group is not None  # group_members' foreign key
                    left = tuple(m for m in group.members if m.account_id != account_id)
                    changed.append(replace(group, members=left, updated_at=at))
                    await _write_group(conn, changed[-1])
        finally:
            self._settings.changed(account_ids=[account_id], group_ids=touched)
        return changed

    # -- groups -----------------------------------------------------------------------------

    async def insert_group(self, group: Group) -> None:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(tables.groups.insert(), records.group_values(group))
                if group.members:
                    await conn.execute(
                        tables.group_members.insert(),
                        [
                            records.member_values(group.group_id, i, m)
                            for i, m in enumerate(group.members)
                        ],
                    )
        finally:
            self._settings.changed(group_ids=[group.group_id])

    async def replace_group(self, group: Group) -> None:
        """A group's new name, allocation settings, magic and members: one transaction.

        Keeps created_at; the members are replaced as a whole (their order is kept in
        `position`). Raises LookupError if there is no such group, and the database's
        IntegrityError (nothing changed) for a name another group has or an unknown account.
        """
        try:
            async with self._engine.begin() as conn:
                await _write_group(conn, group)
        finally:
            self._settings.changed(group_ids=[group.group_id])

    async def group_name_taken(self, name: str) -> bool:
        async with self._engine.connect() as conn:
            query = select(tables.groups.c.group_id).where(tables.groups.c.name == name)
            return (await conn.execute(query)).first() is not None

    async def get_group(self, group_id: GroupId) -> Group | None:
        """Kept in memory between reads (settings_cache.py): every order reads its group."""
        kept = self._settings.group(group_id)
        if kept is not None:
            return kept
        generation = self._settings.generation
        async with self._engine.connect() as conn:
            group = await _load_group(conn, group_id)
        if group is not None:
            self._settings.keep_group(generation, group)
        return group

    async def list_groups(
        self, *, after: str, limit: int, within: frozenset[str] | None = None
    ) -> list[Group]:
        """`within`: only these groups (what a manager's key reaches); None: all."""
        async with self._engine.connect() as conn:
            query = (
                select(tables.groups.c.group_id)
                .where(tables.groups.c.group_id > after)
                .order_by(tables.groups.c.group_id)
                .limit(limit)
            )
            if within is not None:
                query = query.where(tables.groups.c.group_id.in_(sorted(within)))
            ids = list((await conn.execute(query)).scalars())
            loaded = [await _load_group(conn, group_id) for group_id in ids]
        return [g for g in loaded if g is not None]

    async def next_magic(self) -> int:
        """One above the largest magic in use, or, once that is MAX_MAGIC, the lowest free one."""
        magic = tables.groups.c.magic
        async with self._engine.connect() as conn:
            last = (await conn.execute(select(func.max(magic)))).scalar()
            if int(last or 0) < MAX_MAGIC:
                return max(int(last or 0), FIRST_MAGIC - 1) + 1
            used = set((await conn.execute(select(magic).where(magic >= FIRST_MAGIC))).scalars())
        return next(m for m in range(FIRST_MAGIC, MAX_MAGIC + 1) if m not in used)

    # -- master and child orders ------------------------------------------------------------

    async def insert_master_order(
        self,
        order: MasterOrder,
        children: Sequence[ChildOrder],
        *,
        audit: AuditRecord | None = None,
        snapshots: dict[AccountId, AccountSnapshot] | None = None,
        earlier: Sequence[MasterOrder] = (),
    ) -> None:
        """The order, its allocation and its children: one transaction, before any ack; with
        `audit`, the audit record of the call that submitted it too (no commit of its own);
        with `snapshots`, the accounts' money read for its allocation, as their latest.

        Events: one for each state in `earlier` (the states the order passed through before
        its current one, oldest first), one for its current state, and one for each child
        stored past PENDING (a child stored SENT has its SENT event in this transaction).

        Raises DuplicateClientOrderId (nothing written) when the caller already has an order
        under this client_order_id: the unique index decides, so two gateways' or two
        concurrent calls' submissions cannot both be stored.
        """
        try:
            child_rows = [records.child_row(c) for c in children]
            async with contextlib.AsyncExitStack() as locks:
                if audit is not None:
                    await locks.enter_async_context(self._access.audit_lock)
                    await self._access.settle_doubt()
                await locks.enter_async_context(self._write_lock)
                events = [
                    *(master_event(m) for m in (*earlier, order)),
                    *(child_event(c) for c in children if c.state is not ChildOrderState.PENDING),
                ]
                if self._in_doubt:
                    await self._resolve_doubt()
                if audit is not None:
                    # Stored with this transaction or not at all: in doubt alike.
                    self._access.doubted()
                async with self._numbering() as conn:
                    first_event = await self._first_number(conn, Series.ORDER_EVENTS, len(events))
                    event_rows = [
                        records.event_row(e, first_event + i) for i, e in enumerate(events)
                    ]
                    if audit is not None:
                        audit = await self._access.numbered_in(conn, audit)
                    await conn.execute(tables.master_orders.insert(), records.master_values(order))
                    await bulk.insert_rows(
                        conn, tables.child_orders, records.CHILD_COLUMNS, child_rows
                    )
                    await bulk.insert_rows(
                        conn, tables.order_events, records.EVENT_COLUMNS, event_rows
                    )
                    if audit is not None:
                        await conn.execute(tables.audit_records.insert(), audit_values(audit))
                    if snapshots:
                        await _save_snapshots(conn, snapshots)
                self._numbered_up_to(Series.ORDER_EVENTS, first_event + len(event_rows) - 1)
                if audit is not None:
                    self._access.stored(audit)
        except IntegrityError:
            existing = await self.find_by_client_order_id(
                order.submitted_by, order.spec.client_order_id
            )
            if existing is None:
                raise
            raise DuplicateClientOrderId(existing) from None

    async def request_cancel(self, master_order_id: MasterOrderId, at: datetime) -> bool:
        """Records that a master order is to be cancelled, with its event, in one transaction.

        False if the order is final (or absent): there is nothing left to cancel. True if it
        is marked now or was before (asking twice changes nothing).
        """
        table = tables.master_orders
        async with self._write_lock:
            async with self._numbering() as conn:
                query = select(table.c.state, table.c.cancel_requested_at).where(
                    table.c.master_order_id == master_order_id
                )
                row = (await conn.execute(query)).first()
                if row is None or (state := MasterOrderState(row.state)).is_final:
                    return False
                if row.cancel_requested_at is not None:
                    return True
                await conn.execute(
                    update(table)
                    .where(table.c.master_order_id == master_order_id)
                    .values(cancel_requested_at=at, updated_at=at)
                )
                sequence = await self._first_number(conn, Series.ORDER_EVENTS, 1)
                event = OrderEvent(
                    0,
                    master_order_id,
                    NO_CHILD_ORDER_ID,
                    state,
                    "cancellation requested: no further child order is sent",
                    at,
                )
                await bulk.insert_rows(
                    conn,
                    tables.order_events,
                    records.EVENT_COLUMNS,
                    [records.event_row(event, sequence)],
                )
            self._numbered_up_to(Series.ORDER_EVENTS, sequence)
        return True

    async def find_by_client_order_id(
        self, submitted_by: str, client_order_id: str
    ) -> MasterOrder | None:
        table = tables.master_orders
        query = select(table).where(
            table.c.submitted_by == submitted_by, table.c.client_order_id == client_order_id
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return records.master_from_row(row) if row else None

    async def get_master_order(self, master_order_id: MasterOrderId) -> MasterOrder | None:
        async with self._engine.connect() as conn:
            query = select(tables.master_orders).where(
                tables.master_orders.c.master_order_id == master_order_id
            )
            row = (await conn.execute(query)).mappings().first()
        return records.master_from_row(row) if row else None

    async def list_master_orders(
        self,
        *,
        before: str,
        limit: int,
        group_id: str = "",
        within_groups: frozenset[str] | None = None,
    ) -> list[MasterOrder]:
        """Newest first: ids sort by creation time. `within_groups`: only these groups'."""
        query = select(tables.master_orders)
        if before:
            query = query.where(tables.master_orders.c.master_order_id < before)
        if group_id:
            query = query.where(tables.master_orders.c.group_id == group_id)
        if within_groups is not None:
            query = query.where(tables.master_orders.c.group_id.in_(sorted(within_groups)))
        query = query.order_by(tables.master_orders.c.master_order_id.desc()).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [records.master_from_row(r) for r in rows]

    async def set_master_prices(
        self,
        master_order_id: MasterOrderId,
        *,
        price: Decimal | None,
        stop_loss: Decimal | None,
        take_profit: Decimal | None,
    ) -> None:
        """A working pending order moved by ModifyMasterOrder."""
        table = tables.master_orders
        async with self._engine.begin() as conn:
            await conn.execute(
                update(table)
                .where(table.c.master_order_id == master_order_id)
                .values(price=price, stop_loss=stop_loss, take_profit=take_profit)
            )

    async def opening_orders_touching(
        self, *, group_id: str = "", account_id: str = ""
    ) -> list[MasterOrderId]:
        """Opening master orders (oldest first) with a child that filled or may have: the
        candidates of a flatten. Those already closed are among them; closing finds out."""
        m, c = tables.master_orders, tables.child_orders
        query = (
            select(m.c.master_order_id)
            .distinct()
            .join(c, c.c.master_order_id == m.c.master_order_id)
            .where(
                m.c.closes_master_order_id.is_(None),
                c.c.state.in_(["FILLED", "PARTIALLY_FILLED", "SENT", "UNKNOWN"]),
            )
            .order_by(m.c.master_order_id)
        )
        if group_id:
            query = query.where(m.c.group_id == group_id)
        if account_id:
            query = query.where(c.c.account_id == account_id)
        async with self._engine.connect() as conn:
            return list((await conn.execute(query)).scalars())

    async def unfinished_master_orders(self) -> list[MasterOrder]:
        final = [s.value for s in MasterOrderState if s.is_final]
        query = (
            select(tables.master_orders)
            .where(tables.master_orders.c.state.not_in(final))
            .order_by(tables.master_orders.c.master_order_id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [records.master_from_row(r) for r in rows]

    async def closing_orders_of(
        self, master_order_id: MasterOrderId
    ) -> list[tuple[MasterOrder, list[ChildOrder]]]:
        """The closing orders (CloseMasterPosition) of a master order, oldest first, with their
        children."""
        masters = tables.master_orders
        query = (
            select(masters)
            .where(masters.c.closes_master_order_id == master_order_id)
            .order_by(masters.c.master_order_id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        closes = [records.master_from_row(r) for r in rows]
        return [(c, await self.children_of(c.master_order_id)) for c in closes]

    async def children_of(self, master_order_id: MasterOrderId) -> list[ChildOrder]:
        query = (
            select(tables.child_orders)
            .where(tables.child_orders.c.master_order_id == master_order_id)
            .order_by(tables.child_orders.c.account_id, tables.child_orders.c.child_order_id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [records.child_from_row(r) for r in rows]

    async def save_progress(
        self,
        *,
        masters: Sequence[MasterOrder] = (),
        children: Sequence[ChildOrder] = (),
        fills: Sequence[Fill] = (),
        attempt: object = None,
        groups: Collection[GroupId] = (),
        epochs: Mapping[GroupId, int] | None = None,
    ) -> list[CommittedFill]:
        """One group commit: child state changes, new fills and master order progress, with
        an OrderEvent row for each master and child order given (their new state).

        `attempt`: the same object on each try of one batch. A try that failed may have been
        stored (a connection lost during COMMIT); the next try with the same `attempt` then
        returns what that one stored instead of storing the batch again.

        Returns the fills with their sequences, assigned in the order given, each with the
        message it was stored with (the fill encoder's, made here once for every reader).
        Only after this returns may anyone be told about them. All or nothing: if the
        transaction fails, no row changes and no sequence is used up. Sequences are numbered
        in this process under a lock, which is why one database serves one gateway process
        (a cluster node's come from the database's counters, and it commits only the progress
        of the groups it holds: those of `masters` and `groups` at the epoch it holds them at
        now, those of `epochs` at the epoch given; GroupFenced otherwise).
        """
        # Rows are encoded before the transaction, so a value that cannot be stored fails
        # the batch before anything is written.
        child_rows = [records.child_update_row(c) for c in children]
        events = [*(master_event(m) for m in masters), *(child_event(c) for c in children)]
        encode = self._fill_encoder
        async with self._write_lock:
            if self._in_doubt:
                await self._resolve_doubt()
            if attempt is not None and attempt in self._landed:
                return self._landed.pop(attempt)
            pending = None if attempt is None else _PendingProgress(attempt, [])
            async with self._numbering(pending) as conn:
                if self._cluster is not None:
                    await self._cluster.check_groups(
                        conn, {*(m.spec.group_id for m in masters), *groups}, epochs
                    )
                # The rows that take no number first: a cluster node holds the counters' row
                # locks from taking its numbers to its commit, and keeps that short.
                await bulk.update_children(conn, child_rows)
                for order in masters:
                    await conn.execute(
                        update(tables.master_orders)
                        .where(tables.master_orders.c.master_order_id == order.master_order_id)
                        .values(records.master_progress_values(order))
                    )
                first = await self._first_number(conn, Series.FILLS, len(fills))
                numbered = [_numbered(f, first + i) for i, f in enumerate(fills)]
                # The message carries the sequence, so it is made here, under the lock.
                committed = [
                    CommittedFill(f, None if encode is None else encode(f)) for f in numbered
                ]
                fill_rows = [records.fill_row(f, f.sequence, wire) for f, wire in committed]
                first_event = await self._first_number(conn, Series.ORDER_EVENTS, len(events))
                event_rows = [records.event_row(e, first_event + i) for i, e in enumerate(events)]
                if pending is not None:
                    pending.committed = committed
                    if events:
                        e = events[0]
                        pending.first_event = (
                            first_event,
                            e.master_order_id,
                            e.child_order_id,
                            e.state.name,
                        )
                await bulk.insert_rows(conn, tables.fills, records.FILL_ROW_COLUMNS, fill_rows)
                await bulk.insert_rows(conn, tables.order_events, records.EVENT_COLUMNS, event_rows)
                if self._cluster is not None and fill_rows:
                    # Delivered at the commit: every node's feed reads the new fills.
                    await conn.execute(
                        text("SELECT pg_notify(:channel, :last)"),
                        {"channel": FILLS_CHANNEL, "last": str(first + len(fill_rows) - 1)},
                    )
            self._numbered_up_to(Series.FILLS, first + len(fill_rows) - 1)
            self._numbered_up_to(Series.ORDER_EVENTS, first_event + len(event_rows) - 1)
        return committed

    async def save_events(self, events: Sequence[OrderEvent]) -> list[OrderEvent]:
        """Events of something that changed no order row (e.g. stops modified at a broker),
        numbered and stored in one transaction."""
        if not events:
            return []
        async with self._write_lock:
            if self._in_doubt:
                await self._resolve_doubt()
            async with self._numbering() as conn:
                first = await self._first_number(conn, Series.ORDER_EVENTS, len(events))
                numbered = [replace(e, sequence=first + i) for i, e in enumerate(events)]
                await bulk.insert_rows(
                    conn,
                    tables.order_events,
                    records.EVENT_COLUMNS,
                    [records.event_row(e, e.sequence) for e in numbered],
                )
            self._numbered_up_to(Series.ORDER_EVENTS, first + len(numbered) - 1)
        return numbered

    async def events_of(self, master_order_id: MasterOrderId) -> list[OrderEvent]:
        """The audit trail of a master order and its children, in commit order."""
        query = (
            select(tables.order_events)
            .where(tables.order_events.c.master_order_id == master_order_id)
            .order_by(tables.order_events.c.sequence)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [records.event_from_row(r) for r in rows]

    # -- fills ------------------------------------------------------------------------------

    async def fills_of(self, master_order_id: MasterOrderId) -> list[Fill]:
        query = (
            select(*_STORED_FILL_COLUMNS)
            .where(tables.fills.c.master_order_id == master_order_id)
            .order_by(tables.fills.c.sequence)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [records.fill_from_columns(r) for r in rows]

    async def fills_after(
        self, sequence: int, *, limit: int, fill_filter: FillFilter = FillFilter()
    ) -> list[Fill]:
        query = (
            select(*_STORED_FILL_COLUMNS)
            .where(tables.fills.c.sequence > sequence, *_conditions(fill_filter))
            .order_by(tables.fills.c.sequence)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [records.fill_from_columns(r) for r in rows]

    async def committed_fills_after(self, sequence: int, *, limit: int) -> list[CommittedFill]:
        """The fills after `sequence`, each with the message it was stored with (None for one
        stored without): what a cluster node publishes of every node's commits."""
        fills = tables.fills
        query = (
            select(*_STORED_FILL_COLUMNS, fills.c.wire)
            .where(fills.c.sequence > sequence)
            .order_by(fills.c.sequence)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [CommittedFill(records.fill_from_columns(r[:-1]), r[-1]) for r in rows]

    async def last_fill_sequence(self) -> int:
        """The largest stored fill sequence (every node's)."""
        async with self._engine.connect() as conn:
            last = (await conn.execute(select(func.max(tables.fills.c.sequence)))).scalar()
        return int(last or 0)

    def saw_fills_up_to(self, sequence: int) -> None:
        """A cluster node's feed published every fill up to `sequence`: the newest there is."""
        self._numbered_up_to(Series.FILLS, sequence)

    async def encoded_fills_after(
        self, sequence: int, *, limit: int, fill_filter: FillFilter = FillFilter()
    ) -> list[tuple[int, bytes | Fill]]:
        """The fills `fills_after` finds, as (sequence, the message stored with the fill): what
        a replay sends as it is. A fill stored without one comes in its place as the Fill
        itself, for the reader to encode.

        Only the sequence and the message are read (no decimal or time is converted); the
        fills without a message, if any, are then read whole by a second query over the same
        range.
        """
        async with self._engine.connect() as conn:
            rows = await bulk.fill_messages(
                conn,
                sequence,
                limit=limit,
                account_ids=sorted(fill_filter.account_ids),
                master_order_id=fill_filter.master_order_id,
            )
            for _, wire in rows:
                if wire is None:
                    break
            else:
                return rows
            fills = tables.fills
            bare = select(*_STORED_FILL_COLUMNS).where(
                fills.c.sequence > sequence,
                fills.c.sequence <= rows[-1][0],
                fills.c.wire.is_(None),
                *_conditions(fill_filter),
            )
            decoded = {
                fill.sequence: fill
                for fill in map(records.fill_from_columns, (await conn.execute(bare)).all())
            }
        return [(number, decoded[number] if wire is None else wire) for number, wire in rows]


async def _save_snapshots(
    conn: AsyncConnection, snapshots: dict[AccountId, AccountSnapshot]
) -> None:
    rows = [records.snapshot_update_row(a, s) for a, s in snapshots.items()]
    await bulk.update_rows(conn, tables.accounts, records.SNAPSHOT_UPDATE_COLUMNS, rows)


async def _write_group(conn: AsyncConnection, group: Group) -> None:
    """A group's row and its members, replaced as a whole (see Store.replace_group)."""
    values = records.group_values(group)
    del values["group_id"], values["created_at"]
    groups, members = tables.groups, tables.group_members
    updated = await conn.execute(
        update(groups).where(groups.c.group_id == group.group_id).values(values)
    )
    if updated.rowcount != 1:
        raise LookupError(f"no group {group.group_id!r}")
    await conn.execute(delete(members).where(members.c.group_id == group.group_id))
    if group.members:
        await conn.execute(
            members.insert(),
            [records.member_values(group.group_id, i, m) for i, m in enumerate(group.members)],
        )


async def _unfinished_children(
    conn: AsyncConnection, account_id: AccountId
) -> list[UnfinishedChild]:
    children, masters = tables.child_orders, tables.master_orders
    final_children = [s.value for s in ChildOrderState if s.is_final]
    final_masters = [s.value for s in MasterOrderState if s.is_final]
    query = (
        select(
            masters.c.master_order_id,
            masters.c.state,
            children.c.child_order_id,
            children.c.state,
        )
        .join(masters, masters.c.master_order_id == children.c.master_order_id)
        .where(
            children.c.account_id == account_id,
            children.c.state.not_in(final_children) | masters.c.state.not_in(final_masters),
        )
        .order_by(masters.c.master_order_id, children.c.child_order_id)
    )
    return [
        UnfinishedChild(
            master_order_id, MasterOrderState(master_state), child_order_id, ChildOrderState(state)
        )
        for master_order_id, master_state, child_order_id, state in await conn.execute(query)
    ]


async def _groups_referencing(conn: AsyncConnection, account_id: AccountId) -> list[GroupId]:
    groups = tables.groups
    query = (
        select(groups.c.group_id)
        .where(groups.c.reference_account_id == account_id)
        .order_by(groups.c.group_id)
    )
    return list((await conn.execute(query)).scalars())


async def _load_group(conn: AsyncConnection, group_id: GroupId) -> Group | None:
    row = (
        (await conn.execute(select(tables.groups).where(tables.groups.c.group_id == group_id)))
        .mappings()
        .first()
    )
    if row is None:
        return None
    members = (
        (
            await conn.execute(
                select(tables.group_members).where(tables.group_members.c.group_id == group_id)
            )
        )
        .mappings()
        .all()
    )
    return records.group_from_rows(row, list(members))


def _conditions(fill_filter: FillFilter) -> list[ColumnElement[bool]]:
    """The WHERE clauses of a fill filter."""
    conditions: list[ColumnElement[bool]] = []
    if fill_filter.account_ids:
        conditions.append(tables.fills.c.account_id.in_(sorted(fill_filter.account_ids)))
    if fill_filter.master_order_id:
        conditions.append(tables.fills.c.master_order_id == fill_filter.master_order_id)
    return conditions


def _stored_columns(table: Table, names: Sequence[str]) -> list[ColumnElement[Any]]:
    """`names` of `table` as stored (decimal text, integer micros), in that order: rows read
    in bulk are converted by records' *_from_columns for less than the column types' result
    processors plus a mapping per row."""
    return [
        type_coerce(column, column.type.impl) if isinstance(column.type, TypeDecorator) else column
        for column in (table.c[name] for name in names)
    ]


# A replay reads thousands of fills a page; a submission every account of its group.
_STORED_FILL_COLUMNS = _stored_columns(tables.fills, records.FILL_COLUMNS)
_STORED_ACCOUNT_COLUMNS = _stored_columns(tables.accounts, records.ACCOUNT_COLUMNS)


def _numbered(fill: Fill, sequence: int) -> Fill:
    """The fill with its sequence (dataclasses.replace, without its per-call overhead)."""
    return Fill(
        sequence,
        fill.fill_id,
        fill.master_order_id,
        fill.child_order_id,
        fill.account_id,
        fill.symbol,
        fill.side,
        fill.volume,
        fill.price,
        fill.requested_price,
        fill.slippage_points,
        fill.deal_ticket,
        fill.order_ticket,
        fill.position_ticket,
        fill.executed_at,
    )
