"""An account's statement for a period: everything a client is shown, computed once, ready for
any rendering (gateway/statements renders it as CSV, HTML and PDF)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from gateway.domain.balance_operations import BalanceOperation
from gateway.domain.fees import PeriodFees
from gateway.domain.performance import (
    DEFAULT_ANNUALIZATION,
    AccountActivity,
    CurvePoint,
    PerformanceReport,
    TradeDeal,
    measure_performance,
)
from gateway.domain.reporting_period import Period


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
) -> Statement:
    """The statement of `activity.account_id` over `period`."""
    within = activity.within(period)
    return Statement(
        account_id=activity.account_id,
        account_name=account_name,
        currency=currency,
        period=period,
        generated_at=generated_at,
        cash_flows=within.operations,
        deals=within.deals,
        performance=measure_performance(
            within,
            period,
            annualization=annualization,
            risk_free_rate=risk_free_rate,
            contract_sizes=contract_sizes,
        ),
        fees=fees,
    )
