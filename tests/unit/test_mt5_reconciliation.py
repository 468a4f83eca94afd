"""Reconciliation at a broker that rewrites comments: a child whose tag is gone from its order and
deals is found by the order ticket its answer gave, and, when no answer came, records that match
what was sent (magic, symbol, side, volume, time) make the outcome ambiguous: TerminalError, so
that the engine leaves the child UNKNOWN and never sends it again."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.domain import retcodes
from gateway.domain.ids import new_id, tag_for_child
from gateway.terminals.mt5.emulator import TerminalBehaviour
from gateway.terminals.protocol import TerminalError
from gateway.terminals.sim import Fault
from tests.unit.test_mt5_adapter import buy, emulated, session_over

D = Decimal
# A bridge that stamps its own text on every order and deal.
REWRITES = TerminalBehaviour(server_comment="bridge#7781")


def test_a_lost_answer_at_a_rewriting_broker_is_ambiguous_not_absent() -> None:
    mt5, _ = emulated(behaviour=REWRITES)
    session = session_over(mt5)
    tag = tag_for_child(new_id("ch"))
    mt5.emulator_fail_next(Fault.DISCONNECT_AFTER)
    with pytest.raises(TerminalError, match="outcome unknown"):
        session.send(buy("0.10", tag=tag))
    # Executed, under another comment: "not found" would send it a second time.
    with pytest.raises(TerminalError, match="comment rewritten"):
        session.find_by_tag(tag)


def test_after_a_restart_an_unattributed_record_of_the_period_is_ambiguous() -> None:
    mt5, _ = emulated(behaviour=REWRITES)
    tag = tag_for_child(new_id("ch"))
    mt5.emulator_fail_next(Fault.DISCONNECT_AFTER)
    with pytest.raises(TerminalError):
        session_over(mt5).send(buy("0.10", tag=tag))
    # A new worker: it sent nothing, so any expert's deal of the period without a gateway tag
    # may be the child's.
    with pytest.raises(TerminalError, match="comment rewritten"):
        session_over(mt5).find_by_tag(tag)


def test_an_answered_child_is_found_by_its_order_whatever_its_comment() -> None:
    # A server that keeps ten characters: "mam:" and six of the tag's twenty.
    mt5, _ = emulated(behaviour=TerminalBehaviour(server_comment_length=10))
    session = session_over(mt5)
    tag = tag_for_child(new_id("ch"))
    opened = session.send(buy("0.20", tag=tag))
    assert opened.retcode == retcodes.DONE
    found = session.find_by_tag(tag)
    [deal] = found.deals
    [position] = found.positions
    assert (deal.ticket, deal.volume, deal.comment) == (opened.deal_ticket, D("0.20"), tag[:10])
    assert position.ticket == opened.position_ticket


def test_records_of_other_answered_children_are_not_lookalikes() -> None:
    mt5, _ = emulated(behaviour=REWRITES)
    session = session_over(mt5)
    for _ in range(2):
        assert session.send(buy(tag=tag_for_child(new_id("ch")))).retcode == retcodes.DONE
    never_sent = tag_for_child(new_id("ch"))
    found = session.find_by_tag(never_sent)
    assert (found.orders, found.positions, found.deals) == ((), (), ())


def test_a_deal_of_another_magic_or_symbol_is_no_lookalike() -> None:
    mt5, _ = emulated(behaviour=REWRITES)
    session = session_over(mt5)
    session.connect()
    # Another program's trade (magic 99) on the same terminal, under the bridge's comment.
    assert mt5.symbol_select("EURUSD")
    other = {"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0, "magic": 99}
    assert mt5.order_send(other).retcode == retcodes.DONE
    tag = tag_for_child(new_id("ch"))
    mt5.emulator_fail_next(Fault.DISCONNECT_BEFORE)
    with pytest.raises(TerminalError):
        session.send(buy("0.10", tag=tag))
    # Never executed, and the one deal there is not what was sent: provably absent.
    found = session.find_by_tag(tag)
    assert found.deals == ()
