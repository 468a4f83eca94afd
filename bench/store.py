"""The gateway's group commit on each backend: save_progress of N child results + N fills.

One batch is what the execution recorder commits when an N-account master order fills: every
child's new state, every fill (numbered), the master order's progress. Read beside the floor's
plain commit of the same number of rows. SQLite is a file (WAL, synchronous=NORMAL: no fsync per
commit); PostgreSQL is durable (synchronous_commit=on, an fsync per commit) and, closer to
SQLite's setting, with synchronous_commit=off.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from bench import population
from bench.common import RunContext, summarize_ms
from gateway.store import Store


async def _measure(url: str, accounts: int, runs: int) -> dict[str, Any]:
    store = await Store.open(url)
    try:
        members = [population.account(i) for i in range(accounts)]
        for member in members:
            await store.insert_account(member)
        group = population.group("bench", [a.account_id for a in members], 700_001)
        await store.insert_group(group)
        timings = []
        for _ in range(runs):
            master, children = population.master_order(group)
            await store.insert_master_order(master, children)
            progressed, done, fills = population.filled(master, children)
            start = time.perf_counter_ns()
            numbered = await store.save_progress(masters=[progressed], children=done, fills=fills)
            timings.append((time.perf_counter_ns() - start) / 1e6)
            assert len(numbered) == accounts
        return summarize_ms(timings)
    finally:
        await store.close()


async def run(context: RunContext) -> dict[str, Any]:
    accounts = 1_000 if context.sizes.name == "full" else 20
    runs = context.sizes.commit_runs
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as directory:
        rows["sqlite"] = await _measure(f"sqlite+aiosqlite:///{directory}/bench.db", accounts, runs)
    durable = await context.postgres_url()
    if durable:
        rows["postgresql"] = await _measure(durable, accounts, runs)
        relaxed = await context.postgres_url(synchronous_commit=False)
        assert relaxed is not None
        rows["postgresql_async_commit"] = await _measure(relaxed, accounts, runs)
    summary = ", ".join(f"{name} {row['median_ms']} ms" for name, row in rows.items())
    return {
        "batch": f"{accounts} child updates + {accounts} fills + 1 master order",
        "accounts": accounts,
        "rows": rows,
        "summary": f"save_progress of {accounts} children + {accounts} fills, median: {summary}",
    }
