"""Sharing a master order's volume over a group's accounts, exact to each account's lot step.

Two kinds of method (docs/allocation.md has the rules with worked examples):

Splitting methods (EQUITY, BALANCE, FREE_MARGIN, EQUAL, PERCENTAGE) share the master volume
between the members that use them, and preserve it whenever the lot steps allow:
1. Everything is counted in integers: exposure (lots x contract size) scaled to whole units, so
   members trading a mapped symbol with another contract size get the same exposure.
2. Each member's exact share is total x weight / sum of weights. It gets the floor of that in its
   own lot steps; the steps left over go one each to the largest remainders (ties: larger
   weight, then smaller account id). Identical specs (the usual case) make this the
   largest-remainder (Hare-Niemeyer) method, and the sum is exact.
3. A member over its own max_lots is clipped there (CLIPPED_MAX_LOT) and the rest re-split.
4. A member below its symbol's volume_min is, under SKIP, left out and its share re-split over
   the others; the members smallest relative to their minimum leave first, and as few as
   possible. Under ROUND_UP_TO_MIN it trades volume_min and the others share the rest.

Independent methods (LOT_MULTIPLIER, FIXED_LOTS, EQUITY_RATIO, PERCENT_RISK) give each member
its own volume, rounded DOWN to its step (never more than the rule gives: for PERCENT_RISK
never more risk), then the same minimum policy and max_lots clip. A member may use an
independent method while the group splits: it trades its own volume besides the split.

Then any volume above a symbol's volume_max becomes several child orders of near-equal size.
The result depends only on the inputs, not on the order the members are listed in.

The modules, by concept:
- records.py: what is read (MemberInput, AllocationRequest) and given (Allocation, its lines
  and their reasons);
- methods.py: the methods, each member's method and basis, and the orders they refuse;
- members.py: the members column by column, who cannot trade and why, who splits;
- split.py and independent.py: the lines of the two kinds of method;
- largest_remainder.py: the split on integers, clips and minimums included, for any members;
  largest_remainder_counted.py: the same, counted, for members on one step without max_lots;
- limits.py: volume limits in steps, and the child orders a volume is sent as;
- decimal_contexts.py: the precision of exact products and of shown targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, localcontext

from gateway.domain.accounts import AllocationMethod
from gateway.domain.allocation.decimal_contexts import EXACT
from gateway.domain.allocation.independent import IndependentLines, independent_lines
from gateway.domain.allocation.members import GroupShares, MemberColumns, shares_of
from gateway.domain.allocation.methods import (
    INDEPENDENT_METHODS,
    SPLIT_METHODS,
    bases_of,
    effective_method,
    methods_of,
    refuse_unsizable,
)
from gateway.domain.allocation.records import (
    TARGET_DISPLAY_QUANTUM,
    Allocation,
    AllocationLine,
    AllocationReason,
    AllocationRequest,
    MemberInput,
    allocation_of,
    line_exposure,
    unable_line,
)
from gateway.domain.allocation.split import SplitLines, split_lines

__all__ = [
    "INDEPENDENT_METHODS",
    "SPLIT_METHODS",
    "TARGET_DISPLAY_QUANTUM",
    "Allocation",
    "AllocationLine",
    "AllocationReason",
    "AllocationRequest",
    "MemberInput",
    "allocate",
    "effective_method",
]


def allocate(request: AllocationRequest, members: Sequence[MemberInput]) -> Allocation:
    """Shares request.volume over members. Pure and deterministic.

    Raises FailedPrecondition (NO_STOP_LOSS) when a PERCENT_RISK member is asked to size a
    trade without a stop loss, and (REFERENCE_EQUITY_UNAVAILABLE) when EQUITY_RATIO has no
    reference: both refuse the order rather than fall back silently.
    """
    with localcontext(EXACT):
        if not members:
            return allocation_of(request, (), Decimal(0))
        columns = MemberColumns.of(members)
        group_method = request.settings.method
        methods = methods_of(
            group_method, columns.account_ids, columns.settings, unique_ids=columns.unique_ids
        )
        refuse_unsizable(request, columns.account_ids, columns.active, methods)
        bases = bases_of(methods, columns.snapshots, columns.settings)
        shares = shares_of(request, columns, methods, bases)
        split = None
        if shares.split is not None:
            whole_group = len(shares.split.positions) == len(methods) and methods.count(
                group_method
            ) == len(methods)
            split = split_lines(request, shares.split, whole_group=whole_group)
        independent = None
        if shares.independent is not None:
            independent = independent_lines(request, shares.independent)
        if not columns.unique_ids:
            lines = _last_listed_lines(columns, methods, bases, shares, split, independent)
            return allocation_of(request, lines, line_exposure(lines, request.symbol.contract_size))
        if not shares.unable and (split is None or independent is None):
            only = split or independent
            assert only is not None
            return allocation_of(request, only.lines, only.exposure)
        by_position: list[AllocationLine | None] = [None] * len(methods)
        exposure = Decimal(0)
        for share, given in ((shares.split, split), (shares.independent, independent)):
            if share is not None and given is not None:
                for position, line in zip(share.positions, given.lines, strict=True):
                    by_position[position] = line
                exposure += given.exposure
        for position, reason in shares.unable:
            by_position[position] = unable_line(
                columns.member(position), methods[position], bases[position], reason
            )
        return allocation_of(request, tuple(by_position), exposure)  # type: ignore[arg-type]


def _last_listed_lines(
    columns: MemberColumns,
    methods: tuple[AllocationMethod, ...],
    bases: tuple[Decimal | None, ...],
    shares: GroupShares,
    split: SplitLines | None,
    independent: IndependentLines | None,
) -> tuple[AllocationLine, ...]:
    """One line per account id when an account is listed more than once: each listing is
    allocated, and the line kept is the last one written when lines are written in this order:
    those that cannot trade, those that split (in settling order), the independent ones."""
    lines: dict[str, AllocationLine] = {}
    for position, reason in shares.unable:
        line = unable_line(columns.member(position), methods[position], bases[position], reason)
        lines[line.account_id] = line
    if shares.split is not None and split is not None:
        for member in split.settled:
            line = split.lines[member]
            lines[line.account_id] = line
    if independent is not None:
        for line in independent.lines:
            lines[line.account_id] = line
    return tuple(lines[account_id] for account_id in sorted(lines))
