"""Cluster mode: PostgreSQL notifications (LISTEN) waking a loop of work, with a poll for what
a lost connection's notifications would have said.

`listen_and_work` keeps a connection of its own listening on the channels, calls `heard` with
each notification (channel, payload) as it arrives, and runs `work` whenever `wake` is set, and
at least every `poll_s`; once when (re)connected, for what came while nothing listened. A lost
connection is made again after `poll_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

log = logging.getLogger(__name__)


def asyncpg_dsn(url: str) -> str:
    """The asyncpg form of a SQLAlchemy URL."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def listen_and_work(
    url: str,
    channels: Sequence[str],
    *,
    heard: Callable[[str, str], None],
    wake: asyncio.Event,
    work: Callable[[], Awaitable[None]],
    poll_s: float,
    name: str,
) -> None:
    """Runs until cancelled."""

    def notified(_connection: Any, _pid: int, channel: str, payload: str) -> None:
        heard(channel, payload)

    while True:
        connection: asyncpg.Connection | None = None
        try:
            connection = await asyncpg.connect(asyncpg_dsn(url))
            for channel in channels:
                await connection.add_listener(channel, notified)
            wake.set()
            while not connection.is_closed():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), poll_s)
                wake.clear()
                await work()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("%s: %s; listening again shortly", name, error)
            await asyncio.sleep(poll_s)
        finally:
            if connection is not None:
                with contextlib.suppress(Exception):
                    await connection.close()
