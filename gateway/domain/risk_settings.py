"""The risk settings of groups and accounts, as the API sets them and the engine applies them.

A group has pre-trade limits for each member's own account (or a member's own limits instead),
a policy for a child that breaks one, and loss limits on the sum of its members' equity. An
account has loss limits on its own equity. docs/risk.md has the rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gateway.domain.drawdown_monitor import LossLimits
from gateway.domain.risk_limits import NO_LIMITS, RiskLimits, ViolationPolicy


@dataclass(frozen=True, slots=True)
class GroupRisk:
    # What each member's account may trade, unless the member has limits of its own.
    limits: RiskLimits = NO_LIMITS
    policy: ViolationPolicy = ViolationPolicy.SKIP
    # Account id -> that member's own limits, used instead of `limits`.
    member_limits: Mapping[str, RiskLimits] = field(default_factory=dict)
    # On the sum of the members' equity; None: not watched.
    loss_limits: LossLimits | None = None

    def __post_init__(self) -> None:
        # A private copy: the caller's dict changing later must not change this value.
        object.__setattr__(self, "member_limits", MappingProxyType(dict(self.member_limits)))

    def limits_for(self, account_id: str) -> RiskLimits:
        return self.member_limits.get(account_id, self.limits)

    @property
    def checks_orders(self) -> bool:
        """Whether any member's child orders are checked against limits at all."""
        return not self.limits.is_unlimited or any(
            not limits.is_unlimited for limits in self.member_limits.values()
        )


NO_GROUP_RISK = GroupRisk()


def watched(limits: LossLimits | None) -> LossLimits | None:
    """`limits` if they hold a rule, else None: loss limits without a rule watch nothing."""
    if limits is None or (limits.daily_loss is None and limits.max_drawdown is None):
        return None
    return limits
