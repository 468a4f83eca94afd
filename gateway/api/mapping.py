"""Domain objects -> mam.v1 messages. Decimals go out as plain strings, times as Timestamps."""

from __future__ import annotations

import enum
from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from google.protobuf import duration_pb2, timestamp_pb2

from gateway._proto.mam.v1 import account_pb2, common_pb2, order_pb2, signal_pb2
from gateway.domain.accounts import Account, AccountSnapshot, AllocationMethod, Group
from gateway.domain.allocation import Allocation, AllocationReason
from gateway.domain.copy_options import CopyOptions
from gateway.domain.decimals import format_decimal
from gateway.domain.drawdown_monitor import DrawdownState, LossLimit, LossLimits
from gateway.domain.fills import Fill
from gateway.domain.group_source import GroupSource, SignalRecord
from gateway.domain.orders import ChildOrder, MasterOrder
from gateway.domain.pre_trade_risk import RiskDecision
from gateway.domain.risk_limits import RiskLimits
from gateway.domain.stop_outs import RecordedStopOut, WatchKind
from gateway.engine.account_manager import RiskView


def enum_to_proto(enum_type: Any, prefix: str, value: enum.Enum | None) -> Any:
    """Side.BUY -> SIDE_BUY; None -> the _UNSPECIFIED value."""
    if value is None:
        return 0
    return enum_type.Value(f"{prefix}_{value.name}")


def dec(value: Decimal | None) -> str:
    return "" if value is None else format_decimal(value)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """As Timestamp.FromDatetime (a naive time is UTC), by timedelta arithmetic: a fifth of
    its cost, and every fill and allocation line carries a time."""
    if value is None:
        return None
    delta = value - (_NAIVE_EPOCH if value.tzinfo is None else _EPOCH)
    # timedelta keeps seconds and microseconds non-negative, as Timestamp keeps its nanos.
    return timestamp_pb2.Timestamp(
        seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1_000
    )


def duration_from_micros(value: int | None) -> duration_pb2.Duration | None:
    if value is None:
        return None
    duration = duration_pb2.Duration()
    duration.FromMicroseconds(value)
    return duration


def _method(value: enum.Enum | None) -> Any:
    return enum_to_proto(account_pb2.AllocationMethod, "ALLOCATION_METHOD", value)


def snapshot_to_proto(
    snapshot: AccountSnapshot, stamp: timestamp_pb2.Timestamp | None = None
) -> account_pb2.AccountSnapshot:
    """`stamp`: snapshot.time as a Timestamp, when the caller has made it already."""
    return account_pb2.AccountSnapshot(
        balance=dec(snapshot.balance),
        equity=dec(snapshot.equity),
        margin=dec(snapshot.margin),
        free_margin=dec(snapshot.free_margin),
        margin_level=dec(snapshot.margin_level),
        time=timestamp(snapshot.time) if stamp is None else stamp,
    )


def account_to_proto(account: Account, risk: RiskView | None = None) -> account_pb2.Account:
    message = account_pb2.Account(
        account_id=account.account_id,
        name=account.name,
        platform=enum_to_proto(common_pb2.Platform, "PLATFORM", account.platform),
        login=account.login,
        server=account.server,
        currency=account.currency,
        state=enum_to_proto(account_pb2.AccountState, "ACCOUNT_STATE", account.state),
        margin_mode=enum_to_proto(common_pb2.MarginMode, "MARGIN_MODE", account.margin_mode),
        leverage=account.leverage,
        create_time=timestamp(account.created_at),
        update_time=timestamp(account.updated_at),
        symbol_mappings=[
            account_pb2.SymbolMapping(symbol=a, broker_symbol=b) for a, b in account.symbol_mappings
        ],
    )
    if account.initial_balance is not None:
        message.simulated.initial_balance = dec(account.initial_balance)
    if account.snapshot is not None:
        message.snapshot.CopyFrom(snapshot_to_proto(account.snapshot))
    if risk is not None:
        _put_loss_watch(message, risk)
    return message


