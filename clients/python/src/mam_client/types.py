"""The values the client sends and receives: frozen dataclasses, exact decimals, enums.

Volumes, prices and money are `Decimal` (the API carries them as exact decimal strings; a float
is refused). A decimal the gateway left empty is `None`, except volumes and counts, which are 0.
Enum members are named after the API's values without their prefix (`Side.BUY` is `SIDE_BUY`);
a value this client does not know yet reads as `UNSPECIFIED`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Generic, TypeVar

T = TypeVar("T")


class Platform(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    MT4 = "MT4"
    MT5 = "MT5"
    SIMULATED = "SIMULATED"


class AccountState(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"


class MarginMode(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    HEDGING = "HEDGING"
    NETTING = "NETTING"


class AllocationMethod(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    EQUITY = "EQUITY"
    BALANCE = "BALANCE"
    FREE_MARGIN = "FREE_MARGIN"
    EQUAL = "EQUAL"
    PERCENTAGE = "PERCENTAGE"
    LOT_MULTIPLIER = "LOT_MULTIPLIER"
    FIXED_LOTS = "FIXED_LOTS"
    EQUITY_RATIO = "EQUITY_RATIO"
    PERCENT_RISK = "PERCENT_RISK"


class BelowMinPolicy(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    SKIP = "SKIP"
    ROUND_UP_TO_MIN = "ROUND_UP_TO_MIN"


class Side(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    BUY = "BUY"
    SELL = "SELL"


class OrderType(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP = "STOP"
    STOP_LIMIT = "STOP_LIMIT"


class TimeInForce(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    GTC = "GTC"
    DAY = "DAY"
    SPECIFIED = "SPECIFIED"


class FillingPolicy(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    FOK = "FOK"
    IOC = "IOC"
    RETURN = "RETURN"


class MasterOrderState(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    ACCEPTED = "ACCEPTED"
    ALLOCATED = "ALLOCATED"
    DISPATCHING = "DISPATCHING"
    FILLED = "FILLED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"

    @property
    def is_final(self) -> bool:
        """No child order of a master order in this state will change any more."""
        return self in _FINAL_MASTER_STATES


_FINAL_MASTER_STATES = frozenset(
    {
        MasterOrderState.FILLED,
        MasterOrderState.PARTIALLY_FILLED,
        MasterOrderState.REJECTED,
        MasterOrderState.CANCELLED,
        MasterOrderState.FAILED,
    }
)


class ChildOrderState(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    PENDING = "PENDING"
    SENT = "SENT"
    FILLED = "FILLED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    UNKNOWN = "UNKNOWN"


class AllocationReason(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    ROUNDED_DOWN = "ROUNDED_DOWN"
    ROUNDED_UP = "ROUNDED_UP"
    SKIPPED_BELOW_MIN = "SKIPPED_BELOW_MIN"
    RAISED_TO_MIN = "RAISED_TO_MIN"
    CLIPPED_MAX_LOT = "CLIPPED_MAX_LOT"
    SPLIT_MAX_VOLUME = "SPLIT_MAX_VOLUME"
    INACTIVE = "INACTIVE"
    NO_STOP_LOSS = "NO_STOP_LOSS"
    NO_BASIS = "NO_BASIS"
    TERMINAL_UNAVAILABLE = "TERMINAL_UNAVAILABLE"
    SYMBOL_UNAVAILABLE = "SYMBOL_UNAVAILABLE"
    RISK_CLIPPED = "RISK_CLIPPED"
    RISK_SKIPPED = "RISK_SKIPPED"
    # A member's copy options: the account trades the other side, or without SL/TP ...
    REVERSED = "REVERSED"
    STOPS_NOT_COPIED = "STOPS_NOT_COPIED"
    # ... its volume was raised to the member's own minimum ...
    RAISED_TO_COPY_MIN = "RAISED_TO_COPY_MIN"
    # ... or it copies nothing of the order.
    SKIPPED_BELOW_COPY_MIN = "SKIPPED_BELOW_COPY_MIN"
    CLOSE_ONLY = "CLOSE_ONLY"
    PENDING_NOT_COPIED = "PENDING_NOT_COPIED"
    DIRECTION_FILTERED = "DIRECTION_FILTERED"
    NOT_REVERSIBLE = "NOT_REVERSIBLE"
    SIGNAL_TOO_OLD = "SIGNAL_TOO_OLD"
    SLIPPAGE_TOO_HIGH = "SLIPPAGE_TOO_HIGH"
    SLIPPAGE_UNKNOWN = "SLIPPAGE_UNKNOWN"


class CopyDirection(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    BOTH = "BOTH"
    BUY_ONLY = "BUY_ONLY"
    SELL_ONLY = "SELL_ONLY"


class Weekday(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    MONDAY = "MONDAY"
    TUESDAY = "TUESDAY"
    WEDNESDAY = "WEDNESDAY"
    THURSDAY = "THURSDAY"
    FRIDAY = "FRIDAY"
    SATURDAY = "SATURDAY"
    SUNDAY = "SUNDAY"


class MinVolumePolicy(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    SKIP = "SKIP"
    RAISE = "RAISE"


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a List call; `next_page_token` is empty on the last page."""

    items: tuple[T, ...]
    next_page_token: str


