"""The mamctl command lines of README.md and clients/python/README.md, run as written against a
real gateway that wants a key, as `make run`'s does: in a shell, after the README's own
`source .venv/bin/activate` and `export MAM_API_KEY=$(cat var/admin.key)`, from a directory laid
out like the repository's root. Each README gets a fresh gateway, as a new user's first start.

What the test changes in a line, and why:
- the placeholders (ACC_ID, MASTER_ORDER_ID, KILL_SWITCH_ID, ...) become the ids they stand for
  at the moment the line runs (PLACEHOLDERS says which);
- optional parts in brackets (`[--flatten]`, `[--group G | --account A]`) are left out;
- `--target 127.0.0.1:50051` and MAM_TARGET point at the test's gateway instead;
- lines that follow a stream until stopped (`watch fills`, `signals watch`) are stopped after a
  moment with SIGTERM, as a service manager would, and must exit 0;
- lines that cannot run here are listed in SKIPPED with the reason, those the demo's gateway
  refuses in REFUSED with the reason they must name; lines that would undo what the lines after
  them need are moved to the end (RUN_LAST).
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from conftest import ROOT, GatewayProcess
from mam_client import SyncMamClient
from mam_client._proto.mam.v1 import admin_service_pb2 as adm
from mam_client._proto.mam.v1 import admin_service_pb2_grpc as adm_grpc
from mam_client.cli import app
from mam_client.cli.app import CSV_COLUMNS, account_from_row

READMES = (ROOT / "README.md", ROOT / "clients" / "python" / "README.md")
# What a shell needs before mamctl works, in the README's own words.
PREAMBLE = ("source .venv/bin/activate", "export MAM_API_KEY=$(cat var/admin.key)")
SKIPPED = {
    "mamctl --install-completion": "installs completion into the user's shell start-up files",
}
# Lines that the demo's gateway refuses, as it should, and the reason their one line must give.
REFUSED = {
    "mamctl cluster status": "CLUSTER_MODE_OFF",  # the demo is one gateway, not a cluster
}
RUN_LAST = {
    "mamctl accounts delete": "ACC_ID is made a member of group acme by the lines after it",
}
EXAMPLE_CSV = ROOT / "clients" / "python" / "examples" / "accounts.csv"


@dataclass(frozen=True)
class Line:
    readme: str
    number: int
    text: str  # as written

    def command(self) -> str:
        """The line without its comment and its optional parts."""
        text = re.sub(r"\s+#.*$", "", self.text)
        return re.sub(r"\s*\[[^\]]*\]", "", text).strip()

    def follows_a_stream(self) -> bool:
        command = self.command()
        if re.search(r"\bwatch fills\b", command):
            return "--master-order" not in command and "--count" not in command
        return bool(re.search(r"\bsignals watch\b", command)) and "--count" not in command


def readme_lines(readme: Path) -> Iterator[Line]:
    """Each mamctl line of the README's sh blocks, after checking that the block sets the shell
    up first (PREAMBLE)."""
    block: list[str] | None = None
    for number, text in enumerate(readme.read_text().splitlines(), start=1):
        if text.startswith("```"):
            block = [] if text.strip() == "```sh" and block is None else None
            continue
        if block is None:
            continue
        if text.startswith("mamctl "):
            missing = [p for p in PREAMBLE if not any(b.startswith(p) for b in block)]
            assert not missing, f"{readme.name}:{number}: no {missing} before {text!r}"
            yield Line(readme.name, number, text)
        block.append(text)


def in_running_order(lines: list[Line]) -> list[Line]:
    last = [line for line in lines if any(line.text.startswith(p) for p in RUN_LAST)]
    return [line for line in lines if line not in last] + last


class Placeholders:
    """The ids a README's placeholders stand for, read from the gateway when a line needs one."""

    def __init__(self, client: SyncMamClient) -> None:
        self._client = client
        self._admin = adm_grpc.AdminServiceStub(client.channel)
        self._resolvers: dict[str, Callable[[], str]] = {
            # A user's own accounts: those the README imported from the example CSV.
            "ACC_ID": lambda: self._account("acme-02"),
            "ACC_ID2": lambda: self._account("acme-03"),
            "ACC_ID3": lambda: self._account("acme-04"),
            "ACC_ID4": lambda: self._account("acme-05"),
            "ACCOUNT_ID": lambda: self._account("demo-20"),
            "GROUP_ID": lambda: next(g.group_id for g in client.list_groups() if g.name == "demo"),
            # The newest of each: the one the README's lines before made.
            "MASTER_ORDER_ID": lambda: next(iter(client.list_master_orders())).master_order_id,
            "KILL_SWITCH_ID": self._newest_kill_switch,
            "KEY_ID": self._newest_key,
        }

    def substitute(self, command: str) -> str:
        def value(found: re.Match[str]) -> str:
            name = found.group(0)
            assert name in self._resolvers, f"a placeholder this test does not know: {name}"
            return self._resolvers[name]()

        return re.sub(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*_ID\d?\b", value, command)

    def _account(self, name: str) -> str:
        return next(a.account_id for a in self._client.list_accounts() if a.name == name)

    def _newest_kill_switch(self) -> str:
        switches = self._admin.ListKillSwitches(
            adm.ListKillSwitchesRequest(active_only=True), metadata=self._client.metadata
        ).kill_switches
        return str(switches[0].kill_switch_id)

    def _newest_key(self) -> str:
        keys = self._admin.ListApiKeys(
            adm.ListApiKeysRequest(), metadata=self._client.metadata
        ).api_keys
        return str(keys[-1].key_id)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory laid out like the repository's root for the README's relative paths: the
    environment (.venv), the examples under clients/, and var/ for the gateway's admin key."""
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    (tmp_path / "clients").symlink_to(ROOT / "clients")
    (tmp_path / "var").mkdir()
    return tmp_path


@pytest.fixture
def keyed_gateway(workdir: Path) -> Iterator[GatewayProcess]:
    """A fresh gateway that wants a key and writes its admin key to var/admin.key."""
    process = GatewayProcess(
        workdir / "var",
        env={
            "MAM__AUTH__REQUIRED": "true",
            "MAM__AUTH__BOOTSTRAP_ADMIN_KEY_FILE": str(workdir / "var" / "admin.key"),
        },
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def shell_env(address: str) -> dict[str, str]:
    """The user's environment: without this environment's bin/ on PATH (the README's
    `source .venv/bin/activate` puts it there), and MAM_TARGET at the test's gateway."""
    venv_bin = str(Path(sys.prefix) / "bin")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "MAM_API_KEY")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    env["MAM_TARGET"] = address
    env["COLUMNS"] = "200"
    return env


def run_line(line: Line, command: str, workdir: Path, env: dict[str, str]) -> None:
    where = f"{line.readme}:{line.number}: {command}"
    follows = line.follows_a_stream()
    # A follower is exec'd, so that the SIGTERM reaches mamctl rather than the shell.
    script = "\n".join(["set -e", *PREAMBLE, f"exec {command}" if follows else command])
    process = subprocess.Popen(
        ["bash", "-c", script],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if follows:
            time.sleep(2.5)  # past its start-up: Python, its imports, the connection
            assert process.poll() is None, f"{where}: ended by itself"
            process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    refused = next((r for p, r in REFUSED.items() if line.text.startswith(p)), None)
    if refused is not None:
        assert process.returncode == 1 and refused in err, f"{where}: {process.returncode} {err}"
        return
    assert process.returncode == 0, f"{where}: exit {process.returncode}\n{out}\n{err}"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_readme_mamctl_lines_run_as_written(
    readme: Path, workdir: Path, keyed_gateway: GatewayProcess
) -> None:
    lines = list(readme_lines(readme))
    assert len(lines) >= 10
    env = shell_env(keyed_gateway.address)
    admin_key = (workdir / "var" / "admin.key").read_text().strip()
    ran = []
    with SyncMamClient.connect(keyed_gateway.address, api_key=admin_key) as client:
        placeholders = Placeholders(client)
        for line in in_running_order(lines):
            if any(line.text.startswith(prefix) for prefix in SKIPPED):
                continue
            command = placeholders.substitute(line.command())
            command = command.replace(
                "--target 127.0.0.1:50051", f"--target {keyed_gateway.address}"
            )
            run_line(line, command, workdir, env)
            ran.append(command)
    skipped = [line for line in lines if any(line.text.startswith(p) for p in SKIPPED)]
    assert len(ran) + len(skipped) == len(lines)


def test_mamctl_is_not_on_path_without_the_readmes_activation(workdir: Path) -> None:
    """The activation line is what makes `mamctl` a command: without it the shell (here, with
    this environment's bin/ taken off PATH) does not find it."""
    env = shell_env("127.0.0.1:1")
    bare = subprocess.run(["bash", "-c", "mamctl --help"], cwd=workdir, env=env, check=False)
    assert bare.returncode == 127  # command not found
    activated = subprocess.run(
        ["bash", "-c", f"{PREAMBLE[0]} && mamctl --help"],
        cwd=workdir,
        env=env,
        capture_output=True,
        check=False,
    )
    assert activated.returncode == 0, activated.stderr


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_readme_names_every_mamctl_command(readme: Path) -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    text = readme.read_text()
    missing = [name for name in root.commands if f"mamctl {name}" not in text]
    assert not missing, f"{readme.name} does not mention: {missing}"


def test_the_example_accounts_csv_has_the_columns_import_reads() -> None:
    with EXAMPLE_CSV.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
    assert rows and all(account_from_row(row).initial_balance for row in rows)
