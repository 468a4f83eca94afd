"""The floor: what the platform costs before the gateway adds anything, measured in this run.

- a grpc.aio unary round trip to a trivial servicer in another process (median, p99), and the
  calls/s of 20 concurrent callers;
- a server stream of N fills, 1,000 per message as the gateway batches them (real mam.v1
  messages, built fresh, serialized by the server and parsed by the client);
- a commit of N fill-shaped rows in one transaction, as the store writes its batches (rows
  encoded as tuples beforehand, handed to the driver's executemany through exec_driver_sql), on
  SQLite with the gateway's engine settings (WAL, synchronous=NORMAL), and on PostgreSQL when
  available (durable: synchronous_commit=on).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import BigInteger, Column, MetaData, String, Table

from bench.common import ROOT, RunContext, summarize_ms
from bench.floor_server import FILLS_PER_BATCH, fill_batch
from gateway._proto.mam.v1 import trading_service_pb2
from gateway.store.bulk import insert_rows
from gateway.store.engines import create_engine

CONCURRENT_CALLERS = 20

_metadata = MetaData()
# The columns of a stored fill, as plain types: the cost is the row, not the mapping.
floor_fills = Table(
    "floor_fills",
    _metadata,
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("fill_id", String(40), nullable=False, unique=True),
    Column("master_order_id", String(40), nullable=False),
    Column("child_order_id", String(40), nullable=False),
    Column("account_id", String(40), nullable=False),
    Column("symbol", String(40), nullable=False),
    Column("side", String(10), nullable=False),
    Column("volume", String(40), nullable=False),
    Column("price", String(40), nullable=False),
    Column("requested_price", String(40)),
    Column("slippage_points", String(40)),
    Column("deal_ticket", BigInteger, nullable=False),
    Column("order_ticket", BigInteger, nullable=False),
    Column("position_ticket", BigInteger, nullable=False),
    Column("executed_at", BigInteger, nullable=False),
)


_COLUMNS = tuple(c.name for c in floor_fills.columns)


def stream_sizes(context: RunContext) -> list[int]:
    sizes = context.sizes
    return sorted({*sizes.stream_fills, *(accounts for accounts, _ in sizes.e2e)})


def commit_sizes(context: RunContext) -> list[int]:
    sizes = context.sizes
    return sorted({*sizes.commit_rows, *(accounts for accounts, _ in sizes.e2e)})


async def _start_server() -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.floor_server", cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    async with asyncio.timeout(60):
        line = (await process.stdout.readline()).decode()
    if "listening on" not in line:
        process.kill()
        raise RuntimeError("the floor server did not start")
    return process, line.rsplit(" ", 1)[-1].strip()


async def _unary(channel: grpc.aio.Channel, calls: int) -> dict[str, Any]:
    echo = channel.unary_unary("/bench.Floor/Echo")
    payload = b"x" * 32
    for _ in range(min(200, calls)):
        await echo(payload)
    timings = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        await echo(payload)
        timings.append((time.perf_counter_ns() - start) / 1e6)
    result = summarize_ms(timings)

    # Throughput with a bounded pool of callers (what a busy client sees).
    remaining = calls

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await echo(payload)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(CONCURRENT_CALLERS)))
    elapsed = time.perf_counter() - start
    result[f"calls_per_s_{CONCURRENT_CALLERS}_callers"] = round(calls / elapsed)
    return result


async def _stream(channel: grpc.aio.Channel, fills: int, runs: int) -> dict[str, Any]:
    call = channel.unary_stream(
        "/bench.Floor/Fills",
        response_deserializer=trading_service_pb2.SubscribeFillsResponse.FromString,
    )
    timings = []
    for _ in range(runs + 1):
        start = time.perf_counter_ns()
        received = 0
        async for message in call(str(fills).encode()):
            received += len(message.batch.fills)
        assert received == fills
        timings.append((time.perf_counter_ns() - start) / 1e6)
    timings = timings[1:]  # the first run warms up
    result = summarize_ms(timings)
    result["fills"] = fills
    result["fills_per_s"] = round(fills / (statistics.median(timings) / 1000))
    return result


def _message_costs() -> dict[str, float]:
    """One 1,000-fill message: build + serialize, and parse, in this process."""
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    builds, parses = [], []
    for _ in range(20):
        start = time.perf_counter_ns()
        data = fill_batch(1, FILLS_PER_BATCH, stamp)
        builds.append((time.perf_counter_ns() - start) / 1e6)
        start = time.perf_counter_ns()
        trading_service_pb2.SubscribeFillsResponse.FromString(data)
        parses.append((time.perf_counter_ns() - start) / 1e6)
    return {
        "build_and_serialize_1000_fills_ms": round(statistics.median(builds), 3),
        "parse_1000_fills_ms": round(statistics.median(parses), 3),
        "bytes_per_1000_fills": len(data),
    }


def _rows(first: int, count: int) -> list[tuple[Any, ...]]:
    """Rows in the order of _COLUMNS, already encoded (text decimals, integer micros)."""
    now = time.time_ns() // 1000
    return [
        (
            n,
            f"fl_{n:020d}",
            "mo_01JDZ6G5R4Q9V3N8K2B7C1M0XT",
            f"ch_{n:020d}",
            f"acc_{n % 10_000:020d}",
            "EURUSD",
            "BUY",
            "0.01",
            "1.08500",
            "1.08490",
            "1.0",
            20_000_000 + n,
            10_000_000 + n,
            30_000_000 + n,
            now,
        )
        for n in range(first, first + count)
    ]


async def _commits(url: str, sizes: list[int], runs: int) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_metadata.create_all)
        next_sequence = 1
        results: dict[str, Any] = {}
        for size in sizes:
            timings = []
            for _ in range(runs):
                rows = _rows(next_sequence, size)
                next_sequence += size
                start = time.perf_counter_ns()
                async with engine.begin() as conn:
                    await insert_rows(conn, floor_fills, _COLUMNS, rows)
                timings.append((time.perf_counter_ns() - start) / 1e6)
            results[str(size)] = summarize_ms(timings)
        return results
    finally:
        await engine.dispose()


async def run(context: RunContext) -> dict[str, Any]:
    sizes = context.sizes
    process, address = await _start_server()
    try:
        async with grpc.aio.insecure_channel(
            address, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        ) as channel:
            unary = await _unary(channel, sizes.unary_calls)
            streams = {
                str(n): await _stream(channel, n, sizes.stream_runs) for n in stream_sizes(context)
            }
    finally:
        process.terminate()
        await process.wait()
    commits: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as directory:
        commits["sqlite"] = await _commits(
            f"sqlite+aiosqlite:///{directory}/floor.db", commit_sizes(context), sizes.commit_runs
        )
    postgres = await context.postgres_url()
    if postgres:
        commits["postgresql"] = await _commits(postgres, commit_sizes(context), sizes.commit_runs)
    largest = max(streams.values(), key=lambda s: s["fills"])
    thousand = commits["sqlite"].get("1000") or commits["sqlite"][max(commits["sqlite"], key=int)]
    return {
        "unary": unary,
        "stream": streams,
        "message": _message_costs(),
        "commit": commits,
        "summary": (
            f"unary RTT median {unary['median_ms']} ms p99 {unary['p99_ms']} ms; stream "
            f"{largest['fills_per_s']:,} fills/s ({largest['fills']:,} fills); SQLite commit of "
            f"1,000 rows {thousand['median_ms']} ms"
        ),
    }


def floor_ms(floor: dict[str, Any], fills: int) -> dict[str, float]:
    """The platform's cost for one order of `fills` fills: a unary round trip, a commit of as
    many rows on SQLite, and streaming as many fills."""

    def lookup(table: dict[str, Any]) -> float:
        if str(fills) in table:
            return float(table[str(fills)]["median_ms"])
        # Scaled from the nearest measured size: beyond a few rows the cost is per row.
        nearest = min(table, key=lambda k: abs(int(k) - fills))
        return float(table[nearest]["median_ms"]) * fills / int(nearest)

    unary = float(floor["unary"]["median_ms"])
    commit = lookup(floor["commit"]["sqlite"])
    stream = lookup(floor["stream"])
    return {
        "unary_ms": round(unary, 3),
        "commit_ms": round(commit, 3),
        "stream_ms": round(stream, 3),
        "total_ms": round(unary + commit + stream, 3),
    }


def durable_fan_out_floor_ms(floor: dict[str, Any], children: int, latency_ms: float) -> float:
    """The least any gateway could take, on this platform, for an order of `children` children
    under the durability the API promises: the submission's round trip, the children committed
    before any request leaves (a crash must find them), the broker's latency, the fills
    committed before any is streamed, and the stream. No allocation, no state machine, no
    broker work: those only add to it."""
    parts = floor_ms(floor, children)
    return round(parts["unary_ms"] + 2 * parts["commit_ms"] + latency_ms + parts["stream_ms"], 3)
