"""The fees a manager charges an account: a performance fee above a high-water mark,
crystallised at calendar boundaries, and a yearly management fee accrued day by day.

The rules (docs/reporting.md has them with worked examples):
- The high-water mark (HWM) is an equity level. It starts at the account's first valued
  equity, or at the carried HighWaterMark.
- Money in (a deposit, credit granted, a transfer in) raises the HWM by its amount: new money
  must earn before it is charged for.
- Money out (a withdrawal, credit removed, a transfer out) lowers the HWM pro rata: by the
  fraction of equity taken out, HWM x (1 - W / E), E being the equity just before it (the last
  snapshot plus the flows since). A withdrawal takes its share of any loss still to be earned
  back with it, and its share of any gain above the HWM: that share, (E - HWM) x W / E, is
  kept as `withdrawn_gain` and charged at the next crystallisation whatever follows (money taken
  out in profit has earned its fee). A fee debited from the account is such a withdrawal: at the
  HWM it lowers the HWM by exactly the fee.
- At each crystallisation boundary (the first instant of a month, quarter or year, UTC) the fee
  is rate x (max(0, equity - HWM) + withdrawn gain), and the HWM becomes max(HWM, equity) - the
  equity before any fee is taken, as explained above.
- The management fee accrues each UTC day rate / days_per_year of an equity: that day's closing
  equity (AVERAGE_EQUITY: the fee is then rate x average daily equity x days / days_per_year) or
  the period's closing equity (CLOSING_EQUITY).
- Fees are rounded once, half up, to the schedule's money step; HWM adjustments are kept to the
  same step (half even).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, localcontext

from gateway.domain.balance_operations import BalanceOperation
from gateway.domain.performance import (
    EXACT_CONTEXT,
    STATISTICS_CONTEXT,
    AccountActivity,
    EquityPoint,
)
from gateway.domain.reporting_period import Frequency, Period, is_boundary, utc_day

_ZERO = Decimal(0)
_ONE = Decimal(1)
_HUNDRED = Decimal(100)


class ManagementFeeBasis(enum.Enum):
    # Each day accrues on its own closing equity: the fee follows the average equity.
    AVERAGE_EQUITY = "AVERAGE_EQUITY"
    # Each day accrues on the period's closing equity.
    CLOSING_EQUITY = "CLOSING_EQUITY"


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """An account's fee settings. Rates are percentages (20 = 20%)."""

    performance_fee_percent: Decimal = _ZERO
    crystallisation: Frequency = Frequency.MONTHLY
    # A year's management fee.
    management_fee_percent: Decimal = _ZERO
    management_fee_basis: ManagementFeeBasis = ManagementFeeBasis.AVERAGE_EQUITY
    days_per_year: int = 365
    # The account currency's smallest amount: fees are rounded to it.
    money_step: Decimal = Decimal("0.01")

    def __post_init__(self) -> None:
        for name in ("performance_fee_percent", "management_fee_percent"):
            rate = getattr(self, name)
            if not _ZERO <= rate <= _HUNDRED:
                raise ValueError(f"{name} must be within 0..100: {rate}")
        if self.days_per_year <= 0:
            raise ValueError(f"days_per_year must be positive: {self.days_per_year}")
        if self.money_step <= 0:
            raise ValueError(f"money_step must be positive: {self.money_step}")


@dataclass(frozen=True, slots=True)
class HighWaterMark:
    """What the performance fee carries from one period to the next: the HWM and the account's
    equity, both as of just before `as_of` (every snapshot and flow earlier than it is in them)."""

    value: Decimal
    equity: Decimal
    as_of: datetime
    # Gain above the HWM taken out by withdrawals since the last crystallisation: still due.
    withdrawn_gain: Decimal = _ZERO


@dataclass(frozen=True, slots=True)
class PerformanceFeeCharge:
    """The performance fee of one crystallisation period."""

    period: Period
    # The HWM after the period's flows, before crystallising; the equity at the period's end
    # (its last snapshot and the flows after it).
    high_water_mark: Decimal
    equity: Decimal
    # The gain above the mark that withdrawals took out during the period (or carried in).
    withdrawn_gain: Decimal
    # max(0, equity - high_water_mark) + withdrawn_gain, and the rate's share of it rounded to
    # the money step.
    gain: Decimal
    fee: Decimal
    # False: the period stops short of its boundary and the fee is only accrued so far.
    crystallised: bool
    # The HWM carried on: max(high_water_mark, equity) once crystallised, else unchanged.
    closing_high_water_mark: Decimal


