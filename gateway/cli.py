"""`mam-gateway`: runs the gateway from a configuration file."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.api.server import start_gateway
from gateway.config import ConfigError, GatewayConfig, load_config

try:
    import uvloop
except ImportError:  # Windows: the default event loop
    uvloop = None  # type: ignore[assignment]

log = logging.getLogger("gateway")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mam-gateway",
        description="Multi-Account Manager gateway for MetaTrader 4 and 5 (gRPC API mam.v1).",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("deploy/config/demo.toml"),
        help="TOML configuration file (default: %(default)s); MAM__SECTION__KEY overrides",
    )
    parser.add_argument(
        "--check-config", action="store_true", help="validate the configuration and exit"
    )
    parser.add_argument(
        "--probe",
        action="store_true",
        help="ask the running gateway's server.health_listen endpoint; exit 0 if SERVING "
        "(for container healthchecks)",
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"mam-gateway: configuration error: {error}", file=sys.stderr)
        return 2
    if args.check_config:
        print(f"{args.config}: ok")
        return 0
    if args.probe:
        return probe(config)
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    runner = asyncio.run if uvloop is None else uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve(config))
    return 0


def probe(config: GatewayConfig, timeout_s: float = 3.0) -> int:
    if not config.server.health_listen:
        print("mam-gateway: --probe needs server.health_listen", file=sys.stderr)
        return 2
    with grpc.insecure_channel(config.server.health_listen) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
            )
        except grpc.RpcError as error:
            print(f"mam-gateway: not serving: {error.code().name}", file=sys.stderr)
            return 1
    serving = response.status == health_pb2.HealthCheckResponse.SERVING
    print(
        "SERVING" if serving else health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    )
    return 0 if serving else 1


async def serve(config: GatewayConfig) -> None:
    gateway = await start_gateway(config)
    # Tools and tests read this line to find the port (listen on port 0 picks a free one).
    print(f"mam-gateway listening on {gateway.address}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: finishing running calls and dispatches")
    await gateway.stop()
    log.info("stopped")


if __name__ == "__main__":
    sys.exit(main())
