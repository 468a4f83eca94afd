"""Domain objects -> mam.v1 messages. Decimals go out as plain strings, times as Timestamps."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2

from gateway._proto.mam.v1 import account_pb2, common_pb2, order_pb2
from gateway.domain.accounts import Account, AccountSnapshot, Group
from gateway.domain.allocation import Allocation
from gateway.domain.decimals import format_decimal
from gateway.domain.fills import Fill
from gateway.domain.orders import ChildOrder, MasterOrder


def enum_to_proto(enum_type: Any, prefix: str, value: enum.Enum | None) -> Any:
    """Side.BUY -> SIDE_BUY; None -> the _UNSPECIFIED value."""
    if value is None:
        return 0
    return enum_type.Value(f"{prefix}_{value.name}")


def dec(value: Decimal | None) -> str:
    return "" if value is None else format_decimal(value)


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def duration_from_micros(value: int | None) -> duration_pb2.Duration | None:
    if value is None:
        return None
    duration = duration_pb2.Duration()
    duration.FromMicroseconds(value)
    return duration


def _method(value: enum.Enum | None) -> Any:
    return enum_to_proto(account_pb2.AllocationMethod, "ALLOCATION_METHOD", value)


def snapshot_to_proto(snapshot: AccountSnapshot) -> account_pb2.AccountSnapshot:
    return account_pb2.AccountSnapshot(
        balance=dec(snapshot.balance),
        equity=dec(snapshot.equity),
        margin=dec(snapshot.margin),
        free_margin=dec(snapshot.free_margin),
        margin_level=dec(snapshot.margin_level),
        time=timestamp(snapshot.time),
    )


def account_to_proto(account: Account) -> account_pb2.Account:
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
    return message


def group_to_proto(group: Group) -> account_pb2.Group:
    settings = group.allocation
    return account_pb2.Group(
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
            )
            for m in group.members
        ],
        magic=group.magic,
        create_time=timestamp(group.created_at),
        update_time=timestamp(group.updated_at),
    )


def allocation_to_proto(allocation: Allocation) -> order_pb2.Allocation:
    return order_pb2.Allocation(
        method=_method(allocation.method),
        below_min_policy=enum_to_proto(
            account_pb2.BelowMinPolicy, "BELOW_MIN_POLICY", allocation.below_min_policy
        ),
        requested_volume=dec(allocation.requested_volume),
        allocated_volume=dec(allocation.allocated_volume),
        unallocated_volume=dec(allocation.unallocated_volume),
        snapshot_time=timestamp(allocation.snapshot_time),
        lines=[
            order_pb2.AllocationLine(
                account_id=line.account_id,
                symbol=line.symbol,
                basis=dec(line.basis),
                target_volume=dec(line.target_volume),
                volume=dec(line.volume),
                child_volumes=[dec(v) for v in line.child_volumes],
                reasons=[
                    enum_to_proto(order_pb2.AllocationReason, "ALLOCATION_REASON", r)
                    for r in line.reasons
                ],
                method=_method(line.method),
                snapshot=snapshot_to_proto(line.snapshot) if line.snapshot else None,
                entry_price=dec(line.entry_price),
                contract_size=dec(line.contract_size),
            )
            for line in allocation.lines
        ],
        reference_equity=dec(allocation.reference_equity),
    )


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
    master: MasterOrder, children: list[ChildOrder] | None = None
) -> order_pb2.MasterOrder:
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
        allocation=allocation_to_proto(master.allocation),
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