def _put_loss_watch(message: Any, risk: RiskView) -> None:
    """An Account's or a Group's loss_limits, stop_outs and loss_watch."""
    if risk.loss_limits is not None:
        message.loss_limits.CopyFrom(loss_limits_to_proto(risk.loss_limits))
    message.stop_outs.extend(stop_out_to_proto(s) for s in risk.stop_outs)
    if risk.watch is not None:
        message.loss_watch.CopyFrom(loss_watch_to_proto(risk.watch))


def group_to_proto(
    group: Group, risk: RiskView | None = None, source: GroupSource | None = None
) -> account_pb2.Group:
    """The group; with `risk`, its risk settings and loss watch too (a member's own limits on
    its GroupMember); with `source`, the account it mirrors."""
    settings = group.allocation
    message = account_pb2.Group(
        group_id=group.group_id,
        name=group.name,
        allocation=account_pb2.AllocationSettings(
            method=enum_to_proto(
                account_pb2.AllocationMethod, "ALLOCATION_METHOD", settings.method
            ),
            below_min_policy=enum_to_proto(
                account_pb2.BelowMinPolicy, "BELOW_MIN_POLICY", settings.below_min_policy
            ),
            reference_equity=dec(settings.reference_equity),
            reference_account_id=settings.reference_account_id or "",
        ),
        members=[
            account_pb2.GroupMember(
                account_id=m.account_id,
                percentage=dec(m.percentage),
                lot_multiplier=dec(m.lot_multiplier),
                fixed_lots=dec(m.fixed_lots),
                risk_percent=dec(m.risk_percent),
                max_lots=dec(m.max_lots),
                method=_method(m.method),
                copy_options=None if m.copy.is_default else copy_options_to_proto(m.copy),
            )
            for m in group.members
        ],
        magic=group.magic,
        create_time=timestamp(group.created_at),
        update_time=timestamp(group.updated_at),
    )
    if risk is not None:
        settings_of = risk.group
        if not settings_of.limits.is_unlimited:
            message.risk_limits.CopyFrom(risk_limits_to_proto(settings_of.limits))
        for member in message.members:
            own = settings_of.member_limits.get(member.account_id)
            if own is not None:
                # Set even when empty: an empty override leaves that member unlimited.
                member.risk_limits.CopyFrom(risk_limits_to_proto(own))
        message.violation_policy = enum_to_proto(
            account_pb2.ViolationPolicy, "VIOLATION_POLICY", settings_of.policy
        )
        _put_loss_watch(message, risk)
    if source is not None:
        message.source.CopyFrom(group_source_to_proto(source))
    return message


def copy_options_to_proto(options: CopyOptions) -> account_pb2.CopyOptions:
    message = account_pb2.CopyOptions(
        reverse=options.reverse,
        direction=enum_to_proto(account_pb2.CopyDirection, "COPY_DIRECTION", options.direction),
        skip_stops=not options.copy_stops,
        skip_pending_orders=not options.copy_pending,
        min_volume=dec(options.min_volume),
        min_volume_policy=enum_to_proto(
            account_pb2.MinVolumePolicy, "MIN_VOLUME_POLICY", options.min_volume_policy
        ),
        close_only=options.close_only,
    )
    if options.max_slippage_points is not None:
        message.max_slippage_points = options.max_slippage_points
    if options.max_signal_age is not None:
        message.max_signal_age.FromTimedelta(options.max_signal_age)
    return message


def group_source_to_proto(source: GroupSource) -> account_pb2.GroupSource:
    age = duration_pb2.Duration()
    age.FromTimedelta(source.max_signal_age)
    return account_pb2.GroupSource(
        account_id=source.account_id,
        paused=source.paused,
        max_signal_age=age,
        create_time=timestamp(source.created_at),
        update_time=timestamp(source.updated_at),
    )


