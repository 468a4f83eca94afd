"""An account's statement for a period: everything a client is shown, computed once, ready for
any rendering (gateway/statements renders it as CSV, HTML and PDF).

Beside the period's figures, a statement says who issues it (the firm's letterhead, the
manager, a disclaimer: the configuration's [statements]), whose account it is, how recent the
history it was built from is (`as_of`), what is still open with its floating profit, and the
fees charged in the period.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from gateway.domain.balance_operations import BalanceOperation
from gateway.domain.fees import PeriodFees
from gateway.domain.figures import UNKNOWN, SymbolPrecision
from gateway.domain.open_positions import ValuedPosition
from gateway.domain.performance import (
    DEFAULT_ANNUALIZATION,
    AccountActivity,
    CurvePoint,
    EquityPoint,
    PerformanceReport,
    TradeDeal,
    measure_performance,
)
from gateway.domain.reporting_period import Period

DEFAULT_DISCLAIMER = (
    "This statement is computed from the account history its trading terminal reported to "
    "the issuer; the broker's own records prevail where they differ. Past performance is not "
    "a reliable indicator of future results. Trading leveraged products carries a high risk "
    "of losing money."
)
# A daily curve of fewer points than this says little: the chart draws every reading instead.
MIN_DAILY_POINTS = 3
# The most readings an intraday chart draws (evenly spread over the period, the last included).
MAX_CHART_POINTS = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class Letterhead:
    """[statements] of the gateway's configuration: who issues the statements and manages the
    accounts, printed at the head of every statement, and the disclaimer printed at its end.
    Empty names are left out."""

    # The firm issuing the statements.
    firm_name: str = ""
    # Its address, registration, regulator, web site: a line each.
    firm_details: tuple[str, ...] = ()
    # The manager trading the accounts, and how a client reaches them.
    manager_name: str = ""
    manager_contact: str = ""
    disclaimer: str = DEFAULT_DISCLAIMER


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientDetails:
    """The account the statement is of, as the client knows it at their broker."""

    name: str
    account_id: str
    login: int = 0
    server: str = ""
    platform: str = ""
    currency: str = ""
    leverage: int | None = None


@dataclass(frozen=True, slots=True)
class HistoryAsOf:
    """How recent the history a statement was built from is: the last stored reading of the
    account's terminal, and why it could not be read again when the statement was asked for
    ("" when it was, or when the period ended before that reading)."""

    read_at: datetime | None
    problem: str = ""


@dataclass(frozen=True, slots=True)
class FeeCharged:
    """A crystallised fee charge of a period that ended within the statement's."""

    period: Period
    performance_fee: Decimal
    management_fee: Decimal
    high_water_mark: Decimal
    charged_at: datetime

    @property
    def total(self) -> Decimal:
        return self.performance_fee + self.management_fee


@dataclass(frozen=True, slots=True)
class ChartPoint:
    time: datetime
    equity: Decimal


@dataclass(frozen=True, slots=True)
class EquityChart:
    """What the statement's chart draws: each day's closing equity, or, over a period of only a
    day or two, every reading of the equity (`intraday`)."""

    points: tuple[ChartPoint, ...]
    intraday: bool = False


