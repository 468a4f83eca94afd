from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
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
        ({"MAM__SIMULATOR__SEED": "abc"}, "simulator.seed: expected int"),
    ],
)
def test_bad_settings_are_refused_with_the_key_at_fault(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(DEMO_CONFIG, environ=environ)
    assert message in str(caught.value)
    assert str(DEMO_CONFIG) in str(caught.value)


def test_float_volumes_in_the_file_are_refused(tmp_path: Path) -> None:
    text = DEMO_CONFIG.read_text().replace('volume_step = "0.01"', "volume_step = 0.01", 1)
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"symbols\[0\].volume_step: write decimals as strings"):
        load_config(path, environ={})


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml", environ={})
