"""deploy/compose.cluster.yaml: two gateways in cluster mode over compose.yaml's database.

Docker does not run here: the override is read as YAML and merged by hand the way compose
merges it (maps key by key), and both nodes are checked to be cluster nodes with their own
names and published addresses, on the same database as the default gateway, hardened alike.
"""

from __future__ import annotations

from typing import Any

import yaml

from tests.support import ROOT

DEPLOY = ROOT / "deploy"


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / name).read_text())


def _merged() -> dict[str, dict[str, Any]]:
    base = _load("compose.yaml")["services"]
    override = _load("compose.cluster.yaml")["services"]
    merged = {name: dict(service) for name, service in base.items()}
    for name, service in override.items():
        target = merged.setdefault(name, {})
        for key, value in service.items():
            if isinstance(value, dict) and isinstance(target.get(key), dict):
                target[key] = {**target[key], **value}
            else:
                target[key] = value
    return merged


def test_both_nodes_are_cluster_nodes_on_the_one_database_with_their_own_names() -> None:
    services = _merged()
    nodes = [services["gateway"], services["gateway-2"]]
    environments = [n["environment"] for n in nodes]
    assert all(e["MAM__CLUSTER__ENABLED"] == "true" for e in environments)
    assert {e["MAM__CLUSTER__NODE_NAME"] for e in environments} == {"gw-1", "gw-2"}
    assert len({e["MAM__DATABASE__URL"] for e in environments}) == 1
    assert environments[0]["MAM__DATABASE__URL"].startswith("postgresql+asyncpg://")
    published = [n["ports"][0] for n in nodes]
    assert published == ["127.0.0.1:50051:50051", "127.0.0.1:50052:50051"]
    # Each advertises the address callers reach it at.
    for environment, port in zip(environments, published, strict=True):
        assert environment["MAM__CLUSTER__ADVERTISE_ADDRESS"] == port.rsplit(":", 1)[0]


def test_the_second_node_is_hardened_like_the_first() -> None:
    services = _merged()
    first, second = services["gateway"], services["gateway-2"]
    for key in ("read_only", "cap_drop", "security_opt", "tmpfs", "secrets", "image"):
        assert second[key] == first[key], key
    assert "gateway-2-data" in _load("compose.cluster.yaml")["volumes"]
