"""Master and child orders and the state machines they move through."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from gateway.domain.allocation import Allocation
from gateway.domain.field_copies import copier
from gateway.domain.ids import (
    NO_CHILD_ORDER_ID,
    NO_MASTER_ORDER_ID,
    AccountId,
    ChildOrderId,
    GroupId,
    MasterOrderId,
)

# Side lives in gateway/domain/side.py (below allocation, which orders import); re-exported.
from gateway.domain.side import Side as Side  # noqa: PLC0414


class OrderType(enum.Enum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP = "STOP"
    STOP_LIMIT = "STOP_LIMIT"


class TimeInForce(enum.Enum):
    GTC = "GTC"
    DAY = "DAY"
    SPECIFIED = "SPECIFIED"


class FillingPolicy(enum.Enum):
    FOK = "FOK"
    IOC = "IOC"
    RETURN = "RETURN"


class MasterOrderState(enum.Enum):
    ACCEPTED = "ACCEPTED"
    ALLOCATED = "ALLOCATED"
    DISPATCHING = "DISPATCHING"
    FILLED = "FILLED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"
    # A pending order: every child rests at its broker (or ended), waiting for its price.
    WORKING = "WORKING"

    @property
    def is_final(self) -> bool:
        return self in _FINAL_MASTER_STATES


class ChildOrderState(enum.Enum):
    PENDING = "PENDING"
    SENT = "SENT"
    FILLED = "FILLED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    UNKNOWN = "UNKNOWN"
    # A pending order resting at the broker, waiting for its price (it may fill in parts).
    PLACED = "PLACED"

    @property
    def is_final(self) -> bool:
        return self in _FINAL_CHILD_STATES


_FINAL_MASTER_STATES = frozenset(
    {
        MasterOrderState.FILLED,
        MasterOrderState.PARTIALLY_FILLED,
        MasterOrderState.REJECTED,
        MasterOrderState.CANCELLED,
        MasterOrderState.FAILED,
    }
)
_FINAL_CHILD_STATES = frozenset(
    {
        ChildOrderState.FILLED,
        ChildOrderState.PARTIALLY_FILLED,
        ChildOrderState.REJECTED,
        ChildOrderState.CANCELLED,
    }
)

MASTER_TRANSITIONS: dict[MasterOrderState, frozenset[MasterOrderState]] = {
    MasterOrderState.ACCEPTED: frozenset(
        {MasterOrderState.ALLOCATED, MasterOrderState.REJECTED, MasterOrderState.FAILED}
    ),
    MasterOrderState.ALLOCATED: frozenset(
        {MasterOrderState.DISPATCHING, MasterOrderState.CANCELLED, MasterOrderState.FAILED}
    ),
    MasterOrderState.DISPATCHING: frozenset(
        {
            MasterOrderState.WORKING,
            MasterOrderState.FILLED,
            MasterOrderState.PARTIALLY_FILLED,
            MasterOrderState.REJECTED,
            MasterOrderState.CANCELLED,
            MasterOrderState.FAILED,
        }
    ),
    MasterOrderState.WORKING: frozenset(
        {
            MasterOrderState.FILLED,
            MasterOrderState.PARTIALLY_FILLED,
            MasterOrderState.REJECTED,
            MasterOrderState.CANCELLED,
            MasterOrderState.FAILED,
        }
    ),
}

CHILD_TRANSITIONS: dict[ChildOrderState, frozenset[ChildOrderState]] = {
    ChildOrderState.PENDING: frozenset(
        {ChildOrderState.SENT, ChildOrderState.REJECTED, ChildOrderState.CANCELLED}
    ),
    ChildOrderState.SENT: frozenset(
        {
            ChildOrderState.PLACED,
            ChildOrderState.FILLED,
            ChildOrderState.PARTIALLY_FILLED,
            ChildOrderState.REJECTED,
            ChildOrderState.CANCELLED,
            ChildOrderState.UNKNOWN,
            # A transient refusal (requote, busy) leaves the child to be sent again.
            ChildOrderState.PENDING,
        }
    ),
    # Reconciliation by tag settles an UNKNOWN child: found (filled) or provably absent (then
    # sent again, rejected, or cancelled when its master order's cancellation was requested).
    ChildOrderState.UNKNOWN: frozenset(
        {
            ChildOrderState.PLACED,
            ChildOrderState.FILLED,
            ChildOrderState.PARTIALLY_FILLED,
            ChildOrderState.PENDING,
            ChildOrderState.REJECTED,
            ChildOrderState.CANCELLED,
        }
    ),
    # A resting pending order ends filled (in full or in part), removed (cancelled, expired,
    # or cancelled by the broker), or UNKNOWN when its removal's outcome is unknown.
    ChildOrderState.PLACED: frozenset(
        {
            ChildOrderState.FILLED,
            ChildOrderState.PARTIALLY_FILLED,
            ChildOrderState.CANCELLED,
            ChildOrderState.UNKNOWN,
        }
    ),
}


class IllegalTransition(Exception):
    """A state change the state machine does not allow: a bug, never bad input."""


@dataclass(frozen=True, slots=True)
class MasterOrderSpec:
    """The manager's validated instruction."""

    group_id: GroupId
    symbol: str
    side: Side
    order_type: OrderType
    volume: Decimal
    client_order_id: str = ""
    price: Decimal | None = None
    stop_limit_price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    max_deviation_points: int = 0
    time_in_force: TimeInForce = TimeInForce.GTC
    expire_time: datetime | None = None
    filling_policy: FillingPolicy = FillingPolicy.FOK
    comment: str = ""
    # Set on a closing order (CloseMasterPosition): the master order whose position it closes,
    # and the fraction of what was still open that it closes.
    closes_master_order_id: MasterOrderId = NO_MASTER_ORDER_ID
    close_fraction: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ChildOrder:
    child_order_id: ChildOrderId
    master_order_id: MasterOrderId
    account_id: AccountId
    # The broker symbol the account trades.
    symbol: str
    side: Side
    volume: Decimal
    state: ChildOrderState
    tag: str
    magic: int
    created_at: datetime
    updated_at: datetime
    filled_volume: Decimal = Decimal(0)
    requested_price: Decimal | None = None
    fill_price: Decimal | None = None
    slippage_points: Decimal | None = None
    retcode: int = 0
    status_text: str = ""
    broker_order_ticket: int = 0
    broker_deal_ticket: int = 0
    position_ticket: int = 0
    attempts: int = 0
    sent_at: datetime | None = None
    filled_at: datetime | None = None
    # Set on a closing child: the opening child whose position it closes (its position_ticket,
    # set from the start, names the position on a hedging account).
    closes_child_order_id: ChildOrderId = NO_CHILD_ORDER_ID
    # An opening child carries its master order's SL/TP (swapped when its side is the
    # master's opposite: a reversed copy), unless its member does not copy stops.
    stops_copied: bool = True

    def moved_to(self, state: ChildOrderState, at: datetime, **changes: object) -> ChildOrder:
        if state not in CHILD_TRANSITIONS.get(self.state, frozenset()):
            raise IllegalTransition(
                f"child {self.child_order_id}: {self.state.name} -> {state.name}"
            )
        return _copy_child(self, {**changes, "state": state, "updated_at": at})


