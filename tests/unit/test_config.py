from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.terminals.sim import (
    FaultSettings,
    LatencyDistribution,
    LatencySettings,
    SymbolRules,
    SymbolTradeMode,
    TradingSessions,
)
from tests.certificates import CertificateAuthority
from tests.support import DEMO_CONFIG


def test_demo_config_has_twenty_accounts_of_varied_equity_and_three_symbols() -> None:
    config = load_config(DEMO_CONFIG, environ={})
    assert config.server.listen == "127.0.0.1:50051"
    assert config.database_url.startswith("sqlite+aiosqlite:///var/")
    assert config.demo is not None and config.demo.group == "demo"
    balances = [a.initial_balance for a in config.demo.accounts]
    assert len(balances) == 20 and min(balances) == 500 and max(balances) == 250_000
    specs = config.symbol_specs
    assert set(specs) == {"EURUSD", "XAUUSD", "US500"}
    assert specs["EURUSD"].contract_size == Decimal(100000)
    assert specs["XAUUSD"].contract_size == Decimal(100)


def test_environment_overrides_the_file() -> None:
    config = load_config(
        DEMO_CONFIG,
        environ={"MAM__SERVER__LISTEN": "127.0.0.1:6000", "MAM__SIMULATOR__LATENCY_MS": "50"},
    )
    assert config.server.listen == "127.0.0.1:6000"
    assert config.simulator.latency_ms == 50


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MAM__SERVER__LISTEN": "nonsense"}, "server.listen: expected HOST:PORT"),
        ({"MAM__SERVER__LISTEN": "0.0.0.0:50051"}, "not a loopback address"),
        ({"MAM__DATABASE__URL": "mysql://x"}, "database.url"),
        ({"MAM__ENGINE__MAX_ATTEMPTS": "0"}, "engine.max_attempts: must be greater than 0"),
        ({"MAM__ENGINE__MAX_CONCURENCY": "5"}, "engine.max_concurency: unknown key"),
        (
            {"MAM__ENGINE__HISTORY_INTERVAL_SECONDS": "-1"},
            "engine.history_interval_seconds: must not be negative",
        ),
        ({"MAM__SIMULATOR__SEED": "abc"}, "simulator.seed: expected int"),
        ({"MAM__SERVER__TLS_CERT_FILE": "/nonexistent.pem"}, "both are required for TLS"),
        (
            {"MAM__SERVER__TLS_CERT_FILE": "/no.pem", "MAM__SERVER__TLS_KEY_FILE": "/no.key"},
            "server.tls_cert_file: no such file: /no.pem",
        ),
        ({"MAM__SERVER__HEALTH_LISTEN": "0.0.0.0:50052"}, "health_listen: must be a loopback"),
        ({"MAM__SERVER__PLAINTEXT_OFF_LOOPBACK": "1"}, "plaintext_off_loopback: expected bool"),
    ],
)
def test_bad_settings_are_refused_with_the_key_at_fault(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(DEMO_CONFIG, environ=environ)
    assert message in str(caught.value)
    assert str(DEMO_CONFIG) in str(caught.value)


def test_account_history_is_stored_every_minute_unless_turned_off() -> None:
    assert load_config(DEMO_CONFIG, environ={}).engine.history_interval_seconds == 60
    off = load_config(DEMO_CONFIG, environ={"MAM__ENGINE__HISTORY_INTERVAL_SECONDS": "0"})
    assert off.engine.history_interval_seconds == 0
    often = load_config(DEMO_CONFIG, environ={"MAM__ENGINE__HISTORY_INTERVAL_SECONDS": "2.5"})
    assert often.engine.history_interval_seconds == 2.5


def test_float_volumes_in_the_file_are_refused(tmp_path: Path) -> None:
    text = DEMO_CONFIG.read_text().replace('volume_step = "0.01"', "volume_step = 0.01", 1)
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"symbols\[0\].volume_step: write decimals as strings"):
        load_config(path, environ={})


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml", environ={})


def test_plaintext_off_loopback_is_an_explicit_choice() -> None:
    config = load_config(
        DEMO_CONFIG,
        environ={
            "MAM__SERVER__LISTEN": "0.0.0.0:50051",
            "MAM__SERVER__PLAINTEXT_OFF_LOOPBACK": "true",
            "MAM__SERVER__HEALTH_LISTEN": "127.0.0.1:50052",
        },
    )
    assert config.server.listen == "0.0.0.0:50051" and config.server.tls is None
    assert config.server.health_listen == "127.0.0.1:50052"


def test_tls_files_make_any_address_acceptable(tmp_path: Path) -> None:
    # Real files: their contents are checked (tests/integration/test_check_config.py).
    cert, key = CertificateAuthority.create(tmp_path).issue("server")
    config = load_config(
        DEMO_CONFIG,
        environ={
            "MAM__SERVER__LISTEN": "0.0.0.0:50051",
            "MAM__SERVER__TLS_CERT_FILE": str(cert),
            "MAM__SERVER__TLS_KEY_FILE": str(key),
        },
    )
    assert config.server.tls is not None
    assert config.server.tls.cert_file == cert
    assert config.server.tls.client_ca_file is None


def test_the_demo_simulator_is_in_memory_fault_free_with_a_fixed_latency() -> None:
    simulator = load_config(DEMO_CONFIG, environ={}).simulator
    assert simulator.state_path is None
    assert simulator.faults == FaultSettings()
    assert simulator.latency == LatencySettings(ms=20.0)
    assert simulator.rules_for("EURUSD") == SymbolRules()