@dataclass(frozen=True, slots=True)
class PerformanceFeeResult:
    charges: tuple[PerformanceFeeCharge, ...]
    # The state at the end of the period, to start the next one from; None while the account
    # has never been valued.
    high_water_mark: HighWaterMark | None

    @property
    def crystallised_fee(self) -> Decimal:
        return sum((c.fee for c in self.charges if c.crystallised), _ZERO)

    @property
    def accrued_fee(self) -> Decimal:
        """The fee of a trailing partial period: what it would be if it ended now."""
        return sum((c.fee for c in self.charges if not c.crystallised), _ZERO)


@dataclass(frozen=True, slots=True)
class ManagementFeeCharge:
    period: Period
    basis: ManagementFeeBasis
    days: int
    # AVERAGE_EQUITY: the mean of the days' closing equities; CLOSING_EQUITY: the period's
    # closing equity.
    basis_equity: Decimal
    fee: Decimal


@dataclass(frozen=True, slots=True)
class PeriodFees:
    performance: PerformanceFeeResult
    management: ManagementFeeCharge

    @property
    def total(self) -> Decimal:
        """Fees due for the period: crystallised performance fees and the management fee."""
        return self.performance.crystallised_fee + self.management.fee


def period_fees(
    activity: AccountActivity,
    schedule: FeeSchedule,
    period: Period,
    *,
    high_water_mark: HighWaterMark | None = None,
) -> PeriodFees:
    """Both fees of a period; the management fee counts the days before the first snapshot at
    the carried equity."""
    return PeriodFees(
        performance=performance_fees(activity, schedule, period, high_water_mark=high_water_mark),
        management=management_fee(
            activity,
            schedule,
            period,
            opening_equity=high_water_mark.equity if high_water_mark else None,
        ),
    )


# -- performance fee ---------------------------------------------------------------------------


class _Mark:
    """The walk's state: the HWM, the equity as of the last event, and the gain withdrawn since
    the last crystallisation."""

    __slots__ = ("equity", "step", "value", "withdrawn_gain")

    def __init__(
        self, value: Decimal, equity: Decimal, step: Decimal, withdrawn_gain: Decimal = _ZERO
    ) -> None:
        self.value = value
        self.equity = equity
        self.step = step
        self.withdrawn_gain = withdrawn_gain

    def apply(self, operation: BalanceOperation) -> None:
        amount = operation.amount
        if amount > 0:
            self.value += amount
        elif amount < 0 and self.equity > 0:
            with localcontext(STATISTICS_CONTEXT):
                share = min(_ONE, -amount / self.equity)
                if self.equity > self.value:
                    taken = (self.equity - self.value) * share
                    self.withdrawn_gain += taken.quantize(self.step, rounding=ROUND_HALF_EVEN)
                self.value = (self.value * (1 - share)).quantize(
                    self.step, rounding=ROUND_HALF_EVEN
                )
        self.equity += amount


