"""`mam-probe` against a running gateway's health-only endpoint."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.api.server import RunningGateway, start_gateway
from gateway.probe import EXIT_NOT_SERVING, EXIT_SERVING, main
from tests.support import DEMO_CONFIG, make_config


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    config = make_config(tmp_path)
    server = dataclasses.replace(config.server, health_listen="127.0.0.1:0")
    running = await start_gateway(dataclasses.replace(config, server=server))
    try:
        yield running
    finally:
        await running.stop(0.5)


async def test_the_probe_exits_0_while_serving_and_1_once_stopping(
    gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAM__SERVER__HEALTH_LISTEN", f"127.0.0.1:{gateway.health_port}")
    probe = ["--config", str(DEMO_CONFIG), "--timeout", "5"]
    assert await asyncio.to_thread(main, probe) == EXIT_SERVING
    await gateway.health.enter_graceful_shutdown()
    assert await asyncio.to_thread(main, probe) == EXIT_NOT_SERVING
