"""What a member's copy options do to an opening order: the account copies it as it is, on
the other side (REVERSED), without its SL/TP (STOPS_NOT_COPIED), raised to its minimum
(RAISED_TO_COPY_MIN), or not at all with the reason code, on its allocation line as risk
skips are.

Applied after the sizing and before the pre-trade checks, so the checks see what the account
will really trade. Only opening orders are subject to them: a close always closes what the
account holds, whatever its options say now (docs/mirroring.md has worked examples, a
partial close among them).

Two options compare with the source (a mirrored order's CopyReference): the maximum slippage
from the source's fill price and the maximum signal age. An order submitted over the API has
no source, and they do not apply to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_CEILING, Decimal

from gateway.domain.allocation import Allocation, AllocationLine, AllocationReason
from gateway.domain.allocation.limits import StepVolumes
from gateway.domain.allocation.records import line_exposure, plain_total
from gateway.domain.copy_options import CopyDirection, CopyOptions, MinVolumePolicy
from gateway.domain.ids import AccountId
from gateway.domain.orders import ChildOrder, MasterOrderSpec, OrderType
from gateway.domain.side import Side
from gateway.domain.symbols import SymbolSpec


@dataclass(frozen=True, slots=True)
class CopyReference:
    """What a mirrored master order copies: the source's change and its price."""

    # The source's fill price (market) or order price (pending); None when unknown.
    price: Decimal | None
    # When the source made the change (its deal or order time).
    signal_time: datetime | None


# A reversed pending order rests at the same price and triggers on the same move: a BUY
# LIMIT below the market (buy the dip) becomes a SELL STOP there (sell the dip).
_REVERSED_TYPES = {
    OrderType.MARKET: OrderType.MARKET,
    OrderType.LIMIT: OrderType.STOP,
    OrderType.STOP: OrderType.LIMIT,
}


def reversed_order_type(order_type: OrderType) -> OrderType | None:
    """The order type a reversed child is sent as; None: none does the opposite (a
    STOP_LIMIT's two prices have no mirror image)."""
    return _REVERSED_TYPES.get(order_type)


def apply_copy_options(
    allocation: Allocation,
    options: Mapping[AccountId, CopyOptions],
    *,
    order: MasterOrderSpec,
    specs: Mapping[AccountId, SymbolSpec | None],
    prices: Mapping[AccountId, Decimal],
    reference: CopyReference | None,
    master_symbol: SymbolSpec,
    now: datetime,
) -> Allocation:
    """The allocation of an opening order with each member's copy options applied.

    `prices`: each account's current price on the side it trades (ask to buy, bid to sell),
    read for the members with a maximum slippage. Lines of members without options, and
    lines with nothing allocated, are left as they are."""
    lines: list[AllocationLine] = []
    changed = False
    for line in allocation.lines:
        member = options.get(line.account_id)
        if member is None or member.is_default or not line.child_volumes:
            lines.append(line)
            continue
        lines.append(
            _copied_line(
                line,
                member,
                order=order,
                spec=specs.get(line.account_id),
                price=prices.get(line.account_id),
                reference=reference,
                now=now,
            )
        )
        changed = True
    if not changed:
        return allocation
    allocated = plain_total(
        line_exposure(lines, master_symbol.contract_size) / master_symbol.contract_size,
        master_symbol.volume_step,
    )
    return replace(
        allocation,
        lines=tuple(lines),
        allocated_volume=allocated,
        unallocated_volume=plain_total(
            allocation.requested_volume - allocated, master_symbol.volume_step
        ),
    )


