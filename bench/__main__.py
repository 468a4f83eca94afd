"""`make bench`: every scenario, a human summary with targets, JSON under bench/results/.

    python -m bench                          # everything (about 10 minutes on 2 cores)
    python -m bench --smoke                  # every scenario at tiny sizes (SQLite), in seconds
    python -m bench floor e2e                # some scenarios
    python -m bench --sustained-seconds 30   # a shorter sustained load
    python -m bench --no-postgres            # SQLite only
    python -m bench tracing                  # tracing's cost per child order, off and on
    python -m bench metrics                  # metrics' cost per child order, off and on
    python -m bench mirroring                # a source deal -> its copy filled; watching's cost
    python -m bench cluster                  # 1-3 gateway processes on one PostgreSQL; takeover
    python -m bench cluster --cluster-seconds 5 --cluster-kills 4

Results: bench/results/<UTC time>.json and bench/results/latest.json (--results DIR elsewhere).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    allocation,
    cluster,
    e2e,
    floor,
    memory,
    metrics_cost,
    mirroring,
    remote,
    report,
    soak,
    store,
    subscribers,
    sustained,
)
from bench.common import FULL, ROOT, SMOKE, RunContext, machine
from bench.gateway_process import GatewayProcess

Scenario = Callable[[RunContext], Awaitable[dict[str, Any]] | dict[str, Any]]

SCENARIOS: dict[str, Scenario] = {
    "floor": floor.run,
    "allocation": allocation.run,
    "store": store.run,
    "e2e": e2e.run,  # also yields "baseline"
    "remote": remote.run,
    "sustained": sustained.run,
    "subscribers": subscribers.run,
    "memory": memory.run,
    "soak": soak.run,
    # The e2e order with tracing off and on, alternating, in this run.
    "tracing": e2e.run_tracing,
    # The e2e order with [metrics] off and on, alternating, in this run.
    "metrics": metrics_cost.run,
    # A source deal -> the group's copy filled, beside a direct order; the cost of watching.
    "mirroring": mirroring.run,
    # Several gateway processes on one PostgreSQL database: fills/s with 1, 2, 3 processes,
    # takeover after SIGKILL, the NOTIFY -> subscriber lag. PostgreSQL only.
    "cluster": cluster.run,
}
# Scenarios that measure nothing without PostgreSQL: named, they start it under --smoke too.
NEEDS_POSTGRES = frozenset({"cluster"})
RESULTS = ROOT / "bench" / "results"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help=f"any of {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: a check, not figures")
    parser.add_argument("--sustained-seconds", type=float, help="length of the sustained load")
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL")
    parser.add_argument(
        "--cluster-seconds", type=float, help="the cluster scenario's load per process count"
    )
    parser.add_argument("--cluster-kills", type=int, help="the cluster scenario's SIGKILLs")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args(argv)
    unknown = [n for n in args.scenarios if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    return args


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = SMOKE if args.smoke else FULL
    if args.sustained_seconds is not None:
        sizes = dataclasses.replace(sizes, sustained_seconds=args.sustained_seconds)
    # The smoke checks the harness, not the backends: SQLite only, unless a database is named
    # or a scenario that needs PostgreSQL is.
    postgres = not args.no_postgres and (
        not args.smoke
        or "MAM_BENCH_POSTGRES_URL" in os.environ
        or bool(NEEDS_POSTGRES & set(args.scenarios))
    )
    context = RunContext(sizes, postgres=postgres)
    names = args.scenarios or list(SCENARIOS)
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "mode": sizes.name,
        "machine": machine(),
        "sizes": dataclasses.asdict(sizes),
        "scenarios": {},
        "durations_s": {},
    }
    try:
        for name in names:
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            if name == "cluster":
                result = cluster.run(
                    context, seconds=args.cluster_seconds, kills=args.cluster_kills
                )
            else:
                result = SCENARIOS[name](context)
            if asyncio.iscoroutine(result):
                result = await result
            assert isinstance(result, dict)
            if name == "e2e":
                results["scenarios"]["baseline"] = result.pop("baseline")
            results["scenarios"][name] = result
            results["durations_s"][name] = round(time.perf_counter() - start, 1)
            print(f"bench: {name}: {result['summary']}", file=sys.stderr, flush=True)
    finally:
        results["postgresql"] = context.postgres_status
        results["gateway_stop_problems"] = GatewayProcess.stop_problems
        context.close()
    results["targets"] = report.targets(results)
    return results


def main(argv: list[str]) -> int:
    args = _parse(argv)
    try:
        import uvloop  # noqa: PLC0415 (the gateway runs on it too)

        runner: Callable[[Any], dict[str, Any]] = uvloop.run
    except ImportError:
        runner = asyncio.run
    results = runner(_run(args))
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(results, indent=2, default=str)
    path = args.results / f"{stamp}{'-smoke' if args.smoke else ''}.json"
    path.write_text(text)
    (args.results / "latest.json").write_text(text)
    print(report.render(results))
    print(f"\nresults: {path} (and {args.results / 'latest.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
