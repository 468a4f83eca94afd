"""Performance and management fees against hand-computed fixtures (arithmetic in comments;
docs/reporting.md shows the same examples)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from gateway.domain.balance_operations import BalanceOperation, BalanceOperationKind
from gateway.domain.fees import (
    FeeSchedule,
    HighWaterMark,
    ManagementFeeBasis,
    management_fee,
    performance_fees,
    period_fees,
)
from gateway.domain.performance import AccountActivity, EquityPoint
from gateway.domain.reporting_period import Frequency, Period

D = Decimal
TWENTY_PERCENT = FeeSchedule(performance_fee_percent=D("20"))


def at(month: int, day: int, hour: int = 21) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def point(time: datetime, equity: str) -> EquityPoint:
    return EquityPoint(time=time, balance=D(equity), equity=D(equity))


def flow(time: datetime, amount: str) -> BalanceOperation:
    kind = BalanceOperationKind.DEPOSIT if D(amount) > 0 else BalanceOperationKind.WITHDRAWAL
    return BalanceOperation(time=time, kind=kind, amount=D(amount))


def four_months(march_equity: str = "12600") -> AccountActivity:
    return AccountActivity(
        "acc-1",
        points=(
            point(at(1, 1, 0), "10000"),
            point(at(1, 31), "11000"),
            point(at(2, 27), "10500"),
            point(at(3, 31), march_equity),
            point(at(4, 30), "6200"),
        ),
        operations=(flow(at(3, 15, 12), "1000"), flow(at(4, 10, 12), "-6300")),
    )


JANUARY_TO_APRIL = Period.of_days(date(2026, 1, 1), date(2026, 4, 30))


def test_performance_fee_crossing_the_high_water_mark_twice() -> None:
    result = performance_fees(four_months(), TWENTY_PERCENT, JANUARY_TO_APRIL)
    rows = [
        (
            c.period.start.month,
            c.high_water_mark,
            c.equity,
            c.gain,
            c.fee,
            c.closing_high_water_mark,
        )
        for c in result.charges
    ]
    assert rows == [
        # Jan: HWM starts at the first equity 10000; 20% x (11000 - 10000) = 200; HWM 11000.
        (1, D("10000"), D("11000"), D("1000"), D("200.00"), D("11000")),
        # Feb: 10500 is under the mark: no fee, the mark stays.
        (2, D("11000"), D("10500"), D("0"), D("0.00"), D("11000")),
        # Mar: the 1000 deposit raises the mark to 12000; 20% x (12600 - 12000) = 120.
        # (Without the adjustment it would be 20% x (12600 - 11000) = 320.)
        (3, D("12000"), D("12600"), D("600"), D("120.00"), D("12600")),
        # Apr: withdrawing 6300 of 12600 takes half: the mark becomes 12600 x 0.5 = 6300.
        (4, D("6300.00"), D("6200"), D("0"), D("0.00"), D("6300.00")),
    ]
    assert all(c.crystallised for c in result.charges)
    assert (result.crystallised_fee, result.accrued_fee) == (D("320.00"), D(0))
    assert result.high_water_mark == HighWaterMark(
        value=D("6300.00"), equity=D("6200"), as_of=datetime(2026, 5, 1, tzinfo=UTC)
    )


def test_quarterly_crystallisation_nets_the_months_of_a_quarter() -> None:
    schedule = FeeSchedule(performance_fee_percent=D("20"), crystallisation=Frequency.QUARTERLY)
    activity = four_months(march_equity="11900")
    first_quarter = Period.of_days(date(2026, 1, 1), date(2026, 3, 31))
    monthly = performance_fees(activity, TWENTY_PERCENT, first_quarter)
    quarterly = performance_fees(activity, schedule, first_quarter)
    # Monthly: January's 200 stays charged although March ends at 11900, under the mark that
    # the 1000 deposit raised to 12000.
    assert [c.fee for c in monthly.charges] == [D("200.00"), 0, 0]
    # Quarterly: one crystallisation on 1 April; mark 10000 + 1000 deposit = 11000;
    # 20% x (11900 - 11000) = 180.
    (q1,) = quarterly.charges
    assert (q1.high_water_mark, q1.gain, q1.fee, q1.crystallised) == (
        D("11000"),
        D("900"),
        D("180.00"),
        True,
    )
    assert q1.closing_high_water_mark == D("11900")


def test_a_withdrawal_takes_its_share_of_the_loss_to_earn_back() -> None:
    carried = HighWaterMark(
        value=D("12000"), equity=D("9000"), as_of=datetime(2026, 6, 1, tzinfo=UTC)
    )
    activity = AccountActivity(
        "acc-1",
        # Before the carried state: already in it, so ignored.
        points=(point(at(5, 31), "1"), point(at(6, 30), "6300")),
        operations=(flow(at(6, 5, 12), "-4500"),),
    )
    period = Period.of_days(date(2026, 5, 1), date(2026, 6, 30))
    result = performance_fees(activity, TWENTY_PERCENT, period, high_water_mark=carried)
    (june,) = result.charges
    # Withdrawing 4500 of 9000 (the carried equity: no snapshot yet) halves the mark:
    # 12000 x 0.5 = 6000, so 3000 of loss becomes 1500. 20% x (6300 - 6000) = 60.
    # (Lowering the mark by the amount instead, 12000 - 4500 = 7500, would charge nothing.)
    assert (june.high_water_mark, june.gain, june.fee) == (D("6000.00"), D("300"), D("60.00"))
    assert result.high_water_mark is not None
    assert result.high_water_mark.value == D("6300")


def test_a_withdrawal_in_profit_takes_its_share_of_the_gain_with_its_fee() -> None:
    activity = AccountActivity(
        "acc-1",
        points=(point(at(1, 1, 0), "10000"), point(at(1, 15), "12000"), point(at(1, 31), "4500")),
        operations=(flow(at(1, 20, 12), "-6000"),),
    )
    january = Period.of_days(date(2026, 1, 1), date(2026, 1, 31))
    (charge,) = performance_fees(activity, TWENTY_PERCENT, january).charges
    # Withdrawing 6000 of 12000 takes half of the 2000 gain above the 10000 mark: 1000 stays
    # due; the mark becomes 10000 x 0.5 = 5000. The account then falls to 4500, under the mark,
    # yet the gain taken out is charged: 20% x (0 + 1000) = 200.
    assert (charge.withdrawn_gain, charge.gain, charge.fee) == (
        D("1000.00"),
        D("1000.00"),
        D("200.00"),
    )
    assert (charge.high_water_mark, charge.closing_high_water_mark) == (D("5000.00"), D("5000.00"))


def test_a_period_short_of_its_boundary_accrues_and_continues_from_its_state() -> None:
    activity = AccountActivity(
        "acc-1",
        points=(point(at(1, 1, 0), "10000"), point(at(1, 10), "10500"), point(at(1, 31), "11000")),
    )
    first = Period(at(1, 1, 0), at(1, 15, 12))
    partial = performance_fees(activity, TWENTY_PERCENT, first)
    (charge,) = partial.charges
    # 20% x (10500 - 10000) = 100 accrued; the mark is not raised before the month's end.
    assert (charge.crystallised, charge.fee, charge.closing_high_water_mark) == (
        False,
        D("100.00"),
        D("10000"),
    )
    assert (partial.crystallised_fee, partial.accrued_fee) == (D(0), D("100.00"))
    rest = performance_fees(
        activity,
        TWENTY_PERCENT,
        Period(at(1, 15, 12), datetime(2026, 2, 1, tzinfo=UTC)),
        high_water_mark=partial.high_water_mark,
    )
    # The two pieces crystallise what one call over January does: 20% x 1000.
    whole = performance_fees(
        activity, TWENTY_PERCENT, Period.of_days(date(2026, 1, 1), date(2026, 1, 31))
    )
    assert rest.crystallised_fee == whole.crystallised_fee == D("200.00")
    assert rest.high_water_mark == whole.high_water_mark


def test_no_snapshot_no_performance_fee() -> None:
    result = performance_fees(AccountActivity("acc-1"), TWENTY_PERCENT, JANUARY_TO_APRIL)
    assert (result.charges, result.high_water_mark) == ((), None)
    assert result.crystallised_fee == 0


# -- management fee ----------------------------------------------------------------------------

TEN_DAYS = Period.of_days(date(2026, 1, 1), date(2026, 1, 10))
RISING = AccountActivity(
    "acc-1", points=(point(at(1, 1, 12), "100000"), point(at(1, 5, 12), "110000"))
)


def test_management_fee_accrues_daily_on_each_days_equity() -> None:
    schedule = FeeSchedule(management_fee_percent=D("2"))
    charge = management_fee(RISING, schedule, TEN_DAYS)
    # Jan 1-4 at 100000 (4 days), Jan 5-10 at 110000 (6 days, carried forward):
    # sum 400000 + 660000 = 1060000; average 106000.
    # 2% x 1060000 / 365 = 21200 / 365 = 58.0821917... -> 58.08
    assert (charge.days, charge.basis_equity, charge.fee) == (10, D("106000"), D("58.08"))


def test_management_fee_on_closing_equity() -> None:
    schedule = FeeSchedule(
        management_fee_percent=D("2"), management_fee_basis=ManagementFeeBasis.CLOSING_EQUITY
    )
    charge = management_fee(RISING, schedule, TEN_DAYS)
    # 2% x 110000 x 10 / 365 = 22000 / 365 = 60.2739726... -> 60.27
    assert (charge.basis_equity, charge.fee) == (D("110000"), D("60.27"))


def test_days_before_the_first_snapshot_accrue_on_the_opening_equity() -> None:
    schedule = FeeSchedule(management_fee_percent=D("2"))
    activity = AccountActivity("acc-1", points=(point(at(1, 3, 12), "100000"),))
    charge = management_fee(activity, schedule, TEN_DAYS, opening_equity=D("90000"))
    # 2 x 90000 + 8 x 100000 = 980000; 2% x 980000 / 365 = 19600 / 365 = 53.6986... -> 53.70
    assert charge.fee == D("53.70")
    # Without an opening equity those days accrue nothing: 2% x 800000 / 365 = 43.8356 -> 43.84
    assert management_fee(activity, schedule, TEN_DAYS).fee == D("43.84")


def test_fees_are_rounded_half_up_to_the_money_step() -> None:
    schedule = FeeSchedule(management_fee_percent=D("2"))
    one_day = Period.of_days(date(2026, 1, 1), date(2026, 1, 1))
    activity = AccountActivity("acc-1", points=(point(at(1, 1, 12), "2281.25"),))
    # 2% x 2281.25 / 365 = 45.625 / 365 = 0.125 exactly: half up gives 0.13 (half even 0.12).
    assert management_fee(activity, schedule, one_day).fee == D("0.13")


def test_negative_equity_and_empty_periods_accrue_nothing() -> None:
    schedule = FeeSchedule(management_fee_percent=D("2"))
    negative = AccountActivity("acc-1", points=(point(at(1, 1, 12), "-500"),))
    assert management_fee(negative, schedule, TEN_DAYS).fee == 0
    empty = management_fee(AccountActivity("acc-1"), schedule, TEN_DAYS)
    assert (empty.days, empty.basis_equity, empty.fee) == (10, D(0), D(0))


def test_period_fees_add_crystallised_performance_and_management_fees() -> None:
    schedule = FeeSchedule(performance_fee_percent=D("20"), management_fee_percent=D("2"))
    january = Period.of_days(date(2026, 1, 1), date(2026, 1, 31))
    fees = period_fees(four_months(), schedule, january)
    # Performance: 200 (above). Management: Jan 1-30 at 10000, Jan 31 at 11000:
    # 2% x (30 x 10000 + 11000) / 365 = 6220 / 365 = 17.0410958... -> 17.04
    assert fees.performance.crystallised_fee == D("200.00")
    assert fees.management.fee == D("17.04")
    assert fees.total == D("217.04")


@pytest.mark.parametrize(
    "settings",
    [
        {"performance_fee_percent": D("100.01")},
        {"management_fee_percent": D("-1")},
        {"days_per_year": 0},
        {"money_step": D("0")},
    ],
)
def test_a_fee_schedule_out_of_range_is_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        FeeSchedule(**settings)  # type: ignore[arg-type]
