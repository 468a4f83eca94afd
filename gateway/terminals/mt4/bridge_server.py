"""The gateway's MT4 bridge endpoint: EAs connect out to it over TCP, one session per login.

A connection must say hello first (within `hello_timeout_s`): protocol versions, login and token.
The token is compared in constant time; an unknown login and a wrong token get the same refusal.
Until it is welcomed a connection costs little and cannot stay long: its first frame may hold
`hello_max_frame_bytes` (a few KiB, not the session's megabyte), at most
`max_pending_connections` wait for their hello at once (more are closed as they come), and a peer
address that failed `failures.burst` hellos in a row is refused unchecked for a while
(gateway/domain/peer_authentication.py), so guessing tokens is slow.
A second hello for a login that has a session replaces it (the EA reconnected before the gateway
saw the old connection die): the old session ends, its outstanding requests fail as unknown.
Mt4Terminal asks the server for its login's current session at every call, so it resumes by
itself when its EA comes back. The server also keeps what each login's EA pushed: the trade pool
of an EA of protocol 2 (book.py), which Mt4Terminal reads instead of asking while it is current.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.domain.peer_authentication import (
    MIN_TOKEN_LENGTH,
    FailedAuthentications,
    FailurePolicy,
)
from gateway.terminals.mt4 import messages
from gateway.terminals.mt4.book import PushedBook
from gateway.terminals.mt4.framing import (
    ConnectionClosed,
    FrameError,
    encode_frame,
    read_message,
)
from gateway.terminals.mt4.messages import (
    AccountReport,
    MessageError,
    OrderRecord,
    RefusalReason,
)
from gateway.terminals.mt4.session import BridgeSession, SessionSettings, request_id_source

log = logging.getLogger(__name__)

# The token expected from the EA of a login; None: the login may not connect.
TokenLookup = Callable[[int], str | None]


# The connections turned away for want of room are logged at most this often.
TURNED_AWAY_LOG_INTERVAL_S = 10.0


@dataclass(frozen=True, slots=True)
class BridgeSettings:
    session: SessionSettings = field(default_factory=SessionSettings)
    # How long a new connection may take to say hello.
    hello_timeout_s: float = 10.0
    # The largest first frame: a hello is a few hundred bytes (its strings are bounded).
    hello_max_frame_bytes: int = 4096
    # Connections waiting for their hello at once; more are closed as they come.
    max_pending_connections: int = 128
    # Failed hellos per peer address before its hellos are refused unchecked.
    failures: FailurePolicy = field(default_factory=FailurePolicy)


@dataclass(slots=True)
class LoginState:
    """What the server knows of one login across its sessions."""

    session: BridgeSession | None = None
    # Why the last session ended ("" while none ended).
    last_close_reason: str = ""
    # The latest pushes of the EA (orders_changed, account_changed) and when they came.
    open_orders: tuple[OrderRecord, ...] | None = None
    open_orders_at: datetime | None = None
    account: AccountReport | None = None
    account_at: datetime | None = None
    # Protocol 2: the trade pool as the EA last pushed or answered it, with its number.
    book: PushedBook = field(default_factory=PushedBook)
    # How many times the EA told of a change of its trades (an orders_changed: of a newer
    # pool in protocol 2), over all its sessions. Only grows.
    trade_events: int = 0


class Mt4BridgeServer:
    def __init__(self, tokens: TokenLookup, settings: BridgeSettings) -> None:
        """Use `await Mt4BridgeServer.start(...)`."""
        self._tokens = tokens
        self._settings = settings
        self._logins: dict[int, LoginState] = {}
        self._changed = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._request_ids = request_id_source(secrets.token_hex(4))
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failures = FailedAuthentications(settings.failures)
        # Connections accepted that have not said hello (or been refused) yet.
        self._pending = 0
        self._turned_away = 0
        self._turned_away_logged_at = -TURNED_AWAY_LOG_INTERVAL_S

    @classmethod
    async def start(
        cls,
        *,
        host: str,
        port: int,
        tokens: TokenLookup,
        settings: BridgeSettings | None = None,
    ) -> Mt4BridgeServer:
        """Listens on host:port (port 0: a free one, see `address`)."""
        server = cls(tokens, settings or BridgeSettings())
        server._server = await asyncio.start_server(server._accept, host, port)
        log.info("MT4 bridge listening on %s:%s", *server.address)
        return server

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None and self._server.sockets
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    @property
    def settings(self) -> BridgeSettings:
        return self._settings

    @property
    def pending_connections(self) -> int:
        """Connections accepted that have not been welcomed or refused yet."""
        return self._pending

    # -- what terminals ask -----------------------------------------------------------------

    def state(self, login: int) -> LoginState:
        return self._logins.setdefault(login, LoginState())

    def session(self, login: int) -> BridgeSession | None:
        """The login's live session, or None."""
        session = self.state(login).session
        return None if session is None or session.is_closed else session

    async def wait_for_session(self, login: int) -> BridgeSession:
        """Returns once the login's EA is connected (the caller bounds the wait)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.session(login) is not None)
        session = self.session(login)
        assert session is not None
        return session

    async def wait_disconnected(self, login: int) -> str:
        """Returns, with the reason, once the login has no live session."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.session(login) is None)
        return self.state(login).last_close_reason

    async def wait_for_update(self, login: int, condition: Callable[[LoginState], bool]) -> None:
        """Returns once the login's state (e.g. its latest pushes) satisfies `condition`."""
        async with self._changed:
            await self._changed.wait_for(lambda: condition(self.state(login)))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for state in self._logins.values():
            if state.session is not None:
                await state.session.close("gateway shutting down")
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    # -- connections ------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if self._pending >= self._settings.max_pending_connections:
            self._turn_away(peer)
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._pending += 1
        try:
            try:
                session = await self._handshake(reader, writer, peer)
            finally:
                self._pending -= 1
            if session is not None:
                await self._serve(session)
        except asyncio.CancelledError:
            writer.close()
            raise
        finally:
            self._tasks.discard(task)

    def _turn_away(self, peer: object) -> None:
        self._turned_away += 1
        now = asyncio.get_running_loop().time()
        if now - self._turned_away_logged_at >= TURNED_AWAY_LOG_INTERVAL_S:
            log.warning(
                "MT4 bridge: %d connections waiting for their hello already; %d turned away "
                "(the last from %s)",
                self._settings.max_pending_connections,
                self._turned_away,
                peer,
            )
            self._turned_away = 0
            self._turned_away_logged_at = now

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: object
    ) -> BridgeSession | None:
        settings = self._settings
        max_bytes = settings.session.max_frame_bytes
        address = _address(peer)
        try:
            async with asyncio.timeout(settings.hello_timeout_s):
                first = await read_message(reader, max_bytes=settings.hello_max_frame_bytes)
            hello = messages.parse_hello(first)
        except TimeoutError:
            log.warning("MT4 bridge: %s sent no hello in %ss", peer, settings.hello_timeout_s)
            await _refuse(writer, RefusalReason.MALFORMED, "no hello in time")
            return None
        except (FrameError, MessageError) as error:
            log.warning("MT4 bridge: %s sent a bad hello: %s", peer, error)
            await _refuse(writer, RefusalReason.MALFORMED, f"bad hello: {error}")
            return None
        except (ConnectionClosed, ConnectionError):
            writer.close()
            return None
        wait_s = self._failures.retry_after_s(address)
        if wait_s > 0:
            log.debug(
                "MT4 bridge: login %s from %s refused unchecked: throttled", hello.login, peer
            )
            await _refuse(
                writer,
                RefusalReason.UNAUTHORIZED,
                f"too many failed hellos from this address; try again in {wait_s:.0f} s",
            )
            return None
        protocol = messages.negotiate(hello.protocol_min, hello.protocol_max)
        if protocol is None:
            log.warning(
                "MT4 bridge: login %s speaks protocol %s..%s, the gateway %s..%s",
                hello.login,
                hello.protocol_min,
                hello.protocol_max,
                messages.PROTOCOL_MIN,
                messages.PROTOCOL_MAX,
            )
            await _refuse(
                writer,
                RefusalReason.VERSION,
                f"the gateway speaks protocol {messages.PROTOCOL_MIN}..{messages.PROTOCOL_MAX}",
            )
            return None
        expected = self._tokens(hello.login)
        if expected is not None and len(expected) < MIN_TOKEN_LENGTH:
            # A short token can be guessed: the login stays out until it gets a real one.
            log.error(
                "MT4 bridge: the token configured for login %s is shorter than %d characters; "
                "the login is refused until it gets a longer one",
                hello.login,
                MIN_TOKEN_LENGTH,
            )
            expected = None
        # compare_digest runs in time independent of where the tokens differ.
        token_ok = expected is not None and hmac.compare_digest(
            expected.encode("utf-8"), hello.token.encode("utf-8")
        )
        if not token_ok:
            why = "unknown login" if expected is None else "wrong token"
            log.warning("MT4 bridge: login %s from %s refused: %s", hello.login, peer, why)
            if self._failures.record_failure(address):
                policy = self._failures.policy
                log.warning(
                    "MT4 bridge: hellos from %s throttled after %d failures: refused unchecked, "
                    "one more allowed every %g s",
                    address,
                    policy.burst,
                    policy.refill_s,
                )
            await _refuse(writer, RefusalReason.UNAUTHORIZED, "unknown login or wrong token")
            return None
        session_settings = settings.session
        session_id = secrets.token_hex(8)
        pushes = protocol >= messages.TRADE_EVENTS_PROTOCOL
        session = BridgeSession(
            reader,
            writer,
            hello,
            protocol=protocol,
            session_id=session_id,
            settings=session_settings,
            request_ids=self._request_ids,
            on_event=lambda message: self._on_event(hello.login, session_id, pushes, message),
        )
        try:
            writer.write(
                encode_frame(
                    messages.welcome_message(
                        protocol=protocol,
                        session_id=session.session_id,
                        heartbeat_ms=round(session_settings.heartbeat_s * 1000),
                        timeout_ms=round(session_settings.timeout_s * 1000),
                        max_frame_bytes=max_bytes,
                    )
                )
            )
            await writer.drain()
        except ConnectionError:
            writer.close()
            return None
        state = self.state(hello.login)
        previous = state.session
        if previous is not None and not previous.is_closed:
            await previous.close("replaced by a new connection of the same login")
        async with self._changed:
            state.session = session
            # Before the session reads anything: its first push is the first that counts.
            state.book.begin(session_id, pushes=pushes)
            session.start()
            self._changed.notify_all()
        log.info(
            "MT4 bridge: login %s connected from %s (server %r, EA %s, build %s, protocol %s)",
            hello.login,
            peer,
            hello.server,
            hello.ea_version,
            hello.terminal_build,
            protocol,
        )
        return session

    async def _serve(self, session: BridgeSession) -> None:
        reason = await session.wait_closed()
        state = self.state(session.login)
        async with self._changed:
            if state.session is session:
                state.last_close_reason = reason
            self._changed.notify_all()

    def _on_event(self, login: int, session_id: str, pushes: bool, message: dict[str, Any]) -> None:
        state = self.state(login)
        now = datetime.now(UTC)
        try:
            if message["type"] == messages.ORDERS_CHANGED and pushes:
                report = messages.parse_book(message)
                if state.book.pushed(session_id, report):
                    state.trade_events += 1
                    if report.records is not None:
                        state.open_orders = report.records
                        state.open_orders_at = now
            elif message["type"] == messages.ORDERS_CHANGED:
                # Protocol 1: no number, and pushed at most every PushIntervalMs: never read
                # instead of asking, but still news that the trades changed.
                state.open_orders = tuple(messages.parse_records(message, "orders"))
                state.open_orders_at = now
                state.trade_events += 1
            else:
                state.account = messages.parse_account(message)
                state.account_at = now
        except MessageError as error:
            log.warning("login %s: bad %s ignored: %s", login, message["type"], error)
            return
        task = asyncio.create_task(self._notify())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


def _address(peer: object) -> str:
    """The host of a peer name ((host, port) for IPv4, (host, port, flow, scope) for IPv6)."""
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer)


async def _refuse(writer: asyncio.StreamWriter, reason: RefusalReason, detail: str) -> None:
    with contextlib.suppress(Exception):
        writer.write(encode_frame(messages.refused_message(reason, detail)))
        async with asyncio.timeout(1.0):
            await writer.drain()
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
