"""A real Prometheus server (Debian's `prometheus`) scrapes a gateway and a mam-worker while a
master order fills, evaluates the shipped alert rules, and answers for the fills counter, the
latency histograms and every expression of the shipped dashboard; promtool accepts the shipped
rules and configuration.

The binaries come from `make prometheus-binaries` (apt-get, as root), which `make pytest` runs
first. Missing, the tests fail, unless MAM_TEST_SKIP_PROMETHEUS=1 (a developer's own run; CI
refuses it, .ci/run).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from gateway.api.server import RunningGateway, start_gateway
from gateway.config import WorkersConfig, WorkerToken
from tests.conftest import Client, client_of
from tests.integration.helpers import demo_group_id, fill_order
from tests.scrape import (
    ALERTS,
    PROMETHEUS_CONFIG,
    alert_expressions,
    as_query,
    dashboard_expressions,
    family_names,
    get,
    scrape,
    used_metric_names,
)
from tests.support import DEMO_CONFIG, ROOT, make_config

SKIP_VARIABLE = "MAM_TEST_SKIP_PROMETHEUS"
TOKEN = "prometheus-test-worker-token-0123"
WORKER_LOGIN = 73_001


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is not None:
        return found
    if os.environ.get(SKIP_VARIABLE, "") == "1":
        pytest.skip(f"{SKIP_VARIABLE}=1 and no {name}: Prometheus tests skipped")
    pytest.fail(
        f"no {name} on PATH: `make prometheus-binaries` (apt-get install prometheus, as root), "
        f"or set {SKIP_VARIABLE}=1 to skip the Prometheus tests",
        pytrace=False,
    )


@pytest.fixture(scope="module")
def promtool() -> str:
    return _binary("promtool")


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    return _binary("prometheus")


def test_promtool_accepts_the_shipped_rules(promtool: str) -> None:
    done = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_expressions())} rules found" in done.stdout


def test_the_alerts_fire_as_their_unit_tests_say(promtool: str) -> None:
    """deploy/observability/alerts_test.yml: series fed in, which alerts fire when, with which
    labels and text."""
    done = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        cwd=ALERTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_accepts_the_shipped_configuration(promtool: str, tmp_path: Path) -> None:
    """The file as compose mounts it: alerts.yml beside prometheus.yml (rule_files is relative
    to the configuration's directory)."""
    shutil.copy(PROMETHEUS_CONFIG, tmp_path / "prometheus.yml")
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    done = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _scrape_config(gateway_port: int, worker_port: int) -> str:
    """The shipped configuration, scraping this test's gateway and worker every second."""
    text = PROMETHEUS_CONFIG.read_text()
    text = re.sub(r"scrape_interval: \S+", "scrape_interval: 1s", text)
    text = re.sub(r"scrape_timeout: \S+", "scrape_timeout: 1s", text)
    text = re.sub(r"evaluation_interval: \S+", "evaluation_interval: 1s", text)
    text = text.replace("  - alerts.yml", f"  - {ALERTS}")
    text = text.replace('["gateway:9464"]', f'["127.0.0.1:{gateway_port}"]')
    text = text.replace("targets: []", f'targets: ["127.0.0.1:{worker_port}"]')
    assert str(gateway_port) in text and str(worker_port) in text and str(ALERTS) in text
    return text


@dataclass
class Prometheus:
    url: str

    async def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        status, _, body = await asyncio.to_thread(get, f"{self.url}/api/v1/{path}?{query}")
        answer = json.loads(body)
        assert status == 200 and answer["status"] == "success", (path, params, answer)
        return answer["data"]

    async def query(self, expression: str) -> list[dict[str, Any]]:
        data = await self.api("query", query=expression)
        result: list[dict[str, Any]] = data["result"]
        return result

    async def value(self, expression: str) -> float | None:
        """The value of an expression of one series (None: no series)."""
        result = await self.query(expression)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    async def until(self, expression: str, wanted: float, timeout_s: float = 30.0) -> None:
        async with asyncio.timeout(timeout_s):
            while True:
                if await self.value(expression) == wanted:
                    return
                await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def prometheus_server(
    binary: str, directory: Path, config: str, timeout_s: float = 60.0
) -> AsyncIterator[Prometheus]:
    (directory / "prometheus.yml").write_text(config)
    port = _free_port()
    log = directory / "prometheus.log"
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
            stdout=output,
            stderr=output,
        )
    server = Prometheus(f"http://127.0.0.1:{port}")
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                if process.returncode is not None:
                    raise RuntimeError(f"prometheus exited:\n{log.read_text()[-3000:]}")
                with contextlib.suppress(OSError):
                    status, _, _ = await asyncio.to_thread(get, f"{server.url}/-/ready")
                    if status == 200:
                        break
                await asyncio.sleep(0.2)
        yield server
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(15):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


