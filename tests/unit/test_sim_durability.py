"""The simulated broker's books outlive its process: what it executed is in its state file."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path

import pytest

from gateway.domain import retcodes
from gateway.domain.orders import OrderType, Side
from gateway.terminals.protocol import TerminalError, TradeAction
from gateway.terminals.sim import BrokerStateError, SimBroker, SimTerminal
from gateway.terminals.sim import state_file as state_file_module
from gateway.terminals.sim.state_file import BrokerStateFile
from tests.support import ROOT
from tests.unit.sim_helpers import (
    HEDGING,
    MONDAY_NOON,
    NETTING,
    Clock,
    D,
    deal,
    make_broker,
    on_ticket,
    pending,
    points,
)


def books(sim: SimBroker) -> object:
    """Everything a reconciliation can see, for both accounts."""
    return [
        (
            sim.account_info(login).balance,
            sorted(sim.positions(login), key=lambda p: p.ticket),
            sorted(sim.pending_orders(login), key=lambda o: o.ticket),
            sim.deals(login, MONDAY_NOON),
        )
        for login in (HEDGING, NETTING)
    ]


def trade_a_little_of_everything(sim: SimBroker, clock: Clock) -> None:
    _, ask, _ = sim.feed.bid_ask("EURUSD")
    opened = sim.execute(HEDGING, deal(Side.BUY, "0.30", tag="mam:1"))
    clock.advance(20)
    sim.execute(HEDGING, deal(Side.SELL, "0.10", tag="mam:2", position_ticket=opened.order_ticket))
    bid, _, _ = sim.feed.bid_ask("EURUSD")
    sltp = on_ticket(
        TradeAction.SLTP, position_ticket=opened.position_ticket, stop_loss=bid - points(100)
    )
    assert sim.execute(HEDGING, sltp).retcode == retcodes.DONE
    placed = sim.execute(
        HEDGING, pending(Side.BUY, OrderType.LIMIT, "0.20", ask - points(5_000), tag="mam:3")
    )
    sim.execute(HEDGING, pending(Side.SELL, OrderType.STOP, "0.20", bid - points(5_000)))
    sim.execute(HEDGING, on_ticket(TradeAction.REMOVE, order_ticket=placed.order_ticket))
    sim.execute(NETTING, deal(Side.BUY, "0.30", tag="mam:4"))
    clock.advance(20)
    sim.execute(NETTING, deal(Side.SELL, "0.50", tag="mam:5"))  # reverses


def test_reopening_the_state_file_restores_every_book(tmp_path: Path) -> None:
    state = tmp_path / "broker.db"
    clock = Clock()
    sim = make_broker(clock, state_path=state)
    trade_a_little_of_everything(sim, clock)
    before = books(sim)
    sim.close()

    reopened = make_broker(clock, state_path=state)
    assert books(reopened) == before
    assert reopened.account_info(HEDGING).balance != D(10_000)  # realized profit kept


def test_reattaching_an_account_leaves_it_untouched(tmp_path: Path) -> None:
    state = tmp_path / "broker.db"
    sim = make_broker(state_path=state)
    sim.execute(HEDGING, deal(Side.BUY, "0.10"))
    sim.close()
    reopened = make_broker(state_path=state, balance=D(1))
    info = reopened.account_info(HEDGING)
    assert info.balance == D(10_000) and len(reopened.positions(HEDGING)) == 1


def test_tickets_are_never_reused_after_a_reopen(tmp_path: Path) -> None:
    state = tmp_path / "broker.db"
    sim = make_broker(state_path=state)
    _, ask, _ = sim.feed.bid_ask("EURUSD")
    placed = sim.execute(HEDGING, pending(Side.BUY, OrderType.LIMIT, "0.10", ask - points(50)))
    # The highest ticket so far belongs to an order that no longer exists anywhere.
    sim.execute(HEDGING, on_ticket(TradeAction.REMOVE, order_ticket=placed.order_ticket))
    sim.close()
    reopened = make_broker(state_path=state)
    after = reopened.execute(HEDGING, deal(Side.BUY, "0.10"))
    assert after.order_ticket > placed.order_ticket


_KILLED_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from gateway.domain.orders import Side
    from tests.unit.sim_helpers import HEDGING, NETTING, deal, make_broker

    sim = make_broker(state_path=Path(sys.argv[1]))
    for n in range(int(sys.argv[2])):
        sim.execute(NETTING, deal(Side.BUY, "0.01", tag=f"mam:n{n}"))
    result = sim.execute(HEDGING, deal(Side.BUY, "0.10", tag="mam:last"))
    print(result.retcode, result.order_ticket, result.deal_ticket, flush=True)
    # Killed the instant the answer exists: no shutdown code, no close, no checkpoint.
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.parametrize("before", [0, 25])
def test_an_order_executed_right_before_a_sigkill_is_in_the_reopened_books(
    tmp_path: Path, before: int
) -> None:
    state = tmp_path / "broker.db"
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_CHILD, str(state), str(before)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    retcode, order_ticket, deal_ticket = map(int, child.stdout.split())
    assert retcode == retcodes.DONE

    reopened = make_broker(state_path=state)
    records = reopened.find_by_tag(HEDGING, "mam:last")
    assert [d.ticket for d in records.deals] == [deal_ticket]
    assert [p.ticket for p in records.positions] == [order_ticket]
    netted = sum((p.volume for p in reopened.positions(NETTING)), D(0))
    assert netted == D("0.01") * before
    following = reopened.execute(HEDGING, deal(Side.BUY, "0.10", tag="mam:next"))
    assert following.order_ticket > deal_ticket


def test_a_long_log_is_compacted_on_load_without_changing_the_books(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_file_module, "COMPACT_AFTER", 10)
    state = tmp_path / "broker.db"
    clock = Clock()
    sim = make_broker(clock, state_path=state)
    for _ in range(3):
        trade_a_little_of_everything(sim, clock)
    before = books(sim)
    sim.close()

    def change_sets() -> int:
        with closing(sqlite3.connect(state)) as db:
            (count,) = db.execute("SELECT count(*) FROM changes").fetchone()
        return int(count)

    assert change_sets() > 10
    compacted = make_broker(clock, state_path=state)
    assert books(compacted) == before
    compacted.execute(HEDGING, deal(Side.BUY, "0.10", tag="mam:after"))
    after = books(compacted)
    compacted.close()
    assert change_sets() == 3  # one snapshot per account, then the new deal
    assert books(make_broker(clock, state_path=state)) == after


def test_a_failed_commit_leaves_the_request_unexecuted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "broker.db"
    sim = make_broker(state_path=state)
    first = sim.execute(HEDGING, deal(Side.BUY, "0.10"))
    real_commit = BrokerStateFile.commit

    def failing(self: BrokerStateFile, *args: object) -> None:
        raise BrokerStateError("disk full")

    monkeypatch.setattr(BrokerStateFile, "commit", failing)
    with pytest.raises(BrokerStateError):
        sim.execute(HEDGING, deal(Side.BUY, "0.20"))
    monkeypatch.setattr(BrokerStateFile, "commit", real_commit)
    assert [p.volume for p in sim.positions(HEDGING)] == [D("0.10")]
    again = sim.execute(HEDGING, deal(Side.BUY, "0.20"))
    # The refused request's tickets were given back with the rest of its changes.
    assert again.order_ticket == first.deal_ticket + 1


async def test_a_broken_state_file_makes_the_terminal_fail_not_the_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = make_broker(state_path=tmp_path / "broker.db")
    terminal = SimTerminal("acc_1", HEDGING, sim)

    def failing(self: BrokerStateFile, *args: object) -> None:
        raise BrokerStateError("disk full")

    monkeypatch.setattr(BrokerStateFile, "commit", failing)
    with pytest.raises(TerminalError, match="disk full"):
        await terminal.send(deal(Side.BUY, "0.10"))


def test_a_state_file_of_another_schema_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "broker.db"
    make_broker(state_path=state).close()
    with closing(sqlite3.connect(state)) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        db.commit()
    with pytest.raises(BrokerStateError, match="schema version 99"):
        make_broker(state_path=state)


def test_a_second_broker_cannot_open_a_state_file_in_use(tmp_path: Path) -> None:
    state = tmp_path / "broker.db"
    first = make_broker(state_path=state)
    with pytest.raises(BrokerStateError, match="locked"):
        make_broker(state_path=state)
    first.close()
    make_broker(state_path=state).close()
