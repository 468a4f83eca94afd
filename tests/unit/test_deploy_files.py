"""The container image and compose file configure the gateway with keys it accepts.

Docker is not run here; what can drift silently is checked instead: every MAM__ variable the
Dockerfile and compose.yaml set is a valid override of the configuration they ship, the image
alone refuses plaintext off loopback, and with compose's additions the configuration loads.
And what a review would otherwise have to catch: base images pinned by digest, a non-root
numeric user, the light healthcheck, no default database password and secrets only in files,
read-only containers without capabilities, and a build context without local state or secrets.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from gateway.config import ConfigError, load_config
from tests.support import DEMO_CONFIG, ROOT

DOCKERFILE = ROOT / "deploy/Dockerfile"
COMPOSE = ROOT / "deploy/compose.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"
PASSWORD_SECRET = "/run/secrets/postgres_password"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def _image_environment() -> dict[str, str]:
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.startswith("#")]
    return dict(re.findall(r"(MAM__\w+)=([^\s\\]+)", "\n".join(lines)))


def _compose_environment() -> dict[str, str]:
    found = re.findall(r"^\s+(MAM__\w+):\s*\"?([^\"\n]+)\"?$", COMPOSE.read_text(), re.M)
    # ${NAME:-default} as compose expands it with NAME unset.
    return {k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", v) for k, v in found}


def _services() -> dict[str, str]:
    """Each service's block of compose.yaml by name (the keys two spaces in under services:)."""
    block = COMPOSE.read_text().split("\nservices:\n", 1)[1].split("\nvolumes:\n", 1)[0]
    return dict(re.findall(r"^  ([\w-]+):\n((?:(?:    .*)?\n)*)", block + "\n", re.M))


def test_the_image_alone_refuses_plaintext_off_loopback() -> None:
    environment = _image_environment()
    assert environment["MAM__SERVER__LISTEN"] == "0.0.0.0:50051"
    with pytest.raises(ConfigError, match="configure TLS"):
        load_config(DEMO_CONFIG, environ=environment)


def test_compose_gives_a_configuration_the_gateway_accepts(tmp_path: Path) -> None:
    environment = {**_image_environment(), **_compose_environment()}
    assert environment["MAM__DATABASE__PASSWORD_FILE"] == PASSWORD_SECRET
    # The secret as the container sees it, with a password the URL's syntax would break on.
    (tmp_path / "postgres_password").write_text("p@ss#1/x\n")
    environment["MAM__DATABASE__PASSWORD_FILE"] = str(tmp_path / "postgres_password")
    config = load_config(DEMO_CONFIG, environ=environment)
    url = make_url(config.database_url)
    assert (url.username, url.password, url.host, url.database) == (
        "mam",
        "p@ss#1/x",
        "postgres",
        "mam",
    )
    assert config.server.health_listen == "127.0.0.1:50052"
    assert config.server.plaintext_off_loopback
    assert str(config.simulator.state_path).startswith("/var/lib/mam-gateway/")


def test_the_healthcheck_and_entrypoint_use_the_shipped_configuration() -> None:
    text = DOCKERFILE.read_text()
    assert "COPY deploy/config/demo.toml /etc/mam-gateway/gateway.toml" in text
    assert 'ENTRYPOINT ["mam-gateway", "--config", "/etc/mam-gateway/gateway.toml"]' in text
    # The light probe, not `mam-gateway --probe`, which imports the whole gateway.
    healthcheck = re.search(r"^HEALTHCHECK .*\\\n\s+CMD (.*)$", text, re.M)
    assert healthcheck is not None
    assert healthcheck[1] == '["mam-probe", "--config", "/etc/mam-gateway/gateway.toml"]'
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["mam-probe"] == "gateway.probe:main"


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    users = re.findall(r"^USER (.+)$", DOCKERFILE.read_text(), re.M)
    assert users == ["10001:10001"]


def test_base_images_are_pinned_by_digest() -> None:
    text = DOCKERFILE.read_text()
    default = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert default is not None and default[1].startswith("python:3.12-slim-bookworm@")
    assert DIGEST.search(default[1])
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    images = re.findall(r"^\s+image: (\S+)$", COMPOSE.read_text(), re.M)
    pulled = [image for image in images if image != "mam-gateway:local"]  # built here
    assert pulled and all(DIGEST.search(image) for image in pulled)


def test_compose_has_no_default_password_and_passes_it_as_a_file_only() -> None:
    text = COMPOSE.read_text()
    # No ${VAR:-default} or ${VAR-default}: a missing value must stop compose, not be made up.
    assert not re.search(r"\$\{\w+:?-", text)
    secret = r"^secrets:\n(?:\s*#.*\n)*  postgres_password:\n    file: \./secrets/\S+$"
    assert re.search(secret, text, re.M)
    services = _services()
    postgres = services["postgres"]
    assert f"POSTGRES_PASSWORD_FILE: {PASSWORD_SECRET}" in postgres
    assert not re.search(r"POSTGRES_PASSWORD:", postgres)
    for name, block in services.items():
        # The database's password to the two that use the database, to no other service
        # (Grafana's own is a secret of its own: tests/unit/test_compose_observability.py).
        gets_it = re.search(r"^    secrets:\n      - postgres_password$", block, re.M)
        assert bool(gets_it) == (name in ("postgres", "gateway")), name
        assert "PASSWORD=" not in block and ":${" not in block, name
    url = _compose_environment()["MAM__DATABASE__URL"]
    assert make_url(url).password is None


@pytest.mark.parametrize("service", ["postgres", "gateway", "prometheus", "grafana"])
def test_each_container_is_read_only_without_capabilities(service: str) -> None:
    block = _services()[service]
    assert re.search(r"^    read_only: true$", block, re.M)
    assert re.search(r"^    cap_drop: \[ALL\]$", block, re.M)
    assert re.search(r"^    security_opt:\n      - no-new-privileges:true$", block, re.M)


def _docker_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match with `**`) as a regular expression."""
    out = ""
    for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern.strip("/")):
        out += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
            token, re.escape(token)
        )
    return re.compile(out + "$")


def _sent_to_the_builder(path: str) -> bool:
    """Whether the build context holds `path`: the last pattern matching it or one of its
    parent directories decides, `!` letting it in again."""
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    prefixes = ["/".join(path.split("/")[: i + 1]) for i in range(path.count("/") + 1)]
    sent = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _docker_pattern(pattern.removeprefix("!"))
        if any(regex.match(prefix) for prefix in prefixes):
            sent = negated
    return sent


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        ".venv/bin/python",
        "var/admin.key",
        "var/mam-gateway.db",
        "var/sim-broker.db",
        "deploy/secrets/postgres_password",
        "gateway/__pycache__/cli.cpython-312.pyc",
        "tests/support.py",
    ],
)
def test_the_build_context_leaves_out_local_state_and_secrets(path: str) -> None:
    assert not _sent_to_the_builder(path)


def test_the_build_context_holds_what_the_image_copies() -> None:
    copies = re.findall(r"^COPY (?!--from)(.+)$", DOCKERFILE.read_text(), re.M)
    sources = [source for line in copies for source in line.split()[:-1]]
    assert "gateway" in sources and "uv.lock" in sources
    for source in sources:
        path = f"{source}/cli.py" if source == "gateway" else source
        assert _sent_to_the_builder(path), source
