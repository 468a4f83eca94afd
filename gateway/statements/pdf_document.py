"""A statement as a PDF (A4 portrait): the letterhead, the client and the manager, the summary,
the equity chart drawn as vector lines, open positions, cash flows, fees charged, exposure and
deals (tables repeating their headings on each page), and the disclaimer.

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

_FONT = "Helvetica"
_ENCODING = "windows-1252"
_LINE = 5.0
_CHART_HEIGHT = 60.0
_CURVE_COLOUR = (31, 95, 168)
_WIDEST_CHARACTER_EM = 1.015
# A table that breaks across pages carries at least this many of its rows onto the next page:
# never its last row alone under a repeated heading.
MIN_ROWS_CARRIED = 2


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
    firm = statement.letterhead.firm_name
    footer = f"{statement.account_name} - {period_label(statement.period)}"
    pdf = _StatementPdf(_pdf_text(f"{firm} - {footer}" if firm else footer))
    # The creation date is the statement's: rendering the same statement twice gives the
    # same document.
    pdf.set_creation_date(statement.generated_at)
    pdf.set_title(_pdf_text(f"Account statement {statement.account_name}"))
    pdf.set_subject(_pdf_text(period_label(statement.period)))
    if firm:
        pdf.set_author(_pdf_text(firm))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()

    letterhead = letterhead_lines(statement)
    if letterhead:
        pdf.set_font(_FONT, style="B", size=13)
        _line(pdf, _pdf_text(letterhead[0]), height=7)
        pdf.set_font(_FONT, size=8)
        for text in letterhead[1:]:
            _line(pdf, _pdf_text(text), height=4)
        pdf.set_draw_color(*_CURVE_COLOUR)
        pdf.set_line_width(0.5)
        pdf.line(pdf.l_margin, pdf.get_y() + 1, pdf.l_margin + pdf.epw, pdf.get_y() + 1)
        pdf.set_draw_color(0, 0, 0)
        pdf.set_line_width(0.2)
        pdf.ln(4)

    pdf.set_font(_FONT, style="B", size=16)
    _line(pdf, "Account statement", height=9)
    pdf.set_font(_FONT, size=10)
    _line(pdf, _pdf_text(f"Period: {period_label(statement.period)}"))
    _line(pdf, f"Generated {moment(statement.generated_at)} UTC")
    as_of = as_of_text(statement)
    if as_of:
        pdf.multi_cell(0, _LINE, _pdf_text(as_of), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    _parties(pdf, client_rows(statement), manager_rows(statement))

    _heading(pdf, "Summary")
    _table(
        pdf, [("Figure", "Value"), *summary_rows(statement)], widths=(60, 120), right_aligned_from=1
    )

    # The chart's heading goes with the chart, onto the next page if need be.
    drawn = len(statement.chart.points) > 1
    _heading(pdf, chart_title(statement), room=_CHART_HEIGHT + 20 if drawn else 25)
    _chart(pdf, statement)

    positions = position_rows(statement)
    if positions:
        _heading(pdf, "Open positions")
        pdf.set_font(_FONT, size=8)
        _table(
            pdf,
            [POSITION_HEADINGS, *positions],
            widths=(16, 33, 20, 12, 17, 24, 24, 34),
            right_aligned_from=4,
        )
        pdf.set_font(_FONT, size=8)
        pdf.multi_cell(
            0, 4, _pdf_text(positions_caption(statement)), new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )

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

    _heading(pdf, "Fees charged")
    fees = fee_rows(statement)
    if fees:
        pdf.set_font(_FONT, size=8)
        _table(
            pdf,
            [FEE_HEADINGS, *fees],
            widths=(58, 28, 28, 30, 36),
            right_aligned_from=1,
        )
    else:
        _line(pdf, "No fee charged in this period.")

    _heading(pdf, "Exposure by symbol")
    exposure = exposure_rows(statement)
    if exposure:
        _table(
            pdf,
            [EXPOSURE_HEADINGS, *exposure],
            widths=(35, 20, 30, 30, 30, 35),
            right_aligned_from=1,
        )
    else:
        _line(pdf, "Nothing traded in this period.")

    _heading(pdf, "Deals")
    if statement.deals:
        pdf.set_font(_FONT, size=7)
        headings = tuple("Comm." if h == "Commission" else h for h in DEAL_HEADINGS)
        _table(
            pdf,
            [headings, *deal_rows(statement)],
            widths=(14, 27, 18, 10, 12, 13, 18, 18, 16, 14, 20),
            right_aligned_from=5,
        )
    else:
        _line(pdf, "No deal in this period.")

    _disclaimer(pdf, statement.letterhead.disclaimer)
    return bytes(pdf.output())


def _pdf_text(text: str) -> str:
    """Text the built-in font can print: control characters become spaces, characters outside
    Windows-1252 become "?"."""
    printable = "".join(" " if unicodedata.category(c).startswith("C") else c for c in text)
    return printable.encode(_ENCODING, errors="replace").decode(_ENCODING)


def _line(pdf: FPDF, text: str, *, height: float = _LINE) -> None:
    pdf.cell(0, height, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _parties(
    pdf: FPDF, client: Sequence[tuple[str, str]], manager: Sequence[tuple[str, str]]
) -> None:
    """The client's account on the left, the manager on the right."""
    top = pdf.get_y()
    half = pdf.epw / 2
    bottoms = []
    for left, rows in ((pdf.l_margin, client), (pdf.l_margin + half, manager)):
        pdf.set_xy(left, top)
        for label, value in rows:
            pdf.set_x(left)
            pdf.set_font(_FONT, style="B", size=9)
            pdf.cell(22, 4.5, _pdf_text(label))
            pdf.set_font(_FONT, size=9)
            pdf.cell(half - 24, 4.5, _fit(pdf, _pdf_text(value), half - 26))
            pdf.ln(4.5)
        bottoms.append(pdf.get_y())
    pdf.set_xy(pdf.l_margin, max(bottoms))
    pdf.ln(2)


