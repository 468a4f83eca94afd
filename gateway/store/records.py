"""Rows <-> domain objects."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from gateway.domain.accounts import (
    Account,
    AccountSnapshot,
    AccountState,
    AllocationMethod,
    AllocationSettings,
    BelowMinPolicy,
    Group,
    GroupMember,
    MarginMode,
    Platform,
)
from gateway.domain.copy_options import (
    DEFAULT_COPY_OPTIONS,
    CopyDirection,
    CopyOptions,
    MinVolumePolicy,
)
from gateway.domain.drawdown_monitor import (
    DrawdownState,
    LossLimit,
    LossLimits,
    LossRule,
    LossUnit,
    StopOut,
    StopOutAction,
)
from gateway.domain.fills import Fill
from gateway.domain.ids import NO_CHILD_ORDER_ID, NO_MASTER_ORDER_ID
from gateway.domain.order_events import OrderEvent, event_state
from gateway.domain.orders import (
    ChildOrder,
    ChildOrderState,
    ExecutionStats,
    FillingPolicy,
    MasterOrder,
    MasterOrderSpec,
    MasterOrderState,
    OrderType,
    Side,
    TimeInForce,
)
from gateway.domain.risk_limits import RiskLimits, TradingWindow, Weekday
from gateway.domain.stop_outs import RecordedStopOut, WatchKind
from gateway.store.allocation_record import allocation_from_json, allocation_to_json

Row = Mapping[Any, Any]


def account_values(account: Account) -> dict[str, Any]:
    snapshot = account.snapshot
    return {
        "account_id": account.account_id,
        "name": account.name,
        "platform": account.platform.value,
        "login": account.login,
        "server": account.server,
        "currency": account.currency,
        "state": account.state.value,
        "margin_mode": account.margin_mode.value,
        "leverage": account.leverage,
        "initial_balance": account.initial_balance,
        "symbol_mappings": json.dumps([list(m) for m in account.symbol_mappings]),
        "balance": snapshot.balance if snapshot else None,
        "equity": snapshot.equity if snapshot else None,
        "margin": snapshot.margin if snapshot else None,
        "free_margin": snapshot.free_margin if snapshot else None,
        "snapshot_at": snapshot.time if snapshot else None,
        "created_at": account.created_at,
        "updated_at": account.updated_at,
        "deleted_at": account.deleted_at,
    }


# The accounts columns as account_from_columns reads them (stored forms: decimal text,
# integer micros).
ACCOUNT_COLUMNS = (
    "account_id", "name", "platform", "login", "server", "currency", "state", "margin_mode",
    "leverage", "initial_balance", "symbol_mappings", "balance", "equity", "margin",
    "free_margin", "snapshot_at", "created_at", "updated_at", "deleted_at",
)  # fmt: skip
_PLATFORMS = {p.value: p for p in Platform}
_ACCOUNT_STATES = {s.value: s for s in AccountState}
_MARGIN_MODES = {m.value: m for m in MarginMode}


def account_from_columns(values: tuple[Any, ...]) -> Account:
    """An Account from ACCOUNT_COLUMNS as stored (decimal text, integer micros)."""
    (
        account_id, name, platform, login, server, currency, state, margin_mode, leverage,
        initial_balance, symbol_mappings, balance, equity, margin, free_margin, snapshot_at,
        created_at, updated_at, deleted_at,
    ) = values  # fmt: skip
    snapshot = None
    if snapshot_at is not None:
        snapshot = AccountSnapshot(
            Decimal(balance), Decimal(equity), Decimal(margin), Decimal(free_margin),
            from_utc_micros(snapshot_at),
        )  # fmt: skip
    return Account(
        account_id=account_id,
        name=name,
        platform=_PLATFORMS[platform],
        login=login,
        server=server,
        currency=currency,
        state=_ACCOUNT_STATES[state],
        margin_mode=_MARGIN_MODES[margin_mode],
        leverage=leverage,
        created_at=from_utc_micros(created_at),
        updated_at=from_utc_micros(updated_at),
        initial_balance=None if initial_balance is None else Decimal(initial_balance),
        snapshot=snapshot,
        symbol_mappings=(
            () if symbol_mappings == "[]" else tuple((a, b) for a, b in json.loads(symbol_mappings))
        ),
        deleted_at=None if deleted_at is None else from_utc_micros(deleted_at),
    )


def group_values(group: Group) -> dict[str, Any]:
    settings = group.allocation
    return {
        "group_id": group.group_id,
        "name": group.name,
        "method": settings.method.value,
        "below_min_policy": settings.below_min_policy.value,
        "reference_equity": settings.reference_equity,
        "reference_account_id": settings.reference_account_id,
        "magic": group.magic,
        "created_at": group.created_at,
        "updated_at": group.updated_at,
    }


def member_values(group_id: str, position: int, member: GroupMember) -> dict[str, Any]:
    return {
        "group_id": group_id,
        "account_id": member.account_id,
        "position": position,
        "method": member.method.value if member.method else None,
        "percentage": member.percentage,
        "lot_multiplier": member.lot_multiplier,
        "fixed_lots": member.fixed_lots,
        "risk_percent": member.risk_percent,
        "max_lots": member.max_lots,
        "copy_options": copy_options_json(member.copy),
    }


def group_from_rows(row: Row, member_rows: list[Row]) -> Group:
    members = tuple(
        GroupMember(
            account_id=m["account_id"],
            percentage=m["percentage"],
            lot_multiplier=m["lot_multiplier"],
            fixed_lots=m["fixed_lots"],
            risk_percent=m["risk_percent"],
            max_lots=m["max_lots"],
            method=AllocationMethod(m["method"]) if m["method"] else None,
            copy=copy_options_of_json(m["copy_options"]),
        )
        for m in sorted(member_rows, key=lambda m: m["position"])
    )
    return Group(
        group_id=row["group_id"],
        name=row["name"],
        allocation=AllocationSettings(
            method=AllocationMethod(row["method"]),
            below_min_policy=BelowMinPolicy(row["below_min_policy"]),
            reference_equity=row["reference_equity"],
            reference_account_id=row["reference_account_id"],
        ),
        members=members,
        magic=row["magic"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def copy_options_json(options: CopyOptions) -> str | None:
    """The options that differ from the defaults, as JSON; None when none does."""
    if options.is_default:
        return None
    data: dict[str, Any] = {}
    if options.reverse:
        data["reverse"] = True
    if options.direction is not CopyDirection.BOTH:
        data["direction"] = options.direction.value
    if not options.copy_stops:
        data["copy_stops"] = False
    if not options.copy_pending:
        data["copy_pending"] = False
    if options.min_volume is not None:
        data["min_volume"] = f"{options.min_volume:f}"
    if options.min_volume_policy is not MinVolumePolicy.SKIP:
        data["min_volume_policy"] = options.min_volume_policy.value
    if options.max_slippage_points is not None:
        data["max_slippage_points"] = options.max_slippage_points
    if options.max_signal_age is not None:
        data["max_signal_age_us"] = options.max_signal_age // _MICROSECOND
    if options.close_only:
        data["close_only"] = True
    return json.dumps(data, separators=(",", ":"))


def copy_options_of_json(text: str | None) -> CopyOptions:
    if text is None:
        return DEFAULT_COPY_OPTIONS
    data = json.loads(text)
    defaults = DEFAULT_COPY_OPTIONS
    min_volume = data.get("min_volume")
    age_us = data.get("max_signal_age_us")
    return CopyOptions(
        reverse=data.get("reverse", defaults.reverse),
        direction=CopyDirection(data.get("direction", defaults.direction.value)),
        copy_stops=data.get("copy_stops", defaults.copy_stops),
        copy_pending=data.get("copy_pending", defaults.copy_pending),
        min_volume=None if min_volume is None else Decimal(min_volume),
        min_volume_policy=MinVolumePolicy(
            data.get("min_volume_policy", defaults.min_volume_policy.value)
        ),
        max_slippage_points=data.get("max_slippage_points"),
        max_signal_age=None if age_us is None else timedelta(microseconds=age_us),
        close_only=data.get("close_only", defaults.close_only),
    )


def master_values(order: MasterOrder) -> dict[str, Any]:
    spec = order.spec
    return {
        "master_order_id": order.master_order_id,
        "client_order_id": spec.client_order_id,
        "submitted_by": order.submitted_by,
        "group_id": spec.group_id,
        "symbol": spec.symbol,
        "side": spec.side.value,
        "order_type": spec.order_type.value,
        "volume": spec.volume,
        "price": spec.price,
        "stop_limit_price": spec.stop_limit_price,
        "stop_loss": spec.stop_loss,
        "take_profit": spec.take_profit,
        "max_deviation_points": spec.max_deviation_points,
        "time_in_force": spec.time_in_force.value,
        "expire_time": spec.expire_time,
        "filling_policy": spec.filling_policy.value,
        "comment": spec.comment,
        "closes_master_order_id": spec.closes_master_order_id or None,
        "close_fraction": spec.close_fraction,
        "allocation": allocation_to_json(order.allocation),
        # Written afterwards only by Store.request_cancel, never by progress updates.
        "cancel_requested_at": order.cancel_requested_at,
        **master_progress_values(order),
    }


def master_progress_values(order: MasterOrder) -> dict[str, Any]:
    """The columns that change while a master order executes."""
    stats = order.execution
    return {
        "state": order.state.value,
        "state_reason": order.state_reason,
        "magic": order.magic,
        "child_count": order.child_count,
        "filled_child_count": order.filled_child_count,
        "rejected_child_count": order.rejected_child_count,
        "filled_volume": order.filled_volume,
        "average_fill_price": order.average_fill_price,
        "dispatch_skew_us": stats.dispatch_skew_us,
        "submit_to_last_fill_us": stats.submit_to_last_fill_us,
        "average_slippage_points": stats.average_slippage_points,
        "max_slippage_points": stats.max_slippage_points,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
    }


def master_from_row(row: Row) -> MasterOrder:
    return MasterOrder(
        master_order_id=row["master_order_id"],
        spec=MasterOrderSpec(
            group_id=row["group_id"],
            symbol=row["symbol"],
            side=Side(row["side"]),
            order_type=OrderType(row["order_type"]),
            volume=row["volume"],
            client_order_id=row["client_order_id"],
            price=row["price"],
            stop_limit_price=row["stop_limit_price"],
            stop_loss=row["stop_loss"],
            take_profit=row["take_profit"],
            max_deviation_points=row["max_deviation_points"],
            time_in_force=TimeInForce(row["time_in_force"]),
            expire_time=row["expire_time"],
            filling_policy=FillingPolicy(row["filling_policy"]),
            comment=row["comment"],
            closes_master_order_id=row["closes_master_order_id"] or NO_MASTER_ORDER_ID,
            close_fraction=row["close_fraction"],
        ),
        state=MasterOrderState(row["state"]),
        magic=row["magic"],
        allocation=allocation_from_json(row["allocation"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        state_reason=row["state_reason"],
        child_count=row["child_count"],
        filled_child_count=row["filled_child_count"],
        rejected_child_count=row["rejected_child_count"],
        filled_volume=row["filled_volume"],
        average_fill_price=row["average_fill_price"],
        execution=ExecutionStats(
            dispatch_skew_us=row["dispatch_skew_us"],
            submit_to_last_fill_us=row["submit_to_last_fill_us"],
            average_slippage_points=row["average_slippage_points"],
            max_slippage_points=row["max_slippage_points"],
        ),
        submitted_by=row["submitted_by"],
        cancel_requested_at=row["cancel_requested_at"],
    )


_CHILD_FIELDS = (
    "child_order_id",
    "master_order_id",
    "account_id",
    "symbol",
    "volume",
    "tag",
    "magic",
    "filled_volume",
    "requested_price",
    "fill_price",
    "slippage_points",
    "retcode",
    "status_text",
    "broker_order_ticket",
    "broker_deal_ticket",
    "position_ticket",
    "attempts",
    "created_at",
    "updated_at",
)


def child_from_row(row: Row) -> ChildOrder:
    values = {name: row[name] for name in _CHILD_FIELDS}
    return ChildOrder(
        side=Side(row["side"]),
        state=ChildOrderState(row["state"]),
        sent_at=row["sent_at"],
        filled_at=row["filled_at"],
        closes_child_order_id=row["closes_child_order_id"] or NO_CHILD_ORDER_ID,
        stops_copied=bool(row["stops_copied"]),
        **values,
    )


_FILL_FIELDS = (
    "sequence",
    "fill_id",
    "master_order_id",
    "child_order_id",
    "account_id",
    "symbol",
    "volume",
    "price",
    "requested_price",
    "slippage_points",
    "deal_ticket",
    "order_ticket",
    "position_ticket",
    "executed_at",
)


def fill_values(fill: Fill) -> dict[str, Any]:
    values = {name: getattr(fill, name) for name in _FILL_FIELDS}
    values["side"] = fill.side.value
    return values


def fill_from_row(row: Row) -> Fill:
    return Fill(side=Side(row["side"]), **{name: row[name] for name in _FILL_FIELDS})


def event_from_row(row: Row) -> OrderEvent:
    return OrderEvent(
        sequence=row["sequence"],
        master_order_id=row["master_order_id"],
        child_order_id=row["child_order_id"],
        state=event_state(row["child_order_id"], row["state"]),
        detail=row["detail"],
        at=row["at"],
    )


# -- driver-ready rows (gateway/store/bulk.py) -------------------------------------------------
# The hot paths hand the driver tuples of already-encoded values instead of going through the
# column types row by row. The encodings are exactly those of DecimalText and UtcMicros
# (column_types.py): a value written either way reads back identically either way.

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def decimal_text(value: Decimal | None) -> str | None:
    """DecimalText's stored form: the exact text, every digit kept."""
    return None if value is None else f"{value:f}"