def signal_to_proto(record: SignalRecord) -> signal_pb2.Signal:
    signal = record.signal
    return signal_pb2.Signal(
        sequence=record.sequence,
        group_id=record.group_id,
        source_account_id=record.source_account_id,
        event_id=signal.event_id,
        kind=enum_to_proto(signal_pb2.SignalKind, "SIGNAL_KIND", signal.kind),
        ticket=signal.ticket,
        symbol=signal.symbol,
        side=enum_to_proto(common_pb2.Side, "SIDE", signal.side),
        volume=dec(signal.volume),
        fraction=dec(signal.fraction),
        order_type=enum_to_proto(common_pb2.OrderType, "ORDER_TYPE", signal.order_type),
        price=dec(signal.price),
        stop_limit_price=dec(signal.stop_limit_price),
        stop_loss=dec(signal.stop_loss),
        take_profit=dec(signal.take_profit),
        time_in_force=enum_to_proto(common_pb2.TimeInForce, "TIME_IN_FORCE", signal.time_in_force),
        expire_time=timestamp(signal.expires_at),
        copies=list(signal.copies),
        source_time=timestamp(signal.source_time),
        state=enum_to_proto(signal_pb2.SignalState, "SIGNAL_STATE", record.state),
        detail=record.detail,
        master_order_ids=list(record.master_order_ids),
        observe_time=timestamp(record.observed_at),
        settle_time=timestamp(record.settled_at),
        skip_reason="" if signal.skip is None else signal.skip.value,
    )


def risk_limits_to_proto(limits: RiskLimits) -> account_pb2.RiskLimits:
    message = account_pb2.RiskLimits(
        max_order_volume=dec(limits.max_order_volume),
        max_symbol_volume=dec(limits.max_symbol_volume),
        max_symbol_notional=dec(limits.max_symbol_notional),
        min_margin_level=dec(limits.min_margin_level),
        allowed_symbols=sorted(limits.allowed_symbols),
        denied_symbols=sorted(limits.denied_symbols),
        trading_windows=[
            account_pb2.TradingWindow(
                # WEEKDAY_MONDAY = 1 on the wire; MONDAY = 0 as Python counts.
                start_day=account_pb2.Weekday.ValueType(w.start_day + 1),
                start_time=_time_of_day(w.start),
                end_day=account_pb2.Weekday.ValueType(w.end_day + 1),
                end_time=_time_of_day(w.end),
            )
            for w in limits.trading_windows
        ],
    )
    if limits.max_open_positions is not None:
        message.max_open_positions = limits.max_open_positions
    return message


def _time_of_day(value: time) -> str:
    return value.strftime("%H:%M" if value.second == 0 else "%H:%M:%S")


def loss_limits_to_proto(limits: LossLimits) -> account_pb2.LossLimits:
    zone = limits.day_zone
    message = account_pb2.LossLimits(
        day_time_zone=zone.key if isinstance(zone, ZoneInfo) else "",
        daily_stop_out_needs_reset=not limits.daily_breach_ends_next_day,
    )
    if limits.daily_loss is not None:
        message.daily_loss.CopyFrom(_loss_limit(limits.daily_loss))
    if limits.max_drawdown is not None:
        message.max_drawdown.CopyFrom(_loss_limit(limits.max_drawdown))
    return message


def _loss_limit(limit: LossLimit) -> account_pb2.LossLimit:
    return account_pb2.LossLimit(
        amount=dec(limit.amount),
        unit=enum_to_proto(account_pb2.LossUnit, "LOSS_UNIT", limit.unit),
        action=enum_to_proto(account_pb2.StopOutAction, "STOP_OUT_ACTION", limit.action),
    )


def stop_out_to_proto(stop_out: RecordedStopOut) -> account_pb2.StopOut:
    breach = stop_out.breach
    return account_pb2.StopOut(
        stop_out_id=stop_out.stop_out_id,
        account_id=stop_out.subject_id if stop_out.kind is WatchKind.ACCOUNT else "",
        group_id=stop_out.subject_id if stop_out.kind is WatchKind.GROUP else "",
        rule=enum_to_proto(account_pb2.LossRule, "LOSS_RULE", breach.rule),
        action=enum_to_proto(account_pb2.StopOutAction, "STOP_OUT_ACTION", breach.action),
        limit=_loss_limit(breach.limit),
        time=timestamp(breach.at),
        equity=dec(breach.equity),
        high_water_mark=dec(breach.high_water_mark),
        day_start_equity=dec(breach.day_start_equity),
        loss=dec(breach.loss),
        loss_percent=dec(breach.loss_percent),
        description=breach.describe(),
        closing_master_order_ids=list(stop_out.closing_master_order_ids),
        end_time=timestamp(stop_out.ended_at),
        ended_by=stop_out.ended_by,
    )


