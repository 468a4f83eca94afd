"""Pre-trade risk: every rule by a hand-computed example, its boundary, clipping to the lot step,
cumulative checks of one account's children, and properties against an independent oracle."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain.account_exposure import AccountExposure, SymbolExposure
from gateway.domain.account_history import AccountPosition
from gateway.domain.accounts import AccountSnapshot, MarginMode
from gateway.domain.drawdown_monitor import StopOutAction
from gateway.domain.orders import Side
from gateway.domain.pre_trade_risk import (
    ProposedChild,
    RiskAction,
    RiskDecision,
    RiskRule,
    check_child,
    check_children,
    exposure_after,
    notional_value,
    required_margin,
)
from gateway.domain.risk_limits import (
    RiskLimits,
    TradingWindow,
    ViolationPolicy,
    Weekday,
    risk_limits_violations,
    within_trading_windows,
)
from gateway.domain.symbols import SymbolSpec

D = Decimal
CLIP = ViolationPolicy.CLIP
SKIP = ViolationPolicy.SKIP
HEDGING = MarginMode.HEDGING
NETTING = MarginMode.NETTING
# Monday 5 January 2026, 12:00 UTC.
MONDAY_NOON = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
EURUSD = SymbolSpec("EURUSD", 5, D(100000), D("0.01"), D("0.01"), D(100), D("0.00001"), D(1))
# A coarser symbol: minimum 0.10 lots in steps of 0.05.
COARSE = SymbolSpec("GER40", 2, D(1), D("0.10"), D("0.05"), D(50), D("0.01"), D("0.01"))


def child(
    volume: str,
    side: Side = Side.BUY,
    *,
    symbol: str = "EURUSD",
    price: str = "1.10000",
    rate: str = "1",
    closing: bool = False,
    master_symbol: str = "",
) -> ProposedChild:
    return ProposedChild(
        account_id="acc_1",
        symbol=symbol,
        side=side,
        volume=D(volume),
        price=D(price),
        profit_to_account_rate=D(rate),
        closing=closing,
        master_symbol=master_symbol,
    )


def account(
    *,
    long: str = "0",
    short: str = "0",
    long_positions: int | None = None,
    short_positions: int | None = None,
    other_positions: int = 0,
    equity: str = "10000",
    margin: str = "0",
    leverage: int = 100,
    mode: MarginMode = HEDGING,
    symbol: str = "EURUSD",
) -> AccountExposure:
    held = SymbolExposure(
        D(long),
        D(short),
        (1 if D(long) else 0) if long_positions is None else long_positions,
        (1 if D(short) else 0) if short_positions is None else short_positions,
    )
    symbols = {symbol: held}
    if other_positions:
        symbols["GBPUSD"] = SymbolExposure(D("0.01") * other_positions, D(0), other_positions)
    return AccountExposure("acc_1", D(equity), D(margin), leverage, mode, symbols)


def check(
    proposed: ProposedChild,
    limits: RiskLimits,
    exposure: AccountExposure | None = None,
    *,
    policy: ViolationPolicy = SKIP,
    spec: SymbolSpec = EURUSD,
    at: datetime = MONDAY_NOON,
    stop_out: StopOutAction | None = None,
) -> RiskDecision:
    return check_child(
        proposed,
        limits=limits,
        exposure=exposure or account(),
        spec=spec,
        at=at,
        policy=policy,
        stop_out=stop_out,
    )


def allowed(decision: RiskDecision) -> bool:
    return decision.action is RiskAction.ALLOW and decision.volume == decision.requested_volume


# -- no limits, closes -----------------------------------------------------------------------


def test_without_limits_every_child_is_allowed_as_it_is() -> None:
    decision = check(child("37.50"), RiskLimits(), policy=CLIP)
    assert allowed(decision)
    assert decision.violations == ()


def test_a_closing_child_is_allowed_whatever_the_limits_say() -> None:
    limits = RiskLimits(
        max_order_volume=D("0.01"),
        max_symbol_volume=D(0),
        max_open_positions=0,
        min_margin_level=D(10_000),
        denied_symbols=frozenset({"EURUSD"}),
        trading_windows=TradingWindow.daily([Weekday.SATURDAY], time(1), time(2)),
    )
    closing = child("5.00", Side.SELL, closing=True)
    held = account(long="5.00", margin="5500")
    assert allowed(check(closing, limits, held, stop_out=StopOutAction.FLATTEN))


# -- max volume per order --------------------------------------------------------------------


def test_an_order_exactly_at_the_volume_limit_is_allowed() -> None:
    assert allowed(check(child("1.00"), RiskLimits(max_order_volume=D("1.00"))))


def test_an_order_one_step_over_the_volume_limit_is_skipped_under_skip() -> None:
    decision = check(child("1.01"), RiskLimits(max_order_volume=D("1.00")))
    assert decision.action is RiskAction.SKIP
    assert decision.volume == 0
    [violation] = decision.violations
    assert violation.rule is RiskRule.MAX_ORDER_VOLUME
    assert (violation.limit, violation.value) == (D("1.00"), D("1.01"))
    assert violation.clippable
    assert "1.01 lots is above the account's limit of 1.00 lots" in violation.message


def test_an_order_over_the_volume_limit_is_clipped_to_it_under_clip() -> None:
    decision = check(child("2.50"), RiskLimits(max_order_volume=D("1.00")), policy=CLIP)
    assert decision.action is RiskAction.CLIP
    assert (decision.requested_volume, decision.volume) == (D("2.50"), D("1.00"))
    assert decision.rules == (RiskRule.MAX_ORDER_VOLUME,)
    assert str(decision.volume) == "1.00"


def test_clipping_rounds_down_to_the_volume_step() -> None:
    # 0.37 is between the steps 0.35 and 0.40 of a 0.05-step symbol: 0.35, never 0.40.
    decision = check(
        child("1.00", symbol="GER40", price="20000"),
        RiskLimits(max_order_volume=D("0.37")),
        account(symbol="GER40"),
        policy=CLIP,
        spec=COARSE,
    )
    assert (decision.action, decision.volume) == (RiskAction.CLIP, D("0.35"))


def test_clipping_below_the_minimum_volume_skips_the_child() -> None:
    decision = check(
        child("1.00", symbol="GER40", price="20000"),
        RiskLimits(max_order_volume=D("0.07")),
        account(symbol="GER40"),
        policy=CLIP,
        spec=COARSE,
    )
    assert decision.action is RiskAction.SKIP
    assert decision.volume == 0
    assert decision.rules == (RiskRule.MAX_ORDER_VOLUME,)
    assert "0.05 lots, is below the minimum 0.10 of GER40" in decision.summary


# -- max open volume per symbol --------------------------------------------------------------


def test_symbol_volume_up_to_exactly_the_limit_is_allowed() -> None:
    # 1.50 open + 0.50 = 2.00 = the limit.
    limits = RiskLimits(max_symbol_volume=D("2.00"))
    assert allowed(check(child("0.50"), limits, account(long="1.50")))


def test_symbol_volume_over_the_limit_is_clipped_to_the_room_left() -> None:
    limits = RiskLimits(max_symbol_volume=D("2.00"))
    decision = check(child("0.80"), limits, account(long="1.50"), policy=CLIP)
    assert (decision.action, decision.volume) == (RiskAction.CLIP, D("0.50"))
    [violation] = decision.violations
    assert (violation.rule, violation.limit, violation.value) == (
        RiskRule.MAX_SYMBOL_VOLUME,
        D("2.00"),
        D("2.30"),
    )


def test_a_hedging_account_counts_longs_and_shorts_together() -> None:
    # A SELL on a hedging account opens a short beside the long: 1.50 + 0.80 = 2.30 open.
    limits = RiskLimits(max_symbol_volume=D("2.00"))
    decision = check(child("0.80", Side.SELL), limits, account(long="1.50"), policy=CLIP)
    assert (decision.action, decision.volume) == (RiskAction.CLIP, D("0.50"))


def test_a_netting_sell_that_reduces_a_long_is_allowed_even_over_the_limit() -> None:
    # The account already holds 2.50 against a 2.00 limit; selling 0.80 leaves 1.70.
    limits = RiskLimits(max_symbol_volume=D("2.00"))
    held = account(long="2.50", mode=NETTING)
    assert allowed(check(child("0.80", Side.SELL), limits, held))


def test_a_netting_reversal_is_clipped_to_the_limit_on_the_other_side() -> None:
    # Long 1.50; selling 3.60 would leave short 2.10 > 2.00: 3.50 leaves short exactly 2.00.
    limits = RiskLimits(max_symbol_volume=D("2.00"))
    held = account(long="1.50", mode=NETTING)
    decision = check(child("3.60", Side.SELL), limits, held, policy=CLIP)
    assert (decision.action, decision.volume) == (RiskAction.CLIP, D("3.50"))
    # Short 1.50 after selling 3.00: no more than was open before.
    assert allowed(check(child("3.00", Side.SELL), limits, held))


def test_an_account_over_its_symbol_limit_cannot_add_a_single_step() -> None:
    limits = RiskLimits(max_symbol_volume=D("2.00"))
    decision = check(child("0.01"), limits, account(long="2.50"), policy=CLIP)
    assert decision.action is RiskAction.SKIP
    assert "0.00 lots, is below the minimum 0.01 of EURUSD" in decision.summary


def test_the_symbol_limit_concerns_only_the_childs_symbol() -> None:
    limits = RiskLimits(max_symbol_volume=D("1.00"))
    held = account(long="5.00", symbol="GBPUSD")
    assert allowed(check(child("1.00"), limits, held))


# -- max notional per symbol -----------------------------------------------------------------


def test_notional_is_volume_times_contract_size_times_price() -> None:
    assert notional_value(EURUSD, D("1.50"), D("1.10000")) == D(165000)
    # EURGBP on a USD account: priced in GBP, converted at GBPUSD 1.25.
    assert notional_value(EURUSD, D("1.00"), D("0.85000"), D("1.25")) == D(106250)


def test_notional_exactly_at_the_limit_is_allowed() -> None:
    # (1.00 open + 0.50) x 100,000 x 1.10000 = 165,000 = the limit.
    limits = RiskLimits(max_symbol_notional=D(165000))
    assert allowed(check(child("0.50"), limits, account(long="1.00")))


def test_notional_over_the_limit_is_clipped() -> None:
    # 1.51 lots would be 166,100 > 165,000.
    limits = RiskLimits(max_symbol_notional=D(165000))
    decision = check(child("0.51"), limits, account(long="1.00"), policy=CLIP)
    assert (decision.action, decision.volume) == (RiskAction.CLIP, D("0.50"))
    [violation] = decision.violations
    assert violation.rule is RiskRule.MAX_SYMBOL_NOTIONAL
    assert violation.value == D(166100)
    assert "a notional of 166100.00 open" in violation.message


def test_notional_converts_the_profit_currency_at_the_given_rate() -> None:
    # EURGBP on a USD account: 106,250 USD a lot. 200,000 holds 1.88 lots (199,750), not
    # 1.89 (200,812.50).
    limits = RiskLimits(max_symbol_notional=D(200000))
    eurgbp = child("3.00", symbol="EURGBP", price="0.85000", rate="1.25")
    decision = check(eurgbp, limits, account(symbol="EURGBP"), policy=CLIP)
    assert (decision.action, decision.volume) == (RiskAction.CLIP, D("1.88"))


# -- max open positions ----------------------------------------------------------------------


def test_a_new_position_up_to_the_count_is_allowed() -> None:
    limits = RiskLimits(max_open_positions=3)
    held = account(long="0.10", other_positions=1)  # 2 open positions
    assert allowed(check(child("0.10"), limits, held))


def test_a_position_over_the_count_is_skipped_even_under_clip() -> None:
    limits = RiskLimits(max_open_positions=3)
    held = account(long="0.10", other_positions=2)  # 3 open positions
    decision = check(child("0.10"), limits, held, policy=CLIP)
    assert decision.action is RiskAction.SKIP
    [violation] = decision.violations
    assert (violation.rule, violation.clippable) == (RiskRule.MAX_OPEN_POSITIONS, False)
    assert (violation.limit, violation.value) == (D(3), D(4))
    assert "no smaller volume meets MAX_OPEN_POSITIONS" in decision.summary


def test_adding_to_a_netting_position_opens_no_new_one() -> None:
    limits = RiskLimits(max_open_positions=3)
    held = account(long="0.10", other_positions=2, mode=NETTING)
    assert allowed(check(child("0.10"), limits, held))


# -- minimum margin level --------------------------------------------------------------------


def test_margin_follows_the_mt5_forex_formula() -> None:
    # 1.00 lot x 100,000 x 1.10000 / 100 = 1,100 USD; USDJPY at 150 for a USD account,
    # converted at 1/150: 1.00 x 100,000 / 100 = 1,000 USD.
    assert required_margin(EURUSD, D("1.00"), D("1.10000"), 100) == D(1100)
    usdjpy = required_margin(EURUSD, D("1.00"), D("150.000"), 100, D(1) / D(150))
    assert usdjpy.quantize(D("0.000001")) == D("1000.000000")


def test_a_margin_level_exactly_at_the_minimum_is_allowed() -> None:
    # Equity 10,000, margin 1,000; 1.00 lot at 1.00000 adds 1,000: level 10,000 / 2,000 = 500%.
    limits = RiskLimits(min_margin_level=D(500))
    held = account(equity="10000", margin="1000")
    assert allowed(check(child("1.00", price="1.00000"), limits, held))


def test_a_margin_level_below_the_minimum_is_clipped() -> None:
    # 1.01 lots: margin 2,010, level 497.51%; 1.00 lot is the largest at 500% or more.
    limits = RiskLimits(min_margin_level=D(500))
    held = account(equity="10000", margin="1000")
    decision = check(child("1.01", price="1.00000"), limits, held, policy=CLIP)
    assert (decision.action, decision.volume) == (RiskAction.CLIP, D("1.00"))
    [violation] = decision.violations
    assert (violation.rule, violation.limit, violation.value) == (
        RiskRule.MIN_MARGIN_LEVEL,
        D(500),
        D("497.51"),
    )


def test_the_margin_level_is_checked_on_a_first_position_too() -> None:
    # No margin in use yet: 1.00 lot at 1.10000 takes 1,100; level 10,000 / 1,100 = 909.09%.
    limits = RiskLimits(min_margin_level=D(1000))
    decision = check(child("1.00"), limits, account(), policy=CLIP)
    # 10,000 / (1,100 x lots) >= 10 -> lots <= 0.9090...: 0.90.
    assert (decision.action, decision.volume) == (RiskAction.CLIP, D("0.90"))


def test_a_reduction_passes_the_margin_level_of_a_stressed_account() -> None:
    limits = RiskLimits(min_margin_level=D(500))
    held = account(long="2.00", equity="1000", margin="2200", mode=NETTING)
    assert allowed(check(child("1.00", Side.SELL), limits, held))


# -- symbols ---------------------------------------------------------------------------------


def test_a_denied_symbol_is_skipped_even_under_clip() -> None:
    limits = RiskLimits(denied_symbols=frozenset({"EURUSD"}))
    decision = check(child("0.10"), limits, policy=CLIP)
    assert decision.action is RiskAction.SKIP
    assert [(v.rule, v.clippable) for v in decision.violations] == [(RiskRule.SYMBOL_DENIED, False)]


def test_a_symbol_off_the_allow_list_is_skipped() -> None:
    limits = RiskLimits(allowed_symbols=frozenset({"GBPUSD", "USDJPY"}))
    decision = check(child("0.10"), limits, policy=CLIP)
    assert decision.rules == (RiskRule.SYMBOL_NOT_ALLOWED,)
    assert allowed(check(child("0.10"), RiskLimits(allowed_symbols=frozenset({"EURUSD"}))))


def test_symbol_lists_may_name_the_master_symbol_of_a_mapped_account() -> None:
    mapped = child("0.10", symbol="EURUSD.m", master_symbol="EURUSD")
    held = account(symbol="EURUSD.m")
    assert allowed(check(mapped, RiskLimits(allowed_symbols=frozenset({"EURUSD"})), held))
    denied = check(mapped, RiskLimits(denied_symbols=frozenset({"EURUSD"})), held)
    assert denied.rules == (RiskRule.SYMBOL_DENIED,)


# -- trading hours ---------------------------------------------------------------------------

WEEKDAYS_8_TO_16 = RiskLimits(
    trading_windows=TradingWindow.daily(
        [Weekday.MONDAY, Weekday.TUESDAY, Weekday.WEDNESDAY, Weekday.THURSDAY, Weekday.FRIDAY],
        time(8),
        time(16),
    )
)


@pytest.mark.parametrize(
    ("at", "inside"),
    [
        (datetime(2026, 1, 5, 8, 0, tzinfo=UTC), True),  # Monday, the start itself
        (datetime(2026, 1, 5, 15, 59, 59, 999999, tzinfo=UTC), True),
        (datetime(2026, 1, 5, 16, 0, tzinfo=UTC), False),  # the end is outside
        (datetime(2026, 1, 5, 7, 59, 59, tzinfo=UTC), False),
        (datetime(2026, 1, 10, 12, 0, tzinfo=UTC), False),  # Saturday
        # 10:00 at UTC+2 is 08:00 UTC.
        (datetime(2026, 1, 5, 10, 0, tzinfo=timezone(timedelta(hours=2))), True),
    ],
)
def test_trading_windows_are_half_open_utc_ranges(at: datetime, inside: bool) -> None:
    decision = check(child("0.10"), WEEKDAYS_8_TO_16, at=at, policy=CLIP)
    assert allowed(decision) is inside
    if not inside:
        assert decision.rules == (RiskRule.OUTSIDE_TRADING_HOURS,)
        assert decision.action is RiskAction.SKIP


def test_a_window_may_span_days_and_wrap_past_sunday_midnight() -> None:
    # The forex week: Sunday 22:00 to Friday 21:00 UTC.
    week = [TradingWindow(Weekday.SUNDAY, time(22), Weekday.FRIDAY, time(21))]
    assert within_trading_windows(week, datetime(2026, 1, 4, 22, 0, tzinfo=UTC))  # Sunday
    assert within_trading_windows(week, datetime(2026, 1, 7, 3, 0, tzinfo=UTC))  # Wednesday
    assert not within_trading_windows(week, datetime(2026, 1, 9, 21, 0, tzinfo=UTC))  # Friday
    assert not within_trading_windows(week, datetime(2026, 1, 10, 12, 0, tzinfo=UTC))
    assert not within_trading_windows(week, datetime(2026, 1, 4, 21, 59, tzinfo=UTC))


def test_a_daily_window_ending_before_it_starts_crosses_midnight() -> None:
    [night] = TradingWindow.daily([Weekday.SUNDAY], time(22), time(2))
    assert (night.start_day, night.end_day) == (Weekday.SUNDAY, Weekday.MONDAY)
    assert night.contains(datetime(2026, 1, 5, 1, 59, tzinfo=UTC))  # Monday 01:59
    assert not night.contains(datetime(2026, 1, 5, 2, 0, tzinfo=UTC))
    [whole_day] = TradingWindow.daily([Weekday.MONDAY], time(0), time(0))
    assert whole_day.contains(datetime(2026, 1, 5, 23, 59, tzinfo=UTC))
    assert not whole_day.contains(datetime(2026, 1, 6, 0, 0, tzinfo=UTC))


def test_no_windows_is_no_restriction() -> None:
    assert within_trading_windows([], datetime(2026, 1, 10, 3, 0, tzinfo=UTC))


# -- stop-outs -------------------------------------------------------------------------------


@pytest.mark.parametrize("action", [StopOutAction.CLOSE_ONLY, StopOutAction.FLATTEN])
def test_a_close_only_account_gets_no_opening_child_even_a_reducing_one(
    action: StopOutAction,
) -> None:
    held = account(long="1.00", mode=NETTING)
    decision = check(child("0.50", Side.SELL), RiskLimits(), held, stop_out=action, policy=CLIP)
    assert decision.action is RiskAction.SKIP
    assert [(v.rule, v.clippable) for v in decision.violations] == [(RiskRule.STOPPED_OUT, False)]


def test_a_blocked_account_may_reduce_but_not_add() -> None:
    blocked = StopOutAction.BLOCK_NEW_ENTRIES
    netting = account(long="1.00", mode=NETTING)
    assert allowed(check(child("0.50", Side.SELL), RiskLimits(), netting, stop_out=blocked))
    # Selling 3.00 would reverse into short 2.00: 2.00 only closes the long.
    decision = check(child("3.00", Side.SELL), RiskLimits(), netting, stop_out=blocked, policy=CLIP)
    assert (decision.action, decision.volume) == (RiskAction.CLIP, D("2.00"))
    # A hedging SELL opens a new short: nothing of it can go.
    hedging = account(long="1.00")
    decision = check(child("0.50", Side.SELL), RiskLimits(), hedging, stop_out=blocked, policy=CLIP)
    assert decision.action is RiskAction.SKIP
    assert decision.rules == (RiskRule.STOPPED_OUT,)


# -- several rules, several children ---------------------------------------------------------


def test_every_violated_rule_is_reported_and_the_tightest_one_decides() -> None:
    # Order limit 1.00; symbol limit 2.00 with 1.50 open leaves 0.50; margin keeps >= 200%:
    # equity 10,000 allows 5,000 margin, 4,100 free of it: 4,100 / 1,100 = 3.72 lots.
    limits = RiskLimits(
        max_order_volume=D("1.00"), max_symbol_volume=D("2.00"), min_margin_level=D(200)
    )
    held = account(long="1.50", margin="900")
    decision = check(child("1.20"), limits, held, policy=CLIP)
    assert decision.rules == (RiskRule.MAX_ORDER_VOLUME, RiskRule.MAX_SYMBOL_VOLUME)
    assert (decision.action, decision.volume) == (RiskAction.CLIP, D("0.50"))


def test_a_rule_that_cannot_clip_skips_the_child_with_every_reason() -> None:
    limits = RiskLimits(max_order_volume=D("1.00"), denied_symbols=frozenset({"EURUSD"}))
    decision = check(child("1.20"), limits, policy=CLIP)
    assert decision.action is RiskAction.SKIP
    assert set(decision.rules) == {RiskRule.SYMBOL_DENIED, RiskRule.MAX_ORDER_VOLUME}


def test_children_of_one_account_are_checked_cumulatively() -> None:
    # Three children of 0.60 against a 1.50 lot symbol limit: 0.60, 0.60, then 0.30.
    limits = RiskLimits(max_symbol_volume=D("1.50"))
    children = [child("0.60"), child("0.60"), child("0.60")]
    result = check_children(
        children, limits=limits, exposure=account(), spec=EURUSD, at=MONDAY_NOON, policy=CLIP
    )
    assert [(d.action, d.volume) for d in result.decisions] == [
        (RiskAction.ALLOW, D("0.60")),
        (RiskAction.ALLOW, D("0.60")),
        (RiskAction.CLIP, D("0.30")),
    ]
    held = result.exposure.in_symbol("EURUSD")
    assert (held.long_volume, held.long_positions) == (D("1.50"), 3)
    # 1.50 lots x 100,000 x 1.10000 / 100.
    assert result.exposure.margin == D(1650)


def test_a_skipped_child_leaves_the_exposure_for_the_next_one() -> None:
    limits = RiskLimits(max_symbol_volume=D("1.50"))
    children = [child("1.00"), child("0.60"), child("0.50")]
    result = check_children(
        children, limits=limits, exposure=account(), spec=EURUSD, at=MONDAY_NOON
    )
    assert [d.action for d in result.decisions] == [
        RiskAction.ALLOW,
        RiskAction.SKIP,
        RiskAction.ALLOW,
    ]
    assert result.exposure.in_symbol("EURUSD").long_volume == D("1.50")


def test_positions_count_cumulatively_on_a_hedging_account() -> None:
    limits = RiskLimits(max_open_positions=2)
    result = check_children(
        [child("0.10"), child("0.10"), child("0.10")],
        limits=limits,
        exposure=account(long="0.10"),
        spec=EURUSD,
        at=MONDAY_NOON,
        policy=CLIP,
    )
    assert [d.action for d in result.decisions] == [
        RiskAction.ALLOW,
        RiskAction.SKIP,
        RiskAction.SKIP,
    ]
    assert result.exposure.open_positions == 2


# -- exposure --------------------------------------------------------------------------------


def test_exposure_is_built_from_a_terminals_positions() -> None:
    snapshot = AccountSnapshot(D(10000), D(9800), D(1200), D(8600), MONDAY_NOON)

    def position(ticket: int, symbol: str, side: Side, volume: str) -> AccountPosition:
        return AccountPosition(
            "acc_1", ticket, symbol, side, D(volume), D(1), 0, "", MONDAY_NOON, MONDAY_NOON
        )

    exposure = AccountExposure.of_positions(
        "acc_1",
        snapshot,
        [
            position(1, "EURUSD", Side.BUY, "0.50"),
            position(2, "EURUSD", Side.BUY, "0.25"),
            position(3, "EURUSD", Side.SELL, "0.10"),
            position(4, "GBPUSD", Side.SELL, "1.00"),
        ],
        leverage=100,
        margin_mode=HEDGING,
    )
    assert exposure.in_symbol("EURUSD") == SymbolExposure(D("0.75"), D("0.10"), 2, 1)
    assert exposure.in_symbol("GBPUSD") == SymbolExposure(D(0), D("1.00"), 0, 1)
    assert exposure.in_symbol("USDJPY") == SymbolExposure()
    assert (exposure.open_positions, exposure.equity, exposure.margin) == (4, D(9800), D(1200))


@pytest.mark.parametrize(
    ("side", "volume", "closing", "expected"),
    [
        (Side.BUY, "0.50", False, SymbolExposure(D("1.50"), D(0), 1, 0)),
        (Side.SELL, "0.40", False, SymbolExposure(D("0.60"), D(0), 1, 0)),
        (Side.SELL, "1.00", False, SymbolExposure()),  # closed exactly
        (Side.SELL, "1.30", False, SymbolExposure(D(0), D("0.30"), 0, 1)),  # reversed
        (Side.SELL, "1.00", True, SymbolExposure()),
    ],
)
def test_a_netting_position_grows_shrinks_closes_and_reverses(
    side: Side, volume: str, closing: bool, expected: SymbolExposure
) -> None:
    held = SymbolExposure(D("1.00"), D(0), 1, 0)
    assert held.after(side, D(volume), netting=True, closing=closing) == expected


def test_a_hedging_close_keeps_the_count_until_the_side_is_flat() -> None:
    held = SymbolExposure(D("1.00"), D("0.50"), 2, 1)
    assert held.after(Side.SELL, D("0.40"), netting=False, closing=True) == SymbolExposure(
        D("0.60"), D("0.50"), 2, 1
    )
    assert held.after(Side.BUY, D("0.50"), netting=False, closing=True) == SymbolExposure(
        D("1.00"), D(0), 2, 0
    )


def test_a_close_frees_no_margin_in_the_estimate() -> None:
    held = account(long="1.00", margin="1100")
    after = exposure_after(held, child("0.40", Side.SELL, closing=True), D("0.40"), EURUSD)
    assert after.in_symbol("EURUSD").long_volume == D("0.60")
    assert after.margin == D(1100)


def test_a_checked_time_without_a_zone_is_a_bug() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        check(child("0.10"), RiskLimits(), at=datetime(2026, 1, 5, 12, 0))


def test_a_child_checked_against_another_accounts_exposure_is_a_bug() -> None:
    other = replace(account(), account_id="acc_2")
    with pytest.raises(ValueError, match="acc_2"):
        check(child("0.10"), RiskLimits(), other)


# -- validation ------------------------------------------------------------------------------


def test_well_formed_limits_have_no_violations() -> None:
    limits = RiskLimits(
        max_order_volume=D(0),
        max_symbol_volume=D("5.00"),
        max_symbol_notional=D(500000),
        max_open_positions=10,
        min_margin_level=D(150),
        allowed_symbols=frozenset({"EURUSD"}),
        denied_symbols=frozenset({"BTCUSD"}),
        trading_windows=WEEKDAYS_8_TO_16.trading_windows,
    )
    assert risk_limits_violations(limits) == []


def test_malformed_limits_name_every_field_at_fault() -> None:
    limits = RiskLimits(
        max_order_volume=D("-1"),
        max_symbol_volume=D("NaN"),
        max_symbol_notional=D("Infinity"),
        max_open_positions=-1,
        min_margin_level=D("-0.01"),
        allowed_symbols=frozenset({"EURUSD", " GBPUSD"}),
        denied_symbols=frozenset({"EURUSD"}),
        trading_windows=(
            TradingWindow(Weekday.MONDAY, time(8), Weekday.MONDAY, time(16)),
            TradingWindow(Weekday.MONDAY, time(8), Weekday.MONDAY, time(8)),
            TradingWindow(Weekday.MONDAY, time(8, tzinfo=UTC), Weekday.MONDAY, time(9)),
            TradingWindow(9, time(8), Weekday.MONDAY, time(9)),  # type: ignore[arg-type]
        ),
    )
    fields = [v.field for v in risk_limits_violations(limits, "group.risk_limits")]
    assert fields == [
        "group.risk_limits.max_order_volume",
        "group.risk_limits.max_symbol_volume",
        "group.risk_limits.max_symbol_notional",
        "group.risk_limits.min_margin_level",
        "group.risk_limits.max_open_positions",
        "group.risk_limits.allowed_symbols",
        "group.risk_limits.denied_symbols",
        "group.risk_limits.trading_windows[1].end",
        "group.risk_limits.trading_windows[2].start",
        "group.risk_limits.trading_windows[3].start_day",
    ]


# -- properties ------------------------------------------------------------------------------
#
# An oracle written apart from the module, in exact fractions: what a trade of `volume` does to
# the account, and whether every limit holds.

SPECS = [EURUSD, COARSE]
Scenario = tuple[ProposedChild, RiskLimits, AccountExposure, SymbolSpec, StopOutAction | None]


def oracle_after(
    held: AccountExposure, symbol: str, side: Side, volume: Fraction
) -> tuple[Fraction, Fraction, int, int]:
    mine = held.in_symbol(symbol)
    long, short = Fraction(mine.long_volume), Fraction(mine.short_volume)
    positions = held.open_positions
    if held.margin_mode is HEDGING:
        gross_before, gross_after = long + short, long + short + volume
        positions_after = positions + 1
    else:
        net = long - short
        net_after = net + (volume if side is Side.BUY else -volume)
        gross_before, gross_after = abs(net), abs(net_after)
        positions_after = positions - (net != 0) + (net_after != 0)
    added = max(Fraction(0), gross_after - gross_before)
    return gross_after, added, positions, positions_after


def oracle_within(
    proposed: ProposedChild,
    volume: Fraction,
    limits: RiskLimits,
    held: AccountExposure,
    spec: SymbolSpec,
    stop_out: StopOutAction | None,
) -> bool:
    gross_after, added, positions, positions_after = oracle_after(
        held, proposed.symbol, proposed.side, volume
    )
    per_lot = (
        Fraction(spec.contract_size)
        * Fraction(proposed.price)
        * Fraction(proposed.profit_to_account_rate)
    )
    checks = []
    if stop_out is not None:
        checks.append(added == 0 and positions_after <= positions)
    if limits.max_order_volume is not None:
        checks.append(volume <= Fraction(limits.max_order_volume))
    if limits.max_symbol_volume is not None:
        checks.append(added == 0 or gross_after <= Fraction(limits.max_symbol_volume))
    if limits.max_symbol_notional is not None:
        checks.append(added == 0 or gross_after * per_lot <= Fraction(limits.max_symbol_notional))
    if limits.max_open_positions is not None:
        checks.append(positions_after <= max(positions, limits.max_open_positions))
    if limits.min_margin_level is not None and added > 0:
        margin_after = Fraction(held.margin) + added * per_lot / held.leverage
        checks.append(
            Fraction(held.equity) * 100 >= Fraction(limits.min_margin_level) * margin_after
        )
    return all(checks)


def optional(values: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.none() | values


lots = st.integers(0, 400).map(lambda n: D(n) / 100)
limits_strategy = st.builds(
    RiskLimits,
    max_order_volume=optional(lots),
    max_symbol_volume=optional(lots),
    max_symbol_notional=optional(st.integers(0, 600_000).map(D)),
    max_open_positions=optional(st.integers(0, 6)),
    min_margin_level=optional(st.sampled_from([D(0), D(50), D(100), D("150.5"), D(500)])),
)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    spec = draw(st.sampled_from(SPECS))
    mode = draw(st.sampled_from([HEDGING, NETTING]))
    held_volume = draw(lots)
    held_side = draw(st.sampled_from([Side.BUY, Side.SELL]))
    if mode is NETTING:
        long, short = (held_volume, D(0)) if held_side is Side.BUY else (D(0), held_volume)
        mine = SymbolExposure(long, short, int(long > 0), int(short > 0))
    else:
        long, short = draw(lots), draw(lots)
        mine = SymbolExposure(long, short, draw(st.integers(int(long > 0), 3)), int(short > 0))
    others = draw(st.integers(0, 4))
    symbols = {spec.name: mine}
    if others:
        symbols["OTHER"] = SymbolExposure(D(others), D(0), others, 0)
    held = AccountExposure(
        "acc_1",
        equity=D(draw(st.integers(-1000, 50_000))),
        margin=D(draw(st.integers(0, 20_000))),
        leverage=draw(st.sampled_from([1, 30, 100, 500])),
        margin_mode=mode,
        symbols=symbols,
    )
    steps = draw(st.integers(1, 300))
    proposed = ProposedChild(
        "acc_1",
        spec.name,
        draw(st.sampled_from([Side.BUY, Side.SELL])),
        spec.volume_min + spec.volume_step * (steps - 1),
        draw(st.sampled_from([D("1.08345"), D("0.85"), D(150), D("20123.5")])),
        draw(st.sampled_from([D(1), D("1.25"), D("0.0066")])),
    )
    stop_out = draw(st.sampled_from([None, StopOutAction.BLOCK_NEW_ENTRIES]))
    return proposed, draw(limits_strategy), held, spec, stop_out


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.sampled_from([CLIP, SKIP]))
def test_allow_is_within_every_limit_and_never_changes_the_volume(
    scenario: Scenario, policy: ViolationPolicy
) -> None:
    proposed, limits, held, spec, stop_out = scenario
    decision = check(proposed, limits, held, policy=policy, spec=spec, stop_out=stop_out)
    requested = Fraction(proposed.volume)
    within = oracle_within(proposed, requested, limits, held, spec, stop_out)
    assert (decision.action is RiskAction.ALLOW) is within
    if decision.action is RiskAction.ALLOW:
        assert decision.volume == proposed.volume
        assert decision.violations == ()
    else:
        assert decision.violations


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_clip_is_the_largest_step_within_every_limit_and_never_more(scenario: Scenario) -> None:
    proposed, limits, held, spec, stop_out = scenario
    decision = check(proposed, limits, held, policy=CLIP, spec=spec, stop_out=stop_out)
    assert decision.volume <= proposed.volume
    if decision.action is RiskAction.CLIP:
        volume = Fraction(decision.volume)
        assert decision.volume < proposed.volume
        assert decision.volume >= spec.volume_min
        assert decision.volume % spec.volume_step == 0
        assert oracle_within(proposed, volume, limits, held, spec, stop_out)
        one_more = volume + Fraction(spec.volume_step)
        assert not oracle_within(proposed, one_more, limits, held, spec, stop_out)
    elif decision.action is RiskAction.SKIP:
        assert decision.volume == 0
        smallest = Fraction(spec.volume_min)
        fixed = any(not v.clippable for v in decision.violations)
        assert fixed or not oracle_within(proposed, smallest, limits, held, spec, stop_out)


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.lists(st.integers(1, 120), min_size=1, max_size=4))
def test_children_checked_together_never_pass_a_limit_together(
    scenario: Scenario, child_steps: list[int]
) -> None:
    proposed, limits, held, spec, stop_out = scenario
    children = [
        replace(proposed, volume=spec.volume_min + spec.volume_step * (n - 1)) for n in child_steps
    ]
    result = check_children(
        children,
        limits=limits,
        exposure=held,
        spec=spec,
        at=MONDAY_NOON,
        policy=CLIP,
        stop_out=stop_out,
    )
    state = held
    for one, decision in zip(children, result.decisions, strict=True):
        assert decision.volume <= one.volume
        if decision.volume > 0:
            assert oracle_within(one, Fraction(decision.volume), limits, state, spec, stop_out)
            state = exposure_after(state, one, decision.volume, spec)
    assert result.exposure == state
    # What was sent, counted apart from the module: the symbol's volume and the positions.
    sent = [d.volume for d in result.decisions if d.volume > 0]
    mine, before = result.exposure.in_symbol(spec.name), held.in_symbol(spec.name)
    if held.margin_mode is HEDGING:
        assert mine.volume == before.volume + sum(sent, D(0))
        assert result.exposure.open_positions == held.open_positions + len(sent)
    else:
        signed = sum(sent, D(0)) * (1 if proposed.side is Side.BUY else -1)
        net_before = before.long_volume - before.short_volume
        assert mine.long_volume - mine.short_volume == net_before + signed


def test_the_worked_example_of_docs_risk_md() -> None:
    limits = RiskLimits(
        max_order_volume=D("2.00"),
        max_symbol_volume=D("3.00"),
        max_symbol_notional=D(300000),
        max_open_positions=5,
        min_margin_level=D(300),
        trading_windows=TradingWindow.daily(
            [Weekday.MONDAY, Weekday.TUESDAY, Weekday.WEDNESDAY, Weekday.THURSDAY, Weekday.FRIDAY],
            time(7),
            time(20),
        ),
    )
    held = AccountExposure(
        "acc_1",
        D(10000),
        D(1000),
        100,
        HEDGING,
        {
            "EURUSD": SymbolExposure(D("1.00"), D(0), 1, 0),
            "GBPUSD": SymbolExposure(D("0.50"), D(0), 1, 0),
        },
    )
    first, second = child("2.50"), child("0.50")
    skipped = check(first, limits, held, policy=SKIP)
    expected_rules = (
        RiskRule.MAX_ORDER_VOLUME,
        RiskRule.MAX_SYMBOL_VOLUME,
        RiskRule.MAX_SYMBOL_NOTIONAL,
        RiskRule.MIN_MARGIN_LEVEL,
    )
    assert (skipped.action, skipped.rules) == (RiskAction.SKIP, expected_rules)
    assert [v.value for v in skipped.violations] == [D("2.50"), D("3.50"), D(385000), D("266.66")]
    result = check_children(
        [first, second], limits=limits, exposure=held, spec=EURUSD, at=MONDAY_NOON, policy=CLIP
    )
    assert [(d.action, d.volume) for d in result.decisions] == [
        (RiskAction.CLIP, D("1.72")),
        (RiskAction.SKIP, D(0)),
    ]
    assert result.decisions[0].rules == expected_rules