def utc_micros(value: datetime | None) -> int | None:
    """UtcMicros's stored form: integer microseconds since the epoch."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime: the store keeps UTC only")
    return (value - _EPOCH) // _MICROSECOND


# An account's latest money (accounts table), the key last: bulk.update_rows.
SNAPSHOT_UPDATE_COLUMNS = (
    "balance", "equity", "margin", "free_margin", "snapshot_at", "account_id",
)  # fmt: skip


def snapshot_update_row(account_id: str, snapshot: AccountSnapshot) -> tuple[Any, ...]:
    """An account's snapshot as SNAPSHOT_UPDATE_COLUMNS (DecimalText's and UtcMicros's forms)."""
    return (
        f"{snapshot.balance:f}",
        f"{snapshot.equity:f}",
        f"{snapshot.margin:f}",
        f"{snapshot.free_margin:f}",
        utc_micros(snapshot.time),
        account_id,
    )


def from_utc_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


_SIDES = {side.value: side for side in Side}

# Column order of the rows below; bulk.py builds its statements from these.
# A fill as fill_from_columns reads it ...
FILL_COLUMNS = ("side", *_FILL_FIELDS)
# ... and as fill_row writes it: its encoded message last (tables.fills.c.wire).
FILL_ROW_COLUMNS = (*FILL_COLUMNS, "wire")
EVENT_COLUMNS = ("sequence", "master_order_id", "child_order_id", "state", "detail", "at")
CHILD_COLUMNS = (
    *_CHILD_FIELDS,
    "side",
    "state",
    "sent_at",
    "filled_at",
    "closes_child_order_id",
    "stops_copied",
)
# What a progress update writes, then the key.
CHILD_UPDATE_COLUMNS = (
    "state",
    "filled_volume",
    "requested_price",
    "fill_price",
    "slippage_points",
    "retcode",
    "status_text",
    "broker_order_ticket",
    "broker_deal_ticket",
    "position_ticket",
    "attempts",
    "sent_at",
    "filled_at",
    "updated_at",
    "child_order_id",
)


