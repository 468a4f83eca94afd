"""The MT5 worker process: a call in flight when it dies is an unknown outcome, and the next call
finds a new worker (which finds the broker's books as they were)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.domain import retcodes
from gateway.domain.orders import Side
from gateway.terminals.mt5 import ModuleSpec, Mt5Terminal
from gateway.terminals.mt5.worker import WorkerRunner
from gateway.terminals.protocol import OrderRequest, TerminalError, TradeAction
from tests.contract.backends import (
    WORKER_START_METHOD,
    FreshAccount,
    emulator_config,
    mt5_settings,
)

D = Decimal


def buy(volume: str, tag: str, price: Decimal) -> OrderRequest:
    return OrderRequest(
        TradeAction.DEAL, "EURUSD", Side.BUY, D(volume), tag, 7, price=price, deviation_points=20
    )


def runner_of(terminal: Mt5Terminal) -> WorkerRunner:
    runner = terminal.runner
    assert isinstance(runner, WorkerRunner)
    return runner


async def until(condition: Callable[[], bool]) -> None:
    """Waits (bounded by the test timeout) until `condition()` holds."""
    # The condition lies in another process or thread: there is no event to wait on.
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.01)


def worker_terminal(
    state_path: Path | None, start_method: str, call_timeout_s: float = 90.0
) -> Mt5Terminal:
    config = emulator_config(FreshAccount(), state_path=state_path)
    settings = replace(mt5_settings(ModuleSpec.emulator(config)), call_timeout_s=call_timeout_s)
    return Mt5Terminal.in_worker_process("acc-worker", settings, start_method=start_method)


async def test_a_worker_killed_mid_call_is_an_unknown_outcome_then_restarts(
    tmp_path: Path,
) -> None:
    # Spawned, as in production; the books in a state file outlive the worker.
    terminal = worker_terminal(tmp_path / "broker.db", "spawn")
    try:
        quote = await terminal.quote("EURUSD")
        assert (await terminal.send(buy("0.10", "mam:W1", quote.ask))).retcode == retcodes.DONE
        runner = runner_of(terminal)
        first_pid = runner.pid
        assert first_pid is not None
        marker = tmp_path / "in-flight"
        # The order_send below executes, then blocks until killed.
        await terminal.call_module(
            "emulator_hang_next_call",
            started=str(marker),
            executes=True,
            function_name="order_send",
        )
        sending = asyncio.create_task(terminal.send(buy("0.20", "mam:W2", quote.ask)))
        await until(marker.exists)
        os.kill(first_pid, signal.SIGKILL)
        with pytest.raises(TerminalError, match="outcome unknown"):
            await sending

        # The engine's next step: reconcile by tag. A new worker answers, from the same books.
        found = await terminal.find_by_tag("mam:W2")
        assert [d.volume for d in found.deals] == [D("0.20")]
        assert runner.starts == 2
        assert runner.pid != first_pid
        assert sorted(p.volume for p in await terminal.positions()) == [D("0.10"), D("0.20")]
    finally:
        await terminal.close()


async def test_a_worker_that_dies_between_calls_is_replaced_unnoticed(tmp_path: Path) -> None:
    terminal = worker_terminal(tmp_path / "broker.db", WORKER_START_METHOD)
    try:
        balance = (await terminal.account_info()).balance
        runner = runner_of(terminal)
        assert runner.pid is not None
        os.kill(runner.pid, signal.SIGKILL)
        await until(lambda: not runner.running)
        assert (await terminal.account_info()).balance == balance
        assert runner.starts == 2
    finally:
        await terminal.close()


async def test_a_hung_worker_is_killed_after_the_call_timeout(tmp_path: Path) -> None:
    terminal = worker_terminal(None, WORKER_START_METHOD, call_timeout_s=0.5)
    try:
        await terminal.ensure_connected()
        await terminal.call_module("emulator_hang_next_call")
        with pytest.raises(TerminalError, match="no answer"):
            await terminal.account_info()
        # A new worker: a health check alone does not initialize (launch) the terminal.
        assert not (await terminal.health()).connected
        await terminal.ensure_connected()
        assert (await terminal.health()).connected
        assert runner_of(terminal).starts == 2
    finally:
        await terminal.close()


async def test_a_module_that_cannot_be_loaded_leaves_the_worker_answering(
    tmp_path: Path,
) -> None:
    settings = mt5_settings(ModuleSpec("gateway.terminals.mt5.no_such_module"))
    terminal = Mt5Terminal.in_worker_process(
        "acc-missing", settings, start_method=WORKER_START_METHOD
    )
    try:
        with pytest.raises(TerminalError, match="cannot load"):
            await terminal.account_info()
        health = await terminal.health()
        assert not health.connected
        assert "no_such_module" in health.detail
        assert runner_of(terminal).starts == 1
    finally:
        await terminal.close()


async def test_closing_stops_the_worker_process(tmp_path: Path) -> None:
    terminal = worker_terminal(None, WORKER_START_METHOD)
    await terminal.ensure_connected()
    pid = runner_of(terminal).pid
    assert pid is not None
    await terminal.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(TerminalError):
        await terminal.quote("EURUSD")


async def test_a_terminal_is_claimed_by_one_worker_and_freed_by_its_death(tmp_path: Path) -> None:
    folder = tmp_path / "MT5-50001"
    folder.mkdir()
    path = str(folder / "terminal64.exe")
    # Two workers given the same terminal64.exe (two mam-worker processes on one host, or one
    # path listed twice): the package would let each switch the terminal's account.
    config = replace(emulator_config(FreshAccount()), terminal_path=path)
    settings = replace(mt5_settings(ModuleSpec.emulator(config)), terminal_path=path)
    first = Mt5Terminal.in_worker_process("acc-1", settings, start_method=WORKER_START_METHOD)
    second = Mt5Terminal.in_worker_process("acc-2", settings, start_method=WORKER_START_METHOD)
    try:
        await first.ensure_connected()
        with pytest.raises(TerminalError, match="in use by another session"):
            await second.ensure_connected()
        assert "in use" in (await second.health()).detail
        runner = runner_of(first)
        assert runner.pid is not None
        os.kill(runner.pid, signal.SIGKILL)
        await until(lambda: not runner.running)
        # The operating system dropped the dead worker's claim.
        await second.ensure_connected()
        assert (await second.account_info()).balance > 0
    finally:
        await first.close()
        await second.close()
