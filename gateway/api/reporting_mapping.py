"""mam.v1 ReportingService messages <-> domain reporting values: requests validated field by
field (every bad field reported at once), reports written out as exact decimal strings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from gateway._proto.mam.v1 import common_pb2, worker_service_pb2
from gateway._proto.mam.v1 import reporting_service_pb2 as pb
from gateway.api.mapping import dec, duration_from_micros, enum_to_proto, timestamp
from gateway.api.requests import MAX_COMMENT, MAX_ID, decode_page_token, enum_from_proto
from gateway.domain.account_history import AccountDeal, AccountPosition
from gateway.domain.balance_operations import BalanceOperation, BalanceOperationKind
from gateway.domain.decimals import parse_decimal
from gateway.domain.errors import FieldViolation, InvalidArgument, Violations
from gateway.domain.execution_quality import (
    AccountExecutionQuality,
    MasterDispatchSkew,
    SymbolVolumeQuality,
)
from gateway.domain.fees import (
    FeeSchedule,
    HighWaterMark,
    ManagementFeeBasis,
    ManagementFeeCharge,
    PerformanceFeeCharge,
)
from gateway.domain.performance import (
    DEFAULT_ANNUALIZATION,
    EquityPoint,
    PerformanceReport,
)
from gateway.domain.reporting_period import Frequency, Period
from gateway.store.reporting import AccountFeeSchedule, CrystallisedFee, RecordedBalanceOperation

# The calendar reports may cover: wide enough for any account's history, narrow enough that a
# period's days and fee boundaries are always representable.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
MAX_OPERATION_ID = 64
# Money and rates carry at most this many decimals, and amounts stay below 10^15: every value
# then fits the store's exact decimal text.
MAX_DECIMALS = 8
MAX_AMOUNT = Decimal(10) ** 15
MAX_ANNUALIZATION = 366

_OPERATION_KINDS = (
    BalanceOperationKind.DEPOSIT,
    BalanceOperationKind.WITHDRAWAL,
    BalanceOperationKind.CREDIT,
)


# -- requests --------------------------------------------------------------------------------


def required_text(v: Violations, path: str, text: str, *, limit: int = MAX_ID) -> str:
    if not text.strip():
        v.add(path, "is required")
    elif len(text) > limit:
        v.add(path, f"is longer than {limit} characters")
    return text.strip()


def optional_time(v: Violations, message: Any, field: str, path: str = "") -> datetime | None:
    if not message.HasField(field):
        return None
    value: datetime = getattr(message, field).ToDatetime(tzinfo=UTC)
    if not EARLIEST <= value < LATEST:
        v.add(path or field, f"must be within {EARLIEST.year}..{LATEST.year - 1}")
        return None
    return value


def required_time(v: Violations, message: Any, field: str, path: str = "") -> datetime | None:
    if not message.HasField(field):
        v.add(path or field, "is required")
        return None
    return optional_time(v, message, field, path)


def required_period(v: Violations, message: Any) -> Period | None:
    start = required_time(v, message, "start_time")
    end = required_time(v, message, "end_time")
    if start is None or end is None:
        return None
    if end <= start:
        v.add("end_time", "must be after start_time")
        return None
    return Period(start, end)


def optional_bounds(v: Violations, message: Any) -> tuple[datetime | None, datetime | None]:
    start = optional_time(v, message, "start_time")
    end = optional_time(v, message, "end_time")
    if start is not None and end is not None and end <= start:
        v.add("end_time", "must be after start_time")
    return start, end


def decimal_field(
    v: Violations,
    path: str,
    text: str,
    *,
    default: Decimal | None = None,
    minimum: Decimal | None = None,
    maximum: Decimal | None = None,
    positive: bool = False,
) -> Decimal | None:
    """A decimal of at most MAX_DECIMALS places within the bounds; `default` when empty."""
    if text == "":
        if default is None:
            v.add(path, "is required")
        return default
    try:
        value = parse_decimal(text)
    except ValueError:
        v.add(path, f'must be a decimal number like "1.25", got {text[:40]!r}')
        return None
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_DECIMALS:
        v.add(path, f"has more than {MAX_DECIMALS} decimals")
    elif positive and value <= 0:
        v.add(path, f"must be greater than 0, got {text}")
    elif minimum is not None and value < minimum:
        v.add(path, f"must be at least {minimum}, got {text}")
    elif maximum is not None and value > maximum:
        v.add(path, f"must be at most {maximum}, got {text}")
    else:
        return value
    return None


def balance_operation(
    message: pb.BalanceOperation, *, recorded_by: str, recorded_at: datetime
) -> RecordedBalanceOperation:
    path = "balance_operation"
    v = Violations()
    account_id = required_text(v, f"{path}.account_id", message.account_id)
    operation_id = required_text(
        v, f"{path}.operation_id", message.operation_id, limit=MAX_OPERATION_ID
    )
    kind = enum_from_proto(
        BalanceOperationKind, pb.BalanceOperationKind, "BALANCE_OPERATION_KIND", message.kind
    )
    if kind not in _OPERATION_KINDS:
        v.add(f"{path}.kind", "must be DEPOSIT, WITHDRAWAL or CREDIT")
    amount = decimal_field(
        v, f"{path}.amount", message.amount, minimum=-MAX_AMOUNT, maximum=MAX_AMOUNT
    )
    if amount is not None:
        if amount == 0:
            v.add(f"{path}.amount", "must not be 0")
        elif kind is BalanceOperationKind.DEPOSIT and amount < 0:
            v.add(f"{path}.amount", "a deposit is money in: it must be greater than 0")
        elif kind is BalanceOperationKind.WITHDRAWAL and amount > 0:
            v.add(f"{path}.amount", 'a withdrawal is money out: it must be negative ("-500")')
    time = required_time(v, message, "time", f"{path}.time")
    if message.ticket < 0:
        v.add(f"{path}.ticket", "must not be negative")
    if len(message.comment) > MAX_COMMENT:
        v.add(f"{path}.comment", f"is longer than {MAX_COMMENT} characters")
    v.raise_if_any()
    assert kind is not None and amount is not None and time is not None
    return RecordedBalanceOperation(
        account_id=account_id,
        operation_id=operation_id,
        operation=BalanceOperation(
            time=time, kind=kind, amount=amount, ticket=message.ticket, comment=message.comment
        ),
        recorded_by=recorded_by,
        recorded_at=recorded_at,
    )


def fee_schedule(
    message: pb.FeeSchedule, *, updated_by: str, updated_at: datetime
) -> AccountFeeSchedule:
    path = "fee_schedule"
    v = Violations()
    account_id = required_text(v, f"{path}.account_id", message.account_id)
    zero, hundred = Decimal(0), Decimal(100)
    performance = decimal_field(
        v,
        f"{path}.performance_fee_percent",
        message.performance_fee_percent,
        default=zero,
        minimum=zero,
        maximum=hundred,
    )
    management = decimal_field(
        v,
        f"{path}.management_fee_percent",
        message.management_fee_percent,
        default=zero,
        minimum=zero,
        maximum=hundred,
    )
    money_step = decimal_field(
        v,
        f"{path}.money_step",
        message.money_step,
        default=Decimal("0.01"),
        positive=True,
        maximum=Decimal(1_000_000),
    )
    days_per_year = message.days_per_year or 365
    if not 1 <= days_per_year <= MAX_ANNUALIZATION:
        v.add(f"{path}.days_per_year", f"must be within 1..{MAX_ANNUALIZATION} (0 means 365)")
    crystallisation = enum_from_proto(
        Frequency, pb.FeeCrystallisation, "FEE_CRYSTALLISATION", message.crystallisation
    )
    if message.crystallisation and crystallisation is None:
        v.add(f"{path}.crystallisation", "must be MONTHLY, QUARTERLY or YEARLY")
    basis = enum_from_proto(
        ManagementFeeBasis,
        pb.ManagementFeeBasis,
        "MANAGEMENT_FEE_BASIS",
        message.management_fee_basis,
    )
    if message.management_fee_basis and basis is None:
        v.add(f"{path}.management_fee_basis", "must be AVERAGE_EQUITY or CLOSING_EQUITY")
    effective = optional_time(v, message, "effective_time", f"{path}.effective_time")
    v.raise_if_any()
    assert performance is not None and management is not None and money_step is not None
    return AccountFeeSchedule(
        account_id=account_id,
        schedule=FeeSchedule(
            performance_fee_percent=performance,
            crystallisation=crystallisation or Frequency.MONTHLY,
            management_fee_percent=management,
            management_fee_basis=basis or ManagementFeeBasis.AVERAGE_EQUITY,
            days_per_year=days_per_year,
            money_step=money_step,
        ),
        effective_from=effective or updated_at,
        updated_at=updated_at,
        updated_by=updated_by,
    )


def performance_options(v: Violations, message: Any) -> tuple[int, Decimal]:
    """The annualization and the annual risk-free rate of a performance request."""
    annualization = message.annualization or DEFAULT_ANNUALIZATION
    if not 1 <= annualization <= MAX_ANNUALIZATION:
        v.add("annualization", f"must be within 1..{MAX_ANNUALIZATION} (0 means 252)")
    rate = decimal_field(
        v,
        "risk_free_rate",
        message.risk_free_rate,
        default=Decimal(0),
        minimum=Decimal(-1),
        maximum=Decimal(1),
    )
    return annualization, rate if rate is not None else Decimal(0)


def page_key(token: str) -> str:
    """The key a page token carries; the token is one this service issued."""
    return decode_page_token(token)


def bad_page_token() -> InvalidArgument:
    return InvalidArgument(
        [FieldViolation("page_token", "is not a token from a previous response")]
    )


def micros(value: datetime) -> int:
    delta = value - EARLIEST
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    return EARLIEST + timedelta(microseconds=value)


def numeric_key(token: str, *, limit: int = 2**63 - 1) -> int | None:
    """The non-negative integer a page token carries; None for the first page."""
    key = page_key(token)
    if not key:
        return None
    if not key.isdigit() or len(key) > 19 or int(key) > limit:
        raise bad_page_token()
    return int(key)


# -- responses -------------------------------------------------------------------------------


def _date(value: Any) -> str:
    text: str = value.isoformat()
    return text


def balance_operation_to_proto(recorded: RecordedBalanceOperation) -> pb.BalanceOperation:
    operation = recorded.operation
    return pb.BalanceOperation(
        account_id=recorded.account_id,
        operation_id=recorded.operation_id,
        kind=enum_to_proto(pb.BalanceOperationKind, "BALANCE_OPERATION_KIND", operation.kind),
        amount=dec(operation.amount),
        time=timestamp(operation.time),
        ticket=operation.ticket,
        comment=operation.comment,
        recorded_by=recorded.recorded_by,
        record_time=timestamp(recorded.recorded_at),
    )


def deal_to_proto(deal: AccountDeal) -> pb.AccountDeal:
    return pb.AccountDeal(
        account_id=deal.account_id,
        ticket=deal.ticket,
        order_ticket=deal.order_ticket,
        position_ticket=deal.position_ticket,
        symbol=deal.symbol,
        side=enum_to_proto(common_pb2.Side, "SIDE", deal.side),
        entry=enum_to_proto(worker_service_pb2.DealEntry, "DEAL_ENTRY", deal.entry),
        volume=dec(deal.volume),
        price=dec(deal.price),
        profit=dec(deal.profit),
        magic=deal.magic,
        comment=deal.comment,
        execute_time=timestamp(deal.executed_at),
    )


def position_to_proto(position: AccountPosition) -> pb.AccountPosition:
    return pb.AccountPosition(
        account_id=position.account_id,
        ticket=position.ticket,
        symbol=position.symbol,
        side=enum_to_proto(common_pb2.Side, "SIDE", position.side),
        volume=dec(position.volume),
        price_open=dec(position.price_open),
        stop_loss=dec(position.stop_loss),
        take_profit=dec(position.take_profit),
        magic=position.magic,
        comment=position.comment,
        open_time=timestamp(position.opened_at),
        seen_time=timestamp(position.seen_at),
    )


def _point(point: EquityPoint | None) -> pb.EquityPoint | None:
    if point is None:
        return None
    return pb.EquityPoint(
        time=timestamp(point.time), balance=dec(point.balance), equity=dec(point.equity)
    )


def performance_to_proto(report: PerformanceReport) -> pb.PerformanceReport:
    flows = report.cash_flows
    trades = report.trades
    drawdown = report.max_drawdown
    return pb.PerformanceReport(
        start_time=timestamp(report.period.start),
        end_time=timestamp(report.period.end),
        opening=_point(report.opening),
        closing=_point(report.closing),
        cash_flows=pb.CashFlowTotals(
            deposits=dec(flows.deposits),
            withdrawals=dec(flows.withdrawals),
            credit=dec(flows.credit),
            transfers=dec(flows.transfers),
            net=dec(flows.net),
        ),
        measured_net_flow=dec(report.measured_net_flow),
        net_pnl=dec(report.net_pnl),
        realized_pnl=dec(report.realized_pnl),
        commission=dec(report.commission),
        swap=dec(report.swap),
        time_weighted_return=dec(report.time_weighted_return),
        max_drawdown=(
            pb.Drawdown(
                depth=dec(drawdown.depth),
                peak_time=timestamp(drawdown.peak_at),
                trough_time=timestamp(drawdown.trough_at),
                recovery_time=timestamp(drawdown.recovered_at),
                peak_equity=dec(drawdown.peak_equity),
                trough_equity=dec(drawdown.trough_equity),
            )
            if drawdown is not None
            else None
        ),
        daily_returns=[
            pb.DailyReturn(date=_date(r.day), value=dec(r.value)) for r in report.daily_returns
        ],
        volatility=dec(report.volatility),
        sharpe_ratio=dec(report.sharpe_ratio),
        sortino_ratio=dec(report.sortino_ratio),
        trades=pb.TradeStatistics(
            trades=trades.trades,
            wins=trades.wins,
            losses=trades.losses,
            gross_profit=dec(trades.gross_profit),
            gross_loss=dec(trades.gross_loss),
            win_rate=dec(trades.win_rate),
            profit_factor=dec(trades.profit_factor),
            average_win=dec(trades.average_win),
            average_loss=dec(trades.average_loss),
        ),
        exposure=[
            pb.SymbolExposure(
                symbol=e.symbol,
                deals=e.deals,
                volume=dec(e.volume),
                buy_volume=dec(e.buy_volume),
                sell_volume=dec(e.sell_volume),
                notional=dec(e.notional),
            )
            for e in report.exposure
        ],
        equity_curve=[
            pb.EquityCurvePoint(
                date=_date(c.day),
                time=timestamp(c.time),
                balance=dec(c.balance),
                equity=dec(c.equity),
            )
            for c in report.equity_curve
        ],
        annualization=report.annualization,
        risk_free_rate=dec(report.risk_free_rate),
    )


def fee_schedule_to_proto(stored: AccountFeeSchedule) -> pb.FeeSchedule:
    schedule = stored.schedule
    return pb.FeeSchedule(
        account_id=stored.account_id,
        performance_fee_percent=dec(schedule.performance_fee_percent),
        crystallisation=enum_to_proto(
            pb.FeeCrystallisation, "FEE_CRYSTALLISATION", schedule.crystallisation
        ),
        management_fee_percent=dec(schedule.management_fee_percent),
        management_fee_basis=enum_to_proto(
            pb.ManagementFeeBasis, "MANAGEMENT_FEE_BASIS", schedule.management_fee_basis
        ),
        days_per_year=schedule.days_per_year,
        money_step=dec(schedule.money_step),
        effective_time=timestamp(stored.effective_from),
        update_time=timestamp(stored.updated_at),
        updated_by=stored.updated_by,
    )


def fee_charge_to_proto(
    performance: PerformanceFeeCharge,
    management: ManagementFeeCharge,
    schedule: FeeSchedule,
    *,
    crystallised_at: datetime | None,
) -> pb.FeeCharge:
    return pb.FeeCharge(
        start_time=timestamp(performance.period.start),
        end_time=timestamp(performance.period.end),
        high_water_mark=dec(performance.high_water_mark),
        equity=dec(performance.equity),
        withdrawn_gain=dec(performance.withdrawn_gain),
        gain=dec(performance.gain),
        performance_fee=dec(performance.fee),
        closing_high_water_mark=dec(performance.closing_high_water_mark),
        management_fee=dec(management.fee),
        management_basis_equity=dec(management.basis_equity),
        management_days=management.days,
        performance_fee_percent=dec(schedule.performance_fee_percent),
        management_fee_percent=dec(schedule.management_fee_percent),
        total_fee=dec(performance.fee + management.fee),
        crystallised=crystallised_at is not None,
        crystallise_time=timestamp(crystallised_at),
    )


def crystallised_fee_to_proto(charge: CrystallisedFee) -> pb.FeeCharge:
    rates = FeeSchedule(
        performance_fee_percent=charge.performance_fee_percent,
        management_fee_percent=charge.management_fee_percent,
    )
    return fee_charge_to_proto(
        charge.performance, charge.management, rates, crystallised_at=charge.crystallised_at
    )


def high_water_mark_to_proto(mark: HighWaterMark) -> pb.HighWaterMark:
    return pb.HighWaterMark(
        value=dec(mark.value),
        equity=dec(mark.equity),
        withdrawn_gain=dec(mark.withdrawn_gain),
        as_of_time=timestamp(mark.as_of),
    )


def _volume_quality_to_proto(volume: SymbolVolumeQuality) -> pb.SymbolVolumeQuality:
    return pb.SymbolVolumeQuality(
        symbol=volume.symbol,
        orders=volume.orders,
        target_volume=dec(volume.target_volume),
        allocated_volume=dec(volume.allocated_volume),
        filled_volume=dec(volume.filled_volume),
        rounding_drift=dec(volume.rounding_drift),
        unfilled_volume=dec(volume.unfilled_volume),
        drift=dec(volume.drift),
        history=[
            pb.VolumeDriftStep(
                master_order_id=step.master_order_id,
                submit_time=timestamp(step.submitted_at),
                rounding=dec(step.rounding),
                unfilled=dec(step.unfilled),
                cumulative_rounding=dec(step.cumulative_rounding),
                cumulative_unfilled=dec(step.cumulative_unfilled),
                cumulative_drift=dec(step.cumulative_drift),
            )
            for step in volume.history
        ],
    )


def execution_quality_to_proto(
    account_id: str,
    quality: AccountExecutionQuality | None,
    skews: tuple[MasterDispatchSkew, ...],
    *,
    truncated: bool,
) -> pb.GetExecutionQualityResponse:
    response = pb.GetExecutionQualityResponse(
        account_id=account_id,
        dispatch_skews=[
            pb.MasterDispatchSkew(
                master_order_id=s.master_order_id,
                accounts_sent=s.accounts_sent,
                dispatch_skew=duration_from_micros(s.dispatch_skew_us),
                fill_skew=duration_from_micros(s.fill_skew_us),
                signal_to_first_send=duration_from_micros(s.signal_to_first_send_us),
                signal_to_last_fill=duration_from_micros(s.signal_to_last_fill_us),
            )
            for s in skews
        ],
        truncated=truncated,
    )
    if quality is None:
        response.slippage.CopyFrom(pb.SlippageSummary())
        return response
    slippage = quality.slippage
    response.orders = quality.orders
    response.volumes.extend(_volume_quality_to_proto(v) for v in quality.volumes)
    response.slippage.CopyFrom(
        pb.SlippageSummary(
            fills=slippage.fills,
            average_points=dec(slippage.average_points),
            worst_points=dec(slippage.worst_points),
            best_points=dec(slippage.best_points),
        )
    )
    response.copied_orders = quality.copied_orders
    for field, value in (
        ("average_dispatch_delay", quality.average_dispatch_delay_us),
        ("max_dispatch_delay", quality.max_dispatch_delay_us),
        ("average_send_latency", quality.average_send_latency_us),
        ("average_signal_to_send", quality.average_signal_to_send_us),
        ("max_signal_to_send", quality.max_signal_to_send_us),
        ("average_signal_to_fill", quality.average_signal_to_fill_us),
        ("max_signal_to_fill", quality.max_signal_to_fill_us),
    ):
        duration = duration_from_micros(value)
        if duration is not None:
            getattr(response, field).CopyFrom(duration)
    return response
