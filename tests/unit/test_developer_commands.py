"""What a new user sees from the make targets and the generated-code checks: `make help` names
every step `make test` runs, the first install says what it is doing (and pip does not warn about
root), `make run` says how to get `mamctl`, and the staleness checks print a line, not one per
generated file. make runs with -n (nothing is executed) or on a target of the test's own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = ROOT / "Makefile"


def make(*args: str) -> str:
    done = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_make_help_names_every_step_of_make_test() -> None:
    found = re.search(r"^test:(.*)$", MAKEFILE.read_text(), re.M)
    assert found is not None
    steps = found.group(1).split()
    assert "pytest" in steps and "test-clients" in steps
    help_text = make("help")
    # The lines of `make test`, up to the next target's.
    described = help_text.split("make test ", 1)[1].split("\nmake ", 1)[0]
    missing = [step for step in steps if step not in described]
    assert not missing, f"`make help` does not say that make test runs {missing}"


def test_the_first_install_says_what_it_is_doing() -> None:
    recipe = make("-n", "-W", "uv.lock", ".venv/.synced").splitlines()
    assert recipe[0].startswith("echo ") and "installing" in recipe[0]


def test_pip_is_told_not_to_warn_about_running_as_root() -> None:
    shown = make("--eval", "show-pip-env: ; @echo $$PIP_ROOT_USER_ACTION", "show-pip-env")
    assert shown.strip() == "ignore"


def test_make_run_says_how_to_put_mamctl_on_path() -> None:
    assert "source .venv/bin/activate" in make("-n", "run")


@pytest.mark.parametrize(
    "script", ["scripts/gen_protos.py", "clients/gen_clients.py"], ids=["proto", "clients"]
)
def test_the_generated_code_check_prints_no_line_per_file(script: str) -> None:
    args = [sys.executable, str(ROOT / script), "--check"]
    if script.startswith("clients/"):
        args += ["--only", "python"]  # the Go and TypeScript generators need go and npm
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert "Writing mypy" not in done.stderr
    assert len((done.stdout + done.stderr).splitlines()) <= 1 or done.returncode != 0