@contextlib.contextmanager
def worker_process(directory: Path, gateway: str) -> Iterator[subprocess.Popen[str]]:
    """`mam-worker` hosting one simulated terminal, its metrics on a free port."""
    sim = directory / "sim.toml"
    text = DEMO_CONFIG.read_text()
    sim.write_text(text[: text.index("[demo]")])
    config = directory / "worker.toml"
    config.write_text(
        f'worker_id = "w-prometheus"\ngateway = "{gateway}"\n'
        "reconnect_min_seconds = 0.1\nreconnect_max_seconds = 0.5\n\n"
        '[metrics]\nenabled = true\nlisten = "127.0.0.1:0"\n\n'
        f'[backends.sim]\nconfig = "{sim}"\n\n'
        f'[[terminals]]\nlogin = {WORKER_LOGIN}\nserver = "Broker-P"\nplatform = "MT5"\n'
        'backend = "sim"\nbalance = "10000"\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.worker", "--config", str(config)],
        cwd=ROOT,
        env={**os.environ, "MAM_WORKER_TOKEN": TOKEN},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def read_line(process: subprocess.Popen[str], starting: str) -> str:
    assert process.stdout is not None
    stdout = process.stdout
    async with asyncio.timeout(30):
        while True:
            line = await asyncio.to_thread(stdout.readline)
            if not line:
                raise RuntimeError(f"mam-worker exited: {process.wait()}")
            if line.startswith(starting):
                return line.strip()


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    config = make_config(tmp_path, demo=True)
    config = replace(config, workers=WorkersConfig(enabled=True, tokens=(WorkerToken(TOKEN),)))
    running = await start_gateway(config)
    try:
        yield running
    finally:
        await running.stop(0.5)


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[Client]:
    async with client_of(gateway) as connected:
        yield connected


@pytest.mark.timeout(180)
async def test_prometheus_scrapes_a_filled_order_and_answers_for_fills_and_latency(
    prometheus_binary: str, gateway: RunningGateway, client: Client, tmp_path: Path
) -> None:
    with worker_process(tmp_path, gateway.address) as worker:
        worker_url = (await read_line(worker, "mam-worker metrics on ")).rsplit(" ", 1)[-1]
        worker_port = int(worker_url.rsplit(":", 1)[1].split("/", 1)[0])
        await read_line(worker, "mam-worker w-prometheus connected to")
        config = _scrape_config(gateway.metrics_port, worker_port)
        async with prometheus_server(prometheus_binary, tmp_path, config) as prometheus:
            # Both targets up before the order: its samples are scraped from the first on.
            await prometheus.until('sum(up{job=~"mam-gateway|mam-worker"})', 2)
            _, children = await fill_order(client, await demo_group_id(client))

            await prometheus.until('mam_fills_total{job="mam-gateway"}', children)
            filled = 'mam_master_orders_total{state="filled",origin="api"}'
            await prometheus.until(filled, 1)
            await prometheus.until("sum(mam_submit_to_last_fill_seconds_count)", 1)
            p50 = await prometheus.value(
                "histogram_quantile(0.5, sum by (le) (mam_submit_to_last_fill_seconds_bucket))"
            )
            assert p50 is not None and 0 < p50 < 60 and math.isfinite(p50)
            sends = 'sum(mam_terminal_request_duration_seconds_count{backend="sim",request="send"})'
            assert await prometheus.value(sends) == children
            skew = "histogram_quantile(0.99, sum by (le) (mam_dispatch_skew_seconds_bucket))"
            skew_p99 = await prometheus.value(skew)
            assert skew_p99 is not None and 0 <= skew_p99 <= 2.5
            await prometheus.until('mam_worker_connected{job="mam-worker"}', 1)

            # Every expression of the dashboard runs (a parse error or a bad function would
            # fail the query); the panels of the order have something to draw.
            for expression in dashboard_expressions():
                if expression.startswith("label_values("):
                    continue
                await prometheus.query(as_query(expression))
            panels = "sum by (state, origin) (mam_master_orders_total)"
            assert any(r["metric"] == {"state": "filled", "origin": "api"} for r in (
                await prometheus.query(panels)
            ))  # fmt: skip

            # Every rule evaluates without error; with a healthy gateway and worker, none fires.
            async with asyncio.timeout(30):
                while True:
                    groups = (await prometheus.api("rules"))["groups"]
                    rules = [r for g in groups for r in g["rules"]]
                    if rules and all(r.get("health") == "ok" for r in rules):
                        break
                    await asyncio.sleep(0.5)
            assert {r["name"] for r in rules} == set(alert_expressions())
            firing = [r["name"] for r in rules if r["state"] == "firing"]
            assert firing == []

        # And the worker serves every mam_worker_ metric the rules and the dashboard use.
        got = await scrape(worker_port)
        worker_used = {name for name in used_metric_names() if name.startswith("mam_worker_")}
        assert worker_used and sorted(worker_used - family_names(got.text)) == []
        assert got.value("mam_worker_terminals", backend="sim") == 1
        assert got.value("mam_worker_connected") == 1
