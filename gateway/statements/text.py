"""The words and figures every rendering of a statement shows, formatted once so the CSV, HTML
and PDF never disagree: money to 2 decimals with thousands separators, returns as percentages,
ratios to 2 decimals, "n/a" where a figure is not defined (docs/reporting.md says when)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from gateway.domain.performance import Drawdown
from gateway.domain.reporting_period import Period, midnight
from gateway.domain.statement import Statement

NOT_DEFINED = "n/a"


def money(value: Decimal | None) -> str:
    return NOT_DEFINED if value is None else f"{value:,.2f}"


def percent(fraction: Decimal | None) -> str:
    return NOT_DEFINED if fraction is None else f"{fraction * 100:,.2f}%"


def ratio(value: Decimal | None) -> str:
    return NOT_DEFINED if value is None else f"{value:,.2f}"


def moment(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def period_label(period: Period) -> str:
    """Whole UTC days as "2026-01-01 to 2026-01-31 (UTC)" (both included), else both instants."""
    start, end = period.start.astimezone(UTC), period.end.astimezone(UTC)
    if start == midnight(start.date()) and end == midnight(end.date()):
        return f"{period.first_day.isoformat()} to {period.last_day.isoformat()} (UTC)"
    return f"{moment(start)} to {moment(end)} (UTC)"


def drawdown_text(drawdown: Drawdown | None) -> str:
    """The depth and its dates; no drawdown (the account never fell) is 0.00%."""
    if drawdown is None:
        return percent(Decimal(0))
    recovered = (
        f", recovered {moment(drawdown.recovered_at)}"
        if drawdown.recovered_at
        else ", not recovered"
    )
    return (
        f"{percent(drawdown.depth)} (peak {moment(drawdown.peak_at)}, "
        f"trough {moment(drawdown.trough_at)}{recovered})"
    )


def summary_rows(statement: Statement) -> list[tuple[str, str]]:
    """The statement's totals and metrics, labelled, in the order they are shown."""
    report = statement.performance
    flows = report.cash_flows
    trades = report.trades
    rows = [
        ("Opening balance", money(statement.opening_balance)),
        ("Opening equity", money(statement.opening_equity)),
        ("Deposits", money(flows.deposits)),
        ("Withdrawals", money(flows.withdrawals)),
        ("Credit", money(flows.credit)),
        ("Closing balance", money(statement.closing_balance)),
        ("Closing equity", money(statement.closing_equity)),
        ("Net P&L", money(report.net_pnl)),
        ("Realized P&L", money(report.realized_pnl)),
        ("Commission", money(report.commission)),
        ("Swap", money(report.swap)),
        ("Time-weighted return", percent(report.time_weighted_return)),
        (
            "Maximum drawdown",
            drawdown_text(report.max_drawdown) if report.opening else NOT_DEFINED,
        ),
        ("Volatility (annualized)", percent(report.volatility)),
        ("Sharpe ratio", ratio(report.sharpe_ratio)),
        ("Sortino ratio", ratio(report.sortino_ratio)),
        ("Trades", str(trades.trades)),
        ("Win rate", percent(trades.win_rate)),
        ("Profit factor", ratio(trades.profit_factor)),
        ("Average win", money(trades.average_win)),
        ("Average loss", money(trades.average_loss)),
    ]
    fees = statement.fees
    if fees is not None:
        mark = fees.performance.high_water_mark
        rows += [
            ("Performance fee", money(fees.performance.crystallised_fee)),
            ("Performance fee accrued", money(fees.performance.accrued_fee)),
            ("Management fee", money(fees.management.fee)),
            ("High-water mark", money(mark.value if mark else None)),
        ]
    return rows