def test_simulator_state_latency_and_faults_come_from_the_environment() -> None:
    simulator = load_config(
        DEMO_CONFIG,
        environ={
            "MAM__SIMULATOR__STATE_PATH": "/tmp/mam/broker.db",
            "MAM__SIMULATOR__LATENCY_DISTRIBUTION": "lognormal",
            "MAM__SIMULATOR__LATENCY_SIGMA": "0.5",
            "MAM__SIMULATOR__FAULTS__REQUOTE": "0.1",
            "MAM__SIMULATOR__FAULTS__HANG_EXECUTES": "true",
        },
    ).simulator
    assert simulator.state_path == Path("/tmp/mam/broker.db")
    assert simulator.latency == LatencySettings(LatencyDistribution.LOGNORMAL, ms=20.0, sigma=0.5)
    assert (simulator.faults.requote, simulator.faults.hang_executes) == (0.1, True)


def test_simulated_symbols_get_trade_modes_and_sessions(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        DEMO_CONFIG.read_text().replace(
            "[[symbols]]",
            '[simulator.symbols.US500]\ntrade_mode = "LONGONLY"\n'
            'sessions = ["Mon-Fri 13:30-20:00"]\n\n[[symbols]]',
            1,
        )
    )
    simulator = load_config(path, environ={}).simulator
    rules = simulator.rules_for("US500")
    assert rules.trade_mode is SymbolTradeMode.LONGONLY
    assert rules.sessions == TradingSessions.parse(["Mon-Fri 13:30-20:00"])
    assert simulator.rules_for("EURUSD") == SymbolRules()


def test_symbol_rules_from_the_environment_find_their_symbol_whatever_the_case() -> None:
    simulator = load_config(
        DEMO_CONFIG, environ={"MAM__SIMULATOR__SYMBOLS__XAUUSD__TRADE_MODE": "CLOSEONLY"}
    ).simulator
    assert simulator.rules_for("XAUUSD").trade_mode is SymbolTradeMode.CLOSEONLY


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MAM__SIMULATOR__LATENCY_DISTRIBUTION": "gamma"}, "simulator.latency_distribution"),
        ({"MAM__SIMULATOR__LATENCY_SD_MS": "-1"}, "simulator.latency_sd_ms: must not be neg"),
        (
            {"MAM__SIMULATOR__FAULTS__REQUOTE": "0.7", "MAM__SIMULATOR__FAULTS__HANG": "0.7"},
            "simulator.faults: fault probabilities must add up to at most 1",
        ),
        ({"MAM__SIMULATOR__FAULTS__REQUOTES": "0.1"}, "simulator.faults.requotes: unknown key"),
        ({"MAM__SIMULATOR__SYMBOLS__GBPUSD__TRADE_MODE": "FULL"}, "no [[symbols]] entry"),
        ({"MAM__SIMULATOR__SYMBOLS__EURUSD__TRADE_MODE": "SOME"}, "expected one of DISABLED"),
        (
            {"MAM__SIMULATOR__SYMBOLS__EURUSD__SESSIONS": '["Mon 09:00-08:00"]'},
            "simulator.symbols.eurusd.sessions: session 'Mon 09:00-08:00'",
        ),
    ],
)
def test_bad_simulator_settings_name_the_key_at_fault(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(DEMO_CONFIG, environ=environ)
    assert message in str(caught.value)


def test_requests_are_limited_to_4_mib_and_5000_items_a_repeated_field() -> None:
    server = load_config(DEMO_CONFIG, environ={}).server
    assert (server.max_request_bytes, server.max_repeated_items) == (4 * 1024 * 1024, 5_000)
    assert server.max_message_bytes == 16 * 1024 * 1024  # responses may be larger
    raised = load_config(
        DEMO_CONFIG,
        environ={
            "MAM__SERVER__MAX_REQUEST_BYTES": "8388608",
            "MAM__SERVER__MAX_REPEATED_ITEMS": "20000",
        },
    ).server
    assert (raised.max_request_bytes, raised.max_repeated_items) == (8 * 1024 * 1024, 20_000)


def test_authentication_throttles_come_from_the_auth_section() -> None:
    auth = load_config(DEMO_CONFIG, environ={}).auth
    assert (auth.failures_per_connection, auth.connection_failure_refill_seconds) == (5, 2.0)
    assert (auth.failures_per_address, auth.address_failure_refill_seconds) == (40, 0.2)
    assert (auth.verifications_per_second, auth.verification_burst) == (8.0, 32)
    changed = load_config(
        DEMO_CONFIG,
        environ={
            "MAM__AUTH__FAILURES_PER_CONNECTION": "3",
            "MAM__AUTH__VERIFICATIONS_PER_SECOND": "2.5",
        },
    ).auth
    assert (changed.failures_per_connection, changed.verifications_per_second) == (3, 2.5)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MAM__SERVER__MAX_REQUEST_BYTES": "0"}, "server.max_request_bytes: must be greater"),
        ({"MAM__SERVER__MAX_REPEATED_ITEMS": "-5"}, "server.max_repeated_items: must be greater"),
        ({"MAM__AUTH__FAILURES_PER_ADDRESS": "0"}, "auth.failures_per_address: must be greater"),
        (
            {"MAM__AUTH__CONNECTION_FAILURE_REFILL_SECONDS": "0"},
            "auth.connection_failure_refill_seconds: must be greater",
        ),
        ({"MAM__AUTH__VERIFICATION_BURST": "1.5"}, "auth.verification_burst: expected int"),
    ],
)
def test_bad_request_and_authentication_limits_name_the_key_at_fault(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(DEMO_CONFIG, environ=environ)
    assert message in str(caught.value)
