"""Closing all or part of a master order's position: each account its share, to its lot step.

A close is itself a master order (MARKET, the opposite side) whose children each close part of
one opening child's position. For a fraction f of what is still open:
1. Each account's share is f x its open volume (its opening child's filled volume less what
   earlier closes took), in its own lots: contract-size scaling carries over unchanged.
2. Rounded DOWN to its volume step, so no account closes more than its share (ROUNDED_DOWN);
   f = 1 closes everything, exactly.
3. What would be left open must stay tradable: a remainder above 0 but below volume_min is
   avoided by closing less (the remainder becomes volume_min).
4. A share below volume_min closes nothing (SKIPPED_BELOW_MIN): the position stays as it was.
5. Above volume_max, the share is closed by several near-equal child orders.
The plan is recorded as the close order's allocation: basis = the open volume, target = f x it.

What is still open comes first (open_parts): each opening child's filled volume less what the
children of earlier closes filled, refused while the order or an earlier close still executes.
A close asked as a volume of the master position becomes the fraction volume / open volume of
it (closing_share), the open volume counted in master lots through each account's contract
size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from gateway.domain.accounts import AllocationMethod, BelowMinPolicy, MarginMode
from gateway.domain.allocation import Allocation, AllocationLine, AllocationReason
from gateway.domain.decimals import from_steps
from gateway.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument
from gateway.domain.ids import AccountId, ChildOrderId, MasterOrderId
from gateway.domain.orders import ChildOrder, MasterOrder, MasterOrderSpec, Side
from gateway.domain.symbols import SymbolSpec


class StillExecuting(FailedPrecondition):
    """A refusal that lasts only while a master order executes (the order itself, or an
    earlier close of it): `executing_master_order_id` is the order to wait for."""

    def __init__(
        self, message: str, *, reason: str, executing_master_order_id: MasterOrderId
    ) -> None:
        super().__init__(message, reason=reason)
        self.executing_master_order_id = executing_master_order_id


@dataclass(frozen=True, slots=True)
class OpenPart:
    """What one opening child order still holds: its filled volume less what the children of
    closing orders filled, in its account's lots."""

    child: ChildOrder
    open_volume: Decimal


@dataclass(frozen=True, slots=True)
class ClosingShare:
    """How much of what is still open a close takes."""

    # Of each account's open volume: 0 < share <= 1, exact.
    share: Fraction
    # What the closing order is for, in lots of the master symbol: the volume asked, or the
    # share of the open volume (shown to 8 decimals when not exact).
    master_volume: Decimal


@dataclass(frozen=True, slots=True)
class ClosingTarget:
    """What one closing child order closes: its opening child and, on a hedging account, that
    child's position ticket (0 on a netting account: an opposite deal reduces the position)."""

    closes_child_order_id: ChildOrderId
    position_ticket: int
    # The side that closes it: the opening child's other side (a reversed copy's closes on
    # the master order's own side).
    side: Side


@dataclass(frozen=True, slots=True)
class OpenPosition:
    """What is still open of one opening child order, on its account's broker symbol."""

    child: ChildOrder
    open_volume: Decimal
    spec: SymbolSpec
    method: AllocationMethod


# Targets are shown, not traded.
TARGET_QUANTUM = Decimal("1E-10")
# A volume of the master position that is not exact in lots (a fraction of it) is shown so.
MASTER_LOTS_QUANTUM = Decimal("1E-8")


def check_closable(opened: MasterOrder) -> None:
    """Refuses a master order whose position cannot be closed or modified: a closing order
    itself, or one still executing (StillExecuting)."""
    if opened.spec.closes_master_order_id:
        raise FailedPrecondition(
            f"master order {opened.master_order_id} is itself a closing order",
            reason="NOT_AN_OPENING_ORDER",
        )
    if not opened.state.is_final:
        raise StillExecuting(
            f"master order {opened.master_order_id} is {opened.state.name}: its position can "
            "be closed or modified once it is final (cancel it first to stop it)",
            reason="MASTER_ORDER_NOT_FINAL",
            executing_master_order_id=opened.master_order_id,
        )


