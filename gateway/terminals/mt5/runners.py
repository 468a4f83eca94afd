"""Where a session's blocking calls run, away from the event loop.

A runner takes calls by name (the session's methods, see session.SESSION_METHODS), runs them
one at a time and answers asynchronously. ThreadRunner keeps the session in this process, in a
thread of its own; worker.WorkerRunner keeps it in a child process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from gateway.terminals.mt5.session import SESSION_METHODS, Mt5Session
from gateway.terminals.protocol import TerminalError


class SessionRunner(Protocol):
    async def call(self, method: str, *args: Any) -> Any:
        """The session method's answer; raises what it raises, or TerminalError when the
        session cannot be reached."""
        ...

    async def close(self) -> None: ...


class ThreadRunner:
    """The session in this process, its calls in one dedicated thread, one at a time.

    For tests and single-terminal use: the MetaTrader5 package is one terminal per process,
    and a call that hangs in the module holds the thread (the worker process can be killed;
    a thread cannot).
    """

    def __init__(self, session: Mt5Session, *, name: str = "mt5", close_timeout_s: float = 5.0):
        self._session = session
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._close_timeout_s = close_timeout_s
        self._closed = False

    @property
    def session(self) -> Mt5Session:
        return self._session

    async def call(self, method: str, *args: Any) -> Any:
        if method not in SESSION_METHODS:
            raise ValueError(f"not a session call: {method}")
        if self._closed:
            raise TerminalError("the MT5 session is closed")
        loop = asyncio.get_running_loop()
        work = functools.partial(getattr(self._session, method), *args)
        return await loop.run_in_executor(self._executor, work)

    async def close(self) -> None:
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        # After a call that hangs in the module, closing cannot wait for the thread.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                loop.run_in_executor(self._executor, self._session.close), self._close_timeout_s
            )
        self._closed = True
        self._executor.shutdown(wait=False)
