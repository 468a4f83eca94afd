"""Dependencies point one way: domain <- terminals/store <- engine <- api; domain is pure."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "gateway"

# What each layer may import from the gateway package.
ALLOWED = {
    "domain": {"gateway.domain"},
    "terminals": {"gateway.domain", "gateway.terminals"},
    "store": {"gateway.domain", "gateway.store"},
    "engine": {"gateway.domain", "gateway.terminals.protocol", "gateway.store", "gateway.engine"},
    # Statements are rendered from domain values only (CSV, HTML, PDF).
    "statements": {"gateway.domain", "gateway.statements"},
}
# Outside the standard library, the domain core may import nothing at all.
DOMAIN_FORBIDDEN = ("asyncio", "grpc", "sqlalchemy", "google", "aiosqlite")


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
        for name in imports_of(path):
            if name.startswith("gateway"):
                assert any(name == a or name.startswith(a + ".") for a in ALLOWED[layer]), (
                    f"{path.relative_to(PACKAGE)} imports {name}"
                )


def test_domain_core_uses_the_standard_library_only() -> None:
    for path in modules("domain"):
        for name in imports_of(path):
            top = name.split(".")[0]
            assert top not in DOMAIN_FORBIDDEN, f"{path.name} imports {name}"
            assert top == "gateway" or top in sys.stdlib_module_names, f"{path.name}: {name}"


def test_nothing_imports_the_api_layer() -> None:
    for path in PACKAGE.rglob("*.py"):
        if "api" in path.relative_to(PACKAGE).parts[:1] or path.name == "cli.py":
            continue
        assert not any(n.startswith("gateway.api") for n in imports_of(path)), path
