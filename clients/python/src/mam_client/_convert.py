"""Conversions between the generated messages and the client's values (mam_client.types).

Decimals cross the wire as the API's decimal strings (optional sign, digits, optional point and
digits, no exponent), converted exactly both ways. Pure functions, no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, TypeVar

from google.protobuf import duration_pb2, timestamp_pb2

from mam_client import types as t
from mam_client._proto.mam.v1 import (
    account_pb2,
    account_service_pb2,
    common_pb2,
    order_pb2,
    signal_pb2,
    trading_service_pb2,
)

E = TypeVar("E", bound=StrEnum)

# Each client enum and the prefix of its values in the API.
_PREFIXES: dict[type[StrEnum], tuple[str, Any]] = {
    t.Platform: ("PLATFORM_", common_pb2.Platform),
    t.AccountState: ("ACCOUNT_STATE_", account_pb2.AccountState),
    t.MarginMode: ("MARGIN_MODE_", common_pb2.MarginMode),
    t.AllocationMethod: ("ALLOCATION_METHOD_", account_pb2.AllocationMethod),
    t.BelowMinPolicy: ("BELOW_MIN_POLICY_", account_pb2.BelowMinPolicy),
    t.Side: ("SIDE_", common_pb2.Side),
    t.OrderType: ("ORDER_TYPE_", common_pb2.OrderType),
    t.TimeInForce: ("TIME_IN_FORCE_", common_pb2.TimeInForce),
    t.FillingPolicy: ("FILLING_POLICY_", common_pb2.FillingPolicy),
    t.MasterOrderState: ("MASTER_ORDER_STATE_", order_pb2.MasterOrderState),
    t.ChildOrderState: ("CHILD_ORDER_STATE_", order_pb2.ChildOrderState),
    t.AllocationReason: ("ALLOCATION_REASON_", order_pb2.AllocationReason),
    t.CopyDirection: ("COPY_DIRECTION_", account_pb2.CopyDirection),
    t.MinVolumePolicy: ("MIN_VOLUME_POLICY_", account_pb2.MinVolumePolicy),
    t.Weekday: ("WEEKDAY_", account_pb2.Weekday),
    t.SignalKind: ("SIGNAL_KIND_", signal_pb2.SignalKind),
    t.SignalState: ("SIGNAL_STATE_", signal_pb2.SignalState),
}


# Decimals


def decimal_to_wire(value: Decimal | int | str | None) -> str:
    """The API's decimal string for value; "" for None. A float is refused: it is not exact."""
    if value is None:
        return ""
    if isinstance(value, float | bool):
        raise TypeError(f"a decimal value must be a Decimal, int or str, not {value!r}")
    if isinstance(value, str):
        value = parse_decimal(value)
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"not a finite decimal: {value!r}")
    text = format(number, "f")  # never an exponent: Decimal("1E+2") -> "100"
    return "0" if text in ("-0", "") else text


def parse_decimal(text: str) -> Decimal:
    """A finite Decimal from a decimal string; ValueError otherwise."""
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"not a decimal number: {text!r}") from None
    if not number.is_finite():
        raise ValueError(f"not a finite decimal: {text!r}")
    return number


def decimal_or_none(text: str) -> Decimal | None:
    return Decimal(text) if text else None


def decimal_or_zero(text: str) -> Decimal:
    return Decimal(text) if text else Decimal(0)


# Enums, times


def enum_to_wire(value: StrEnum | None) -> Any:  # the generated enum's ValueType
    """The API's number for value; 0 (the _UNSPECIFIED value) for None."""
    if value is None:
        return 0
    prefix, wrapper = _PREFIXES[type(value)]
    return wrapper.Value(prefix + value.value)


def enum_from_wire(kind: type[E], number: int) -> E:
    prefix, wrapper = _PREFIXES[kind]
    try:
        name: str = wrapper.Name(number)
    except ValueError:  # a value added to the API after this client was built
        return kind("UNSPECIFIED")
    return kind(name.removeprefix(prefix))


