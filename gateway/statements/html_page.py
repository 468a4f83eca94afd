"""A statement as one self-contained HTML page (inline CSS, the equity curve as inline SVG).

Every value reaches the page through Jinja2 with autoescaping on, so an account name or symbol
can carry no markup; the SVG coordinates are numbers formatted here."""

from __future__ import annotations

import functools

from jinja2 import Environment, PackageLoader, StrictUndefined, Template

from gateway.domain.statement import Statement
from gateway.statements.chart import Box, equity_curve_drawing
from gateway.statements.text import moment, money, period_label, summary_rows

CHART_BOX = Box(left=60.0, top=10.0, width=620.0, height=200.0)


@functools.cache
def _template() -> Template:
    environment = Environment(
        loader=PackageLoader("gateway.statements", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    return environment.get_template("statement.html")


def render_html(statement: Statement) -> str:
    drawing = equity_curve_drawing(statement.equity_curve, CHART_BOX)
    report = statement.performance
    return _template().render(
        title=f"Statement {statement.account_name}",
        account_name=statement.account_name,
        account_id=statement.account_id,
        currency=statement.currency,
        period=period_label(statement.period),
        generated_at=moment(statement.generated_at),
        summary=summary_rows(statement),
        curve_points=" ".join(f"{x:.2f},{y:.2f}" for x, y in drawing.points),
        curve_highest=money(drawing.highest),
        curve_lowest=money(drawing.lowest),
        curve_first=statement.equity_curve[0].day.isoformat() if statement.equity_curve else "",
        curve_last=statement.equity_curve[-1].day.isoformat() if statement.equity_curve else "",
        box=CHART_BOX,
        cash_flows=[
            (moment(op.time), op.kind.value.title(), money(op.amount), op.comment)
            for op in statement.cash_flows
        ],
        deals=[
            (
                str(d.ticket),
                moment(d.executed_at),
                d.symbol,
                d.side.value,
                d.entry.name,
                f"{d.volume:f}",
                f"{d.price:f}",
                money(d.profit),
                money(d.commission),
                money(d.swap),
                money(d.net_result),
            )
            for d in statement.deals
        ],
        exposure=[
            (
                e.symbol,
                str(e.deals),
                f"{e.volume:f}",
                f"{e.buy_volume:f}",
                f"{e.sell_volume:f}",
                money(e.notional),
            )
            for e in report.exposure
        ],
    )
