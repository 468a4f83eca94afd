"""One EA connection after its welcome: requests and their answers by id, events, heartbeats.

The EA is single-threaded: it answers requests in the order they arrive and cannot send
anything (not even a heartbeat) while a trade call blocks it. So the watchdog allows a longer
silence while a trade request is outstanding than while the EA is idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.terminals.mt4 import messages
from gateway.terminals.mt4.framing import (
    ConnectionClosed,
    FrameError,
    decode_payload,
    encode_frame,
    read_frame,
)
from gateway.terminals.mt4.messages import Hello

log = logging.getLogger(__name__)


class SessionClosed(Exception):
    """The EA connection ended before the answer came."""


@dataclass(frozen=True, slots=True)
class SessionSettings:
    # How often each side sends a heartbeat.
    heartbeat_s: float = 5.0
    # Silence after which an idle EA counts as gone.
    timeout_s: float = 20.0
    # Silence allowed while a trade request is outstanding (the EA is blocked in OrderSend).
    trade_timeout_s: float = 90.0
    max_frame_bytes: int = 1 << 20


EventListener = Callable[[dict[str, Any]], None]


class BridgeSession:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        hello: Hello,
        *,
        protocol: int,
        session_id: str,
        settings: SessionSettings,
        request_ids: Callable[[], str],
        on_event: EventListener,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.hello = hello
        self.protocol = protocol
        self.session_id = session_id
        self._settings = settings
        self._request_ids = request_ids
        self._on_event = on_event
        self.connected_at = datetime.now(UTC)
        self._write_lock = asyncio.Lock()
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._trades_outstanding = 0
        self._last_received = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = asyncio.Event()
        self.close_reason = ""

    @property
    def login(self) -> int:
        return self.hello.login

    @property
    def is_closed(self) -> bool:
        return self._closed.is_set()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._read_loop(), name=f"mt4-read-{self.login}"),
            asyncio.create_task(self._watchdog(), name=f"mt4-watchdog-{self.login}"),
        ]

    async def wait_closed(self) -> str:
        await self._closed.wait()
        return self.close_reason

    # -- requests ---------------------------------------------------------------------------

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Sends one request and returns the EA's answer (same id). Raises SessionClosed if the
        connection ends first; the caller bounds the wait (a cancelled wait is forgotten, and
        its late answer dropped)."""
        if self.is_closed:
            raise SessionClosed(self.close_reason)
        request_id = self._request_ids()
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = answer
        is_trade = message["type"] in messages.TRADE_REQUESTS
        if is_trade:
            self._trades_outstanding += 1
        try:
            await self._send({**message, "id": request_id})
            return await answer
        finally:
            self._pending.pop(request_id, None)
            if is_trade:
                self._trades_outstanding -= 1

    async def _send(self, message: dict[str, Any]) -> None:
        frame = encode_frame(message, max_bytes=self._settings.max_frame_bytes)
        async with self._write_lock:
            if self.is_closed:
                raise SessionClosed(self.close_reason)
            try:
                self._writer.write(frame)
                await self._writer.drain()
            except (ConnectionError, RuntimeError) as error:
                await self.close(f"connection lost while sending: {error}", notify=False)
                raise SessionClosed(self.close_reason) from error

    # -- receiving --------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        try:
            while True:
                payload = await read_frame(self._reader, max_bytes=self._settings.max_frame_bytes)
                self._last_received = time.monotonic()
                self._dispatch(decode_payload(payload))
        except ConnectionClosed as error:
            await self.close(f"EA disconnected: {error}", notify=False)
        except FrameError as error:
            await self.close(f"protocol error: {error}")
        except OSError as error:
            await self.close(f"connection lost: {error}", notify=False)
        except Exception as error:  # a bug here must end the session, not leave it deaf
            log.exception("login %s: reading from the EA failed", self.login)
            await self.close(f"internal error: {error}")

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == messages.HEARTBEAT:
            return
        request_id = message.get("id")
        if isinstance(request_id, str):
            answer = self._pending.get(request_id)
            if answer is None:
                # Answered after the gateway stopped waiting: what it did is found by tag.
                log.info("login %s: late %s for request %s dropped", self.login, kind, request_id)
            elif not answer.done():
                answer.set_result(message)
            return
        if kind == messages.BYE:
            reason = message.get("reason")
            self._spawn_close(f"EA said goodbye: {reason if isinstance(reason, str) else ''}")
            return
        if kind in (messages.ORDERS_CHANGED, messages.ACCOUNT_CHANGED):
            try:
                self._on_event(message)
            except Exception:  # a listener's bug must not end the session
                log.exception("login %s: %s listener failed", self.login, kind)
            return
        log.warning("login %s: unexpected %r from the EA ignored", self.login, kind)

    def _spawn_close(self, reason: str) -> None:
        task = asyncio.create_task(self.close(reason, notify=False))
        self._tasks.append(task)

    # -- heartbeats -------------------------------------------------------------------------

    async def _watchdog(self) -> None:
        settings = self._settings
        while not self.is_closed:
            await asyncio.sleep(settings.heartbeat_s)
            allowed = settings.trade_timeout_s if self._trades_outstanding else settings.timeout_s
            silent = time.monotonic() - self._last_received
            if silent > allowed:
                await self.close(f"heartbeat timeout: nothing from the EA for {silent:.1f}s")
                return
            with contextlib.suppress(SessionClosed):
                await self._send(messages.heartbeat_message())

    # -- closing ----------------------------------------------------------------------------

    async def close(self, reason: str, *, notify: bool = True) -> None:
        """Ends the session: outstanding requests fail with SessionClosed(reason); with
        `notify`, the EA is told why (bye) first, if the connection still takes it."""
        if self.is_closed:
            return
        self.close_reason = reason
        self._closed.set()
        log.info("login %s: EA session %s closed: %s", self.login, self.session_id, reason)
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(SessionClosed(reason))
        if notify:
            with contextlib.suppress(Exception):
                self._writer.write(encode_frame(messages.bye_message(reason)))
                async with asyncio.timeout(1.0):
                    await self._writer.drain()
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()


def request_id_source(prefix: str) -> Callable[[], str]:
    """Request ids unique over a server's life (the prefix tells server runs apart)."""
    counter = itertools.count(1)
    return lambda: f"{prefix}-{next(counter)}"
