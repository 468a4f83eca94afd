"""Closing plans: what is still open, the share a close takes, and each account's closing
volume (plan_close), exact and never more than its share."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

import pytest

from gateway.domain.accounts import AllocationMethod, BelowMinPolicy, MarginMode
from gateway.domain.allocation import Allocation, AllocationLine, AllocationReason
from gateway.domain.closing import (
    ClosingShare,
    ClosingTarget,
    OpenPart,
    OpenPosition,
    StillExecuting,
    check_closable,
    closing_share,
    closing_spec,
    closing_targets,
    is_same_close,
    master_lots_shown,
    open_master_volume,
    open_parts,
    plan_close,
)
from gateway.domain.errors import FailedPrecondition, InvalidArgument
from gateway.domain.orders import (
    ChildOrder,
    ChildOrderState,
    MasterOrder,
    MasterOrderSpec,
    MasterOrderState,
    OrderType,
    Side,
)
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


# -- what is still open --------------------------------------------------------------------


def opening_child(account: str, filled: str, *, ticket: int = 0) -> ChildOrder:
    return ChildOrder(
        f"ch_{account}", "mo_1", account, "EURUSD", Side.BUY, Decimal(filled),
        ChildOrderState.FILLED, f"mam:{account}", 1, NOW, NOW, filled_volume=Decimal(filled),
        position_ticket=ticket,
    )  # fmt: skip


def master(
    master_order_id: str = "mo_1",
    state: MasterOrderState = MasterOrderState.FILLED,
    *,
    closes: str = "",
    lines: tuple[AllocationLine, ...] = (),
) -> MasterOrder:
    spec = MasterOrderSpec(
        "g_1", "EURUSD", Side.BUY, OrderType.MARKET, Decimal("1.00"), "desk-1",
        closes_master_order_id=closes,
    )  # fmt: skip
    allocation = Allocation(
        AllocationMethod.EQUITY, BelowMinPolicy.SKIP, Decimal(1), Decimal(1), Decimal(0), NOW,
        lines,
    )  # fmt: skip
    return MasterOrder(master_order_id, spec, state, 1, allocation, NOW, NOW)


def closing(
    master_order_id: str, state: MasterOrderState, *taken: tuple[str, str]
) -> tuple[MasterOrder, list[ChildOrder]]:
    """A closing order of mo_1 and its children, each (account, filled volume)."""
    children = [
        replace(
            opening_child(account, filled),
            child_order_id=f"ch_{master_order_id}_{account}",
            master_order_id=master_order_id,
            side=Side.SELL,
            closes_child_order_id=f"ch_{account}",
        )
        for account, filled in taken
    ]
    return master(master_order_id, state, closes="mo_1"), children


def line(account: str, contract: str | None = None) -> AllocationLine:
    return AllocationLine(
        account, "EURUSD", AllocationMethod.EQUITY, None, Decimal(0), Decimal(0), (), (),
        contract_size=None if contract is None else Decimal(contract),
    )  # fmt: skip


def test_each_child_holds_its_fill_less_what_earlier_closes_filled() -> None:
    children = [opening_child("a", "0.50"), opening_child("b", "0.30"), opening_child("c", "0")]
    closes = [
        closing("mo_c1", MasterOrderState.FILLED, ("a", "0.20"), ("b", "0.10")),
        closing("mo_c2", MasterOrderState.PARTIALLY_FILLED, ("b", "0.20")),
    ]
    parts = open_parts("mo_1", children, closes)
    assert [(p.child.account_id, p.open_volume) for p in parts] == [("a", Decimal("0.30"))]


def test_only_the_accounts_asked_for_are_open_parts() -> None:
    children = [opening_child("a", "0.50"), opening_child("b", "0.30")]
    parts = open_parts("mo_1", children, [], only_accounts=frozenset({"b"}))
    assert parts == [OpenPart(children[1], Decimal("0.30"))]


def test_a_close_still_executing_is_to_be_waited_for() -> None:
    closes = [
        closing("mo_c1", MasterOrderState.FILLED, ("a", "0.10")),
        closing("mo_c2", MasterOrderState.DISPATCHING, ("a", "0.10")),
    ]
    with pytest.raises(StillExecuting) as refused:
        open_parts("mo_1", [opening_child("a", "0.50")], closes)
    assert refused.value.reason == "CLOSE_IN_PROGRESS"
    assert refused.value.executing_master_order_id == "mo_c2"


def test_nothing_open_is_nothing_to_close() -> None:
    closes = [closing("mo_c1", MasterOrderState.FILLED, ("a", "0.50"))]
    with pytest.raises(FailedPrecondition) as refused:
        open_parts("mo_1", [opening_child("a", "0.50")], closes)
    assert refused.value.reason == "NOTHING_TO_CLOSE"
    assert not isinstance(refused.value, StillExecuting)


def test_an_order_still_executing_is_to_be_waited_for_and_a_closing_order_is_not_closable() -> None:
    check_closable(master())
    with pytest.raises(StillExecuting) as executing:
        check_closable(master(state=MasterOrderState.DISPATCHING))
    assert executing.value.reason == "MASTER_ORDER_NOT_FINAL"
    assert executing.value.executing_master_order_id == "mo_1"
    with pytest.raises(FailedPrecondition) as refused:
        check_closable(master("mo_c1", closes="mo_1"))
    assert refused.value.reason == "NOT_AN_OPENING_ORDER"
    assert not isinstance(refused.value, StillExecuting)


# -- the share a close takes -----------------------------------------------------------------


def test_the_open_volume_counts_in_master_lots_through_each_contract_size() -> None:
    opened = master(lines=(line("a"), line("b", "10000")))
    parts = [
        OpenPart(opening_child("a", "0.30"), Decimal("0.30")),
        OpenPart(opening_child("b", "1.00"), Decimal("1.00")),
    ]
    # b trades a tenth of the master contract: its 1.00 lot is 0.10 master lots.
    assert open_master_volume(opened, parts, spec()) == Fraction(2, 5)


def test_a_fraction_closes_that_share_of_every_part_and_shows_its_master_volume() -> None:
    opened = master(lines=(line("a"),))
    parts = [OpenPart(opening_child("a", "0.90"), Decimal("0.90"))]
    got = closing_share(opened, parts, spec(), fraction=Decimal("0.5"))
    assert got == ClosingShare(Fraction(1, 2), Decimal("0.45"))


def test_a_volume_becomes_the_exact_share_of_what_is_open() -> None:
    opened = master(lines=(line("a"),))
    parts = [OpenPart(opening_child("a", "0.90"), Decimal("0.90"))]
    got = closing_share(opened, parts, spec(), volume=Decimal("0.30"))
    assert got == ClosingShare(Fraction(1, 3), Decimal("0.30"))


def test_a_volume_above_what_is_open_is_refused_naming_the_open_volume() -> None:
    opened = master(lines=(line("a"),))
    parts = [OpenPart(opening_child("a", "0.90"), Decimal("0.90"))]
    with pytest.raises(InvalidArgument) as refused:
        closing_share(opened, parts, spec(), volume=Decimal("0.91"))
    assert refused.value.reason == "INVALID_VOLUME"
    assert [v.field for v in refused.value.violations] == ["volume"]
    assert "above the open volume 0.9 of master order mo_1" in refused.value.message


def test_master_lots_are_shown_exactly_or_to_8_decimals() -> None:
    assert master_lots_shown(Fraction(9, 20)) == Decimal("0.45")
    assert master_lots_shown(Fraction(1, 3)) == Decimal("0.33333333")


def test_the_closing_spec_is_the_opening_one_reversed_for_the_share() -> None:
    opened = master().spec
    got = closing_spec(
        opened,
        master_order_id="mo_1",
        client_order_id="desk-2",
        fraction=Decimal("0.5"),
        share=ClosingShare(Fraction(1, 2), Decimal("0.50")),
    )
    assert (got.side, got.volume, got.client_order_id) == (Side.SELL, Decimal("0.50"), "desk-2")
    assert (got.closes_master_order_id, got.close_fraction) == ("mo_1", Decimal("0.5"))
    assert got.comment == "close of mo_1" and got.symbol == opened.symbol


def test_a_resubmitted_close_is_the_same_only_for_the_same_order_and_amount() -> None:
    by_fraction = closing_spec(
        master().spec, master_order_id="mo_1", client_order_id="c", fraction=Decimal("0.5"),
        share=ClosingShare(Fraction(1, 2), Decimal("0.50")),
    )  # fmt: skip
    assert is_same_close(by_fraction, "mo_1", fraction=Decimal("0.5"), volume=None)
    assert not is_same_close(by_fraction, "mo_1", fraction=Decimal("0.6"), volume=None)
    assert not is_same_close(by_fraction, "mo_2", fraction=Decimal("0.5"), volume=None)
    assert not is_same_close(by_fraction, "mo_1", fraction=None, volume=Decimal("0.50"))
    by_volume = closing_spec(
        master().spec, master_order_id="mo_1", client_order_id="c", fraction=None,
        share=ClosingShare(Fraction(1, 2), Decimal("0.50")),
    )  # fmt: skip
    assert is_same_close(by_volume, "mo_1", fraction=None, volume=Decimal("0.50"))
    assert not is_same_close(by_volume, "mo_1", fraction=None, volume=Decimal("0.40"))


def test_hedging_children_close_their_position_ticket_netting_ones_the_net_position() -> None:
    positions = [
        replace(position(account, held), child=opening_child(account, held, ticket=ticket))
        for account, held, ticket in [("h", "0.50", 71), ("n", "0.50", 72), ("s", "0.01", 73)]
    ]
    allocation = plan_close(positions, Fraction(1, 2), master_spec=spec(), at=NOW)
    modes = {"h": MarginMode.HEDGING, "n": MarginMode.NETTING, "s": MarginMode.HEDGING}
    # s's share is below its minimum: it closes nothing, so it has no target.
    assert closing_targets(allocation, positions, modes) == {
        "h": ClosingTarget("ch_h", 71, Side.SELL),
        "n": ClosingTarget("ch_n", 0, Side.SELL),
    }
