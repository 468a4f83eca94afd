"""The splitting methods (EQUITY, BALANCE, FREE_MARGIN, EQUAL, PERCENTAGE): the master volume
shared between the members that use them, in proportion to their bases.

Everything is counted in integers: bases scaled to whole weights, and exposure (lots x
contract size) scaled to whole units, so that members trading a mapped symbol with another
contract size get the same exposure. largest_remainder.py (or, for its narrower case,
largest_remainder_counted.py) turns them into each member's steps; the lines then say how
each volume compares with its exact share.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from decimal import Decimal, Inexact, InvalidOperation
from fractions import Fraction
from itertools import islice, repeat
from typing import NamedTuple, TypeVar

from gateway.domain.accounts import BelowMinPolicy
from gateway.domain.allocation import largest_remainder, largest_remainder_counted
from gateway.domain.allocation.decimal_contexts import (
    DISPLAY,
    DISPLAY_ROUNDING,
    EXACT,
    EXACT_OR_RAISE,
)
from gateway.domain.allocation.limits import MemberSteps, max_lots_in_steps
from gateway.domain.allocation.members import Share
from gateway.domain.allocation.records import (
    TARGET_DISPLAY_QUANTUM,
    AllocationLine,
    AllocationReason,
    AllocationRequest,
    build_lines,
)
from gateway.domain.decimals import decimal_places
from gateway.domain.symbols import SymbolSpec

_T = TypeVar("_T")

_own_max_lots = operator.attrgetter("max_lots")
_contract_size = operator.attrgetter("contract_size")


class SplitLines(NamedTuple):
    # One line per member of the share, in its order.
    lines: tuple[AllocationLine, ...]
    # What they trade in all (volume x contract size).
    exposure: Decimal
    # The members (positions in the share) in the order they were settled in.
    settled: list[int]


def split_lines(request: AllocationRequest, share: Share, *, whole_group: bool) -> SplitLines:
    """The lines of the members of `share`, which split request.volume. `whole_group`: they
    are every member of the group, each splitting by the group's method."""
    columns, bases = share.columns, share.bases
    specs: Sequence[SymbolSpec] = columns.specs  # type: ignore[assignment]  # all tradable
    steps = MemberSteps(specs)
    total_weight, places, exact_sum = _weight_sum(bases, columns.listing)
    weights = _once_per_object(_scaled(places), bases)
    share_of_total = request.volume * request.symbol.contract_size
    targets = _targets(share_of_total, total_weight, specs, bases, steps)
    units, fixed, settled = _units(request, share, steps, weights, whole_group and exact_sum)

    volumes = tuple(steps.volumes(units))
    # How each volume compares with its target: 1 above, -1 below, 0 on it.
    above = map(operator.gt, volumes, targets)
    rounding = map(operator.sub, above, map(operator.lt, volumes, targets))
    by_rounding = tuple(steps.by_rounding(units))
    reasons: list[tuple[AllocationReason, ...]] = list(map(operator.getitem, by_rounding, rounding))
    for member, reason in fixed:
        reasons[member] = (reason, *by_rounding[member][0])
    if steps.one is not None:
        contract_sizes: Sequence[Decimal] = (steps.one.spec.contract_size,) * len(units)
    else:
        contract_sizes = tuple(map(_contract_size, specs))
    lines = build_lines(
        columns.account_ids,
        columns.symbols,
        share.methods,
        bases,
        map(DISPLAY_ROUNDING.quantize, targets, repeat(TARGET_DISPLAY_QUANTUM)),
        volumes,
        steps.child_volumes(units),
        reasons,
        columns.snapshots,
        repeat(None),
        contract_sizes,
    )
    return SplitLines(lines, steps.exposure(units), settled)


def _units(
    request: AllocationRequest,
    share: Share,
    steps: MemberSteps,
    weights: tuple[int, ...],
    exact_whole_group: bool,
) -> tuple[list[int], list[tuple[int, AllocationReason]], list[int]]:
    """Each member's steps, the members fixed on the way with why (clipped at max_lots,
    skipped or raised to the minimum), and the order they were settled in."""
    columns = share.columns
    specs: Sequence[SymbolSpec] = columns.specs  # type: ignore[assignment]
    master = request.symbol
    total_exposure = request.volume * master.contract_size
    # Integers at one common scale: the total, and each spec's step and minimum exposure.
    distinct = list({id(spec): spec for spec in specs}.values())
    scale = max(
        decimal_places(total_exposure),
        *(decimal_places(spec.volume_step * spec.contract_size) for spec in distinct),
        *(decimal_places(spec.volume_min * spec.contract_size) for spec in distinct),
    )
    total = int(total_exposure.scaleb(scale))
    step_of = {
        id(spec): int((spec.volume_step * spec.contract_size).scaleb(scale)) for spec in distinct
    }
    if steps.one is not None:
        step_exposures: Sequence[int] = (step_of[id(steps.one.spec)],) * len(weights)
    else:
        step_exposures = tuple(map(step_of.__getitem__, map(id, specs)))
    min_units = steps.min_units
    max_lots = tuple(map(_own_max_lots, columns.settings))
    max_units = None
    if max_lots.count(None) != len(max_lots):
        max_units = tuple(map(max_lots_in_steps, max_lots, specs))
    raise_to_min = request.settings.below_min_policy is BelowMinPolicy.ROUND_UP_TO_MIN
    fixed_reason = (
        AllocationReason.RAISED_TO_MIN if raise_to_min else AllocationReason.SKIPPED_BELOW_MIN
    )

    # Settling order: smallest relative to its minimum first; equal by account id descending.
    count = len(weights)
    ids = columns.account_ids
    if columns.unique_ids:
        order = list(range(count - 1, -1, -1))
    else:
        order = sorted(range(count), key=ids.__getitem__, reverse=True)
    if steps.one is not None or len(set(zip(step_exposures, min_units, strict=True))) == 1:
        order.sort(key=weights.__getitem__)
    else:
        order.sort(
            key=lambda i: (Fraction(weights[i], min_units[i] * step_exposures[i]), weights[i])
        )

    if (
        steps.one is not None
        and max_units is None
        and columns.unique_ids
        and (exact_whole_group or _none_prefixes_another(ids))
    ):
        counted = largest_remainder_counted.settle(
            tuple(map(weights.__getitem__, order)),
            lambda position: ids[order[position]],
            total,
            step_exposures[0],
            min_units[0],
            raise_to_min,
        )
        if counted is not None:
            fixed_count, free_units = counted
            units = [min_units[0] if raise_to_min else 0] * count
            for member, member_units in zip(order[fixed_count:], free_units, strict=True):
                units[member] = member_units
            return units, [(member, fixed_reason) for member in order[:fixed_count]], order

    def in_order(values: Sequence[_T]) -> list[_T]:
        return list(map(values.__getitem__, order))

    settled_units, reasons = largest_remainder.settle(
        in_order(weights),
        in_order(step_exposures),
        in_order(min_units),
        None if max_units is None else in_order(max_units),
        in_order(ids),
        total,
        raise_to_min,
    )
    units = [0] * count
    fixed: list[tuple[int, AllocationReason]] = []
    for member, member_units, reason in zip(order, settled_units, reasons, strict=True):
        units[member] = member_units
        if reason is not None:
            fixed.append((member, reason))
    return units, fixed, order


