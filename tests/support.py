"""Helpers shared by the tests: configurations, a gateway on a free port, error details."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from gateway.api.server import RunningGateway, start_gateway
from gateway.config import GatewayConfig, load_config

ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = ROOT / "deploy" / "config" / "demo.toml"


def make_config(
    tmp_path: Path,
    *,
    demo: bool = False,
    latency_ms: int = 0,
    heartbeat_s: float = 0.5,
    database_url: str | None = None,
    auth: bool = False,
) -> GatewayConfig:
    """The demo configuration on a free port with its own database (and no demo accounts
    unless asked). Without `auth`, every caller is an admin (no keys); with it, the first
    admin key is written to tmp_path / "admin.key"."""
    config = load_config(DEMO_CONFIG, environ={})
    server = dataclasses.replace(
        config.server, listen="127.0.0.1:0", heartbeat_seconds=heartbeat_s, grace_seconds=2.0
    )
    return dataclasses.replace(
        config,
        server=server,
        auth=dataclasses.replace(
            config.auth,
            required=auth,
            bootstrap_admin_key_file=tmp_path / "admin.key" if auth else None,
        ),
        database_url=database_url or f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}",
        simulator=dataclasses.replace(config.simulator, latency_ms=latency_ms),
        demo=config.demo if demo else None,
        log_level="WARNING",
        # Metrics on, on a free port: every test gateway counts (and several run at once).
        metrics=dataclasses.replace(config.metrics, listen="127.0.0.1:0"),
    )


@dataclass
class ErrorDetails:
    code: grpc.StatusCode
    message: str
    reason: str
    metadata: dict[str, str]
    field_violations: dict[str, str]
    # google.rpc.RetryInfo's delay, 0 without one.
    retry_delay_s: float = 0.0


def error_details(error: grpc.aio.AioRpcError) -> ErrorDetails:
    """The google.rpc.Status details a gateway error carries."""
    reason, metadata, violations, delay = "", {}, {}, 0.0
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
                assert info.domain == "mam-gateway"
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations = {v.field: v.description for v in bad.field_violations}
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                delay = retry.retry_delay.ToTimedelta().total_seconds()
    return ErrorDetails(error.code(), error.details() or "", reason, metadata, violations, delay)


def steps(volume: str | Decimal, step: str = "0.01") -> int:
    count, rest = divmod(Decimal(volume), Decimal(step))
    assert rest == 0, f"{volume} is not a multiple of {step}"
    return int(count)


class KeyedStub:
    """A stub whose every call sends `metadata` (an API key's authorization, say)."""

    def __init__(self, stub: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        self._stub = stub
        self._metadata = metadata

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)
        return lambda request, **kw: method(request, metadata=self._metadata, **kw)


@contextlib.asynccontextmanager
async def running(config: GatewayConfig) -> AsyncIterator[RunningGateway]:
    """A gateway started in this process, stopped (0.5 s grace) on the way out."""
    gateway = await start_gateway(config)
    try:
        yield gateway
    finally:
        await gateway.stop(0.5)


async def until(
    condition: Callable[[], Awaitable[bool]], *, timeout_s: float = 10.0, every_s: float = 0.05
) -> None:
    """Asks `condition` every `every_s` until it holds; fails after `timeout_s`."""
    for _ in range(max(1, int(timeout_s / every_s))):
        if await condition():
            return
        await asyncio.sleep(every_s)
    raise AssertionError(f"still not so after {timeout_s} s: {condition}")
