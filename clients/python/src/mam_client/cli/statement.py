"""mamctl's reporting commands: an account's statement as a file, and its performance."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.table import Table

from mam_client import figures
from mam_client.cli.failure import fail
from mam_client.cli.lookup import find_account_id
from mam_client.errors import MamError
from mam_client.reporting import AccountPerformance, StatementFormat


def register(app: typer.Typer) -> None:
    """Adds `statement` and `performance` to mamctl."""
    app.command("statement")(statement)
    app.command("performance")(performance)


def statement(
    ctx: typer.Context,
    account: Annotated[str, typer.Argument(metavar="ACCOUNT", help="Id or name.")],
    start: Annotated[
        datetime, typer.Option(formats=["%Y-%m-%d"], help="The first UTC day, YYYY-MM-DD.")
    ],
    end: Annotated[
        datetime, typer.Option(formats=["%Y-%m-%d"], help="The last UTC day (included).")
    ],
    format: Annotated[
        StatementFormat, typer.Option("--format", case_sensitive=False, help="pdf, html or csv.")
    ] = StatementFormat.PDF,
    out: Annotated[
        Path | None,
        typer.Option(help="Where to write it; default: the gateway's file name, here."),
    ] = None,
) -> None:
    """Download an account's statement for the days --start to --end."""
    settings = ctx.obj
    period_start, period_end = _period(start.date(), end.date())
    target = out or Path.cwd()
    # Written beside its destination and moved there once complete: a failed download leaves
    # no half a file behind.
    directory = target if target.is_dir() else target.parent
    descriptor, partial_name = tempfile.mkstemp(prefix=".statement-", dir=directory)
    partial = Path(partial_name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            client = settings.client()
            received = client.download_account_statement(
                find_account_id(client, account),
                handle,
                start=period_start,
                end=period_end,
                format=format,
            )
        if target.is_dir():
            target = target / (received.file_name or f"statement.{format.value.lower()}")
        partial.replace(target)
    except (MamError, ValueError, OSError) as error:
        partial.unlink(missing_ok=True)
        _fail(settings, error)
    if settings.json:
        settings.emit_json(
            {
                "file": str(target),
                "file_name": received.file_name,
                "content_type": received.content_type,
                "size": received.size,
            }
        )
    else:
        settings.out.print(
            f"wrote {target} ({received.size} bytes, {received.content_type})", highlight=False
        )


def performance(
    ctx: typer.Context,
    account: Annotated[str, typer.Argument(metavar="ACCOUNT", help="Id or name.")],
    start: Annotated[
        datetime, typer.Option(formats=["%Y-%m-%d"], help="The first UTC day, YYYY-MM-DD.")
    ],
    end: Annotated[
        datetime, typer.Option(formats=["%Y-%m-%d"], help="The last UTC day (included).")
    ],
) -> None:
    """Show an account's performance for the days --start to --end."""
    settings = ctx.obj
    period_start, period_end = _period(start.date(), end.date())
    try:
        client = settings.client()
        report = client.account_performance(
            find_account_id(client, account), start=period_start, end=period_end
        )
    except (MamError, ValueError, OSError) as error:
        _fail(settings, error)
    if settings.json:
        settings.emit_json(performance_json(report))
    else:
        settings.out.print(performance_table(report))


def performance_table(report: AccountPerformance) -> Table:
    last_day = (report.end - timedelta(microseconds=1)).date()
    table = Table(
        title=f"Performance of {report.account_id}, {report.start.date()} to {last_day}",
        show_header=False,
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    drawdown = report.max_drawdown
    rows = [
        ("opening equity", _money(report.opening_equity)),
        ("closing equity", _money(report.closing_equity)),
        ("deposits", _money(report.deposits)),
        ("withdrawals", _money(report.withdrawals)),
        ("net P&L", _money(report.net_pnl)),
        ("realized P&L", _money(report.realized_pnl)),
        ("time-weighted return", _percent(report.time_weighted_return)),
        (
            "max drawdown",
            f"{_percent(drawdown.depth)} ({drawdown.peak_at.date()} to {drawdown.trough_at.date()})"
            if drawdown
            else "n/a",
        ),
        ("volatility", _percent(report.volatility)),
        ("Sharpe ratio", _ratio(report.sharpe_ratio)),
        ("Sortino ratio", _ratio(report.sortino_ratio)),
        ("trades", str(report.trades)),
        ("win rate", _percent(report.win_rate)),
        ("profit factor", _ratio(report.profit_factor)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


# Each figure of a report and how it is rounded (mam_client.figures); the rest as they came.
_MONEY_FIGURES = frozenset(
    {"opening_equity", "closing_equity", "deposits", "withdrawals", "net_pnl", "realized_pnl"}
)
_FRACTION_FIGURES = frozenset({"time_weighted_return", "volatility", "win_rate", "depth"})
_RATIO_FIGURES = frozenset({"sharpe_ratio", "sortino_ratio", "profit_factor"})


def performance_json(report: AccountPerformance) -> Any:
    """The report for scripts: money to 2 places, returns and rates to 6 (0.0001%), ratios to
    4, the daily returns and the equity curve likewise; days as "YYYY-MM-DD"."""
    data = _with_iso_days(dataclasses.asdict(report))
    return _rounded(data, "")


def _rounded(value: Any, name: str) -> Any:
    if isinstance(value, dict):
        if set(value) == {"day", "value"}:  # a DailyValue: a daily return or equity
            kind = "time_weighted_return" if name == "daily_returns" else "deposits"
            return {"day": value["day"], "value": _rounded(value["value"], kind)}
        return {k: _rounded(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v, name) for v in value]
    if isinstance(value, Decimal):
        if name in _MONEY_FIGURES:
            return figures.money(value)
        if name in _FRACTION_FIGURES:
            return figures.fraction(value)
        if name in _RATIO_FIGURES:
            return figures.ratio(value)
    return value


def _period(first: date, last: date) -> tuple[datetime, datetime]:
    """The UTC days first..last, both included, as the gateway's [start, end)."""
    if last < first:
        raise typer.BadParameter("--end is before --start", param_hint="--end")
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    return start, datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)


def _money(value: Decimal | None) -> str:
    return "n/a" if value is None else figures.money_text(value)


def _percent(value: Decimal | None) -> str:
    return "n/a" if value is None else figures.percent_text(value)


def _ratio(value: Decimal | None) -> str:
    return "n/a" if value is None else figures.ratio_text(value)


def _with_iso_days(value: Any) -> Any:
    """Days as "YYYY-MM-DD" (the JSON output writes times, not bare dates)."""
    if isinstance(value, dict):
        return {k: _with_iso_days(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_with_iso_days(v) for v in value]
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    return value


def _fail(settings: Any, error: BaseException) -> NoReturn:
    fail(settings.err, error)
