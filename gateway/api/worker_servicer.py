"""mam.v1.WorkerService (the stream remote terminal workers connect out to), mam.v1.TerminalService
(what each attached terminal is and whether it is reachable), and the health entries of workers.

One Connect stream is one WorkerSession of the hub: a reader task takes the worker's results and
heartbeats, the handler writes commands (and a heartbeat whenever it has had nothing to write for
an interval). A worker silent for three intervals is dropped. Tokens are compared in constant
time and never logged.

Who may connect (docs/workers.md, "Tokens"): a token entry may name the worker id that must use
it and the logins it may host; a worker id or a login named by an entry belongs to that entry's
token alone. A connected worker is replaced only by a connection with the same token. The token
file is read again when it changes: a token removed from it is refused from then on, and a
worker connected with it is dropped within REVOCATION_CHECK_S. Failed authentications are logged
and, per peer address, throttled.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer
from grpc_status import rpc_status

from gateway._proto.mam.v1 import terminal_service_pb2, terminal_service_pb2_grpc
from gateway._proto.mam.v1 import worker_service_pb2 as pb
from gateway._proto.mam.v1 import worker_service_pb2_grpc as pb_grpc
from gateway.api import requests
from gateway.api.errors import ERROR_DOMAIN
from gateway.api.mapping import timestamp
from gateway.api.peer_throttle import address_of
from gateway.config import (
    ConfigError,
    WorkersConfig,
    WorkerToken,
    check_worker_tokens,
    read_worker_tokens_file,
)
from gateway.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from gateway.domain.ids import AccountId
from gateway.domain.peer_authentication import FailedAuthentications
from gateway.engine.terminal_registry import TerminalRegistry
from gateway.store import Store
from gateway.terminals.protocol import Terminal, TerminalError
from gateway.terminals.remote import (
    BrokerLogin,
    DropReason,
    HostedElsewhere,
    HubClosed,
    RemoteTerminal,
    WorkerHub,
    WorkerSession,
    wire,
)
from gateway.terminals.remote.worker_hub import OutgoingCommand, WorkerIdInUse, utc_now

log = logging.getLogger(__name__)

Context = Any

# A connection that says nothing is not kept waiting for its hello.
HELLO_TIMEOUT_S = 10.0
# Commands in one CommandBatch at most (≈200 bytes each: far below any message size limit).
MAX_BATCH = 1_000
# A worker silent for this many heartbeat intervals is dropped.
MISSED_HEARTBEATS = 3
# ListTerminals asks each terminal inside the gateway for its health, at most this long.
LOCAL_HEALTH_TIMEOUT_S = 2.0
# How often a connected worker's token is checked again (a revocation drops it within this).
REVOCATION_CHECK_S = 1.0


def _digest(token: str) -> bytes:
    # Equal lengths for compare_digest, whatever the lengths of the tokens.
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: bytes
    token: WorkerToken


class WorkerTokens:
    """The worker tokens in force: those of the environment (fixed for the process's life) and
    those of workers.tokens_file, read again whenever the file changes. A file that cannot be
    read or parsed leaves the tokens last read in force (logged): a bad edit does not lock every
    worker out. Empty the file, rather than delete it, to revoke all of its tokens."""

    def __init__(self, settings: WorkersConfig) -> None:
        self._path = settings.tokens_file
        self._fixed = tuple(t for t in settings.tokens if not t.from_file)
        self._stamp = self._file_stamp()
        self._entries = self._entries_of(settings.tokens)

    def reload(self) -> None:
        """Reads the file now, changed or not (SIGHUP)."""
        self._stamp = (-1, -1, -1, -1)  # no file's stamp
        self.current()

    def current(self) -> tuple[_Entry, ...]:
        stamp = self._file_stamp()
        if self._path is not None and stamp != self._stamp:
            self._stamp = stamp
            try:
                tokens = [*self._fixed, *read_worker_tokens_file(self._path)]
                check_worker_tokens(tokens)
            except ConfigError as error:
                log.error("worker tokens not read again, the last ones read stay: %s", error)
            else:
                self._entries = self._entries_of(tokens)
                log.info("worker tokens read again from %s: %d in force", self._path, len(tokens))
        return self._entries

    def _file_stamp(self) -> tuple[int, int, int, int] | None:
        if self._path is None:
            return None
        try:
            status = os.stat(self._path)
        except OSError:
            return None
        return (status.st_mtime_ns, status.st_ctime_ns, status.st_size, status.st_ino)

    @staticmethod
    def _entries_of(tokens: Iterable[WorkerToken]) -> tuple[_Entry, ...]:
        return tuple(_Entry(_digest(token.secret), token) for token in tokens)


def authorize(entries: tuple[_Entry, ...], worker_id: str, digest: bytes) -> WorkerToken | None:
    """The entry whose token `digest` is, if it may be used by `worker_id`: one bound to that
    id, or one bound to none if no entry claims the id. Every entry is compared, whatever
    matched (no early exit)."""
    claimed = {entry.token.worker_id for entry in entries if entry.token.worker_id}
    granted = None
    for entry in entries:
        same = hmac.compare_digest(entry.digest, digest)
        bound_to = entry.token.worker_id
        if same and (bound_to == worker_id or (not bound_to and worker_id not in claimed)):
            granted = entry.token
    return granted


def logins_refused(
    entries: tuple[_Entry, ...], granted: WorkerToken, logins: Iterable[BrokerLogin]
) -> list[BrokerLogin]:
    """The logins `granted` may not host: with logins of its own, those it does not list;
    without, those another entry lists."""
    if granted.logins:
        allowed = granted.logins
        return [
            login
            for login in logins
            if not any(own.covers(login.login, login.server) for own in allowed)
        ]
    named = [hostable for entry in entries for hostable in entry.token.logins]
    return [
        login
        for login in logins
        if any(hostable.covers(login.login, login.server) for hostable in named)
    ]


class WorkerServicer(pb_grpc.WorkerServiceServicer):
    def __init__(
        self,
        hub: WorkerHub,
        settings: WorkersConfig,
        *,
        now: Callable[[], datetime] = utc_now,
        failures: FailedAuthentications | None = None,
    ) -> None:
        self._hub = hub
        self._interval_s = settings.heartbeat_seconds
        self._tokens = WorkerTokens(settings)
        self._failures = failures or FailedAuthentications()
        self._now = now

    def reload_tokens(self) -> None:
        """Reads workers.tokens_file now (SIGHUP); it is read whenever it changes anyway."""
        self._tokens.reload()

    async def Connect(
        self, request_iterator: AsyncIterator[pb.ConnectRequest], context: Context
    ) -> AsyncIterator[pb.ConnectResponse]:
        peer = context.peer()
        address = address_of(peer)
        wait_s = self._failures.retry_after_s(address)
        if wait_s > 0:
            log.debug("worker connection from %s refused unchecked: throttled", peer)
            raise ResourceExhausted(
                "too many failed worker authentications from this address; try again later",
                reason="AUTHENTICATION_THROTTLED",
                retry_after_s=wait_s,
            )
        incoming = aiter(request_iterator)
        hello_message = await self._hello(incoming)
        worker_id = hello_message.worker_id.strip()
        digest = _digest(hello_message.token)
        granted = authorize(self._tokens.current(), worker_id, digest)
        if granted is None:
            self._failed(address, peer, worker_id)
            raise Unauthenticated("unknown worker token, or one not issued to this worker id")
        hello = wire.hello_from_proto(hello_message)
        logins = [terminal.login for terminal in hello.terminals]
        refused = logins_refused(self._tokens.current(), granted, logins)
        if refused:
            log.warning(
                "worker %r from %s refused: its token may not host %s",
                worker_id,
                peer,
                ", ".join(map(str, refused)),
            )
            raise PermissionDenied(
                f"the token of worker {worker_id!r} may not host login "
                f"{', '.join(map(str, refused))}; list it with the token at the gateway",
                reason="LOGIN_NOT_PERMITTED",
            )
        try:
            session = self._hub.connect(
                hello.worker_id,
                hello.terminals,
                peer=peer,
                prices_at_market=hello.prices_at_market,
                # Which entry it came with: a hex name of the token's digest.
                credential=digest.hex()[:16],
            )
        except HostedElsewhere as error:
            raise FailedPrecondition(
                f"{error}; one account must be traded through one terminal",
                reason="TERMINAL_HOSTED_ELSEWHERE",
            ) from None
        except WorkerIdInUse as error:
            log.warning("worker %r from %s refused: %s", worker_id, peer, error)
            raise AlreadyExists(str(error), reason="WORKER_ID_IN_USE") from None
        except HubClosed:
            raise Unavailable("the gateway is stopping", reason="GATEWAY_STOPPING") from None
        reader = asyncio.create_task(self._read(session, incoming))
        clock = asyncio.get_running_loop().time
        try:
            yield pb.ConnectResponse(welcome=self._welcome())
            heartbeat_at = clock() + self._interval_s
            check_at = clock() + REVOCATION_CHECK_S
            while True:
                if clock() >= check_at:
                    check_at = clock() + REVOCATION_CHECK_S
                    if self._revoked(worker_id, digest, logins):
                        log.warning("worker %r dropped: its token was revoked", worker_id)
                        self._hub.disconnect(
                            session, DropReason.REVOKED, "removed from the tokens in force"
                        )
                try:
                    async with asyncio.timeout(max(0.0, min(heartbeat_at, check_at) - clock())):
                        outgoing = await session.next_command()
                except TimeoutError:
                    if clock() >= heartbeat_at:
                        heartbeat_at = clock() + self._interval_s
                        yield pb.ConnectResponse(
                            heartbeat=pb.Heartbeat(time=timestamp(self._now()))
                        )
                    continue
                if outgoing is None:
                    break
                heartbeat_at = clock() + self._interval_s
                # What else is waiting goes in the same message, to a worker that reads them.
                more = session.more_commands(MAX_BATCH - 1) if hello.accepts_command_batches else []
                if not more:
                    yield pb.ConnectResponse(command=_command(outgoing))
                    continue
                yield pb.ConnectResponse(
                    commands=pb.CommandBatch(commands=[_command(c) for c in (outgoing, *more)])
                )
        finally:
            reader.cancel()
            self._hub.disconnect(session, DropReason.STREAM_FAILED, "the stream was cancelled")
        await _end_for(session, context)

    async def _hello(self, incoming: AsyncIterator[pb.ConnectRequest]) -> pb.WorkerHello:
        try:
            async with asyncio.timeout(HELLO_TIMEOUT_S):
                first = await anext(incoming, None)
        except TimeoutError:
            first = None
            problem = f"not received within {HELLO_TIMEOUT_S:g} s"
        else:
            problem = "the first message must be a hello"
        if first is None or first.WhichOneof("message") != "hello":
            raise InvalidArgument([FieldViolation("hello", problem)])
        return first.hello

    def _failed(self, address: str, peer: str, worker_id: str) -> None:
        throttled = self._failures.record_failure(address)
        log.warning(
            "worker authentication failed from %s (worker id %r): unknown token, or one not "
            "issued to this worker id",
            peer,
            worker_id,
        )
        if throttled:
            policy = self._failures.policy
            log.warning(
                "worker authentications from %s throttled after %d failures: refused unchecked, "
                "one more allowed every %g s",
                address,
                policy.burst,
                policy.refill_s,
            )

    def _revoked(self, worker_id: str, digest: bytes, logins: list[BrokerLogin]) -> bool:
        """Whether the tokens in force no longer let this worker in as it came."""
        entries = self._tokens.current()
        granted = authorize(entries, worker_id, digest)
        return granted is None or bool(logins_refused(entries, granted, logins))

    def _welcome(self) -> pb.WorkerWelcome:
        interval = duration_pb2.Duration()
        interval.FromMilliseconds(int(self._interval_s * 1000))
        return pb.WorkerWelcome(
            time=timestamp(self._now()), heartbeat_interval=interval, accepts_result_batches=True
        )

    async def _read(
        self, session: WorkerSession, incoming: AsyncIterator[pb.ConnectRequest]
    ) -> None:
        silence_s = self._interval_s * MISSED_HEARTBEATS
        try:
            while True:
                async with asyncio.timeout(silence_s):
                    message = await anext(incoming, None)
                if message is None:
                    self._hub.disconnect(session, DropReason.ENDED)
                    return
                session.touch(self._now())
                kind = message.WhichOneof("message")
                if kind == "result":
                    _deliver(session, message.result)
                elif kind == "results":
                    for result in message.results.results:
                        _deliver(session, result)
                elif kind != "heartbeat":
                    log.warning("worker %s sent an unexpected %s", session.worker_id, kind)
        except TimeoutError:
            self._hub.disconnect(
                session, DropReason.HEARTBEAT_TIMEOUT, f"nothing received for {silence_s:g} s"
            )
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the stream broke (reset, cancelled by the peer)
            self._hub.disconnect(session, DropReason.STREAM_FAILED, type(error).__name__)


def _command(outgoing: OutgoingCommand) -> pb.TerminalCommand:
    return wire.command_to_proto(
        outgoing.command_id,
        outgoing.account_id,
        outgoing.login,
        outgoing.command,
        traceparent=outgoing.traceparent,
    )


def _deliver(session: WorkerSession, result: pb.CommandResult) -> None:
    try:
        answer = wire.answer_from_proto(result)
    except wire.WireError as error:
        answer = TerminalError(f"worker {session.worker_id}: an answer that does not read: {error}")
    if not session.resolve(result.command_id, answer):
        log.debug(
            "worker %s: answer to %s came after its caller gave up",
            session.worker_id,
            result.command_id,
        )


async def _end_for(session: WorkerSession, context: Context) -> None:
    """Ends a stream whose session closed with the status that tells the worker why."""
    reason = session.drop_reason
    if reason is DropReason.REPLACED:
        info = error_details_pb2.ErrorInfo(reason="WORKER_REPLACED", domain=ERROR_DOMAIN)
        details = any_pb2.Any()
        details.Pack(info)
        status = status_pb2.Status(
            code=code_pb2.ABORTED,
            message=f"another connection of worker {session.worker_id!r} replaced this one",
            details=[details],
        )
        await context.abort_with_status(rpc_status.to_status(status))
    if reason is DropReason.HEARTBEAT_TIMEOUT:
        raise Unavailable(f"no heartbeat: {session.drop_detail}")
    if reason is DropReason.REVOKED:
        raise Unauthenticated(
            f"the token of worker {session.worker_id!r} was revoked", reason="WORKER_TOKEN_REVOKED"
        )
    if reason is DropReason.GATEWAY_STOPPING:
        raise Unavailable("the gateway is stopping; reconnect", reason="GATEWAY_STOPPING")


class WorkerHealth:
    """Keeps the gRPC health service in step with the hub: `worker/<id>` SERVING while that
    worker is connected, and `remote-terminals` SERVING while every attached remote account has
    a connected worker. The server's own entry ("") does not depend on workers."""

    def __init__(self, hub: WorkerHub, health: HealthServicer) -> None:
        self._hub = hub
        self._health = health
        self._lock = asyncio.Lock()
        self._refreshing: set[asyncio.Task[None]] = set()
        hub.add_listener(self._changed)
        self._changed()

    async def stop(self) -> None:
        """Lets the refreshes under way finish (none is left running after a stop)."""
        while self._refreshing:
            await asyncio.gather(*list(self._refreshing), return_exceptions=True)

    def _changed(self) -> None:
        task = asyncio.get_running_loop().create_task(self.refresh())
        self._refreshing.add(task)
        task.add_done_callback(self._refreshing.discard)

    async def refresh(self) -> None:
        # Serialized, each reading the hub when it runs: the last refresh sets the last state.
        async with self._lock:
            for name, serving in self._hub.health().items():
                status = (
                    health_pb2.HealthCheckResponse.SERVING
                    if serving
                    else health_pb2.HealthCheckResponse.NOT_SERVING
                )
                await self._health.set(name, status)


class TerminalServicer(terminal_service_pb2_grpc.TerminalServiceServicer):
    def __init__(self, registry: TerminalRegistry, hub: WorkerHub, store: Store) -> None:
        self._registry = registry
        self._hub = hub
        self._store = store

    async def ListTerminals(
        self, request: terminal_service_pb2.ListTerminalsRequest, context: Context
    ) -> terminal_service_pb2.ListTerminalsResponse:
        limit = requests.page_size(request.page_size, default=100, maximum=1000)
        after = requests.decode_page_token(request.page_token)
        terminals = sorted(
            (t for t in self._registry.attached() if t.account_id > after),
            key=lambda t: t.account_id,
        )[: limit + 1]
        page, token = requests.split_page(terminals, limit, lambda t: t.account_id)
        accounts = await self._store.get_accounts(AccountId(t.account_id) for t in page)
        rows = await asyncio.gather(*(self._describe(t) for t in page))
        for row in rows:
            account = accounts.get(AccountId(row.account_id))
            if account is not None:
                row.login, row.server = account.login, account.server
        return terminal_service_pb2.ListTerminalsResponse(terminals=rows, next_page_token=token)

    async def _describe(self, terminal: Terminal) -> terminal_service_pb2.Terminal:
        if isinstance(terminal, RemoteTerminal):
            view = self._hub.view(terminal.login)
            return terminal_service_pb2.Terminal(
                account_id=terminal.account_id,
                backend=view.backend,
                worker_id=view.worker_id,
                connected=view.connected,
                detail=view.detail,
                last_heartbeat_time=timestamp(view.last_seen),
            )
        try:
            async with asyncio.timeout(LOCAL_HEALTH_TIMEOUT_S):
                health = await terminal.health()
            connected, detail = health.connected, health.detail
        except (TimeoutError, TerminalError) as error:
            connected, detail = False, f"no health: {error or 'timeout'}"
        return terminal_service_pb2.Terminal(
            account_id=terminal.account_id,
            backend=_backend_name(terminal),
            connected=connected,
            detail=detail,
        )


def _backend_name(terminal: Terminal) -> str:
    """The backend package of a terminal inside the gateway: gateway.terminals.sim -> "sim"."""
    parts = type(terminal).__module__.split(".")
    if parts[:2] == ["gateway", "terminals"] and len(parts) > 2:
        return parts[2]
    return type(terminal).__name__
