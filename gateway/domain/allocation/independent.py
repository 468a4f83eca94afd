"""The independent methods (LOT_MULTIPLIER, FIXED_LOTS, EQUITY_RATIO, PERCENT_RISK): each
member's own volume, rounded DOWN to its step (never more than the rule gives: for
PERCENT_RISK never more risk), clipped at its max_lots, then skipped or raised below the
minimum. A member may use one while its group splits: it trades its own volume besides."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from decimal import Decimal
from itertools import compress, repeat
from typing import NamedTuple, TypeVar, cast

from gateway.domain.accounts import AllocationMethod, BelowMinPolicy, GroupMember
from gateway.domain.allocation.decimal_contexts import DISPLAY, DISPLAY_ROUNDING, EXACT
from gateway.domain.allocation.limits import MemberSteps, max_lots_in_steps
from gateway.domain.allocation.members import Share
from gateway.domain.allocation.records import (
    TARGET_DISPLAY_QUANTUM,
    AllocationLine,
    AllocationReason,
    AllocationRequest,
    build_lines,
)
from gateway.domain.symbols import SymbolSpec

_T = TypeVar("_T")

_whole = operator.itemgetter(0)
_rest = operator.itemgetter(1)
_ROUNDED_DOWN_IF: tuple[tuple[AllocationReason, ...], ...] = ((), (AllocationReason.ROUNDED_DOWN,))
_own_max_lots = operator.attrgetter("max_lots")
_risk_percent = operator.attrgetter("risk_percent")
_contract_size = operator.attrgetter("contract_size")
_volume_step = operator.attrgetter("volume_step")
_tick_size = operator.attrgetter("tick_size")
_tick_value = operator.attrgetter("tick_value")


class IndependentLines(NamedTuple):
    # One line per member of the share, in its order.
    lines: tuple[AllocationLine, ...]
    # What they trade in all (volume x contract size).
    exposure: Decimal


def independent_lines(request: AllocationRequest, share: Share) -> IndependentLines:
    """The lines of the members of `share`, each sized by its own method."""
    columns = share.columns
    specs: Sequence[SymbolSpec] = columns.specs  # type: ignore[assignment]  # all tradable
    steps = MemberSteps(specs)
    numerators, denominators = _exact_volumes(request, share, specs)
    if steps.one is not None:
        volume_steps: Sequence[Decimal] = (steps.one.spec.volume_step,) * len(specs)
        contract_sizes: Sequence[Decimal] = (steps.one.spec.contract_size,) * len(specs)
    else:
        volume_steps = tuple(map(_volume_step, specs))
        contract_sizes = tuple(map(_contract_size, specs))
    # Floors in steps by exact integer division of exact products, whatever the digits.
    quotients = tuple(
        map(EXACT.divmod, numerators, map(EXACT.multiply, denominators, volume_steps))
    )
    units = list(map(int, map(_whole, quotients)))
    reasons = list(map(_ROUNDED_DOWN_IF.__getitem__, map(bool, map(_rest, quotients))))
    targets = tuple(map(DISPLAY.divide, numerators, denominators))

    max_lots = tuple(map(_own_max_lots, columns.settings))
    if max_lots.count(None) != len(max_lots):
        for member, max_units in enumerate(map(max_lots_in_steps, max_lots, specs)):
            if max_units is not None and units[member] > max_units:
                units[member], reasons[member] = max_units, (AllocationReason.CLIPPED_MAX_LOT,)
    raise_to_min = request.settings.below_min_policy is BelowMinPolicy.ROUND_UP_TO_MIN
    min_units = steps.min_units
    for member in compress(range(len(units)), map(operator.lt, units, min_units)):
        if raise_to_min and targets[member] > 0:
            units[member], reasons[member] = min_units[member], (AllocationReason.RAISED_TO_MIN,)
        else:
            units[member], reasons[member] = 0, (AllocationReason.SKIPPED_BELOW_MIN,)

    lines = build_lines(
        columns.account_ids,
        columns.symbols,
        share.methods,
        share.bases,
        map(DISPLAY_ROUNDING.quantize, targets, repeat(TARGET_DISPLAY_QUANTUM)),
        steps.volumes(units),
        steps.child_volumes(units),
        map(operator.add, reasons, steps.split_reasons(units)),
        columns.snapshots,
        columns.entry_prices,
        contract_sizes,
    )
    return IndependentLines(lines, steps.exposure(units))


def _exact_volumes(
    request: AllocationRequest, share: Share, specs: Sequence[SymbolSpec]
) -> tuple[Sequence[Decimal], Sequence[Decimal]]:
    """Each member's volume as numerator / denominator, both exact products."""
    methods = share.methods
    method = methods[0]
    if methods.count(method) == len(methods):
        columns = share.columns
        return _exact_volumes_by(
            method, request, share.bases, columns.settings, specs, columns.entry_prices
        )
    numerators: list[Decimal] = [Decimal(0)] * len(methods)
    denominators: list[Decimal] = [Decimal(1)] * len(methods)
    for method in set(methods):
        members = [i for i, own in enumerate(methods) if own is method]
        sized = _exact_volumes_by(
            method,
            request,
            _picked(share.bases, members),
            _picked(share.columns.settings, members),
            _picked(specs, members),
            _picked(share.columns.entry_prices, members),
        )
        for member, numerator, denominator in zip(members, *sized, strict=True):
            numerators[member], denominators[member] = numerator, denominator
    return numerators, denominators


