"""Whether the store takes writes now: set by the writes themselves, probed back when lost.

A write that fails for a passing fault (gateway/store/faults.py) marks the store unreachable;
from then on new submissions are refused with UNAVAILABLE (STORE_UNAVAILABLE, with a retry
delay) instead of being half stored, health reports NOT_SERVING, and a probe asks the database
every `probe_interval_s` until it answers. The first write or probe that succeeds marks it
reachable again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from gateway.domain.errors import Unavailable

log = logging.getLogger(__name__)

STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
WRITER_LOCK_LOST = "WRITER_LOCK_LOST"


class StoreHealth:
    def __init__(
        self, probe: Callable[[], Awaitable[None]], *, probe_interval_s: float = 0.5
    ) -> None:
        self._probe = probe
        self._interval_s = probe_interval_s
        self._reachable = True
        self._last_error = ""
        self._listeners: list[Callable[[bool], None]] = []
        self._prober: asyncio.Task[None] | None = None
        self._writer_lost = False

    @property
    def reachable(self) -> bool:
        return self._reachable

    def subscribe(self, listener: Callable[[bool], None]) -> None:
        """`listener(reachable)` on every change."""
        self._listeners.append(listener)

    def failed(self, error: BaseException) -> None:
        """A write failed for a passing fault of the database."""
        self._last_error = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        if not self._reachable:
            return
        self._reachable = False
        log.error("the store is unreachable (%s): submissions are refused until it is back",
                  self._last_error)  # fmt: skip
        self._tell()
        if self._prober is None or self._prober.done():
            self._prober = asyncio.create_task(self._probe_until_back(), name="store-probe")

    def recovered(self) -> None:
        """A write or a probe succeeded."""
        if self._reachable or self._writer_lost:
            return
        self._reachable = True
        log.warning("the store is reachable again")
        self._tell()

    def writer_lost(self) -> None:
        """Another process took the database's writer lock: this one writes nothing more."""
        if self._writer_lost:
            return
        self._writer_lost = True
        if self._reachable:
            self._reachable = False
            self._tell()

    def refuse_if_unreachable(self) -> None:
        """Raises UNAVAILABLE while the store cannot take writes: nothing is half stored."""
        if self._writer_lost:
            raise Unavailable(
                "another gateway process took this one's database: it is stopping; send to the "
                "gateway that holds the database now",
                reason=WRITER_LOCK_LOST,
            )
        if not self._reachable:
            raise Unavailable(
                f"the gateway's database is unreachable ({self._last_error}); nothing was "
                "stored or sent: try again",
                reason=STORE_UNAVAILABLE,
                retry_after_s=max(self._interval_s, 1.0),
            )

    def unavailable(self, error: BaseException) -> Unavailable:
        """The error a caller gets for a write that failed for a passing fault."""
        self.failed(error)
        return Unavailable(
            f"the gateway's database is unreachable ({self._last_error}): try again",
            reason=STORE_UNAVAILABLE,
            retry_after_s=max(self._interval_s, 1.0),
        )

    async def stop(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
            self._prober = None

    async def _probe_until_back(self) -> None:
        while not self._reachable:
            await asyncio.sleep(self._interval_s)
            try:
                await self._probe()
            except Exception as error:
                self._last_error = f"{type(error).__name__}: {error}".splitlines()[0][:300]
                continue
            self.recovered()

    def _tell(self) -> None:
        for listener in self._listeners:
            try:
                listener(self._reachable)
            except Exception:
                log.exception("a store health listener failed")
