"""One MT5 terminal's session in a process of its own, and the gateway's side of it.

Why a process: the MetaTrader5 package serves one terminal per process and blocks in every
call. Each terminal gets a worker process that loads the module (the package, mt5linux's
client, or the emulator, as Mt5Settings.module says) and serves the session's calls, one at a
time, over two pipes of pickled messages:

    gateway -> worker: (call_id, method, args)        method: a name in SESSION_METHODS
    worker -> gateway: (call_id, ok, value)           ok False: value is the exception raised

The gateway side (WorkerRunner) starts the worker on the first call and again after it died.
A call in flight when the worker dies, or that gets no answer within call_timeout_s (the worker
is then killed), raises TerminalError: the outcome is unknown and the engine reconciles by tag.
A worker that dies before answering anything is restarted after a growing pause (up to 30 s),
so that a module that crashes at once is not restarted in a tight loop.

multiprocessing's "spawn" start method is the default: the only one on Windows, where the
MetaTrader5 package runs, and safe in a gateway with threads (gRPC) anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import signal
import threading
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from gateway.terminals.mt5.session import SESSION_METHODS, Mt5Session
from gateway.terminals.mt5.settings import Mt5Settings
from gateway.terminals.protocol import SymbolNotFound, TerminalError

log = logging.getLogger(__name__)

_MAX_RESTART_PAUSE_S = 30.0


def serve(requests: Connection, replies: Connection, settings: Mt5Settings) -> None:
    """The worker process: answers session calls until the gateway closes it or goes away."""
    # Ctrl-C in a console reaches the whole process group; the gateway decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    session = Mt5Session(settings)
    try:
        while True:
            try:
                call_id, method, args = requests.recv()
            except (EOFError, OSError):
                return  # the gateway is gone
            try:
                if method not in SESSION_METHODS:
                    raise TerminalError(f"not a session call: {method}")
                reply = (call_id, True, getattr(session, method)(*args))
            except Exception as error:
                reply = (call_id, False, _transferable(error))
            try:
                replies.send(reply)
            except (EOFError, OSError):
                return
            except Exception as error:  # an answer that does not pickle
                replies.send((call_id, False, TerminalError(f"{method}: answer lost: {error!r}")))
            if method == "close":
                return
    finally:
        session.close()


def _transferable(error: Exception) -> Exception:
    """The exception as the gateway may see it: the protocol's errors as they are, anything
    else (a bug here or in the module) as TerminalError, the outcome being unknown."""
    if isinstance(error, SymbolNotFound | TerminalError):
        return error
    return TerminalError(f"{type(error).__name__}: {error}")


class _Worker:
    """One started worker process, its pipes and the calls awaiting its answers."""

    def __init__(
        self,
        process: BaseProcess,
        requests: Connection,
        replies: Connection,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.process = process
        self.alive = True
        self.answered = False
        self._requests = requests
        self._replies = replies
        self._loop = loop
        self._send_lock = threading.Lock()
        self._pending: dict[int, asyncio.Future[tuple[bool, Any]]] = {}
        self._reader = threading.Thread(
            target=self._read, name=f"{process.name}-replies", daemon=True
        )
        self._reader.start()

    def expect(self, call_id: int) -> asyncio.Future[tuple[bool, Any]]:
        future: asyncio.Future[tuple[bool, Any]] = self._loop.create_future()
        self._pending[call_id] = future
        return future

    def forget(self, call_id: int) -> None:
        self._pending.pop(call_id, None)

    def send(self, message: tuple[int, str, tuple[Any, ...]]) -> None:
        """Blocking (run in a thread)."""
        with self._send_lock:
            self._requests.send(message)

    def _read(self) -> None:
        while True:
            try:
                call_id, ok, value = self._replies.recv()
            except Exception:  # EOF: the worker exited; or an answer that does not unpickle
                break
            self._post(self._deliver, call_id, ok, value)
        self._replies.close()
        # Only this thread waits for the process (two waiting threads could race to reap it).
        self.process.join(timeout=1)
        self._post(self._ended)
        self.process.join()

    def _post(self, callback: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(callback, *args)

    def _deliver(self, call_id: int, ok: bool, value: Any) -> None:
        self.answered = True
        future = self._pending.pop(call_id, None)
        if future is not None and not future.done():
            future.set_result((ok, value))

    def _ended(self) -> None:
        self.alive = False
        code = self.process.exitcode
        for future in self._pending.values():
            if not future.done():
                future.set_exception(
                    TerminalError(
                        f"the MT5 worker process exited (code {code}) with the call in flight: "
                        "outcome unknown"
                    )
                )
        self._pending.clear()

    def is_running(self) -> bool:
        return self.alive

    def stop(self, timeout_s: float) -> None:
        """Blocking: waits for the process to exit (the reader thread sees it go), kills it if
        it does not."""
        self._reader.join(timeout_s)
        if self._reader.is_alive():
            self.process.kill()
            self._reader.join(timeout_s)
        with contextlib.suppress(OSError):
            self._requests.close()


class WorkerRunner:
    """Session calls run in a worker process of their own (see the module docstring)."""

    def __init__(
        self,
        settings: Mt5Settings,
        *,
        name: str = "mt5",
        call_timeout_s: float = 90.0,
        stop_timeout_s: float = 5.0,
        start_method: str = "spawn",
    ) -> None:
        """`call_timeout_s`: how long one call may take before the worker counts as hung and is
        killed; keep it above the engine's request timeout and the module's own (initialize
        waits up to settings.timeout_ms)."""
        self._settings = settings
        self._name = name
        self._call_timeout_s = call_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._context: Any = multiprocessing.get_context(start_method)
        self._worker: _Worker | None = None
        self._lock = asyncio.Lock()
        self._call_ids = itertools.count(1)
        self._starts = 0
        self._silent_deaths = 0
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The running worker's process id (None before the first call)."""
        return None if self._worker is None else self._worker.process.pid

    @property
    def running(self) -> bool:
        """Whether a worker process is up (as far as its pipe tells)."""
        return self._worker is not None and self._worker.is_running()

    @property
    def starts(self) -> int:
        """How many worker processes were started (1 + restarts)."""
        return self._starts

    async def call(self, method: str, *args: Any) -> Any:
        if method not in SESSION_METHODS:
            raise ValueError(f"not a session call: {method}")
        async with self._lock:
            if self._closed:
                raise TerminalError("the MT5 worker is closed")
            try:
                worker = await self._running_worker()
            except Exception as error:
                raise TerminalError(f"the MT5 worker cannot be started: {error!r}") from error
            ok, value = await self._ask(worker, method, args)
        if not ok:
            raise value
        return value

    async def _ask(self, worker: _Worker, method: str, args: tuple[Any, ...]) -> tuple[bool, Any]:
        call_id = next(self._call_ids)
        answer = worker.expect(call_id)
        try:
            try:
                await asyncio.to_thread(worker.send, (call_id, method, args))
            except Exception as error:
                raise TerminalError(f"the MT5 worker cannot be asked: {error!r}") from error
            return await asyncio.wait_for(answer, self._call_timeout_s)
        except TimeoutError:
            log.warning(
                "%s: no answer to %s within %ss: killing the worker",
                self._name,
                method,
                self._call_timeout_s,
            )
            await asyncio.to_thread(self._kill, worker)
            raise TerminalError(
                f"no answer to {method} within {self._call_timeout_s}s (worker restarted): "
                "outcome unknown"
            ) from None
        finally:
            # An answer that comes after its caller left (cancelled, timed out) is dropped.
            worker.forget(call_id)

    async def _running_worker(self) -> _Worker:
        worker = self._worker
        if worker is not None and worker.is_running():
            return worker
        if worker is not None:
            self._silent_deaths = 0 if worker.answered else self._silent_deaths + 1
            # Once stopped (its reader thread done), nothing else waits for the process.
            await asyncio.to_thread(worker.stop, self._stop_timeout_s)
            log.warning(
                "%s: the worker process exited (code %s): starting another",
                self._name,
                worker.process.exitcode,
            )
        if self._silent_deaths:
            await asyncio.sleep(min(_MAX_RESTART_PAUSE_S, 0.5 * 2 ** (self._silent_deaths - 1)))
        loop = asyncio.get_running_loop()
        self._worker = await asyncio.to_thread(self._start, loop)
        return self._worker

    def _start(self, loop: asyncio.AbstractEventLoop) -> _Worker:
        # Pipe(duplex=False) gives (receiving end, sending end).
        worker_requests, gateway_requests = self._context.Pipe(duplex=False)
        gateway_replies, worker_replies = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=serve,
            args=(worker_requests, worker_replies, self._settings),
            name=f"{self._name}-worker",
            daemon=True,
        )
        process.start()
        # The worker's ends live in the worker: closing ours lets a dead worker read as EOF.
        worker_requests.close()
        worker_replies.close()
        self._starts += 1
        return _Worker(process, gateway_requests, gateway_replies, loop)

    def _kill(self, worker: _Worker) -> None:
        worker.process.kill()
        worker.stop(self._stop_timeout_s)

    async def close(self) -> None:
        """Asks the worker to shut its terminal connection down and exit; kills it if it does
        not within stop_timeout_s (a call hanging in the module)."""
        self._closed = True
        worker = self._worker
        if worker is None:
            return
        if worker.is_running():
            call_id = next(self._call_ids)
            answer = worker.expect(call_id)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(worker.send, (call_id, "close", ()))
                await asyncio.wait_for(answer, self._stop_timeout_s)
            worker.forget(call_id)
        await asyncio.to_thread(worker.stop, self._stop_timeout_s)
