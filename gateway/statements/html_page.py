"""A statement as one self-contained HTML page (inline CSS, the equity chart as inline SVG).

Every value reaches the page through Jinja2 with autoescaping on, so an account name, a symbol
or the letterhead can carry no markup; the SVG coordinates are numbers formatted here."""

from __future__ import annotations

import functools

from jinja2 import Environment, PackageLoader, StrictUndefined, Template

from gateway.domain.statement import Statement
from gateway.statements.chart import Box, equity_curve_drawing
from gateway.statements.text import (
    DEAL_HEADINGS,
    EXPOSURE_HEADINGS,
    FEE_HEADINGS,
    POSITION_HEADINGS,
    as_of_text,
    chart_title,
    client_rows,
    deal_rows,
    exposure_rows,
    fee_rows,
    letterhead_lines,
    manager_rows,
    moment,
    money,
    period_label,
    position_rows,
    positions_caption,
    single_reading_text,
    summary_rows,
)

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
    drawing = equity_curve_drawing(statement.chart, CHART_BOX)
    return _template().render(
        title=f"Statement {statement.account_name}",
        letterhead=letterhead_lines(statement),
        account_name=statement.account_name,
        account_id=statement.account_id,
        currency=statement.currency,
        client=client_rows(statement),
        manager=manager_rows(statement),
        period=period_label(statement.period),
        generated_at=moment(statement.generated_at),
        as_of=as_of_text(statement),
        summary=summary_rows(statement),
        chart_title=chart_title(statement),
        curve_points=" ".join(f"{x:.2f},{y:.2f}" for x, y in drawing.points)
        if len(statement.chart.points) > 1
        else "",
        single_reading=single_reading_text(statement),
        curve_highest=money(drawing.highest),
        curve_lowest=money(drawing.lowest),
        curve_first=drawing.first,
        curve_last=drawing.last,
        box=CHART_BOX,
        positions=position_rows(statement),
        position_headings=POSITION_HEADINGS,
        positions_caption=positions_caption(statement),
        cash_flows=[
            (moment(op.time), op.kind.value.title(), money(op.amount), op.comment)
            for op in statement.cash_flows
        ],
        fee_charges=fee_rows(statement),
        fee_headings=FEE_HEADINGS,
        deals=deal_rows(statement),
        deal_headings=DEAL_HEADINGS,
        exposure=exposure_rows(statement),
        exposure_headings=EXPOSURE_HEADINGS,
        disclaimer=statement.letterhead.disclaimer,
    )
