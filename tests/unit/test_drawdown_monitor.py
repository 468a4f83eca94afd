"""Loss limits on equity: the daily loss and the drawdown from the high-water mark, their
boundaries, day changes in a configured zone, explicit resets, and groups."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain.accounts import AccountSnapshot
from gateway.domain.drawdown_monitor import (
    DrawdownState,
    DrawdownUpdate,
    LossLimit,
    LossLimits,
    LossRule,
    LossUnit,
    StopOutAction,
    group_snapshot,
    loss_limits_violations,
    observe_equity,
    record_transfer,
    reset_breaches,
    start_watch,
    trading_day_of,
)

D = Decimal
MONEY = LossUnit.MONEY
PERCENT = LossUnit.PERCENT
# Monday 5 January 2026.
MONDAY = datetime(2026, 1, 5, tzinfo=UTC)


def at(hours: float, day: int = 0) -> datetime:
    return MONDAY + timedelta(days=day, hours=hours)


def snapshot(equity: str | int | Decimal, when: datetime) -> AccountSnapshot:
    value = D(str(equity))
    return AccountSnapshot(value, value, D(0), value, when)


class Watch:
    """Feeds snapshots to observe_equity and keeps the state, as the account monitor would."""

    def __init__(self, limits: LossLimits) -> None:
        self.limits = limits
        self.state: DrawdownState | None = None

    def see(self, equity: str | int | Decimal, when: datetime) -> DrawdownUpdate:
        update = observe_equity(self.state, snapshot(equity, when), self.limits)
        self.state = update.state
        return update

    @property
    def current(self) -> DrawdownState:
        assert self.state is not None
        return self.state


# -- maximum drawdown ------------------------------------------------------------------------


def test_the_high_water_mark_is_the_highest_equity_seen() -> None:
    watch = Watch(LossLimits())
    watch.see(10000, at(1))
    watch.see(11000, at(2))
    watch.see(10500, at(3))
    state = watch.current
    assert (state.high_water_mark, state.high_water_mark_at) == (D(11000), at(2))
    assert state.drawdown == D(500)


def test_a_drawdown_exactly_at_the_money_limit_is_no_breach() -> None:
    watch = Watch(LossLimits(max_drawdown=LossLimit(D(1000), MONEY)))
    watch.see(10000, at(1))
    watch.see(11000, at(2))
    update = watch.see(10000, at(3))
    assert update.triggered == ()
    assert watch.current.action is None


def test_a_drawdown_beyond_the_money_limit_stops_out_with_its_figures() -> None:
    limit = LossLimit(D(1000), MONEY, StopOutAction.FLATTEN)
    watch = Watch(LossLimits(max_drawdown=limit))
    watch.see(10000, at(1))
    watch.see(11000, at(2))
    [stop_out] = watch.see("9999.99", at(3)).triggered
    assert stop_out.rule is LossRule.MAX_DRAWDOWN
    assert stop_out.action is StopOutAction.FLATTEN
    assert (stop_out.at, stop_out.equity, stop_out.high_water_mark) == (
        at(3),
        D("9999.99"),
        D(11000),
    )
    # 1,000.01 / 11,000 = 9.0910...%: rounded up, so it never shows as the limit itself.
    assert (stop_out.loss, stop_out.loss_percent) == (D("1000.01"), D("9.10"))
    assert stop_out.limit == limit
    assert stop_out.reference == D(11000)
    assert "MAX_DRAWDOWN: equity 9999.99 is 1000.01 (9.10%) below the high-water mark" in (
        stop_out.describe()
    )
    assert watch.current.action is StopOutAction.FLATTEN


def test_a_percentage_drawdown_breaches_only_beyond_the_percentage() -> None:
    watch = Watch(LossLimits(max_drawdown=LossLimit(D(10), PERCENT)))
    watch.see(20000, at(1))
    assert watch.see(18000, at(2)).triggered == ()  # exactly 10%
    [stop_out] = watch.see(17999, at(3)).triggered
    # 2,001 / 20,000 = 10.005%.
    assert (stop_out.loss, stop_out.loss_percent) == (D(2001), D("10.01"))


def test_a_breach_stays_when_equity_recovers_and_is_not_raised_twice() -> None:
    watch = Watch(LossLimits(max_drawdown=LossLimit(D(10), PERCENT)))
    watch.see(20000, at(1))
    [first] = watch.see(17000, at(2)).triggered
    assert watch.see(16000, at(3)).triggered == ()
    recovered = watch.see(21000, at(4))
    assert (recovered.triggered, recovered.ended) == ((), ())
    assert watch.current.breaches == (first,)
    assert watch.current.high_water_mark == D(21000)


def test_a_reset_ends_the_breach_and_starts_again_from_the_latest_equity() -> None:
    watch = Watch(LossLimits(max_drawdown=LossLimit(D(10), PERCENT)))
    watch.see(20000, at(1))
    [breach] = watch.see(17999, at(2)).triggered
    watch.see(19000, at(3))
    reset = reset_breaches(watch.current)
    assert reset.ended == (breach,)
    watch.state = reset.state
    assert (watch.current.high_water_mark, watch.current.high_water_mark_at) == (D(19000), at(3))
    assert watch.current.action is None
    # 19,000 -> 17,200 is 9.47%: within; 17,000 is 10.53%: a new breach.
    assert watch.see(17200, at(4)).triggered == ()
    [again] = watch.see(17000, at(5)).triggered
    assert again.high_water_mark == D(19000)


def test_a_reset_of_one_rule_keeps_the_other() -> None:
    limits = LossLimits(daily_loss=LossLimit(D(100), MONEY), max_drawdown=LossLimit(D(100), MONEY))
    watch = Watch(limits)
    watch.see(1000, at(1))
    assert len(watch.see(800, at(2)).triggered) == 2
    reset = reset_breaches(watch.current, [LossRule.DAILY_LOSS])
    assert [b.rule for b in reset.ended] == [LossRule.DAILY_LOSS]
    assert [b.rule for b in reset.state.breaches] == [LossRule.MAX_DRAWDOWN]
    assert reset.state.day_start_equity == D(800)
    assert reset.state.high_water_mark == D(1000)


# -- daily loss ------------------------------------------------------------------------------


def test_a_daily_loss_exactly_at_the_limit_is_no_breach() -> None:
    watch = Watch(LossLimits(daily_loss=LossLimit(D(500), MONEY)))
    watch.see(10000, at(0.1))
    assert watch.see(9500, at(15)).triggered == ()
    [stop_out] = watch.see(9499, at(16)).triggered
    assert stop_out.rule is LossRule.DAILY_LOSS
    assert stop_out.action is StopOutAction.BLOCK_NEW_ENTRIES
    assert (stop_out.day_start_equity, stop_out.loss) == (D(10000), D(501))
    assert stop_out.reference == D(10000)


def test_a_percentage_daily_loss_is_of_the_start_of_day_equity() -> None:
    # 5% of 8,000 is 400; the high-water mark (12,000) plays no part.
    watch = Watch(LossLimits(daily_loss=LossLimit(D(5), PERCENT)))
    watch.see(12000, at(12, day=-3))
    watch.see(8000, at(0.5))
    assert watch.current.day_start_equity == D(8000)
    assert watch.see(7600, at(9)).triggered == ()
    [stop_out] = watch.see("7599.99", at(10)).triggered
    assert stop_out.loss_percent == D("5.01")


def test_the_first_snapshot_of_a_day_sets_its_start_and_ends_a_daily_breach() -> None:
    watch = Watch(LossLimits(daily_loss=LossLimit(D(500), MONEY)))
    watch.see(10000, at(1))
    [breach] = watch.see(9000, at(20)).triggered
    update = watch.see(9100, at(0.01, day=1))
    assert update.ended == (breach,)
    assert update.triggered == ()
    state = watch.current
    assert (state.trading_day, state.day_start_equity) == (date(2026, 1, 6), D(9100))
    assert state.action is None
    # The new day counts from 9,100: 8,600 is exactly 500 down.
    assert watch.see(8600, at(5, day=1)).triggered == ()


def test_a_daily_breach_may_be_kept_until_it_is_reset() -> None:
    limits = LossLimits(daily_loss=LossLimit(D(500), MONEY), daily_breach_ends_next_day=False)
    watch = Watch(limits)
    watch.see(10000, at(1))
    [breach] = watch.see(9000, at(20)).triggered
    update = watch.see(9100, at(1, day=1))
    assert (update.triggered, update.ended) == ((), ())
    assert watch.current.breaches == (breach,)
    assert watch.current.day_start_equity == D(9100)


def test_days_are_counted_in_the_configured_zone() -> None:
    # A broker day on UTC+2 starts at 22:00 UTC.
    zone = timezone(timedelta(hours=2))
    watch = Watch(LossLimits(daily_loss=LossLimit(D(500), MONEY), day_zone=zone))
    watch.see(10000, at(1))
    watch.see(9600, at(21 + 59 / 60))
    assert watch.current.day_start_equity == D(10000)
    watch.see(9550, at(22))
    assert (watch.current.trading_day, watch.current.day_start_equity) == (
        date(2026, 1, 6),
        D(9550),
    )
    assert trading_day_of(at(21.99), zone) == date(2026, 1, 5)


def test_a_negative_offset_moves_the_day_later() -> None:
    new_york_winter = timezone(timedelta(hours=-5))
    assert trading_day_of(at(4.99), new_york_winter) == date(2026, 1, 4)
    assert trading_day_of(at(5), new_york_winter) == date(2026, 1, 5)


# -- several rules, late and naive snapshots ---------------------------------------------------


def test_both_rules_can_breach_at_once_and_the_severest_action_wins() -> None:
    limits = LossLimits(
        daily_loss=LossLimit(D(300), MONEY, StopOutAction.BLOCK_NEW_ENTRIES),
        max_drawdown=LossLimit(D(5), PERCENT, StopOutAction.CLOSE_ONLY),
    )
    watch = Watch(limits)
    watch.see(10000, at(1))
    triggered = watch.see(9000, at(2)).triggered
    assert [b.rule for b in triggered] == [LossRule.DAILY_LOSS, LossRule.MAX_DRAWDOWN]
    assert watch.current.action is StopOutAction.CLOSE_ONLY


def test_a_snapshot_older_than_the_latest_is_ignored() -> None:
    watch = Watch(LossLimits(max_drawdown=LossLimit(D(100), MONEY)))
    watch.see(10000, at(2))
    before = watch.current
    update = watch.see(5000, at(1))
    assert update == DrawdownUpdate(before)


def test_a_snapshot_without_a_time_zone_is_a_bug() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        observe_equity(None, snapshot(1, datetime(2026, 1, 5)), LossLimits())


def test_the_first_snapshot_cannot_breach_a_loss_limit() -> None:
    update = observe_equity(
        None, snapshot(0, at(1)), LossLimits(max_drawdown=LossLimit(D(1), PERCENT))
    )
    assert update.triggered == ()
    assert update.state == start_watch(snapshot(0, at(1)), LossLimits())


def test_a_percentage_of_nothing_breaches_on_any_loss() -> None:
    watch = Watch(LossLimits(max_drawdown=LossLimit(D(50), PERCENT)))
    watch.see(0, at(1))
    [stop_out] = watch.see(-10, at(2)).triggered
    assert (stop_out.loss, stop_out.loss_percent) == (D(10), None)


# -- transfers and groups --------------------------------------------------------------------


def test_a_withdrawal_recorded_as_a_transfer_is_not_a_loss() -> None:
    watch = Watch(LossLimits(max_drawdown=LossLimit(D(10), PERCENT)))
    watch.see(10000, at(1))
    watch.state = record_transfer(watch.current, D(-3000))
    assert (watch.current.high_water_mark, watch.current.day_start_equity) == (D(7000), D(7000))
    assert watch.see(7000, at(2)).triggered == ()
    assert watch.current.drawdown == 0


def test_a_group_is_watched_on_the_sum_of_its_members() -> None:
    limits = LossLimits(max_drawdown=LossLimit(D(10), PERCENT))
    state = None
    for a, b, hours, breaches in [
        (6000, 4000, 1, 0),
        (6000, 3000, 2, 0),  # 10,000 -> 9,000: exactly 10%
        (6000, 2999, 3, 1),
    ]:
        group = group_snapshot(
            {"acc_a": snapshot(a, at(hours)), "acc_b": snapshot(b, at(hours + 0.01))}
        )
        assert group is not None
        assert (group.equity, group.time) == (D(a + b), at(hours + 0.01))
        state = observe_equity(state, group, limits).state
        assert len(state.breaches) == breaches


def test_a_group_with_a_member_unread_has_no_sum() -> None:
    assert group_snapshot({"acc_a": snapshot(1, at(1)), "acc_b": None}) is None
    assert group_snapshot({}) is None


# -- validation ------------------------------------------------------------------------------


def test_well_formed_loss_limits_have_no_violations() -> None:
    limits = LossLimits(
        daily_loss=LossLimit(D(5), PERCENT), max_drawdown=LossLimit(D("2500.50"), MONEY)
    )
    assert loss_limits_violations(limits) == []


def test_malformed_loss_limits_name_every_field_at_fault() -> None:
    limits = LossLimits(
        daily_loss=LossLimit(D(0), MONEY), max_drawdown=LossLimit(D("100.5"), PERCENT)
    )
    assert [v.field for v in loss_limits_violations(limits, "group.loss_limits")] == [
        "group.loss_limits.daily_loss.amount",
        "group.loss_limits.max_drawdown.amount",
    ]
    for amount in ("-1", "NaN", "Infinity"):
        bad = LossLimits(daily_loss=LossLimit(D(amount), MONEY))
        assert [v.field for v in loss_limits_violations(bad)] == ["loss_limits.daily_loss.amount"]


# -- properties ------------------------------------------------------------------------------

equities = st.lists(st.integers(-2_000, 30_000).map(D), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(equities, st.integers(1, 5_000).map(D))
def test_a_drawdown_breach_fires_once_exactly_when_the_loss_first_passes_the_limit(
    values: list[Decimal], limit: Decimal
) -> None:
    watch = Watch(LossLimits(max_drawdown=LossLimit(limit, MONEY)))
    high, fired = values[0], False
    for i, equity in enumerate(values):
        update = watch.see(equity, at(i / 10))
        high = max(high, equity)
        assert watch.current.high_water_mark == high
        should_fire = not fired and high - equity > limit
        assert len(update.triggered) == int(should_fire)
        fired = fired or should_fire
        # Once breached, breached: nothing here resets it.
        assert (watch.current.action is not None) is fired


@settings(max_examples=200, deadline=None)
@given(equities, st.integers(1, 100).map(D))
def test_within_one_day_a_daily_breach_means_the_loss_passed_the_limit(
    values: list[Decimal], percent: Decimal
) -> None:
    watch = Watch(LossLimits(daily_loss=LossLimit(percent, PERCENT)))
    start = values[0]
    for i, equity in enumerate(values):
        for breach in watch.see(equity, at(i / 10)).triggered:
            assert breach.day_start_equity == start
            if start > 0:
                assert (start - equity) * 100 > percent * start
            else:
                assert equity < start
    state = watch.current
    if state.action is None:
        assert all(start <= 0 or (start - e) * 100 <= percent * start for e in values)


def test_the_worked_example_of_docs_risk_md() -> None:
    limits = LossLimits(
        daily_loss=LossLimit(D(3), PERCENT, StopOutAction.BLOCK_NEW_ENTRIES),
        max_drawdown=LossLimit(D(10), PERCENT, StopOutAction.FLATTEN),
        day_zone=timezone(timedelta(hours=2)),
    )
    watch = Watch(limits)
    seen = []
    for hours, equity in [
        (6, 10000),
        (14, 10800),
        (21.5, 10200),
        (22 + 5 / 60, 10150),
        (33, 9840),
        (39, 9700),
        (46 + 1 / 60, 9750),
    ]:
        update = watch.see(equity, at(hours))
        state = watch.current
        seen.append(
            (
                state.trading_day.day,
                state.day_start_equity,
                state.high_water_mark,
                [(b.rule, b.loss_percent) for b in update.triggered],
                [b.rule for b in update.ended],
                state.action,
            )
        )
    daily, drawdown = LossRule.DAILY_LOSS, LossRule.MAX_DRAWDOWN
    assert seen == [
        (5, D(10000), D(10000), [], [], None),
        (5, D(10000), D(10800), [], [], None),
        (5, D(10000), D(10800), [], [], None),
        (6, D(10150), D(10800), [], [], None),
        (6, D(10150), D(10800), [(daily, D("3.06"))], [], StopOutAction.BLOCK_NEW_ENTRIES),
        (6, D(10150), D(10800), [(drawdown, D("10.19"))], [], StopOutAction.FLATTEN),
        (7, D(9750), D(10800), [], [daily], StopOutAction.FLATTEN),
    ]
