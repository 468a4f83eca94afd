"""One writer per database: an exclusive lock held for the process's life, and a fence.

The store numbers fills, order events and audit records in process (gap-free, in commit order),
and the engine resumes every unfinished order at start: two gateway processes on one database
would hand out the same numbers and send the same orders twice. So a gateway takes the
database's writer lock before it migrates or reads anything, and keeps it until it stops:
- SQLite: an OS lock (flock) on a file beside the database, `<database>-writer.lock`, which
  names the holder; the kernel lets go of it when the process ends, however it ends.
- PostgreSQL: a session advisory lock, on a connection of its own that is checked every
  `watch_interval_s`; the server lets go of it when that session ends. If the connection is
  lost the lock is taken again, and the process goes on only if nobody held it meanwhile.

Every numbering commit checks, inside its transaction, that its process still holds the lock,
and fails with WriterFenced if not. On PostgreSQL a session can end while the process goes on,
so the check reads the `writer_fence` row, whose epoch moves on at each takeover, with a share
lock (a takeover waits for commits under way and sees them) and compares it with the epoch its
process took. On SQLite an flock cannot be lost while its process lives, only with its file (an
operator deleting or replacing it lets another process lock a new one): the check is that the
file at the path is still the one this process locked, two system calls and no trip through the
database's thread. The epoch moves on at every takeover on both.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from gateway.store import tables

if sys.platform == "win32":
    import msvcrt
else:
    import fcntl

log = logging.getLogger(__name__)

# The advisory lock's key: "mam-gate" as a signed 64-bit integer.
ADVISORY_KEY = int.from_bytes(b"mam-gate", "big", signed=True)
FENCE_ID = 1


@dataclass(frozen=True, slots=True)
class WriterIdentity:
    """Which process holds (or held) a database's writer lock."""

    host: str
    pid: int
    since: datetime

    @classmethod
    def of_this_process(cls, now: datetime) -> WriterIdentity:
        return cls(socket.gethostname(), os.getpid(), now)

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host or '?'} since {self.since:%Y-%m-%d %H:%M:%S} UTC"


class WriterLockHeld(Exception):
    """Another process holds the database's writer lock: this one must not start."""

    def __init__(self, database: str, holder: WriterIdentity | None) -> None:
        who = holder.describe() if holder is not None else "another process"
        super().__init__(
            f"the database {database} is in use by another gateway ({who}); one gateway "
            "process per database: stop that one first, or point this one at another database"
        )
        self.holder = holder


class WriterFenced(Exception):
    """This process no longer holds the database's writer lock: it must not commit."""


# Whether the fence's epoch is still this process's, read on the given connection.
FenceCheck = Callable[[AsyncConnection], Awaitable[bool]]


class WriterLock(abc.ABC):
    """The lock of one database; `acquire` once, `release` at the stop. One kind per database
    engine: SqliteWriterLock, PostgresWriterLock."""

    database: str

    @abc.abstractmethod
    async def acquire(self, identity: WriterIdentity) -> None:
        """Raises WriterLockHeld when another process holds it."""

    @abc.abstractmethod
    async def release(self) -> None: ...

    def watch(self, still_ours: FenceCheck, on_lost: Callable[[], None]) -> None:  # noqa: B027
        """Starts whatever keeps the lock held: `still_ours` tells, on a connection that holds
        the lock again, whether the fence is still this process's; `on_lost` is called once
        the lock is gone for good. Nothing to do where the lock cannot be lost."""

    def held_here(self) -> bool | None:
        """Whether this process still holds the lock, where that can be told without the
        database (None: ask the database's fence)."""
        return None


def writer_lock_for(url: str) -> WriterLock | None:
    """The writer lock of the database at `url`; None for an in-memory SQLite database, which
    no other process can open."""
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if not database or database == ":memory:":
            return None
        return SqliteWriterLock(Path(database))
    return PostgresWriterLock(url)


