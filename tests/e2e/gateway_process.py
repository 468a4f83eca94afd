"""The gateway as a real subprocess (`python -m gateway`), as an operator runs it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.support import DEMO_CONFIG, ROOT


def write_config(directory: Path, *, demo: bool = False) -> Path:
    """The demo configuration, without its demo accounts unless asked."""
    text = DEMO_CONFIG.read_text()
    if not demo:
        text = text[: text.index("[demo]")]
    path = directory / "gateway.toml"
    path.write_text(text)
    return path


class GatewayProcess:
    def __init__(
        self,
        config: Path,
        database: Path,
        *,
        latency_ms: int = 5,
        broker_state: Path | None = None,
        database_url: str = "",
        environment: dict[str, str] | None = None,
    ) -> None:
        """`database`: a SQLite file (its directory also holds the log); `database_url`,
        when given, the database used instead (PostgreSQL); `environment`: more variables
        (MAM__ overrides), over the ones set here."""
        self.config = config
        self.database = database
        self.database_url = database_url or f"sqlite+aiosqlite:///{database}"
        self.latency_ms = latency_ms
        self.environment = environment or {}
        # A file for the simulated broker's books, so that they outlive the process.
        self.broker_state = broker_state
        self.process: asyncio.subprocess.Process | None = None
        self.address = ""
        self.log = database.parent / "gateway.log"

    async def start(self, timeout_s: float = 30.0) -> str:
        env = {
            **os.environ,
            "MAM__SERVER__LISTEN": "127.0.0.1:0",
            "MAM__METRICS__LISTEN": "127.0.0.1:0",
            "MAM__AUTH__REQUIRED": "false",
            "MAM__DATABASE__URL": self.database_url,
            "MAM__SIMULATOR__LATENCY_MS": str(self.latency_ms),
            "MAM__SERVER__HEARTBEAT_SECONDS": "0.5",
        }
        if self.broker_state is not None:
            env["MAM__SIMULATOR__STATE_PATH"] = str(self.broker_state)
        env.update(self.environment)
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "--config", str(self.config),
                cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=log,
            )  # fmt: skip
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout_s):
            while True:
                line = (await self.process.stdout.readline()).decode()
                if not line:
                    raise RuntimeError(f"gateway exited; see {self.log}:\n{self.log.read_text()}")
                if "listening on" in line:
                    self.address = line.rsplit(" ", 1)[-1].strip()
                    return self.address

    async def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM: the graceful stop an operator uses."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(timeout_s):
            return await self.process.wait()

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