def performance_fees(
    activity: AccountActivity,
    schedule: FeeSchedule,
    period: Period,
    *,
    high_water_mark: HighWaterMark | None = None,
) -> PerformanceFeeResult:
    """The performance fee of each crystallisation period within `period`; a trailing piece
    that stops short of its boundary is accrued, not crystallised.

    Starting from `high_water_mark`, only events at or after its `as_of` count (those before
    are in it); without one, the HWM starts at the first snapshot's equity."""
    since = high_water_mark.as_of if high_water_mark is not None else period.start
    window = Period(max(period.start, since), period.end) if since < period.end else None
    mark = (
        _Mark(
            high_water_mark.value,
            high_water_mark.equity,
            schedule.money_step,
            high_water_mark.withdrawn_gain,
        )
        if high_water_mark is not None
        else None
    )
    if window is None:
        return PerformanceFeeResult(charges=(), high_water_mark=high_water_mark)
    activity = activity.within(window)
    rate = schedule.performance_fee_percent / _HUNDRED
    charges: list[PerformanceFeeCharge] = []
    events = _events(activity.points, activity.operations)
    pending = next(events, None)
    with localcontext(EXACT_CONTEXT):
        for piece in window.split(schedule.crystallisation):
            while pending is not None and _event_time(pending) < piece.end:
                if isinstance(pending, EquityPoint):
                    if mark is None:
                        mark = _Mark(pending.equity, pending.equity, schedule.money_step)
                    mark.equity = pending.equity
                elif mark is not None:
                    # Before the first valuation a flow is already in that first snapshot.
                    mark.apply(pending)
                pending = next(events, None)
            if mark is None:
                continue
            crystallised = is_boundary(piece.end, schedule.crystallisation)
            withdrawn_gain = mark.withdrawn_gain
            gain = max(_ZERO, mark.equity - mark.value) + withdrawn_gain
            fee = (rate * gain).quantize(schedule.money_step, rounding=ROUND_HALF_UP)
            hwm_before = mark.value
            if crystallised:
                mark.value = max(mark.value, mark.equity)
                mark.withdrawn_gain = _ZERO
            charges.append(
                PerformanceFeeCharge(
                    period=piece,
                    high_water_mark=hwm_before,
                    equity=mark.equity,
                    withdrawn_gain=withdrawn_gain,
                    gain=gain,
                    fee=fee,
                    crystallised=crystallised,
                    closing_high_water_mark=mark.value,
                )
            )
    carried = (
        HighWaterMark(
            value=mark.value,
            equity=mark.equity,
            as_of=period.end,
            withdrawn_gain=mark.withdrawn_gain,
        )
        if mark is not None
        else None
    )
    return PerformanceFeeResult(charges=tuple(charges), high_water_mark=carried)


def _events(
    points: tuple[EquityPoint, ...], operations: tuple[BalanceOperation, ...]
) -> Iterator[EquityPoint | BalanceOperation]:
    """Snapshots and flows by time; a flow comes before a snapshot taken at the same time (the
    snapshot holds it)."""
    tagged: list[tuple[datetime, int, int, EquityPoint | BalanceOperation]] = [
        (op.time, 0, n, op) for n, op in enumerate(operations)
    ]
    tagged.extend((p.time, 1, n, p) for n, p in enumerate(points))
    tagged.sort(key=lambda item: item[:3])
    return (item[3] for item in tagged)


def _event_time(event: EquityPoint | BalanceOperation) -> datetime:
    return event.time


# -- management fee ----------------------------------------------------------------------------


def management_fee(
    activity: AccountActivity,
    schedule: FeeSchedule,
    period: Period,
    *,
    opening_equity: Decimal | None = None,
) -> ManagementFeeCharge:
    """The management fee accrued over the period's UTC days (a partly covered day counts
    whole: fee periods are meant to be whole days).

    A day's equity is the last snapshot up to its end, carried forward over days without one;
    days before the period's first snapshot count `opening_equity` (none: 0). A negative
    equity accrues nothing."""
    points = activity.within(period).points
    days = period.days()
    closing_by_day: dict[date, Decimal] = {}
    for point in points:
        closing_by_day[utc_day(point.time)] = point.equity
    equity = opening_equity if opening_equity is not None else _ZERO
    daily: list[Decimal] = []
    for day in days:
        equity = closing_by_day.get(day, equity)
        daily.append(max(_ZERO, equity))
    rate = schedule.management_fee_percent / _HUNDRED
    with localcontext(EXACT_CONTEXT):
        if schedule.management_fee_basis is ManagementFeeBasis.AVERAGE_EQUITY:
            equity_days = sum(daily, _ZERO)
            with localcontext(STATISTICS_CONTEXT):
                basis_equity = equity_days / len(days)
        else:
            basis_equity = daily[-1]
            equity_days = basis_equity * len(days)
        with localcontext(STATISTICS_CONTEXT):
            exact_fee = rate * equity_days / schedule.days_per_year
    return ManagementFeeCharge(
        period=period,
        basis=schedule.management_fee_basis,
        days=len(days),
        basis_equity=basis_equity,
        fee=exact_fee.quantize(schedule.money_step, rounding=ROUND_HALF_UP),
    )
