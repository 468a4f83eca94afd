from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from gateway.domain import retcodes
from gateway.domain.decimals import format_decimal, from_steps, parse_decimal, to_steps
from gateway.domain.ids import MAX_TAG_LENGTH, new_id, tag_for_child
from gateway.domain.orders import (
    ChildOrder,
    ChildOrderState,
    IllegalTransition,
    Side,
    final_master_state,
)

NOW = datetime(2026, 1, 5, tzinfo=UTC)


@pytest.mark.parametrize("text", ["1", "1.00", "-0.5", ".5", "250000", "0.00001"])
def test_wire_decimals_parse_exactly(text: str) -> None:
    assert format_decimal(parse_decimal(text)) == format_decimal(Decimal(text))


@pytest.mark.parametrize("text", ["", " 1", "1e2", "NaN", "inf", "1,0", "0x10", "1" * 41])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_decimal(text)


def test_steps_round_trip_keeps_the_step_exponent() -> None:
    assert to_steps(Decimal("0.07"), Decimal("0.01")) == 7
    assert str(from_steps(7, Decimal("0.01"))) == "0.07"
    with pytest.raises(ValueError):
        to_steps(Decimal("0.075"), Decimal("0.01"))


def test_ids_sort_by_time_and_tags_fit_a_broker_comment() -> None:
    early, late = new_id("ch", now_ms=1_000), new_id("ch", now_ms=2_000)
    assert early < late
    tag = tag_for_child(late)
    assert len(tag) <= MAX_TAG_LENGTH and tag.isascii() and tag.startswith("mam:")
    assert len({tag_for_child(new_id("ch")) for _ in range(1000)}) == 1000


def child(state: ChildOrderState, filled: str = "0") -> ChildOrder:
    return ChildOrder(
        "ch_1", "mo_1", "acc_1", "EURUSD", Side.BUY, Decimal("0.10"), state, "mam:1", 1, NOW, NOW,
        filled_volume=Decimal(filled),
    )  # fmt: skip


def test_child_state_machine_refuses_a_resend_of_a_filled_child() -> None:
    filled = child(ChildOrderState.SENT).moved_to(ChildOrderState.FILLED, NOW)
    with pytest.raises(IllegalTransition):
        filled.moved_to(ChildOrderState.SENT, NOW)
    with pytest.raises(IllegalTransition):
        child(ChildOrderState.PENDING).moved_to(ChildOrderState.FILLED, NOW)


def test_unknown_is_settled_only_by_reconciliation_outcomes() -> None:
    unknown = child(ChildOrderState.UNKNOWN)
    assert unknown.moved_to(ChildOrderState.FILLED, NOW).state is ChildOrderState.FILLED
    assert unknown.moved_to(ChildOrderState.PENDING, NOW).state is ChildOrderState.PENDING
    with pytest.raises(IllegalTransition):
        unknown.moved_to(ChildOrderState.SENT, NOW)


def test_final_master_state_from_children() -> None:
    filled = child(ChildOrderState.FILLED, "0.10")
    rejected = child(ChildOrderState.REJECTED)
    assert final_master_state([filled, filled]).name == "FILLED"
    assert final_master_state([filled, rejected]).name == "PARTIALLY_FILLED"
    assert final_master_state([rejected, rejected]).name == "REJECTED"


def test_retcode_classes() -> None:
    assert retcodes.classify(retcodes.DONE) is retcodes.RetcodeClass.SUCCESS
    assert retcodes.classify(retcodes.REQUOTE) is retcodes.RetcodeClass.TRANSIENT
    assert retcodes.classify(retcodes.NO_MONEY) is retcodes.RetcodeClass.PERMANENT
    assert retcodes.classify(retcodes.TIMEOUT) is retcodes.RetcodeClass.AMBIGUOUS
    assert retcodes.name_of(10019) == "NO_MONEY"
