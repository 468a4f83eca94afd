"""What a group's allocation settings (and each member's copy options) must satisfy before they
are stored.

Checked when a group is created or updated, so a bad setting is refused at once with the field
at fault, never discovered when the manager's order arrives.
"""

from __future__ import annotations

from decimal import Decimal

from gateway.domain.accounts import AllocationMethod, AllocationSettings, GroupMember
from gateway.domain.allocation import INDEPENDENT_METHODS, SPLIT_METHODS, effective_method
from gateway.domain.copy_options import copy_option_violations
from gateway.domain.errors import FieldViolation

HUNDRED = Decimal(100)


def group_violations(
    settings: AllocationSettings, members: tuple[GroupMember, ...], path: str = "group"
) -> list[FieldViolation]:
    found: list[FieldViolation] = []

    def add(field: str, description: str) -> None:
        found.append(FieldViolation(f"{path}.{field}", description))

    percentage_total = Decimal(0)
    uses_percentage = False
    uses_ratio = False
    seen: set[str] = set()
    for i, member in enumerate(members):
        at = f"members[{i}]"
        if member.account_id in seen:
            add(f"{at}.account_id", f"account {member.account_id!r} is listed twice")
        seen.add(member.account_id)
        found.extend(
            copy_option_violations(
                member.copy, f"{path}.{at}.copy_options", max_lots=member.max_lots
            )
        )
        own = member.method
        if own is not None and own is not settings.method and own in SPLIT_METHODS:
            add(
                f"{at}.method",
                f"a member may use its own method only to size itself independently "
                f"({', '.join(sorted(m.name for m in INDEPENDENT_METHODS))}); splitting "
                f"methods such as {own.name} are chosen for the whole group",
            )
            continue
        method = effective_method(settings, member)
        if method is AllocationMethod.PERCENTAGE:
            uses_percentage = True
            if member.percentage is None:
                add(f"{at}.percentage", "is required with ALLOCATION_METHOD_PERCENTAGE")
            else:
                percentage_total += member.percentage
        elif method is AllocationMethod.LOT_MULTIPLIER and member.lot_multiplier is None:
            add(f"{at}.lot_multiplier", "is required with ALLOCATION_METHOD_LOT_MULTIPLIER")
        elif method is AllocationMethod.FIXED_LOTS and not member.fixed_lots:
            add(f"{at}.fixed_lots", "is required and > 0 with ALLOCATION_METHOD_FIXED_LOTS")
        elif method is AllocationMethod.PERCENT_RISK:
            risk = member.risk_percent
            if risk is None or not 0 < risk <= HUNDRED:
                add(
                    f"{at}.risk_percent",
                    "is required with ALLOCATION_METHOD_PERCENT_RISK, in (0, 100]",
                )
        elif method is AllocationMethod.EQUITY_RATIO:
            uses_ratio = True
    if uses_percentage and percentage_total != HUNDRED:
        add(
            "members",
            f"the percentages of the members sized by PERCENTAGE sum to {percentage_total}, "
            "not exactly 100",
        )
    has_fixed = settings.reference_equity is not None
    has_account = bool(settings.reference_account_id)
    if uses_ratio and not (has_fixed or has_account):
        add(
            "allocation.reference_equity",
            "EQUITY_RATIO needs a reference: reference_equity or reference_account_id",
        )
    if has_fixed and has_account:
        add(
            "allocation.reference_account_id",
            "set reference_equity or reference_account_id, not both",
        )
    return found
