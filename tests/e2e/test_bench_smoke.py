"""`python -m bench --smoke` runs every scenario and writes a complete JSON report.

Speed is bench/'s business: nothing here asserts a time, only that every scenario ran and
reported sane (non-negative, present) figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from numbers import Number
from pathlib import Path
from typing import Any

import pytest

from tests.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = (
    "floor",
    "allocation",
    "store",
    "e2e",
    "baseline",
    "remote",
    "sustained",
    "subscribers",
    "memory",
    "tracing",
    "metrics",
    "mirroring",
    "cluster",  # skipped without PostgreSQL: test_the_cluster_scenario_runs_on_postgresql
)

# Differences of two medians (tracing, metrics on minus off; mirroring's copy minus the direct
# order, CPU with more sources watched minus fewer): noise can make them negative.
SIGNED = (
    ".difference_ms",
    ".per_child_us",
    ".difference_p50_ms",
    ".idle_source_cpu_ms_per_s",
    ".cpu_ms_per_source_per_s",
    ".cpu_ms_per_look",
    ".worker_cpu_ms_per_source_per_s",
    # cluster: the takeover less the lease time; notification lags taken against the bench's
    # own wake-up by the same notification, which can come a little after the subscriber's.
    "_beyond_lease.median_ms",
    "_beyond_lease.p99_ms",
    "_beyond_lease.min_ms",
    "_beyond_lease.max_ms",
    "_subscriber.min_ms",
    "_node.min_ms",
)


def _numbers(value: Any, path: str = "") -> list[tuple[str, float]]:
    if isinstance(value, bool):
        return []
    if isinstance(value, Number):
        return [(path, float(value))]  # type: ignore[arg-type]
    if isinstance(value, dict):
        return [n for k, v in value.items() for n in _numbers(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [n for i, v in enumerate(value) for n in _numbers(v, f"{path}[{i}]")]
    return []


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    results = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--no-postgres", "--results", str(results)],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "MAM_BENCH_POSTGRES_URL"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "TARGETS" in done.stdout
    latest = json.loads((results / "latest.json").read_text())
    stamped = [p for p in results.glob("*.json") if p.name != "latest.json"]
    assert len(stamped) == 1
    assert json.loads(stamped[0].read_text()) == latest
    return latest


@pytest.mark.timeout(900)
def test_every_scenario_reports(report: dict[str, Any]) -> None:
    assert report["mode"] == "smoke"
    assert set(SCENARIOS) <= set(report["scenarios"])
    for name in SCENARIOS:
        assert report["scenarios"][name]["summary"], name


@pytest.mark.timeout(900)
def test_every_figure_is_a_non_negative_number(report: dict[str, Any]) -> None:
    figures = _numbers(report["scenarios"])
    assert figures
    negative = [(path, value) for path, value in figures if value < 0 and not path.endswith(SIGNED)]
    assert not negative


@pytest.mark.timeout(900)
def test_the_main_figures_are_measured(report: dict[str, Any]) -> None:
    s = report["scenarios"]
    assert s["floor"]["unary"]["median_ms"] > 0
    assert all(row["fills_per_s"] > 0 for row in s["floor"]["stream"].values())
    assert s["floor"]["commit"]["sqlite"]
    assert {row["method"] for row in s["allocation"]["rows"]} >= {"EQUITY", "EQUAL", "FIXED_LOTS"}
    for row in s["e2e"]["rows"]:
        assert row["submit_to_last_fill"]["median_ms"] > 0
        assert row["dispatch_skew"]["samples"] == row["orders"]
    assert {row["latency_ms"] for row in s["e2e"]["rows"]} == {0, 50}
    assert s["baseline"]["sequential_ms"] > 0
    assert s["remote"]["rows"]
    for row in s["remote"]["rows"]:
        assert row["workers"] >= 2
        assert row["submit_to_last_fill"]["median_ms"] > 0
        assert row["dispatch_skew"]["samples"] == row["orders"]
        assert row["all_fills_received"]
        assert row["fills_received"] == row["accounts"] * (row["orders"] + 1)
        assert row["gateway_cpu_ms_per_order"] >= 0
        assert row["workers_cpu_ms_per_order"] >= 0
    assert s["sustained"]["rows"]["sqlite"]["fills_per_s"] > 0
    assert s["sustained"]["rows"]["sqlite"]["gateway_memory"]["rss_mb"] > 0
    assert s["subscribers"]["replay"]["fills_per_s"] > 0
    assert s["subscribers"]["live_one"]["fills_per_s"] > 0
    assert s["subscribers"]["live_filtered"]["subscribers"] > 1
    assert s["memory"]["peak_rss_mb"] > 0
    assert s["mirroring"]["rows"]
    for row in s["mirroring"]["rows"]:
        assert row["mirrored"]["samples"] == row["direct"]["samples"] == row["deals"]
        assert row["mirrored"]["median_ms"] > 0 and row["direct"]["median_ms"] > 0
    assert all(w["looks_per_s"]["one_idle_source"] > 0 for w in s["mirroring"]["watching"])
    assert s["mirroring"]["observe"]["unchanged_us"] > 0
    assert report["ratios"] and all(r["ratio"] > 0 for r in report["ratios"])


@pytest.mark.timeout(900)
def test_every_target_is_reported_without_being_asserted(report: dict[str, Any]) -> None:
    statuses = {t["status"] for t in report["targets"]}
    assert statuses <= {"PASS", "MISS", "N/A"}
    assert len(report["targets"]) >= 6
    assert report["machine"]["nproc"] >= 1


@pytest.mark.timeout(900)
def test_the_cluster_scenario_runs_on_postgresql(postgres: PostgresServer, tmp_path: Path) -> None:
    """`python -m bench cluster --smoke` on an empty database of its own: every measure
    reported, each fill stored and streamed once through the kills. No time is asserted."""
    database = asyncio.run(postgres.create_database())
    results = tmp_path / "bench"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "cluster", "--smoke", "--results", str(results)],
        cwd=ROOT,
        env={**os.environ, "MAM_BENCH_POSTGRES_URL": postgres.url(database)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "CLUSTER (" in done.stdout
    cluster = json.loads((results / "latest.json").read_text())["scenarios"]["cluster"]
    assert {row["mode"] for row in cluster["throughput"]} == {"default", "cluster"}
    for row in cluster["throughput"]:
        assert row["durable_fills_per_s"] > 0 and row["incomplete_orders"] == 0
        assert row["streamed_every_fill"] and row["database_gap_free"]
        assert not row["registered_addresses_unknown"]
    takeover = cluster["takeover"]
    assert takeover["kills"] >= 1
    assert takeover["taken_over"] == takeover["resumed_complete"] == takeover["kills"]
    assert takeover["children_filled_twice"] == 0
    assert takeover["live_streams_gap_free"] and takeover["database_gap_free"]
    lag = cluster["lag"]
    assert lag["streams_gap_free"] and lag["notices_out_of_order"] == 0
    assert lag["notice_to_other_node_subscriber"]["samples"] > 0
    negative = [
        (path, value)
        for path, value in _numbers(cluster)
        if value < 0 and not path.endswith(SIGNED)
    ]
    assert not negative
