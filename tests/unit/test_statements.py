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

from gateway.domain.account_history import AccountPosition, DealEntry
from gateway.domain.balance_operations import BalanceOperation, BalanceOperationKind
from gateway.domain.fees import FeeSchedule, period_fees
from gateway.domain.figures import SymbolPrecision
from gateway.domain.open_positions import ValuedPosition, value_position
from gateway.domain.orders import Side
from gateway.domain.performance import AccountActivity, EquityPoint, TradeDeal
from gateway.domain.reporting_period import Period
from gateway.domain.statement import (
    ClientDetails,
    FeeCharged,
    HistoryAsOf,
    Letterhead,
    Statement,
    build_statement,
    shows_open_positions,
)
from gateway.statements import parse_deals_csv, render_deals_csv, render_html, render_pdf
from gateway.statements.pdf_document import MIN_ROWS_CARRIED
from gateway.statements.text import period_label

D = Decimal
JANUARY = Period.of_days(date(2026, 1, 1), date(2026, 1, 31))
HOSTILE_NAME = '<script>alert("x")</script> & "Partners"'
# The curve's stroke colour, as the PDF's content stream sets it before the polyline.
CURVE_STROKE = "0.1216 0.3725 0.6588 RG"


def at(day: int, hour: int = 21, minute: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)


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


# -- what a client expects of a statement ------------------------------------------------------

FIRM = Letterhead(
    firm_name="Northwind Capital Ltd",
    firm_details=("1 Harbour Street, Valletta", "Licensed by the MFSA, C 12345"),
    manager_name="Jane Manager",
    manager_contact="desk@northwind.example",
    disclaimer="Past performance is not a reliable indicator of future results.",
)
CLIENT = ClientDetails(
    name="Jane Client",
    account_id="acc-7",
    login=5012345,
    server="Broker-Live",
    platform="MT5",
    currency="USD",
    leverage=100,
)
EURUSD = SymbolPrecision(volume_step=D("0.01"), digits=5)


def position(ticket: int, side: Side, volume: str, price_open: str) -> AccountPosition:
    return AccountPosition(
        account_id="acc-7",
        ticket=ticket,
        symbol="EURUSD",
        side=side,
        volume=D(volume),
        price_open=D(price_open),
        magic=7,
        comment="",
        opened_at=at(30, 9),
        seen_at=at(31, 20),
    )


def full_statement(
    activity: AccountActivity | None = None,
    *,
    period: Period = JANUARY,
    as_of: HistoryAsOf | None = None,
    positions: tuple[ValuedPosition, ...] = (),
    charges: tuple[FeeCharged, ...] = (),
) -> Statement:
    return build_statement(
        activity or january_activity(),
        period,
        account_name="Jane Client",
        currency="USD",
        generated_at=datetime(2026, 2, 1, 6, tzinfo=UTC),
        contract_sizes={"EURUSD": D("100000")},
        client=CLIENT,
        letterhead=FIRM,
        as_of=as_of or HistoryAsOf(at(31, 20, 59)),
        open_positions=positions,
        fee_charges=charges,
        precisions={"EURUSD": EURUSD},
    )


def test_a_statement_names_the_firm_the_manager_the_client_and_ends_with_the_disclaimer() -> None:
    statement = full_statement()
    reader, text = pdf_text(render_pdf(statement))
    lines = text.splitlines()
    assert lines[0] == "Northwind Capital Ltd"
    assert "Licensed by the MFSA, C 12345" in text
    assert "Manager Jane Manager" in text and "Contact desk@northwind.example" in text
    assert "Login 5012345 on Broker-Live" in text and "Leverage 1:100" in text
    last_page = reader.pages[-1].extract_text()
    assert "Past performance is not a reliable indicator of future results." in last_page
    assert reader.metadata is not None and reader.metadata.author == "Northwind Capital Ltd"

    page = render_html(statement)
    assert '<strong id="firm-name">Northwind Capital Ltd</strong>' in page
    assert "<th>Manager</th><td>Jane Manager</td>" in page
    assert "<th>Login</th><td>5012345 on Broker-Live</td>" in page
    assert (
        '<footer id="disclaimer">Past performance is not a reliable indicator of future '
        "results.</footer>" in page
    )


def test_a_statement_says_as_of_when_its_history_is() -> None:
    fresh = full_statement(as_of=HistoryAsOf(datetime(2026, 1, 31, 20, 59, 30, tzinfo=UTC)))
    assert "Account history as of 2026-01-31 20:59:30 UTC." in pdf_text(render_pdf(fresh))[1]
    stale = full_statement(
        as_of=HistoryAsOf(datetime(2026, 1, 31, 20, 0, tzinfo=UTC), "no answer within 10.0s")
    )
    page = render_html(stale)
    assert (
        '<span id="as-of">Account history as of 2026-01-31 20:00:00 UTC (its terminal could '
        "not be read for this statement: no answer within 10.0s).</span>" in page
    )