@dataclass(frozen=True, slots=True)
class Statement:
    account_id: str
    account_name: str
    currency: str
    period: Period
    generated_at: datetime
    # The period's cash flows and deals, by time.
    cash_flows: tuple[BalanceOperation, ...]
    deals: tuple[TradeDeal, ...]
    performance: PerformanceReport
    fees: PeriodFees | None = None
    client: ClientDetails | None = None
    letterhead: Letterhead = field(default_factory=Letterhead)
    as_of: HistoryAsOf | None = None
    # Open when the terminal was last read; shown when the period reaches that reading.
    open_positions: tuple[ValuedPosition, ...] = ()
    fee_charges: tuple[FeeCharged, ...] = ()
    chart: EquityChart = field(default_factory=lambda: EquityChart(()))
    # Each symbol's volume step and digits, by the names deals carry.
    precisions: Mapping[str, SymbolPrecision] = field(default_factory=dict)

    @property
    def opening_balance(self) -> Decimal | None:
        opening = self.performance.opening
        return opening.balance if opening else None

    @property
    def opening_equity(self) -> Decimal | None:
        opening = self.performance.opening
        return opening.equity if opening else None

    @property
    def closing_balance(self) -> Decimal | None:
        closing = self.performance.closing
        return closing.balance if closing else None

    @property
    def closing_equity(self) -> Decimal | None:
        closing = self.performance.closing
        return closing.equity if closing else None

    @property
    def equity_curve(self) -> tuple[CurvePoint, ...]:
        return self.performance.equity_curve

    @property
    def floating_profit(self) -> Decimal | None:
        """The open positions' floating profit; None when one of them could not be valued."""
        profits = [p.profit for p in self.open_positions]
        if any(p is None for p in profits):
            return None
        return sum((p for p in profits if p is not None), Decimal(0))

    def precision(self, symbol: str) -> SymbolPrecision:
        return self.precisions.get(symbol, UNKNOWN)


def build_statement(
    activity: AccountActivity,
    period: Period,
    *,
    account_name: str,
    currency: str,
    generated_at: datetime,
    fees: PeriodFees | None = None,
    annualization: int = DEFAULT_ANNUALIZATION,
    risk_free_rate: Decimal = Decimal(0),
    contract_sizes: Mapping[str, Decimal] | None = None,
    client: ClientDetails | None = None,
    letterhead: Letterhead | None = None,
    as_of: HistoryAsOf | None = None,
    open_positions: tuple[ValuedPosition, ...] = (),
    fee_charges: tuple[FeeCharged, ...] = (),
    precisions: Mapping[str, SymbolPrecision] | None = None,
) -> Statement:
    """The statement of `activity.account_id` over `period`."""
    within = activity.within(period)
    performance = measure_performance(
        within,
        period,
        annualization=annualization,
        risk_free_rate=risk_free_rate,
        contract_sizes=contract_sizes,
    )
    return Statement(
        account_id=activity.account_id,
        account_name=account_name,
        currency=currency,
        period=period,
        generated_at=generated_at,
        cash_flows=within.operations,
        deals=within.deals,
        performance=performance,
        fees=fees,
        client=client,
        letterhead=letterhead or Letterhead(),
        as_of=as_of,
        open_positions=open_positions,
        fee_charges=tuple(c for c in fee_charges if period.start < c.period.end <= period.end),
        chart=equity_chart(within.points, performance.equity_curve),
        precisions=dict(precisions or {}),
    )


def equity_chart(points: tuple[EquityPoint, ...], curve: tuple[CurvePoint, ...]) -> EquityChart:
    """Each day's closing equity; over a period with fewer closing points than
    MIN_DAILY_POINTS (a day's statement), every reading instead, so that the chart shows how the
    equity moved that day rather than one level line."""
    if len(curve) >= MIN_DAILY_POINTS:
        return EquityChart(tuple(ChartPoint(p.time, p.equity) for p in curve))
    ordered = sorted(points, key=lambda p: p.time)
    if len(ordered) > MAX_CHART_POINTS:
        step = (len(ordered) - 1) / (MAX_CHART_POINTS - 1)
        ordered = [ordered[round(i * step)] for i in range(MAX_CHART_POINTS)]
    return EquityChart(tuple(ChartPoint(p.time, p.equity) for p in ordered), intraday=True)


def shows_open_positions(period: Period, as_of: HistoryAsOf | None) -> bool:
    """Whether a statement of `period` shows the open positions of the last reading: when the
    period reaches it (a statement of a past month shows none: what was open then is not
    stored)."""
    return as_of is not None and as_of.read_at is not None and as_of.read_at < period.end
