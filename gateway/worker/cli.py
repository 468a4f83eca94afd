"""`mam-worker`: hosts terminals and serves the gateway's commands for them.

Exit codes: 0 stopped on request (SIGINT/SIGTERM, Ctrl+C), 2 configuration error (also a
backend that cannot open a terminal), 3 refused by the gateway (unknown token, a login another
worker hosts, another process with the same worker id).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from gateway.garbage_collection import tune_for_serving
from gateway.observability.log_format import configure_logging
from gateway.observability.metrics_endpoint import MetricsEndpoint
from gateway.observability.trace_context import WORKER_ID
from gateway.observability.tracing import Tracing
from gateway.worker.backends import open_terminals
from gateway.worker.client import FatalWorkerError, TerminalWorker
from gateway.worker.config import WorkerConfig, WorkerConfigError, load_worker_config

try:
    import uvloop
except ImportError:  # Windows: the default event loop
    uvloop = None  # type: ignore[assignment]

log = logging.getLogger("gateway.worker")

# Commands in progress when asked to stop get this long to finish.
STOP_GRACE_S = 10.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mam-worker",
        description="Hosts MetaTrader terminals for a mam-gateway (WorkerService.Connect).",
    )
    parser.add_argument("--config", type=Path, required=True, help="the worker's TOML file")
    parser.add_argument(
        "--check-config", action="store_true", help="validate the configuration and exit"
    )
    args = parser.parse_args(argv)
    try:
        config = load_worker_config(args.config)
    except WorkerConfigError as error:
        print(f"mam-worker: configuration error: {error}", file=sys.stderr)
        return 2
    if args.check_config:
        print(f"{args.config}: ok")
        return 0
    configure_logging(config.log_level, config.log_format)
    runner = asyncio.run if uvloop is None else uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        return runner(serve(config))
    return 0


async def serve(config: WorkerConfig) -> int:
    try:
        backends, terminals = open_terminals(config)
    except WorkerConfigError as error:
        print(f"mam-worker: configuration error: {error}", file=sys.stderr)
        return 2

    def connected() -> None:
        # Tools and tests read this line to know the worker is serving.
        print(f"mam-worker {config.worker_id} connected to {config.gateway}", flush=True)

    tracing = Tracing.from_config(
        config.tracing, service="mam-worker", attributes={WORKER_ID: config.worker_id}
    )
    worker = TerminalWorker(config, terminals, on_connected=connected, tracer=tracing.tracer)
    worker.metrics.hosting(e.backend for e in config.terminals if e.login in terminals)
    metrics = None
    if config.metrics.enabled:
        try:
            metrics = await MetricsEndpoint.start(config.metrics.listen, worker.metrics.registry)
        except OSError as error:
            print(f"mam-worker: cannot listen on {config.metrics.listen}: {error}", file=sys.stderr)
            await tracing.shutdown()
            return 2
        # Tools and tests read this line to find the port (port 0 picks a free one).
        print(f"mam-worker metrics on {metrics.url}", flush=True)
    tune_for_serving()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl+C raises instead
            loop.add_signal_handler(sig, stop.set)
    running = asyncio.create_task(worker.run())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            running.result()  # only ever ends by raising
        log.info("stopping: finishing commands in progress")
        return 0
    except FatalWorkerError as error:
        log.error("%s", error)
        return 3
    finally:
        for task in (running, stopping):
            task.cancel()
        await asyncio.gather(running, stopping, return_exceptions=True)
        await worker.close(STOP_GRACE_S)
        for terminal in terminals.values():
            with contextlib.suppress(Exception):
                await terminal.close()
        for backend in backends:
            backend.close()
        if metrics is not None:
            await metrics.close()
        await tracing.shutdown()
