"""A statement as a PDF (A4 portrait): header, summary, the equity curve drawn as vector lines,
cash flows, exposure and deals, the tables repeating their headings on each page.

fpdf2 draws it: a pure-Python, typed library whose own line drawing makes the chart, so no
plotting stack is needed. Its built-in Helvetica covers Windows-1252 only: a character outside
it is printed as "?" in the PDF (the HTML and CSV keep every character)."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from gateway.domain.statement import Statement
from gateway.statements.chart import Box, equity_curve_drawing
from gateway.statements.text import moment, money, period_label, summary_rows

_FONT = "Helvetica"
_ENCODING = "windows-1252"
_LINE = 5.0
_CHART_HEIGHT = 60.0
_CURVE_COLOUR = (31, 95, 168)
_WIDEST_CHARACTER_EM = 1.015


class _StatementPdf(FPDF):
    def __init__(self, footer_text: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self._footer_text = footer_text
        self.core_fonts_encoding = _ENCODING

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(_FONT, size=8)
        self.cell(0, 6, self._footer_text, align="L")
        self.set_x(self.l_margin)
        self.cell(0, 6, f"Page {self.page_no()} of {{nb}}", align="R")


def render_pdf(statement: Statement) -> bytes:
    pdf = _StatementPdf(_pdf_text(f"{statement.account_name} - {period_label(statement.period)}"))
    # The creation date is the statement's: rendering the same statement twice gives the
    # same document.
    pdf.set_creation_date(statement.generated_at)
    pdf.set_title(_pdf_text(f"Account statement {statement.account_name}"))
    pdf.set_subject(_pdf_text(period_label(statement.period)))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()

    pdf.set_font(_FONT, style="B", size=16)
    _line(pdf, "Account statement", height=9)
    pdf.set_font(_FONT, style="B", size=11)
    _line(pdf, _pdf_text(statement.account_name))
    pdf.set_font(_FONT, size=10)
    _line(pdf, _pdf_text(f"Account {statement.account_id}, currency {statement.currency}"))
    _line(pdf, _pdf_text(f"Period: {period_label(statement.period)}"))
    _line(pdf, f"Generated {moment(statement.generated_at)} UTC")
    pdf.ln(3)

    _heading(pdf, "Summary")
    _table(
        pdf, [("Figure", "Value"), *summary_rows(statement)], widths=(60, 120), right_aligned_from=1
    )

    _heading(pdf, "Equity curve (daily closing equity)")
    _chart(pdf, statement)

    _heading(pdf, "Cash flows")
    if statement.cash_flows:
        _table(
            pdf,
            [("Time (UTC)", "Kind", "Comment", f"Amount ({statement.currency})")]
            + [
                (moment(op.time), op.kind.value.title(), op.comment, money(op.amount))
                for op in statement.cash_flows
            ],
            widths=(40, 30, 70, 40),
            right_aligned_from=3,
        )
    else:
        _line(pdf, "No deposit, withdrawal or credit in this period.")

    _heading(pdf, "Exposure by symbol")
    exposure = statement.performance.exposure
    if exposure:
        _table(
            pdf,
            [("Symbol", "Deals", "Volume", "Bought", "Sold", "Notional")]
            + [
                (
                    e.symbol,
                    str(e.deals),
                    f"{e.volume:f}",
                    f"{e.buy_volume:f}",
                    f"{e.sell_volume:f}",
                    money(e.notional),
                )
                for e in exposure
            ],
            widths=(35, 20, 30, 30, 30, 35),
            right_aligned_from=1,
        )
    else:
        _line(pdf, "Nothing traded in this period.")

    _heading(pdf, "Deals")
    if statement.deals:
        pdf.set_font(_FONT, size=7)
        _table(
            pdf,
            [
                (
                    "Ticket",
                    "Time (UTC)",
                    "Symbol",
                    "Side",
                    "Entry",
                    "Volume",
                    "Price",
                    "Profit",
                    "Comm.",
                    "Swap",
                    "Net",
                )
            ]
            + [
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
            widths=(14, 27, 18, 10, 12, 13, 18, 18, 16, 14, 20),
            right_aligned_from=5,
        )
    else:
        _line(pdf, "No deal in this period.")
    return bytes(pdf.output())


def _pdf_text(text: str) -> str:
    """Text the built-in font can print: control characters become spaces, characters outside
    Windows-1252 become "?"."""
    printable = "".join(" " if unicodedata.category(c).startswith("C") else c for c in text)
    return printable.encode(_ENCODING, errors="replace").decode(_ENCODING)


def _line(pdf: FPDF, text: str, *, height: float = _LINE) -> None:
    pdf.cell(0, height, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _heading(pdf: FPDF, text: str) -> None:
    # A heading with no room for a few lines under it starts the next page instead.
    if pdf.will_page_break(25):
        pdf.add_page()
    pdf.ln(2)
    pdf.set_font(_FONT, style="B", size=12)
    _line(pdf, text, height=7)
    pdf.set_font(_FONT, size=9)


def _table(
    pdf: FPDF,
    rows: Sequence[Sequence[str]],
    *,
    widths: Sequence[float],
    right_aligned_from: int | None = None,
) -> None:
    """A grid of one-line cells, the first row as headings repeated on each new page. Plain
    cells rather than the library's wrapping tables: a statement may list thousands of deals,
    and these cost a fraction of the time. A text wider than its column is cut with "...";
    columns from `right_aligned_from` on (figures) are aligned right.
    """
    height = pdf.font_size * 1.6
    heading, *body = rows

    def draw(values: Sequence[str], style: str) -> None:
        pdf.set_font(_FONT, style=style, size=pdf.font_size_pt)
        for column, (width, value) in enumerate(zip(widths, values, strict=True)):
            text = _fit(pdf, _pdf_text(value), width - 2 * pdf.c_margin)
            right = right_aligned_from is not None and column >= right_aligned_from
            pdf.cell(width, height, text, border=1, align="R" if right else "L")
        pdf.ln(height)

    draw(heading, "B")
    for values in body:
        if pdf.will_page_break(height):
            pdf.add_page()
            draw(heading, "B")
        draw(values, "")
    pdf.ln(2)


def _fit(pdf: FPDF, text: str, width: float) -> str:
    # No Helvetica character is wider than 1.015 em: most cells fit without being measured.
    if len(text) * pdf.font_size * _WIDEST_CHARACTER_EM <= width:
        return text
    if pdf.get_string_width(text) <= width:
        return text
    while text and pdf.get_string_width(text + "...") > width:
        text = text[:-1]
    return text + "..."


def _chart(pdf: FPDF, statement: Statement) -> None:
    curve = statement.equity_curve
    if not curve:
        _line(pdf, "No equity snapshot in this period.")
        return
    if pdf.will_page_break(_CHART_HEIGHT + 12):
        pdf.add_page()
    top = pdf.get_y() + 2
    box = Box(left=pdf.l_margin + 22, top=top, width=pdf.epw - 24, height=_CHART_HEIGHT)
    drawing = equity_curve_drawing(curve, box)
    pdf.set_draw_color(150, 150, 150)
    pdf.set_line_width(0.2)
    pdf.rect(box.left, box.top, box.width, box.height)
    pdf.set_draw_color(*_CURVE_COLOUR)
    pdf.set_line_width(0.5)
    pdf.polyline(list(drawing.points))
    pdf.set_draw_color(0, 0, 0)
    pdf.set_line_width(0.2)
    pdf.set_font(_FONT, size=7)
    labels = (
        (box.top, money(drawing.highest)),
        (box.top + box.height - 4, money(drawing.lowest)),
    )
    for y, text in labels:
        pdf.set_xy(pdf.l_margin, y)
        pdf.cell(21, 4, text, align="R")
    pdf.set_xy(box.left, box.top + box.height + 1)
    pdf.cell(box.width / 2, 4, curve[0].day.isoformat(), align="L")
    pdf.cell(box.width / 2, 4, curve[-1].day.isoformat(), align="R")
    pdf.set_xy(pdf.l_margin, box.top + box.height + 7)
    pdf.set_font(_FONT, size=9)
