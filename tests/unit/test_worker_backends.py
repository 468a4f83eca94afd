"""The worker's MT5 backend: an [[terminals]] entry becomes an MT5 terminal in its own worker
process, with the options the gateway's [[mt5.terminals]] tables take."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.domain.accounts import Platform
from gateway.terminals.mt5 import Mt5Terminal
from gateway.terminals.remote.worker_hub import BrokerLogin
from gateway.worker.backends import load_mt5_backend
from gateway.worker.config import TerminalEntry, WorkerConfigError


async def test_an_mt5_entry_opens_a_terminal_in_a_worker_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MT5_PASSWORD_7001", "secret")
    backend = load_mt5_backend({}, tmp_path)
    login = BrokerLogin(7001, "Broker-Live")
    terminal = backend.open(
        TerminalEntry(
            login,
            Platform.MT5,
            "mt5",
            {"password_env": "MT5_PASSWORD_7001", "portable": True, "terminal_path": "C:/t.exe"},
        )
    )
    try:
        # Built without I/O: its worker process starts on the first call.
        assert isinstance(terminal, Mt5Terminal)
        assert terminal.account_id == str(login)
    finally:
        await terminal.close()
        backend.close()


def test_bad_mt5_options_name_the_key(tmp_path: Path) -> None:
    backend = load_mt5_backend({}, tmp_path)
    entry = TerminalEntry(BrokerLogin(7002, "B"), Platform.MT5, "mt5", {"colour": "blue"})
    with pytest.raises(WorkerConfigError, match="colour"):
        backend.open(entry)
    with pytest.raises(WorkerConfigError, match=r"backends\.mt5\.x"):
        load_mt5_backend({"x": 1}, tmp_path)