# Accounts and groups


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """An account's money as its terminal last reported it."""

    balance: Decimal | None
    equity: Decimal | None
    margin: Decimal | None
    free_margin: Decimal | None
    margin_level: Decimal | None
    time: datetime | None


@dataclass(frozen=True, slots=True)
class SymbolMapping:
    """A gateway symbol traded under another name at an account's broker."""

    symbol: str
    broker_symbol: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NewAccount:
    """An account to register. Unset values take the gateway's defaults."""

    name: str
    platform: Platform
    login: int = 0
    server: str = ""
    currency: str = ""
    state: AccountState | None = None
    margin_mode: MarginMode | None = None
    leverage: int | None = None
    # PLATFORM_SIMULATED: the opening deposit.
    initial_balance: Decimal | None = None
    symbol_mappings: tuple[SymbolMapping, ...] = ()


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    name: str
    platform: Platform
    login: int
    server: str
    currency: str
    state: AccountState
    margin_mode: MarginMode
    leverage: int
    initial_balance: Decimal | None
    snapshot: AccountSnapshot | None
    symbol_mappings: tuple[SymbolMapping, ...]
    create_time: datetime | None
    update_time: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AllocationSettings:
    """How a group shares a master order. Unset values take the gateway's defaults."""

    method: AllocationMethod | None = None
    below_min_policy: BelowMinPolicy | None = None
    # EQUITY_RATIO: a fixed reference equity, or an account whose equity is the reference.
    reference_equity: Decimal | None = None
    reference_account_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupMember:
    """One account of a group, with the settings its allocation method reads."""

    account_id: str
    percentage: Decimal | None = None
    lot_multiplier: Decimal | None = None
    fixed_lots: Decimal | None = None
    risk_percent: Decimal | None = None
    max_lots: Decimal | None = None
    # Overrides the group's method for this member.
    method: AllocationMethod | None = None
    # How the account copies the group's opening orders; None: each one as it is.
    copy_options: CopyOptions | None = None
    # The member's own pre-trade limits, checked instead of the group's; None: the group's.
    risk_limits: RiskLimits | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyOptions:
    """How a member's account copies the group's opening orders (the API's CopyOptions).
    Unset values take the gateway's defaults."""

    # Trade the other side (SL and TP swapped, a LIMIT sent as a STOP and the other way round).
    reverse: bool = False
    # Which sides the account opens, after any reversal; None: both.
    direction: CopyDirection | None = None
    # Send the account's children without the order's stop loss and take profit.
    skip_stops: bool = False
    # Copy no pending orders.
    skip_pending_orders: bool = False
    # The smallest volume the account trades, in lots; what a smaller one becomes is the policy's
    # (None: SKIP).
    min_volume: Decimal | None = None
    min_volume_policy: MinVolumePolicy | None = None
    # Mirrored orders: the largest distance in points from the source's price, and the largest
    # age of the source's change; None: no limit.
    max_slippage_points: int | None = None
    max_signal_age: timedelta | None = None
    # Open nothing; what the account holds is still closed with the group.
    close_only: bool = False


