"""What the configuration checks beyond types: each key named in its own errors, the demo file
documenting every key, the MT4 bridge's admission limits, a database password from a file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from gateway.config import ConfigError, GatewayFile, load_config
from gateway.config.tables import unset_keys
from gateway.terminals.mt4 import BridgeSettings
from tests.support import DEMO_CONFIG

# Keys the demo file documents in comments only: tables of their own per entry.
DOCUMENTED_IN_COMMENTS = {
    "mt5.terminals": "[[mt5.terminals]]",
    "simulator.symbols": "[simulator.symbols.",
}


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MAM__MT4_BRIDGE__LISTEN": "nonsense"}, "mt4_bridge.listen: expected HOST:PORT"),
        ({"MAM__SERVER__HEALTH_LISTEN": "nonsense"}, "server.health_listen: expected HOST:PORT"),
    ],
)
def test_a_bad_listen_address_names_its_own_key(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(DEMO_CONFIG, environ=environ)
    assert message in str(caught.value)
    assert "server.listen" not in str(caught.value)


def test_the_demo_file_sets_every_key_the_configuration_reads() -> None:
    """The file says it documents every key: each key the models declare is in it, so an
    operator copying it sees them all (TLS, the probe endpoint and the MT4 bridge were
    missing)."""
    load_config(DEMO_CONFIG, environ={})
    text = DEMO_CONFIG.read_text()
    absent = unset_keys(GatewayFile, tomllib.loads(text))
    for key, mention in DOCUMENTED_IN_COMMENTS.items():
        assert key in absent and mention in text
    # Optional per demo account, told once above the accounts.
    leverage = {key for key in absent if key.startswith("demo.accounts[")}
    assert leverage == {f"demo.accounts[{i}].leverage" for i in range(20)}
    assert "leverage (default 100)" in text
    assert sorted(set(absent) - set(DOCUMENTED_IN_COMMENTS) - leverage) == []
    assert "MAM_MT4_TOKEN_<login>" in text


def test_the_mt4_bridge_admission_limits_default_to_the_bridges_own() -> None:
    bridge = load_config(DEMO_CONFIG, environ={}).mt4_bridge
    defaults = BridgeSettings()
    assert bridge.hello_timeout_seconds == defaults.hello_timeout_s
    assert bridge.hello_max_frame_bytes == defaults.hello_max_frame_bytes
    assert bridge.max_pending_connections == defaults.max_pending_connections
    assert bridge.hello_failures_per_address == defaults.failures.burst
    assert bridge.hello_failure_refill_seconds == defaults.failures.refill_s


def test_the_mt4_bridge_admission_limits_come_from_the_mt4_bridge_section() -> None:
    bridge = load_config(
        DEMO_CONFIG,
        environ={
            "MAM__MT4_BRIDGE__HELLO_TIMEOUT_SECONDS": "2.5",
            "MAM__MT4_BRIDGE__HELLO_MAX_FRAME_BYTES": "2048",
            "MAM__MT4_BRIDGE__MAX_PENDING_CONNECTIONS": "16",
            "MAM__MT4_BRIDGE__HELLO_FAILURES_PER_ADDRESS": "3",
            "MAM__MT4_BRIDGE__HELLO_FAILURE_REFILL_SECONDS": "30",
        },
    ).mt4_bridge
    assert (bridge.hello_timeout_seconds, bridge.hello_max_frame_bytes) == (2.5, 2048)
    assert bridge.max_pending_connections == 16
    assert (bridge.hello_failures_per_address, bridge.hello_failure_refill_seconds) == (3, 30.0)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"MAM__MT4_BRIDGE__HELLO_TIMEOUT_SECONDS": "0"},
            "mt4_bridge.hello_timeout_seconds: must be greater than 0",
        ),
        (
            {"MAM__MT4_BRIDGE__MAX_PENDING_CONNECTIONS": "0"},
            "mt4_bridge.max_pending_connections: must be greater than 0",
        ),
        (
            {"MAM__MT4_BRIDGE__HELLO_FAILURES_PER_ADDRESS": "1.5"},
            "mt4_bridge.hello_failures_per_address: expected int",
        ),
        (
            {"MAM__MT4_BRIDGE__HELLO_FAILURE_REFILL_SECONDS": "-1"},
            "mt4_bridge.hello_failure_refill_seconds: must be greater than 0",
        ),
        (
            {"MAM__MT4_BRIDGE__HELLO_MAX_FRAME_BYTES": "100"},
            "mt4_bridge.hello_max_frame_bytes: must be from 1024",
        ),
        (
            {
                "MAM__MT4_BRIDGE__HELLO_MAX_FRAME_BYTES": "8192",
                "MAM__MT4_BRIDGE__MAX_FRAME_BYTES": "4096",
            },
            "mt4_bridge.hello_max_frame_bytes: must be from 1024",
        ),
    ],
)
def test_bad_mt4_bridge_admission_limits_name_the_key_at_fault(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(DEMO_CONFIG, environ=environ)
    assert message in str(caught.value)


def test_a_database_password_from_a_file_may_hold_any_character(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("p@ss#1/x:%?\n")
    config = load_config(
        DEMO_CONFIG,
        environ={
            "MAM__DATABASE__URL": "postgresql+asyncpg://mam@db.internal:5432/mam",
            "MAM__DATABASE__PASSWORD_FILE": str(tmp_path / "password"),
        },
    )
    url = make_url(config.database_url)  # as SQLAlchemy (hence asyncpg) reads it
    assert (url.username, url.password) == ("mam", "p@ss#1/x:%?")
    assert (url.host, url.port, url.database) == ("db.internal", 5432, "mam")


def test_a_relative_password_file_is_found_beside_the_configuration(tmp_path: Path) -> None:
    (tmp_path / "gateway.toml").write_text(DEMO_CONFIG.read_text())
    (tmp_path / "db-password").write_text("secret")
    config = load_config(
        tmp_path / "gateway.toml",
        environ={
            "MAM__DATABASE__URL": "postgresql+asyncpg://mam@db:5432/mam",
            "MAM__DATABASE__PASSWORD_FILE": "db-password",
        },
    )
    assert make_url(config.database_url).password == "secret"


@pytest.mark.parametrize(
    ("url", "content", "message"),
    [
        ("sqlite+aiosqlite:///var/x.db", "S3cr3t-from-file", "only for a postgresql+asyncpg://"),
        ("postgresql+asyncpg://mam@db:5432/mam", "\n", "is empty"),
        ("postgresql+asyncpg://db:5432/mam", "S3cr3t-from-file", "database.url names no user"),
        (
            "postgresql+asyncpg://mam:S3cr3t-in-url@db:5432/mam",
            "S3cr3t-from-file",
            "holds a password already",
        ),
        ("postgresql+asyncpg://mam@db:5432/mam", None, "cannot read"),
    ],
)
def test_a_database_password_file_that_cannot_be_used_is_refused(
    tmp_path: Path, url: str, content: str | None, message: str
) -> None:
    if content is not None:
        (tmp_path / "password").write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_config(
            DEMO_CONFIG,
            environ={
                "MAM__DATABASE__URL": url,
                "MAM__DATABASE__PASSWORD_FILE": str(tmp_path / "password"),
            },
        )
    assert "database.password_file: " in str(caught.value)
    assert message in str(caught.value)
    assert "S3cr3t" not in str(caught.value)