def fill_row(fill: Fill, sequence: int, wire: bytes | None = None) -> tuple[Any, ...]:
    """The fill as FILL_ROW_COLUMNS, numbered `sequence`, with its encoded message (or None)."""
    return (
        fill.side.value,
        sequence,
        fill.fill_id,
        fill.master_order_id,
        fill.child_order_id,
        fill.account_id,
        fill.symbol,
        f"{fill.volume:f}",
        f"{fill.price:f}",
        decimal_text(fill.requested_price),
        decimal_text(fill.slippage_points),
        fill.deal_ticket,
        fill.order_ticket,
        fill.position_ticket,
        utc_micros(fill.executed_at),
        wire,
    )


def fill_from_columns(values: tuple[Any, ...]) -> Fill:
    """A Fill from FILL_COLUMNS as stored (text decimals, integer micros)."""
    (
        side,
        sequence,
        fill_id,
        master_order_id,
        child_order_id,
        account_id,
        symbol,
        volume,
        price,
        requested_price,
        slippage_points,
        deal_ticket,
        order_ticket,
        position_ticket,
        executed_at,
    ) = values
    return Fill(
        sequence,
        fill_id,
        master_order_id,
        child_order_id,
        account_id,
        symbol,
        _SIDES[side],
        Decimal(volume),
        Decimal(price),
        None if requested_price is None else Decimal(requested_price),
        None if slippage_points is None else Decimal(slippage_points),
        deal_ticket,
        order_ticket,
        position_ticket,
        _EPOCH + timedelta(microseconds=executed_at),
    )