def _heading(pdf: FPDF, text: str, *, room: float = 25) -> None:
    """A heading with no room (mm) for what follows it starts the next page instead."""
    if pdf.will_page_break(room):
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
    columns from `right_aligned_from` on (figures) are aligned right. A page break leaves at
    least MIN_ROWS_CARRIED rows for the next page: one fewer on this page rather than the
    last row alone on the next.
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

    # The heading and the first rows stay together.
    if pdf.will_page_break(height * (1 + min(len(body), MIN_ROWS_CARRIED))):
        pdf.add_page()
    draw(heading, "B")
    for index, values in enumerate(body):
        left = len(body) - index
        # Room for this row and, when only a few remain, for all of them: else break now.
        needed = height * (left if left <= MIN_ROWS_CARRIED and index > 0 else 1)
        if pdf.will_page_break(needed):
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
    chart = statement.chart
    if not chart.points:
        _line(pdf, "No equity snapshot in this period.")
        return
    if len(chart.points) == 1:
        _line(pdf, _pdf_text(single_reading_text(statement)))
        return
    top = pdf.get_y() + 2
    box = Box(left=pdf.l_margin + 22, top=top, width=pdf.epw - 24, height=_CHART_HEIGHT)
    drawing = equity_curve_drawing(chart, box)
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
    pdf.cell(box.width / 2, 4, drawing.first, align="L")
    pdf.cell(box.width / 2, 4, drawing.last, align="R")
    pdf.set_xy(pdf.l_margin, box.top + box.height + 7)
    pdf.set_font(_FONT, size=9)


def _disclaimer(pdf: FPDF, text: str) -> None:
    if not text.strip():
        return
    if pdf.will_page_break(20):
        pdf.add_page()
    pdf.ln(4)
    pdf.set_draw_color(200, 200, 200)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + pdf.epw, pdf.get_y())
    pdf.set_draw_color(0, 0, 0)
    pdf.ln(1)
    pdf.set_font(_FONT, style="I", size=7.5)
    pdf.multi_cell(0, 3.6, _pdf_text(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