def time_from_wire(stamp: timestamp_pb2.Timestamp) -> datetime | None:
    if stamp.seconds == 0 and stamp.nanos == 0:
        return None
    return stamp.ToDatetime(tzinfo=UTC)


def time_to_wire(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    return stamp


def duration_from_wire(duration: duration_pb2.Duration) -> timedelta | None:
    if duration.seconds == 0 and duration.nanos == 0:
        return None
    return duration.ToTimedelta()


# Accounts and groups


def snapshot_from_wire(message: account_pb2.AccountSnapshot) -> t.AccountSnapshot:
    return t.AccountSnapshot(
        balance=decimal_or_none(message.balance),
        equity=decimal_or_none(message.equity),
        margin=decimal_or_none(message.margin),
        free_margin=decimal_or_none(message.free_margin),
        margin_level=decimal_or_none(message.margin_level),
        time=time_from_wire(message.time),
    )


def new_account_to_wire(account: t.NewAccount) -> account_pb2.Account:
    message = account_pb2.Account(
        name=account.name,
        platform=enum_to_wire(account.platform),
        login=account.login,
        server=account.server,
        currency=account.currency,
        state=enum_to_wire(account.state),
        margin_mode=enum_to_wire(account.margin_mode),
        leverage=account.leverage or 0,
        symbol_mappings=[
            account_pb2.SymbolMapping(symbol=m.symbol, broker_symbol=m.broker_symbol)
            for m in account.symbol_mappings
        ],
    )
    if account.initial_balance is not None:
        message.simulated.initial_balance = decimal_to_wire(account.initial_balance)
    return message


def account_from_wire(message: account_pb2.Account) -> t.Account:
    return t.Account(
        account_id=message.account_id,
        name=message.name,
        platform=enum_from_wire(t.Platform, message.platform),
        login=message.login,
        server=message.server,
        currency=message.currency,
        state=enum_from_wire(t.AccountState, message.state),
        margin_mode=enum_from_wire(t.MarginMode, message.margin_mode),
        leverage=message.leverage,
        initial_balance=decimal_or_none(message.simulated.initial_balance),
        snapshot=snapshot_from_wire(message.snapshot) if message.HasField("snapshot") else None,
        symbol_mappings=tuple(
            t.SymbolMapping(m.symbol, m.broker_symbol) for m in message.symbol_mappings
        ),
        create_time=time_from_wire(message.create_time),
        update_time=time_from_wire(message.update_time),
    )


def allocation_settings_to_wire(settings: t.AllocationSettings) -> account_pb2.AllocationSettings:
    return account_pb2.AllocationSettings(
        method=enum_to_wire(settings.method),
        below_min_policy=enum_to_wire(settings.below_min_policy),
        reference_equity=decimal_to_wire(settings.reference_equity),
        reference_account_id=settings.reference_account_id,
    )


def allocation_settings_from_wire(message: account_pb2.AllocationSettings) -> t.AllocationSettings:
    method = enum_from_wire(t.AllocationMethod, message.method)
    policy = enum_from_wire(t.BelowMinPolicy, message.below_min_policy)
    return t.AllocationSettings(
        method=None if method is t.AllocationMethod.UNSPECIFIED else method,
        below_min_policy=None if policy is t.BelowMinPolicy.UNSPECIFIED else policy,
        reference_equity=decimal_or_none(message.reference_equity),
        reference_account_id=message.reference_account_id,
    )


def member_to_wire(member: t.GroupMember) -> account_pb2.GroupMember:
    return account_pb2.GroupMember(
        account_id=member.account_id,
        percentage=decimal_to_wire(member.percentage),
        lot_multiplier=decimal_to_wire(member.lot_multiplier),
        fixed_lots=decimal_to_wire(member.fixed_lots),
        risk_percent=decimal_to_wire(member.risk_percent),
        max_lots=decimal_to_wire(member.max_lots),
        method=enum_to_wire(member.method),
        copy_options=(
            None if member.copy_options is None else copy_options_to_wire(member.copy_options)
        ),
        risk_limits=(
            None if member.risk_limits is None else risk_limits_to_wire(member.risk_limits)
        ),
    )


def member_from_wire(message: account_pb2.GroupMember) -> t.GroupMember:
    method = enum_from_wire(t.AllocationMethod, message.method)
    return t.GroupMember(
        account_id=message.account_id,
        percentage=decimal_or_none(message.percentage),
        lot_multiplier=decimal_or_none(message.lot_multiplier),
        fixed_lots=decimal_or_none(message.fixed_lots),
        risk_percent=decimal_or_none(message.risk_percent),
        max_lots=decimal_or_none(message.max_lots),
        method=None if method is t.AllocationMethod.UNSPECIFIED else method,
        copy_options=(
            copy_options_from_wire(message.copy_options)
            if message.HasField("copy_options")
            else None
        ),
        risk_limits=(
            risk_limits_from_wire(message.risk_limits) if message.HasField("risk_limits") else None
        ),
    )


def risk_limits_to_wire(limits: t.RiskLimits) -> account_pb2.RiskLimits:
    message = account_pb2.RiskLimits(
        max_order_volume=decimal_to_wire(limits.max_order_volume),
        max_symbol_volume=decimal_to_wire(limits.max_symbol_volume),
        max_symbol_notional=decimal_to_wire(limits.max_symbol_notional),
        min_margin_level=decimal_to_wire(limits.min_margin_level),
        allowed_symbols=limits.allowed_symbols,
        denied_symbols=limits.denied_symbols,
        trading_windows=[
            account_pb2.TradingWindow(
                start_day=enum_to_wire(w.start_day),
                start_time=w.start_time,
                end_day=enum_to_wire(w.end_day),
                end_time=w.end_time,
            )
            for w in limits.trading_windows
        ],
    )
    if limits.max_open_positions is not None:
        message.max_open_positions = limits.max_open_positions
    return message


def risk_limits_from_wire(message: account_pb2.RiskLimits) -> t.RiskLimits:
    return t.RiskLimits(
        max_order_volume=decimal_or_none(message.max_order_volume),
        max_symbol_volume=decimal_or_none(message.max_symbol_volume),
        max_symbol_notional=decimal_or_none(message.max_symbol_notional),
        max_open_positions=(
            message.max_open_positions if message.HasField("max_open_positions") else None
        ),
        min_margin_level=decimal_or_none(message.min_margin_level),
        allowed_symbols=tuple(message.allowed_symbols),
        denied_symbols=tuple(message.denied_symbols),
        trading_windows=tuple(
            t.TradingWindow(
                start_day=enum_from_wire(t.Weekday, w.start_day),
                start_time=w.start_time,
                end_day=enum_from_wire(t.Weekday, w.end_day),
                end_time=w.end_time,
            )
            for w in message.trading_windows
        ),
    )


def copy_options_to_wire(options: t.CopyOptions) -> account_pb2.CopyOptions:
    message = account_pb2.CopyOptions(
        reverse=options.reverse,
        direction=enum_to_wire(options.direction),
        skip_stops=options.skip_stops,
        skip_pending_orders=options.skip_pending_orders,
        min_volume=decimal_to_wire(options.min_volume),
        min_volume_policy=enum_to_wire(options.min_volume_policy),
        close_only=options.close_only,
    )
    if options.max_slippage_points is not None:
        message.max_slippage_points = options.max_slippage_points
    if options.max_signal_age is not None:
        message.max_signal_age.FromTimedelta(options.max_signal_age)
    return message


def copy_options_from_wire(message: account_pb2.CopyOptions) -> t.CopyOptions:
    direction = enum_from_wire(t.CopyDirection, message.direction)
    policy = enum_from_wire(t.MinVolumePolicy, message.min_volume_policy)
    return t.CopyOptions(
        reverse=message.reverse,
        direction=None if direction is t.CopyDirection.UNSPECIFIED else direction,
        skip_stops=message.skip_stops,
        skip_pending_orders=message.skip_pending_orders,
        min_volume=decimal_or_none(message.min_volume),
        min_volume_policy=None if policy is t.MinVolumePolicy.UNSPECIFIED else policy,
        max_slippage_points=(
            message.max_slippage_points if message.HasField("max_slippage_points") else None
        ),
        max_signal_age=(
            message.max_signal_age.ToTimedelta() if message.HasField("max_signal_age") else None
        ),
        close_only=message.close_only,
    )


def new_group_to_wire(group: t.NewGroup) -> account_pb2.Group:
    return account_pb2.Group(
        name=group.name,
        allocation=allocation_settings_to_wire(group.allocation),
        members=[member_to_wire(m) for m in group.members],
        magic=group.magic or 0,
    )


def group_from_wire(message: account_pb2.Group) -> t.Group:
    return t.Group(
        group_id=message.group_id,
        name=message.name,
        allocation=allocation_settings_from_wire(message.allocation),
        members=tuple(member_from_wire(m) for m in message.members),
        magic=message.magic,
        create_time=time_from_wire(message.create_time),
        update_time=time_from_wire(message.update_time),
        source=group_source_from_wire(message.source) if message.HasField("source") else None,
    )


def group_source_from_wire(message: account_pb2.GroupSource) -> t.GroupSource:
    return t.GroupSource(
        account_id=message.account_id,
        paused=message.paused,
        max_signal_age=duration_from_wire(message.max_signal_age),
        create_time=time_from_wire(message.create_time),
        update_time=time_from_wire(message.update_time),
    )


def set_group_source_request(
    group_id: str,
    *,
    account_id: str | None,
    paused: bool | None,
    max_signal_age: timedelta | None,
) -> account_service_pb2.SetGroupSourceRequest:
    """A SetGroupSource whose field mask names exactly the values given."""
    request = account_service_pb2.SetGroupSourceRequest(group_id=group_id)
    paths = []
    if account_id is not None:
        request.source.account_id = account_id
        paths.append("account_id")
    if paused is not None:
        request.source.paused = paused
        paths.append("paused")
    if max_signal_age is not None:
        request.source.max_signal_age.FromTimedelta(max_signal_age)
        paths.append("max_signal_age")
    request.update_mask.paths.extend(paths)
    return request


def signal_from_wire(message: signal_pb2.Signal) -> t.Signal:
    return t.Signal(
        sequence=message.sequence,
        group_id=message.group_id,
        source_account_id=message.source_account_id,
        event_id=message.event_id,
        kind=enum_from_wire(t.SignalKind, message.kind),
        ticket=message.ticket,
        symbol=message.symbol,
        side=enum_from_wire(t.Side, message.side),
        volume=decimal_or_zero(message.volume),
        fraction=decimal_or_none(message.fraction),
        order_type=enum_from_wire(t.OrderType, message.order_type),
        price=decimal_or_none(message.price),
        stop_limit_price=decimal_or_none(message.stop_limit_price),
        stop_loss=decimal_or_none(message.stop_loss),
        take_profit=decimal_or_none(message.take_profit),
        time_in_force=enum_from_wire(t.TimeInForce, message.time_in_force),
        expire_time=time_from_wire(message.expire_time),
        copies=tuple(message.copies),
        source_time=time_from_wire(message.source_time),
        state=enum_from_wire(t.SignalState, message.state),
        detail=message.detail,
        master_order_ids=tuple(message.master_order_ids),
        observe_time=time_from_wire(message.observe_time),
        settle_time=time_from_wire(message.settle_time),
        skip_reason=message.skip_reason,
    )


def update_group_request(
    group_id: str,
    *,
    name: str | None,
    allocation: t.AllocationSettings | None,
    members: tuple[t.GroupMember, ...] | None,
) -> account_service_pb2.UpdateGroupRequest:
    """An UpdateGroup whose field mask names exactly the values given."""
    group = account_pb2.Group(group_id=group_id)
    paths = []
    if name is not None:
        group.name = name
        paths.append("name")
    if allocation is not None:
        group.allocation.CopyFrom(allocation_settings_to_wire(allocation))
        paths.append("allocation")
    if members is not None:
        group.members.extend(member_to_wire(m) for m in members)
        paths.append("members")
    if not paths:
        raise ValueError("nothing to update: give a name, allocation settings or members")
    request = account_service_pb2.UpdateGroupRequest(group=group)
    request.update_mask.paths.extend(paths)
    return request


# Master orders


def spec_to_wire(spec: t.OrderSpec) -> order_pb2.MasterOrderSpec:
    message = order_pb2.MasterOrderSpec(
        client_order_id=spec.client_order_id,
        group_id=spec.group_id,
        symbol=spec.symbol,
        side=enum_to_wire(spec.side),
        type=enum_to_wire(spec.type),
        volume=decimal_to_wire(spec.volume),
        price=decimal_to_wire(spec.price),
        stop_limit_price=decimal_to_wire(spec.stop_limit_price),
        stop_loss=decimal_to_wire(spec.stop_loss),
        take_profit=decimal_to_wire(spec.take_profit),
        max_deviation_points=spec.max_deviation_points,
        time_in_force=enum_to_wire(spec.time_in_force),
        filling_policy=enum_to_wire(spec.filling_policy),
        comment=spec.comment,
    )
    if spec.expire_time is not None:
        message.expire_time.CopyFrom(time_to_wire(spec.expire_time))
    return message


def spec_from_wire(message: order_pb2.MasterOrderSpec) -> t.OrderSpec:
    tif = enum_from_wire(t.TimeInForce, message.time_in_force)
    filling = enum_from_wire(t.FillingPolicy, message.filling_policy)
    return t.OrderSpec(
        client_order_id=message.client_order_id,
        group_id=message.group_id,
        symbol=message.symbol,
        side=enum_from_wire(t.Side, message.side),
        type=enum_from_wire(t.OrderType, message.type),
        volume=decimal_or_zero(message.volume),
        price=decimal_or_none(message.price),
        stop_limit_price=decimal_or_none(message.stop_limit_price),
        stop_loss=decimal_or_none(message.stop_loss),
        take_profit=decimal_or_none(message.take_profit),
        max_deviation_points=message.max_deviation_points,
        time_in_force=None if tif is t.TimeInForce.UNSPECIFIED else tif,
        expire_time=time_from_wire(message.expire_time),
        filling_policy=None if filling is t.FillingPolicy.UNSPECIFIED else filling,
        comment=message.comment,
    )


def allocation_from_wire(message: order_pb2.Allocation) -> t.Allocation:
    return t.Allocation(
        method=enum_from_wire(t.AllocationMethod, message.method),
        below_min_policy=enum_from_wire(t.BelowMinPolicy, message.below_min_policy),
        requested_volume=decimal_or_zero(message.requested_volume),
        allocated_volume=decimal_or_zero(message.allocated_volume),
        unallocated_volume=decimal_or_zero(message.unallocated_volume),
        snapshot_time=time_from_wire(message.snapshot_time),
        lines=tuple(
            t.AllocationLine(
                account_id=line.account_id,
                symbol=line.symbol,
                method=enum_from_wire(t.AllocationMethod, line.method),
                basis=decimal_or_none(line.basis),
                target_volume=decimal_or_zero(line.target_volume),
                volume=decimal_or_zero(line.volume),
                child_volumes=tuple(Decimal(v) for v in line.child_volumes),
                reasons=tuple(enum_from_wire(t.AllocationReason, r) for r in line.reasons),
                snapshot=snapshot_from_wire(line.snapshot) if line.HasField("snapshot") else None,
                entry_price=decimal_or_none(line.entry_price),
                contract_size=decimal_or_none(line.contract_size),
            )
            for line in message.lines
        ),
        reference_equity=decimal_or_none(message.reference_equity),
    )


def child_from_wire(message: order_pb2.ChildOrder) -> t.ChildOrder:
    return t.ChildOrder(
        child_order_id=message.child_order_id,
        master_order_id=message.master_order_id,
        account_id=message.account_id,
        symbol=message.symbol,
        side=enum_from_wire(t.Side, message.side),
        volume=decimal_or_zero(message.volume),
        state=enum_from_wire(t.ChildOrderState, message.state),
        tag=message.tag,
        filled_volume=decimal_or_zero(message.filled_volume),
        requested_price=decimal_or_none(message.requested_price),
        fill_price=decimal_or_none(message.fill_price),
        slippage_points=decimal_or_none(message.slippage_points),
        retcode=message.retcode,
        status_text=message.status_text,
        broker_order_ticket=message.broker_order_ticket,
        broker_deal_ticket=message.broker_deal_ticket,
        position_ticket=message.position_ticket,
        attempts=message.attempts,
        sent_time=time_from_wire(message.sent_time),
        fill_time=time_from_wire(message.fill_time),
    )


def master_order_from_wire(message: order_pb2.MasterOrder) -> t.MasterOrder:
    execution = message.execution
    return t.MasterOrder(
        master_order_id=message.master_order_id,
        spec=spec_from_wire(message.spec),
        state=enum_from_wire(t.MasterOrderState, message.state),
        state_reason=message.state_reason,
        magic=message.magic,
        allocation=(
            allocation_from_wire(message.allocation) if message.HasField("allocation") else None
        ),
        children=tuple(child_from_wire(c) for c in message.children),
        child_count=message.child_count,
        filled_child_count=message.filled_child_count,
        rejected_child_count=message.rejected_child_count,
        filled_volume=decimal_or_zero(message.filled_volume),
        average_fill_price=decimal_or_none(message.average_fill_price),
        execution=(
            t.ExecutionStats(
                dispatch_skew=duration_from_wire(execution.dispatch_skew),
                submit_to_last_fill=duration_from_wire(execution.submit_to_last_fill),
                average_slippage_points=decimal_or_none(execution.average_slippage_points),
                max_slippage_points=decimal_or_none(execution.max_slippage_points),
            )
            if message.HasField("execution")
            else None
        ),
        create_time=time_from_wire(message.create_time),
        update_time=time_from_wire(message.update_time),
        closes_master_order_id=message.closes_master_order_id,
        close_fraction=decimal_or_none(message.close_fraction),
    )


def submission_from_wire(message: trading_service_pb2.SubmitMasterOrderResponse) -> t.Submission:
    return t.Submission(
        master_order=master_order_from_wire(message.master_order),
        replayed=message.replayed,
    )


def fill_from_wire(message: order_pb2.Fill) -> t.Fill:
    return t.Fill(
        sequence=message.sequence,
        fill_id=message.fill_id,
        master_order_id=message.master_order_id,
        child_order_id=message.child_order_id,
        account_id=message.account_id,
        symbol=message.symbol,
        side=enum_from_wire(t.Side, message.side),
        volume=decimal_or_zero(message.volume),
        price=decimal_or_none(message.price),
        requested_price=decimal_or_none(message.requested_price),
        slippage_points=decimal_or_none(message.slippage_points),
        deal_ticket=message.deal_ticket,
        order_ticket=message.order_ticket,
        position_ticket=message.position_ticket,
        time=time_from_wire(message.time),
    )


def close_request(
    master_order_id: str,
    *,
    fraction: Decimal | None,
    volume: Decimal | None,
    client_order_id: str,
) -> trading_service_pb2.CloseMasterPositionRequest:
    if (fraction is None) == (volume is None):
        raise ValueError("give either a fraction or a volume to close")
    request = trading_service_pb2.CloseMasterPositionRequest(
        master_order_id=master_order_id, client_order_id=client_order_id
    )
    if fraction is not None:
        request.fraction = decimal_to_wire(fraction)
    else:
        request.volume = decimal_to_wire(volume)
    return request
