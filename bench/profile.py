"""Where the time goes: the gateway process sampled by py-spy, or under cProfile.

    python -m bench.profile e2e --accounts 1000 --latency 0 --orders 10
    python -m bench.profile sustained --accounts 1000 --seconds 15
    python -m bench.profile e2e --sampler cprofile       # call counts, distorted times
    python -m bench.profile allocation --accounts 10000 --method EQUITY   # cProfile

With py-spy (the default for the gateway): the share of samples per function, where the
sample was taken and anywhere on the stack, with the gateway's CPU seconds per order; the raw
samples are kept under bench/results/profiles/. With cProfile: the top functions by own and
cumulative time, and the .prof file (open it with `python -m pstats FILE`).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import random
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench import client, population, sampling
from bench.allocation import EURUSD, NOW, _members
from bench.common import ROOT, cpu_seconds
from bench.gateway_process import GatewayProcess, sqlite_url
from bench.sustained import load
from gateway._proto.mam.v1 import order_pb2, trading_service_pb2_grpc
from gateway.domain.accounts import AllocationMethod, AllocationSettings, BelowMinPolicy
from gateway.domain.allocation import AllocationRequest, allocate

PROFILES = ROOT / "bench" / "results" / "profiles"


def report(path: Path, top: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


async def _gateway(args: argparse.Namespace, path: Path) -> dict[str, Any]:
    sampled = args.sampler == "py-spy"
    with tempfile.TemporaryDirectory(prefix="mam-bench-") as name:
        directory = Path(name)
        url = sqlite_url(directory)
        people = await population.populate(url, args.accounts)
        gateway = GatewayProcess(
            directory, url, latency_ms=args.latency, profile=None if sampled else path
        )
        await gateway.start()
        sampler = None
        try:
            async with gateway.channel() as channel:
                trading = trading_service_pb2_grpc.TradingServiceStub(channel)
                counter = client.FillCounter(trading)
                await counter.start()

                async def order(number: int) -> float:
                    start = time.perf_counter()
                    # As the e2e scenario submits: the answer without the allocation's lines.
                    master = await client.submit(
                        trading,
                        people.group_id,
                        args.accounts,
                        sell=number % 2 == 1,
                        view=order_pb2.MASTER_ORDER_VIEW_BASIC,
                    )
                    await counter.wait_for(master.master_order_id, master.child_count)
                    return round((time.perf_counter() - start) * 1000, 1)

                try:
                    if sampled:
                        await order(1)  # start-up and first-call costs stay out of the samples
                        sampler = sampling.Sampler(gateway.pid, path)
                    cpu_before = cpu_seconds(gateway.pid)
                    if args.what == "e2e":
                        timings = [await order(number) for number in range(args.orders)]
                        cpu = cpu_seconds(gateway.pid) - cpu_before
                        return {
                            "orders_ms": timings,
                            "gateway_cpu_ms_per_order": round(cpu * 1000 / args.orders, 1),
                        }
                    return await load(
                        trading, counter, people.group_id, args.accounts,
                        seconds=args.seconds, window=args.window, pid=gateway.pid,
                    )  # fmt: skip
                finally:
                    if sampler is not None:
                        sampler.stop()
                    await counter.stop()
        finally:
            await gateway.stop(timeout_s=120)  # cProfile writes its file on the way out


def _allocation(args: argparse.Namespace, path: Path) -> dict[str, Any]:
    method = AllocationMethod[args.method]
    members = _members(args.accounts, method, random.Random(42))
    request = AllocationRequest(
        volume=(Decimal(args.accounts) / 10).quantize(Decimal("0.01")),
        symbol=EURUSD,
        settings=AllocationSettings(method=method, below_min_policy=BelowMinPolicy.SKIP),
        snapshot_time=NOW,
        stop_loss=Decimal("1.08000"),
        reference_equity=Decimal(100_000),
    )
    allocate(request, members)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    for _ in range(args.orders):
        allocate(request, members)
    profiler.disable()
    profiler.dump_stats(str(path))
    return {
        "profiled_ms_per_allocation": round((time.perf_counter() - start) * 1000 / args.orders, 1)
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("what", choices=("e2e", "sustained", "allocation"))
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--latency", type=int, default=0, help="simulated terminal ms")
    parser.add_argument("--orders", type=int, default=5, help="orders (e2e), runs (allocation)")
    parser.add_argument("--seconds", type=float, default=15.0, help="sustained load length")
    parser.add_argument("--window", type=int, default=3, help="orders in flight (sustained)")
    parser.add_argument("--method", default="EQUITY", help="allocation method")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--sampler", choices=("py-spy", "cprofile"), default="py-spy",
        help="how the gateway is profiled (allocate() always runs under cProfile)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    PROFILES.mkdir(parents=True, exist_ok=True)
    sampled = args.sampler == "py-spy" and args.what != "allocation"
    suffix = "folded.txt" if sampled else "prof"
    path = PROFILES / f"{args.what}-{args.accounts}-{time.strftime('%Y%m%dT%H%M%S')}.{suffix}"
    if args.what == "allocation":
        result = _allocation(args, path)
    else:
        result = asyncio.run(_gateway(args, path))
    print(result)
    print(sampling.report(sampling.shares(path, args.top)) if sampled else report(path, args.top))
    print(f"profile: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
