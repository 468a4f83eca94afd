"""Sharing a master order's volume over a group's accounts, exact to the lot step.

Proportional methods (EQUITY, BALANCE, FREE_MARGIN, EQUAL) split a total and preserve it:
1. Work in integer counts of the symbol's volume step; no float anywhere.
2. Each eligible member's exact share is total x basis / sum of bases; it gets the floor of that
   in steps, and the steps left over go one each to the largest remainders (ties: larger basis,
   then smaller account id), so the result does not depend on the order members are listed in.
3. A member over its own max_lots is clipped there (CLIPPED_MAX_LOT) and the rest re-split.
4. A member whose share rounds below the symbol's volume_min is, under SKIP, left out and its
   share re-split over the others (smallest bases leave first, as few as possible); under
   ROUND_UP_TO_MIN it trades volume_min and the others share the rest.
5. A volume above the symbol's volume_max becomes several child orders of near-equal size.
docs/allocation.md walks through examples.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from gateway.domain.accounts import AllocationMethod, BelowMinPolicy
from gateway.domain.decimals import decimal_places, from_steps, scaled_integer, to_steps
from gateway.domain.errors import FailedPrecondition
from gateway.domain.symbols import SymbolSpec

TARGET_DISPLAY_QUANTUM = Decimal("1E-10")

PROPORTIONAL_METHODS = frozenset(
    {
        AllocationMethod.EQUITY,
        AllocationMethod.BALANCE,
        AllocationMethod.FREE_MARGIN,
        AllocationMethod.EQUAL,
    }
)


class AllocationReason(enum.Enum):
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


@dataclass(frozen=True, slots=True)
class MemberInput:
    """One member as the allocation sees it, from one snapshot."""

    account_id: str
    symbol: str
    active: bool
    # The value the share is computed from (equity, balance, ...); None if unknown.
    basis: Decimal | None
    max_lots: Decimal | None = None


@dataclass(frozen=True, slots=True)
class AllocationLine:
    account_id: str
    symbol: str
    basis: Decimal | None
    target_volume: Decimal
    volume: Decimal
    child_volumes: tuple[Decimal, ...]
    reasons: tuple[AllocationReason, ...]


@dataclass(frozen=True, slots=True)
class Allocation:
    method: AllocationMethod
    below_min_policy: BelowMinPolicy
    requested_volume: Decimal
    allocated_volume: Decimal
    unallocated_volume: Decimal
    snapshot_time: datetime
    lines: tuple[AllocationLine, ...]

    @property
    def child_count(self) -> int:
        return sum(len(line.child_volumes) for line in self.lines)


def allocate(
    *,
    method: AllocationMethod,
    below_min_policy: BelowMinPolicy,
    volume: Decimal,
    symbol: SymbolSpec,
    members: Sequence[MemberInput],
    snapshot_time: datetime,
) -> Allocation:
    """Shares `volume` over `members`. Pure and deterministic."""
    if method not in PROPORTIONAL_METHODS:
        raise FailedPrecondition(
            f"allocation method {method.name} is not available in this version",
            reason="ALLOCATION_METHOD_UNAVAILABLE",
        )
    if method is AllocationMethod.EQUAL:
        members = [_with_basis(m, Decimal(1) if m.basis is not None else None) for m in members]
    return _split_proportionally(method, below_min_policy, volume, symbol, members, snapshot_time)


def _with_basis(member: MemberInput, basis: Decimal | None) -> MemberInput:
    return MemberInput(member.account_id, member.symbol, member.active, basis, member.max_lots)


@dataclass(slots=True)
class _Candidate:
    member: MemberInput
    weight: int  # the basis as an exact integer at a common scale
    max_units: int | None
    units: int = 0
    fixed: bool = False
    reasons: tuple[AllocationReason, ...] = ()


def _split_proportionally(
    method: AllocationMethod,
    policy: BelowMinPolicy,
    volume: Decimal,
    spec: SymbolSpec,
    members: Sequence[MemberInput],
    snapshot_time: datetime,
) -> Allocation:
    step = spec.volume_step
    total_units = to_steps(volume, step)
    min_units = to_steps(spec.volume_min, step)

    lines: dict[str, AllocationLine] = {}
    eligible: list[MemberInput] = []
    for member in members:
        reason = _ineligibility(member)
        if reason is None:
            eligible.append(member)
        else:
            lines[member.account_id] = AllocationLine(
                member.account_id,
                member.symbol,
                member.basis,
                Decimal(0),
                Decimal(0),
                (),
                (reason,),
            )

    scale = max((decimal_places(m.basis) for m in eligible if m.basis is not None), default=0)
    candidates = [
        _Candidate(
            member=m,
            weight=scaled_integer(m.basis, scale) if m.basis is not None else 0,
            max_units=(int(m.max_lots // step) if m.max_lots is not None else None),
        )
        for m in eligible
    ]
    # Ascending by basis (then descending id) so "the smallest" is always the same member.
    candidates.sort(key=lambda c: (c.weight, _descending(c.member.account_id)))
    total_weight = sum(c.weight for c in candidates)

    _settle(candidates, total_units, min_units, policy)

    for c in candidates:
        target = _exact_share(volume, c.weight, total_weight)
        units = c.units
        reasons = list(c.reasons)
        final = from_steps(units, step)
        if units > 0 and AllocationReason.CLIPPED_MAX_LOT not in reasons:
            if final < target:
                reasons.append(AllocationReason.ROUNDED_DOWN)
            elif final > target and AllocationReason.RAISED_TO_MIN not in reasons:
                reasons.append(AllocationReason.ROUNDED_UP)
        children = _split_at_max(units, spec)
        if len(children) > 1:
            reasons.append(AllocationReason.SPLIT_MAX_VOLUME)
        lines[c.member.account_id] = AllocationLine(
            account_id=c.member.account_id,
            symbol=c.member.symbol,
            basis=c.member.basis,
            target_volume=target,
            volume=final,
            child_volumes=tuple(from_steps(u, step) for u in children),
            reasons=tuple(reasons),
        )

    ordered = tuple(lines[aid] for aid in sorted(lines))
    allocated = from_steps(sum(c.units for c in candidates), step)
    return Allocation(
        method=method,
        below_min_policy=policy,
        requested_volume=volume,
        allocated_volume=allocated,
        unallocated_volume=(volume - allocated).quantize(step),
        snapshot_time=snapshot_time,
        lines=ordered,
    )


def _ineligibility(member: MemberInput) -> AllocationReason | None:
    if not member.active:
        return AllocationReason.INACTIVE
    if member.basis is None:
        return AllocationReason.TERMINAL_UNAVAILABLE
    if member.basis <= 0:
        return AllocationReason.NO_BASIS
    return None


def _settle(
    candidates: list[_Candidate], total_units: int, min_units: int, policy: BelowMinPolicy
) -> None:
    """Assigns units to candidates until no member breaks its max or the symbol's min."""
    while True:
        free = [c for c in candidates if not c.fixed]
        remaining = total_units - sum(c.units for c in candidates if c.fixed)
        _largest_remainder(free, remaining)
        clipped = [c for c in free if c.max_units is not None and c.units > c.max_units]
        if clipped:
            for c in clipped:
                c.units, c.fixed = c.max_units or 0, True
                c.reasons = (AllocationReason.CLIPPED_MAX_LOT,)
            continue
        below = [c for c in free if c.units < min_units]
        if not below:
            return
        if policy is BelowMinPolicy.ROUND_UP_TO_MIN:
            for c in below:
                c.units, c.fixed = min_units, True
                c.reasons = (AllocationReason.RAISED_TO_MIN,)
            if sum(c.units for c in candidates if c.fixed) > total_units:
                # Not enough volume for everyone's minimum: the smallest keep theirs at 0.
                _skip_smallest_until_feasible(candidates, total_units, min_units)
                return
            continue
        _skip_smallest_until_feasible(free, remaining, min_units)
        continue


