"""[tracing] and log_format as the gateway and mam-worker read them, and what tracing off and on
make of them; the traceparent a worker command carries, both ways."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.config import ConfigError, TracingConfig, load_config
from gateway.observability.trace_context import (
    NO_TRACER,
    context_of_traceparent,
    current_traceparent,
    is_tracing,
    parent_and_links,
)
from gateway.observability.tracing import Tracing
from gateway.worker.config import WorkerConfigError, parse_worker_config
from tests.support import DEMO_CONFIG


def test_tracing_is_off_and_logs_human_by_default() -> None:
    config = load_config(DEMO_CONFIG, environ={})
    assert config.log_format == "human"
    assert config.tracing == TracingConfig(service_name="mam-gateway")
    assert not config.tracing.enabled
    tracing = Tracing.from_config(config.tracing, service="mam-gateway")
    assert not tracing.enabled
    assert tracing.tracer is NO_TRACER and not is_tracing(tracing.tracer)
    assert tracing.server_interceptor() is None


def test_tracing_and_the_json_format_come_from_the_environment() -> None:
    config = load_config(
        DEMO_CONFIG,
        environ={
            "MAM__LOG_FORMAT": "json",
            "MAM__TRACING__ENABLED": "true",
            "MAM__TRACING__OTLP_ENDPOINT": "127.0.0.1:14317",
            "MAM__TRACING__SAMPLING_RATIO": "0.25",
            "MAM__TRACING__SERVICE_NAME": "mam-gateway-eu",
        },
    )
    assert config.log_format == "json"
    assert config.tracing.enabled
    assert config.tracing.otlp_endpoint == "127.0.0.1:14317"
    assert config.tracing.sampling_ratio == 0.25
    assert config.tracing.service_name == "mam-gateway-eu"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MAM__LOG_FORMAT": "xml"}, "log_format: expected one of human, json, got 'xml'"),
        (
            {"MAM__TRACING__SAMPLING_RATIO": "1.5"},
            "tracing.sampling_ratio: expected a ratio from 0 to 1, got 1.5",
        ),
        (
            {"MAM__TRACING__OTLP_ENDPOINT": "collector"},
            "tracing.otlp_endpoint: expected HOST:PORT",
        ),
        (
            {"MAM__TRACING__ENABLED": "true", "MAM__TRACING__OTLP_ENDPOINT": "10.1.2.3:4317"},
            "tracing.otlp_endpoint: 10.1.2.3 is not a loopback address",
        ),
        (
            {
                "MAM__TRACING__ENABLED": "true",
                "MAM__TRACING__OTLP_TLS": "true",
                "MAM__TRACING__OTLP_CA_FILE": "/nonexistent/ca.pem",
            },
            "tracing.otlp_ca_file: no such file",
        ),
    ],
)
def test_a_bad_tracing_or_log_key_is_named(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(DEMO_CONFIG, environ=environ)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "environ",
    [
        {"MAM__TRACING__OTLP_TLS": "true"},
        {"MAM__TRACING__OTLP_PLAINTEXT_OFF_LOOPBACK": "true"},
    ],
)
def test_a_collector_off_loopback_needs_tls_or_an_acknowledged_plaintext(
    environ: dict[str, str],
) -> None:
    config = load_config(
        DEMO_CONFIG,
        environ={
            "MAM__TRACING__ENABLED": "true",
            "MAM__TRACING__OTLP_ENDPOINT": "otel-collector.monitoring:4317",
            **environ,
        },
    )
    assert config.tracing.enabled


def _worker_file(**more: object) -> dict[str, object]:
    return {
        "worker_id": "win-1",
        "gateway": "127.0.0.1:50051",
        "terminals": [{"login": 1, "server": "S", "backend": "sim"}],
        **more,
    }


def test_the_worker_takes_the_same_log_format_and_tracing_keys() -> None:
    config = parse_worker_config(
        _worker_file(
            log_format="json",
            tracing={"enabled": True, "otlp_endpoint": "127.0.0.1:4317", "sampling_ratio": 0.5},
        ),
        {"MAM_WORKER_TOKEN": "a-worker-token-0001"},
    )
    assert config.log_format == "json"
    assert config.tracing == TracingConfig(
        enabled=True, otlp_endpoint="127.0.0.1:4317", sampling_ratio=0.5
    )
    with pytest.raises(WorkerConfigError, match=r"tracing\.unknown_key: unknown key"):
        parse_worker_config(
            _worker_file(tracing={"unknown_key": 1}), {"MAM_WORKER_TOKEN": "a-worker-token-0001"}
        )


async def test_tracing_on_exports_through_the_programs_own_provider(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing.from_config(
        TracingConfig(sampling_ratio=1.0, service_name="named"),
        service="mam-gateway",
        attributes={"mam.worker_id": "w"},
        exporter=exporter,
    )
    assert tracing.enabled and is_tracing(tracing.tracer)
    assert tracing.server_interceptor() is not None
    with tracing.tracer.start_as_current_span("mam.order.dispatch"):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.resource.attributes["service.name"] == "named"
    assert span.resource.attributes["mam.worker_id"] == "w"
    # Not the process's global provider: other gateways in this process keep theirs.
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    await tracing.shutdown()
    assert not tracing.enabled and tracing.tracer is NO_TRACER


def test_a_sampling_ratio_of_zero_records_no_trace_started_here() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing.from_config(
        TracingConfig(sampling_ratio=0.0), service="mam-gateway", exporter=exporter
    )
    with tracing.tracer.start_as_current_span("mam.order.dispatch") as span:
        # Not recorded, but the trace's ids still travel (to a worker, into log lines).
        assert not span.is_recording()
        flags = int(current_traceparent().rsplit("-", 1)[1], 16)
        assert not flags & 0x01  # not sampled
    assert exporter.get_finished_spans() == ()


def test_a_traceparent_goes_out_and_comes_back_as_the_same_span() -> None:
    assert current_traceparent() == ""
    assert context_of_traceparent("") is None
    assert context_of_traceparent("not a traceparent") is None
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("test")
    with tracer.start_as_current_span("mam.order.dispatch") as span:
        traceparent = current_traceparent()
    sent = span.get_span_context()
    # Sampled (and, W3C level 2, a random trace id): as the SDK's own propagator writes it.
    assert traceparent == f"00-{sent.trace_id:032x}-{sent.span_id:016x}-{sent.trace_flags:02x}"
    assert sent.trace_flags & 0x01
    context = context_of_traceparent(traceparent)
    assert context is not None
    received = trace.get_current_span(context).get_span_context()
    assert (received.trace_id, received.span_id, received.is_remote) == (
        sent.trace_id,
        sent.span_id,
        True,
    )


def test_a_commit_of_several_orders_is_a_child_of_the_first_and_linked_to_the_others() -> None:
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("test")
    contexts = []
    for _ in range(3):
        with tracer.start_as_current_span("mam.order.dispatch") as span:
            contexts.append(span.get_span_context())
    parent, links = parent_and_links([None, contexts[0], contexts[1], contexts[0], contexts[2]])
    assert parent is not None
    assert trace.get_current_span(parent).get_span_context() == contexts[0]
    assert [link.context for link in links] == contexts[1:]
    assert parent_and_links([None, None]) == (None, [])
