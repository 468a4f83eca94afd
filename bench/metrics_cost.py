"""What Prometheus metrics cost a child order: the e2e order (simulated terminals answering at
once, the gateway in its own process) through a gateway with [metrics] off (NO_METRICS: nothing
recorded, no endpoint), then on (every metric recorded, the endpoint scraped once per leg), in
alternating legs (off-on, on-off, ...) on one population, so that both see the same machine in
the same run.

Three figures per child order: the difference of the submit -> last fill medians divided by the
accounts (what a caller waits for), the difference of the gateway's CPU time per child (what the
gateway spends), and the recording alone, timed in this process: a 1,000-child order's group
commit counted and its 1,000 terminal requests observed, as the gateway records them. On a
loaded machine the first two are noise when small (they may come out negative); the third is
what metrics add per child.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench import population
from bench.common import RunContext, summarize_ms
from bench.e2e import _orders
from bench.gateway_process import GatewayProcess, sqlite_url
from gateway.domain import retcodes
from gateway.domain.ids import AccountId, ChildOrderId, MasterOrderId
from gateway.domain.orders import ChildOrder, ChildOrderState, Side
from gateway.engine.metrics import GatewayMetrics, backend_of


async def run(context: RunContext) -> dict[str, Any]:
    sizes = context.sizes
    accounts, rounds = sizes.metrics_accounts, sizes.metrics_orders
    raw: dict[str, dict[str, list[float]]] = {"off": {}, "on": {}}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    scraped_bytes = 0
    with tempfile.TemporaryDirectory(prefix="mam-bench-") as name:
        directory = Path(name)
        url = sqlite_url(directory)
        people = await population.populate(url, accounts)
        for leg in range(sizes.metrics_legs):
            # off, on, on, off, ...: a drift of the machine's load over the run falls on both.
            for mode in ("off", "on") if leg % 2 == 0 else ("on", "off"):
                enabled = "true" if mode == "on" else "false"
                gateway = GatewayProcess(
                    directory, url, environment={"MAM__METRICS__ENABLED": enabled}
                )
                await gateway.start()
                try:
                    before = gateway.cpu_seconds()
                    await _orders(gateway, people.group_id, accounts, rounds, raw=raw[mode])
                    # One order to warm up, then `rounds` timed ones: all of them on the CPU.
                    spent = gateway.cpu_seconds() - before
                    cpu[mode].append(spent * 1e6 / ((rounds + 1) * accounts))
                    if mode == "on" and gateway.metrics_url:
                        scraped_bytes = len(await asyncio.to_thread(_get, gateway.metrics_url))
                finally:
                    await gateway.stop()
    recording = _recording_us_per_child(accounts)
    off = summarize_ms(raw["off"]["submit_to_last_fill"])
    on = summarize_ms(raw["on"]["submit_to_last_fill"])
    difference = on["median_ms"] - off["median_ms"]
    cpu_off = sum(cpu["off"]) / len(cpu["off"])
    cpu_on = sum(cpu["on"]) / len(cpu["on"])
    result: dict[str, Any] = {
        "accounts": accounts,
        "orders_each": rounds * sizes.metrics_legs,
        "legs": sizes.metrics_legs,
        "submit_to_last_fill": {
            "off": off,
            "on": on,
            "difference_ms": round(difference, 3),
            "per_child_us": round(difference * 1000 / accounts, 2),
        },
        "gateway_cpu": {
            "off_us_per_child": round(cpu_off, 2),
            "on_us_per_child": round(cpu_on, 2),
            "per_child_us": round(cpu_on - cpu_off, 2),
            # Each leg's, in the order they ran: how far apart the legs of one mode are.
            "legs_off_us_per_child": [round(c, 1) for c in cpu["off"]],
            "legs_on_us_per_child": [round(c, 1) for c in cpu["on"]],
        },
        "recording_us_per_child": recording,
        "scrape_bytes": scraped_bytes,
    }
    total, spent = result["submit_to_last_fill"], result["gateway_cpu"]
    result["summary"] = (
        f"{accounts} accounts, p50 off {off['median_ms']} ms, on {on['median_ms']} ms: "
        f"{total['per_child_us']:+} us per child; gateway CPU {spent['off_us_per_child']} -> "
        f"{spent['on_us_per_child']} us per child ({spent['per_child_us']:+} us); recording "
        f"{recording} us per child"
    )
    return result


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body


def _recording_us_per_child(children: int, rounds: int = 50) -> float:
    """What the gateway records per child, timed alone (median of `rounds`): the group commit
    that stores the order's children and fills, and each child's terminal request."""
    metrics = GatewayMetrics()
    now = datetime.now(UTC)
    filled = [
        ChildOrder(
            ChildOrderId(f"ch_{n}"), MasterOrderId("mo_1"), AccountId(f"acc_{n}"), "EURUSD",
            Side.BUY, Decimal("0.01"), ChildOrderState.FILLED, f"t{n}", 1, now, now,
            retcode=retcodes.DONE,
        )
        for n in range(children)
    ]  # fmt: skip
    terminal = SimpleNamespace()
    timings = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(children):
            started = time.perf_counter()
            metrics.terminal_request(backend_of(terminal), "send", time.perf_counter() - started)
        metrics.committed(filled, children, 0.001, children)
        timings.append((time.perf_counter() - start) * 1e6 / children)
    return round(statistics.median(timings), 2)
