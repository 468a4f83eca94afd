"""A throwaway PostgreSQL server for the tests (and bench/store.py).

`PostgresServer.start()` finds the server binaries (/usr/lib/postgresql/*/bin, the newest
version, or MAM_TEST_PG_BINDIR, or initdb on PATH), runs initdb into a new temporary directory,
starts the server on a free port of 127.0.0.1 with its socket in that directory, and waits until
it accepts connections. `stop()` stops it and removes the directory. As root, initdb and the
server run as the `postgres` user (initdb refuses root), and the directory is given to it.

Missing binaries are installed by `make postgres-binaries` (apt-get, as root), which
`make pytest` runs first. MAM_TEST_SKIP_POSTGRES=1 skips the PostgreSQL tests; without it, a
server that cannot start fails them.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

SKIP_VARIABLE = "MAM_TEST_SKIP_POSTGRES"
BINDIR_VARIABLE = "MAM_TEST_PG_BINDIR"
SUPERUSER = "postgres"
# Settings for a throwaway test server: no fsync (a crash loses nothing worth keeping).
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class PostgresUnavailable(RuntimeError):
    """The test server could not be found or started; the message says why and what to do."""


def skip_requested() -> bool:
    return os.environ.get(SKIP_VARIABLE, "") == "1"


def find_bindir() -> Path:
    configured = os.environ.get(BINDIR_VARIABLE)
    if configured:
        if not (Path(configured) / "initdb").exists():
            raise PostgresUnavailable(f"{BINDIR_VARIABLE}={configured} holds no initdb")
        return Path(configured)

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", Path(path).parent.parent.name))

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version, reverse=True)
    if found:
        return Path(found[0]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    raise PostgresUnavailable(
        "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb, no initdb "
        "on PATH): run `make postgres-binaries` (apt-get install postgresql, as root), point "
        f"{BINDIR_VARIABLE} at a bin directory, or set {SKIP_VARIABLE}=1 to skip these tests"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    bindir: Path
    root: Path
    port: int
    # The server's command-line settings (-c key=value ...), for a start after a stop.
    options: str = ""
    _stopped: bool = field(default=False, repr=False)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    @classmethod
    def start(
        cls, *, settings: dict[str, str] | None = None, timeout_s: int = 60
    ) -> PostgresServer:
        """initdb + pg_ctl start; raises PostgresUnavailable with the server log on failure."""
        bindir = find_bindir()
        as_root = os.geteuid() == 0
        if as_root:
            try:
                owner = pwd.getpwnam(SUPERUSER)
            except KeyError:
                raise PostgresUnavailable(
                    f"running as root, but there is no {SUPERUSER!r} user to run the server as "
                    "(initdb refuses root); the Debian postgresql package creates it"
                ) from None
        root = Path(tempfile.mkdtemp(prefix="mam-pg-"))
        if as_root:
            os.chown(root, owner.pw_uid, owner.pw_gid)
        prefix = ["runuser", "-u", SUPERUSER, "--"] if as_root else []

        def run(*command: str) -> None:
            try:
                done = subprocess.run(
                    [*prefix, *command],
                    check=False,
                    cwd=root,
                    capture_output=True,
                    text=True,
                    timeout=timeout_s,
                )
                problem = "" if done.returncode == 0 else f"exit {done.returncode}"
                output = f"{done.stdout}{done.stderr}"
            except (OSError, subprocess.SubprocessError) as error:
                problem, output = type(error).__name__, str(error)
            if problem:
                log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
                raise PostgresUnavailable(
                    f"PostgreSQL test server: `{' '.join([*prefix, *command])}` failed "
                    f"({problem}):\n{output}\n{log[-3000:]}"
                )

        try:
            run(
                str(bindir / "initdb"), "-D", str(root / "data"), "-U", SUPERUSER,
                "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync",
            )  # fmt: skip
            options = " ".join(
                f"-c {key}={value}"
                for key, value in {
                    "listen_addresses": "127.0.0.1",
                    "unix_socket_directories": str(root),
                    "max_connections": "200",
                    **(settings or {}),
                }.items()
            )
            for attempt in range(3):
                port = _free_port()
                try:
                    run(
                        str(bindir / "pg_ctl"), "-D", str(root / "data"), "-l",
                        str(root / "server.log"), "-o", f"-p {port} {options}",
                        "-w", "-t", str(timeout_s), "start",
                    )  # fmt: skip
                    break
                except PostgresUnavailable:
                    if attempt == 2:
                        raise
        except BaseException:
            cls(bindir, root, 0).stop()  # a server pg_ctl gave up waiting for, and the directory
            raise
        server = cls(bindir, root, port, options)
        atexit.register(server.stop)  # also when a test run is interrupted
        return server

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        prefix = ["runuser", "-u", SUPERUSER, "--"] if os.geteuid() == 0 else []
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                [
                    *prefix,
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
                check=False,
                cwd=self.root,
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def stop_fast(self, timeout_s: int = 60) -> None:
        """The first half of `pg_ctl restart -m fast`: every session ends, the server is down
        when this returns (start_again brings it back on the same port and data)."""
        self._pg_ctl("-m", "fast", "-w", "-t", str(timeout_s), "stop", timeout_s=timeout_s)

    def start_again(self, timeout_s: int = 60) -> None:
        self._pg_ctl(
            "-l", str(self.log), "-o", f"-p {self.port} {self.options}",
            "-w", "-t", str(timeout_s), "start", timeout_s=timeout_s,
        )  # fmt: skip

    def _pg_ctl(self, *arguments: str, timeout_s: int) -> None:
        prefix = ["runuser", "-u", SUPERUSER, "--"] if os.geteuid() == 0 else []
        subprocess.run(
            [*prefix, str(self.bindir / "pg_ctl"), "-D", str(self.data), *arguments],
            check=True, cwd=self.root, capture_output=True, timeout=timeout_s + 10,
        )  # fmt: skip

    async def execute(self, sql: str, *, database: str = "postgres") -> None:
        """One statement as the superuser (outside any transaction: CREATE DATABASE works)."""
        conn = await asyncpg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, database=database
        )
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def create_database(self, *, template: str = "template0", name: str = "") -> str:
        """A new database, a copy of `template` (template0: empty); returns its name."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        await self.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    async def drop_database(self, name: str) -> None:
        await self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
