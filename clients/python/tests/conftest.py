"""A real gateway for the client tests: `python -m gateway` on a free port, a fresh SQLite file,
the demo configuration (group "demo" of 20 simulated accounts) and 0.5 s fill heartbeats."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from mam_client import Group, MamClient, SyncMamClient

ROOT = Path(__file__).resolve().parents[3]
DEMO_CONFIG = ROOT / "deploy" / "config" / "demo.toml"
READY = "mam-gateway listening on "


class GatewayProcess:
    """The gateway as an operator runs it; restartable on the same port and database."""

    def __init__(self, directory: Path, env: dict[str, str] | None = None) -> None:
        """`env`: more settings (MAM__SECTION__KEY) on top of the tests' own."""
        self.env = env or {}
        self.database = directory / "gateway.db"
        self.log = directory / "gateway.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.address = ""

    def start(self, timeout_s: float = 60.0) -> str:
        listen = self.address or "127.0.0.1:0"  # a restart keeps the port
        env = {
            **os.environ,
            "MAM__SERVER__LISTEN": listen,
            "MAM__METRICS__LISTEN": "127.0.0.1:0",
            "MAM__AUTH__REQUIRED": "false",
            "MAM__DATABASE__URL": f"sqlite+aiosqlite:///{self.database}",
            "MAM__SERVER__HEARTBEAT_SECONDS": "0.5",
            "MAM__SIMULATOR__LATENCY_MS": "5",
            "MAM__SERVER__GRACE_SECONDS": "1",
            **self.env,
        }
        with self.log.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--config", str(DEMO_CONFIG)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        self.process = process
        found: list[str] = []

        def read_address() -> None:
            assert process.stdout is not None
            for raw in process.stdout:
                line = raw.decode(errors="replace")
                if line.startswith(READY):
                    found.append(line[len(READY) :].strip())
                    return

        reader = threading.Thread(target=read_address, daemon=True)
        reader.start()
        reader.join(timeout_s)
        if not found:
            self.kill()
            raise RuntimeError(f"the gateway did not start:\n{self.log.read_text()}")
        self.address = found[0]
        return self.address

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM: the graceful stop (running calls get the grace period)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One gateway for the session: tests create uniquely named resources."""
    process = GatewayProcess(tmp_path_factory.mktemp("gateway"))
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def own_gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    """A gateway of the test's own, for tests that stop and restart it."""
    process = GatewayProcess(tmp_path)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def client(gateway: GatewayProcess) -> AsyncIterator[MamClient]:
    async with await MamClient.connect(gateway.address, api_key="test-key") as client:
        yield client


@pytest.fixture
def sync_client(gateway: GatewayProcess) -> Iterator[SyncMamClient]:
    with SyncMamClient.connect(gateway.address) as client:
        yield client


@pytest.fixture
def demo_group(sync_client: SyncMamClient) -> Group:
    return next(g for g in sync_client.list_groups() if g.name == "demo")
