"""Gateway memory with many accounts and a long fill history.

The store is set up through the Store (accounts, a group of all of them, fills committed in big
batches); then the gateway starts on it and its resident memory (VmRSS, and the peak VmHWM) is
read from /proc: idle after start, after one master order over every account, and after a
subscriber replayed the newest stored fills.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench import client, population
from bench.common import RunContext
from bench.gateway_process import GatewayProcess, sqlite_url
from bench.subscribers import replay
from gateway._proto.mam.v1 import trading_service_pb2_grpc


async def run(context: RunContext) -> dict[str, Any]:
    sizes = context.sizes
    accounts, fills = sizes.memory_accounts, sizes.memory_fills
    with tempfile.TemporaryDirectory(prefix="mam-bench-") as name:
        directory = Path(name)
        url = sqlite_url(directory)
        start = time.perf_counter()
        people = await population.populate(url, accounts, fills=fills, fill_batch=50_000)
        setup_s = time.perf_counter() - start
        database_mb = _size_mb(directory, "bench.db*")
        gateway = GatewayProcess(directory, url, latency_ms=0)
        start = time.perf_counter()
        await gateway.start()
        start_s = time.perf_counter() - start
        try:
            idle = gateway.memory()
            async with gateway.channel() as channel:
                trading = trading_service_pb2_grpc.TradingServiceStub(channel)
                counter = client.FillCounter(trading)
                await counter.start()
                try:
                    begin = time.perf_counter()
                    master = await client.submit(trading, people.group_id, accounts)
                    await counter.wait_for(master.master_order_id, master.child_count)
                    order_ms = (time.perf_counter() - begin) * 1000
                finally:
                    await counter.stop()
                after_order = gateway.memory()
                replayed = min(fills, sizes.replay_fills)
                seconds = await replay(trading, fills - replayed, replayed)
                after_replay = gateway.memory()
        finally:
            await gateway.stop()
    peak = max(idle["peak_rss_mb"], after_order["peak_rss_mb"], after_replay["peak_rss_mb"])
    return {
        "accounts": accounts,
        "stored_fills": fills,
        "setup_s": round(setup_s, 1),
        "database_mb": round(database_mb, 1),
        "gateway_start_s": round(start_s, 2),
        "idle": idle,
        "order_over_all_accounts_ms": round(order_ms, 1),
        "after_order": after_order,
        "replayed_fills": replayed,
        "replay_fills_per_s": round(replayed / seconds) if seconds else 0,
        "after_replay": after_replay,
        "peak_rss_mb": peak,
        "summary": (
            f"{accounts:,} accounts, {fills:,} stored fills: RSS idle {idle['rss_mb']} MB, after "
            f"an order over every account {after_order['rss_mb']} MB, after replaying "
            f"{replayed:,} fills {after_replay['rss_mb']} MB; peak {peak} MB"
        ),
    }


def _size_mb(directory: Path, pattern: str) -> float:
    return sum(p.stat().st_size for p in directory.glob(pattern)) / 2**20
