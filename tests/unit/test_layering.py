"""Dependencies point one way: domain <- terminals/store <- engine <- api; domain is pure."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "gateway"

# What the engine and the terminals use of traces and logs: spans and log fields through the
# OpenTelemetry API and context variables, never the SDK's setup (observability/tracing.py).
OBSERVED = {"gateway.observability.trace_context", "gateway.observability.log_context"}
# What each layer may import from the gateway package.
ALLOWED = {
    "domain": {"gateway.domain"},
    "terminals": {"gateway.domain", "gateway.terminals", *OBSERVED},
    "store": {"gateway.domain", "gateway.store"},
    "engine": {
        "gateway.domain",
        "gateway.terminals.protocol",
        "gateway.store",
        "gateway.engine",
        *OBSERVED,
    },
    # Statements are rendered from domain values only (CSV, HTML, PDF).
    "statements": {"gateway.domain", "gateway.statements"},
    # Traces and structured logs: their own modules, and the [tracing] section's declaration.
    "observability": {"gateway.observability", "gateway.config.models"},
}
# Modules that may import more than their layer, each with its reason.
MODULE_ALLOWED = {
    # The remote terminals' wire (mam.v1.WorkerService messages <-> Terminal protocol values),
    # used by both ends of the stream, the gateway's servicer and mam-worker: it lives with the
    # terminals it carries, and maps those messages' generated classes.
    "terminals/remote/wire.py": {"gateway._proto.mam.v1"},
}
# Outside the standard library, the domain core may import nothing at all.
DOMAIN_FORBIDDEN = (
    "asyncio",
    "grpc",
    "sqlalchemy",
    "google",
    "aiosqlite",
    "opentelemetry",
    "prometheus_client",
)
# The metrics are declared in one module per program, and served by one: nothing else imports
# prometheus_client (the engine and the api record through GatewayMetrics' methods).
METRICS_MODULES = {"engine/metrics.py", "worker/metrics.py", "observability/metrics_endpoint.py"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_it_may(layer: str) -> None:
    for path in modules(layer):
        allowed = ALLOWED[layer] | MODULE_ALLOWED.get(path.relative_to(PACKAGE).as_posix(), set())
        for name in imports_of(path):
            if name.startswith("gateway"):
                assert any(name == a or name.startswith(a + ".") for a in allowed), (
                    f"{path.relative_to(PACKAGE)} imports {name}"
                )


def test_each_module_exception_names_a_module_that_exists() -> None:
    for module in MODULE_ALLOWED:
        assert (PACKAGE / module).is_file(), module


def test_domain_core_uses_the_standard_library_only() -> None:
    for path in modules("domain"):
        for name in imports_of(path):
            top = name.split(".")[0]
            assert top not in DOMAIN_FORBIDDEN, f"{path.name} imports {name}"
            assert top == "gateway" or top in sys.stdlib_module_names, f"{path.name}: {name}"


def test_the_engine_and_terminals_trace_through_the_api_only() -> None:
    """Tracing off costs them nothing but the API's no-op tracer: the SDK, its exporter and the
    gRPC instrumentation are set up by the programs (api/server.py, the worker's cli)."""
    for layer in ("engine", "terminals", "store", "domain"):
        for path in modules(layer):
            for name in imports_of(path):
                assert not name.startswith("opentelemetry.sdk"), f"{path.name} imports {name}"
                assert not name.startswith("opentelemetry.instrumentation"), path.name
                assert not name.startswith("opentelemetry.exporter"), path.name
    for module in OBSERVED:
        path = PACKAGE / (module.removeprefix("gateway.").replace(".", "/") + ".py")
        assert not {n for n in imports_of(path) if n.startswith("opentelemetry.sdk")}, path


def test_nothing_imports_the_api_layer() -> None:
    for path in PACKAGE.rglob("*.py"):
        if "api" in path.relative_to(PACKAGE).parts[:1] or path.name == "cli.py":
            continue
        assert not any(n.startswith("gateway.api") for n in imports_of(path)), path


def test_only_the_metrics_modules_import_prometheus_client() -> None:
    for module in METRICS_MODULES:
        assert (PACKAGE / module).is_file(), module
    for path in PACKAGE.rglob("*.py"):
        names = imports_of(path)
        if any(n.split(".")[0] == "prometheus_client" for n in names):
            assert path.relative_to(PACKAGE).as_posix() in METRICS_MODULES, path
