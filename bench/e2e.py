"""End to end: a master order over N simulated accounts, submit -> every fill durable and received.

The gateway runs as its own process (`python -m gateway`, SQLite) with simulated terminals
answering at once or after 50 ms; the client submits over gRPC and a SubscribeFills subscriber
counts the order's fills (a fill is streamed only after its commit, so received = durable).
Per order: the time to the last fill received, the acknowledgement time, and the dispatch skew
(first to last fill at the broker, from GetMasterOrder's execution stats). Median and p99 over
repeated orders (p99 of fewer than 100 orders is their maximum).

Also the sequential baseline: the same accounts traded one at a time (one single-account
master order after the other, each waited for), measured on a sample and scaled to N.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import client, population
from bench.common import RunContext, summarize_ms
from bench.gateway_process import GatewayProcess, sqlite_url
from gateway._proto.mam.v1 import order_pb2, trading_service_pb2_grpc

# The benchmark follows fills on SubscribeFills and reads only the id and child_count of the
# answer: the allocation's lines (one per account) would be built and parsed for nothing.
BASIC = order_pb2.MASTER_ORDER_VIEW_BASIC


async def _orders(
    gateway: GatewayProcess,
    group_id: str,
    accounts: int,
    rounds: int,
    *,
    raw: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    """The figures of `rounds` orders (after one to warm up); `raw`: where each order's
    figures are added too, by name (to pool several gateways' orders)."""
    async with gateway.channel() as channel:
        trading = trading_service_pb2_grpc.TradingServiceStub(channel)
        counter = client.FillCounter(trading)
        await counter.start()
        try:
            totals, acks, skews, server_totals = [], [], [], []
            for number in range(rounds + 1):  # the first order warms up
                start = time.perf_counter()
                master = await client.submit(
                    trading, group_id, accounts, sell=number % 2 == 1, view=BASIC
                )
                acknowledged = time.perf_counter()
                last = await counter.wait_for(master.master_order_id, master.child_count)
                stored = await client.master_order(trading, master.master_order_id)
                if number == 0:
                    continue
                totals.append((last - start) * 1000)
                acks.append((acknowledged - start) * 1000)
                skews.append(stored.execution.dispatch_skew.ToMicroseconds() / 1000)
                server_totals.append(stored.execution.submit_to_last_fill.ToMicroseconds() / 1000)
        finally:
            await counter.stop()
    if raw is not None:
        raw.setdefault("submit_to_last_fill", []).extend(totals)
        raw.setdefault("server_accept_to_last_fill", []).extend(server_totals)
        raw.setdefault("ack", []).extend(acks)
    return {
        "submit_to_last_fill": summarize_ms(totals),
        "ack": summarize_ms(acks),
        "dispatch_skew": summarize_ms(skews),
        "server_accept_to_last_fill": summarize_ms(server_totals),
    }


async def _sequential(gateway: GatewayProcess, group_ids: tuple[str, ...]) -> list[float]:
    """Each account on its own, one after the other: submit, wait for the fill, next."""
    async with gateway.channel() as channel:
        trading = trading_service_pb2_grpc.TradingServiceStub(channel)
        counter = client.FillCounter(trading)
        await counter.start()
        try:
            timings = []
            for number, group_id in enumerate(group_ids):
                start = time.perf_counter()
                master = await client.submit(trading, group_id, 1, sell=number % 2 == 1, view=BASIC)
                last = await counter.wait_for(master.master_order_id, master.child_count)
                timings.append((last - start) * 1000)
        finally:
            await counter.stop()
    return timings


async def run(context: RunContext) -> dict[str, Any]:
    sizes = context.sizes
    rows: list[dict[str, Any]] = []
    baseline: dict[str, Any] = {}
    for accounts, rounds in sizes.e2e:
        with tempfile.TemporaryDirectory(prefix="mam-bench-") as name:
            directory = Path(name)
            url = sqlite_url(directory)
            with_baseline = accounts == sizes.baseline_accounts
            people = await population.populate(
                url, accounts, single_groups=sizes.baseline_sample if with_baseline else 0
            )
            for latency in sizes.latencies_ms:
                gateway = GatewayProcess(directory, url, latency_ms=latency)
                await gateway.start()
                try:
                    row: dict[str, Any] = {
                        "accounts": accounts,
                        "latency_ms": latency,
                        "orders": rounds,
                    }
                    row.update(await _orders(gateway, people.group_id, accounts, rounds))
                    if with_baseline and latency == max(sizes.latencies_ms):
                        sample = await _sequential(gateway, people.single_group_ids)
                        baseline = _baseline(sample, accounts, latency, row)
                finally:
                    await gateway.stop()
                rows.append(row)
    return {"rows": rows, "baseline": baseline, "summary": _summary(rows)}


async def run_tracing(context: RunContext) -> dict[str, Any]:
    """Tracing's cost: the e2e order (simulated terminals answering at once) through a gateway
    with [tracing] off, then on (every trace sampled, spans exported over OTLP to a collector in
    this process), in alternating legs on one population, so that both see the same machine.
    The difference of the medians, per child order, is what tracing costs a child."""
    from tests.otlp_collector import otlp_collector  # noqa: PLC0415

    sizes = context.sizes
    accounts, rounds = sizes.tracing_accounts, sizes.tracing_orders
    raw: dict[str, dict[str, list[float]]] = {"off": {}, "on": {}}
    with tempfile.TemporaryDirectory(prefix="mam-bench-") as name:
        directory = Path(name)
        url = sqlite_url(directory)
        people = await population.populate(url, accounts)
        async with otlp_collector() as collector:
            for _ in range(sizes.tracing_legs):
                for mode in ("off", "on"):
                    environment = {"MAM__TRACING__ENABLED": "false"}
                    if mode == "on":
                        environment = {
                            "MAM__TRACING__ENABLED": "true",
                            "MAM__TRACING__OTLP_ENDPOINT": collector.endpoint,
                            "MAM__TRACING__SAMPLING_RATIO": "1",
                        }
                    gateway = GatewayProcess(directory, url, environment=environment)
                    await gateway.start()
                    try:
                        await _orders(gateway, people.group_id, accounts, rounds, raw=raw[mode])
                    finally:
                        await gateway.stop()
            spans = collector.spans()
    result: dict[str, Any] = {
        "accounts": accounts,
        "orders_each": rounds * sizes.tracing_legs,
        "legs": sizes.tracing_legs,
        "spans_exported": len(spans),
        "traces_exported": len({span.trace_id for span in spans}),
    }
    for figure in ("submit_to_last_fill", "server_accept_to_last_fill"):
        off = summarize_ms(raw["off"][figure])
        on = summarize_ms(raw["on"][figure])
        difference = on["median_ms"] - off["median_ms"]
        result[figure] = {
            "off": off,
            "on": on,
            "difference_ms": round(difference, 3),
            "per_child_us": round(difference * 1000 / accounts, 2),
        }
    total = result["submit_to_last_fill"]
    result["summary"] = (
        f"{accounts} accounts, p50 off {total['off']['median_ms']} ms, on "
        f"{total['on']['median_ms']} ms: {total['per_child_us']:+} us per child "
        f"({result['spans_exported']} spans exported)"
    )
    return result


def _baseline(
    sample: list[float], accounts: int, latency: int, concurrent: dict[str, Any]
) -> dict[str, Any]:
    per_account = statistics.mean(sample)
    estimate = per_account * accounts
    concurrent_ms = concurrent["submit_to_last_fill"]["median_ms"]
    return {
        "accounts": accounts,
        "latency_ms": latency,
        "measured_accounts": len(sample),
        "per_account": summarize_ms(sample),
        "sequential_ms": round(estimate, 1),
        "method": (
            f"mean of {len(sample)} single-account orders traded one after the other "
            f"x {accounts} accounts (estimated, not run in full)"
        ),
        "concurrent_median_ms": concurrent_ms,
        "speedup": round(estimate / concurrent_ms, 1) if concurrent_ms else None,
        "summary": (
            f"{accounts} accounts at {latency} ms one at a time: ~{estimate / 1000:.1f} s "
            f"(estimated from {len(sample)} measured x {accounts}); concurrent dispatch "
            f"{concurrent_ms} ms median, {estimate / concurrent_ms:.0f}x faster"
            if concurrent_ms
            else "no concurrent figure"
        ),
    }


def _summary(rows: list[dict[str, Any]]) -> str:
    parts = []
    for row in rows:
        total = row["submit_to_last_fill"]
        parts.append(
            f"{row['accounts']}@{row['latency_ms']}ms p50 {total['median_ms']} ms "
            f"p99 {total['p99_ms']} ms"
        )
    return "; ".join(parts)
