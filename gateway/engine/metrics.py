"""The gateway's Prometheus metrics: each one declared here, once, with its labels' values.

One `GatewayMetrics` per gateway, on a registry of its own (tests run several gateways in one
process); `NO_METRICS` when [metrics] is off, whose recording methods do nothing. The engine
and the api record through the methods below, named after what happened; docs/operations.md
lists every metric, and deploy/observability/ holds the alert rules and the dashboard built on
them.

What it costs per child order is kept small: counters of a group commit are added by the
batch's counts (one increment per state and class, not per child), the per-master figures are
observed once when the order ends, and the one observation per child, its terminal request's
duration, goes into a `LoopHistogram`, a few list operations with no lock. Everything is
recorded and scraped on the event loop (gateway/observability/metrics_endpoint.py serves on
it), so no lock is needed. Gauges are read at scrape time from the state the gateway keeps anyway
(`GaugeReadings`, read by a function gateway/api/server.py gives), never updated per change.

Label values come from small fixed sets (states, retcode classes, origins, reasons, backends):
never an order, account or key id.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gateway.domain import retcodes
from gateway.domain.errors import (
    AlreadyExists,
    DomainError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from gateway.domain.orders import ChildOrder, MasterOrder
from gateway.terminals.protocol import Terminal

# Where a master order came from: a caller's submission (SubmitMasterOrder, StreamMasterOrders),
# the copy of a change at its group's source account (mirroring: submitted as "source:<group>",
# gateway/engine/source_watcher.py), a CloseMasterPosition, or the flatten of a kill switch or a
# stop-out (submitted as "kill-switch" and "stop-out").
ORIGINS = ("api", "source_copy", "close", "flatten")
_SOURCE_CALLER = "source:"
_FLATTENERS = frozenset({"kill-switch", "stop-out"})
# Why a child was sent again: a transient refusal, a send that provably never arrived (after a
# timeout or an unclear answer), or the rest of a partial fill.
RETRY_REASONS = ("transient", "absent", "partial_fill")
# What a search by tag found.
RECONCILIATION_OUTCOMES = ("filled", "partially_filled", "placed", "absent", "unreachable")
REFUSAL_REASONS = (
    "validation",
    "risk",
    "rate_limit",
    "auth",
    "unavailable",
    "not_found",
    "conflict",
    "precondition",
    "internal",
)
# Refusals of a risk rule or a switch: the rest of FAILED_PRECONDITION is "precondition".
RISK_REASONS = frozenset(
    {"KILL_SWITCH_ACTIVE", "STOPPED_OUT", "NO_STOP_LOSS", "REFERENCE_EQUITY_UNAVAILABLE"}
)
STORE_OPERATIONS = ("group_commit", "insert_master_order", "request")
STORE_ERROR_KINDS = ("transient", "permanent", "fenced")

# No `_created` series (the time each series began): they would double what every scrape reads,
# and no rule or panel uses them. (A switch of prometheus_client for the whole process.)
disable_created_metrics()  # type: ignore[no-untyped-call]

_SECONDS_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SECONDS_ORDER = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_SECONDS_REQUEST = (*_SECONDS_FAST, 5.0, 10.0)
_BATCH_OUTCOMES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000)


def origin_of(master: MasterOrder) -> str:
    """The `origin` label of a master order."""
    if master.submitted_by.startswith(_SOURCE_CALLER):
        return "source_copy"
    if master.submitted_by in _FLATTENERS:
        return "flatten"
    return "close" if master.spec.closes_master_order_id else "api"


def retcode_class_of(retcode: int) -> str:
    """The `retcode_class` label: "none" for a child that never had an answer (cancelled before
    it was sent, no terminal), else its retcode's class in lower case."""
    return "none" if retcode == 0 else retcodes.classify(retcode).value.lower()


def refusal_reason(error: BaseException) -> str:
    """The `reason` label of a refused request."""
    if not isinstance(error, DomainError):
        return "internal"
    if isinstance(error, InvalidArgument):
        return "validation"
    if isinstance(error, Unauthenticated | PermissionDenied):
        return "auth"
    if isinstance(error, ResourceExhausted):
        return "rate_limit"
    if error.reason in RISK_REASONS:
        return "risk"
    if isinstance(error, Unavailable):
        return "unavailable"
    if isinstance(error, NotFound):
        return "not_found"
    if isinstance(error, AlreadyExists):
        return "conflict"
    return "precondition"


_BACKENDS: dict[type, str] = {}


def backend_of(terminal: Terminal) -> str:
    """The `backend` label of a terminal: its package under gateway.terminals (sim, mt5, mt4,
    remote), else its class's name (a test's fake)."""
    kind = type(terminal)
    name = _BACKENDS.get(kind)
    if name is None:
        parts = kind.__module__.split(".")
        if parts[:2] == ["gateway", "terminals"] and len(parts) > 2:
            name = parts[2]
        else:
            name = kind.__name__.lower()
        _BACKENDS[kind] = name
    return name


