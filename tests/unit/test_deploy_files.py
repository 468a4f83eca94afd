"""The container image and compose file configure the gateway with keys it accepts.

Docker is not run here; what can drift silently is checked instead: every MAM__ variable the
Dockerfile and compose.yaml set is a valid override of the configuration they ship, the image
alone refuses plaintext off loopback, and with compose's additions the configuration loads.
"""

from __future__ import annotations

import re

import pytest

from gateway.config import ConfigError, load_config
from tests.support import DEMO_CONFIG, ROOT

DOCKERFILE = ROOT / "deploy/Dockerfile"
COMPOSE = ROOT / "deploy/compose.yaml"


def _image_environment() -> dict[str, str]:
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.startswith("#")]
    return dict(re.findall(r"(MAM__\w+)=([^\s\\]+)", "\n".join(lines)))


def _compose_environment() -> dict[str, str]:
    found = re.findall(r"^\s+(MAM__\w+):\s*\"?([^\"\n]+)\"?$", COMPOSE.read_text(), re.M)
    # ${NAME:-default} as compose expands it with NAME unset.
    return {k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", v) for k, v in found}


def test_the_image_alone_refuses_plaintext_off_loopback() -> None:
    environment = _image_environment()
    assert environment["MAM__SERVER__LISTEN"] == "0.0.0.0:50051"
    with pytest.raises(ConfigError, match="configure TLS"):
        load_config(DEMO_CONFIG, environ=environment)


def test_compose_gives_a_configuration_the_gateway_accepts() -> None:
    environment = {**_image_environment(), **_compose_environment()}
    config = load_config(DEMO_CONFIG, environ=environment)
    assert config.database_url.startswith("postgresql+asyncpg://mam:")
    assert config.server.health_listen == "127.0.0.1:50052"
    assert config.server.plaintext_off_loopback
    assert str(config.simulator.state_path).startswith("/var/lib/mam-gateway/")


def test_the_healthcheck_and_entrypoint_use_the_shipped_configuration() -> None:
    text = DOCKERFILE.read_text()
    assert "COPY deploy/config/demo.toml /etc/mam-gateway/gateway.toml" in text
    assert '"--config", "/etc/mam-gateway/gateway.toml", "--probe"' in text
    assert re.search(r"^USER mam$", text, re.M)
