"""Copy options on an allocation (gateway/domain/copying.py): each option keeps, changes, raises
or skips a member's line with its reason; a child's terms follow its line (reversed: the other
side, SL and TP swapped, the mirror pending type; stops not copied: none)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain.accounts import AllocationMethod, BelowMinPolicy
from gateway.domain.allocation import Allocation, AllocationLine, AllocationReason
from gateway.domain.copy_options import (
    CopyDirection,
    CopyOptions,
    MinVolumePolicy,
    copy_option_violations,
)
from gateway.domain.copying import (
    CopyReference,
    apply_copy_options,
    child_side,
    child_terms,
    reversed_order_type,
    stops_copied,
)
from gateway.domain.ids import AccountId
from gateway.domain.new_orders import sent_children
from gateway.domain.orders import MasterOrderSpec, OrderType, Side
from gateway.domain.symbols import SymbolSpec

D = Decimal
NOW = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
R = AllocationReason


def spec(step: str = "0.01", minimum: str = "0.01", maximum: str = "100") -> SymbolSpec:
    return SymbolSpec(
        "EURUSD", 5, D(100000), D(minimum), D(step), D(maximum), D("0.00001"), D(1),
    )  # fmt: skip


EURUSD = spec()


def line(account: str, volume: str, *reasons: R) -> AllocationLine:
    v = D(volume)
    return AllocationLine(
        AccountId(account), "EURUSD", AllocationMethod.EQUITY, None, v, v,
        (v,) if v else (), reasons, contract_size=D(100000),
    )  # fmt: skip


def allocation(*lines: AllocationLine, requested: str = "1.00") -> Allocation:
    total = sum((x.volume for x in lines), D(0))
    return Allocation(
        AllocationMethod.EQUITY, BelowMinPolicy.SKIP, D(requested), total,
        D(requested) - total, NOW, lines,
    )  # fmt: skip


def order(
    side: Side = Side.BUY,
    order_type: OrderType = OrderType.MARKET,
    *,
    stop_loss: str | None = "1.09000",
    take_profit: str | None = "1.12000",
    price: str | None = None,
) -> MasterOrderSpec:
    return MasterOrderSpec(
        "g_1", "EURUSD", side, order_type, D("1.00"), "c-1",
        price=D(price) if price else (D("1.09500") if order_type is not OrderType.MARKET else None),
        stop_loss=D(stop_loss) if stop_loss else None,
        take_profit=D(take_profit) if take_profit else None,
    )  # fmt: skip


def applied(
    options: CopyOptions,
    *,
    volume: str = "0.50",
    master: MasterOrderSpec | None = None,
    reference: CopyReference | None = None,
    price: Decimal | None = None,
    symbol: SymbolSpec = EURUSD,
) -> AllocationLine:
    result = apply_copy_options(
        allocation(line("a", volume, R.ROUNDED_DOWN)),
        {AccountId("a"): options},
        order=master or order(),
        specs={AccountId("a"): symbol},
        prices={} if price is None else {AccountId("a"): price},
        reference=reference,
        master_symbol=EURUSD,
        now=NOW,
    )
    (only,) = result.lines
    return only


def test_default_options_and_members_without_options_leave_the_allocation_as_it_is() -> None:
    before = allocation(line("a", "0.50"), line("b", "0.30"))
    after = apply_copy_options(
        before, {AccountId("a"): CopyOptions()}, order=order(), specs={}, prices={},
        reference=None, master_symbol=EURUSD, now=NOW,
    )  # fmt: skip
    assert after is before


def test_reverse_trades_the_other_side_with_sl_and_tp_swapped() -> None:
    reversed_line = applied(CopyOptions(reverse=True))
    assert reversed_line.volume == D("0.50")
    assert reversed_line.reasons == (R.ROUNDED_DOWN, R.REVERSED)
    assert child_side(reversed_line, Side.BUY) is Side.SELL
    master = order(Side.BUY)
    (child,) = sent_children([reversed_line], master_order_id="mo_1", side=Side.BUY, magic=1,
                             at=NOW)  # fmt: skip
    assert child.side is Side.SELL
    terms = child_terms(master, child)
    # The source's loss level is where the reversed copy takes its profit, and back.
    assert (terms.order_type, terms.stop_loss, terms.take_profit) == (
        OrderType.MARKET, D("1.12000"), D("1.09000"),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("order_type", "mirrored"),
    [
        (OrderType.LIMIT, OrderType.STOP),
        (OrderType.STOP, OrderType.LIMIT),
        (OrderType.MARKET, OrderType.MARKET),
        (OrderType.STOP_LIMIT, None),
    ],
)
def test_a_reversed_pending_order_rests_at_the_same_price_as_its_mirror_type(
    order_type: OrderType, mirrored: OrderType | None
) -> None:
    assert reversed_order_type(order_type) is mirrored


def test_a_stop_limit_order_cannot_be_reversed_and_the_member_is_skipped() -> None:
    skipped = applied(CopyOptions(reverse=True), master=order(order_type=OrderType.STOP_LIMIT))
    assert (skipped.volume, skipped.child_volumes) == (0, ())
    assert skipped.reasons[-1] is R.NOT_REVERSIBLE


def test_a_reversed_buy_limit_is_sent_as_a_sell_stop_at_the_same_price() -> None:
    master = order(Side.BUY, OrderType.LIMIT, price="1.09500")
    reversed_line = applied(CopyOptions(reverse=True), master=master)
    (child,) = sent_children([reversed_line], master_order_id="mo_1", side=Side.BUY, magic=1,
                             at=NOW)  # fmt: skip
    terms = child_terms(master, child)
    assert (child.side, terms.order_type) == (Side.SELL, OrderType.STOP)
    assert (terms.stop_loss, terms.take_profit) == (D("1.12000"), D("1.09000"))


def test_stops_not_copied_sends_neither_and_says_so_only_when_the_order_has_stops() -> None:
    plain = applied(CopyOptions(copy_stops=False))
    assert plain.reasons == (R.ROUNDED_DOWN, R.STOPS_NOT_COPIED) and not stops_copied(plain)
    master = order()
    (child,) = sent_children([plain], master_order_id="mo_1", side=Side.BUY, magic=1, at=NOW)
    assert child.stops_copied is False
    terms = child_terms(master, child)
    assert (terms.stop_loss, terms.take_profit) == (None, None)
    without = applied(CopyOptions(copy_stops=False), master=order(stop_loss=None, take_profit=None))
    assert without.reasons == (R.ROUNDED_DOWN,) and without.volume == D("0.50")


def test_a_child_on_the_masters_side_sends_the_masters_terms() -> None:
    kept = applied(CopyOptions(direction=CopyDirection.BUY_ONLY))
    (child,) = sent_children([kept], master_order_id="mo_1", side=Side.BUY, magic=1, at=NOW)
    terms = child_terms(order(), child)
    assert (child.side, terms.stop_loss, terms.take_profit) == (
        Side.BUY, D("1.09000"), D("1.12000"),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("options", "side", "kept"),
    [
        (CopyOptions(direction=CopyDirection.BUY_ONLY), Side.BUY, True),
        (CopyOptions(direction=CopyDirection.BUY_ONLY), Side.SELL, False),
        (CopyOptions(direction=CopyDirection.SELL_ONLY), Side.SELL, True),
        (CopyOptions(direction=CopyDirection.SELL_ONLY), Side.BUY, False),
        # The filter applies to the side the account trades, after the reversal.
        (CopyOptions(direction=CopyDirection.SELL_ONLY, reverse=True), Side.BUY, True),
        (CopyOptions(direction=CopyDirection.BUY_ONLY, reverse=True), Side.BUY, False),
    ],
)
def test_the_direction_filter_counts_the_side_the_account_trades(
    options: CopyOptions, side: Side, kept: bool
) -> None:
    result = applied(options, master=order(side, stop_loss=None, take_profit=None))
    assert (result.volume > 0) is kept
    if not kept:
        assert result.reasons[-1] is R.DIRECTION_FILTERED and result.child_volumes == ()


def test_pending_orders_not_copied_skip_pending_orders_only() -> None:
    options = CopyOptions(copy_pending=False)
    assert applied(options, master=order(order_type=OrderType.LIMIT)).reasons[-1] is (
        R.PENDING_NOT_COPIED
    )
    assert applied(options).volume == D("0.50")


def test_close_only_opens_nothing() -> None:
    result = applied(CopyOptions(close_only=True))
    assert result.volume == 0 and result.reasons[-1] is R.CLOSE_ONLY


def test_below_the_members_minimum_a_line_is_skipped_or_raised_to_it() -> None:
    skip = applied(CopyOptions(min_volume=D("0.10")), volume="0.07")
    assert skip.volume == 0 and skip.reasons[-1] is R.SKIPPED_BELOW_COPY_MIN
    raised = applied(
        CopyOptions(min_volume=D("0.10"), min_volume_policy=MinVolumePolicy.RAISE), volume="0.07"
    )
    assert (raised.volume, raised.child_volumes) == (D("0.10"), (D("0.10"),))
    assert raised.reasons == (R.ROUNDED_DOWN, R.RAISED_TO_COPY_MIN)
    # At or above the minimum nothing changes.
    assert applied(CopyOptions(min_volume=D("0.10")), volume="0.10").volume == D("0.10")


def test_a_minimum_off_the_step_is_raised_to_the_next_step_and_split_above_the_maximum() -> None:
    coarse = spec(step="0.10", minimum="0.10", maximum="1.00")
    raised = applied(
        CopyOptions(min_volume=D("0.25"), min_volume_policy=MinVolumePolicy.RAISE),
        volume="0.10",
        symbol=coarse,
    )
    assert raised.volume == D("0.30")
    split = applied(
        CopyOptions(min_volume=D("1.50"), min_volume_policy=MinVolumePolicy.RAISE),
        volume="0.10",
        symbol=coarse,
    )
    assert (split.volume, split.child_volumes) == (D("1.50"), (D("0.80"), D("0.70")))
    assert split.reasons == (R.ROUNDED_DOWN, R.RAISED_TO_COPY_MIN, R.SPLIT_MAX_VOLUME)


def test_slippage_is_measured_from_the_sources_fill_price_in_the_members_points() -> None:
    options = CopyOptions(max_slippage_points=20)
    source = CopyReference(price=D("1.10000"), signal_time=NOW)
    assert applied(options, reference=source, price=D("1.10020")).volume == D("0.50")
    assert applied(options, reference=source, price=D("1.09980")).volume == D("0.50")
    moved = applied(options, reference=source, price=D("1.10021"))
    assert moved.volume == 0 and moved.reasons[-1] is R.SLIPPAGE_TOO_HIGH
    unknown = applied(options, reference=source, price=None)
    assert unknown.volume == 0 and unknown.reasons[-1] is R.SLIPPAGE_UNKNOWN
    # No source (an order over the API), or a pending order: nothing to compare with.
    assert applied(options, reference=None, price=D("1.20000")).volume == D("0.50")
    pending = order(order_type=OrderType.LIMIT)
    assert applied(options, master=pending, reference=source, price=D("1.2")).volume == D("0.50")


def test_a_signal_older_than_the_members_maximum_age_is_not_copied_to_it() -> None:
    options = CopyOptions(max_signal_age=timedelta(seconds=5))
    fresh = CopyReference(price=None, signal_time=NOW - timedelta(seconds=5))
    stale = CopyReference(price=None, signal_time=NOW - timedelta(seconds=5, microseconds=1))
    assert applied(options, reference=fresh).volume == D("0.50")
    old = applied(options, reference=stale)
    assert old.volume == 0 and old.reasons[-1] is R.SIGNAL_TOO_OLD


def test_the_allocated_total_counts_what_is_left_after_the_options() -> None:
    result = apply_copy_options(
        allocation(line("a", "0.60"), line("b", "0.40")),
        {AccountId("a"): CopyOptions(close_only=True)},
        order=order(), specs={}, prices={}, reference=None, master_symbol=EURUSD, now=NOW,
    )  # fmt: skip
    assert (result.allocated_volume, result.unallocated_volume) == (D("0.40"), D("0.60"))


def test_lines_with_nothing_allocated_are_left_as_they_are() -> None:
    nothing = line("a", "0", R.SKIPPED_BELOW_MIN)
    result = apply_copy_options(
        allocation(nothing), {AccountId("a"): CopyOptions(reverse=True)}, order=order(),
        specs={}, prices={}, reference=None, master_symbol=EURUSD, now=NOW,
    )  # fmt: skip
    assert result.lines == (nothing,)


@settings(max_examples=300, deadline=None)
@given(
    reverse=st.booleans(),
    direction=st.sampled_from(CopyDirection),
    copy_stops=st.booleans(),
    copy_pending=st.booleans(),
    close_only=st.booleans(),
    minimum=st.none() | st.integers(1, 300).map(lambda n: D(n) / 100),
    policy=st.sampled_from(MinVolumePolicy),
    volume=st.integers(1, 300).map(lambda n: D(n) / 100),
    side=st.sampled_from(Side),
    order_type=st.sampled_from(OrderType),
)
def test_each_line_is_kept_raised_or_skipped_with_exactly_one_reason(
    reverse: bool,
    direction: CopyDirection,
    copy_stops: bool,
    copy_pending: bool,
    close_only: bool,
    minimum: Decimal | None,
    policy: MinVolumePolicy,
    volume: Decimal,
    side: Side,
    order_type: OrderType,
) -> None:
    options = CopyOptions(
        reverse=reverse, direction=direction, copy_stops=copy_stops, copy_pending=copy_pending,
        close_only=close_only, min_volume=minimum, min_volume_policy=policy,
    )  # fmt: skip
    result = applied(options, volume=f"{volume:.2f}", master=order(side, order_type))
    added = result.reasons[1:]
    skips = {
        R.CLOSE_ONLY, R.PENDING_NOT_COPIED, R.NOT_REVERSIBLE, R.DIRECTION_FILTERED,
        R.SKIPPED_BELOW_COPY_MIN,
    }  # fmt: skip
    if result.volume == 0:
        assert result.child_volumes == () and len(added) == 1 and added[0] in skips
        return
    assert not skips & set(added)
    assert options.side_of(side) is child_side(result, side)
    if minimum is not None:
        assert result.volume >= minimum
    if result.volume != volume:
        assert policy is MinVolumePolicy.RAISE and R.RAISED_TO_COPY_MIN in added
    assert (R.REVERSED in added) is reverse
    assert (R.STOPS_NOT_COPIED in added) is (not copy_stops)
    assert sum(result.child_volumes) == result.volume


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (CopyOptions(min_volume=D(0)), "min_volume"),
        (CopyOptions(min_volume=D("-0.1")), "min_volume"),
        (CopyOptions(min_volume=D("NaN")), "min_volume"),
        (CopyOptions(min_volume=D("100001")), "min_volume"),
        (CopyOptions(min_volume_policy=MinVolumePolicy.RAISE), "min_volume_policy"),
        (CopyOptions(max_slippage_points=-1), "max_slippage_points"),
        (CopyOptions(max_slippage_points=1_000_001), "max_slippage_points"),
        (CopyOptions(max_signal_age=timedelta(0)), "max_signal_age"),
        (CopyOptions(max_signal_age=timedelta(days=8)), "max_signal_age"),
        (CopyOptions(close_only=True, direction=CopyDirection.BUY_ONLY), "direction"),
    ],
)
def test_invalid_options_are_refused_with_their_field(options: CopyOptions, field: str) -> None:
    (violation,) = copy_option_violations(options, "group.members[0].copy_options")
    assert violation.field == f"group.members[0].copy_options.{field}"


def test_a_minimum_above_the_members_max_lots_is_refused() -> None:
    (violation,) = copy_option_violations(CopyOptions(min_volume=D("2")), "m", max_lots=D("1.5"))
    assert violation.field == "m.min_volume"
    assert copy_option_violations(CopyOptions(min_volume=D("1.5")), "m", max_lots=D("1.5")) == []


def test_valid_options_pass() -> None:
    options = CopyOptions(
        reverse=True, direction=CopyDirection.SELL_ONLY, copy_stops=False, copy_pending=False,
        min_volume=D("0.05"), min_volume_policy=MinVolumePolicy.RAISE, max_slippage_points=0,
        max_signal_age=timedelta(seconds=10),
    )  # fmt: skip
    assert copy_option_violations(options, "m") == []
    assert replace(options, reverse=False).side_of(Side.BUY) is Side.BUY
