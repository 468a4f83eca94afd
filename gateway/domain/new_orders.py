"""A new master order and its children, as they are stored before the first request leaves.

Submissions and closes build them alike: each allocated child volume becomes one child order,
stored SENT (past PENDING, with its SENT event) with its tag, so that after a crash each is
searched for by its tag before anything is resent; its sent time is the moment its request
leaves (the dispatcher's), none until then. The master order is stored DISPATCHING, with its
ALLOCATED state as the event before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from gateway.domain.allocation import Allocation, AllocationLine
from gateway.domain.closing import ClosingTarget
from gateway.domain.copying import child_side, stops_copied
from gateway.domain.ids import (
    NO_CHILD_ORDER_ID,
    AccountId,
    ChildOrderId,
    MasterOrderId,
    new_id,
    tag_for_child,
)
from gateway.domain.orders import (
    ChildOrder,
    ChildOrderState,
    MasterOrder,
    MasterOrderSpec,
    MasterOrderState,
    Side,
)


@dataclass(frozen=True, slots=True)
class NewMasterOrder:
    """A master order to store and start, with what is stored with it."""

    # DISPATCHING: the state it is stored and started in.
    master: MasterOrder
    # ALLOCATED: stored as its state before (its ALLOCATED event).
    allocated: MasterOrder
    # Every child SENT, none sent yet.
    children: list[ChildOrder]


def sent_children(
    lines: Iterable[AllocationLine],
    *,
    master_order_id: MasterOrderId,
    side: Side,
    magic: int,
    at: datetime,
    closing: Mapping[AccountId, ClosingTarget] | None = None,
) -> list[ChildOrder]:
    """One SENT child order per child volume of each allocation line, in line order.

    An opening child trades `side`, or the other side on a line its member's copy options
    reversed, with the master order's stops unless they said not to copy them.
    `closing`: the children close positions (CloseMasterPosition): what each account's
    children close (every account with a child volume has its target), on the side that
    closes it."""
    if closing is not None:
        return [
            _child(line, volume, master_order_id, target.side, magic, at, target=target)
            for line in lines
            if line.child_volumes
            # A closing child's target must be known: a missing one is a bug.
            for target in (closing[line.account_id],)
            for volume in line.child_volumes
        ]
    return [
        _child(
            line,
            volume,
            master_order_id,
            child_side(line, side),
            magic,
            at,
            stops_copied=stops_copied(line),
        )
        for line in lines
        for volume in line.child_volumes
    ]


def _child(
    line: AllocationLine,
    volume: Decimal,
    master_order_id: MasterOrderId,
    side: Side,
    magic: int,
    at: datetime,
    *,
    target: ClosingTarget | None = None,
    stops_copied: bool = True,
) -> ChildOrder:
    child_id = ChildOrderId(new_id("ch"))
    return ChildOrder(
        child_order_id=child_id,
        master_order_id=master_order_id,
        account_id=line.account_id,
        symbol=line.symbol,
        side=side,
        volume=volume,
        state=ChildOrderState.SENT,
        tag=tag_for_child(child_id),
        magic=magic,
        created_at=at,
        updated_at=at,
        position_ticket=0 if target is None else target.position_ticket,
        closes_child_order_id=NO_CHILD_ORDER_ID if target is None else target.closes_child_order_id,
        stops_copied=stops_copied,
    )


def new_master_order(
    spec: MasterOrderSpec,
    *,
    master_order_id: MasterOrderId,
    allocation: Allocation,
    children: list[ChildOrder],
    magic: int,
    submitted_by: str,
    at: datetime,
) -> NewMasterOrder:
    """The master order of `children`, accepted, allocated and dispatching at `at`."""
    allocated = MasterOrder(
        master_order_id=master_order_id,
        spec=spec,
        state=MasterOrderState.ACCEPTED,
        magic=magic,
        allocation=allocation,
        created_at=at,
        updated_at=at,
        child_count=len(children),
        submitted_by=submitted_by,
    ).moved_to(MasterOrderState.ALLOCATED, at)
    return NewMasterOrder(
        master=allocated.moved_to(MasterOrderState.DISPATCHING, at),
        allocated=allocated,
        children=children,
    )


def why_nothing_allocated(allocation: Allocation) -> str:
    """Why an allocation has no child volume: the reasons of its lines, or no members."""
    reasons = sorted({r.name for line in allocation.lines for r in line.reasons})
    return ", ".join(reasons) if reasons else "the group has no members"