def _skip_smallest_until_feasible(
    candidates: list[_Candidate], total_units: int, min_units: int
) -> None:
    """Skips the fewest smallest members so that every other one reaches the minimum.

    `candidates` is sorted ascending; shares never fall when small members leave, so
    "the smallest remaining member reaches the minimum" is monotone in how many leave and the
    count is found by bisection.
    """
    for c in candidates:
        if c.fixed and AllocationReason.RAISED_TO_MIN in c.reasons:
            c.fixed, c.units, c.reasons = False, 0, ()
    free = [c for c in candidates if not c.fixed]
    remaining = total_units - sum(c.units for c in candidates if c.fixed)

    def feasible(skip: int) -> bool:
        kept = free[skip:]
        if not kept:
            return True
        _largest_remainder(kept, remaining)
        return kept[0].units >= min_units

    low, high = 0, len(free)
    while low < high:
        mid = (low + high) // 2
        if feasible(mid):
            high = mid
        else:
            low = mid + 1
    for c in free[:low]:
        c.units, c.fixed = 0, True
        c.reasons = (AllocationReason.SKIPPED_BELOW_MIN,)
    _largest_remainder(free[low:], remaining)


def _largest_remainder(candidates: list[_Candidate], units: int) -> None:
    """Hare-Niemeyer on integer steps: floors, then one step each to the largest remainders."""
    if not candidates:
        return
    total_weight = sum(c.weight for c in candidates)
    if units <= 0 or total_weight <= 0:
        for c in candidates:
            c.units = 0
        return
    remainders: list[tuple[int, int, str, _Candidate]] = []
    given = 0
    for c in candidates:
        share, remainder = divmod(units * c.weight, total_weight)
        c.units = share
        given += share
        remainders.append((-remainder, -c.weight, c.member.account_id, c))
    left = units - given
    if left:
        remainders.sort(key=lambda r: (r[0], r[1], r[2]))
        for entry in remainders[:left]:
            entry[3].units += 1


def _split_at_max(units: int, spec: SymbolSpec) -> list[int]:
    """One child order per volume_max at most, near-equal so none falls below volume_min."""
    if units == 0:
        return []
    max_units = to_steps(spec.volume_max - spec.volume_max % spec.volume_step, spec.volume_step)
    parts = -(-units // max_units)
    base, extra = divmod(units, parts)
    return [base + 1] * extra + [base] * (parts - extra)


def _exact_share(volume: Decimal, weight: int, total_weight: int) -> Decimal:
    if total_weight == 0:
        return Decimal(0)
    exact = volume * weight / total_weight
    return exact.quantize(TARGET_DISPLAY_QUANTUM, rounding=ROUND_HALF_EVEN)


def _descending(text: str) -> tuple[int, ...]:
    return tuple(-ord(ch) for ch in text)
