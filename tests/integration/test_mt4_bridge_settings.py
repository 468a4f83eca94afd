"""The MT4 bridge the gateway starts takes its admission limits from [mt4_bridge]."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gateway.api.server import start_gateway
from gateway.config import load_config
from gateway.domain.peer_authentication import FailurePolicy
from tests.support import DEMO_CONFIG, make_config


async def test_the_bridge_is_started_with_the_configured_admission_limits(tmp_path: Path) -> None:
    bridge = load_config(
        DEMO_CONFIG,
        environ={
            "MAM__MT4_BRIDGE__LISTEN": "127.0.0.1:0",
            "MAM__MT4_BRIDGE__HELLO_TIMEOUT_SECONDS": "2.5",
            "MAM__MT4_BRIDGE__HELLO_MAX_FRAME_BYTES": "2048",
            "MAM__MT4_BRIDGE__MAX_PENDING_CONNECTIONS": "7",
            "MAM__MT4_BRIDGE__HELLO_FAILURES_PER_ADDRESS": "3",
            "MAM__MT4_BRIDGE__HELLO_FAILURE_REFILL_SECONDS": "30",
        },
    ).mt4_bridge
    config = dataclasses.replace(make_config(tmp_path), mt4_bridge=bridge)
    running = await start_gateway(config)
    try:
        assert running.mt4_bridge is not None
        settings = running.mt4_bridge.settings
        assert (settings.hello_timeout_s, settings.hello_max_frame_bytes) == (2.5, 2048)
        assert settings.max_pending_connections == 7
        assert settings.failures == FailurePolicy(burst=3, refill_s=30.0)
        assert settings.session.max_frame_bytes == bridge.max_frame_bytes
    finally:
        await running.stop(0.5)
