"""Allocation speed: EQUITY over 10 to 10,000 accounts, median and p99 of repeated runs."""

from __future__ import annotations

import random
import statistics
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gateway.domain.accounts import AllocationMethod, BelowMinPolicy
from gateway.domain.allocation import MemberInput, allocate
from gateway.domain.symbols import SymbolSpec

EURUSD = SymbolSpec(
    "EURUSD", 5, Decimal(100000), Decimal("0.01"), Decimal("0.01"), Decimal(100),
    Decimal("0.00001"), Decimal(1),
)  # fmt: skip


def _members(count: int, rng: random.Random) -> list[MemberInput]:
    return [
        MemberInput(f"acc_{i:06d}", "EURUSD", True, Decimal(rng.randint(50_000, 25_000_000)) / 100)
        for i in range(count)
    ]


def run(sizes: tuple[int, ...] = (10, 100, 1_000, 10_000)) -> dict[str, Any]:
    rng = random.Random(42)
    rows = []
    for size in sizes:
        members = _members(size, rng)
        volume = Decimal(size) / 10  # ~0.1 lot per account: rounding and skips both happen
        repeats = max(5, min(200, 20_000 // size))
        timings = []
        for _ in range(repeats):
            start = time.perf_counter_ns()
            allocate(
                method=AllocationMethod.EQUITY,
                below_min_policy=BelowMinPolicy.SKIP,
                volume=volume.quantize(Decimal("0.01")),
                symbol=EURUSD,
                members=members,
                snapshot_time=datetime.now(UTC),
            )
            timings.append((time.perf_counter_ns() - start) / 1e6)
        timings.sort()
        rows.append(
            {
                "accounts": size,
                "runs": repeats,
                "median_ms": round(statistics.median(timings), 3),
                "p99_ms": round(timings[min(len(timings) - 1, int(len(timings) * 0.99))], 3),
                "median_us_per_account": round(statistics.median(timings) * 1000 / size, 2),
            }
        )
    largest = rows[-1]
    return {
        "method": "EQUITY",
        "rows": rows,
        "summary": (
            f"EQUITY over {largest['accounts']} accounts: median {largest['median_ms']} ms "
            f"({largest['median_us_per_account']} us/account), p99 {largest['p99_ms']} ms"
        ),
    }
