"""The allocation methods: which share the master volume and which size each member on its
own, each member's method and basis (the value its volume is computed from), and the orders
a method refuses rather than fall back silently."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from decimal import Decimal
from itertools import repeat

from gateway.domain.accounts import (
    AccountSnapshot,
    AllocationMethod,
    AllocationSettings,
    GroupMember,
)
from gateway.domain.allocation.records import AllocationRequest
from gateway.domain.errors import FailedPrecondition

SPLIT_METHODS = frozenset(
    {
        AllocationMethod.EQUITY,
        AllocationMethod.BALANCE,
        AllocationMethod.FREE_MARGIN,
        AllocationMethod.EQUAL,
        AllocationMethod.PERCENTAGE,
    }
)
INDEPENDENT_METHODS = frozenset(
    {
        AllocationMethod.LOT_MULTIPLIER,
        AllocationMethod.FIXED_LOTS,
        AllocationMethod.EQUITY_RATIO,
        AllocationMethod.PERCENT_RISK,
    }
)

_SNAPSHOT_BASES = {
    AllocationMethod.EQUITY: operator.attrgetter("equity"),
    AllocationMethod.BALANCE: operator.attrgetter("balance"),
    AllocationMethod.FREE_MARGIN: operator.attrgetter("free_margin"),
    AllocationMethod.EQUITY_RATIO: operator.attrgetter("equity"),
    AllocationMethod.PERCENT_RISK: operator.attrgetter("equity"),
}
_SETTINGS_BASES = {
    AllocationMethod.PERCENTAGE: operator.attrgetter("percentage"),
    AllocationMethod.LOT_MULTIPLIER: operator.attrgetter("lot_multiplier"),
    AllocationMethod.FIXED_LOTS: operator.attrgetter("fixed_lots"),
}
_own_method = operator.attrgetter("method")


def effective_method(settings: AllocationSettings, member: GroupMember) -> AllocationMethod:
    """A member's own method if it has one, else the group's."""
    return member.method or settings.method


def methods_of(
    group_method: AllocationMethod,
    account_ids: Sequence[str],
    settings: Sequence[GroupMember],
    *,
    unique_ids: bool,
) -> tuple[AllocationMethod, ...]:
    """Each member's effective method. An account listed twice takes the method of the last
    listing for both."""
    own = tuple(map(_own_method, settings))
    if own.count(None) == len(own):
        return (group_method,) * len(own)
    methods = [method or group_method for method in own]
    if unique_ids:
        return tuple(methods)
    by_account = dict(zip(account_ids, methods, strict=True))
    return tuple(map(by_account.__getitem__, account_ids))


def bases_of(
    methods: Sequence[AllocationMethod],
    snapshots: Sequence[AccountSnapshot | None],
    settings: Sequence[GroupMember],
) -> tuple[Decimal | None, ...]:
    """Each member's basis: equity, balance or free margin for those methods (and equity for
    EQUITY_RATIO and PERCENT_RISK), 1 for EQUAL, the member's percentage, multiplier or fixed
    lots; None where there is none (no snapshot, or the setting is missing)."""
    if not methods:
        return ()
    method = methods[0]
    if methods.count(method) != len(methods):
        return tuple(map(basis_of, methods, snapshots, settings))
    if method is AllocationMethod.EQUAL:
        return (Decimal(1),) * len(methods)
    if method in _SETTINGS_BASES:
        return tuple(map(_SETTINGS_BASES[method], settings))
    if not all(map(operator.is_not, snapshots, repeat(None))):
        return tuple(map(basis_of, methods, snapshots, settings))
    return tuple(map(_SNAPSHOT_BASES[method], snapshots))


def basis_of(
    method: AllocationMethod, snapshot: AccountSnapshot | None, settings: GroupMember
) -> Decimal | None:
    """One member's basis, as bases_of has it."""
    if method is AllocationMethod.EQUAL:
        return Decimal(1)
    if method in _SETTINGS_BASES:
        return _SETTINGS_BASES[method](settings)  # type: ignore[no-any-return]
    if snapshot is None:
        return None
    return _SNAPSHOT_BASES[method](snapshot)  # type: ignore[no-any-return]


def refuse_unsizable(
    request: AllocationRequest,
    account_ids: Sequence[str],
    active: Sequence[bool],
    methods: Sequence[AllocationMethod],
) -> None:
    """Raises FailedPrecondition where an active member's method cannot size the order:
    NO_STOP_LOSS (PERCENT_RISK without a stop loss, naming the members in account id order)
    and REFERENCE_EQUITY_UNAVAILABLE (EQUITY_RATIO without a reference equity)."""
    if request.stop_loss is None and AllocationMethod.PERCENT_RISK in methods:
        at_risk = [
            account_id
            for account_id, is_active, method in zip(account_ids, active, methods, strict=True)
            if is_active and method is AllocationMethod.PERCENT_RISK
        ]
        if at_risk:
            raise FailedPrecondition(
                "PERCENT_RISK sizes a trade by its stop loss and this order has none; members "
                "concerned: " + ", ".join(sorted(at_risk)),
                reason="NO_STOP_LOSS",
            )
    reference = request.reference_equity
    if (
        (reference is None or reference <= 0)
        and AllocationMethod.EQUITY_RATIO in methods
        and any(
            is_active and method is AllocationMethod.EQUITY_RATIO
            for is_active, method in zip(active, methods, strict=True)
        )
    ):
        raise FailedPrecondition(
            "EQUITY_RATIO needs the group's reference equity (a fixed amount, or the equity "
            "of its reference account) and none is available",
            reason="REFERENCE_EQUITY_UNAVAILABLE",
        )
