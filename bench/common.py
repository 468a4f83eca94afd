"""What every scenario shares: sizes (full or smoke), statistics, the machine, a PostgreSQL server.

Every figure is read beside the platform's own cost measured in the same run (the floor
scenario), because absolute figures move from machine to machine and from run to run.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sizes:
    """How big each scenario runs: `full` for `make bench`, `smoke` for a check in seconds."""

    name: str
    # floor
    unary_calls: int
    stream_fills: tuple[int, ...]
    stream_runs: int
    commit_rows: tuple[int, ...]
    commit_runs: int
    # allocation
    allocation_sizes: tuple[int, ...]
    # end to end: (accounts, orders per latency)
    e2e: tuple[tuple[int, int], ...]
    latencies_ms: tuple[int, ...]
    # remote workers: the e2e order over mam-worker processes (accounts spread over workers)
    remote_accounts: int
    remote_workers: int
    remote_orders: int
    remote_latencies_ms: tuple[int, ...]
    # sequential baseline: accounts traded one by one (a sample), for the largest e2e size
    baseline_sample: int
    baseline_accounts: int
    # sustained load
    sustained_seconds: float
    sustained_accounts: int
    sustained_window: int
    # subscribers
    replay_fills: int
    subscriber_seconds: float
    filtered_subscribers: int
    # memory
    memory_accounts: int
    memory_fills: int
    # soak: random broker faults under concurrent orders
    soak_accounts: int
    soak_orders: int
    # tracing: the e2e order with tracing off and on in one run, alternating legs (off, on)
    tracing_accounts: int = 1_000
    tracing_orders: int = 10
    tracing_legs: int = 2
    # metrics: the e2e order with [metrics] off and on in one run, in legs (off-on, on-off, ...)
    metrics_accounts: int = 1_000
    metrics_orders: int = 10
    metrics_legs: int = 4
    # mirroring: a source deal -> the group's copy filled, beside a direct order, per look
    # interval and latency; the gateway's CPU watching `mirroring_sources` sources
    mirroring_accounts: int = 1_000
    mirroring_deals: int = 15
    mirroring_latencies_ms: tuple[int, ...] = (0, 50)
    mirroring_intervals_s: tuple[float, ...] = (0.5, 0.05)
    mirroring_sources: int = 20
    mirroring_window_s: float = 10.0
    mirroring_observe_repeats: int = 2_000


FULL = Sizes(
    name="full",
    unary_calls=2_000,
    stream_fills=(1_000, 10_000, 100_000),
    stream_runs=5,
    commit_rows=(1, 100, 1_000, 5_000, 10_000),
    commit_runs=7,
    allocation_sizes=(10, 100, 1_000, 10_000),
    e2e=((1, 30), (100, 15), (1_000, 10), (5_000, 3)),
    latencies_ms=(0, 50),
    remote_accounts=1_000,
    remote_workers=2,
    remote_orders=10,
    remote_latencies_ms=(0, 50),
    baseline_sample=20,
    baseline_accounts=1_000,
    sustained_seconds=60.0,
    sustained_accounts=1_000,
    sustained_window=3,
    replay_fills=200_000,
    subscriber_seconds=10.0,
    filtered_subscribers=100,
    memory_accounts=10_000,
    memory_fills=1_000_000,
    soak_accounts=300,
    soak_orders=60,
)

SMOKE = Sizes(
    name="smoke",
    unary_calls=50,
    stream_fills=(1_000, 3_000),
    stream_runs=2,
    commit_rows=(1, 100),
    commit_runs=2,
    allocation_sizes=(10, 100),
    e2e=((5, 2),),
    latencies_ms=(0, 50),
    remote_accounts=6,
    remote_workers=2,
    remote_orders=2,
    remote_latencies_ms=(0,),
    baseline_sample=3,
    baseline_accounts=5,
    sustained_seconds=1.5,
    sustained_accounts=20,
    sustained_window=2,
    replay_fills=2_000,
    subscriber_seconds=1.0,
    filtered_subscribers=4,
    memory_accounts=50,
    memory_fills=5_000,
    soak_accounts=10,
    soak_orders=4,
    tracing_accounts=5,
    tracing_orders=2,
    tracing_legs=1,
    metrics_accounts=5,
    metrics_orders=2,
    metrics_legs=1,
    mirroring_accounts=5,
    mirroring_deals=2,
    mirroring_latencies_ms=(0,),
    mirroring_intervals_s=(0.05,),
    mirroring_sources=2,
    mirroring_window_s=0.5,
    mirroring_observe_repeats=50,
)


@dataclass
class RunContext:
    """One benchmark run: its sizes and a PostgreSQL server started on first use."""

    sizes: Sizes
    postgres: bool
    _server: Any = field(default=None, repr=False)
    _postgres_error: str = ""
    _databases: int = 0

    async def postgres_url(self, *, synchronous_commit: bool = True) -> str | None:
        """A new empty database on a throwaway server (durable by default), or None."""
        if not self.postgres or self._postgres_error:
            return None
        external = os.environ.get("MAM_BENCH_POSTGRES_URL")
        if external:
            return external
        if self._server is None:
            from tests.postgres import PostgresServer, PostgresUnavailable  # noqa: PLC0415

            try:
                self._server = PostgresServer.start()
            except PostgresUnavailable as error:
                self._postgres_error = str(error).splitlines()[0]
                return None
        self._databases += 1
        name = await self._server.create_database(name=f"bench_{self._databases}")
        if not synchronous_commit:
            await self._server.execute(f"ALTER DATABASE {name} SET synchronous_commit = off")
        return str(self._server.url(name))

    @property
    def postgres_status(self) -> str:
        if not self.postgres:
            return "skipped (--no-postgres)"
        if self._postgres_error:
            return f"unavailable: {self._postgres_error}"
        if os.environ.get("MAM_BENCH_POSTGRES_URL"):
            return "MAM_BENCH_POSTGRES_URL"
        return (
            "throwaway server (tests/postgres.py), default settings" if self._server else "unused"
        )

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (p99 of fewer than 100 values is their maximum)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(len(ordered), rank) - 1]


def summarize_ms(values: Sequence[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values), 3) if values else 0.0,
        "p99_ms": round(percentile(values, 0.99), 3),
        "min_ms": round(min(values), 3) if values else 0.0,
        "max_ms": round(max(values), 3) if values else 0.0,
        "samples": len(values),
    }


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
    import grpc  # noqa: PLC0415
    import sqlalchemy  # noqa: PLC0415
    from google import protobuf  # noqa: PLC0415

    return {
        "nproc": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "memory_mb": memory_kb // 1024,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "load_average": _load_average(),
        "grpcio": grpc.__version__,
        "protobuf": protobuf.__version__,
        "sqlalchemy": sqlalchemy.__version__,
    }


def _load_average() -> list[float]:
    """Other work on the machine moves every figure: the 1, 5 and 15 minute load."""
    with contextlib.suppress(OSError):
        return [round(x, 2) for x in os.getloadavg()]
    return []


# -- a process seen from /proc (no psutil) -------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    # After the command: state is field 3; utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_mb(pid: int) -> dict[str, float]:
    """Resident memory now (VmRSS) and at its peak (VmHWM), in MB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = round(int(rest.split()[0]) / 1024, 1)
    return {"rss_mb": values.get("VmRSS", 0.0), "peak_rss_mb": values.get("VmHWM", 0.0)}


@contextlib.contextmanager
def cpu_window(pid: int) -> Iterator[dict[str, float]]:
    """CPU cores the process used over the block (1.0 = one core busy all the time)."""
    import time  # noqa: PLC0415

    result: dict[str, float] = {}
    start_cpu, start_wall = cpu_seconds(pid), time.perf_counter()
    yield result
    wall = time.perf_counter() - start_wall
    used = cpu_seconds(pid) - start_cpu
    result.update(cpu_seconds=round(used, 2), wall_seconds=round(wall, 2))
    result["cpu_cores"] = round(used / wall, 2) if wall > 0 else 0.0