def test_open_positions_are_shown_with_their_floating_profit() -> None:
    buy = position(501, Side.BUY, "0.5", "1.08000")
    sell = position(502, Side.SELL, "0.10", "1.09000")
    # At a bid of 1.08250 the buy is 25 pips up: 250 ticks x 1 USD x 0.5 lot.
    valued = (
        value_position(buy, bid=D("1.08250"), ask=D("1.08260"), tick_size=D("0.00001"),
                       tick_value=D("1")),
        value_position(sell, bid=D("1.08250"), ask=D("1.08260"), tick_size=D("0.00001"),
                       tick_value=D("1")),
    )  # fmt: skip
    assert [v.profit for v in valued] == [D("125.00000"), D("74.00000")]
    statement = full_statement(positions=valued)
    _, text = pdf_text(render_pdf(statement))
    assert "501 2026-01-30 09:00:00 EURUSD BUY 0.50 1.08000 1.08250 125.00" in text
    assert "502 2026-01-30 09:00:00 EURUSD SELL 0.10 1.09000 1.08260 74.00" in text
    assert "total floating P&L 199.00 USD" in text
    assert "Floating P&L (open positions) 199.00" in text
    page = render_html(statement)
    assert '<table id="open-positions">' in page
    assert '<td class="number">0.50</td><td class="number">1.08000</td>' in page

    # A period that ended before the positions were read shows none of them.
    assert not shows_open_positions(Period.of_days(date(2025, 12, 1), date(2025, 12, 31)),
                                    HistoryAsOf(at(31)))  # fmt: skip


def test_the_fees_charged_in_the_period_are_listed() -> None:
    def charge(month: int) -> FeeCharged:
        period = Period.of_days(date(2025 + month // 13, (month - 1) % 12 + 1, 1),
                                date(2025 + month // 13, (month - 1) % 12 + 1, 28))  # fmt: skip
        return FeeCharged(
            period=period,
            performance_fee=D("120.5"),
            management_fee=D("16.44"),
            high_water_mark=D("11240"),
            charged_at=period.end,
        )

    december, january = charge(12), charge(13)
    statement = full_statement(charges=(december, january))
    assert statement.fee_charges == (january,)
    _, text = pdf_text(render_pdf(statement))
    assert "2026-01-01 to 2026-01-28 (UTC) 120.50 16.44 11,240.00 2026-01-29 00:00:00" in text
    assert "Fees charged 136.94" in text
    assert "2025-12-01" not in text
    assert "No fee charged in this period." in pdf_text(render_pdf(full_statement()))[1]
    assert '<table id="fee-charges">' in render_html(statement)


def test_a_one_day_statement_charts_every_reading_of_the_day() -> None:
    day = Period.of_days(date(2026, 1, 15), date(2026, 1, 15))
    readings = tuple(
        EquityPoint(
            time=datetime(2026, 1, 15, 8, tzinfo=UTC) + timedelta(minutes=m),
            balance=D(10000),
            equity=D(10000) + D(m % 37) - D(m % 11),
        )
        for m in range(0, 600, 5)
    )
    statement = full_statement(AccountActivity("acc-7", points=readings), period=day)
    assert statement.chart.intraday and len(statement.chart.points) == len(readings)
    page = render_html(statement)
    polyline = re.search(r'<polyline points="([^"]+)"', page)
    assert polyline is not None and len(polyline.group(1).split()) == len(readings)
    assert "Equity (each reading of the account, UTC)" in page
    assert ">2026-01-15 08:00</text>" in page and ">2026-01-15 17:55</text>" in page
    # A month keeps its daily closing curve.
    assert not full_statement().chart.intraday
    # One reading is said, not drawn as a level line.
    single = full_statement(AccountActivity("acc-7", points=readings[:1]), period=day)
    said = "One reading of the equity in this period: 10,000.00 USD at 2026-01-15 08:00:00 UTC."
    assert said in pdf_text(render_pdf(single))[1]
    assert f'<p id="single-reading">{said}</p>' in render_html(single)


def test_a_statement_shows_volumes_to_the_lot_step_and_prices_to_the_digits() -> None:
    deals = (
        TradeDeal(ticket=1, symbol="EURUSD", side=Side.BUY, entry=DealEntry.IN,
                  volume=D("0.5"), price=D("1.08441000"), profit=D(0), executed_at=at(2, 10)),
    )  # fmt: skip
    statement = full_statement(AccountActivity("acc-7", deals=deals))
    _, text = pdf_text(render_pdf(statement))
    assert "1 2026-01-02 10:00:00 EURUSD BUY IN 0.50 1.08441" in text
    assert "1.08441000" not in text
    assert '<td class="number">0.50</td><td class="number">1.08441</td>' in render_html(statement)


def deal_rows_by_page(document: bytes) -> list[int]:
    """How many deal rows (a ticket, then a January time) each page of a statement holds."""
    reader = PdfReader(io.BytesIO(document))
    row = re.compile(r"^\d+ 2026-01-\d\d \d\d:\d\d:\d\d EURUSD ", re.M)
    return [len(row.findall(page.extract_text())) for page in reader.pages]


def test_a_page_break_never_leaves_a_tables_last_row_alone_on_a_page() -> None:
    # How many deals fill the pages when they run on: the first page of deals takes `first`.
    counts = deal_rows_by_page(render_pdf(full_statement(january_activity(deal_count=200))))
    first = next(n for n in counts if n)
    # One deal more than fits: without care, the last one alone under a repeated heading.
    widow = full_statement(january_activity(deal_count=first + 1))
    pages = [n for n in deal_rows_by_page(render_pdf(widow)) if n]
    assert sum(pages) == first + 1
    assert len(pages) == 2 and pages[-1] >= MIN_ROWS_CARRIED, pages