def _picked(values: Sequence[_T], members: list[int]) -> tuple[_T, ...]:
    return tuple(map(values.__getitem__, members))


def _exact_volumes_by(
    method: AllocationMethod,
    request: AllocationRequest,
    bases: Sequence[Decimal],
    settings: Sequence[GroupMember],
    specs: Sequence[SymbolSpec],
    entry_prices: Sequence[Decimal | None],
) -> tuple[Sequence[Decimal], Sequence[Decimal]]:
    """The volumes of members that all use `method`, as numerators and denominators."""
    count = len(bases)
    if method is AllocationMethod.FIXED_LOTS:
        return bases, (Decimal(1),) * count
    if method is AllocationMethod.PERCENT_RISK:
        return _percent_risk_volumes(request, bases, settings, specs, entry_prices)
    # LOT_MULTIPLIER and EQUITY_RATIO: the master's exposure x the basis, over the member's
    # contract size (x the reference equity for EQUITY_RATIO).
    exposure = request.volume * request.symbol.contract_size
    numerators = tuple(map(EXACT.multiply, bases, repeat(exposure)))
    contract_sizes = map(_contract_size, specs)
    if method is AllocationMethod.EQUITY_RATIO:
        reference = cast("Decimal", request.reference_equity)  # the order is refused without
        return numerators, tuple(map(EXACT.multiply, repeat(reference), contract_sizes))
    return numerators, tuple(contract_sizes)


def _percent_risk_volumes(
    request: AllocationRequest,
    equities: Sequence[Decimal],
    settings: Sequence[GroupMember],
    specs: Sequence[SymbolSpec],
    entry_prices: Sequence[Decimal | None],
) -> tuple[Sequence[Decimal], Sequence[Decimal]]:
    """Lots = equity x r% / (distance in ticks x tick value per lot): equity x r% x tick size
    over 100 x the stop distance x tick value."""
    stop_loss = cast("Decimal", request.stop_loss)  # the order is refused without
    prices = cast("Sequence[Decimal]", entry_prices)  # members without one cannot trade
    distances = map(EXACT.abs, map(EXACT.subtract, prices, repeat(stop_loss)))
    risks = tuple(map(_risk_percent, settings))
    if not all(map(operator.is_not, risks, repeat(None))):
        risks = tuple(risk or Decimal(0) for risk in risks)
    risked = map(EXACT.multiply, equities, risks)
    numerators = tuple(map(EXACT.multiply, risked, map(_tick_size, specs)))
    per_lot = map(EXACT.multiply, repeat(Decimal(100)), distances)
    return numerators, tuple(map(EXACT.multiply, per_lot, map(_tick_value, specs)))
