"""Reporting values of the client: an account's performance and a statement file.

Ratios and returns are fractions as exact `Decimal` (0.05 is 5%); a figure the gateway could
not define for the period (a Sharpe ratio below two daily returns, a drawdown that never
happened) is `None`, never 0.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from google.protobuf import timestamp_pb2

from mam_client import _convert
from mam_client._proto.mam.v1 import reporting_service_pb2 as rpt


class StatementFormat(enum.StrEnum):
    CSV = "CSV"
    HTML = "HTML"
    PDF = "PDF"


@dataclass(frozen=True, slots=True)
class StatementFile:
    """What the gateway says of a statement it sent."""

    file_name: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class Drawdown:
    # The fall from the peak as a fraction of it.
    depth: Decimal
    peak_at: datetime
    trough_at: datetime
    # None: not recovered within the period.
    recovered_at: datetime | None


@dataclass(frozen=True, slots=True)
class DailyValue:
    day: date
    value: Decimal


@dataclass(frozen=True, slots=True)
class AccountPerformance:
    """The headline figures of GetAccountPerformance; every other metric is in the raw
    response of `reporting_stub.GetAccountPerformance`."""

    account_id: str
    start: datetime
    end: datetime
    opening_equity: Decimal | None
    closing_equity: Decimal | None
    deposits: Decimal
    withdrawals: Decimal
    net_pnl: Decimal | None
    realized_pnl: Decimal
    time_weighted_return: Decimal | None
    max_drawdown: Drawdown | None
    volatility: Decimal | None
    sharpe_ratio: Decimal | None
    sortino_ratio: Decimal | None
    trades: int
    win_rate: Decimal | None
    profit_factor: Decimal | None
    daily_returns: tuple[DailyValue, ...]
    # The closing equity of each UTC day with a snapshot.
    equity_curve: tuple[DailyValue, ...]


def period_to_wire(
    start: datetime, end: datetime
) -> tuple[timestamp_pb2.Timestamp, timestamp_pb2.Timestamp]:
    """The start_time and end_time of a reporting request; naive times are refused, not
    guessed."""
    for value in (start, end):
        if value.tzinfo is None:
            raise ValueError(f"{value} has no time zone: give UTC times")
    return _convert.time_to_wire(start), _convert.time_to_wire(end)


def statement_format_to_wire(form: StatementFormat) -> rpt.StatementFormat.ValueType:
    return rpt.StatementFormat.Value(f"STATEMENT_FORMAT_{form.value}")


def _time(stamp: timestamp_pb2.Timestamp) -> datetime:
    value = _convert.time_from_wire(stamp)
    return value if value is not None else datetime.fromtimestamp(0, UTC)


def performance_from_wire(
    account_id: str, message: rpt.GetAccountPerformanceResponse
) -> AccountPerformance:
    report = message.report
    drawdown = None
    if report.HasField("max_drawdown"):
        d = report.max_drawdown
        drawdown = Drawdown(
            depth=_convert.decimal_or_zero(d.depth),
            peak_at=_time(d.peak_time),
            trough_at=_time(d.trough_time),
            recovered_at=_convert.time_from_wire(d.recovery_time)
            if d.HasField("recovery_time")
            else None,
        )
    return AccountPerformance(
        account_id=account_id,
        start=_time(report.start_time),
        end=_time(report.end_time),
        opening_equity=_convert.decimal_or_none(report.opening.equity)
        if report.HasField("opening")
        else None,
        closing_equity=_convert.decimal_or_none(report.closing.equity)
        if report.HasField("closing")
        else None,
        deposits=_convert.decimal_or_zero(report.cash_flows.deposits),
        withdrawals=_convert.decimal_or_zero(report.cash_flows.withdrawals),
        net_pnl=_convert.decimal_or_none(report.net_pnl),
        realized_pnl=_convert.decimal_or_zero(report.realized_pnl),
        time_weighted_return=_convert.decimal_or_none(report.time_weighted_return),
        max_drawdown=drawdown,
        volatility=_convert.decimal_or_none(report.volatility),
        sharpe_ratio=_convert.decimal_or_none(report.sharpe_ratio),
        sortino_ratio=_convert.decimal_or_none(report.sortino_ratio),
        trades=report.trades.trades,
        win_rate=_convert.decimal_or_none(report.trades.win_rate),
        profit_factor=_convert.decimal_or_none(report.trades.profit_factor),
        daily_returns=tuple(
            DailyValue(date.fromisoformat(r.date), _convert.decimal_or_zero(r.value))
            for r in report.daily_returns
        ),
        equity_curve=tuple(
            DailyValue(date.fromisoformat(c.date), _convert.decimal_or_zero(c.equity))
            for c in report.equity_curve
        ),
    )
