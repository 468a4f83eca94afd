"""Order events: every state a master or child order enters, in commit order (the audit trail)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.domain.ids import NO_CHILD_ORDER_ID, ChildOrderId, MasterOrderId
from gateway.domain.orders import ChildOrder, ChildOrderState, MasterOrder, MasterOrderState

# The state an event records: its master order's, or (when it names a child) its child's.
EventState = MasterOrderState | ChildOrderState


@dataclass(frozen=True, slots=True)
class OrderEvent:
    # Global, gap-free, increasing; assigned when the event is committed (0 before).
    sequence: int
    master_order_id: MasterOrderId
    # Empty (NO_CHILD_ORDER_ID) when the event is about the master order itself.
    child_order_id: ChildOrderId
    # The MasterOrderState (no child) or ChildOrderState entered; stored as its name.
    state: EventState
    # Why: the broker's retcode and text for a child, the state reason for a master order.
    detail: str
    at: datetime


def event_state(child_order_id: str, name: str) -> EventState:
    """The state stored as `name` for an event of `child_order_id` (empty: the master order)."""
    return ChildOrderState[name] if child_order_id else MasterOrderState[name]


def master_event(master: MasterOrder) -> OrderEvent:
    detail = master.state_reason or (
        f"{master.filled_child_count} of {master.child_count} children filled"
        if master.state.is_final
        else f"{master.child_count} children"
    )
    return OrderEvent(
        0, master.master_order_id, NO_CHILD_ORDER_ID, master.state, detail, master.updated_at
    )


def child_event(child: ChildOrder) -> OrderEvent:
    detail = f"retcode {child.retcode}: {child.status_text}" if child.retcode else child.status_text
    return OrderEvent(
        0, child.master_order_id, child.child_order_id, child.state, detail, child.updated_at
    )
