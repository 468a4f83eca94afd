"""The words and figures every rendering of a statement shows, formatted once so the HTML and
PDF never disagree. Figures as gateway/domain/figures.py shows them (as mamctl does): money to 2
decimals with thousands separators, volumes to their symbol's volume step and prices to its
digits, returns as percentages, ratios to 2 decimals, "n/a" where a figure is not defined
(docs/reporting.md says when)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from gateway.domain import figures
from gateway.domain.performance import Drawdown
from gateway.domain.reporting_period import Period, midnight
from gateway.domain.statement import Statement

NOT_DEFINED = "n/a"


def money(value: Decimal | None) -> str:
    return NOT_DEFINED if value is None else figures.money_text(value)


def percent(fraction: Decimal | None) -> str:
    return NOT_DEFINED if fraction is None else figures.percent_text(fraction)


def ratio(value: Decimal | None) -> str:
    return NOT_DEFINED if value is None else figures.ratio_text(value)


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


# -- who and when -------------------------------------------------------------------------------


def letterhead_lines(statement: Statement) -> list[str]:
    """The issuing firm: its name, then its details, a line each; none when not configured."""
    head = statement.letterhead
    return [line for line in (head.firm_name, *head.firm_details) if line.strip()]


def client_rows(statement: Statement) -> list[tuple[str, str]]:
    """The client's account as their broker knows it."""
    client = statement.client
    rows = [("Client", statement.account_name), ("Account", statement.account_id)]
    if client is not None:
        if client.login:
            where = f" on {client.server}" if client.server else ""
            rows.append(("Login", f"{client.login}{where}"))
        if client.platform:
            rows.append(("Platform", client.platform))
        if client.leverage:
            rows.append(("Leverage", f"1:{client.leverage}"))
    rows.append(("Currency", statement.currency))
    return rows


def manager_rows(statement: Statement) -> list[tuple[str, str]]:
    head = statement.letterhead
    rows: list[tuple[str, str]] = []
    if head.manager_name:
        rows.append(("Manager", head.manager_name))
    if head.manager_contact:
        rows.append(("Contact", head.manager_contact))
    return rows


def as_of_text(statement: Statement) -> str:
    """How recent the history is: when the account's terminal was last read, and why not
    again when the statement was made."""
    as_of = statement.as_of
    if as_of is None:
        return ""
    if as_of.read_at is None:
        text = "No reading of this account's terminal is stored yet"
    else:
        text = f"Account history as of {moment(as_of.read_at)} UTC"
    if as_of.problem:
        text += f" (its terminal could not be read for this statement: {as_of.problem})"
    return text + "."


# -- tables -------------------------------------------------------------------------------------


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
    ]
    if statement.open_positions:
        rows.append(("Floating P&L (open positions)", money(statement.floating_profit)))
    rows += [
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
    if statement.fee_charges:
        charged = sum((c.total for c in statement.fee_charges), Decimal(0))
        rows.append(("Fees charged", money(charged)))
    return rows


DEAL_HEADINGS = (
    "Ticket",
    "Time (UTC)",
    "Symbol",
    "Side",
    "Entry",
    "Volume",
    "Price",
    "Profit",
    "Commission",
    "Swap",
    "Net",
)


def deal_rows(statement: Statement) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for d in statement.deals:
        precision = statement.precision(d.symbol)
        rows.append(
            (
                str(d.ticket),
                moment(d.executed_at),
                d.symbol,
                d.side.value,
                d.entry.name,
                precision.volume_text(d.volume),
                precision.price_text(d.price),
                money(d.profit),
                money(d.commission),
                money(d.swap),
                money(d.net_result),
            )
        )
    return rows


EXPOSURE_HEADINGS = ("Symbol", "Deals", "Volume", "Bought", "Sold", "Notional")


def exposure_rows(statement: Statement) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for e in statement.performance.exposure:
        precision = statement.precision(e.symbol)
        rows.append(
            (
                e.symbol,
                str(e.deals),
                precision.volume_text(e.volume),
                precision.volume_text(e.buy_volume),
                precision.volume_text(e.sell_volume),
                money(e.notional),
            )
        )
    return rows


POSITION_HEADINGS = (
    "Ticket",
    "Opened (UTC)",
    "Symbol",
    "Side",
    "Volume",
    "Open price",
    "Price",
    "Floating P&L",
)


def position_rows(statement: Statement) -> list[tuple[str, ...]]:
    """The open positions valued at the market, and their total."""
    rows: list[tuple[str, ...]] = []
    for valued in statement.open_positions:
        p = valued.position
        precision = statement.precision(p.symbol)
        rows.append(
            (
                str(p.ticket),
                moment(p.opened_at),
                p.symbol,
                p.side.value,
                precision.volume_text(p.volume),
                precision.price_text(p.price_open),
                precision.price_text(valued.price) if valued.price is not None else NOT_DEFINED,
                money(valued.profit),
            )
        )
    return rows


def positions_caption(statement: Statement) -> str:
    as_of = statement.as_of
    when = f" at {moment(as_of.read_at)} UTC" if as_of and as_of.read_at else ""
    return (
        f"Open{when}, valued at the prices they would close at; total floating P&L "
        f"{money(statement.floating_profit)} {statement.currency}."
    )


FEE_HEADINGS = ("Period", "Performance fee", "Management fee", "High-water mark", "Charged")


def fee_rows(statement: Statement) -> list[tuple[str, ...]]:
    return [
        (
            period_label(c.period),
            money(c.performance_fee),
            money(c.management_fee),
            money(c.high_water_mark),
            moment(c.charged_at),
        )
        for c in statement.fee_charges
    ]


def single_reading_text(statement: Statement) -> str:
    """What a chart of one point would draw (a level line), said instead."""
    points = statement.chart.points
    if len(points) != 1:
        return ""
    return (
        f"One reading of the equity in this period: {money(points[0].equity)} "
        f"{statement.currency} at {moment(points[0].time)} UTC."
    )


def chart_title(statement: Statement) -> str:
    if statement.chart.intraday:
        return "Equity (each reading of the account, UTC)"
    return "Equity curve (daily closing equity)"
