"""mam.v1.ReportingService against a real server: cash flows, deal history, performance, fees,
execution quality and statements. The tests that store anything run on SQLite and PostgreSQL
(the `database_url` fixture).

Money snapshots are written straight into the account history (what the AccountMonitor would
store), so that equity, deposits and withdrawals follow the worked examples of
docs/reporting.md; deals and master orders come from real trading on the simulated broker.
"""

from __future__ import annotations

import dataclasses
import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from pypdf import PdfReader

from gateway._proto.mam.v1 import (
    account_pb2,
    account_service_pb2,
    admin_service_pb2,
    admin_service_pb2_grpc,
    common_pb2,
    reporting_service_pb2_grpc,
    trading_service_pb2,
    worker_service_pb2,
)
from gateway._proto.mam.v1 import reporting_service_pb2 as pb
from gateway.api import reporting_mapping, reporting_servicer
from gateway.api.server import RunningGateway, start_gateway
from gateway.domain.account_history import AccountReading
from gateway.domain.accounts import AccountSnapshot
from gateway.domain.balance_operations import BalanceOperation, BalanceOperationKind
from gateway.domain.performance import AccountActivity, EquityPoint, measure_performance
from gateway.domain.reporting_period import Period
from gateway.statements import parse_deals_csv
from tests.conftest import Client, client_of
from tests.integration.helpers import create_accounts, create_group, market_order
from tests.support import error_details, make_config


@dataclass
class Reporting:
    gateway: RunningGateway
    client: Client
    stub: reporting_service_pb2_grpc.ReportingServiceStub

    async def new_accounts(self, *equities: str, prefix: str = "client") -> list[str]:
        created = await create_accounts(self.client.accounts, list(equities), prefix=prefix)
        return [a.account_id for a in created]

    async def record(
        self, account_id: str, operation_id: str, kind: int, amount: str, at: datetime
    ) -> pb.RecordBalanceOperationResponse:
        return await self.stub.RecordBalanceOperation(
            pb.RecordBalanceOperationRequest(
                balance_operation=pb.BalanceOperation(
                    account_id=account_id,
                    operation_id=operation_id,
                    kind=kind,
                    amount=amount,
                    time=stamp(at),
                    comment=f"{operation_id} by wire",
                )
            )
        )

    async def snapshots(self, account_id: str, equities: list[tuple[datetime, str]]) -> None:
        """What the monitor would have stored: equity (and balance) at each time."""
        await self.gateway.store.history.save_account_history(
            [
                AccountReading(
                    account_id,
                    AccountSnapshot(
                        balance=Decimal(equity),
                        equity=Decimal(equity),
                        margin=Decimal(0),
                        free_margin=Decimal(equity),
                        time=at,
                    ),
                )
                for at, equity in equities
            ]
        )


@pytest.fixture
async def reporting(tmp_path: Path, database_url: str) -> AsyncIterator[Reporting]:
    """Prices that stay still (a tick an hour) and no monitor timer: the tests write history."""
    config = make_config(tmp_path, database_url=database_url)
    config = dataclasses.replace(
        config,
        engine=dataclasses.replace(config.engine, history_interval_seconds=0),
        simulator=dataclasses.replace(config.simulator, tick_interval_ms=3_600_000),
    )
    running = await start_gateway(config)
    try:
        async with client_of(running) as client:
            yield Reporting(
                running, client, reporting_service_pb2_grpc.ReportingServiceStub(client.channel)
            )
    finally:
        await running.stop(0.5)


