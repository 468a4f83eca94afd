"""The connected workers, the broker logins each hosts, and the calls in flight on each stream.

A worker's stream is one WorkerSession. A call waits for its answer on a future keyed by the
command id; when the stream drops, every call still waiting fails with TerminalError: the
outcome of a send is unknown and the engine reconciles it by tag. A call made while the login's
worker is away waits for it to come back for up to `reconnect_grace_s` after the drop, so that
the reconciliation of an interrupted send reaches the restarted worker instead of giving up.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.domain.accounts import Platform
from gateway.domain.ids import new_id
from gateway.observability.trace_context import current_traceparent
from gateway.terminals.protocol import TerminalError
from gateway.terminals.remote.commands import CommandAnswer, TerminalCommand

log = logging.getLogger(__name__)

# The aggregate health entry: every attached remote account has a connected worker.
REMOTE_TERMINALS_HEALTH = "remote-terminals"


def worker_health_name(worker_id: str) -> str:
    """The health entry of one worker: SERVING while it is connected."""
    return f"worker/{worker_id}"


@dataclass(frozen=True, slots=True, order=True)
class BrokerLogin:
    """What a terminal is logged in to: the key that routes an account to its worker."""

    login: int
    server: str

    def __str__(self) -> str:
        return f"{self.login}@{self.server}"


@dataclass(frozen=True, slots=True)
class HostedTerminal:
    login: BrokerLogin
    platform: Platform | None = None
    # The worker's backend driving the terminal ("mt5", "sim").
    backend: str = ""


class DropReason(enum.Enum):
    ENDED = "ended its stream"
    STREAM_FAILED = "lost its stream"
    HEARTBEAT_TIMEOUT = "sent no heartbeat in time"
    REPLACED = "was replaced by a new connection with the same worker id"
    GATEWAY_STOPPING = "was disconnected: the gateway is stopping"
    REVOKED = "was disconnected: its token was revoked"


class HostedElsewhere(Exception):
    """A login in a hello is hosted by another connected worker."""

    def __init__(self, login: BrokerLogin, worker_id: str) -> None:
        super().__init__(f"login {login} is hosted by connected worker {worker_id!r}")
        self.login = login
        self.worker_id = worker_id


class WorkerIdInUse(Exception):
    """A connected worker of the same id came with another token: the new connection may not
    take its place (a token holder could otherwise push any worker off its terminals)."""

    def __init__(self, worker_id: str) -> None:
        super().__init__(
            f"worker {worker_id!r} is connected with another token; this connection may not "
            "replace it"
        )
        self.worker_id = worker_id


class HubClosed(Exception):
    """The gateway is stopping: no worker is taken any more."""


@dataclass(slots=True)
class OutgoingCommand:
    command_id: str
    account_id: str
    login: BrokerLogin
    command: TerminalCommand
    answer: asyncio.Future[CommandAnswer]
    # The caller's span, carried to the worker (empty: not traced).
    traceparent: str = ""


@dataclass(frozen=True, slots=True)
class HostView:
    """How a login is reached, for listings."""

    worker_id: str
    backend: str
    connected: bool
    last_seen: datetime | None
    detail: str


def utc_now() -> datetime:
    return datetime.now(UTC)


class WorkerSession:
    """One worker's stream: commands waiting to be written and calls waiting for answers."""

    def __init__(
        self,
        worker_id: str,
        terminals: tuple[HostedTerminal, ...],
        *,
        peer: str,
        connected_at: datetime,
        prices_at_market: bool = False,
        credential: str = "",
    ) -> None:
        self.worker_id = worker_id
        self.terminals = terminals
        # Which token the worker authenticated with (an opaque name of it, never the token).
        self.credential = credential
        # Its terminals price deals sent at market themselves (said in the worker's hello).
        self.prices_at_market = prices_at_market
        self.peer = peer
        self.connected_at = connected_at
        self.last_seen = connected_at
        self.drop_reason: DropReason | None = None
        self.drop_detail = ""
        self._outbox: asyncio.Queue[OutgoingCommand | None] = asyncio.Queue()
        self._pending: dict[str, asyncio.Future[CommandAnswer]] = {}

    @property
    def closed(self) -> bool:
        return self.drop_reason is not None

    def backend_of(self, login: BrokerLogin) -> str:
        return next((t.backend for t in self.terminals if t.login == login), "")

    async def call(
        self, account_id: str, login: BrokerLogin, command: TerminalCommand
    ) -> CommandAnswer:
        """Queues the command for the stream and waits for its answer. A caller that gives up
        (cancellation, timeout) before the command is written keeps it from being sent."""
        if self.closed:
            raise self._dropped_error()
        answer: asyncio.Future[CommandAnswer] = asyncio.get_running_loop().create_future()
        command_id = new_id("cmd")
        self._pending[command_id] = answer
        self._outbox.put_nowait(
            OutgoingCommand(command_id, account_id, login, command, answer, current_traceparent())
        )
        try:
            return await answer
        finally:
            self._pending.pop(command_id, None)

    async def next_command(self) -> OutgoingCommand | None:
        """The next command to write; None once the session is closed."""
        while True:
            item = await self._outbox.get()
            if item is None or self.closed:
                return None
            if not item.answer.done():  # nobody waits for an abandoned one: never sent
                return item

    def more_commands(self, limit: int) -> list[OutgoingCommand]:
        """Commands already waiting (at most `limit`), taken without waiting: written in one
        message with the one next_command returned."""
        found: list[OutgoingCommand] = []
        outbox = self._outbox
        while len(found) < limit and not outbox.empty():
            item = outbox.get_nowait()
            if item is None or self.closed:
                outbox.put_nowait(None)  # the end, for the next next_command
                break
            if not item.answer.done():
                found.append(item)
        return found

    def resolve(self, command_id: str, answer: CommandAnswer | BaseException) -> bool:
        """Hands an answer (or the failure reported for it) to the waiting call. False when
        nobody waits for it any more (the caller gave up, or the id is unknown)."""
        future = self._pending.get(command_id)
        if future is None or future.done():
            return False
        if isinstance(answer, BaseException):
            future.set_exception(answer)
        else:
            future.set_result(answer)
        return True

    def touch(self, now: datetime) -> None:
        self.last_seen = now

    def close(self, reason: DropReason, detail: str = "") -> None:
        """Fails every call still waiting: whether a send executed is unknown."""
        if self.closed:
            return
        self.drop_reason = reason
        self.drop_detail = detail
        for future in self._pending.values():
            if not future.done():
                future.set_exception(self._dropped_error())
        self._pending.clear()
        self._outbox.put_nowait(None)

    def _dropped_error(self) -> TerminalError:
        reason = self.drop_reason.value if self.drop_reason else "closed"
        detail = f" ({self.drop_detail})" if self.drop_detail else ""
        return TerminalError(
            f"worker {self.worker_id!r} {reason}{detail}: the outcome of the request is unknown"
        )


