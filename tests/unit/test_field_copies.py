"""A copier changes what it is given and keeps every other field, as dataclasses.replace."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from gateway.domain.field_copies import copier
from gateway.domain.orders import ChildOrder, ChildOrderState, IllegalTransition, Side

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def _child() -> ChildOrder:
    return ChildOrder(
        "ch_1", "mo_1", "acc_1", "EURUSD", Side.BUY, Decimal("0.10"), ChildOrderState.PENDING,
        "mam:1", 7, NOW, NOW, requested_price=Decimal("1.08450"), attempts=2,
    )  # fmt: skip


def test_a_copy_equals_replace() -> None:
    child = _child()
    copy = copier(ChildOrder)
    changes = {"state": ChildOrderState.SENT, "sent_at": NOW, "attempts": 3}
    assert copy(child, changes) == replace(child, **changes)  # type: ignore[arg-type]
    assert copy(child, {}) == child and copy(child, {}) is not child


def test_an_unknown_field_is_refused() -> None:
    with pytest.raises(TypeError, match="no field 'colour'"):
        copier(ChildOrder)(_child(), {"colour": "red"})


def test_classes_with_fields_outside_init_are_refused() -> None:
    @dataclass(frozen=True)
    class Derived:
        a: int
        b: int = field(init=False, default=0)

    with pytest.raises(TypeError, match="outside __init__"):
        copier(Derived)


def test_moves_keep_checking_transitions() -> None:
    sent = _child().moved_to(ChildOrderState.SENT, NOW, sent_at=NOW)
    assert (sent.state, sent.sent_at, sent.requested_price) == (
        ChildOrderState.SENT, NOW, Decimal("1.08450"),
    )  # fmt: skip
    filled = sent.moved_to(ChildOrderState.FILLED, NOW)
    with pytest.raises(IllegalTransition):
        filled.moved_to(ChildOrderState.SENT, NOW)


def test_classes_with_post_init_keep_their_checks() -> None:
    @dataclass(frozen=True, slots=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            if self.a < 0:
                raise ValueError("negative")

    copy = copier(Checked)
    assert copy(Checked(1), {"a": 2}) == Checked(2)
    with pytest.raises(ValueError, match="negative"):
        copy(Checked(1), {"a": -1})


def test_a_class_without_slots_is_copied_through_init() -> None:
    @dataclass(frozen=True)
    class Plain:
        a: int
        b: str = "x"

    assert copier(Plain)(Plain(1), {"b": "y"}) == Plain(1, "y")
