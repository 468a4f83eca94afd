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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from gateway.domain.accounts import AllocationMethod, BelowMinPolicy
from gateway.domain.allocation import Allocation, AllocationLine, AllocationReason
from gateway.domain.decimals import from_steps
from gateway.domain.orders import ChildOrder
from gateway.domain.symbols import SymbolSpec


@dataclass(frozen=True, slots=True)
class OpenPosition:
    """What is still open of one opening child order, on its account's broker symbol."""

    child: ChildOrder
    open_volume: Decimal
    spec: SymbolSpec
    method: AllocationMethod


# Targets are shown, not traded.
TARGET_QUANTUM = Decimal("1E-10")


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
