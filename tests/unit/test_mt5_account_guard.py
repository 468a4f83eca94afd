"""Orders reach the session's account or none: each terminal has its own terminal64.exe, claimed
by one session, and the terminal's account (login and server) is checked on connecting, before
every send and before every reconciliation. The emulator switches accounts as the package does
(initialize(login=) and login() log the terminal in to another account it knows)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.domain import retcodes
from gateway.terminals.mt5 import Mt5Settings
from gateway.terminals.mt5.emulator.config import DEFAULT_SERVER
from gateway.terminals.protocol import TerminalError
from tests.unit.sim_helpers import HEDGING, NETTING
from tests.unit.test_mt5_adapter import buy, emulated, session_over, terminal_path


def test_a_terminal_path_is_required_and_absolute() -> None:
    with pytest.raises(TypeError, match="terminal_path"):
        Mt5Settings(login=7)  # type: ignore[call-arg]
    for path in ("", "terminal64.exe", "MT5\\7\\terminal64.exe"):
        with pytest.raises(ValueError, match="terminal_path"):
            Mt5Settings(login=7, terminal_path=path)
    with pytest.raises(ValueError, match="terminal_path"):
        Mt5Settings.from_table({"portable": True}, login=7, server="Broker-Live")
    for path in ("C:\\MT5\\7\\terminal64.exe", "/opt/mt5/7/terminal64.exe"):
        assert Mt5Settings(login=7, terminal_path=path).terminal_path == path


def test_a_second_session_on_one_terminal_is_refused_and_the_first_keeps_its_account(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "MT5-shared"
    folder.mkdir()
    shared = str(folder / "terminal64.exe")
    mt5, _ = emulated()
    mt5.emulator_add_login(NETTING, password="pw")
    first = session_over(mt5, terminal_path=shared)
    first.connect()
    second = session_over(mt5, login=NETTING, terminal_path=shared)
    with pytest.raises(TerminalError, match="in use by another session"):
        second.connect()
    # Its orders are refused before anything leaves (a refusal, not an unknown outcome).
    refused = second.send(buy(tag="mam:L1"))
    assert (refused.retcode, "in use" in refused.text) == (retcodes.CONNECTION, True)
    # The terminal was never switched: the first session trades on its own account.
    assert first.send(buy()).retcode == retcodes.DONE
    assert [p.volume for p in first.positions()] == [buy().volume]
    assert not second.health().connected
    first.close()
    # Released: the terminal is the second session's now.
    second.connect()
    assert second.account_info().login == NETTING


def test_a_terminal_switched_to_another_account_gets_no_order() -> None:
    mt5, _ = emulated()
    mt5.emulator_add_login(NETTING, password="pw")
    ours = session_over(mt5)
    ours.connect()
    # Another program given the same terminal (no lock: a path outside this file system) logs
    # it in to its own account, as initialize(login=) does.
    theirs = session_over(mt5, login=NETTING, terminal_path=terminal_path(HEDGING))
    theirs.connect()
    assert mt5.account_info().login == NETTING

    refused = ours.send(buy(tag="mam:G1"))
    assert refused.retcode == retcodes.CONNECTION
    assert "logged in to account 2" in refused.text
    assert mt5.positions_get() == ()  # nothing on the other account

    # The next call initializes again, with this session's login: the order goes to its account.
    assert ours.send(buy(tag="mam:G1")).retcode == retcodes.DONE
    assert mt5.account_info().login == HEDGING
    assert [p.comment for p in ours.positions()] == ["mam:G1"]


def test_a_terminal_switched_to_another_server_gets_no_order() -> None:
    mt5, _ = emulated()
    # The same login on a demo server: another account altogether.
    mt5.emulator_add_login(HEDGING, password="pw", server="Broker-Demo")
    ours = session_over(mt5, server=DEFAULT_SERVER)
    ours.connect()
    assert mt5.login(HEDGING, password="pw", server="Broker-Demo")
    refused = ours.send(buy())
    assert refused.retcode == retcodes.CONNECTION
    assert "'Broker-Demo'" in refused.text
    assert mt5.positions_get() == ()


def test_a_switched_terminal_is_never_searched_for_a_tag() -> None:
    mt5, _ = emulated()
    mt5.emulator_add_login(NETTING, password="pw")
    ours = session_over(mt5)
    assert ours.send(buy(tag="mam:G2")).retcode == retcodes.DONE
    assert mt5.login(NETTING, password="pw")
    # The other account holds nothing under the tag: "not found" there would send it again.
    with pytest.raises(TerminalError, match="logged in to account 2"):
        ours.find_by_tag("mam:G2")
    # The next call logs the terminal back in to the session's account, and searches there.
    assert len(ours.find_by_tag("mam:G2").deals) == 1
    assert mt5.login(NETTING, password="pw")
    with pytest.raises(TerminalError, match="logged in to account 2"):
        ours.positions()
