"""One program's tracing, from its [tracing] section: the gateway's, or a mam-worker's.

Each program owns its TracerProvider (never the process's global one: the tests run several
gateways and workers in one process, each with its own). With tracing off there is no provider,
the tracer is NO_TRACER, no interceptor is installed and the engine makes no span; with it on,
spans are sampled (ParentBased(TraceIdRatioBased(sampling_ratio)): a call that arrives with a
traceparent is recorded as its caller decided) and exported in batches, off the event loop, to
an OTLP/gRPC collector. The gRPC calls get their spans from opentelemetry-instrumentation-grpc's
interceptor for asyncio servers, outermost, so that the span holds the whole call (its
authentication and the error mapping); `call_failed` puts a mapped error's status on it.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from collections.abc import Mapping
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.instrumentation.grpc.filters import any_of, negate, service_prefix
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Status, StatusCode, Tracer

from gateway.config.models import TracingConfig
from gateway.observability.trace_context import NO_TRACER

# Calls that get no span: probes ask every few seconds, and reflection is tooling.
UNTRACED_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.")
# The status codes that make a server's span an error (OpenTelemetry's gRPC conventions): a
# caller's mistake (INVALID_ARGUMENT, NOT_FOUND...) is the call's answer, not the server's fault.
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


def _version() -> str:
    try:
        return importlib.metadata.version("mam-gateway")
    except importlib.metadata.PackageNotFoundError:
        return ""


class Tracing:
    """A program's tracer and what exports its spans; `Tracing()` is tracing off."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._provider = provider
        self.tracer: Tracer = (
            NO_TRACER if provider is None else provider.get_tracer("mam-gateway", _version())
        )

    @classmethod
    def from_config(
        cls,
        config: TracingConfig,
        *,
        service: str,
        attributes: Mapping[str, str] | None = None,
        exporter: SpanExporter | None = None,
    ) -> Tracing:
        """Tracing as [tracing] says; `service`: the service.name unless the section names one;
        `attributes`: more of the resource's (a worker's id). `exporter` (tests: the SDK's
        in-memory one) is given each span as it ends, instead of the OTLP exporter, and with
        it tracing is on whatever the section says."""
        if not config.enabled and exporter is None:
            return cls()
        resource = Resource.create(
            {"service.name": config.service_name or service, **(attributes or {})}
        )
        provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(config.sampling_ratio)),
            resource=resource,
            shutdown_on_exit=False,
        )
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(config)))
        return cls(provider)

    @property
    def enabled(self) -> bool:
        return self._provider is not None

    def server_interceptor(self) -> grpc.aio.ServerInterceptor | None:  # type: ignore[type-arg]
        """The interceptor that makes a span of every call (but UNTRACED_SERVICES'), taking a
        caller's traceparent as the span's parent; None with tracing off."""
        if self._provider is None:
            return None
        untraced = negate(any_of(*(service_prefix(name) for name in UNTRACED_SERVICES)))
        interceptor: grpc.aio.ServerInterceptor = aio_server_interceptor(  # type: ignore[type-arg,no-untyped-call]
            tracer_provider=self._provider, filter_=untraced
        )
        return interceptor

    async def shutdown(self) -> None:
        """Exports what is left (for at most the exporter's timeout) and stops; off the event
        loop, which the export would block."""
        provider, self._provider = self._provider, None
        self.tracer = NO_TRACER
        if provider is not None:
            await asyncio.to_thread(provider.shutdown)


def _otlp_exporter(config: TracingConfig) -> OTLPSpanExporter:
    options: dict[str, Any] = {}
    if config.otlp_tls and config.otlp_ca_file is not None:
        options["credentials"] = grpc.ssl_channel_credentials(config.otlp_ca_file.read_bytes())
    # Headers (a vendor's key): OTEL_EXPORTER_OTLP_HEADERS, read by the exporter.
    return OTLPSpanExporter(
        endpoint=config.otlp_endpoint,
        insecure=not config.otlp_tls,
        timeout=config.otlp_timeout_seconds,
        **options,
    )


def call_failed(code: grpc.StatusCode, details: str) -> None:
    """The status a call ends with, on its span (the current one), when it is recorded."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code in _SERVER_ERRORS:
        span.set_status(Status(StatusCode.ERROR, f"{code.name}: {details}"))