def _none_prefixes_another(account_ids: tuple[str, ...]) -> bool:
    """Whether no id (in ascending order) is a prefix of another. If one is, it is a prefix of
    the id just after it."""
    return not any(map(str.startswith, islice(account_ids, 1, None), account_ids))


def _weight_sum(
    bases: tuple[Decimal, ...], listing: tuple[int, ...] | None
) -> tuple[Decimal, int, bool]:
    """The sum of the bases, the decimals that make each a whole weight, and whether the sum
    is exact. An exact sum keeps the most decimals of its terms; a sum too long to be exact is
    taken in listing order, its decimals from each basis."""
    total_weight = sum(bases, Decimal(0))
    _, digits, exponent = total_weight.as_tuple()
    if len(digits) < EXACT.prec and isinstance(exponent, int):
        return total_weight, max(0, -exponent), True
    listed = bases if listing is None else _in_listing_order(bases, listing)
    return sum(listed, Decimal(0)), max(map(decimal_places, bases)), False


def _in_listing_order(values: tuple[_T, ...], listing: tuple[int, ...]) -> tuple[_T, ...]:
    return tuple(map(values.__getitem__, sorted(range(len(values)), key=listing.__getitem__)))


def _scaled(places: int) -> Callable[[tuple[Decimal, ...]], tuple[int, ...]]:
    def scaled(values: tuple[Decimal, ...]) -> tuple[int, ...]:
        return tuple(map(int, map(EXACT.scaleb, values, repeat(places))))

    return scaled


def _targets(
    share_of_total: Decimal,
    total_weight: Decimal,
    specs: Sequence[SymbolSpec],
    bases: tuple[Decimal, ...],
    steps: MemberSteps,
) -> tuple[Decimal, ...]:
    """Each member's exact share in its own lots, share_of_total x basis / (total_weight x
    its contract size), to 28 digits: before any skip or clip."""
    if steps.one is not None:
        denominator = total_weight * steps.one.spec.contract_size
        return _once_per_object(_proportional_targets(share_of_total, denominator), bases)
    by_spec: dict[int, list[int]] = {}
    for position, spec in enumerate(specs):
        by_spec.setdefault(id(spec), []).append(position)
    targets: list[Decimal] = [Decimal(0)] * len(bases)
    for positions in by_spec.values():
        denominator = total_weight * specs[positions[0]].contract_size
        group_targets = _proportional_targets(share_of_total, denominator)(
            tuple(map(bases.__getitem__, positions))
        )
        for position, target in zip(positions, group_targets, strict=True):
            targets[position] = target
    return tuple(targets)


def _proportional_targets(
    share_of_total: Decimal, denominator: Decimal
) -> Callable[[tuple[Decimal, ...]], tuple[Decimal, ...]]:
    """share_of_total x basis / denominator to 28 digits, for many bases."""

    def targets(bases: tuple[Decimal, ...]) -> tuple[Decimal, ...]:
        if share_of_total:
            try:
                divisor = EXACT_OR_RAISE.divide(denominator, share_of_total)
            except (Inexact, InvalidOperation):
                pass
            else:
                # The same exact quotient, rounded once the same way: one division per basis
                # instead of a product and a division.
                return tuple(map(DISPLAY.divide, bases, repeat(divisor)))
        products = map(EXACT.multiply, repeat(share_of_total), bases)
        return tuple(map(DISPLAY.divide, products, repeat(denominator)))

    return targets


def _once_per_object(
    function: Callable[[tuple[Decimal, ...]], tuple[_T, ...]], values: tuple[Decimal, ...]
) -> tuple[_T, ...]:
    """function(values), computed once per distinct object when objects repeat (EQUAL's one
    Decimal(1), a percentage object shared by many members)."""
    sample = values[:16]
    if len(set(map(id, sample))) * 2 > len(sample):
        return function(values)
    keys = tuple(map(id, values))
    distinct = dict(zip(keys, values, strict=True))
    computed = dict(zip(distinct, function(tuple(distinct.values())), strict=True))
    return tuple(map(computed.__getitem__, keys))