def _copied_line(
    line: AllocationLine,
    options: CopyOptions,
    *,
    order: MasterOrderSpec,
    spec: SymbolSpec | None,
    price: Decimal | None,
    reference: CopyReference | None,
    now: datetime,
) -> AllocationLine:
    skip = _skip_reason(
        line, options, order=order, spec=spec, price=price, reference=reference, now=now
    )
    if skip is not None:
        return _skipped(line, skip)
    reasons = list(line.reasons)
    volume, child_volumes = line.volume, line.child_volumes
    minimum = options.min_volume
    if minimum is not None and volume < minimum:
        if options.min_volume_policy is MinVolumePolicy.SKIP or spec is None:
            return _skipped(line, AllocationReason.SKIPPED_BELOW_COPY_MIN)
        units = int((minimum / spec.volume_step).to_integral_value(ROUND_CEILING))
        steps = StepVolumes(spec)
        volume, child_volumes = steps.volume[units], steps.child_volumes[units]
        reasons = [r for r in reasons if r is not AllocationReason.SPLIT_MAX_VOLUME]
        reasons.append(AllocationReason.RAISED_TO_COPY_MIN)
        if len(child_volumes) > 1:
            reasons.append(AllocationReason.SPLIT_MAX_VOLUME)
    if options.reverse:
        reasons.append(AllocationReason.REVERSED)
    has_stops = order.stop_loss is not None or order.take_profit is not None
    if not options.copy_stops and has_stops:
        reasons.append(AllocationReason.STOPS_NOT_COPIED)
    return line._replace(volume=volume, child_volumes=child_volumes, reasons=tuple(reasons))


def _skip_reason(
    line: AllocationLine,
    options: CopyOptions,
    *,
    order: MasterOrderSpec,
    spec: SymbolSpec | None,
    price: Decimal | None,
    reference: CopyReference | None,
    now: datetime,
) -> AllocationReason | None:
    """Why the account copies nothing of the order, or None; the first reason that holds, in
    the order the options are listed in (docs/mirroring.md)."""
    if options.close_only:
        return AllocationReason.CLOSE_ONLY
    pending = order.order_type is not OrderType.MARKET
    if pending and not options.copy_pending:
        return AllocationReason.PENDING_NOT_COPIED
    if options.reverse and reversed_order_type(order.order_type) is None:
        return AllocationReason.NOT_REVERSIBLE
    side = options.side_of(order.side)
    wanted = options.direction
    if (wanted is CopyDirection.BUY_ONLY and side is not Side.BUY) or (
        wanted is CopyDirection.SELL_ONLY and side is not Side.SELL
    ):
        return AllocationReason.DIRECTION_FILTERED
    if reference is None:
        return None
    age = options.max_signal_age
    if age is not None and reference.signal_time is not None and now - reference.signal_time > age:
        return AllocationReason.SIGNAL_TOO_OLD
    slippage = options.max_slippage_points
    if slippage is not None and not pending and reference.price is not None:
        if price is None or spec is None or spec.point <= 0:
            return AllocationReason.SLIPPAGE_UNKNOWN
        if abs(price - reference.price) > slippage * spec.point:
            return AllocationReason.SLIPPAGE_TOO_HIGH
    return None


def _skipped(line: AllocationLine, reason: AllocationReason) -> AllocationLine:
    return line._replace(
        volume=Decimal(0) * line.volume, child_volumes=(), reasons=(*line.reasons, reason)
    )


def child_side(line: AllocationLine, side: Side) -> Side:
    """The side an allocation line's children trade for a master order of `side`."""
    return side.opposite if AllocationReason.REVERSED in line.reasons else side


def stops_copied(line: AllocationLine) -> bool:
    return AllocationReason.STOPS_NOT_COPIED not in line.reasons


@dataclass(frozen=True, slots=True)
class ChildTerms:
    """What an opening child sends of its master order's terms."""

    order_type: OrderType
    stop_loss: Decimal | None
    take_profit: Decimal | None


def child_terms(order: MasterOrderSpec, child: ChildOrder) -> ChildTerms:
    """A child on its master order's side sends its terms as they are. A reversed child (on
    the other side) swaps SL and TP: where the source loses, it gains; and a pending one rests
    at the same price as the mirror type (LIMIT <-> STOP). A child whose member does not copy
    stops sends none."""
    reversed_ = child.side is not order.side
    order_type = order.order_type
    if reversed_:
        mirrored = reversed_order_type(order_type)
        # The copy options skip a member they cannot reverse: a child never has this type.
        assert mirrored is not None, f"child {child.child_order_id}: {order_type} reversed"
        order_type = mirrored
    if not child.stops_copied:
        return ChildTerms(order_type, None, None)
    if reversed_:
        return ChildTerms(order_type, order.take_profit, order.stop_loss)
    return ChildTerms(order_type, order.stop_loss, order.take_profit)
