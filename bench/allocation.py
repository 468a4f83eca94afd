"""Allocation speed per method over 10 to 10,000 accounts: median and p99 of repeated runs."""

from __future__ import annotations

import random
import statistics
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bench.common import RunContext
from gateway.domain.accounts import (
    AccountSnapshot,
    AllocationMethod,
    AllocationSettings,
    BelowMinPolicy,
    GroupMember,
)
from gateway.domain.allocation import AllocationRequest, MemberInput, allocate
from gateway.domain.symbols import SymbolSpec

D = Decimal
EURUSD = SymbolSpec("EURUSD", 5, D(100000), D("0.01"), D("0.01"), D(100), D("0.00001"), D(1))
NOW = datetime.now(UTC)


def _members(count: int, method: AllocationMethod, rng: random.Random) -> list[MemberInput]:
    members = []
    share = D(100) / count
    for i in range(count):
        equity = D(rng.randint(50_000, 25_000_000)) / 100
        settings = GroupMember(
            f"acc_{i:06d}",
            percentage=share if i < count - 1 else D(100) - share * (count - 1),
            lot_multiplier=D(rng.randint(1, 300)) / 100,
            fixed_lots=D(rng.randint(1, 500)) / 100,
            risk_percent=D(rng.randint(1, 30)) / 10,
        )
        snapshot = AccountSnapshot(equity, equity, D(0), equity, NOW)
        members.append(
            MemberInput(f"acc_{i:06d}", "EURUSD", EURUSD, True, snapshot, settings, D("1.08450"))
        )
    del method
    return members


def run(context: RunContext) -> dict[str, Any]:
    sizes = context.sizes.allocation_sizes
    rng = random.Random(42)
    rows = []
    for method in AllocationMethod:
        for size in sizes:
            members = _members(size, method, rng)
            request = AllocationRequest(
                volume=(D(size) / 10).quantize(D("0.01")),  # ~0.1 lot per account
                symbol=EURUSD,
                settings=AllocationSettings(method=method, below_min_policy=BelowMinPolicy.SKIP),
                snapshot_time=NOW,
                stop_loss=D("1.08000"),
                reference_equity=D(100_000),
            )
            repeats = max(7, min(200, 20_000 // size))
            allocate(request, members)  # warms up caches of symbol specs
            timings = []
            for _ in range(repeats):
                start = time.perf_counter_ns()
                allocate(request, members)
                timings.append((time.perf_counter_ns() - start) / 1e6)
            timings.sort()
            median = statistics.median(timings)
            rows.append(
                {
                    "method": method.name,
                    "accounts": size,
                    "runs": repeats,
                    "median_ms": round(median, 3),
                    "p99_ms": round(timings[min(len(timings) - 1, int(len(timings) * 0.99))], 3),
                    "median_us_per_account": round(median * 1000 / size, 2),
                }
            )
    largest = [r for r in rows if r["accounts"] == max(sizes)]
    worst = max(largest, key=lambda r: r["median_ms"])
    equity = next(r for r in largest if r["method"] == "EQUITY")
    return {
        "rows": rows,
        "largest": {"accounts": max(sizes), "equity": equity, "slowest": worst},
        "summary": (
            f"{max(sizes)} accounts: EQUITY median {equity['median_ms']} ms "
            f"({equity['median_us_per_account']} us/account); slowest method {worst['method']} "
            f"{worst['median_ms']} ms"
        ),
    }