def event_row(event: OrderEvent, sequence: int) -> tuple[Any, ...]:
    """The event as EVENT_COLUMNS, numbered `sequence`."""
    return (
        sequence,
        event.master_order_id,
        event.child_order_id,
        event.state.name,
        event.detail,
        utc_micros(event.at),
    )


def child_row(child: ChildOrder) -> tuple[Any, ...]:
    """The child as CHILD_COLUMNS."""
    return (
        child.child_order_id,
        child.master_order_id,
        child.account_id,
        child.symbol,
        f"{child.volume:f}",
        child.tag,
        child.magic,
        f"{child.filled_volume:f}",
        decimal_text(child.requested_price),
        decimal_text(child.fill_price),
        decimal_text(child.slippage_points),
        child.retcode,
        child.status_text,
        child.broker_order_ticket,
        child.broker_deal_ticket,
        child.position_ticket,
        child.attempts,
        utc_micros(child.created_at),
        utc_micros(child.updated_at),
        child.side.value,
        child.state.value,
        utc_micros(child.sent_at),
        utc_micros(child.filled_at),
        child.closes_child_order_id or None,
        child.stops_copied,
    )


def child_update_row(child: ChildOrder) -> tuple[Any, ...]:
    """The child as CHILD_UPDATE_COLUMNS."""
    return (
        child.state.value,
        f"{child.filled_volume:f}",
        decimal_text(child.requested_price),
        decimal_text(child.fill_price),
        decimal_text(child.slippage_points),
        child.retcode,
        child.status_text,
        child.broker_order_ticket,
        child.broker_deal_ticket,
        child.position_ticket,
        child.attempts,
        utc_micros(child.sent_at),
        utc_micros(child.filled_at),
        utc_micros(child.updated_at),
        child.child_order_id,
    )


