"""Starts a throwaway gateway for the client test suites (Go, Java, TypeScript).

    python3 clients/testing/start_gateway.py

Runs `python3 -m uv run --frozen mam-gateway --config deploy/config/demo.toml` from the repo
root (or from $MAM_GATEWAY_ROOT, another checkout, when set) on a free loopback port, with a
fresh SQLite file in a temporary directory and 0.5 s fill heartbeats. Authentication is on: the
gateway creates its first admin key in that directory (auth.bootstrap_admin_key_file). When
the gateway is ready this script prints two lines on stdout, the key first:

    mam-gateway admin key mam_<key id>_<secret>
    mam-gateway listening on 127.0.0.1:PORT

Callers send the key as `authorization: Bearer <key>` metadata on every call. This script stops
the gateway (SIGTERM, then SIGKILL after 15 s) and removes the temporary directory when its
stdin reaches end-of-file (the caller closed the pipe or died) or when it receives SIGTERM or
SIGINT. The gateway's log goes to stderr only if the gateway fails (set MAM_GATEWAY_LOG=1 to
see it always). Exit status: 0 after a clean stop, 1 otherwise. Standard library only, so any
python3 >= 3.8 runs it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(os.environ.get("MAM_GATEWAY_ROOT") or Path(__file__).resolve().parent.parent.parent)
GATEWAY_ARGS = ("-m", "uv", "run", "--frozen", "mam-gateway", "--config", "deploy/config/demo.toml")
READY = "mam-gateway listening on "
ADMIN_KEY = "mam-gateway admin key "
START_TIMEOUT_S = 120.0
KEY_TIMEOUT_S = 15.0  # the gateway writes its key before it listens: this is slack
STOP_TIMEOUT_S = 15.0


def main() -> int:
    scratch = Path(tempfile.mkdtemp(prefix="mam-client-test-"))
    log_path = scratch / "gateway.log"
    key_path = scratch / "admin.key"
    env = dict(os.environ)
    env.update(
        MAM__SERVER__LISTEN="127.0.0.1:0",
        MAM__METRICS__LISTEN="127.0.0.1:0",
        MAM__AUTH__REQUIRED="true",
        MAM__AUTH__BOOTSTRAP_ADMIN_KEY_FILE=str(key_path),
        MAM__DATABASE__URL=f"sqlite+aiosqlite:///{scratch / 'gw.db'}",
        MAM__SERVER__HEARTBEAT_SECONDS="0.5",
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with open(log_path, "wb") as log:
        gateway = subprocess.Popen(
            [sys.executable, *GATEWAY_ARGS],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,  # its own process group: uv and the gateway stop together
        )
    ready = threading.Event()
    ready_line: list[str] = []

    def watch_stdout() -> None:
        assert gateway.stdout is not None
        for raw in gateway.stdout:
            line = raw.decode(errors="replace")
            if line.startswith(READY) and not ready.is_set():
                ready_line.append(line)
                ready.set()
        stop.set()  # stdout closed: the gateway ended

    def watch_stdin() -> None:
        try:
            while os.read(0, 4096):  # the raw fd: no buffered reader left locked at exit
                pass
        except (OSError, ValueError):
            pass
        stop.set()

    threading.Thread(target=watch_stdout, daemon=True).start()
    threading.Thread(target=watch_stdin, daemon=True).start()

    clean = True
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (ready.is_set() or stop.is_set() or time.monotonic() > deadline):
            ready.wait(0.2)
        if not (ready.is_set() or stop.is_set()):
            print(f"gateway not ready after {START_TIMEOUT_S:.0f} s", file=sys.stderr)
            clean = False
            stop.set()
        if ready.is_set() and not stop.is_set():
            key = wait_for_key(key_path, stop, time.monotonic() + KEY_TIMEOUT_S)
            if key:
                sys.stdout.write(f"{ADMIN_KEY}{key}\n{ready_line[0]}")
                sys.stdout.flush()
            elif not stop.is_set():
                print(f"gateway wrote no admin key to {key_path}", file=sys.stderr)
                clean = False
                stop.set()
        while not stop.wait(0.5):
            pass
        if gateway.poll() is not None:
            print(f"gateway exited by itself with status {gateway.returncode}", file=sys.stderr)
            clean = False
        else:
            os.killpg(gateway.pid, signal.SIGTERM)
            try:
                gateway.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(gateway.pid, signal.SIGKILL)
                gateway.wait()
                print("gateway did not stop on SIGTERM; killed", file=sys.stderr)
                clean = False
            if gateway.returncode not in (0, -signal.SIGTERM, 128 + signal.SIGTERM):
                print(f"gateway stopped with status {gateway.returncode}", file=sys.stderr)
                clean = False
        if not clean or os.environ.get("MAM_GATEWAY_LOG"):
            sys.stderr.write(log_path.read_text(errors="replace"))
    finally:
        if gateway.poll() is None:
            os.killpg(gateway.pid, signal.SIGKILL)
            gateway.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0 if clean else 1


def wait_for_key(path: Path, stop: threading.Event, deadline: float) -> str:
    """The admin key the gateway writes at start (one line), or "" if none came in time."""
    while True:
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = ""
        if text.endswith("\n") and text.strip():  # the whole line: written, not being written
            return text.strip()
        if stop.wait(0.1) or time.monotonic() > deadline:
            return ""


if __name__ == "__main__":
    sys.exit(main())
