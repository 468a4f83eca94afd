"""The metrics' own rules: [metrics] configured like the other listeners, label values from
small fixed sets, a loop histogram exposed as prometheus_client's own, the fill bus's lag
bookkeeping one entry a publish, metrics off recording nothing, the endpoint's HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.api import gateway_gauges
from gateway.config import ConfigError, load_config
from gateway.domain import retcodes
from gateway.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from gateway.domain.fills import Fill
from gateway.domain.orders import Side
from gateway.engine.fill_bus import FillBus
from gateway.engine.metrics import (
    NO_METRICS,
    GatewayMetrics,
    GaugeReadings,
    LoopHistogram,
    origin_of,
    refusal_reason,
    retcode_class_of,
)
from gateway.observability.metrics_endpoint import MetricsEndpoint
from gateway.store import FillFilter
from gateway.store.store import CommittedFill
from gateway.terminals.protocol import TerminalError, TerminalHealth
from gateway.terminals.remote import WorkerHub
from gateway.worker.config import WorkerConfigError, parse_worker_config
from gateway.worker.metrics import WorkerMetrics
from tests.support import DEMO_CONFIG, ROOT

ALERTS = ROOT / "deploy" / "observability" / "alerts.yml"

# -- configuration -------------------------------------------------------------------------


def test_the_demo_serves_metrics_on_loopback_9464() -> None:
    metrics = load_config(DEMO_CONFIG, environ={}).metrics
    assert (metrics.enabled, metrics.listen, metrics.plaintext_off_loopback) == (
        True,
        "127.0.0.1:9464",
        False,
    )


def test_metrics_off_loopback_are_refused_unless_acknowledged() -> None:
    with pytest.raises(ConfigError, match=r"metrics\.listen: 0\.0\.0\.0 is not a loopback address"):
        load_config(DEMO_CONFIG, environ={"MAM__METRICS__LISTEN": "0.0.0.0:9464"})
    config = load_config(
        DEMO_CONFIG,
        environ={
            "MAM__METRICS__LISTEN": "0.0.0.0:9464",
            "MAM__METRICS__PLAINTEXT_OFF_LOOPBACK": "true",
        },
    )
    assert config.metrics.listen == "0.0.0.0:9464"
    # Off, the address is not used, so not checked either.
    off = {"MAM__METRICS__LISTEN": "0.0.0.0:9464", "MAM__METRICS__ENABLED": "false"}
    assert not load_config(DEMO_CONFIG, environ=off).metrics.enabled


def test_a_bad_metrics_address_names_its_key() -> None:
    with pytest.raises(ConfigError, match=r"metrics\.listen: expected HOST:PORT"):
        load_config(DEMO_CONFIG, environ={"MAM__METRICS__LISTEN": "nonsense"})


WORKER = {
    "worker_id": "w1",
    "gateway": "127.0.0.1:50051",
    "terminals": [{"login": 1, "server": "s", "backend": "sim"}],
}


def test_a_workers_metrics_are_off_by_default_and_refused_off_loopback() -> None:
    environ = {"MAM_WORKER_TOKEN": "s3cret-worker-token-0123456789"}
    assert not parse_worker_config(WORKER, environ).metrics.enabled
    on = {**WORKER, "metrics": {"enabled": True, "listen": "0.0.0.0:9465"}}
    with pytest.raises(WorkerConfigError, match=r"metrics\.listen: 0\.0\.0\.0 is not a loopback"):
        parse_worker_config(on, environ)
    metrics = {"enabled": True, "listen": "0.0.0.0:9465", "plaintext_off_loopback": True}
    acknowledged = {**WORKER, "metrics": metrics}
    assert parse_worker_config(acknowledged, environ).metrics.listen == "0.0.0.0:9465"


# -- label values --------------------------------------------------------------------------


def test_refusals_are_labelled_by_a_small_set_of_reasons() -> None:
    assert refusal_reason(InvalidArgument([], reason="INVALID_VOLUME")) == "validation"
    assert refusal_reason(FailedPrecondition("x", reason="KILL_SWITCH_ACTIVE")) == "risk"
    assert refusal_reason(FailedPrecondition("x", reason="STOPPED_OUT")) == "risk"
    assert refusal_reason(FailedPrecondition("x", reason="NOTHING_ALLOCATED")) == "precondition"
    assert refusal_reason(ResourceExhausted("x", reason="RATE_LIMITED")) == "rate_limit"
    assert refusal_reason(PermissionDenied("x")) == "auth"
    assert refusal_reason(Unavailable("x", reason="STORE_UNAVAILABLE")) == "unavailable"
    assert refusal_reason(NotFound("x")) == "not_found"
    assert refusal_reason(RuntimeError("a bug")) == "internal"


def test_a_childs_retcode_class_is_none_without_an_answer() -> None:
    assert retcode_class_of(0) == "none"
    assert retcode_class_of(retcodes.DONE) == "success"
    assert retcode_class_of(retcodes.REQUOTE) == "transient"
    assert retcode_class_of(retcodes.NO_MONEY) == "permanent"
    assert retcode_class_of(retcodes.TIMEOUT) == "ambiguous"


def test_an_orders_origin_comes_from_who_submitted_it() -> None:
    @dataclasses.dataclass
    class Spec:
        closes_master_order_id: str = ""

    @dataclasses.dataclass
    class Master:
        submitted_by: str
        spec: Spec

    def origin(submitted_by: str, closes: str = "") -> str:
        return origin_of(Master(submitted_by, Spec(closes)))  # type: ignore[arg-type]

    assert origin("key_1") == "api"
    assert origin("key_1", closes="mo_1") == "close"
    assert origin("kill-switch", closes="mo_1") == "flatten"
    assert origin("stop-out", closes="mo_1") == "flatten"
    assert origin("source:grp_1") == "source_copy"
    assert origin("source:grp_1", closes="mo_1") == "source_copy"


# -- the loop histogram --------------------------------------------------------------------


def test_a_loop_histogram_exposes_what_prometheus_clients_histogram_does() -> None:
    buckets = (0.001, 0.01, 0.1, 1.0)
    values = [0.0005, 0.001, 0.002, 0.05, 0.05, 0.5, 3.0]
    ours = CollectorRegistry()
    loop = LoopHistogram("t_seconds", "doc", ("backend",), buckets)
    ours.register(loop)
    theirs = CollectorRegistry()
    reference = Histogram("t_seconds", "doc", ["backend"], buckets=buckets, registry=theirs)
    for value in values:
        loop.observe(("sim",), value)
        reference.labels("sim").observe(value)

    def samples(registry: CollectorRegistry) -> list[tuple[str, list[tuple[str, str]], float]]:
        text = generate_latest(registry).decode()
        return sorted(
            (s.name, sorted(s.labels.items()), round(s.value, 9))
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if not s.name.endswith("_created")
        )

    assert samples(ours) == samples(theirs)


# -- recording -----------------------------------------------------------------------------


def test_metrics_off_record_nothing_and_read_no_state() -> None:
    read: list[int] = []

    def reading() -> GaugeReadings:
        read.append(1)
        return GaugeReadings()

    NO_METRICS.read_state_with(reading)
    NO_METRICS.terminal_request("sim", "send", 0.1)
    NO_METRICS.retried("transient")
    text = generate_latest(NO_METRICS.registry).decode()
    assert "mam_terminal_request_duration_seconds_count" not in text
    assert 'mam_child_order_retries_total{reason="transient"} 0.0' in text
    assert not read
    assert not NO_METRICS.enabled and GatewayMetrics.enabled


def test_open_streams_are_counted_by_method() -> None:
    metrics = GatewayMetrics()
    metrics.read_state_with(GaugeReadings)
    metrics.stream_opened("SubscribeFills")
    metrics.stream_opened("SubscribeFills")
    metrics.stream_opened("Connect")
    metrics.stream_closed("SubscribeFills")
    text = generate_latest(metrics.registry).decode()
    assert 'mam_open_streams{method="SubscribeFills"} 1.0' in text
    assert 'mam_open_streams{method="Connect"} 1.0' in text


def committed(sequence: int) -> CommittedFill:
    return CommittedFill(
        Fill(
            sequence, f"fl_{sequence}", "mo_1", f"ch_{sequence}", "acc_1", "EURUSD",
            Side.BUY, Decimal("0.01"), Decimal("1.1"), None, None, 1, 1, 1, datetime.now(UTC),
        ),
        b"",
    )  # fmt: skip


async def test_a_subscribers_batch_knows_when_its_oldest_fill_was_published() -> None:
    bus = FillBus()
    subscription = bus.subscribe(FillFilter())
    bus.publish([committed(1), committed(2)])
    first_published = subscription.oldest_published_at
    await asyncio.sleep(0.01)
    bus.publish([committed(3)])
    assert bus.buffer_depths() == [3]
    assert [f.fill.sequence for f in await subscription.next_batch(1)] == [1]
    assert subscription.oldest_published_at > first_published
    published_first = subscription.oldest_published_at
    # The rest of the first publish, then the second: the batch's oldest is still the first's.
    assert [f.fill.sequence for f in await subscription.next_batch(10)] == [2, 3]
    assert subscription.oldest_published_at == published_first
    bus.publish([committed(4)])
    await subscription.next_batch(10)
    assert subscription.oldest_published_at > published_first
    assert bus.buffer_depths() == [0]


# -- the endpoint --------------------------------------------------------------------------


async def request(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


async def test_the_endpoint_serves_get_and_head_on_metrics_only() -> None:
    metrics = GatewayMetrics()
    metrics.read_state_with(GaugeReadings)
    refreshed: list[int] = []

    async def refresh() -> None:
        refreshed.append(1)

    endpoint = await MetricsEndpoint.start("127.0.0.1:0", metrics.registry, refresh=refresh)
    try:
        assert endpoint.port > 0 and endpoint.url.endswith(f":{endpoint.port}/metrics")
        got = await request(endpoint.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and b"mam_store_reachable 1.0" in body
        assert f"Content-Length: {len(body)}".encode() in head
        assert refreshed == [1]
        got = await request(endpoint.port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and body == b""
        got = await request(endpoint.port, b"POST /metrics HTTP/1.1\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 405")
        got = await request(endpoint.port, b"GET /admin HTTP/1.1\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 404")
        got = await request(endpoint.port, b"nonsense\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 400")
        assert refreshed == [1, 1]
    finally:
        await endpoint.close()


async def test_a_scrape_answers_even_when_reading_state_fails() -> None:
    metrics = GatewayMetrics()

    async def broken() -> None:
        raise RuntimeError("a terminal's health failed oddly")

    endpoint = await MetricsEndpoint.start("127.0.0.1:0", metrics.registry, refresh=broken)
    try:
        got = await request(endpoint.port, b"GET /metrics HTTP/1.1\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 200 OK")
    finally:
        await endpoint.close()


# -- the documentation ---------------------------------------------------------------------

OPERATIONS = ROOT / "docs" / "operations.md"


def _served_families() -> dict[str, str]:
    """Each metric family of a gateway and of a worker, by the name its samples carry."""
    metrics = GatewayMetrics()
    metrics.read_state_with(GaugeReadings)
    families: dict[str, str] = {}
    for registry in (metrics.registry, WorkerMetrics().registry):
        for family in text_string_to_metric_families(generate_latest(registry).decode()):
            suffix = "_total" if family.type == "counter" else ""
            families[family.name + suffix] = family.type
    return families


def test_the_operations_guide_lists_every_metric() -> None:
    text = OPERATIONS.read_text()
    families = _served_families()
    assert len(families) > 30
    assert sorted(name for name in families if f"| `{name}` |" not in text) == []


def test_the_operations_guide_says_what_to_do_for_every_alert() -> None:
    text = OPERATIONS.read_text()
    headings = {
        re.sub(r"[^a-z0-9-]", "", line.removeprefix("### ").strip().lower().replace(" ", "-"))
        for line in text.splitlines()
        if line.startswith("### ")
    }
    alerts = ALERTS.read_text()
    names = re.findall(r"- alert: (\w+)", alerts)
    assert len(names) == len(set(names)) > 10
    assert sorted(name for name in names if f"| {name} |" not in text) == []
    runbooks = re.findall(r'runbook: "docs/operations\.md#([a-z0-9-]+)"', alerts)
    assert len(runbooks) == len(names)
    assert sorted(set(runbooks) - headings) == []


# -- terminals counted at scrape time --------------------------------------------------------


class _Terminal:
    """A terminal whose health answers as told: up, down, failing, or not in time."""

    def __init__(self, account_id: str, answer: str) -> None:
        self.account_id = account_id
        self.answer = answer

    async def health(self) -> TerminalHealth:
        if self.answer == "slow":
            await asyncio.sleep(10)
        if self.answer == "fails":
            raise TerminalError("gone")
        return TerminalHealth(connected=self.answer == "up")


class _Registry:
    def __init__(self, terminals: list[_Terminal]) -> None:
        self.terminals = terminals

    def attached(self) -> list[_Terminal]:
        return self.terminals


async def test_terminals_are_counted_by_backend_and_a_busy_one_keeps_its_last_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gateway_gauges, "HEALTH_TIMEOUT_S", 0.05)
    busy = _Terminal("acc_3", "up")
    registry = _Registry([_Terminal("acc_1", "up"), _Terminal("acc_2", "down"), busy])
    registry.terminals.append(_Terminal("acc_4", "fails"))
    census = gateway_gauges.TerminalCensus(registry, WorkerHub())  # type: ignore[arg-type]
    await census.refresh()
    assert census.counts == {("_terminal", True): 2, ("_terminal", False): 2}
    busy.answer = "slow"  # a trade holds it: no answer in time, still seen connected
    await census.refresh()
    assert census.counts == {("_terminal", True): 2, ("_terminal", False): 2}
    # One never seen before that does not answer counts as disconnected.
    registry.terminals.append(_Terminal("acc_5", "slow"))
    await census.refresh()
    assert census.counts == {("_terminal", True): 2, ("_terminal", False): 3}
