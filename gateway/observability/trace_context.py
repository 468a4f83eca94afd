"""What the engine and the terminals use of tracing: the OpenTelemetry API only, no SDK.

A program's tracer comes from gateway/observability/tracing.py; with tracing off it is
NO_TRACER and the engine makes no span at all (it checks `is_tracing(tracer)` where a span
would be per child or per commit). The span names and attributes here are the ones
docs/operations.md ("Traces") lists.

Remote workers continue a trace from the W3C traceparent a command carries
(mam.v1.TerminalCommand.traceparent): `current_traceparent()` on the gateway's side, when the
command is made, and `context_of_traceparent()` on the worker's.
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanContext, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

# Tracing off: the API's tracer that makes nothing.
NO_TRACER: Tracer = trace.NoOpTracer()

# Spans of a master order (the RPC's span, made by the gRPC instrumentation, is their parent).
SNAPSHOT_SPAN = "mam.order.snapshot"
ALLOCATE_SPAN = "mam.order.allocate"
INSERT_SPAN = "mam.store.insert_master_order"
DISPATCH_SPAN = "mam.order.dispatch"
COMMIT_SPAN = "mam.store.commit_outcomes"
# A command run by a remote worker, a child of the span that sent it.
WORKER_COMMAND_SPAN = "mam.worker.command"

# Attributes.
MASTER_ORDER_ID = "mam.master_order_id"
GROUP_ID = "mam.group_id"
SYMBOL = "mam.symbol"
ACCOUNTS = "mam.accounts"
ACCOUNTS_UNREAD = "mam.accounts_unread"
CHILDREN = "mam.children"
ALLOCATION_METHOD = "mam.allocation_method"
RESUMED = "mam.resumed"
OUTCOMES = "mam.outcomes"
FILLS = "mam.fills"
MASTER_ORDERS = "mam.master_orders"
KEY_ID = "mam.key_id"
ACCOUNT_ID = "mam.account_id"
COMMAND = "mam.command"
LOGIN = "mam.login"
SERVER = "mam.server"
WORKER_ID = "mam.worker_id"
TAG = "mam.tag"
RETCODE = "mam.retcode"

# Links a commit span carries at most (to the spans of the other orders in its batch).
MAX_LINKS = 32

_PROPAGATOR = TraceContextTextMapPropagator()


def is_tracing(tracer: Tracer) -> bool:
    return tracer is not NO_TRACER


def current_span_context() -> SpanContext | None:
    """The current span's context; None outside any span."""
    context = trace.get_current_span().get_span_context()
    return context if context.is_valid else None


def current_traceparent() -> str:
    """The W3C traceparent of the current span; empty outside any span (tracing off)."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return ""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def context_of_traceparent(traceparent: str) -> Context | None:
    """A context whose current span is the remote one `traceparent` names; None when it is
    empty or does not read."""
    if not traceparent:
        return None
    context = _PROPAGATOR.extract({"traceparent": traceparent})
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def parent_and_links(
    contexts: Iterable[SpanContext | None],
) -> tuple[Context | None, list[Link]]:
    """For a span that serves several traces at once (a commit of many orders' outcomes): the
    first of `contexts` as its parent, and links to the others (at most MAX_LINKS)."""
    seen: dict[tuple[int, int], SpanContext] = {}
    for context in contexts:
        if context is not None and len(seen) <= MAX_LINKS:
            seen.setdefault((context.trace_id, context.span_id), context)
    if not seen:
        return None, []
    first, *others = seen.values()
    parent = trace.set_span_in_context(trace.NonRecordingSpan(first))
    return parent, [Link(context) for context in others]
