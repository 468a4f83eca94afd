"""JSON logs and OTLP traces of a real gateway process, configured as an operator would
(MAM__LOG_FORMAT=json, MAM__TRACING__...), with API keys required.

A master order over the 20 demo accounts: each log line is one JSON object; the lines about
the order carry its master order id, the caller's key id and the trace id, the children's also
their child order and account ids; the spans reach an OTLP collector over gRPC, the order's in
the trace its log lines name.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc

from gateway._proto.mam.v1 import (
    account_service_pb2,
    account_service_pb2_grpc,
    order_pb2,
    trading_service_pb2,
    trading_service_pb2_grpc,
)
from gateway.domain.access import parse_key
from tests.e2e.gateway_process import GatewayProcess, write_config
from tests.integration.helpers import market_order
from tests.otlp_collector import otlp_collector

SUBMIT = "/mam.v1.TradingService/SubmitMasterOrder"
BASE_FIELDS = {"time", "level", "logger", "message"}


async def _submit_and_wait(address: str, key: str) -> tuple[str, int]:
    """Submits 1.00 lot over the demo group and waits until it is FILLED: its id and children."""
    metadata = (("authorization", f"Bearer {key}"),)
    async with grpc.aio.insecure_channel(address) as channel:
        accounts = account_service_pb2_grpc.AccountServiceStub(channel)
        trading = trading_service_pb2_grpc.TradingServiceStub(channel)
        groups = await accounts.ListGroups(
            account_service_pb2.ListGroupsRequest(), metadata=metadata
        )
        (group,) = [g for g in groups.groups if g.name == "demo"]
        submitted = await trading.SubmitMasterOrder(
            market_order(group.group_id, "1.00"), metadata=metadata
        )
        master_order_id = submitted.master_order.master_order_id
        async with asyncio.timeout(30):
            while True:
                got = await trading.GetMasterOrder(
                    trading_service_pb2.GetMasterOrderRequest(master_order_id=master_order_id),
                    metadata=metadata,
                )
                if got.master_order.state == order_pb2.MASTER_ORDER_STATE_FILLED:
                    return master_order_id, submitted.master_order.child_count
                await asyncio.sleep(0.05)


async def test_json_logs_and_otlp_traces_of_a_master_order(tmp_path: Path) -> None:
    async with otlp_collector() as collector:
        gateway = GatewayProcess(
            write_config(tmp_path, demo=True),
            tmp_path / "gateway.db",
            environment={
                "MAM__AUTH__REQUIRED": "true",
                "MAM__AUTH__BOOTSTRAP_ADMIN_KEY_FILE": str(tmp_path / "admin.key"),
                "MAM__LOG_FORMAT": "json",
                "MAM__LOG_LEVEL": "DEBUG",
                "MAM__TRACING__ENABLED": "true",
                "MAM__TRACING__OTLP_ENDPOINT": collector.endpoint,
                "MAM__TRACING__OTLP_TIMEOUT_SECONDS": "5",
            },
        )
        address = await gateway.start()
        try:
            key = (tmp_path / "admin.key").read_text().strip()
            master_order_id, child_count = await _submit_and_wait(address, key)
        finally:
            # A graceful stop exports the spans still waiting for their batch.
            assert await gateway.stop() == 0
        spans = collector.spans()

    parsed = parse_key(key)
    assert parsed is not None
    key_id = parsed[0]
    lines = [line for line in gateway.log.read_text().splitlines() if line.strip()]
    entries: list[dict[str, Any]] = [json.loads(line) for line in lines]  # each line: JSON
    assert all(set(entry) >= BASE_FIELDS for entry in entries)

    about_order = [e for e in entries if e.get("master_order_id") == master_order_id]
    children = [e for e in about_order if "child_order_id" in e]
    # Every child's outcome was logged (DEBUG), each with its own child and account.
    assert child_count > 1
    assert len({e["child_order_id"] for e in children}) == child_count
    assert len({e["account_id"] for e in children}) == child_count
    for entry in about_order:
        assert entry["key_id"] == key_id, entry
        assert len(entry["trace_id"]) == 32 and len(entry["span_id"]) == 16, entry
    (trace_id,) = {e["trace_id"] for e in about_order}
    dispatching = [e for e in about_order if f"dispatching {child_count} children" in e["message"]]
    assert len(dispatching) == 1 and dispatching[0]["level"] == "INFO"

    # The order's spans reached the collector, in the trace its log lines name.
    in_trace = [s for s in spans if s.trace_id == trace_id]
    names = {s.name for s in in_trace}
    assert {
        SUBMIT,
        "mam.order.snapshot",
        "mam.order.allocate",
        "mam.store.insert_master_order",
        "mam.order.dispatch",
        "mam.store.commit_outcomes",
    } <= names
    assert {s.service for s in spans} == {"mam-gateway"}
    (call,) = [s for s in in_trace if s.name == SUBMIT]
    assert call.attribute("mam.master_order_id") == master_order_id
    assert call.attribute("mam.key_id") == key_id
    (dispatch,) = [s for s in in_trace if s.name == "mam.order.dispatch"]
    assert dispatch.parent_span_id == call.span_id
    assert {e["span_id"] for e in children} == {dispatch.span_id}
