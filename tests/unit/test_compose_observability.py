"""compose.yaml's observability profile: Prometheus and Grafana beside the gateway, on demand.

`docker compose up` still starts the database and the gateway only; with `--profile
observability`, Prometheus scrapes the gateway's metrics inside the compose network and Grafana
shows them, both published on the host's loopback only. Docker does not run here: the file is
read as YAML, and the files it mounts are checked to exist in the repository, and to point at
each other (the scrape target, the rules file, the data source, the dashboards' directory).
Those files come with the metrics (deploy/observability/); one not written yet is skipped, by name.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import pytest
import yaml

from tests.support import ROOT

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
PROFILE = "observability"
DEFAULT_SERVICES = {"postgres", "gateway"}
PROFILE_SERVICES = {"prometheus", "grafana"}
# What each observability service mounts from the repository, and what it must find there.
MOUNTED = {
    "./observability/prometheus.yml": "file",
    "./observability/alerts.yml": "file",
    "./observability/grafana/provisioning/datasources": "*.yml",
    "./observability/grafana/provisioning/dashboards": "*.yml",
    "./observability/grafana/dashboards": "mam-gateway.json",
}
GRAFANA_DASHBOARDS = "/etc/grafana/dashboards"


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def _bind_mounts(service: str) -> dict[str, str]:
    """A service's mounts of repository paths: {source as written: target in the container}."""
    mounts = {}
    for volume in _services()[service].get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            mounts[source] = target
    return mounts


def _repository_file(source: str, pattern: str = "file") -> Any:
    """The file (or the directory's files) a mount's source names, or a skip naming it."""
    path = DEPLOY / source
    relative = path.relative_to(ROOT)
    if not path.exists():
        pytest.skip(f"{relative} is not written yet (it comes with the metrics)")
    if pattern == "file":
        assert path.is_file(), relative
        return path
    assert path.is_dir(), relative
    files = sorted(path.glob(pattern))
    if not files:
        pytest.skip(f"{relative} holds no {pattern} yet (it comes with the metrics)")
    return files


def test_the_default_profile_is_the_database_and_the_gateway() -> None:
    services = _services()
    default = {name for name, service in services.items() if "profiles" not in service}
    assert default == DEFAULT_SERVICES
    profiled = {
        name: service["profiles"] for name, service in services.items() if name not in default
    }
    assert profiled == {name: [PROFILE] for name in PROFILE_SERVICES}
    # Nothing started by default waits for, or mounts, what the profile adds.
    for name in DEFAULT_SERVICES:
        assert not set(services[name].get("depends_on", {})) & PROFILE_SERVICES, name
        assert not any("observability" in v for v in services[name].get("volumes", [])), name


def test_every_published_port_is_on_the_host_loopback() -> None:
    published = {
        name: port for name, service in _services().items() for port in service.get("ports", [])
    }
    assert set(published) == {"gateway"} | PROFILE_SERVICES
    for name, service in _services().items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
            # The metrics stay inside the compose network: Prometheus scrapes them there.
            assert not port.endswith(":9464"), (name, port)


def test_the_gateway_serves_metrics_to_the_compose_network() -> None:
    environment = _services()["gateway"]["environment"]
    assert environment["MAM__METRICS__LISTEN"] == "0.0.0.0:9464"
    # Plain HTTP off loopback must be acknowledged, or the gateway refuses to start
    # (test_deploy_files.py loads the configuration with these variables).
    assert environment["MAM__METRICS__PLAINTEXT_OFF_LOOPBACK"] == "true"


@pytest.mark.parametrize("service", sorted(PROFILE_SERVICES))
def test_the_observability_containers_run_as_their_images_users_not_root(service: str) -> None:
    user, _, group = _services()[service]["user"].partition(":")
    assert user.isdigit() and int(user) != 0 and group.isdigit()
    assert "@sha256:" in _services()[service]["image"]


def test_grafanas_admin_password_is_a_file() -> None:
    compose = _compose()
    grafana = compose["services"]["grafana"]
    assert compose["secrets"]["grafana_admin_password"] == {
        "file": "./secrets/grafana_admin_password"
    }
    assert grafana["secrets"] == ["grafana_admin_password"]
    environment = grafana["environment"]
    assert environment["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in environment


def test_the_profile_mounts_the_observability_files_read_only() -> None:
    mounted = {**_bind_mounts("prometheus"), **_bind_mounts("grafana")}
    assert set(mounted) == set(MOUNTED)
    for name in PROFILE_SERVICES:
        for volume in _services()[name]["volumes"]:
            assert not volume.startswith(".") or volume.endswith(":ro"), volume


@pytest.mark.parametrize("source", sorted(MOUNTED))
def test_each_mounted_file_is_in_the_repository(source: str) -> None:
    _repository_file(source, MOUNTED[source])


def test_prometheus_scrapes_the_gateway_and_loads_the_alerts() -> None:
    config = yaml.safe_load(_repository_file("./observability/prometheus.yml").read_text())
    targets = [
        target
        for job in config.get("scrape_configs", [])
        for static in job.get("static_configs", [])
        for target in static.get("targets", [])
    ]
    assert "gateway:9464" in targets
    # rule_files resolve from the configuration file's directory in the container.
    mounts = _bind_mounts("prometheus")
    config_dir = PurePosixPath(mounts["./observability/prometheus.yml"]).parent
    rules = {str(config_dir / rule) for rule in config.get("rule_files", [])}
    assert mounts["./observability/alerts.yml"] in rules


def test_grafana_reads_prometheus_and_the_mounted_dashboards() -> None:
    assert _bind_mounts("grafana")["./observability/grafana/dashboards"] == GRAFANA_DASHBOARDS
    datasources = [
        source
        for path in _repository_file("./observability/grafana/provisioning/datasources", "*.yml")
        for source in yaml.safe_load(path.read_text()).get("datasources", [])
    ]
    assert any(s.get("url") == "http://prometheus:9090" for s in datasources), datasources
    providers = [
        provider
        for path in _repository_file("./observability/grafana/provisioning/dashboards", "*.yml")
        for provider in yaml.safe_load(path.read_text()).get("providers", [])
    ]
    paths = [provider.get("options", {}).get("path") for provider in providers]
    assert GRAFANA_DASHBOARDS in paths, paths
