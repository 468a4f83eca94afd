"""plan_close: each account's closing volume, exact and never more than its share."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

import pytest

from gateway.domain.accounts import AllocationMethod
from gateway.domain.allocation import AllocationReason
from gateway.domain.closing import OpenPosition, plan_close
from gateway.domain.orders import ChildOrder, ChildOrderState, Side
from gateway.domain.symbols import SymbolSpec

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def spec(
    step: str = "0.01", minimum: str = "0.01", maximum: str = "100", contract: str = "100000"
) -> SymbolSpec:
    return SymbolSpec(
        "EURUSD", 5, Decimal(contract), Decimal(minimum), Decimal(step), Decimal(maximum),
        Decimal("0.00001"), Decimal("1"),
    )  # fmt: skip


def position(account: str, open_volume: str, symbol_spec: SymbolSpec | None = None) -> OpenPosition:
    child = ChildOrder(
        f"ch_{account}", "mo_1", account, "EURUSD", Side.BUY, Decimal(open_volume),
        ChildOrderState.FILLED, f"mam:{account}", 1, NOW, NOW,
    )  # fmt: skip
    return OpenPosition(child, Decimal(open_volume), symbol_spec or spec(), AllocationMethod.EQUITY)


def volumes(fraction: Fraction, *positions: OpenPosition, master: SymbolSpec | None = None):
    allocation = plan_close(positions, fraction, master_spec=master or spec(), at=NOW)
    return {line.account_id: (str(line.volume), line.reasons) for line in allocation.lines}


def test_a_third_of_090_is_exactly_030_not_029() -> None:
    assert volumes(Fraction(1, 3), position("a", "0.90")) == {"a": ("0.30", ())}


def test_shares_round_down_and_small_ones_are_skipped() -> None:
    got = volumes(Fraction(1, 2), position("a", "0.01"), position("b", "0.03"))
    assert got == {
        "a": ("0.00", (AllocationReason.SKIPPED_BELOW_MIN,)),
        "b": ("0.01", (AllocationReason.ROUNDED_DOWN,)),
    }


def test_all_closes_everything_exactly() -> None:
    assert volumes(Fraction(1), position("a", "0.37")) == {"a": ("0.37", ())}


def test_a_remainder_below_the_minimum_is_avoided_by_closing_less() -> None:
    # min 0.10, step 0.01: closing 0.25 of 0.30 would leave 0.05, below the minimum.
    coarse = spec(minimum="0.10")
    got = volumes(Fraction(5, 6), position("a", "0.30", coarse))
    assert got == {"a": ("0.20", (AllocationReason.ROUNDED_DOWN,))}


def test_a_share_above_the_maximum_is_split_into_near_equal_children() -> None:
    allocation = plan_close(
        [position("a", "250", spec(maximum="100"))], Fraction(1), master_spec=spec(), at=NOW
    )
    assert allocation.lines[0].child_volumes == (
        Decimal("83.34"),
        Decimal("83.33"),
        Decimal("83.33"),
    )
    assert max(allocation.lines[0].child_volumes) <= 100


def test_contract_size_scaling_counts_in_master_lots() -> None:
    mini = spec(contract="10000")  # a mapped symbol with a tenth of the contract
    allocation = plan_close(
        [position("a", "1.00", mini)], Fraction(1, 2), master_spec=spec(), at=NOW
    )
    assert allocation.lines[0].volume == Decimal("0.50")
    assert allocation.allocated_volume == Decimal("0.05")


def test_a_fraction_outside_0_to_1_is_a_bug() -> None:
    with pytest.raises(ValueError):
        plan_close([position("a", "1")], Fraction(3, 2), master_spec=spec(), at=NOW)
