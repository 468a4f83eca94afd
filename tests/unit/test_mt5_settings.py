"""An MT5 terminal's settings from a configuration table: secrets from the environment or a
file only, every key checked."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gateway.terminals.mt5 import ModuleSpec, Mt5Settings


def test_a_full_table() -> None:
    settings = Mt5Settings.from_table(
        {
            "terminal_path": "C:\\MT5\\1001\\terminal64.exe",
            "portable": True,
            "password_env": "MT5_PASSWORD_1001",
            "timeout_ms": 30_000,
            "server_utc_offset_minutes": 120,
            "history_lookback_days": 7,
            "call_timeout_seconds": 45,
        },
        login=1001,
        server="Broker-Live",
        environ={"MT5_PASSWORD_1001": "s3cret"},
    )
    assert settings == Mt5Settings(
        login=1001,
        server="Broker-Live",
        password="s3cret",
        terminal_path="C:\\MT5\\1001\\terminal64.exe",
        portable=True,
        timeout_ms=30_000,
        module=ModuleSpec("MetaTrader5"),
        server_utc_offset=timedelta(hours=2),
        history_lookback=timedelta(days=7),
        call_timeout_s=45.0,
    )
    assert "s3cret" not in repr(settings)


def test_defaults_and_a_password_file(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("from-file\n", encoding="utf-8")
    settings = Mt5Settings.from_table(
        {
            "terminal_path": "C:\\MT5\\7\\terminal64.exe",
            "password_file": "secret.txt",
            "module": "mt5linux",
            "mt5linux_port": 18813,
        },
        login=7,
        server="",
        base_dir=tmp_path,
    )
    assert (settings.password, settings.portable, settings.deal_wait_s) == ("from-file", False, 2.0)
    assert settings.module == ModuleSpec.mt5linux("localhost", 18813)
    assert settings.module.target == "mt5linux:MetaTrader5"


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"password": "plain"}, "password"),
        ({"password_env": "MISSING"}, "password_env"),
        ({"password_env": "A", "password_file": "b"}, "password_env, password_file"),
        ({"password_file": "no-such-file"}, "password_file"),
        ({"portable": 1}, "portable"),
        ({"timeout_ms": True}, "timeout_ms"),
        ({"timeout_ms": 0}, "timeout_ms"),
        ({"module": "MetaTrader4"}, "module"),
        ({"server_utc_offset_minutes": "120"}, "server_utc_offset_minutes"),
    ],
)
def test_a_bad_table_names_the_key(tmp_path: Path, table: dict[str, object], key: str) -> None:
    table = {"terminal_path": "C:\\MT5\\1\\terminal64.exe", **table}
    with pytest.raises(ValueError, match=key):
        Mt5Settings.from_table(table, login=1, server="", environ={"A": "x"}, base_dir=tmp_path)
