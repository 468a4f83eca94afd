"""mam-worker's Prometheus metrics, on a registry of its own, served by its [metrics] endpoint
(gateway/observability/metrics_endpoint.py). docs/operations.md lists them.

Label values come from small fixed sets: a command's kind (its class in
gateway/terminals/remote/commands.py), an outcome, a backend's name. Never a login.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway._proto.mam.v1 import worker_service_pb2 as pb

# What became of a command: answered, or one of the failures of mam.v1.TerminalFailureKind
# (the terminal could not be asked, the broker has no such symbol, the login is not hosted here,
# the command did not read).
OUTCOMES = ("ok", "terminal_error", "symbol_not_found", "not_hosted", "bad_command")
_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._in_flight = Gauge(
            "mam_worker_commands_in_flight",
            "Commands received and not answered yet (waiting for their terminal, or running).",
            registry=r,
        )
        self._calls = Counter(
            "mam_worker_terminal_calls",
            "Commands run on the local terminals, by command and outcome.",
            ["command", "outcome"],
            registry=r,
        )
        self._durations = Histogram(
            "mam_worker_command_duration_seconds",
            "A command's arrival to its answer (its wait behind its terminal's earlier ones too).",
            ["command"],
            buckets=_SECONDS,
            registry=r,
        )
        self._reconnects = Counter(
            "mam_worker_reconnects",
            "Streams to the gateway opened again after one dropped or failed to open.",
            registry=r,
        )
        self._connected = Gauge(
            "mam_worker_connected",
            "1 while the worker's stream to the gateway is open (welcomed), else 0.",
            registry=r,
        )
        self._terminals = Gauge(
            "mam_worker_terminals",
            "Terminals this worker hosts, by backend.",
            ["backend"],
            registry=r,
        )
        self._calls.labels("send", "ok")
        self._reconnects.inc(0)

    def hosting(self, backends: Iterable[str]) -> None:
        """The backends of the terminals opened, one name per terminal."""
        for backend in backends:
            self._terminals.labels(backend).inc()

    def received(self) -> float:
        """A command arrived; returns the time.perf_counter() to hand to `answered`."""
        self._in_flight.inc()
        return time.perf_counter()

    def answered(self, message: pb.TerminalCommand, result: pb.CommandResult, at: float) -> None:
        """A command's answer, `at` the time `received` returned."""
        self._in_flight.dec()
        command = message.WhichOneof("command") or "none"
        if result.WhichOneof("result") == "failure":
            kind = pb.TerminalFailureKind.Name(result.failure.kind)
            outcome = kind.removeprefix("TERMINAL_FAILURE_KIND_").lower()
        else:
            outcome = "ok"
        self._calls.labels(command, outcome).inc()
        self._durations.labels(command).observe(time.perf_counter() - at)

    def given_up(self) -> None:
        """A command that ended without an answer (cancelled at the worker's stop)."""
        self._in_flight.dec()

    def connected(self, up: bool) -> None:
        self._connected.set(1 if up else 0)

    def reconnecting(self) -> None:
        self._reconnects.inc()