_copy_child = copier(ChildOrder)


@dataclass(frozen=True, slots=True)
class ExecutionStats:
    dispatch_skew_us: int | None = None
    submit_to_last_fill_us: int | None = None
    average_slippage_points: Decimal | None = None
    max_slippage_points: Decimal | None = None


@dataclass(frozen=True, slots=True)
class MasterOrder:
    master_order_id: MasterOrderId
    spec: MasterOrderSpec
    state: MasterOrderState
    magic: int
    allocation: Allocation
    created_at: datetime
    updated_at: datetime
    state_reason: str = ""
    child_count: int = 0
    filled_child_count: int = 0
    rejected_child_count: int = 0
    filled_volume: Decimal = Decimal(0)
    average_fill_price: Decimal | None = None
    execution: ExecutionStats = ExecutionStats()
    # The caller's principal; client_order_id is unique per caller.
    submitted_by: str = ""
    # Set once cancellation is requested: no child is sent after it (stored, so a restart
    # honours it too); children already at the broker go on to their outcome.
    cancel_requested_at: datetime | None = None

    def moved_to(self, state: MasterOrderState, at: datetime, **changes: object) -> MasterOrder:
        if state not in MASTER_TRANSITIONS.get(self.state, frozenset()):
            raise IllegalTransition(
                f"master order {self.master_order_id}: {self.state.name} -> {state.name}"
            )
        return replace(self, state=state, updated_at=at, **changes)  # type: ignore[arg-type]


def final_master_state(children: list[ChildOrder]) -> MasterOrderState:
    """The state a master order ends in once every child has ended."""
    filled = sum(1 for c in children if c.state is ChildOrderState.FILLED)
    some_fill = any(c.filled_volume > 0 for c in children)
    if children and filled == len(children):
        return MasterOrderState.FILLED
    if some_fill:
        return MasterOrderState.PARTIALLY_FILLED
    if any(c.state is ChildOrderState.CANCELLED for c in children):
        return MasterOrderState.CANCELLED
    return MasterOrderState.REJECTED
