"""Sustained load: child fills per second end to end (durable and streamed), with CPU and memory.

A group of N accounts (terminals answering at once); the client keeps a few master orders in
flight (each waits for all its fills on a SubscribeFills stream, then the next is submitted)
for a fixed time. Fills/s counts fills received by the subscriber: each was committed before it
was streamed. The gateway is its own process; its CPU (user + system, in cores) and resident
memory come from /proc. On SQLite, and on PostgreSQL (durable commits) when available.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import client, population
from bench.common import RunContext, cpu_window, summarize_ms
from bench.gateway_process import GatewayProcess, sqlite_url
from gateway._proto.mam.v1 import order_pb2, trading_service_pb2_grpc

# Orders are followed by their fills (SubscribeFills); the answer's id and child_count are all
# that is read, so it comes without the allocation's lines.
BASIC = order_pb2.MASTER_ORDER_VIEW_BASIC


async def load(
    trading: trading_service_pb2_grpc.TradingServiceStub,
    counter: client.FillCounter,
    group_id: str,
    accounts: int,
    *,
    seconds: float,
    window: int,
    pid: int,
    others: Sequence[client.FillCounter] = (),
) -> dict[str, Any]:
    """`window` master orders in flight for `seconds`; the fills the counter received (and
    the other subscribers, together, in the same time)."""
    sides = itertools.count()
    latencies: list[float] = []
    produced = 0
    measuring = True

    async def worker() -> None:
        nonlocal produced
        while measuring:
            start = time.perf_counter()
            master = await client.submit(
                trading, group_id, accounts, sell=next(sides) % 2 == 1, view=BASIC
            )
            produced += master.child_count
            last = await counter.wait_for(master.master_order_id, master.child_count)
            latencies.append((last - start) * 1000)

    # One order first: connections, caches and the first commit are not the steady state.
    first = await client.submit(trading, group_id, accounts, sell=next(sides) % 2 == 1, view=BASIC)
    await counter.wait_for(first.master_order_id, first.child_count)
    workers = [asyncio.create_task(worker()) for _ in range(window)]
    try:
        received_before = counter.total
        others_before = sum(c.total for c in others)
        with cpu_window(pid) as cpu:
            start = time.perf_counter()
            await asyncio.sleep(seconds)
            received = counter.total - received_before
            others_received = sum(c.total for c in others) - others_before
            elapsed = time.perf_counter() - start
        measuring = False
        await asyncio.gather(*workers)
    finally:
        measuring = False
        for task in workers:
            task.cancel()
    return {
        "seconds": round(elapsed, 2),
        "fills_received": received,
        "others_received": others_received,
        "fills_per_s": round(received / elapsed),
        "orders": len(latencies),
        "order_latency": summarize_ms(latencies),
        "gateway_cpu": cpu,
        "all_received": counter.total - received_before >= produced,
    }


async def _one(url: str, directory: Path, context: RunContext) -> dict[str, Any]:
    sizes = context.sizes
    accounts = sizes.sustained_accounts
    people = await population.populate(url, accounts)
    gateway = GatewayProcess(directory, url, latency_ms=0)
    await gateway.start()
    try:
        async with gateway.channel() as channel:
            trading = trading_service_pb2_grpc.TradingServiceStub(channel)
            counter = client.FillCounter(trading)
            await counter.start()
            try:
                row = await load(
                    trading, counter, people.group_id, accounts,
                    seconds=sizes.sustained_seconds, window=sizes.sustained_window,
                    pid=gateway.pid,
                )  # fmt: skip
            finally:
                await counter.stop()
        row["gateway_memory"] = gateway.memory()
    finally:
        await gateway.stop()
    row.update(accounts=accounts, window=sizes.sustained_window)
    return row


async def run(context: RunContext) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mam-bench-") as name:
        rows["sqlite"] = await _one(sqlite_url(Path(name)), Path(name), context)
    url = await context.postgres_url()
    if url:
        with tempfile.TemporaryDirectory(prefix="mam-bench-") as name:
            rows["postgresql"] = await _one(url, Path(name), context)
    summary = "; ".join(
        f"{backend} {row['fills_per_s']:,} fills/s over {row['seconds']} s "
        f"(gateway {row['gateway_cpu']['cpu_cores']} cores, RSS "
        f"{row['gateway_memory']['rss_mb']} MB)"
        for backend, row in rows.items()
    )
    return {"rows": rows, "summary": summary}
