"""Statements as CSV, HTML and PDF: what a client receives must parse, carry the figures and
escape whatever an account name or symbol holds."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from pypdf import PdfReader

from gateway.domain.account_history import DealEntry
from gateway.domain.balance_operations import BalanceOperation, BalanceOperationKind
from gateway.domain.fees import FeeSchedule, period_fees
from gateway.domain.orders import Side
from gateway.domain.performance import AccountActivity, EquityPoint, TradeDeal
from gateway.domain.reporting_period import Period
from gateway.domain.statement import Statement, build_statement
from gateway.statements import parse_deals_csv, render_deals_csv, render_html, render_pdf
from gateway.statements.text import period_label

D = Decimal
JANUARY = Period.of_days(date(2026, 1, 1), date(2026, 1, 31))
HOSTILE_NAME = '<script>alert("x")</script> & "Partners"'
# The curve's stroke colour, as the PDF's content stream sets it before the polyline.
CURVE_STROKE = "0.1216 0.3725 0.6588 RG"


def at(day: int, hour: int = 21) -> datetime:
    return datetime(2026, 1, day, hour, tzinfo=UTC)


def deal(ticket: int, *, symbol: str = "EURUSD", profit: str = "10") -> TradeDeal:
    return TradeDeal(
        ticket=ticket,
        symbol=symbol,
        side=Side.SELL if ticket % 2 else Side.BUY,
        entry=DealEntry.OUT if ticket % 2 else DealEntry.IN,
        volume=D("0.10"),
        price=D("1.08345"),
        profit=D(profit) if ticket % 2 else D(0),
        commission=D("-0.35"),
        swap=D("-0.12") if ticket % 3 == 0 else D(0),
        executed_at=at(1 + ticket % 28, 10) + timedelta(seconds=ticket),
    )


def january_activity(deal_count: int = 6) -> AccountActivity:
    equities = [10000 + 40 * day - (300 if day in (12, 13) else 0) for day in range(1, 32)]
    return AccountActivity(
        "acc-7",
        points=tuple(
            EquityPoint(time=at(day), balance=D(equity), equity=D(equity))
            for day, equity in zip(range(1, 32), equities, strict=True)
        ),
        operations=(
            BalanceOperation(
                time=at(10, 12),
                kind=BalanceOperationKind.DEPOSIT,
                amount=D("2500"),
                comment="<b>wire</b>",
            ),
        ),
        deals=tuple(deal(n) for n in range(1, deal_count + 1)),
    )


def january_statement(
    *, name: str = "Jane Client", activity: AccountActivity | None = None
) -> Statement:
    activity = activity or january_activity()
    fees = period_fees(
        activity,
        FeeSchedule(performance_fee_percent=D("20"), management_fee_percent=D("2")),
        JANUARY,
    )
    return build_statement(
        activity,
        JANUARY,
        account_name=name,
        currency="USD",
        generated_at=datetime(2026, 2, 1, 6, tzinfo=UTC),
        fees=fees,
        contract_sizes={"EURUSD": D("100000")},
    )


def pdf_text(document: bytes) -> tuple[PdfReader, str]:
    reader = PdfReader(io.BytesIO(document))
    return reader, "\n".join(page.extract_text() for page in reader.pages)


# -- PDF ---------------------------------------------------------------------------------------


def test_the_pdf_parses_and_carries_the_account_period_and_totals() -> None:
    statement = january_statement()
    reader, text = pdf_text(render_pdf(statement))
    assert len(reader.pages) >= 1
    assert "Jane Client" in text
    assert "acc-7" in text
    assert "2026-01-01 to 2026-01-31 (UTC)" in text
    # Closing equity 10000 + 40 x 31 = 11240; deposits 2500.
    assert "Closing equity 11,240.00" in text
    assert "Deposits 2,500.00" in text
    assert f"Net P&L {statement.performance.net_pnl:,.2f}" in text
    assert reader.metadata is not None
    assert reader.metadata.title == "Account statement Jane Client"


def test_the_pdf_draws_the_equity_curve_one_segment_per_day() -> None:
    statement = january_statement()
    reader, _ = pdf_text(render_pdf(statement))
    content = reader.pages[0].get_contents()
    assert content is not None
    stream = content.get_data().decode("latin-1")
    curve = re.search(
        re.escape(CURVE_STROKE) + r"\s+[\d.]+ w\s+((?:[\d.]+ [\d.]+ [ml]\s+)+)S", stream
    )
    assert curve is not None, "no equity curve drawn on the first page"
    moves = re.findall(r"[\d.]+ [\d.]+ ([ml])", curve.group(1))
    # One point per day of January: a move to the first, a line to each of the 30 others.
    assert moves == ["m"] + ["l"] * 30
    assert len(statement.equity_curve) == 31


def test_many_deals_continue_on_further_pages() -> None:
    statement = january_statement(activity=january_activity(deal_count=150))
    reader, text = pdf_text(render_pdf(statement))
    assert len(reader.pages) >= 3
    assert f"Page 1 of {len(reader.pages)}" in text
    # The last deal made it into the document.
    assert "150 2026-01-" in text


def test_an_empty_statement_renders_its_undefined_figures() -> None:
    statement = january_statement(activity=AccountActivity("acc-7"))
    reader, text = pdf_text(render_pdf(statement))
    assert len(reader.pages) == 1
    assert "No equity snapshot in this period." in text
    assert "Time-weighted return n/a" in text
    assert "Maximum drawdown n/a" in text
    assert "No deal in this period." in text


def test_characters_outside_the_pdf_font_become_question_marks() -> None:
    _, text = pdf_text(render_pdf(january_statement(name="Иван Petrov\x07")))
    assert "???? Petrov" in text


def test_rendering_the_same_statement_twice_gives_the_same_pdf() -> None:
    statement = january_statement()
    assert render_pdf(statement) == render_pdf(statement)


# -- HTML --------------------------------------------------------------------------------------


def test_html_escapes_a_hostile_account_name_and_texts() -> None:
    activity = january_activity()
    hostile_deal = deal(1, symbol='"><img src=x onerror=alert(1)>')
    statement = january_statement(
        name=HOSTILE_NAME,
        activity=AccountActivity(
            activity.account_id, activity.points, activity.operations, (hostile_deal,)
        ),
    )
    page = render_html(statement)
    assert "<script>" not in page
    assert "<img" not in page
    assert "<b>wire" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#34;Partners&#34;" in page
    assert "&lt;b&gt;wire&lt;/b&gt;" in page
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in page


def test_html_shows_the_period_totals_and_curve() -> None:
    page = render_html(january_statement())
    assert '<span id="period">2026-01-01 to 2026-01-31 (UTC)</span>' in page
    assert '<th>Closing equity</th><td class="number">11,240.00</td>' in page
    polyline = re.search(r'<polyline points="([^"]+)"', page)
    assert polyline is not None
    assert len(polyline.group(1).split()) == 31


# -- CSV ---------------------------------------------------------------------------------------


def test_deals_csv_round_trips_exactly() -> None:
    new_york = timezone(timedelta(hours=-5))
    deals = [
        deal(1),
        deal(2, profit="-12.345678"),
        # Text a spreadsheet would run as a formula, and text starting with the guard itself.
        deal(3, symbol='=HYPERLINK("x")'),
        deal(5, symbol="'quoted"),
        TradeDeal(
            ticket=9,
            symbol='XAU,USD "spot"',
            side=Side.BUY,
            entry=DealEntry.OUT_BY,
            volume=D("0.01"),
            price=D("2345.670"),
            profit=D("1E+1"),
            executed_at=datetime(2026, 1, 5, 18, tzinfo=new_york),
        ),
    ]
    text = render_deals_csv(deals)
    assert parse_deals_csv(text) == deals
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:3] == ["ticket", "executed_at", "symbol"]
    assert rows[3][2] == '\'=HYPERLINK("x")'
    # Times written in UTC; amounts as plain decimals, never an exponent.
    assert rows[5][1] == "2026-01-05T23:00:00+00:00"
    assert rows[5][7] == "10"


def test_a_csv_that_is_not_a_deals_csv_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_deals_csv("a,b\n1,2\n")
    tampered = render_deals_csv([deal(1)]).replace(",9.65\r\n", ",99.65\r\n")
    with pytest.raises(ValueError):
        parse_deals_csv(tampered)


def test_period_labels_show_instants_unless_whole_days() -> None:
    assert period_label(JANUARY) == "2026-01-01 to 2026-01-31 (UTC)"
    partial = Period(at(1, 0), at(15, 12))
    assert period_label(partial) == "2026-01-01 00:00:00 to 2026-01-15 12:00:00 (UTC)"