def loss_watch_to_proto(state: DrawdownState) -> account_pb2.LossWatch:
    return account_pb2.LossWatch(
        equity=dec(state.equity),
        high_water_mark=dec(state.high_water_mark),
        day_start_equity=dec(state.day_start_equity),
        time=timestamp(state.at),
    )


def risk_check_to_proto(decision: RiskDecision) -> account_pb2.RiskCheck:
    return account_pb2.RiskCheck(
        action=enum_to_proto(account_pb2.RiskAction, "RISK_ACTION", decision.action),
        requested_volume=dec(decision.requested_volume),
        volume=dec(decision.volume),
        violations=[
            account_pb2.RiskViolation(
                rule=v.rule.value,
                message=v.message,
                clippable=v.clippable,
                limit=dec(v.limit),
                value=dec(v.value),
            )
            for v in decision.violations
        ],
        summary=decision.summary,
    )


def allocation_to_proto(allocation: Allocation, *, lines: bool = True) -> order_pb2.Allocation:
    """The allocation as its message: a SubmitMasterOrder answer carries one line per account.
    `lines=False` (MASTER_ORDER_VIEW_BASIC): the summary only; the lines, nearly all the cost,
    are not built."""
    return order_pb2.Allocation(
        method=_method(allocation.method),
        below_min_policy=enum_to_proto(
            account_pb2.BelowMinPolicy, "BELOW_MIN_POLICY", allocation.below_min_policy
        ),
        requested_volume=dec(allocation.requested_volume),
        allocated_volume=dec(allocation.allocated_volume),
        unallocated_volume=dec(allocation.unallocated_volume),
        snapshot_time=timestamp(allocation.snapshot_time),
        lines=_allocation_lines(allocation) if lines else None,
        reference_equity=dec(allocation.reference_equity),
    )


def _allocation_lines(allocation: Allocation) -> list[order_pb2.AllocationLine]:
    """Thousands of lines share a few decimal objects (volumes, contract sizes) and snapshot
    times, so their texts and Timestamps are made once per object; empty fields are left out
    rather than set to their defaults (each keyword costs the message constructor)."""
    texts: dict[int, str] = {}
    times: dict[int, timestamp_pb2.Timestamp | None] = {}

    def text(value: Decimal) -> str:
        found = texts.get(id(value))
        if found is None:
            found = texts[id(value)] = f"{value:f}"
        return found

    def snapshot(value: AccountSnapshot) -> account_pb2.AccountSnapshot:
        stamp = times.get(id(value.time))
        if stamp is None:
            stamp = times[id(value.time)] = timestamp(value.time)
        return snapshot_to_proto(value, stamp)

    lines: list[order_pb2.AllocationLine] = []
    append = lines.append
    AllocationLine = order_pb2.AllocationLine
    for line in allocation.lines:
        message = AllocationLine(
            account_id=line.account_id,
            symbol=line.symbol,
            basis="" if line.basis is None else text(line.basis),
            target_volume=text(line.target_volume),
            volume=text(line.volume),
            child_volumes=[text(v) for v in line.child_volumes],
            reasons=[_REASONS[r] for r in line.reasons],
            method=_METHODS[line.method],
            contract_size="" if line.contract_size is None else text(line.contract_size),
            snapshot=None if line.snapshot is None else snapshot(line.snapshot),
        )
        if line.entry_price is not None:
            message.entry_price = text(line.entry_price)
        if line.risk_checks:
            message.risk_checks.extend(risk_check_to_proto(d) for d in line.risk_checks)
        append(message)
    return lines


_REASONS = {
    reason: order_pb2.AllocationReason.Value(f"ALLOCATION_REASON_{reason.name}")
    for reason in AllocationReason
}
_METHODS = {method: _method(method) for method in AllocationMethod}


