"""A gateway subprocess with authentication on, whose resident memory and CPU time can be read.

Its own process, so that what is measured is the gateway alone (not the test's clients), with
the settings an operator runs: `python -m gateway`, the collector tuned for serving, the freed
heap given back (gateway/heap_trimming.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import DEMO_CONFIG, ROOT

MIB = 1024 * 1024


class AbusedGateway:
    def __init__(self, process: subprocess.Popen[bytes], address: str, key: str) -> None:
        self.process = process
        self.address = address
        # The bootstrap admin key.
        self.key = key

    @property
    def key_id(self) -> str:
        return self.key.split("_")[1]

    def resident_mib(self) -> float:
        """VmRSS of /proc/<pid>/status."""
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS in /proc/<pid>/status")

    def cpu_seconds(self) -> float:
        """User and system CPU time the gateway has used (utime + stime of /proc/<pid>/stat)."""
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def abused_gateway(directory: Path, timeout_s: float = 30.0) -> Iterator[AbusedGateway]:
    """The demo configuration without its demo accounts, on a free loopback port, with a
    SQLite file of its own and a bootstrap admin key."""
    text = DEMO_CONFIG.read_text()
    config = directory / "gateway.toml"
    config.write_text(text[: text.index("[demo]")])
    key_file = directory / "admin.key"
    env = {
        **os.environ,
        "MAM__SERVER__LISTEN": "127.0.0.1:0",
        "MAM__METRICS__LISTEN": "127.0.0.1:0",
        "MAM__AUTH__REQUIRED": "true",
        "MAM__AUTH__BOOTSTRAP_ADMIN_KEY_FILE": str(key_file),
        "MAM__DATABASE__URL": f"sqlite+aiosqlite:///{directory / 'gateway.db'}",
        "MAM__LOG_LEVEL": "WARNING",
    }
    with (directory / "gateway.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(config)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log,
        )  # fmt: skip
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + timeout_s
        address = ""
        while not address:
            line = process.stdout.readline().decode()
            if not line or time.monotonic() > deadline:
                log_text = (directory / "gateway.log").read_text()
                raise RuntimeError(f"the gateway did not start:\n{log_text}")
            if "listening on" in line:
                address = line.rsplit(" ", 1)[-1].strip()
        yield AbusedGateway(process, address, key_file.read_text().strip())
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