@dataclass(frozen=True, slots=True)
class TradingWindow:
    """A weekly interval in UTC, [start, end); one that ends earlier in the week than it starts
    wraps past Sunday midnight. Times of day are "HH:MM" or "HH:MM:SS"."""

    start_day: Weekday
    start_time: str
    end_day: Weekday
    end_time: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskLimits:
    """Limits on what one account may trade, checked before each child order is sent
    (docs/risk.md); None or empty: no such limit. Volumes in lots, money in the account
    currency, the margin level in percent."""

    max_order_volume: Decimal | None = None
    max_symbol_volume: Decimal | None = None
    max_symbol_notional: Decimal | None = None
    max_open_positions: int | None = None
    min_margin_level: Decimal | None = None
    # Empty: every symbol not denied.
    allowed_symbols: tuple[str, ...] = ()
    denied_symbols: tuple[str, ...] = ()
    # Empty: any time.
    trading_windows: tuple[TradingWindow, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class NewGroup:
    name: str
    members: tuple[GroupMember, ...] = ()
    allocation: AllocationSettings = field(default_factory=AllocationSettings)
    # Assigned by the gateway when None.
    magic: int | None = None


@dataclass(frozen=True, slots=True)
class GroupSource:
    """The account a group mirrors: its trades are copied onto the group as signals."""

    account_id: str
    paused: bool
    # Positions and pending orders seen later than this after they were opened are not copied.
    max_signal_age: timedelta | None
    create_time: datetime | None
    update_time: datetime | None


@dataclass(frozen=True, slots=True)
class Group:
    group_id: str
    name: str
    allocation: AllocationSettings
    members: tuple[GroupMember, ...]
    magic: int
    create_time: datetime | None
    update_time: datetime | None
    # The account the group mirrors; None: none.
    source: GroupSource | None = None


# Master orders


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderSpec:
    """A master order for a whole group.

    `client_order_id` makes a submission idempotent: a retry with the same id and payload returns
    the original order. When it is empty, `submit_master_order` chooses a fresh one.
    """

    group_id: str
    symbol: str
    side: Side
    volume: Decimal
    type: OrderType = OrderType.MARKET
    client_order_id: str = ""
    price: Decimal | None = None
    stop_limit_price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    max_deviation_points: int = 0
    time_in_force: TimeInForce | None = None
    expire_time: datetime | None = None
    filling_policy: FillingPolicy | None = None
    comment: str = ""


@dataclass(frozen=True, slots=True)
class AllocationLine:
    """One account's share of a master order, and why it is what it is."""

    account_id: str
    symbol: str
    method: AllocationMethod
    basis: Decimal | None
    target_volume: Decimal
    volume: Decimal
    child_volumes: tuple[Decimal, ...]
    reasons: tuple[AllocationReason, ...]
    snapshot: AccountSnapshot | None
    entry_price: Decimal | None
    contract_size: Decimal | None


@dataclass(frozen=True, slots=True)
class Allocation:
    method: AllocationMethod
    below_min_policy: BelowMinPolicy
    requested_volume: Decimal
    allocated_volume: Decimal
    unallocated_volume: Decimal
    snapshot_time: datetime | None
    lines: tuple[AllocationLine, ...]
    reference_equity: Decimal | None


@dataclass(frozen=True, slots=True)
class ChildOrder:
    child_order_id: str
    master_order_id: str
    account_id: str
    symbol: str
    side: Side
    volume: Decimal
    state: ChildOrderState
    tag: str
    filled_volume: Decimal
    requested_price: Decimal | None
    fill_price: Decimal | None
    # Fill price minus requested price in points; positive is worse.
    slippage_points: Decimal | None
    retcode: int
    status_text: str
    broker_order_ticket: int
    broker_deal_ticket: int
    position_ticket: int
    attempts: int
    sent_time: datetime | None
    fill_time: datetime | None


@dataclass(frozen=True, slots=True)
class ExecutionStats:
    dispatch_skew: timedelta | None
    submit_to_last_fill: timedelta | None
    average_slippage_points: Decimal | None
    max_slippage_points: Decimal | None


@dataclass(frozen=True, slots=True)
class MasterOrder:
    master_order_id: str
    spec: OrderSpec
    state: MasterOrderState
    state_reason: str
    magic: int
    allocation: Allocation | None
    # Filled by get_master_order; empty in lists.
    children: tuple[ChildOrder, ...]
    child_count: int
    filled_child_count: int
    rejected_child_count: int
    filled_volume: Decimal
    average_fill_price: Decimal | None
    execution: ExecutionStats | None
    create_time: datetime | None
    update_time: datetime | None
    # A close (close_master_position): the master order whose position it closes, and the
    # fraction asked (None when a volume was asked: spec.volume).
    closes_master_order_id: str = ""
    close_fraction: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Submission:
    """A submitted master order. `replayed` is true when the gateway already had this
    client_order_id with the same payload: nothing new was traded."""

    master_order: MasterOrder
    replayed: bool


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of a child order; `sequence` is gap-free over all fills of the gateway."""

    sequence: int
    fill_id: str
    master_order_id: str
    child_order_id: str
    account_id: str
    symbol: str
    side: Side
    volume: Decimal
    price: Decimal | None
    requested_price: Decimal | None
    slippage_points: Decimal | None
    deal_ticket: int
    order_ticket: int
    position_ticket: int
    time: datetime | None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Every fill the subscription matches up to `sequence` has been delivered."""

    sequence: int


FillEvent = Fill | Heartbeat


# Mirroring


class SignalKind(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    POSITION_OPENED = "POSITION_OPENED"
    POSITION_INCREASED = "POSITION_INCREASED"
    POSITION_REDUCED = "POSITION_REDUCED"
    POSITION_CLOSED = "POSITION_CLOSED"
    STOPS_CHANGED = "STOPS_CHANGED"
    ORDER_PLACED = "ORDER_PLACED"
    ORDER_MODIFIED = "ORDER_MODIFIED"
    ORDER_TRIGGERED = "ORDER_TRIGGERED"
    ORDER_REMOVED = "ORDER_REMOVED"


class SignalState(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    WAITING = "WAITING"
    COPIED = "COPIED"
    SKIPPED = "SKIPPED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class Signal:
    """A change at a group's source account and what was done with it on the group; sent again,
    with a new sequence, each time its state changes."""

    sequence: int
    group_id: str
    source_account_id: str
    event_id: str
    kind: SignalKind
    ticket: int
    symbol: str
    side: Side
    volume: Decimal
    fraction: Decimal | None
    order_type: OrderType
    price: Decimal | None
    stop_limit_price: Decimal | None
    stop_loss: Decimal | None
    take_profit: Decimal | None
    time_in_force: TimeInForce
    expire_time: datetime | None
    copies: tuple[str, ...]
    source_time: datetime | None
    state: SignalState
    detail: str
    master_order_ids: tuple[str, ...]
    observe_time: datetime | None
    settle_time: datetime | None
    skip_reason: str
