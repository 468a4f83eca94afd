"""Prometheus metrics on the gateway's own endpoint, read after real master orders over gRPC:
what a filled order counts, what refusals count, the gauges a scrape reads, and every metric
the shipped alert rules and dashboard use (deploy/observability/)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from gateway._proto.mam.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    trading_service_pb2,
)
from gateway.api.server import RunningGateway, start_gateway
from gateway.engine.metrics import NO_METRICS
from tests.conftest import Client, client_of
from tests.integration.helpers import demo_group_id, fill_order, market_order
from tests.scrape import Scrape, family_names, get, scrape, used_metric_names
from tests.support import make_config


@pytest.fixture
async def demo_gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    running = await start_gateway(make_config(tmp_path, demo=True))
    try:
        yield running
    finally:
        await running.stop(0.5)


@pytest.fixture
async def demo_client(demo_gateway: RunningGateway) -> AsyncIterator[Client]:
    async with client_of(demo_gateway) as connected:
        yield connected


async def until_scraped(port: int, done: object, timeout_s: float = 10.0) -> Scrape:
    """Scrapes until `done(scrape)` holds (the order's last commit may be a moment behind)."""
    assert callable(done)
    async with asyncio.timeout(timeout_s):
        while True:
            got = await scrape(port)
            if done(got):
                return got
            await asyncio.sleep(0.05)


async def test_a_filled_master_order_is_counted_on_the_metrics_endpoint(
    demo_gateway: RunningGateway, demo_client: Client
) -> None:
    gateway = demo_gateway
    assert gateway.metrics_port > 0
    group_id = await demo_group_id(demo_client)
    _, children = await fill_order(demo_client, group_id)
    assert children > 10

    got = await until_scraped(
        gateway.metrics_port,
        lambda s: s.value("mam_master_orders_total", state="filled", origin="api") == 1,
    )
    assert got.value("mam_fills_total") == children
    assert got.value("mam_child_orders_total", state="filled", retcode_class="success") == children
    assert got.total("mam_child_orders_total") == children
    assert got.value("mam_submit_to_ack_seconds_count", origin="api") == 1
    assert got.value("mam_submit_to_last_fill_seconds_count", origin="api") == 1
    assert 0 < got.value("mam_submit_to_last_fill_seconds_sum", origin="api") < 20
    assert got.value("mam_dispatch_skew_seconds_count") == 1
    sends = got.value("mam_terminal_request_duration_seconds_count", backend="sim", request="send")
    assert sends == children
    assert got.value("mam_group_commit_duration_seconds_count") >= 1
    assert got.value("mam_group_commit_outcomes_sum") == children
    # Every fill reached the subscriber live: at least one FillBatch's lag was observed.
    assert got.value("mam_fill_fanout_lag_seconds_count") >= 1
    attached = len(gateway.registry.attached())
    assert attached >= 20
    assert got.value("mam_terminals", backend="sim", state="connected") == attached
    assert got.value("mam_terminals", backend="sim", state="disconnected") == 0
    assert got.value("mam_store_reachable") == 1
    assert got.value("mam_writer_lock_held") == 1
    assert got.value("mam_master_orders_in_progress") == 0
    assert got.total("mam_requests_refused_total") == 0
    assert got.total("mam_child_order_retries_total") == 0
    # The subscription was cancelled above.
    assert got.value("mam_fill_subscribers") == 0
    # No label holds an id (of an order, child, account, group, fill or key).
    values = {v for f in got.families.values() for s in f.samples for v in s.labels.values()}
    assert not [v for v in values if re.match(r"^(acc|mo|ch|grp|fl|key|ks|so)_", v)]


async def test_open_streams_and_subscriber_buffers_are_read_at_scrape_time(
    demo_gateway: RunningGateway, demo_client: Client
) -> None:
    fills = demo_client.trading.SubscribeFills(
        trading_service_pb2.SubscribeFillsRequest(live_only=True)
    )
    try:
        await fills.read()
        got = await until_scraped(
            demo_gateway.metrics_port, lambda s: s.value("mam_fill_subscribers") == 1
        )
        assert got.value("mam_open_streams", method="SubscribeFills") == 1
        limit = demo_gateway.bus.max_pending
        assert got.value("mam_fill_subscriber_buffer_limit_fills") == limit
        assert got.value("mam_fill_subscriber_buffer_max_fills") == 0
    finally:
        fills.cancel()
    got = await until_scraped(
        demo_gateway.metrics_port,
        lambda s: s.value("mam_open_streams", method="SubscribeFills") == 0,
    )
    assert got.value("mam_fill_subscribers") == 0


async def test_refused_requests_are_counted_by_reason(
    demo_gateway: RunningGateway, demo_client: Client
) -> None:
    group_id = await demo_group_id(demo_client)
    with pytest.raises(grpc.aio.AioRpcError):
        await demo_client.trading.SubmitMasterOrder(market_order(group_id, "-1"))
    with pytest.raises(grpc.aio.AioRpcError):
        await demo_client.trading.SubmitMasterOrder(market_order("grp_nope"))
    admin = admin_service_pb2_grpc.AdminServiceStub(demo_client.channel)
    await admin.ActivateKillSwitch(
        admin_service_pb2.ActivateKillSwitchRequest(
            kill_switch=admin_service_pb2.KillSwitch(
                scope=admin_service_pb2.KILL_SWITCH_SCOPE_GLOBAL, reason="risk desk: test"
            )
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await demo_client.trading.SubmitMasterOrder(market_order(group_id))
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION

    got = await scrape(demo_gateway.metrics_port)
    assert got.value("mam_requests_refused_total", reason="validation") == 1
    assert got.value("mam_requests_refused_total", reason="not_found") == 1
    assert got.value("mam_requests_refused_total", reason="risk") == 1
    assert got.value("mam_kill_switches_active", scope="global") == 1
    assert got.value("mam_kill_switches_active", scope="group") == 0
    assert got.value("mam_stop_outs_active", kind="account") == 0


async def test_every_metric_the_alerts_and_the_dashboard_use_is_served(
    demo_gateway: RunningGateway, demo_client: Client
) -> None:
    """Read from the shipped files: a rule or panel naming a metric the gateway does not serve
    (renamed, misspelt) would never fire or draw. mam-worker's own are checked against a
    worker's endpoint in tests/e2e/test_prometheus.py."""
    await fill_order(demo_client, await demo_group_id(demo_client))
    got = await scrape(demo_gateway.metrics_port)
    served = family_names(got.text)
    used = used_metric_names()
    gateway_used = {name for name in used if not name.startswith("mam_worker_")}
    assert len(gateway_used) > 25
    assert sorted(gateway_used - served) == []
    # And each family is declared as Prometheus reads it (HELP and TYPE).
    for name in gateway_used:
        assert name in got.families, name


async def test_the_endpoint_answers_scrapers_only_on_metrics(demo_gateway: RunningGateway) -> None:
    base = f"http://127.0.0.1:{demo_gateway.metrics_port}"
    status, headers, body = await asyncio.to_thread(get, f"{base}/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b"# TYPE mam_fills_total counter" in body
    status, headers, body = await asyncio.to_thread(
        get, f"{base}/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
    status, headers, body = await asyncio.to_thread(
        get, f"{base}/metrics", {"Accept-Encoding": "gzip"}
    )
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    status, _, _ = await asyncio.to_thread(get, f"{base}/")
    assert status == 404


async def test_metrics_off_serve_nothing_and_count_nothing(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    config = dataclasses.replace(config, metrics=dataclasses.replace(config.metrics, enabled=False))
    running = await start_gateway(config)
    try:
        assert running.metrics_port == 0
        assert running.metrics is NO_METRICS
    finally:
        await running.stop(0.5)


async def test_a_taken_metrics_port_fails_the_start_naming_it(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = await start_gateway(make_config(tmp_path / "a"))
    try:
        config = make_config(tmp_path / "b")
        taken = f"127.0.0.1:{first.metrics_port}"
        config = dataclasses.replace(
            config, metrics=dataclasses.replace(config.metrics, listen=taken)
        )
        with pytest.raises(OSError, match=f"cannot listen on {taken}"):
            await start_gateway(config)
    finally:
        await first.stop(0.5)
