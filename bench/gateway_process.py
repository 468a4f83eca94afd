"""The gateway as an operator runs it (`python -m gateway`), in its own process, on a given store.

Its own process gives it its own core and lets /proc report its CPU and memory; the benchmark
client runs in the parent.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any, ClassVar

import grpc

from bench.common import ROOT, cpu_seconds, memory_mb

DEMO_CONFIG = ROOT / "deploy" / "config" / "demo.toml"
# Large FillBatch messages and group creation with thousands of members.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


def write_config(directory: Path) -> Path:
    """The shipped demo configuration without its demo accounts, logging warnings only."""
    text = DEMO_CONFIG.read_text()
    text = text[: text.index("[demo]")]
    text = text.replace('log_level = "INFO"', 'log_level = "WARNING"')
    path = directory / "gateway.toml"
    path.write_text(text)
    return path


class GatewayProcess:
    # Gateways that did not exit on SIGTERM within the timeout, in this run (reported).
    stop_problems: ClassVar[list[str]] = []

    def __init__(
        self,
        directory: Path,
        database_url: str,
        *,
        latency_ms: int = 0,
        environment: dict[str, str] | None = None,
        profile: Path | None = None,
    ) -> None:
        self.directory = directory
        self.database_url = database_url
        self.latency_ms = latency_ms
        self.environment = environment or {}
        # cProfile output of the whole gateway process, written when it stops.
        self.profile = profile
        self.process: asyncio.subprocess.Process | None = None
        self.address = ""
        # GET /metrics, when [metrics] is on (printed before the address).
        self.metrics_url = ""
        self.log = directory / "gateway.log"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, timeout_s: float = 120.0) -> str:
        config = write_config(self.directory)
        env = {
            **os.environ,
            "MAM__SERVER__LISTEN": "127.0.0.1:0",
            "MAM__METRICS__LISTEN": "127.0.0.1:0",
            "MAM__AUTH__REQUIRED": "false",
            "MAM__DATABASE__URL": self.database_url,
            "MAM__SIMULATOR__LATENCY_MS": str(self.latency_ms),
            "MAM__SERVER__HEARTBEAT_SECONDS": "1",
            **self.environment,
        }
        profiler = ["-m", "cProfile", "-o", str(self.profile)] if self.profile else []
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-X", "faulthandler", *profiler, "-m", "gateway", "--config",
                str(config),
                cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=log,
            )  # fmt: skip
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout_s):
            while True:
                line = (await self.process.stdout.readline()).decode()
                if not line:
                    await self.process.wait()
                    raise RuntimeError(f"gateway exited:\n{self.log.read_text()[-3000:]}")
                if line.startswith("mam-gateway metrics on "):
                    self.metrics_url = line.rsplit(" ", 1)[-1].strip()
                if "listening on" in line:
                    self.address = line.rsplit(" ", 1)[-1].strip()
                    return self.address

    def channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def memory(self) -> dict[str, float]:
        return memory_mb(self.pid)

    async def stop(self, timeout_s: float = 15.0) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout_s):
                await self.process.wait()
        except TimeoutError:
            # SIGABRT: faulthandler writes every thread's stack to the log first.
            self.process.send_signal(signal.SIGABRT)
            await self.process.wait()
            tail = self.log.read_text(errors="replace")[-20000:]
            print(f"bench: the gateway did not stop in {timeout_s} s:\n{tail}", file=sys.stderr)
            GatewayProcess.stop_problems.append(
                f"no exit {timeout_s} s after SIGTERM ({self.directory.name}); "
                f"main thread in: {' <- '.join(main_thread_stack(tail)[:6])}"
            )

    async def __aenter__(self) -> GatewayProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


def main_thread_stack(dump: str) -> list[str]:
    """The main thread's frames, innermost first, from faulthandler's dump of every thread
    (the main thread is the one whose frames end in the gateway's entry point)."""
    threads: list[list[str]] = []
    for raw in dump.splitlines():
        line = raw.strip()
        if line.startswith(("Thread 0x", "Current thread 0x")):
            threads.append([])
        elif line.startswith("File ") and threads:
            threads[-1].append(line)
    main = [t for t in threads if any("gateway/__main__.py" in f for f in t)]
    return main[-1] if main else []


def sqlite_url(directory: Path, name: str = "bench.db") -> str:
    return f"sqlite+aiosqlite:///{directory / name}"
