"""Pre-trade risk applied to an allocation: each checked account's child volumes go through
check_children (gateway/domain/pre_trade_risk.py), and its line keeps what may be sent.

A clipped child keeps its place with the smaller volume (clipping only lowers a volume, so every
child stays within the symbol's volume_max and above its volume_min); a skipped child is
removed. Each decision is kept on the line (AllocationLine.risk_checks) with the reasons
RISK_CLIPPED / RISK_SKIPPED, and the allocation's totals are recomputed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Context, Decimal, localcontext

from gateway.domain.account_exposure import AccountExposure
from gateway.domain.allocation import Allocation, AllocationLine, AllocationReason
from gateway.domain.copying import child_side
from gateway.domain.decimals import decimal_places
from gateway.domain.drawdown_monitor import StopOutAction
from gateway.domain.pre_trade_risk import (
    ProposedChild,
    RiskAction,
    RiskDecision,
    check_children,
)
from gateway.domain.risk_limits import RiskLimits, ViolationPolicy
from gateway.domain.side import Side
from gateway.domain.symbols import SymbolSpec

_EXACT = Context(prec=80)


@dataclass(frozen=True, slots=True)
class AccountRiskInput:
    """What one account's children are checked with, read when the order arrived."""

    limits: RiskLimits
    # None: could not be read (`unreadable` says why); the account's children are skipped.
    exposure: AccountExposure | None
    spec: SymbolSpec | None
    # The price the children are expected to fill at, in the symbol's profit currency.
    price: Decimal | None
    # Profit currency -> account currency; None: no quote converts them.
    rate: Decimal | None = Decimal(1)
    # The account's active stop-out, if any.
    stop_out: StopOutAction | None = None
    unreadable: str = ""


def check_allocation(
    allocation: Allocation,
    inputs: Mapping[str, AccountRiskInput],
    *,
    side: Side,
    master_symbol: SymbolSpec,
    policy: ViolationPolicy,
    at: datetime,
) -> Allocation:
    """The allocation with every line of `inputs` checked; other lines are left as they are."""
    lines = []
    changed = False
    for line in allocation.lines:
        given = inputs.get(line.account_id)
        if given is None or not line.child_volumes:
            lines.append(line)
            continue
        # A reversed copy's children trade the other side (gateway/domain/copying.py).
        decisions = _decisions(line, given, child_side(line, side), master_symbol.name, policy, at)
        lines.append(_applied(line, decisions))
        changed = True
    if not changed:
        return allocation
    with localcontext(_EXACT):
        master_contract = master_symbol.contract_size
        exposure = sum(
            (line.volume * (line.contract_size or master_contract) for line in lines), Decimal(0)
        )
        step = master_symbol.volume_step
        allocated = _plain_total(exposure / master_contract, step)
        unallocated = _plain_total(allocation.requested_volume - allocated, step)
    return replace(
        allocation,
        lines=tuple(lines),
        allocated_volume=allocated,
        unallocated_volume=unallocated,
    )


def _decisions(
    line: AllocationLine,
    given: AccountRiskInput,
    side: Side,
    master_symbol: str,
    policy: ViolationPolicy,
    at: datetime,
) -> tuple[RiskDecision, ...]:
    limits = given.limits
    why = given.unreadable
    if not why and (given.exposure is None or given.spec is None):
        why = "what the account holds could not be read"
    elif not why and (given.price is None or given.price <= 0):
        why = f"no price for {line.symbol}"
    needs_money = limits.max_symbol_notional is not None or limits.min_margin_level is not None
    if not why and given.rate is None and needs_money:
        why = f"no quote converts the profit currency of {line.symbol} into the account's"
    if why:
        return tuple(
            RiskDecision(RiskAction.SKIP, volume, Decimal(0), summary=f"skipped unchecked: {why}")
            for volume in line.child_volumes
        )
    assert given.exposure is not None and given.spec is not None and given.price is not None
    children = [
        ProposedChild(
            account_id=line.account_id,
            symbol=line.symbol,
            side=side,
            volume=volume,
            price=given.price,
            profit_to_account_rate=given.rate or Decimal(1),
            master_symbol=master_symbol,
        )
        for volume in line.child_volumes
    ]
    return check_children(
        children,
        limits=limits,
        exposure=given.exposure,
        spec=given.spec,
        at=at,
        policy=policy,
        stop_out=given.stop_out,
    ).decisions


def _applied(line: AllocationLine, decisions: tuple[RiskDecision, ...]) -> AllocationLine:
    volumes = tuple(d.volume for d in decisions if d.volume > 0)
    reasons = list(line.reasons)
    if any(d.action is RiskAction.CLIP for d in decisions):
        reasons.append(AllocationReason.RISK_CLIPPED)
    if any(d.action is RiskAction.SKIP for d in decisions):
        reasons.append(AllocationReason.RISK_SKIPPED)
    # Started from the line's own zero so that the total keeps its decimals ("0.00").
    volume = sum(volumes, line.volume - line.volume)
    return line._replace(
        volume=volume, child_volumes=volumes, reasons=tuple(reasons), risk_checks=decisions
    )


def _plain_total(value: Decimal, step: Decimal) -> Decimal:
    """A total in plain form, as the allocation writes its own: at least the step's decimals."""
    places = max(decimal_places(step), decimal_places(value.normalize()))
    return value.quantize(Decimal(1).scaleb(-places))
