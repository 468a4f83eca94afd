"""Traces through a real gateway (and a real worker stream), caught by the SDK's in-memory
exporter: a span per call, a submission's snapshot, allocation, store commits and dispatch in
its call's trace, and a remote worker's terminal calls joining the trace of the order that
sent them. The gateway and the worker each have their own provider and exporter, as two
processes would: the worker's spans can only find their parents through the traceparent the
commands carry.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import gateway.observability.trace_context as traced
from gateway._proto.mam.v1 import (
    account_service_pb2_grpc,
    trading_service_pb2,
    trading_service_pb2_grpc,
)
from gateway.api.server import RunningGateway, start_gateway
from gateway.config import TracingConfig, WorkersConfig, WorkerToken
from gateway.observability.tracing import Tracing
from gateway.worker.client import TerminalWorker
from gateway.worker.config import WorkerConfig
from tests.integration.helpers import create_accounts, create_group, market_order
from tests.integration.test_worker_service import TOKEN, Broker, _accounts
from tests.support import make_config

SUBMIT = "/mam.v1.TradingService/SubmitMasterOrder"
# A caller's own trace: W3C traceparent of a sampled span.
CALLER_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"


def _tracing(exporter: InMemorySpanExporter, service: str = "mam-gateway") -> Tracing:
    return Tracing.from_config(TracingConfig(), service=service, exporter=exporter)


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def gateway(tmp_path: Path, spans: InMemorySpanExporter) -> AsyncIterator[RunningGateway]:
    config = dataclasses.replace(
        make_config(tmp_path),
        workers=WorkersConfig(enabled=True, tokens=(WorkerToken(TOKEN),)),
    )
    running = await start_gateway(config, tracing=_tracing(spans))
    try:
        yield running
    finally:
        await running.stop(0.5)


def _named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = _named(spans, name)
    assert len(found) == 1, f"{name}: {len(found)} spans among {sorted({s.name for s in spans})}"
    return found[0]


def _parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def _trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


async def _submit(
    channel: grpc.aio.Channel, group_id: str, volume: str, gateway: RunningGateway
) -> str:
    """Submits with the caller's traceparent and waits until the order's dispatch is over."""
    trading = trading_service_pb2_grpc.TradingServiceStub(channel)
    traceparent = f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01"
    submitted = await trading.SubmitMasterOrder(
        market_order(group_id, volume), metadata=(("traceparent", traceparent),)
    )
    await gateway.engine.wait_idle()
    return submitted.master_order.master_order_id


async def test_a_submission_is_one_trace_of_its_call_allocation_commits_and_dispatch(
    gateway: RunningGateway, spans: InMemorySpanExporter
) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        accounts = account_service_pb2_grpc.AccountServiceStub(channel)
        group = await create_group(accounts, await create_accounts(accounts, ["1000"] * 5))
        spans.clear()
        master_order_id = await _submit(channel, group.group_id, "0.50", gateway)
    finished = list(spans.get_finished_spans())

    call = _one(finished, SUBMIT)
    assert call.kind is SpanKind.SERVER
    # The caller's traceparent is the call's parent: its trace goes on here.
    assert f"{_trace_id(call):032x}" == CALLER_TRACE_ID
    assert call.parent is not None and f"{call.parent.span_id:016x}" == CALLER_SPAN_ID
    assert call.attributes is not None
    assert call.attributes[traced.MASTER_ORDER_ID] == master_order_id
    assert call.attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]

    snapshot = _one(finished, traced.SNAPSHOT_SPAN)
    allocate = _one(finished, traced.ALLOCATE_SPAN)
    insert = _one(finished, traced.INSERT_SPAN)
    dispatch = _one(finished, traced.DISPATCH_SPAN)
    for phase in (snapshot, allocate, insert, dispatch):
        assert _trace_id(phase) == _trace_id(call), phase.name
        assert _parent_id(phase) == _span_id(call), phase.name
    assert snapshot.attributes is not None and allocate.attributes is not None
    assert (snapshot.attributes[traced.ACCOUNTS], snapshot.attributes[traced.ACCOUNTS_UNREAD]) == (
        5,
        0,
    )
    assert allocate.attributes[traced.CHILDREN] == 5
    assert allocate.attributes[traced.GROUP_ID] == group.group_id
    assert insert.attributes is not None and dispatch.attributes is not None
    assert insert.attributes[traced.MASTER_ORDER_ID] == master_order_id
    assert dispatch.attributes[traced.MASTER_ORDER_ID] == master_order_id
    assert dispatch.attributes[traced.CHILDREN] == 5
    assert dispatch.attributes[traced.RESUMED] is False
    # In order: read, allocated, stored, then dispatched (the dispatch outlives the call).
    assert snapshot.end_time is not None and allocate.end_time is not None
    assert insert.end_time is not None and call.end_time is not None
    assert snapshot.end_time <= allocate.start_time  # type: ignore[operator]
    assert allocate.end_time <= insert.start_time  # type: ignore[operator]
    assert insert.end_time <= dispatch.start_time  # type: ignore[operator]

    # The children's outcomes were committed in spans of the dispatch: every one stored.
    commits = [c for c in _named(finished, traced.COMMIT_SPAN) if _trace_id(c) == _trace_id(call)]
    assert commits
    assert all(_parent_id(c) == _span_id(dispatch) for c in commits)
    assert sum(c.attributes[traced.OUTCOMES] for c in commits if c.attributes) == 5
    assert sum(c.attributes[traced.FILLS] for c in commits if c.attributes) == 5


async def test_a_refused_call_has_its_status_on_its_span(
    gateway: RunningGateway, spans: InMemorySpanExporter
) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        trading = trading_service_pb2_grpc.TradingServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await trading.SubmitMasterOrder(market_order("no-such-group"))
    assert refused.value.code() is grpc.StatusCode.NOT_FOUND
    call = _one(list(spans.get_finished_spans()), SUBMIT)
    assert call.attributes is not None
    assert call.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    # A caller's mistake, not the server's fault (OpenTelemetry's gRPC conventions).
    assert call.status.status_code is StatusCode.UNSET
    assert not _named(list(spans.get_finished_spans()), traced.INSERT_SPAN)


async def test_health_probes_make_no_spans(
    gateway: RunningGateway, spans: InMemorySpanExporter
) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415

    async with grpc.aio.insecure_channel(gateway.address) as channel:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        await trading_service_pb2_grpc.TradingServiceStub(channel).ListMasterOrders(
            trading_service_pb2.ListMasterOrdersRequest()
        )
    names = {span.name for span in spans.get_finished_spans()}
    assert names == {"/mam.v1.TradingService/ListMasterOrders"}


class _TracedWorker:
    """A worker in this process with a tracer (and exporter) of its own, as its own process."""

    def __init__(self, gateway: RunningGateway, broker: Broker, tracing: Tracing) -> None:
        config = WorkerConfig(
            worker_id="win-traced",
            gateway=gateway.address,
            token=TOKEN,
            terminals=broker.entries,
            reconnect_min_seconds=0.05,
            reconnect_max_seconds=0.2,
        )
        self.connected = asyncio.Event()
        self.worker = TerminalWorker(
            config, broker.terminals, on_connected=self.connected.set, tracer=tracing.tracer
        )
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _TracedWorker:
        self.task = asyncio.create_task(self.worker.run())
        async with asyncio.timeout(10):
            await self.connected.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.worker.close(grace_s=0)


async def test_a_remote_workers_terminal_calls_join_their_master_orders_trace(
    gateway: RunningGateway, spans: InMemorySpanExporter
) -> None:
    logins = [93_001, 93_002, 93_003]
    broker = Broker(logins)
    worker_spans = InMemorySpanExporter()
    worker_tracing = _tracing(worker_spans, service="mam-worker")
    async with (
        _TracedWorker(gateway, broker, worker_tracing),
        grpc.aio.insecure_channel(gateway.address) as channel,
    ):
        accounts = account_service_pb2_grpc.AccountServiceStub(channel)
        group = await create_group(accounts, await _accounts(channel, logins))
        spans.clear()
        worker_spans.clear()
        master_order_id = await _submit(channel, group.group_id, "0.30", gateway)
    await worker_tracing.shutdown()
    finished = list(spans.get_finished_spans())
    dispatch = _one(finished, traced.DISPATCH_SPAN)
    snapshot = _one(finished, traced.SNAPSHOT_SPAN)
    assert dispatch.attributes is not None
    assert dispatch.attributes[traced.MASTER_ORDER_ID] == master_order_id

    commands = _named(list(worker_spans.get_finished_spans()), traced.WORKER_COMMAND_SPAN)
    sends = [c for c in commands if c.attributes and c.attributes[traced.COMMAND] == "send"]
    # One send per child, each in the order's trace, its parent the gateway's dispatch span,
    # reached across the stream (a remote parent).
    assert len(sends) == 3
    for send in sends:
        assert _trace_id(send) == _trace_id(dispatch)
        assert send.parent is not None and send.parent.is_remote
        assert send.parent.span_id == _span_id(dispatch)
        assert send.kind is SpanKind.CONSUMER
        assert send.attributes is not None
        assert send.attributes[traced.RETCODE] == 10009  # TRADE_RETCODE_DONE
        assert send.attributes[traced.WORKER_ID] == "win-traced"
        assert send.attributes[traced.LOGIN] in logins
        assert str(send.attributes[traced.TAG])
        assert send.resource.attributes["service.name"] == "mam-worker"
    # The submission's snapshot read each account through the worker, in the snapshot's span.
    reads = [c for c in commands if c.attributes and c.attributes[traced.COMMAND] == "account_info"]
    assert len(reads) == 3
    assert all(_parent_id(read) == _span_id(snapshot) for read in reads)
    assert {s.resource.attributes["service.name"] for s in finished} == {"mam-gateway"}


async def test_without_tracing_commands_carry_no_trace_and_workers_make_no_spans(
    tmp_path: Path,
) -> None:
    config = dataclasses.replace(
        make_config(tmp_path),
        workers=WorkersConfig(enabled=True, tokens=(WorkerToken(TOKEN),)),
    )
    gateway = await start_gateway(config)
    try:
        assert not gateway.tracing.enabled
        logins = [94_001, 94_002]
        broker = Broker(logins)
        worker_spans = InMemorySpanExporter()
        async with (
            _TracedWorker(gateway, broker, _tracing(worker_spans, service="mam-worker")),
            grpc.aio.insecure_channel(gateway.address) as channel,
        ):
            accounts = account_service_pb2_grpc.AccountServiceStub(channel)
            group = await create_group(accounts, await _accounts(channel, logins))
            await _submit(channel, group.group_id, "0.20", gateway)
        assert worker_spans.get_finished_spans() == ()
    finally:
        await gateway.stop(0.5)
