"""Fill streams: one subscriber replaying a stored history, one live subscriber, and many
filtered live subscribers (each following its own accounts).

Replay: SubscribeFills(after_sequence=0) over a store holding the history, until every stored
fill arrived; fills/s from the call to the last fill. Live: the sustained load (master orders
kept in flight) with one subscriber, then with K subscribers that each ask for a disjoint slice
of the accounts (filters by account), all in one client process: fills delivered per second
over all of them, and the rate the gateway produced meanwhile.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import client, population
from bench.common import RunContext
from bench.gateway_process import GatewayProcess, sqlite_url
from bench.sustained import load
from gateway._proto.mam.v1 import trading_service_pb2, trading_service_pb2_grpc

REPLAY_RUNS = 3


async def replay(
    trading: trading_service_pb2_grpc.TradingServiceStub, after: int, expected: int
) -> float:
    """Seconds to receive the `expected` fills stored after `after`."""
    counter = client.FillCounter(
        trading, trading_service_pb2.SubscribeFillsRequest(after_sequence=after)
    )
    start = time.perf_counter()
    await counter.start()
    try:
        await counter.wait_total(expected)
        return time.perf_counter() - start
    finally:
        await counter.stop()


async def run(context: RunContext) -> dict[str, Any]:
    sizes = context.sizes
    accounts = sizes.sustained_accounts
    with tempfile.TemporaryDirectory(prefix="mam-bench-") as name:
        directory = Path(name)
        url = sqlite_url(directory)
        people = await population.populate(url, accounts, fills=sizes.replay_fills)
        gateway = GatewayProcess(directory, url, latency_ms=0)
        await gateway.start()
        try:
            async with gateway.channel() as channel:
                trading = trading_service_pb2_grpc.TradingServiceStub(channel)
                timings = [await replay(trading, 0, sizes.replay_fills) for _ in range(REPLAY_RUNS)]
                replayed = {
                    "fills": sizes.replay_fills,
                    "runs": REPLAY_RUNS,
                    "median_s": round(statistics.median(timings), 3),
                    "fills_per_s": round(sizes.replay_fills / statistics.median(timings)),
                    "best_fills_per_s": round(sizes.replay_fills / min(timings)),
                }
                one = client.FillCounter(trading)
                await one.start()
                try:
                    live = await load(
                        trading, one, people.group_id, accounts,
                        seconds=sizes.subscriber_seconds, window=sizes.sustained_window,
                        pid=gateway.pid,
                    )  # fmt: skip
                finally:
                    await one.stop()
                filtered = await _filtered(trading, gateway, people, context)
        finally:
            await gateway.stop()
    return {
        "replay": replayed,
        "live_one": live,
        "live_filtered": filtered,
        "summary": (
            f"replay {replayed['fills_per_s']:,} fills/s ({replayed['fills']:,} stored); live to "
            f"one subscriber {live['fills_per_s']:,} fills/s; {filtered['subscribers']} filtered "
            f"subscribers {filtered['delivered_per_s']:,} fills/s delivered"
        ),
    }


async def _filtered(
    trading: trading_service_pb2_grpc.TradingServiceStub,
    gateway: GatewayProcess,
    people: population.Population,
    context: RunContext,
) -> dict[str, Any]:
    sizes = context.sizes
    count = sizes.filtered_subscribers
    ids = people.account_ids
    per = max(1, len(ids) // count)
    counters = [
        client.FillCounter(
            trading,
            trading_service_pb2.SubscribeFillsRequest(
                live_only=True, account_ids=ids[i * per : (i + 1) * per]
            ),
        )
        for i in range(count)
    ]
    # One more, unfiltered, to know what the gateway produced while all of them listened.
    everything = client.FillCounter(trading)
    for counter in (*counters, everything):
        await counter.start()
    try:
        result = await load(
            trading, everything, people.group_id, len(ids),
            seconds=sizes.subscriber_seconds, window=sizes.sustained_window, pid=gateway.pid,
            others=counters,
        )  # fmt: skip
        delivered = result["others_received"]
    finally:
        for counter in (*counters, everything):
            await counter.stop()
    return {
        "subscribers": count,
        "accounts_each": per,
        "produced_per_s": result["fills_per_s"],
        "delivered": delivered,
        "delivered_per_s": round(delivered / result["seconds"]) if result["seconds"] else 0,
        "load": result,
    }
