"""Runs every benchmark and prints their JSON results and a summary.

python -m bench                 # all
python -m bench allocation      # one
"""

from __future__ import annotations

import asyncio
import json
import sys

from bench import allocation, fan_out, store

BENCHMARKS = {"allocation": allocation.run, "fan_out": fan_out.run, "store": store.run}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    results = {}
    for name in names:
        result = BENCHMARKS[name]()
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        results[name] = result
    print(json.dumps(results, indent=2))
    for name, result in results.items():
        print(f"{name}: {result['summary']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