@dataclass(frozen=True, slots=True)
class GaugeReadings:
    """The gateway's state as a scrape reads it."""

    # Open streaming calls by method name (e.g. "SubscribeFills").
    open_streams: Mapping[str, int] = field(default_factory=dict)
    # Each fill subscriber's buffered fills, and the buffer's limit.
    subscriber_buffers: Sequence[int] = ()
    subscriber_buffer_limit: int = 0
    subscriber_overflows: int = 0
    # Attached terminals by (backend, connected).
    terminals: Mapping[tuple[str, bool], int] = field(default_factory=dict)
    workers_connected: int = 0
    # Kill switches on, by scope (global, group, account); active stop-outs by kind.
    kill_switches: Mapping[str, int] = field(default_factory=dict)
    stop_outs: Mapping[str, int] = field(default_factory=dict)
    store_reachable: bool = True
    writer_lock_held: bool = True
    master_orders_in_progress: int = 0
    # Cluster mode only (None otherwise): the groups this node owns now, and how many it has
    # taken and lost (or handed over) since it started.
    cluster_groups_owned: int | None = None
    cluster_groups_taken: int = 0
    cluster_groups_lost: int = 0


class LoopHistogram(Collector):
    """A histogram for the per-child path: observed on the event loop only (no lock), by one
    label value, a list index and two additions an observation."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: tuple[str, ...],
        buckets: Sequence[float],
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = labelnames
        self._bounds = list(buckets)
        self._series: dict[tuple[str, ...], list[float]] = {}

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        series = self._series.get(labels)
        if series is None:
            # One count per bucket, then +Inf's, then the sum.
            series = self._series[labels] = [0.0] * (len(self._bounds) + 2)
        series[bisect.bisect_left(self._bounds, value)] += 1
        series[-1] += value

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for labels, series in sorted(self._series.items()):
            cumulative, buckets = 0.0, []
            for bound, count in zip((*self._bounds, math.inf), series[:-1], strict=True):
                cumulative += count
                buckets.append((_bound_text(bound), cumulative))
            family.add_metric(list(labels), buckets, series[-1])
        yield family

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)


def _bound_text(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(float(bound))


class _StateCollector(Collector):
    """The gauges, read at scrape time through `read`."""

    def __init__(self) -> None:
        self.read: Callable[[], GaugeReadings] = GaugeReadings

    def collect(self) -> Iterator[Metric]:
        state = self.read()
        streams = GaugeMetricFamily(
            "mam_open_streams", "Streaming calls open now, by method.", labels=["method"]
        )
        for method, count in sorted(state.open_streams.items()):
            streams.add_metric([method], count)
        yield streams
        buffers = state.subscriber_buffers
        yield GaugeMetricFamily(
            "mam_fill_subscribers", "Live fill subscriptions (SubscribeFills).", len(buffers)
        )
        yield GaugeMetricFamily(
            "mam_fill_subscriber_buffer_max_fills",
            "The fills buffered by the fullest subscriber (0 without subscribers).",
            max(buffers, default=0),
        )
        yield GaugeMetricFamily(
            "mam_fill_subscriber_buffered_fills",
            "Fills buffered over all subscribers.",
            sum(buffers),
        )
        yield GaugeMetricFamily(
            "mam_fill_subscriber_buffer_limit_fills",
            "A subscriber's buffer limit: past it the subscriber catches up from the store.",
            state.subscriber_buffer_limit,
        )
        yield CounterMetricFamily(
            "mam_fill_subscriber_overflows",
            "Subscribers that fell behind their buffer's limit and caught up from the store.",
            state.subscriber_overflows,
        )
        terminals = GaugeMetricFamily(
            "mam_terminals",
            "Attached terminals by backend and state (connected or disconnected).",
            labels=["backend", "state"],
        )
        for (backend, connected), count in sorted(state.terminals.items()):
            terminals.add_metric([backend, "connected" if connected else "disconnected"], count)
        yield terminals
        yield GaugeMetricFamily(
            "mam_workers_connected", "mam-worker processes connected now.", state.workers_connected
        )
        switches = GaugeMetricFamily(
            "mam_kill_switches_active", "Kill switches on, by scope.", labels=["scope"]
        )
        for scope in ("global", "group", "account"):
            switches.add_metric([scope], state.kill_switches.get(scope, 0))
        yield switches
        stop_outs = GaugeMetricFamily(
            "mam_stop_outs_active", "Active stop-outs of loss limits, by kind.", labels=["kind"]
        )
        for kind in ("account", "group"):
            stop_outs.add_metric([kind], state.stop_outs.get(kind, 0))
        yield stop_outs
        yield GaugeMetricFamily(
            "mam_store_reachable",
            "1 while the database takes writes, 0 while it does not (submissions are refused).",
            1 if state.store_reachable else 0,
        )
        yield GaugeMetricFamily(
            "mam_writer_lock_held",
            "1 while this process holds the database's writer lock; 0 once another took it.",
            1 if state.writer_lock_held else 0,
        )
        yield GaugeMetricFamily(
            "mam_master_orders_in_progress",
            "Master orders executing now (dispatching, or resting at the brokers).",
            state.master_orders_in_progress,
        )
        if state.cluster_groups_owned is not None:
            yield GaugeMetricFamily(
                "mam_cluster_groups_owned",
                "Cluster mode: the groups whose lease this node holds now.",
                state.cluster_groups_owned,
            )
            yield CounterMetricFamily(
                "mam_cluster_groups_taken",
                "Cluster mode: groups this node took (a free, released or stale lease).",
                state.cluster_groups_taken,
            )
            yield CounterMetricFamily(
                "mam_cluster_groups_lost",
                "Cluster mode: groups this node lost to another or handed over.",
                state.cluster_groups_lost,
            )


class GatewayMetrics:
    """Every metric of one gateway, on its own registry, and the recording of each."""

    # False for NO_METRICS: the per-child path does not even read the clock.
    enabled = True

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._masters = Counter(
            "mam_master_orders",
            "Master orders that reached a final state, by state and origin.",
            ["state", "origin"],
            registry=r,
        )
        self._children = Counter(
            "mam_child_orders",
            "Child orders that reached a final state, by state and retcode class.",
            ["state", "retcode_class"],
            registry=r,
        )
        self._fills = Counter("mam_fills", "Fills committed.", registry=r)
        self._retries = Counter(
            "mam_child_order_retries", "Child orders sent again, by reason.", ["reason"], registry=r
        )
        self._reconciliations = Counter(
            "mam_reconciliations",
            "Searches of a terminal by a child's tag, by what they found.",
            ["outcome"],
            registry=r,
        )
        self._refused = Counter(
            "mam_requests_refused", "Requests refused, by reason.", ["reason"], registry=r
        )
        self._store_retries = Counter(
            "mam_store_retries",
            "Writes tried again after a passing fault of the database, by operation.",
            ["operation"],
            registry=r,
        )
        self._store_errors = Counter(
            "mam_store_errors",
            "Failed database operations, by operation and kind (transient, permanent, fenced).",
            ["operation", "kind"],
            registry=r,
        )
        self._submit_to_ack = Histogram(
            "mam_submit_to_ack_seconds",
            "A submission's arrival at the engine to its acknowledgement (after the commit).",
            ["origin"],
            buckets=_SECONDS_REQUEST,
            registry=r,
        )
        self._submit_to_last_fill = Histogram(
            "mam_submit_to_last_fill_seconds",
            "A submission's arrival to the commit of its master order's last fill.",
            ["origin"],
            buckets=_SECONDS_ORDER,
            registry=r,
        )
        self._skew = Histogram(
            "mam_dispatch_skew_seconds",
            "Per master order, its first to its last fill's execution time at the brokers.",
            buckets=_SECONDS_FAST,
            registry=r,
        )
        self._terminal_requests = LoopHistogram(
            "mam_terminal_request_duration_seconds",
            "A request to a terminal, sent to answered (or timed out), by backend and request.",
            ("backend", "request"),
            _SECONDS_REQUEST,
        )
        r.register(self._terminal_requests)
        self._commit_seconds = Histogram(
            "mam_group_commit_duration_seconds",
            "One group commit of execution outcomes (child states, fills, master progress).",
            buckets=_SECONDS_FAST,
            registry=r,
        )
        self._commit_outcomes = Histogram(
            "mam_group_commit_outcomes",
            "Execution outcomes stored by one group commit (its batch size).",
            buckets=_BATCH_OUTCOMES,
            registry=r,
        )
        self._fanout_lag = Histogram(
            "mam_fill_fanout_lag_seconds",
            "A fill's commit to its FillBatch sent to a live subscriber (the batch's oldest).",
            buckets=_SECONDS_REQUEST,
            registry=r,
        )
        self._open_streams: dict[str, int] = {}
        self._state = _StateCollector()
        r.register(self._state)
        # Submissions' arrival (monotonic), by master order id, until the order ends.
        self._submitted: dict[str, float] = {}
        for origin in ORIGINS:  # the common series exist from the start (rate() needs them)
            self._masters.labels("filled", origin)
        self._children.labels("filled", "success")
        self._children.labels("rejected", "permanent")
        for reason in REFUSAL_REASONS:
            self._refused.labels(reason)
        for reason in RETRY_REASONS:
            self._retries.labels(reason)
        for outcome in RECONCILIATION_OUTCOMES:
            self._reconciliations.labels(outcome)
        for operation in STORE_OPERATIONS:
            self._store_retries.labels(operation)
            for kind in STORE_ERROR_KINDS:
                self._store_errors.labels(operation, kind)

    def read_state_with(self, read: Callable[[], GaugeReadings]) -> None:
        """How a scrape reads the gauges (set once the gateway's parts exist)."""
        self._state.read = lambda: replace(read(), open_streams=dict(self._open_streams))

    # -- master orders ----------------------------------------------------------------------

    def submitted(self, master: MasterOrder, arrived_at: float) -> None:
        """A submission (or a close) acknowledged, stored and started; `arrived_at`:
        time.monotonic() when it reached the engine."""
        self._submit_to_ack.labels(origin_of(master)).observe(time.monotonic() - arrived_at)
        self._submitted[master.master_order_id] = arrived_at

    def master_orders_ended(self, masters: Iterable[MasterOrder]) -> None:
        """Master orders just committed in a final state."""
        now = time.monotonic()
        for master in masters:
            origin = origin_of(master)
            self._masters.labels(master.state.value.lower(), origin).inc()
            arrived_at = self._submitted.pop(master.master_order_id, None)
            if master.filled_volume > 0 and arrived_at is not None:
                self._submit_to_last_fill.labels(origin).observe(now - arrived_at)
            skew_us = master.execution.dispatch_skew_us
            if skew_us is not None:
                self._skew.observe(skew_us / 1e6)

    # -- group commits ----------------------------------------------------------------------

    def committed(
        self, children: Sequence[ChildOrder], fills: int, duration_s: float, outcomes: int
    ) -> None:
        """One group commit: the children it stored (those in a final state are counted), its
        fills, how long it took and how many outcomes it held."""
        ended: dict[tuple[str, int], int] = {}
        for child in children:
            if child.state.is_final:
                key = (child.state.value, child.retcode)
                ended[key] = ended.get(key, 0) + 1
        by_label: dict[tuple[str, str], int] = {}
        for (state, retcode), count in ended.items():
            label = (state.lower(), retcode_class_of(retcode))
            by_label[label] = by_label.get(label, 0) + count
        for (state, retcode_class), count in by_label.items():
            self._children.labels(state, retcode_class).inc(count)
        if fills:
            self._fills.inc(fills)
        self._commit_seconds.observe(duration_s)
        self._commit_outcomes.observe(outcomes)

    def store_retry(self, operation: str) -> None:
        self._store_retries.labels(operation).inc()

    def store_error(self, operation: str, kind: str) -> None:
        self._store_errors.labels(operation, kind).inc()

    # -- dispatch ---------------------------------------------------------------------------

    def terminal_request(self, backend: str, request: str, duration_s: float) -> None:
        self._terminal_requests.observe((backend, request), duration_s)

    def retried(self, reason: str) -> None:
        self._retries.labels(reason).inc()

    def reconciled(self, outcome: str) -> None:
        self._reconciliations.labels(outcome).inc()

    # -- api --------------------------------------------------------------------------------

    def refused(self, error: BaseException) -> None:
        self._refused.labels(refusal_reason(error)).inc()

    def stream_opened(self, method: str) -> None:
        self._open_streams[method] = self._open_streams.get(method, 0) + 1

    def stream_closed(self, method: str) -> None:
        self._open_streams[method] -= 1

    def fills_sent(self, lag_s: float) -> None:
        """A FillBatch went to a live subscriber `lag_s` after its oldest fill's commit."""
        self._fanout_lag.observe(lag_s)


class NoMetrics(GatewayMetrics):
    """[metrics] off: nothing is recorded (the cost of metrics is measured against this)."""

    enabled = False

    def __init__(self) -> None:
        super().__init__(CollectorRegistry())

    def read_state_with(self, read: Callable[[], GaugeReadings]) -> None:
        pass

    def submitted(self, master: MasterOrder, arrived_at: float) -> None:
        pass

    def master_orders_ended(self, masters: Iterable[MasterOrder]) -> None:
        pass

    def committed(
        self, children: Sequence[ChildOrder], fills: int, duration_s: float, outcomes: int
    ) -> None:
        pass

    def store_retry(self, operation: str) -> None:
        pass

    def store_error(self, operation: str, kind: str) -> None:
        pass

    def terminal_request(self, backend: str, request: str, duration_s: float) -> None:
        pass

    def retried(self, reason: str) -> None:
        pass

    def reconciled(self, outcome: str) -> None:
        pass

    def refused(self, error: BaseException) -> None:
        pass

    def stream_opened(self, method: str) -> None:
        pass

    def stream_closed(self, method: str) -> None:
        pass

    def fills_sent(self, lag_s: float) -> None:
        pass


NO_METRICS: GatewayMetrics = NoMetrics()
