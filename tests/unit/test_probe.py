"""`mam-probe`, the container's healthcheck, loads none of the gateway and finds the health
endpoint exactly where the gateway's configuration puts it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.probe import EXIT_NO_ENDPOINT, ProbeSetupError, health_address, main
from tests.support import DEMO_CONFIG

# What `mam-probe` may load of the gateway: itself and the environment overrides it shares.
PROBE_MODULES = {"gateway", "gateway.probe", "gateway.config_overrides"}


def test_the_probe_imports_nothing_of_the_gateway_but_itself() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys, gateway.probe; print(json.dumps(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    modules = set(json.loads(loaded.stdout))
    assert {m for m in modules if m.split(".")[0] == "gateway"} == PROBE_MODULES
    # Nor what the gateway's engine and store stand on.
    assert not modules & {"sqlalchemy", "alembic", "aiosqlite", "asyncpg", "fpdf", "jinja2"}
    assert "grpc_health.v1.health_pb2_grpc" in modules


@pytest.mark.parametrize(
    "environ",
    [
        {"MAM__SERVER__HEALTH_LISTEN": "127.0.0.1:50052"},
        {"MAM__SERVER__HEALTH_LISTEN": '"127.0.0.1:6001"'},  # TOML-quoted, as a string
        {"MAM__server__health_listen": "localhost:7001"},  # keys are lowercased
    ],
)
def test_the_probe_finds_the_health_endpoint_where_the_gateway_listens(
    environ: dict[str, str],
) -> None:
    expected = load_config(DEMO_CONFIG, environ=environ).server.health_listen
    assert health_address(DEMO_CONFIG, environ) == expected != ""


def test_without_a_health_endpoint_the_probe_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MAM__SERVER__HEALTH_LISTEN", raising=False)
    with pytest.raises(ProbeSetupError, match=r"needs server\.health_listen"):
        health_address(DEMO_CONFIG, {})
    assert main(["--config", str(DEMO_CONFIG)]) == EXIT_NO_ENDPOINT
    assert main(["--config", str(tmp_path / "absent.toml")]) == EXIT_NO_ENDPOINT
    assert "cannot read" in capsys.readouterr().err