def utc(year: int, month: int, day: int, hour: int = 21) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def stamp(at: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(at)
    return value


def period_fields(start: datetime, end: datetime) -> dict[str, Timestamp]:
    return {"start_time": stamp(start), "end_time": stamp(end)}


DEPOSIT = pb.BALANCE_OPERATION_KIND_DEPOSIT
WITHDRAWAL = pb.BALANCE_OPERATION_KIND_WITHDRAWAL
CREDIT = pb.BALANCE_OPERATION_KIND_CREDIT
ALL_TIME = period_fields(utc(2000, 1, 1), utc(2100, 1, 1))


# -- balance operations ------------------------------------------------------------------------


async def test_balance_operations_are_recorded_once_and_listed_by_time(
    reporting: Reporting,
) -> None:
    (account,) = await reporting.new_accounts("10000")
    first = await reporting.record(account, "wire-2", WITHDRAWAL, "-250.50", utc(2026, 3, 2))
    await reporting.record(account, "wire-1", DEPOSIT, "1000.00", utc(2026, 3, 1))
    await reporting.record(account, "credit-1", CREDIT, "-20", utc(2026, 3, 3))
    assert not first.replayed
    assert first.balance_operation.recorded_by == "admin:loopback"
    assert first.balance_operation.HasField("record_time")

    # A retry lands on the first record; the same id with another amount is refused.
    again = await reporting.record(account, "wire-2", WITHDRAWAL, "-250.50", utc(2026, 3, 2))
    assert again.replayed and again.balance_operation == first.balance_operation
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await reporting.record(account, "wire-2", WITHDRAWAL, "-250.51", utc(2026, 3, 2))
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_details(taken.value).reason == "DUPLICATE_OPERATION_ID"

    pages: list[list[tuple[str, str]]] = []
    token = ""
    while True:
        page = await reporting.stub.ListBalanceOperations(
            pb.ListBalanceOperationsRequest(account_id=account, page_size=2, page_token=token)
        )
        pages.append([(o.operation_id, o.amount) for o in page.balance_operations])
        token = page.next_page_token
        if not token:
            break
    assert pages == [[("wire-1", "1000.00"), ("wire-2", "-250.50")], [("credit-1", "-20")]]
    within = await reporting.stub.ListBalanceOperations(
        pb.ListBalanceOperationsRequest(
            account_id=account, **period_fields(utc(2026, 3, 2), utc(2026, 3, 3))
        )
    )
    assert [o.operation_id for o in within.balance_operations] == ["wire-2"]


async def test_a_balance_operation_is_validated_field_by_field(reporting: Reporting) -> None:
    (account,) = await reporting.new_accounts("10000")
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await reporting.stub.RecordBalanceOperation(
            pb.RecordBalanceOperationRequest(
                balance_operation=pb.BalanceOperation(
                    account_id=account, kind=DEPOSIT, amount="-5", operation_id="x" * 65
                )
            )
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(error_details(bad.value).field_violations) == {
        "balance_operation.amount",
        "balance_operation.operation_id",
        "balance_operation.time",
    }
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await reporting.record("ac_nobody", "w", DEPOSIT, "5", utc(2026, 1, 1))
    assert error_details(unknown.value).reason == "ACCOUNT_NOT_FOUND"
    listed = await reporting.stub.ListBalanceOperations(
        pb.ListBalanceOperationsRequest(account_id=account)
    )
    assert list(listed.balance_operations) == []


# -- performance -------------------------------------------------------------------------------


async def test_performance_with_a_deposit_and_a_withdrawal_is_the_domain_computation(
    reporting: Reporting,
) -> None:
    # docs/reporting.md, "a deposit and a withdrawal": TWR 8.9% where the naive return is -20.8%.
    (account,) = await reporting.new_accounts("10000")
    equities = [
        (utc(2026, 1, 1), "10000"),
        (utc(2026, 1, 2), "11000"),
        (utc(2026, 1, 3), "17600"),
        (utc(2026, 1, 4), "7920"),
    ]
    await reporting.snapshots(account, equities)
    await reporting.record(account, "d-1", DEPOSIT, "10000", utc(2026, 1, 1, 8))
    await reporting.record(account, "d-2", DEPOSIT, "5000", utc(2026, 1, 2, 22))
    await reporting.record(account, "w-1", WITHDRAWAL, "-8800", utc(2026, 1, 3, 23))
    period = Period.of_days(utc(2026, 1, 1).date(), utc(2026, 1, 4).date())

    got = await reporting.stub.GetAccountPerformance(
        pb.GetAccountPerformanceRequest(
            account_id=account, **period_fields(period.start, period.end)
        )
    )
    report = got.report
    assert Decimal(report.time_weighted_return) == Decimal("0.089")
    assert Decimal(report.net_pnl) == Decimal("1720")
    assert Decimal(report.measured_net_flow) == Decimal("-3800")
    assert (Decimal(report.cash_flows.deposits), Decimal(report.cash_flows.withdrawals)) == (
        Decimal("15000"),
        Decimal("-8800"),
    )
    assert [(r.date, Decimal(r.value)) for r in report.daily_returns] == [
        ("2026-01-02", Decimal("0.1")),
        ("2026-01-03", Decimal("0.1")),
        ("2026-01-04", Decimal("-0.1")),
    ]
    # The fall of Jan 4 is a drawdown from the Jan 3 high, not the withdrawal.
    drawdown = report.max_drawdown
    assert Decimal(drawdown.depth) == Decimal("0.1")
    assert drawdown.peak_time.ToDatetime(tzinfo=UTC) == utc(2026, 1, 3)
    assert drawdown.trough_time.ToDatetime(tzinfo=UTC) == utc(2026, 1, 4)
    assert not drawdown.HasField("recovery_time")
    assert [(c.date, c.equity) for c in report.equity_curve] == [
        (at.date().isoformat(), equity) for at, equity in equities
    ]
    assert report.annualization == 252 and report.sharpe_ratio != ""

    # Every field is the domain's figure, exactly.
    activity = AccountActivity(
        account_id=account,
        points=tuple(EquityPoint(at, Decimal(e), Decimal(e)) for at, e in equities),
        operations=(
            BalanceOperation(utc(2026, 1, 1, 8), BalanceOperationKind.DEPOSIT, Decimal(10000)),
            BalanceOperation(utc(2026, 1, 2, 22), BalanceOperationKind.DEPOSIT, Decimal(5000)),
            BalanceOperation(utc(2026, 1, 3, 23), BalanceOperationKind.WITHDRAWAL, Decimal(-8800)),
        ),
    )
    expected = measure_performance(activity, period)
    assert report == reporting_mapping.performance_to_proto(expected)


async def test_group_performance_sums_its_members_and_a_late_member_is_a_transfer(
    reporting: Reporting,
) -> None:
    # docs/reporting.md, "Groups": TWR 5.818%, net P&L 320.
    a, b, c = await reporting.new_accounts("1000", "3000", "500")
    group = await create_group(
        reporting.client.accounts,
        [account_pb2.Account(account_id=i) for i in (a, b, c)],
        name="reported",
    )
    days = [utc(2026, 2, d) for d in (1, 2, 3)]
    await reporting.snapshots(a, list(zip(days, ["1000", "1100", "1210"], strict=True)))
    await reporting.snapshots(b, list(zip(days, ["3000", "2900", "4060"], strict=True)))
    await reporting.snapshots(c, list(zip(days[1:], ["500", "550"], strict=True)))
    await reporting.record(b, "b-dep", DEPOSIT, "1000", utc(2026, 2, 2, 22))

    got = await reporting.stub.GetGroupPerformance(
        pb.GetGroupPerformanceRequest(
            group_id=group.group_id, **period_fields(utc(2026, 2, 1, 0), utc(2026, 2, 4, 0))
        )
    )
    report = got.report
    assert sorted(got.account_ids) == sorted([a, b, c])
    assert [c.equity for c in report.equity_curve] == ["4000", "4500", "5820"]
    assert Decimal(report.cash_flows.transfers) == Decimal("500")
    assert Decimal(report.net_pnl) == Decimal("320")
    assert Decimal(report.time_weighted_return).quantize(Decimal("0.00001")) == Decimal("0.05818")

    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await reporting.stub.GetGroupPerformance(
            pb.GetGroupPerformanceRequest(group_id="grp_nobody", **ALL_TIME)
        )
    assert error_details(unknown.value).reason == "GROUP_NOT_FOUND"
    with pytest.raises(grpc.aio.AioRpcError) as backwards:
        await reporting.stub.GetGroupPerformance(
            pb.GetGroupPerformanceRequest(
                group_id=group.group_id, **period_fields(utc(2026, 2, 4), utc(2026, 2, 1))
            )
        )
    assert set(error_details(backwards.value).field_violations) == {"end_time"}


# -- trading: deals and execution quality --------------------------------------------------------


async def test_deal_history_and_execution_quality_of_real_master_orders(
    reporting: Reporting,
) -> None:
    gateway, client = reporting.gateway, reporting.client
    accounts = await create_accounts(client.accounts, ["10000", "20000", "30000"])
    group = await create_group(client.accounts, accounts)
    # By equity 1:2:3, 1.00 lot gives exact shares 0.1666..., 0.3333..., 0.5: rounding to the
    # 0.01 step leaves the first account 0.0033... over its share on each order.
    orders = []
    for _ in range(2):
        submitted = await client.trading.SubmitMasterOrder(market_order(group.group_id, "1.00"))
        orders.append(submitted.master_order.master_order_id)
        await gateway.engine.wait_idle()
    await gateway.monitor.run_once()
    first = accounts[0].account_id

    pages: list[list[int]] = []
    token = ""
    while True:
        page = await reporting.stub.ListAccountDeals(
            pb.ListAccountDealsRequest(account_id=first, page_size=1, page_token=token)
        )
        pages.append([d.ticket for d in page.deals])
        assert all(d.entry == worker_service_pb2.DEAL_ENTRY_IN for d in page.deals)
        token = page.next_page_token
        if not token:
            break
    tickets = [t for page_tickets in pages for t in page_tickets]
    assert len(tickets) == 2 and tickets == sorted(tickets)
    assert all(len(p) == 1 for p in pages)

    # The positions those deals opened, as the terminal last reported them, a page at a time.
    held: list[pb.AccountPosition] = []
    token = ""
    while True:
        page = await reporting.stub.ListAccountPositions(
            pb.ListAccountPositionsRequest(account_id=first, page_size=1, page_token=token)
        )
        held.extend(page.positions)
        token = page.next_page_token
        if not token:
            break
    terminal = gateway.registry.get(first)
    assert terminal is not None
    at_broker = await terminal.positions()
    assert [(p.ticket, Decimal(p.volume)) for p in held] == [
        (p.ticket, p.volume) for p in sorted(at_broker, key=lambda p: p.ticket)
    ]
    assert len(held) == 2 and all(p.account_id == first for p in held)

    masters = [
        (
            await client.trading.GetMasterOrder(
                trading_service_pb2.GetMasterOrderRequest(master_order_id=m)
            )
        ).master_order
        for m in orders
    ]
    lines = [next(x for x in m.allocation.lines if x.account_id == first) for m in masters]
    target = sum(Decimal(x.target_volume) for x in lines)
    allocated = sum(Decimal(x.volume) for x in lines)
    assert allocated == Decimal("0.34") and allocated != target

    quality = await reporting.stub.GetExecutionQuality(
        pb.GetExecutionQualityRequest(
            account_id=first, **period_fields(utc(2000, 1, 1), utc(2100, 1, 1))
        )
    )
    assert quality.orders == 2 and not quality.truncated
    (volume,) = quality.volumes
    assert Decimal(volume.target_volume) == target
    assert Decimal(volume.rounding_drift) == allocated - target > 0
    assert Decimal(volume.filled_volume) == Decimal("0.34")
    assert Decimal(volume.drift) == Decimal("0.34") - target
    assert [s.master_order_id for s in volume.history] == orders
    assert Decimal(volume.history[1].cumulative_rounding) == allocated - target
    assert quality.slippage.fills == 2 and quality.slippage.average_points != ""
    assert [s.master_order_id for s in quality.dispatch_skews] == sorted(orders)
    assert all(s.accounts_sent == 3 for s in quality.dispatch_skews)
    assert quality.HasField("average_send_latency")

    # Orders accepted outside the period are not counted.
    none = await reporting.stub.GetExecutionQuality(
        pb.GetExecutionQualityRequest(
            account_id=first, **period_fields(utc(2000, 1, 1), utc(2000, 1, 2))
        )
    )
    assert none.orders == 0 and list(none.volumes) == []


# -- fees ----------------------------------------------------------------------------------------


async def test_fees_are_crystallised_monthly_with_the_high_water_mark_carried(
    reporting: Reporting,
) -> None:
    # docs/reporting.md, "Performance fee and the high-water mark": Jan 200, Feb 0, Mar 120 (the
    # deposit raised the mark), Apr 0 (the withdrawal lowered it pro rata to 6300).
    (account,) = await reporting.new_accounts("10000")
    await reporting.snapshots(
        account,
        [
            (utc(2025, 1, 1), "10000"),
            (utc(2025, 1, 31), "11000"),
            (utc(2025, 2, 27), "10500"),
            (utc(2025, 3, 31), "12600"),
            (utc(2025, 4, 30), "6200"),
        ],
    )
    await reporting.record(account, "dep", DEPOSIT, "1000", utc(2025, 3, 15))
    await reporting.record(account, "wd", WITHDRAWAL, "-6300", utc(2025, 4, 10))
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await reporting.stub.GetFeeSchedule(pb.GetFeeScheduleRequest(account_id=account))
    assert error_details(missing.value).reason == "FEE_SCHEDULE_NOT_FOUND"
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await reporting.stub.UpdateFeeSchedule(
            pb.UpdateFeeScheduleRequest(
                fee_schedule=pb.FeeSchedule(account_id=account, performance_fee_percent="120")
            )
        )
    assert set(error_details(bad.value).field_violations) == {
        "fee_schedule.performance_fee_percent"
    }
    updated = await reporting.stub.UpdateFeeSchedule(
        pb.UpdateFeeScheduleRequest(
            fee_schedule=pb.FeeSchedule(
                account_id=account,
                performance_fee_percent="20",
                management_fee_percent="2",
                effective_time=stamp(datetime(2025, 1, 1, tzinfo=UTC)),
            )
        )
    )
    schedule = updated.fee_schedule
    assert schedule.crystallisation == pb.FEE_CRYSTALLISATION_MONTHLY
    assert (schedule.money_step, schedule.days_per_year) == ("0.01", 365)
    got = await reporting.stub.GetFeeSchedule(pb.GetFeeScheduleRequest(account_id=account))
    assert got.fee_schedule == schedule

    async def all_charges() -> tuple[list[pb.FeeCharge], pb.ListFeeChargesResponse]:
        charges: list[pb.FeeCharge] = []
        token = ""
        while True:
            page = await reporting.stub.ListFeeCharges(
                pb.ListFeeChargesRequest(account_id=account, page_size=3, page_token=token)
            )
            charges.extend(page.fee_charges)
            token = page.next_page_token
            if not token:
                return charges, page

    charges, last_page = await all_charges()
    first_four = [
        (
            c.start_time.ToDatetime(tzinfo=UTC).month,
            Decimal(c.high_water_mark),
            Decimal(c.equity),
            Decimal(c.performance_fee),
            Decimal(c.closing_high_water_mark),
        )
        for c in charges[:4]
    ]
    assert first_four == [
        (1, Decimal(10000), Decimal(11000), Decimal(200), Decimal(11000)),
        (2, Decimal(11000), Decimal(10500), Decimal(0), Decimal(11000)),
        (3, Decimal(12000), Decimal(12600), Decimal(120), Decimal(12600)),
        (4, Decimal(6300), Decimal(6200), Decimal(0), Decimal(6300)),
    ]
    assert all(c.crystallised and c.performance_fee_percent == "20" for c in charges)
    # 2% a year on each day's closing equity; February's first days carry January's close:
    # (30 x 10000 + 11000) x 2% / 365 = 17.04 and (26 x 11000 + 2 x 10500) x 2% / 365 = 16.82.
    assert [(c.management_days, c.management_fee, c.total_fee) for c in charges[:2]] == [
        (31, "17.04", "217.04"),
        (28, "16.82", "16.82"),
    ]
    assert charges[0].management_basis_equity == "10032.2580645161"
    # Every month since, up to the last one completed, carries the mark on.
    last_end = charges[-1].end_time.ToDatetime(tzinfo=UTC)
    assert last_end.day == 1 and last_end <= datetime.now(UTC) < last_end + timedelta(days=31)
    assert len(charges) == (last_end.year - 2025) * 12 + last_end.month - 1
    assert {Decimal(c.closing_high_water_mark) for c in charges[3:]} == {Decimal(6300)}
    assert last_page.high_water_mark.value == "6300.00"
    assert last_page.accrued.HasField("start_time") and not last_page.accrued.crystallised

    # Listing again recomputes nothing: the charges are stored.
    again, _ = await all_charges()
    assert again == charges
    # A cash flow inside a crystallised period would change fees already charged.
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await reporting.record(account, "late", DEPOSIT, "5", utc(2025, 2, 1))
    assert late.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(late.value).reason == "FEES_CRYSTALLISED"


# -- statements ----------------------------------------------------------------------------------


async def statement(
    reporting: Reporting, account_id: str, form: int, period: dict[str, Timestamp]
) -> tuple[list[pb.GetAccountStatementResponse], bytes]:
    chunks = [
        c
        async for c in reporting.stub.GetAccountStatement(
            pb.GetAccountStatementRequest(account_id=account_id, format=form, **period)
        )
    ]
    return chunks, b"".join(c.data for c in chunks)


async def test_statements_stream_in_chunks_as_pdf_html_and_csv(
    reporting: Reporting, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway, client = reporting.gateway, reporting.client
    accounts = await create_accounts(client.accounts, ["10000", "20000"], prefix="<b>stmt</b>")
    group = await create_group(client.accounts, accounts)
    submitted = await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.60"))
    await gateway.engine.wait_idle()
    await client.trading.CloseMasterPosition(
        trading_service_pb2.CloseMasterPositionRequest(
            master_order_id=submitted.master_order.master_order_id,
            client_order_id="close-all",
            fraction="1",
        )
    )
    await gateway.engine.wait_idle()
    await gateway.monitor.run_once()
    account = accounts[0]
    day = datetime.now(UTC).date()
    period = period_fields(
        datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=1),
        datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1),
    )

    # Small chunks, so that even a short statement comes in several.
    monkeypatch.setattr(reporting_servicer, "STATEMENT_CHUNK_BYTES", 1024)
    chunks, pdf = await statement(reporting, account.account_id, pb.STATEMENT_FORMAT_PDF, period)
    assert len(chunks) > 1 and all(0 < len(c.data) <= 1024 for c in chunks)
    assert chunks[0].content_type == "application/pdf"
    assert chunks[0].file_name.startswith(f"statement-{account.account_id}-")
    assert chunks[0].file_name.endswith(".pdf")
    assert chunks[0].total_size == len(pdf)
    assert all(not c.content_type and not c.file_name for c in chunks[1:])
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    assert account.name in text

    _, csv = await statement(reporting, account.account_id, pb.STATEMENT_FORMAT_CSV, period)
    deals = parse_deals_csv(csv.decode())
    stored = await gateway.store.history.deals_of(
        account.account_id, utc(2000, 1, 1), utc(2100, 1, 1), limit=10
    )
    assert [(d.ticket, d.volume, d.price, d.profit) for d in deals] == [
        (d.ticket, d.volume, d.price, d.profit) for d in stored
    ]
    assert len(deals) == 2

    chunks, html = await statement(reporting, account.account_id, pb.STATEMENT_FORMAT_HTML, period)
    assert chunks[0].content_type.startswith("text/html")
    page = html.decode()
    assert "&lt;b&gt;stmt&lt;/b&gt;" in page and "<b>stmt</b>" not in page

    with pytest.raises(grpc.aio.AioRpcError) as no_format:
        await statement(reporting, account.account_id, pb.STATEMENT_FORMAT_UNSPECIFIED, period)
    assert set(error_details(no_format.value).field_violations) == {"format"}


async def test_a_statement_made_right_after_a_close_has_the_closing_deals(
    reporting: Reporting,
) -> None:
    """No history round runs here (history_interval_seconds = 0): before, a statement made
    seconds after a close showed neither the closing deals nor the money they realized. It
    reads the account's terminal first now, and says as of when."""
    gateway, client = reporting.gateway, reporting.client
    (account,) = await create_accounts(client.accounts, ["10000"], prefix="fresh")
    group = await create_group(client.accounts, [account])
    submitted = await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.40"))
    await gateway.engine.wait_idle()
    await client.trading.CloseMasterPosition(
        trading_service_pb2.CloseMasterPositionRequest(
            master_order_id=submitted.master_order.master_order_id,
            client_order_id="close-half",
            fraction="0.5",
        )
    )
    await gateway.engine.wait_idle()
    asked_at = datetime.now(UTC)
    day = asked_at.date()
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    period = period_fields(start, start + timedelta(days=1))

    # A report reads the terminal first too: the close is one trade of the day.
    performance = await reporting.stub.GetAccountPerformance(
        pb.GetAccountPerformanceRequest(account_id=account.account_id, **period)
    )
    assert performance.report.trades.trades == 1

    _, csv = await statement(reporting, account.account_id, pb.STATEMENT_FORMAT_CSV, period)
    deals = parse_deals_csv(csv.decode())
    assert [(d.entry.name, d.volume) for d in deals] == [
        ("IN", Decimal("0.40")),
        ("OUT", Decimal("0.20")),
    ]

    _, pdf = await statement(reporting, account.account_id, pb.STATEMENT_FORMAT_PDF, period)
    reader = PdfReader(io.BytesIO(pdf))
    text = "\n".join(page.extract_text() for page in reader.pages)
    # The letterhead and the disclaimer of the configuration's [statements].
    assert text.startswith("Example Capital Management Ltd")
    assert "Manager Example Capital Management, MAM desk" in text
    assert "the broker's own records prevail" in text
    assert f"Login {account.login} on {account.server}" in text
    # Both deals, volumes to EURUSD's lot step; the half still open, valued at the market.
    closing = deals[1]
    assert f"{closing.ticket} " in text and " OUT 0.20 " in text
    as_of = re.search(r"Account history as of (\S+ \S+) UTC\.", text)
    assert as_of is not None
    assert datetime.fromisoformat(as_of.group(1)).replace(tzinfo=UTC) >= asked_at - timedelta(
        seconds=1
    )
    assert "Open positions" in text and "total floating P&L" in text
    assert re.search(r"EURUSD BUY 0\.20 \d\.\d{5} \d\.\d{5} -?[\d,]+\.\d\d", text), text

    _, html = await statement(reporting, account.account_id, pb.STATEMENT_FORMAT_HTML, period)
    page = html.decode()
    assert '<table id="open-positions">' in page and '<span id="as-of">' in page


# -- who may read what ---------------------------------------------------------------------------


async def test_an_investor_gets_its_own_statement_and_no_one_elses(tmp_path: Path) -> None:
    running = await start_gateway(make_config(tmp_path, auth=True))
    admin_key = (tmp_path / "admin.key").read_text().strip()
    admin = (("authorization", f"Bearer {admin_key}"),)
    try:
        async with client_of(running) as client:
            keys = admin_service_pb2_grpc.AdminServiceStub(client.channel)
            stub = reporting_service_pb2_grpc.ReportingServiceStub(client.channel)
            own, other = [
                (await client.accounts.CreateAccount(request, metadata=admin)).account.account_id
                for request in _account_requests()
            ]
            investor = (
                await keys.CreateApiKey(
                    admin_service_pb2.CreateApiKeyRequest(
                        api_key=admin_service_pb2.ApiKey(
                            name="client", role=admin_service_pb2.ROLE_INVESTOR, account_ids=[own]
                        )
                    ),
                    metadata=admin,
                )
            ).key
            as_investor = (("authorization", f"Bearer {investor}"),)

            def request(account_id: str) -> pb.GetAccountStatementRequest:
                return pb.GetAccountStatementRequest(
                    account_id=account_id, format=pb.STATEMENT_FORMAT_CSV, **ALL_TIME
                )

            chunks = [c async for c in stub.GetAccountStatement(request(own), metadata=as_investor)]
            assert chunks[0].content_type.startswith("text/csv")
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                async for _ in stub.GetAccountStatement(request(other), metadata=as_investor):
                    pass
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED

            # Recording money is for admins, and on the audit log.
            operation = pb.RecordBalanceOperationRequest(
                balance_operation=pb.BalanceOperation(
                    account_id=own,
                    operation_id="dep-1",
                    kind=DEPOSIT,
                    amount="100",
                    time=stamp(utc(2026, 1, 1)),
                )
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.RecordBalanceOperation(operation, metadata=as_investor)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            await stub.RecordBalanceOperation(operation, metadata=admin)
            audit = await keys.ListAuditRecords(
                admin_service_pb2.ListAuditRecordsRequest(
                    method="/mam.v1.ReportingService/RecordBalanceOperation"
                ),
                metadata=admin,
            )
            assert [r.status for r in audit.records] == ["PERMISSION_DENIED", "OK"]
            assert f"account_id={own}" in audit.records[1].result
    finally:
        await running.stop(0.5)


def _account_requests() -> list[account_service_pb2.CreateAccountRequest]:
    return [
        account_service_pb2.CreateAccountRequest(
            account=account_pb2.Account(
                name=f"investor-{n}",
                platform=common_pb2.PLATFORM_SIMULATED,
                login=90_001 + n,
                server="mam-sim",
                currency="USD",
                simulated=account_pb2.SimulatedAccount(initial_balance="10000"),
            )
        )
        for n in range(2)
    ]
