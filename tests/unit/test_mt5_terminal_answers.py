"""The adapter reads a real terminal's answers as they are meant: a symbol is put in Market Watch
before its spec is read, "none" may come as None, a generic failure is not "no such symbol", a
broken link is shut down before initializing again, and a health check neither launches a
terminal nor overlooks what stops it trading."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.domain import retcodes
from gateway.terminals.mt5 import constants
from gateway.terminals.mt5.emulator import EmptyAnswer, MetaTrader5Emulator, TerminalBehaviour
from gateway.terminals.protocol import SymbolNotFound, TerminalError
from tests.unit.sim_helpers import EURUSD
from tests.unit.test_mt5_adapter import buy, emulated, session_over


def test_a_symbol_outside_market_watch_is_selected_before_its_spec_is_read() -> None:
    # Outside Market Watch from the start; the terminal has no tick value for it until it is in.
    mt5, _ = emulated(behaviour=TerminalBehaviour(unselected_symbols_lack_data=True))
    session = session_over(mt5)
    assert session.symbol_spec("EURUSD") == EURUSD


@pytest.mark.parametrize("empty", [EmptyAnswer.NONE_NOT_FOUND, EmptyAnswer.NONE_WITH_SUCCESS])
def test_none_for_none_is_an_empty_answer(empty: EmptyAnswer) -> None:
    mt5, _ = emulated(behaviour=TerminalBehaviour(empty_answer=empty))
    session = session_over(mt5)
    since = datetime.now(UTC) - timedelta(days=1)
    assert (session.positions(), session.pending_orders(), session.deals(since)) == ([], [], [])
    found = session.find_by_tag("mam:nothing")
    assert (found.orders, found.positions, found.deals) == ((), (), ())


def test_a_generic_failure_is_not_taken_for_an_unknown_symbol() -> None:
    mt5, _ = emulated()
    session = session_over(mt5)
    session.connect()
    # "Terminal: Call failed": the terminal not ready. SymbolNotFound would tell the engine the
    # broker has no EURUSD.
    mt5.emulator_ipc_error_next(constants.RES_E_FAIL)
    with pytest.raises(TerminalError, match="Call failed"):
        session.symbol_spec("EURUSD")
    assert session.symbol_spec("EURUSD") == EURUSD


def test_an_unknown_symbol_answered_with_a_generic_failure_is_not_found() -> None:
    mt5, _ = emulated(behaviour=TerminalBehaviour(unknown_symbol_code=constants.RES_E_FAIL))
    with pytest.raises(SymbolNotFound):
        session_over(mt5).symbol_spec("NOSUCH")


class Recording:
    """The module, with the names of the functions called on it."""

    def __init__(self, mt5: MetaTrader5Emulator) -> None:
        self._mt5 = mt5
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        return getattr(self._mt5, name)


def test_a_broken_link_is_shut_down_before_initializing_again() -> None:
    mt5, _ = emulated()
    module = Recording(mt5)
    session = session_over(module)
    session.connect()
    mt5.emulator_close_terminal()
    with pytest.raises(TerminalError, match="No IPC connection"):
        session.positions()
    module.calls.clear()
    assert session.positions() == []
    assert module.calls[:2] == ["shutdown", "initialize"]


def test_a_health_check_never_initializes_the_terminal() -> None:
    mt5, _ = emulated()
    module = Recording(mt5)
    session = session_over(module)
    health = session.health()
    assert not health.connected and "not connected yet" in health.detail
    assert "initialize" not in module.calls
    session.connect()
    mt5.emulator_close_terminal()
    with pytest.raises(TerminalError):
        session.account_info()
    module.calls.clear()
    assert not session.health().connected
    assert "initialize" not in module.calls


@pytest.mark.parametrize(
    ("control", "said"),
    [
        ("emulator_set_trade_api_disabled", "Python API"),
        ("emulator_set_expert_trading", "automated trading"),
    ],
)
def test_health_tells_what_makes_the_terminal_refuse_orders(control: str, said: str) -> None:
    mt5, _ = emulated()
    session = session_over(mt5)
    session.connect()
    assert "refused" not in session.health().detail
    getattr(mt5, control)(control == "emulator_set_trade_api_disabled")
    health = session.health()
    assert health.connected and "orders are refused" in health.detail and said in health.detail


def test_orders_through_a_disabled_python_api_are_refused_not_unknown() -> None:
    mt5, _ = emulated()
    mt5.emulator_set_trade_api_disabled(True)
    result = session_over(mt5).send(buy())
    assert result.retcode == retcodes.CLIENT_DISABLES_AT
    assert mt5.positions_get() == ()