def child_to_proto(child: ChildOrder) -> order_pb2.ChildOrder:
    return order_pb2.ChildOrder(
        child_order_id=child.child_order_id,
        master_order_id=child.master_order_id,
        account_id=child.account_id,
        symbol=child.symbol,
        side=enum_to_proto(common_pb2.Side, "SIDE", child.side),
        volume=dec(child.volume),
        state=enum_to_proto(order_pb2.ChildOrderState, "CHILD_ORDER_STATE", child.state),
        tag=child.tag,
        filled_volume=dec(child.filled_volume),
        requested_price=dec(child.requested_price),
        fill_price=dec(child.fill_price),
        slippage_points=dec(child.slippage_points),
        retcode=child.retcode,
        status_text=child.status_text,
        broker_order_ticket=child.broker_order_ticket,
        broker_deal_ticket=child.broker_deal_ticket,
        position_ticket=child.position_ticket,
        attempts=child.attempts,
        sent_time=timestamp(child.sent_at),
        fill_time=timestamp(child.filled_at),
        closes_child_order_id=child.closes_child_order_id,
    )


def master_to_proto(
    master: MasterOrder,
    children: list[ChildOrder] | None = None,
    *,
    allocation_lines: bool = True,
) -> order_pb2.MasterOrder:
    """The master order; `allocation_lines=False` (MASTER_ORDER_VIEW_BASIC) leaves out the
    allocation's lines, one per account, without building them."""
    spec = master.spec
    stats = master.execution
    return order_pb2.MasterOrder(
        master_order_id=master.master_order_id,
        spec=order_pb2.MasterOrderSpec(
            client_order_id=spec.client_order_id,
            group_id=spec.group_id,
            symbol=spec.symbol,
            side=enum_to_proto(common_pb2.Side, "SIDE", spec.side),
            type=enum_to_proto(common_pb2.OrderType, "ORDER_TYPE", spec.order_type),
            volume=dec(spec.volume),
            price=dec(spec.price),
            stop_limit_price=dec(spec.stop_limit_price),
            stop_loss=dec(spec.stop_loss),
            take_profit=dec(spec.take_profit),
            max_deviation_points=spec.max_deviation_points,
            time_in_force=enum_to_proto(
                common_pb2.TimeInForce, "TIME_IN_FORCE", spec.time_in_force
            ),
            expire_time=timestamp(spec.expire_time),
            filling_policy=enum_to_proto(
                common_pb2.FillingPolicy, "FILLING_POLICY", spec.filling_policy
            ),
            comment=spec.comment,
        ),
        state=enum_to_proto(order_pb2.MasterOrderState, "MASTER_ORDER_STATE", master.state),
        state_reason=master.state_reason,
        magic=master.magic,
        allocation=allocation_to_proto(master.allocation, lines=allocation_lines),
        children=[child_to_proto(c) for c in children or []],
        child_count=master.child_count,
        filled_child_count=master.filled_child_count,
        rejected_child_count=master.rejected_child_count,
        filled_volume=dec(master.filled_volume),
        average_fill_price=dec(master.average_fill_price),
        execution=order_pb2.ExecutionStats(
            dispatch_skew=duration_from_micros(stats.dispatch_skew_us),
            submit_to_last_fill=duration_from_micros(stats.submit_to_last_fill_us),
            average_slippage_points=dec(stats.average_slippage_points),
            max_slippage_points=dec(stats.max_slippage_points),
        ),
        create_time=timestamp(master.created_at),
        update_time=timestamp(master.updated_at),
        cancel_request_time=timestamp(master.cancel_requested_at),
        closes_master_order_id=spec.closes_master_order_id,
        close_fraction=dec(spec.close_fraction),
    )


_SIDES = {
    "BUY": common_pb2.SIDE_BUY,
    "SELL": common_pb2.SIDE_SELL,
}


def fill_to_proto(fill: Fill) -> order_pb2.Fill:
    return order_pb2.Fill(
        sequence=fill.sequence,
        fill_id=fill.fill_id,
        master_order_id=fill.master_order_id,
        child_order_id=fill.child_order_id,
        account_id=fill.account_id,
        symbol=fill.symbol,
        side=_SIDES[fill.side.name],
        volume=dec(fill.volume),
        price=dec(fill.price),
        requested_price=dec(fill.requested_price),
        slippage_points=dec(fill.slippage_points),
        deal_ticket=fill.deal_ticket,
        order_ticket=fill.order_ticket,
        position_ticket=fill.position_ticket,
        time=timestamp(fill.executed_at),
    )