# -- risk: settings as JSON, loss watch states, stop-outs -------------------------------------
# Decimals as their exact text, times as ISO 8601 with their offset (always UTC here).


def _decimal_text(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:f}"


def _decimal_of(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def risk_limits_json(limits: RiskLimits) -> str:
    return json.dumps(_risk_limits_data(limits), separators=(",", ":"))


def risk_limits_of_json(text: str) -> RiskLimits:
    return _risk_limits_of(json.loads(text))


def member_risk_limits_json(limits: Mapping[str, RiskLimits]) -> str:
    return json.dumps(
        {account_id: _risk_limits_data(v) for account_id, v in limits.items()},
        separators=(",", ":"),
    )


def member_risk_limits_of_json(text: str) -> dict[str, RiskLimits]:
    return {account_id: _risk_limits_of(v) for account_id, v in json.loads(text).items()}


def _risk_limits_data(limits: RiskLimits) -> dict[str, Any]:
    return {
        "max_order_volume": _decimal_text(limits.max_order_volume),
        "max_symbol_volume": _decimal_text(limits.max_symbol_volume),
        "max_symbol_notional": _decimal_text(limits.max_symbol_notional),
        "max_open_positions": limits.max_open_positions,
        "min_margin_level": _decimal_text(limits.min_margin_level),
        "allowed_symbols": sorted(limits.allowed_symbols),
        "denied_symbols": sorted(limits.denied_symbols),
        "trading_windows": [
            [int(w.start_day), w.start.isoformat(), int(w.end_day), w.end.isoformat()]
            for w in limits.trading_windows
        ],
    }


def _risk_limits_of(data: dict[str, Any]) -> RiskLimits:
    return RiskLimits(
        max_order_volume=_decimal_of(data["max_order_volume"]),
        max_symbol_volume=_decimal_of(data["max_symbol_volume"]),
        max_symbol_notional=_decimal_of(data["max_symbol_notional"]),
        max_open_positions=data["max_open_positions"],
        min_margin_level=_decimal_of(data["min_margin_level"]),
        allowed_symbols=frozenset(data["allowed_symbols"]),
        denied_symbols=frozenset(data["denied_symbols"]),
        trading_windows=tuple(
            TradingWindow(Weekday(a), time.fromisoformat(b), Weekday(c), time.fromisoformat(d))
            for a, b, c, d in data["trading_windows"]
        ),
    )


def loss_limits_json(limits: LossLimits | None) -> str:
    if limits is None:
        return "null"
    return json.dumps(
        {
            "daily_loss": _loss_limit_data(limits.daily_loss),
            "max_drawdown": _loss_limit_data(limits.max_drawdown),
            "day_zone": zone_name(limits.day_zone),
            "daily_breach_ends_next_day": limits.daily_breach_ends_next_day,
        },
        separators=(",", ":"),
    )


def loss_limits_of_json(text: str) -> LossLimits | None:
    data = json.loads(text)
    if data is None:
        return None
    return LossLimits(
        daily_loss=_loss_limit_of(data["daily_loss"]),
        max_drawdown=_loss_limit_of(data["max_drawdown"]),
        day_zone=zone_of(data["day_zone"]),
        daily_breach_ends_next_day=data["daily_breach_ends_next_day"],
    )


def zone_name(zone: tzinfo) -> str:
    """The stored name: empty for UTC, an IANA key, or "UTC+HH:MM" for a fixed offset."""
    if zone is UTC:
        return ""
    if isinstance(zone, ZoneInfo):
        return zone.key
    offset = zone.utcoffset(None)
    if offset is None:
        raise ValueError(f"time zone {zone!r} has no fixed offset and no IANA key")
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def zone_of(name: str) -> tzinfo:
    if not name:
        return UTC
    if name.startswith(("UTC+", "UTC-")):
        hours, minutes = name[4:].split(":")
        offset = timedelta(hours=int(hours), minutes=int(minutes))
        return timezone(-offset if name[3] == "-" else offset)
    return ZoneInfo(name)


def _loss_limit_data(limit: LossLimit | None) -> dict[str, Any] | None:
    if limit is None:
        return None
    return {
        "amount": _decimal_text(limit.amount),
        "unit": limit.unit.value,
        "action": limit.action.value,
    }


def _loss_limit_of(data: dict[str, Any] | None) -> LossLimit | None:
    if data is None:
        return None
    return LossLimit(Decimal(data["amount"]), LossUnit(data["unit"]), StopOutAction(data["action"]))


def drawdown_state_json(state: DrawdownState) -> str:
    return json.dumps(
        {
            "high_water_mark": _decimal_text(state.high_water_mark),
            "high_water_mark_at": state.high_water_mark_at.isoformat(),
            "trading_day": state.trading_day.isoformat(),
            "day_start_equity": _decimal_text(state.day_start_equity),
            "equity": _decimal_text(state.equity),
            "at": state.at.isoformat(),
            "breaches": [_breach_data(b) for b in state.breaches],
        },
        separators=(",", ":"),
    )


def drawdown_state_of_json(text: str) -> DrawdownState:
    data = json.loads(text)
    return DrawdownState(
        high_water_mark=Decimal(data["high_water_mark"]),
        high_water_mark_at=datetime.fromisoformat(data["high_water_mark_at"]),
        trading_day=date.fromisoformat(data["trading_day"]),
        day_start_equity=Decimal(data["day_start_equity"]),
        equity=Decimal(data["equity"]),
        at=datetime.fromisoformat(data["at"]),
        breaches=tuple(_breach_of(b) for b in data["breaches"]),
    )


def _breach_data(breach: StopOut) -> dict[str, Any]:
    return {
        "rule": breach.rule.value,
        "at": breach.at.isoformat(),
        "equity": _decimal_text(breach.equity),
        "high_water_mark": _decimal_text(breach.high_water_mark),
        "day_start_equity": _decimal_text(breach.day_start_equity),
        "loss": _decimal_text(breach.loss),
        "loss_percent": _decimal_text(breach.loss_percent),
        "limit": _loss_limit_data(breach.limit),
    }


def _breach_of(data: dict[str, Any]) -> StopOut:
    limit = _loss_limit_of(data["limit"])
    assert limit is not None
    return StopOut(
        rule=LossRule(data["rule"]),
        action=limit.action,
        at=datetime.fromisoformat(data["at"]),
        equity=Decimal(data["equity"]),
        high_water_mark=Decimal(data["high_water_mark"]),
        day_start_equity=Decimal(data["day_start_equity"]),
        loss=Decimal(data["loss"]),
        loss_percent=_decimal_of(data["loss_percent"]),
        limit=limit,
    )


def stop_out_values(stop_out: RecordedStopOut) -> dict[str, Any]:
    breach = stop_out.breach
    return {
        "stop_out_id": stop_out.stop_out_id,
        "kind": stop_out.kind.value,
        "subject_id": stop_out.subject_id,
        "rule": breach.rule.value,
        "action": breach.action.value,
        "limit_amount": breach.limit.amount,
        "limit_unit": breach.limit.unit.value,
        "at": breach.at,
        "equity": breach.equity,
        "high_water_mark": breach.high_water_mark,
        "day_start_equity": breach.day_start_equity,
        "loss": breach.loss,
        "loss_percent": breach.loss_percent,
        "recorded_at": stop_out.recorded_at,
        "ended_at": stop_out.ended_at,
        "ended_by": stop_out.ended_by,
        "closing_master_order_ids": json.dumps(list(stop_out.closing_master_order_ids)),
    }


def stop_out_from_row(row: Row) -> RecordedStopOut:
    action = StopOutAction(row["action"])
    return RecordedStopOut(
        stop_out_id=row["stop_out_id"],
        kind=WatchKind(row["kind"]),
        subject_id=row["subject_id"],
        breach=StopOut(
            rule=LossRule(row["rule"]),
            action=action,
            at=row["at"],
            equity=row["equity"],
            high_water_mark=row["high_water_mark"],
            day_start_equity=row["day_start_equity"],
            loss=row["loss"],
            loss_percent=row["loss_percent"],
            limit=LossLimit(row["limit_amount"], LossUnit(row["limit_unit"]), action),
        ),
        recorded_at=row["recorded_at"],
        ended_at=row["ended_at"],
        ended_by=row["ended_by"],
        closing_master_order_ids=tuple(json.loads(row["closing_master_order_ids"])),
    )