class SqliteWriterLock(WriterLock):
    def __init__(self, database: Path) -> None:
        self.database = str(database)
        self.path = database.with_name(database.name + "-writer.lock")
        self._file: IO[str] | None = None

    async def acquire(self, identity: WriterIdentity) -> None:
        # A few small local writes, once at the start: not worth a thread.
        self._file = _lock_file(self.path, self.database, identity)

    def held_here(self) -> bool:
        """An flock is held until the process ends; it is lost only if its file is deleted
        or replaced (another process may then lock a new one): so it is held while the file
        at the path is the one this process locked. Two system calls, no database trip."""
        if self._file is None:
            return False
        try:
            on_disk = os.stat(self.path)
        except OSError:
            return False
        locked = os.fstat(self._file.fileno())
        return (on_disk.st_dev, on_disk.st_ino) == (locked.st_dev, locked.st_ino)

    async def release(self) -> None:
        if self._file is None:
            return
        handle, self._file = self._file, None
        with contextlib.suppress(OSError):
            handle.seek(0)
            handle.truncate()
            handle.flush()
        handle.close()  # closing the descriptor lets go of the lock


class PostgresWriterLock(WriterLock):
    # How often the lock's session is checked, and how soon a lost one is taken again.
    watch_interval_s = 0.5

    def __init__(self, url: str) -> None:
        self.database = url.rsplit("/", 1)[-1].split("?", 1)[0]
        # A connection of its own, outside the store's pool: held for the process's life.
        self._engine = create_async_engine(url, poolclass=NullPool)
        self._connection: AsyncConnection | None = None
        self._identity: WriterIdentity | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def acquire(self, identity: WriterIdentity) -> None:
        self._identity = identity
        connection = await self._try_lock()
        if connection is None:
            holder = await self._holder()
            await self._engine.dispose()
            raise WriterLockHeld(self.database, holder)
        self._connection = connection

    def watch(self, still_ours: FenceCheck, on_lost: Callable[[], None]) -> None:
        self._watcher = asyncio.create_task(self._watch(still_ours, on_lost), name="writer-lock")

    async def release(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._connection is not None:
            connection, self._connection = self._connection, None
            with contextlib.suppress(Exception):
                await connection.close()  # the session ends: the server lets go of the lock
        await self._engine.dispose()

    async def _try_lock(self) -> AsyncConnection | None:
        connection = await self._engine.connect()
        try:
            assert self._identity is not None
            # Named in pg_stat_activity, so an operator sees which process holds the lock.
            await connection.execute(
                text("SELECT set_config('application_name', :name, false)"),
                {"name": f"mam-gateway writer pid {self._identity.pid}"[:63]},
            )
            # The key written out: a bound parameter would be sent as a 32-bit integer.
            locked = (
                await connection.execute(text(f"SELECT pg_try_advisory_lock({ADVISORY_KEY})"))
            ).scalar()
            # Out of the implicit transaction, so the session holds nothing but the lock.
            await connection.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        if not locked:
            await connection.close()
            return None
        return connection

    async def _holder(self) -> WriterIdentity | None:
        """Who the fence says holds the lock (None before any gateway migrated the database)."""
        try:
            async with self._engine.connect() as connection:
                return await read_holder(connection)
        except Exception:
            return None

    async def _watch(self, still_ours: FenceCheck, on_lost: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(self.watch_interval_s)
            try:
                assert self._connection is not None
                await self._connection.execute(text("SELECT 1"))
                await self._connection.commit()
                continue
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("the writer lock's session was lost (%s); taking the lock again", error)
            if not await self._take_again(still_ours):
                log.critical("the writer lock was taken by another process: this one stops")
                on_lost()
                return

    async def _take_again(self, still_ours: FenceCheck) -> bool:
        """Takes the lock again after its session was lost: True if nobody else took the
        database meanwhile (the fence's epoch is still ours)."""
        old, self._connection = self._connection, None
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close()
        while True:
            try:
                connection = await self._try_lock()
                if connection is None:
                    return False  # another process holds it now
                ours = await still_ours(connection)
                await connection.commit()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the server is not back yet
                log.warning("the writer lock cannot be taken again yet: %s", error)
                await asyncio.sleep(self.watch_interval_s)
                continue
            if not ours:
                await connection.close()
                return False
            self._connection = connection
            log.warning("the writer lock is held again; nobody wrote meanwhile")
            return True


# -- the fence ------------------------------------------------------------------------------


async def take_fence(connection: AsyncConnection, identity: WriterIdentity) -> tuple[int, bool]:
    """Moves the fence's epoch on and names this process its holder (in the caller's
    transaction); returns the new epoch and whether the previous holder let go in an orderly
    stop (False after a crash)."""
    fence = tables.writer_fence
    previous = (
        await connection.execute(select(fence.c.released_at).where(fence.c.fence_id == FENCE_ID))
    ).first()
    await connection.execute(
        update(fence)
        .where(fence.c.fence_id == FENCE_ID)
        .values(
            epoch=fence.c.epoch + 1,
            holder_host=identity.host,
            holder_pid=identity.pid,
            held_since=identity.since,
            released_at=None,
        )
    )
    epoch = (
        await connection.execute(select(fence.c.epoch).where(fence.c.fence_id == FENCE_ID))
    ).scalar_one()
    return int(epoch), previous is None or previous.released_at is not None


async def fence_epoch(connection: AsyncConnection) -> int:
    """The fence's epoch, the row share-locked (PostgreSQL) until the transaction ends: a
    takeover cannot move it on under a commit that has read it."""
    fence = tables.writer_fence
    query = select(fence.c.epoch).where(fence.c.fence_id == FENCE_ID).with_for_update(read=True)
    return int((await connection.execute(query)).scalar_one())


async def release_fence(connection: AsyncConnection, epoch: int, at: datetime) -> None:
    fence = tables.writer_fence
    await connection.execute(
        update(fence)
        .where(fence.c.fence_id == FENCE_ID, fence.c.epoch == epoch)
        .values(released_at=at)
    )


async def read_holder(connection: AsyncConnection) -> WriterIdentity | None:
    fence = tables.writer_fence
    row = (await connection.execute(select(fence).where(fence.c.fence_id == FENCE_ID))).first()
    if row is None or not row.holder_pid:
        return None
    return WriterIdentity(row.holder_host, row.holder_pid, row.held_since)


def _identity_text(identity: WriterIdentity) -> str:
    return json.dumps(
        {"host": identity.host, "pid": identity.pid, "since": identity.since.isoformat()}
    )


def _identity_from(content: str) -> WriterIdentity | None:
    try:
        data = json.loads(content)
        return WriterIdentity(
            str(data["host"]), int(data["pid"]), datetime.fromisoformat(data["since"])
        )
    except (ValueError, KeyError, TypeError):
        return None


def _lock_file(path: Path, database: str, identity: WriterIdentity) -> IO[str]:
    """The lock file, open and locked, naming `identity`; WriterLockHeld naming the holder
    if another process has it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Never removed: a process that deleted it could lock a new file while another still
    # holds the old one.
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
    try:
        _lock_exclusively(handle)
    except OSError as error:
        if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            handle.close()
            raise
        handle.seek(0)
        holder = _identity_from(handle.read())
        handle.close()
        raise WriterLockHeld(database, holder) from None
    handle.seek(0)
    handle.truncate()
    handle.write(_identity_text(identity))
    handle.flush()
    os.fsync(handle.fileno())
    return handle


def _lock_exclusively(handle: IO[str]) -> None:
    """An exclusive lock on the open file, without waiting (OSError if held elsewhere)."""
    if sys.platform == "win32":
        handle.seek(0)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError as error:
            raise OSError(errno.EACCES, str(error)) from None
    else:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