class WorkerHub:
    def __init__(
        self,
        *,
        reconnect_grace_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._grace_s = reconnect_grace_s
        self._clock = clock
        self._now = now
        # The connected session of each worker id.
        self._sessions: dict[str, WorkerSession] = {}
        # The latest session of every worker id seen, connected or not (listings, health).
        self._latest: dict[str, WorkerSession] = {}
        self._host_of: dict[BrokerLogin, WorkerSession] = {}
        self._last_host_of: dict[BrokerLogin, WorkerSession] = {}
        # When each login's worker dropped (monotonic): calls wait for it until the grace ends.
        self._dropped_at: dict[BrokerLogin, float] = {}
        # Accounts whose terminal is remote: account id -> login.
        self._attached: dict[str, BrokerLogin] = {}
        self._changed = asyncio.Event()
        self._listeners: list[Callable[[], None]] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- workers ----------------------------------------------------------------------------

    def connect(
        self,
        worker_id: str,
        terminals: Iterable[HostedTerminal],
        *,
        peer: str = "",
        prices_at_market: bool = False,
        credential: str = "",
    ) -> WorkerSession:
        """Takes a worker whose hello was accepted. A session of the same worker id and
        credential is replaced (the worker reconnected; its calls fail: outcome unknown); one of
        another credential is not (WorkerIdInUse). A login another connected worker hosts is
        refused (HostedElsewhere), since two terminals must not trade one account."""
        if self._closed:
            raise HubClosed("the gateway is stopping")
        previous = self._sessions.get(worker_id)
        if previous is not None and previous.credential != credential:
            raise WorkerIdInUse(worker_id)
        hosted = tuple(terminals)
        for terminal in hosted:
            holder = self._host_of.get(terminal.login)
            if holder is not None and holder.worker_id != worker_id:
                raise HostedElsewhere(terminal.login, holder.worker_id)
        if previous is not None:
            self._drop(previous, DropReason.REPLACED, "")
        session = WorkerSession(
            worker_id,
            hosted,
            peer=peer,
            connected_at=self._now(),
            prices_at_market=prices_at_market,
            credential=credential,
        )
        self._sessions[worker_id] = self._latest[worker_id] = session
        for terminal in hosted:
            self._host_of[terminal.login] = self._last_host_of[terminal.login] = session
            self._dropped_at.pop(terminal.login, None)
        log.info("worker %s connected from %s, hosting %d terminals", worker_id, peer, len(hosted))
        self._notify()
        return session

    def disconnect(self, session: WorkerSession, reason: DropReason, detail: str = "") -> None:
        """Ends a session (idempotent); a replaced session changes nothing else."""
        if self._sessions.get(session.worker_id) is session:
            self._drop(session, reason, detail)
        else:
            session.close(reason, detail)

    def _drop(self, session: WorkerSession, reason: DropReason, detail: str) -> None:
        session.close(reason, detail)
        del self._sessions[session.worker_id]
        now = self._clock()
        for terminal in session.terminals:
            if self._host_of.get(terminal.login) is session:
                del self._host_of[terminal.login]
                self._dropped_at[terminal.login] = now
        log.warning(
            "worker %s %s%s", session.worker_id, reason.value, f": {detail}" if detail else ""
        )
        self._notify()

    def close(self) -> None:
        """Disconnects every worker and takes none any more (the gateway is stopping)."""
        self._closed = True
        for session in list(self._sessions.values()):
            self._drop(session, DropReason.GATEWAY_STOPPING, "")
        self._notify()

    def close_when(self, done: Awaitable[object]) -> None:
        """Closes once `done` completes: at a graceful stop, the workers stay connected while
        running dispatches still need them."""

        async def close_after() -> None:
            with contextlib.suppress(Exception):
                await done
            self.close()

        task = asyncio.get_running_loop().create_task(close_after())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # -- routing ----------------------------------------------------------------------------

    def connected_session(self, login: BrokerLogin) -> WorkerSession | None:
        return self._host_of.get(login)

    async def session_for(self, login: BrokerLogin) -> WorkerSession:
        """The connected session hosting the login. While its worker is away within the
        reconnection grace, waits for it; otherwise raises TerminalError at once."""
        deadline: float | None = None
        while True:
            session = self._host_of.get(login)
            if session is not None:
                return session
            if self._closed:
                raise TerminalError(f"login {login}: the gateway is stopping")
            if deadline is None:
                dropped = self._dropped_at.get(login)
                if dropped is None:
                    raise TerminalError(f"no connected worker hosts login {login}")
                deadline = dropped + self._grace_s
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise TerminalError(
                    f"login {login}: its worker did not come back within {self._grace_s:g} s"
                )
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()

    # -- attached accounts, listings, health ------------------------------------------------

    def attach(self, account_id: str, login: BrokerLogin) -> None:
        self._attached[account_id] = login
        self._notify()

    def detach(self, account_id: str) -> None:
        if self._attached.pop(account_id, None) is not None:
            self._notify()

    def view(self, login: BrokerLogin) -> HostView:
        session = self._host_of.get(login) or self._last_host_of.get(login)
        if session is None:
            return HostView("", "", False, None, "no worker has hosted this login yet")
        if not session.closed:
            return HostView(
                session.worker_id,
                session.backend_of(login),
                True,
                session.last_seen,
                f"hosted by worker {session.worker_id} since {session.connected_at:%H:%M:%S} UTC",
            )
        assert session.drop_reason is not None
        return HostView(
            session.worker_id,
            session.backend_of(login),
            False,
            session.last_seen,
            f"worker {session.worker_id} {session.drop_reason.value}",
        )

    def health(self) -> dict[str, bool]:
        """Health entry name -> serving: each worker seen (connected or not), and whether
        every attached remote account has a connected worker."""
        statuses = {
            worker_health_name(worker_id): worker_id in self._sessions for worker_id in self._latest
        }
        statuses[REMOTE_TERMINALS_HEALTH] = all(
            login in self._host_of for login in self._attached.values()
        )
        return statuses

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Called (synchronously) after every change of connections or attached accounts."""
        self._listeners.append(listener)

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for listener in self._listeners:
            listener()