def open_parts(
    master_order_id: MasterOrderId,
    children: Sequence[ChildOrder],
    closes: Sequence[tuple[MasterOrder, Sequence[ChildOrder]]],
    *,
    only_accounts: frozenset[AccountId] | None = None,
) -> list[OpenPart]:
    """What each child of an opening master order still holds, given its closing orders
    (`closes`, with their children); only the children of `only_accounts` when given.

    Refused while a closing order still executes (StillExecuting: what it takes is not known
    yet), and when nothing is open (NOTHING_TO_CLOSE)."""
    running = [c.master_order_id for c, _ in closes if not c.state.is_final]
    if running:
        raise StillExecuting(
            f"closing order {running[0]} of {master_order_id} is still executing; try "
            "again once it is final",
            reason="CLOSE_IN_PROGRESS",
            executing_master_order_id=running[0],
        )
    closed: dict[ChildOrderId, Decimal] = {}
    for _, closing_children in closes:
        for c in closing_children:
            closed[c.closes_child_order_id] = (
                closed.get(c.closes_child_order_id, Decimal(0)) + c.filled_volume
            )
    parts = [
        OpenPart(c, c.filled_volume - closed.get(c.child_order_id, Decimal(0)))
        for c in children
        if c.filled_volume > closed.get(c.child_order_id, Decimal(0))
        and (only_accounts is None or c.account_id in only_accounts)
    ]
    if not parts:
        raise FailedPrecondition(
            f"nothing of master order {master_order_id} is open", reason="NOTHING_TO_CLOSE"
        )
    return parts


def closing_share(
    opened: MasterOrder,
    parts: Sequence[OpenPart],
    master_spec: SymbolSpec,
    *,
    fraction: Decimal | None = None,
    volume: Decimal | None = None,
) -> ClosingShare:
    """The share of what is open that a close of `fraction` of it, or of `volume` lots of the
    master symbol, takes. A volume above what is open is refused (INVALID_VOLUME)."""
    if (fraction is None) == (volume is None):
        raise ValueError("a close takes a fraction or a volume")
    open_master = open_master_volume(opened, parts, master_spec)
    if volume is None:
        assert fraction is not None
        share = Fraction(fraction)
        return ClosingShare(share, master_lots_shown(share * open_master))
    if volume > open_master:
        raise InvalidArgument(
            [
                FieldViolation(
                    "volume",
                    f"above the open volume {master_lots_shown(open_master)} of master order "
                    f"{opened.master_order_id}",
                )
            ],
            reason="INVALID_VOLUME",
        )
    return ClosingShare(Fraction(volume) / open_master, volume)


def open_master_volume(
    opened: MasterOrder, parts: Sequence[OpenPart], master_spec: SymbolSpec
) -> Fraction:
    """What is still open, in lots of the master symbol: each part scaled by its account's
    contract size (as its opening allocation line recorded it, else the master symbol's)."""
    lines = {line.account_id: line for line in opened.allocation.lines}
    master_contract = Fraction(master_spec.contract_size)
    return sum(
        (
            Fraction(part.open_volume)
            * Fraction(lines[part.child.account_id].contract_size or master_spec.contract_size)
            / master_contract
            for part in parts
        ),
        Fraction(0),
    )


def master_lots_shown(value: Fraction) -> Decimal:
    """A volume in master lots for display: exact when it can be, else to 8 decimals."""
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return exact.quantize(MASTER_LOTS_QUANTUM).normalize()


def closing_spec(
    opened: MasterOrderSpec,
    *,
    master_order_id: MasterOrderId,
    client_order_id: str,
    fraction: Decimal | None,
    share: ClosingShare,
) -> MasterOrderSpec:
    """The closing order's instruction: the opening one's, on the opposite side, for the
    share's volume, naming the order it closes and the fraction asked (None for a volume)."""
    return replace(
        opened,
        client_order_id=client_order_id,
        side=opened.side.opposite,
        volume=share.master_volume,
        comment=f"close of {master_order_id}",
        closes_master_order_id=master_order_id,
        close_fraction=fraction,
    )


