"""Memory the gateway has freed goes back to the operating system.

glibc's malloc serves a block of at least its mmap threshold with a mapping of its own, given back
when the block is freed; smaller blocks come from its arenas (one per thread that allocates),
whose pages stay with the process until `malloc_trim` or the arena's top is free. The threshold
starts at 128 KiB but, by default, rises to the size of any mapped block freed (up to 32 MiB):
once gRPC has received a large request, the buffers of the next ones land in the arenas of its
threads and stay there, freed, after every call has ended.

Measured on a gateway with authentication on, 96 requests of 15 MiB from one connection, all
refused (unknown key: throttled), then the connection closed:

| malloc | resident before, at peak, 10 s after |
|---|---|
| defaults | 131, 240-300, 155-195 MiB, growing with each round; malloc_trim: ~no change |
| threshold fixed at 1 MiB | 115, 400, 382 MiB; malloc_trim(0): 116 MiB |
| threshold fixed at 128 KiB | 115, 135-156, 120-145 MiB; malloc_trim(0): 116 MiB |

So the threshold is fixed at glibc's own starting value (fixing it stops it from rising), and a
trimmer gives the arenas' free pages back: while the resident set is more than
TRIM_ABOVE_BYTES above what it was at start, malloc_trim(0) runs every TRIM_INTERVAL_S, in a
thread (milliseconds on a fragmented heap of hundreds of MB, well under one on a tidy one; a
gateway whose working set grew for good pays that every interval, a thousandth of a core).
Blocks of 128 KiB or more are few in steady work (a batch of 1,000 fills is ~175 KB); each costs
a system call and its page faults. Without glibc (musl, macOS) or /proc there is nothing to set
and nothing runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

MMAP_THRESHOLD_BYTES = 128 * 1024
TRIM_ABOVE_BYTES = 32 * 1024 * 1024
TRIM_INTERVAL_S = 2.0
# mallopt's parameter number for the mmap threshold (glibc's malloc.h).
_M_MMAP_THRESHOLD = -3


def _libc_function(name: str) -> Any:
    try:
        return getattr(ctypes.CDLL(None), name)  # the C library the process runs on
    except (OSError, AttributeError):
        return None


def map_large_blocks_apart(threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fixes malloc's mmap threshold, so that every block of `threshold_bytes` or more goes back
    to the operating system when it is freed. True when it was set."""
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        log.info("no mallopt here: large blocks are left to the allocator's defaults")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold_bytes))


def resident_bytes() -> int | None:
    """This process's resident set (/proc/self/statm), or None where it cannot be read."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


class HeapTrimmer:
    """Runs malloc_trim(0) while the resident set is well above what it was at start."""

    def __init__(
        self, *, above_bytes: int = TRIM_ABOVE_BYTES, interval_s: float = TRIM_INTERVAL_S
    ) -> None:
        self._above_bytes = above_bytes
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Takes the resident set now as the gateway's own and watches it."""
        trim = _libc_function("malloc_trim")
        baseline = resident_bytes()
        if trim is None or baseline is None:
            log.info("no malloc_trim or /proc here: freed memory stays with the allocator")
            return
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
        self._task = asyncio.get_running_loop().create_task(self._run(trim, baseline))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, trim: Callable[[int], int], baseline: int) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            resident = resident_bytes()
            if resident is not None and resident - baseline > self._above_bytes:
                await asyncio.to_thread(trim, 0)