def is_same_close(
    existing: MasterOrderSpec,
    master_order_id: MasterOrderId,
    *,
    fraction: Decimal | None,
    volume: Decimal | None,
) -> bool:
    """Whether a stored closing order answers this close request (a resubmission)."""
    return existing.closes_master_order_id == master_order_id and (
        existing.close_fraction == fraction
        if fraction is not None
        else existing.close_fraction is None and existing.volume == volume
    )


def closing_targets(
    allocation: Allocation,
    positions: Sequence[OpenPosition],
    margin_modes: Mapping[AccountId, MarginMode],
) -> dict[AccountId, ClosingTarget]:
    """What the closing children of each account that closes anything close: on a hedging
    account the opening child's very position (its ticket), on a netting account its net
    position, reduced by an opposite deal."""
    by_account = {p.child.account_id: p.child for p in positions}
    return {
        line.account_id: ClosingTarget(
            closes_child_order_id=(child := by_account[line.account_id]).child_order_id,
            position_ticket=(
                child.position_ticket if margin_modes[line.account_id] is MarginMode.HEDGING else 0
            ),
            side=child.side.opposite,
        )
        for line in allocation.lines
        if line.child_volumes
    }


def plan_close(
    positions: Sequence[OpenPosition],
    fraction: Fraction,
    *,
    master_spec: SymbolSpec,
    at: datetime,
) -> Allocation:
    """Each account's closing volume for `fraction` (0 < fraction <= 1) of its open volume.

    The fraction is exact (a volume of the master position becomes volume / open volume), so
    0.30 of 0.90 lots is a third, and a third of 0.90 is 0.30, not 0.29.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction {fraction} is not in (0, 1]")
    lines: list[AllocationLine] = []
    requested = allocated = Fraction(0)
    for position in sorted(positions, key=lambda p: p.child.account_id):
        spec = position.spec
        target = Fraction(position.open_volume) * fraction
        volume, reasons = _closing_volume(position.open_volume, target, spec)
        scale = Fraction(spec.contract_size) / Fraction(master_spec.contract_size)
        requested += target * scale
        allocated += Fraction(volume) * scale
        lines.append(
            AllocationLine(
                account_id=position.child.account_id,
                symbol=position.child.symbol,
                method=position.method,
                basis=position.open_volume,
                target_volume=_decimal(target),
                volume=volume,
                child_volumes=_split(volume, spec),
                reasons=reasons,
                contract_size=spec.contract_size,
            )
        )
    method = lines[0].method if lines else AllocationMethod.EQUITY
    return Allocation(
        method=method,
        below_min_policy=BelowMinPolicy.SKIP,
        requested_volume=_decimal(requested),
        allocated_volume=_decimal(allocated),
        unallocated_volume=_decimal(requested - allocated),
        snapshot_time=at,
        lines=tuple(lines),
    )


def _decimal(value: Fraction) -> Decimal:
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return exact.quantize(TARGET_QUANTUM).normalize() if exact else Decimal(0)


def _closing_volume(
    open_volume: Decimal, target: Fraction, spec: SymbolSpec
) -> tuple[Decimal, tuple[AllocationReason, ...]]:
    if target == open_volume:
        return open_volume, ()
    step = spec.volume_step
    volume = from_steps(math.floor(target / Fraction(step)), step)
    reasons: tuple[AllocationReason, ...] = (
        (AllocationReason.ROUNDED_DOWN,) if volume != target else ()
    )
    if 0 < open_volume - volume < spec.volume_min:
        volume = open_volume - spec.volume_min
        reasons = (AllocationReason.ROUNDED_DOWN,)
    if volume < spec.volume_min:
        return Decimal(0) * step, (AllocationReason.SKIPPED_BELOW_MIN,)
    return volume, reasons


def _split(volume: Decimal, spec: SymbolSpec) -> tuple[Decimal, ...]:
    """One child order per volume_max at most, near-equal so none falls below volume_min."""
    if volume == 0:
        return ()
    step = spec.volume_step
    units, max_units = int(volume / step), int(spec.volume_max / step)
    parts = -(-units // max_units)
    base, extra = divmod(units, parts)
    return tuple(from_steps(base + 1, step) for _ in range(extra)) + tuple(
        from_steps(base, step) for _ in range(parts - extra)
    )
