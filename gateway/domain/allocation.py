"""Sharing a master order's volume over a group's accounts, exact to each account's lot step.

Two kinds of method (docs/allocation.md has the rules with worked examples):

Splitting methods (EQUITY, BALANCE, FREE_MARGIN, EQUAL, PERCENTAGE) share the master volume
between the members that use the group's method, and preserve it whenever the lot steps allow:
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

The common case (members all trading one spec object by the group's method, all able to
trade) is computed on columns rather than candidate objects, with the same results: see the
end of this module, and largest_remainder.py for the split on integers.
"""

from __future__ import annotations

import enum
import functools
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    localcontext,
)
from fractions import Fraction
from itertools import compress, islice, repeat
from typing import TYPE_CHECKING, NamedTuple, TypeVar, cast

from gateway.domain import largest_remainder
from gateway.domain.accounts import (
    AccountSnapshot,
    AllocationMethod,
    AllocationSettings,
    BelowMinPolicy,
    GroupMember,
)
from gateway.domain.decimals import decimal_places, from_steps
from gateway.domain.errors import FailedPrecondition
from gateway.domain.symbols import SymbolSpec

if TYPE_CHECKING:
    # Only named here: pre_trade_risk imports orders, which imports this module.
    from gateway.domain.pre_trade_risk import RiskDecision

_T = TypeVar("_T")
_V = TypeVar("_V")

TARGET_DISPLAY_QUANTUM = Decimal("1E-10")
# Wide enough that products of volumes, equities and contract sizes are always exact.
_EXACT = Context(prec=80)
# Targets are shown, not traded: 28 digits are plenty and divisions stay cheap.
_DISPLAY = Context(prec=28)

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
    SYMBOL_UNAVAILABLE = "SYMBOL_UNAVAILABLE"
    # Pre-trade risk (gateway/domain/risk_allocation.py): a child order was sent smaller than
    # allocated, or not at all; the line's risk_checks say which rules and why.
    RISK_CLIPPED = "RISK_CLIPPED"
    RISK_SKIPPED = "RISK_SKIPPED"


class MemberInput(NamedTuple):
    """One member as the allocation sees it, from one snapshot.

    Named tuples, not frozen dataclasses, for the per-account values: as immutable, and
    ten times cheaper to build for ten thousand accounts.
    """

    account_id: str
    # The broker symbol the member trades, and its spec there (None: not tradable there).
    symbol: str
    spec: SymbolSpec | None
    active: bool
    # The member's money when the order arrived (None: its terminal could not say).
    snapshot: AccountSnapshot | None
    settings: GroupMember
    # PERCENT_RISK: the member's current price on the order's side (ask to buy, bid to sell).
    entry_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class AllocationRequest:
    """What is shared: the master order's volume and what the methods need from it."""

    volume: Decimal
    symbol: SymbolSpec
    settings: AllocationSettings
    snapshot_time: datetime
    stop_loss: Decimal | None = None
    # EQUITY_RATIO: the group's fixed base amount, or its reference account's equity.
    reference_equity: Decimal | None = None


class AllocationLine(NamedTuple):
    account_id: str
    symbol: str
    method: AllocationMethod
    # The value the volume was computed from: equity, balance or free margin for those methods,
    # 1 for EQUAL, the member's percentage, multiplier, fixed lots, or equity (ratio, risk).
    basis: Decimal | None
    target_volume: Decimal
    volume: Decimal
    child_volumes: tuple[Decimal, ...]
    reasons: tuple[AllocationReason, ...]
    snapshot: AccountSnapshot | None = None
    entry_price: Decimal | None = None
    # The contract size of the member's symbol (exposure = volume x contract size).
    contract_size: Decimal | None = None
    # The pre-trade risk decision on each allocated child volume, in order (none when the
    # account was not checked: its group and it have no limits and it is not stopped out).
    risk_checks: tuple[RiskDecision, ...] = ()


@dataclass(frozen=True, slots=True)
class Allocation:
    method: AllocationMethod
    below_min_policy: BelowMinPolicy
    requested_volume: Decimal
    # Both in lots of the master symbol (exposure / its contract size). Independent methods
    # and ROUND_UP_TO_MIN can trade more than requested: unallocated is then negative.
    allocated_volume: Decimal
    unallocated_volume: Decimal
    snapshot_time: datetime
    lines: tuple[AllocationLine, ...]
    reference_equity: Decimal | None = None

    @property
    def child_count(self) -> int:
        return sum(len(line.child_volumes) for line in self.lines)


def effective_method(settings: AllocationSettings, member: GroupMember) -> AllocationMethod:
    """A member's own method if it has one, else the group's."""
    return member.method or settings.method


def allocate(request: AllocationRequest, members: Sequence[MemberInput]) -> Allocation:
    """Shares request.volume over members. Pure and deterministic.

    Raises FailedPrecondition (NO_STOP_LOSS) when a PERCENT_RISK member is asked to size a
    trade without a stop loss, and (REFERENCE_EQUITY_UNAVAILABLE) when EQUITY_RATIO has no
    reference: both refuse the order rather than fall back silently.
    """
    with localcontext(_EXACT):
        # The common case on columns; anything else, refusals included, by candidates.
        allocation = _allocate_columns(request, members)
        return allocation if allocation is not None else _allocate(request, members)


def _allocate(request: AllocationRequest, members: Sequence[MemberInput]) -> Allocation:
    settings = request.settings
    group_method = settings.method
    # effective_method, inline: it runs once per member.
    methods = {m.account_id: m.settings.method or group_method for m in members}
    at_risk = sorted(
        m.account_id
        for m in members
        if m.active and methods[m.account_id] is AllocationMethod.PERCENT_RISK
    )
    if at_risk and request.stop_loss is None:
        raise FailedPrecondition(
            "PERCENT_RISK sizes a trade by its stop loss and this order has none; members "
            "concerned: " + ", ".join(at_risk),
            reason="NO_STOP_LOSS",
        )
    ratio_members = [
        m for m in members if m.active and methods[m.account_id] is AllocationMethod.EQUITY_RATIO
    ]
    if ratio_members and (request.reference_equity is None or request.reference_equity <= 0):
        raise FailedPrecondition(
            "EQUITY_RATIO needs the group's reference equity (a fixed amount, or the equity of "
            "its reference account) and none is available",
            reason="REFERENCE_EQUITY_UNAVAILABLE",
        )

    lines: dict[str, AllocationLine] = {}
    split: list[_Candidate] = []
    independent: list[tuple[MemberInput, AllocationMethod, Decimal]] = []
    terms = _SpecTermsCache()
    group_splits = group_method in SPLIT_METHODS
    for member in members:
        method = methods[member.account_id]
        basis = _basis(method, member)
        reason = _ineligibility(member, method, basis)
        if reason is not None:
            lines[member.account_id] = AllocationLine(
                member.account_id, member.symbol, method, basis, Decimal(0), Decimal(0), (),
                (reason,), member.snapshot, member.entry_price,
            )  # fmt: skip
            continue
        assert basis is not None and member.spec is not None
        # Identity first: hashing an enum member is a Python call, and this runs per member.
        if group_splits if method is group_method else method in SPLIT_METHODS:
            split.append(_Candidate.of(member, method, basis, terms(member.spec)))
        else:
            independent.append((member, method, basis))

    for candidate in _split(split, request):
        lines[candidate.member.account_id] = candidate.line(request)
    for member, method, basis in independent:
        assert member.spec is not None
        lines[member.account_id] = _independent_line(
            member, method, basis, request, terms(member.spec)
        )

    ordered = tuple(lines[account_id] for account_id in sorted(lines))
    master_contract = request.symbol.contract_size
    exposure = sum(
        (line.volume * (line.contract_size or master_contract) for line in ordered), Decimal(0)
    )
    return _allocation(request, ordered, exposure)


def _allocation(
    request: AllocationRequest, lines: tuple[AllocationLine, ...], exposure: Decimal
) -> Allocation:
    """The allocation of `lines`, ordered by account id, which trade `exposure` in all."""
    settings = request.settings
    allocated = _tidy(exposure / request.symbol.contract_size, request.symbol.volume_step)
    return Allocation(
        method=settings.method,
        below_min_policy=settings.below_min_policy,
        requested_volume=request.volume,
        allocated_volume=allocated,
        unallocated_volume=_tidy(request.volume - allocated, request.symbol.volume_step),
        snapshot_time=request.snapshot_time,
        lines=lines,
        reference_equity=request.reference_equity,
    )


def _tidy(value: Decimal, step: Decimal) -> Decimal:
    """A total in plain form: at least the step's decimals, no needless trailing zeros."""
    places = max(decimal_places(step), decimal_places(value.normalize()))
    return value.quantize(Decimal(1).scaleb(-places))


def _basis(method: AllocationMethod, member: MemberInput) -> Decimal | None:
    snapshot, settings = member.snapshot, member.settings
    if method is AllocationMethod.EQUAL:
        return Decimal(1)
    if method is AllocationMethod.PERCENTAGE:
        return settings.percentage
    if method is AllocationMethod.LOT_MULTIPLIER:
        return settings.lot_multiplier
    if method is AllocationMethod.FIXED_LOTS:
        return settings.fixed_lots
    if snapshot is None:
        return None
    if method is AllocationMethod.BALANCE:
        return snapshot.balance
    if method is AllocationMethod.FREE_MARGIN:
        return snapshot.free_margin
    return snapshot.equity  # EQUITY, EQUITY_RATIO, PERCENT_RISK


def _ineligibility(
    member: MemberInput, method: AllocationMethod, basis: Decimal | None
) -> AllocationReason | None:
    if not member.active:
        return AllocationReason.INACTIVE
    if member.snapshot is None:
        # Whatever the method: a terminal that cannot report its account cannot trade either.
        return AllocationReason.TERMINAL_UNAVAILABLE
    if member.spec is None:
        return AllocationReason.SYMBOL_UNAVAILABLE
    if method is AllocationMethod.PERCENT_RISK and member.entry_price is None:
        return AllocationReason.TERMINAL_UNAVAILABLE
    if basis is None or basis <= 0:
        return AllocationReason.NO_BASIS
    return None


class _SpecTerms:
    """What one symbol spec object gives every member trading it, computed once per allocation:
    ten thousand members usually share one or two specs."""

    __slots__ = ("max_units", "min_units", "spec", "step_exposure", "volumes")

    def __init__(self, spec: SymbolSpec) -> None:
        self.spec = spec
        self.step_exposure = spec.volume_step * spec.contract_size
        self.min_units, self.max_units = _step_counts(spec)
        self.volumes: dict[int, tuple[Decimal, tuple[Decimal, ...]]] = {}

    def volumes_of(self, units: int) -> tuple[Decimal, tuple[Decimal, ...]]:
        """`units` steps as a volume, and as the volumes of its child orders."""
        found = self.volumes.get(units)
        if found is None:
            step = self.spec.volume_step
            children = tuple(from_steps(u, step) for u in _split_at_max(units, self.spec))
            found = self.volumes[units] = (from_steps(units, step), children)
        return found


class _SpecTermsCache:
    """Spec terms by the spec object's identity: specs are compared by value elsewhere, but
    a spec's own decimals (their exponents) shape the volumes it produces, so each object gets
    its own terms, and hashing a spec (every field) per member is what this avoids."""

    __slots__ = ("_by_id",)

    def __init__(self) -> None:
        self._by_id: dict[int, _SpecTerms] = {}

    def __call__(self, spec: SymbolSpec) -> _SpecTerms:
        terms = self._by_id.get(id(spec))
        if terms is None:
            terms = self._by_id[id(spec)] = _SpecTerms(spec)
        return terms


# -- splitting methods ---------------------------------------------------------------------


@dataclass(slots=True)
class _Candidate:
    member: MemberInput
    method: AllocationMethod
    basis: Decimal
    spec: SymbolSpec
    terms: _SpecTerms
    max_units: int | None  # the member's max_lots in its steps
    # Filled in by the integer scaling and the split:
    weight: int = 0
    step_int: int = 0
    min_units: int = 0
    units: int = 0
    fixed: bool = False
    reasons: tuple[AllocationReason, ...] = ()
    target: Decimal = field(default=Decimal(0))

    @classmethod
    def of(
        cls, member: MemberInput, method: AllocationMethod, basis: Decimal, terms: _SpecTerms
    ) -> _Candidate:
        spec = terms.spec
        max_lots = member.settings.max_lots
        return cls(
            member,
            method,
            basis,
            spec,
            terms,
            int(max_lots // spec.volume_step) if max_lots is not None else None,
        )

    def line(self, request: AllocationRequest) -> AllocationLine:
        final, children = self.terms.volumes_of(self.units)
        reasons = self.reasons
        if self.units > 0 and not reasons:
            if final < self.target:
                reasons = (AllocationReason.ROUNDED_DOWN,)
            elif final > self.target:
                reasons = (AllocationReason.ROUNDED_UP,)
        if len(children) > 1:
            reasons = (*reasons, AllocationReason.SPLIT_MAX_VOLUME)
        member = self.member
        return AllocationLine(
            member.account_id,
            member.symbol,
            self.method,
            self.basis,
            self.target.quantize(TARGET_DISPLAY_QUANTUM, rounding=ROUND_HALF_EVEN),
            final,
            children,
            reasons,
            member.snapshot,
            None,
            self.spec.contract_size,
        )


def _split(candidates: list[_Candidate], request: AllocationRequest) -> list[_Candidate]:
    if not candidates:
        return candidates
    master = request.symbol
    total_exposure = request.volume * master.contract_size
    total_weight = sum((c.basis for c in candidates), Decimal(0))
    share_of_total = request.volume * master.contract_size
    for c in candidates:
        # The pure proportional share, in the member's own lots, before any skip or clip.
        c.target = _DISPLAY.divide(share_of_total * c.basis, total_weight * c.spec.contract_size)
    # Integers at one common scale: weights, and exposures (total, steps, minimums).
    # The distinct spec objects first (cheap), then by value: the first of equal specs stands
    # for them all, as in a set built in candidate order.
    objects = list({id(c.spec): c.spec for c in candidates}.values())
    specs = set(objects)
    weight_scale = max(decimal_places(c.basis) for c in candidates)
    exposure_scale = max(
        decimal_places(total_exposure),
        *(decimal_places(spec.volume_step * spec.contract_size) for spec in specs),
        *(decimal_places(spec.volume_min * spec.contract_size) for spec in specs),
    )
    total = int(total_exposure.scaleb(exposure_scale))
    per_spec = {
        spec: (
            int((spec.volume_step * spec.contract_size).scaleb(exposure_scale)),
            int(spec.volume_min / spec.volume_step),
        )
        for spec in specs
    }
    per_object = {id(spec): per_spec[spec] for spec in objects}
    for c in candidates:
        c.weight = int(c.basis.scaleb(weight_scale))
        c.step_int, c.min_units = per_object[id(c.spec)]
    # "Smallest" = smallest relative to its own minimum; ties keep the smaller account id
    # (two stable sorts: account id descending, then the ratio ascending).
    candidates.sort(key=_account_id, reverse=True)
    if len(per_spec) == 1:
        candidates.sort(key=_weight)
    else:
        candidates.sort(key=lambda c: (Fraction(c.weight, c.min_units * c.step_int), c.weight))
    _settle(candidates, total, request.settings.below_min_policy)
    return candidates


_account_id = operator.attrgetter("member.account_id")
_weight = operator.attrgetter("weight")


def _settle(candidates: list[_Candidate], total: int, policy: BelowMinPolicy) -> None:
    """Assigns units until no member is over its max_lots or under its minimum."""
    while True:
        free = [c for c in candidates if not c.fixed]
        remaining = max(0, total - sum(c.units * c.step_int for c in candidates if c.fixed))
        _largest_remainder(free, remaining)
        clipped = [c for c in free if c.max_units is not None and c.units > c.max_units]
        if clipped:
            for c in clipped:
                c.units, c.fixed = c.max_units or 0, True
                c.reasons = (AllocationReason.CLIPPED_MAX_LOT,)
            continue
        below = [c for c in free if c.units < c.min_units]
        if not below:
            return
        if policy is BelowMinPolicy.ROUND_UP_TO_MIN:
            for c in below:
                c.units, c.fixed = c.min_units, True
                c.reasons = (AllocationReason.RAISED_TO_MIN,)
            continue
        skip = _fewest_to_skip(free, remaining)
        for c in free[:skip]:
            c.units, c.fixed = 0, True
            c.reasons = (AllocationReason.SKIPPED_BELOW_MIN,)


def _fewest_to_skip(free: list[_Candidate], total: int) -> int:
    """How many of the smallest (list order) must leave for every other to reach its minimum.

    Shares only grow when members leave, so feasibility is monotone in the count, and it is
    found by bisection. Exact shares bound the search: from `high` on, the smallest kept
    member's exact share already reaches its minimum.
    """
    suffix = [0] * (len(free) + 1)
    for i in range(len(free) - 1, -1, -1):
        suffix[i] = suffix[i + 1] + free[i].weight
    high = len(free)
    for k, c in enumerate(free):
        if total * c.weight >= c.min_units * c.step_int * suffix[k]:
            high = k
            break
    uniform = _uniform(free)
    weights = [c.weight for c in free]

    def feasible(skip: int) -> bool:
        kept = free[skip:]
        if uniform:
            # With one spec, units never fall as weight rises: the smallest decides.
            return _smallest_reaches_min(kept, weights[skip:], total, suffix[skip])
        _largest_remainder(kept, total)
        return all(c.units >= c.min_units for c in kept)

    low = 0
    while low < high:
        middle = (low + high) // 2
        if feasible(middle):
            high = middle
        else:
            low = middle + 1
    return low


def _smallest_reaches_min(
    kept: list[_Candidate], weights: list[int], total: int, total_weight: int
) -> bool:
    """Whether kept[0] gets its minimum in a largest-remainder split (one spec for all), in
    one pass without sorting: it needs its floor, or a leftover step by remainder rank.

    `weights` are kept's weights and total_weight their sum. The floors are not summed one by
    one: they are (total x total_weight - the remainders) / denominator, exactly."""
    if not kept:
        return True
    first = kept[0]
    step = first.step_int
    denominator = total_weight * step
    floor, remainder = divmod(total * first.weight, denominator)
    if floor >= first.min_units:
        return True
    if floor < first.min_units - 1:
        return False
    rests = [total * w % denominator for w in weights]
    given = (total * total_weight - sum(rests)) // denominator
    ahead = sum(map(remainder.__lt__, rests))
    if rests.count(remainder) > 1:
        mine = (first.weight, _descending(first.member.account_id))
        ahead += sum(
            1
            for c, rest in zip(kept, rests, strict=True)
            if rest == remainder and (c.weight, _descending(c.member.account_id)) > mine
        )
    leftover_steps = (total - given * step) // step
    return ahead < leftover_steps


def _uniform(candidates: list[_Candidate]) -> bool:
    if not candidates:
        return True
    step, minimum = candidates[0].step_int, candidates[0].min_units
    return all(c.step_int == step and c.min_units == minimum for c in candidates)


def _largest_remainder(candidates: list[_Candidate], total: int) -> None:
    """Floors in each member's own steps, then one step each to the largest remainders."""
    if not candidates:
        return
    total_weight = sum(c.weight for c in candidates)
    if total <= 0 or total_weight <= 0:
        for c in candidates:
            c.units = 0
        return
    if _uniform(candidates):
        _largest_remainder_uniform(candidates, total, total_weight)
        return
    given = 0
    remainders: list[tuple[Fraction, int, str, _Candidate]] = []
    append = remainders.append
    for c in candidates:
        denominator = total_weight * c.step_int
        share, remainder = divmod(total * c.weight, denominator)
        c.units = share
        given += share * c.step_int
        append((-Fraction(remainder, denominator), -c.weight, c.member.account_id, c))
    left = total - given
    if left <= 0:
        return
    remainders.sort()
    for entry in remainders:
        candidate = entry[3]
        if candidate.step_int <= left:
            candidate.units += 1
            left -= candidate.step_int
            if left == 0:
                return


def _largest_remainder_uniform(candidates: list[_Candidate], total: int, total_weight: int) -> None:
    """The same split when every member has the same step: remainders compare as integers,
    and exactly left / step members get one more step, so only those are ordered (by
    remainder, then larger weight, then smaller account id)."""
    step = candidates[0].step_int
    denominator = total_weight * step
    rests: list[int] = []
    append = rests.append
    given = 0
    for c in candidates:
        share, rest = divmod(total * c.weight, denominator)
        c.units = share
        given += share
        append(rest)
    winners = (total - given * step) // step
    if winners <= 0:
        return
    # The winners' smallest remainder: all above it win, ties on it are ranked.
    threshold = sorted(rests, reverse=True)[min(winners, len(rests)) - 1]
    tied: list[_Candidate] = []
    for c, rest in zip(candidates, rests, strict=True):
        if rest > threshold:
            c.units += 1
            winners -= 1
        elif rest == threshold:
            tied.append(c)
    tied.sort(key=_by_weight_then_id)
    for c in tied[:winners]:
        c.units += 1


def _by_weight_then_id(c: _Candidate) -> tuple[int, str]:
    return -c.weight, c.member.account_id


# -- independent methods -------------------------------------------------------------------


def _independent_line(
    member: MemberInput,
    method: AllocationMethod,
    basis: Decimal,
    request: AllocationRequest,
    terms: _SpecTerms,
) -> AllocationLine:
    spec = terms.spec
    # The exact volume as numerator / denominator, both exact products: the floor in steps is
    # then an exact integer division, whatever the digits.
    master_contract, contract = request.symbol.contract_size, spec.contract_size
    if method is AllocationMethod.LOT_MULTIPLIER:
        numerator, denominator = request.volume * basis * master_contract, contract
    elif method is AllocationMethod.FIXED_LOTS:
        numerator, denominator = basis, Decimal(1)
    elif method is AllocationMethod.EQUITY_RATIO:
        assert request.reference_equity is not None
        numerator = request.volume * basis * master_contract
        denominator = request.reference_equity * contract
    else:  # PERCENT_RISK: lots = equity x r% / (distance in ticks x tick value per lot)
        assert request.stop_loss is not None and member.entry_price is not None
        risk = member.settings.risk_percent or Decimal(0)
        distance = abs(member.entry_price - request.stop_loss)
        if distance == 0:
            return AllocationLine(
                member.account_id, member.symbol, method, basis, Decimal(0), Decimal(0), (),
                (AllocationReason.NO_BASIS,), member.snapshot, member.entry_price,
            )  # fmt: skip
        numerator = basis * risk * spec.tick_size
        denominator = 100 * distance * spec.tick_value

    whole, rest = divmod(numerator, denominator * spec.volume_step)
    units = int(whole)
    target = _DISPLAY.divide(numerator, denominator)
    reasons: list[AllocationReason] = []
    if rest:
        reasons.append(AllocationReason.ROUNDED_DOWN)
    min_units = terms.min_units
    max_lots = member.settings.max_lots
    if max_lots is not None and units * spec.volume_step > max_lots:
        units = int(max_lots // spec.volume_step)
        reasons = [AllocationReason.CLIPPED_MAX_LOT]
    if units < min_units:
        if request.settings.below_min_policy is BelowMinPolicy.ROUND_UP_TO_MIN and target > 0:
            units, reasons = min_units, [AllocationReason.RAISED_TO_MIN]
        else:
            units, reasons = 0, [AllocationReason.SKIPPED_BELOW_MIN]
    volume, children = terms.volumes_of(units)
    if len(children) > 1:
        reasons.append(AllocationReason.SPLIT_MAX_VOLUME)
    return AllocationLine(
        account_id=member.account_id,
        symbol=member.symbol,
        method=method,
        basis=basis,
        target_volume=target.quantize(TARGET_DISPLAY_QUANTUM, rounding=ROUND_HALF_EVEN),
        volume=volume,
        child_volumes=children,
        reasons=tuple(reasons),
        snapshot=member.snapshot,
        entry_price=member.entry_price,
        contract_size=spec.contract_size,
    )


def _split_at_max(units: int, spec: SymbolSpec) -> list[int]:
    """One child order per volume_max at most, near-equal so none falls below volume_min."""
    if units == 0:
        return []
    max_units = _step_counts(spec)[1]
    if units <= max_units:
        return [units]
    parts = -(-units // max_units)
    base, extra = divmod(units, parts)
    return [base + 1] * extra + [base] * (parts - extra)


@functools.lru_cache(maxsize=1024)
def _step_counts(spec: SymbolSpec) -> tuple[int, int]:
    """volume_min and volume_max of a symbol in its own steps."""
    return int(spec.volume_min // spec.volume_step), int(spec.volume_max // spec.volume_step)


def _descending(text: str) -> tuple[int, ...]:
    """A key that sorts texts in descending order. The end marks 1, above every character's
    -ord, so a prefix sorts after what extends it ("acc_12" before "acc_1"), as in descending
    string order: without it the two disagreed with the tie-break of the split, and a
    below-minimum skip between them never settled."""
    return (*(-ord(ch) for ch in text), 1)


# -- the common case, by columns -----------------------------------------------------------
#
# Ten thousand members trading one spec object by the group's method, all able to trade: the
# same results as above, computed field by field over tuples with map() and zip() (the loops
# run in C) instead of through an object and a few dozen Python calls per member, each line
# built once. Tuples rather than lists: once the garbage collector has seen that one holds no
# container, it stops scanning it, and building ten thousand lines triggers many collections.

# The display rounding of targets: quantize(TARGET_DISPLAY_QUANTUM, ROUND_HALF_EVEN) in _EXACT.
_HALF_EVEN = Context(prec=_EXACT.prec, rounding=ROUND_HALF_EVEN)
# An exact division or an exception, never a rounded quotient.
_EXACT_OR_RAISE = Context(prec=_EXACT.prec, traps=[Inexact, InvalidOperation, DivisionByZero])

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


def _field(name: str) -> operator.itemgetter[int]:
    """A MemberInput field by its index: half the cost of getting it by name."""
    return operator.itemgetter(MemberInput._fields.index(name))


_account_id_of = _field("account_id")
_symbol_of = _field("symbol")
_spec_of = _field("spec")
_active_of = _field("active")
_snapshot_of = _field("snapshot")
_settings_of = _field("settings")
_entry_price_of = _field("entry_price")
_own_method = operator.attrgetter("method")
_own_max_lots = operator.attrgetter("max_lots")
_risk_percent = operator.attrgetter("risk_percent")


class _Columns(NamedTuple):
    """The members field by field, in account id order, and the one spec they all trade."""

    account_ids: tuple[str, ...]
    symbols: tuple[str, ...]
    snapshots: tuple[AccountSnapshot, ...]
    settings: tuple[GroupMember, ...]
    entry_prices: tuple[Decimal | None, ...]  # for the independent methods only
    bases: tuple[Decimal | None, ...]
    spec: SymbolSpec


def _allocate_columns(
    request: AllocationRequest, members: Sequence[MemberInput]
) -> Allocation | None:
    """The allocation of the common case, or None for any other, which _allocate handles:
    members that do not all trade one spec object, that are inactive, without a snapshot or
    a positive basis, that have a method of their own or a max_lots, or share an account id;
    and orders that _allocate refuses."""
    columns = _columns(request, members)
    if columns is None:
        return None
    if request.settings.method in SPLIT_METHODS:
        split = _split_columns(request, columns)
    else:
        split = _independent_columns(request, columns)
    if split is None:
        return None
    lines, units = split
    # Every line trades the one spec: the exposure is all its steps x its contract size.
    spec = columns.spec
    exposure = from_steps(sum(units), spec.volume_step) * spec.contract_size
    return _allocation(request, lines, exposure)


def _columns(request: AllocationRequest, members: Sequence[MemberInput]) -> _Columns | None:
    if not members:
        return None
    ids = tuple(map(_account_id_of, members))
    # Strictly ascending: in the order of the lines already, and no id twice.
    if not all(map(operator.lt, ids, islice(ids, 1, None))):
        if len(set(ids)) != len(ids):
            return None
        members = [members[i] for i in sorted(range(len(ids)), key=ids.__getitem__)]
        ids = tuple(map(_account_id_of, members))
    spec = members[0].spec
    if (
        spec is None
        or not all(map(operator.is_, map(_spec_of, members), repeat(spec)))
        or not all(map(_active_of, members))
    ):
        return None
    snapshots = tuple(map(_snapshot_of, members))
    settings = tuple(map(_settings_of, members))
    if not all(map(operator.is_not, snapshots, repeat(None))) or not _group_method_only(
        request.settings.method, settings
    ):
        return None
    method = request.settings.method
    bases = _bases(method, snapshots, settings)
    symbols = tuple(map(_symbol_of, members))
    entry_prices = () if method in SPLIT_METHODS else tuple(map(_entry_price_of, members))
    return _Columns(ids, symbols, snapshots, settings, entry_prices, bases, spec)


def _group_method_only(method: AllocationMethod, settings: tuple[GroupMember, ...]) -> bool:
    """Whether every member uses the group's method, without a max_lots."""
    if tuple(map(_own_max_lots, settings)).count(None) != len(settings):
        return False
    methods = tuple(map(_own_method, settings))
    return methods.count(None) == len(methods) or all(own in (None, method) for own in methods)


def _bases(
    method: AllocationMethod,
    snapshots: tuple[AccountSnapshot, ...],
    settings: tuple[GroupMember, ...],
) -> tuple[Decimal | None, ...]:
    """Each member's basis, as _basis has it (checked by each method's path, on the way)."""
    if method is AllocationMethod.EQUAL:
        return (Decimal(1),) * len(snapshots)
    if method in _SETTINGS_BASES:
        return tuple(map(_SETTINGS_BASES[method], settings))
    return tuple(map(_SNAPSHOT_BASES[method], snapshots))


def _positive(bases: tuple[Decimal | None, ...]) -> tuple[Decimal, ...] | None:
    """The bases if every member has one above 0 (else its line says NO_BASIS), or None."""
    try:
        lowest = min(bases)  # type: ignore[type-var]
    except TypeError:  # None, which does not compare
        return None
    return cast("tuple[Decimal, ...]", bases) if lowest > 0 else None  # type: ignore[operator]


def _lines(
    request: AllocationRequest,
    columns: _Columns,
    targets: tuple[Decimal, ...],
    units: list[int],
    volumes: _VolumesByUnits,
    reasons: Iterable[tuple[AllocationReason, ...]],
    entry_prices: Iterable[Decimal | None],
) -> tuple[AllocationLine, ...]:
    """The lines, each built once, in C: tuple.__new__ is what AllocationLine's own __new__
    (a Python function) calls."""
    return tuple(
        map(
            tuple.__new__,
            repeat(AllocationLine),
            zip(
                columns.account_ids,
                columns.symbols,
                repeat(request.settings.method),
                columns.bases,
                map(_HALF_EVEN.quantize, targets, repeat(TARGET_DISPLAY_QUANTUM)),
                map(volumes.volume.__getitem__, units),
                map(volumes.children.__getitem__, units),
                reasons,
                columns.snapshots,
                entry_prices,
                repeat(columns.spec.contract_size),
                repeat(()),
            ),
        )
    )


# -- splitting methods, by columns ---------------------------------------------------------


def _split_columns(
    request: AllocationRequest, columns: _Columns
) -> tuple[tuple[AllocationLine, ...], list[int]] | None:
    """The lines _split and _Candidate.line give, and each member's units; None where the
    weights cannot be made exact integers (the general path then splits)."""
    bases, spec = _positive(columns.bases), columns.spec
    if bases is None:
        return None
    total_weight = sum(bases, Decimal(0))
    weights = _weights(bases, total_weight)
    if weights is None:
        return None
    settled = _split_units(request, columns, weights)
    if settled is None:
        return None
    units, fixed = settled
    share_of_total = request.volume * request.symbol.contract_size
    targets = _per_object(
        _proportional_targets(share_of_total, total_weight * spec.contract_size), bases
    )
    volumes = _VolumesByUnits(spec)
    finals = tuple(map(volumes.volume.__getitem__, units))
    # How each volume compares with its target (1 above, -1 below), as _Candidate.line does.
    above = map(operator.gt, finals, targets)
    rounding = map(operator.sub, above, map(operator.lt, finals, targets))
    reasons: list[tuple[AllocationReason, ...]] = list(
        map(operator.getitem, map(volumes.by_rounding.__getitem__, units), rounding)
    )
    fixed_reason = (
        AllocationReason.RAISED_TO_MIN
        if request.settings.below_min_policy is BelowMinPolicy.ROUND_UP_TO_MIN
        else AllocationReason.SKIPPED_BELOW_MIN
    )
    for member in fixed:
        reasons[member] = (fixed_reason, *volumes.by_rounding[units[member]][0])
    return _lines(request, columns, targets, units, volumes, reasons, repeat(None)), units


def _split_units(
    request: AllocationRequest, columns: _Columns, weights: tuple[int, ...]
) -> tuple[list[int], list[int]] | None:
    """Each member's units as _split and _settle give them on integers (by
    largest_remainder.settle), and the members fixed below their minimum (skipped or
    raised); None where the general path would never finish."""
    spec, master = columns.spec, request.symbol
    total_exposure = request.volume * master.contract_size
    step_exposure = spec.volume_step * spec.contract_size
    scale = max(
        decimal_places(total_exposure),
        decimal_places(step_exposure),
        decimal_places(spec.volume_min * spec.contract_size),
    )
    min_units = int(spec.volume_min / spec.volume_step)
    raise_to_min = request.settings.below_min_policy is BelowMinPolicy.ROUND_UP_TO_MIN
    # By weight ascending, equal weights by account id descending, as _split orders them:
    # sorting the id-ordered members by weight descending keeps equal weights in id order,
    # and reversing that flips both.
    count = len(weights)
    order = sorted(range(count), key=weights.__getitem__, reverse=True)
    order.reverse()
    ids = columns.account_ids
    settled = largest_remainder.settle(
        tuple(map(weights.__getitem__, order)),
        lambda position: ids[order[position]],
        int(total_exposure.scaleb(scale)),
        int(step_exposure.scaleb(scale)),
        min_units,
        raise_to_min,
    )
    if settled is None:
        return None
    fixed, free_units = settled
    units = [min_units if raise_to_min else 0] * count
    for member, member_units in zip(order[fixed:], free_units, strict=True):
        units[member] = member_units
    return units, order[:fixed]


def _weights(bases: tuple[Decimal, ...], total_weight: Decimal) -> tuple[int, ...] | None:
    """The bases as integers at _split's common scale, their most decimals, or None when
    their sum was rounded. (An exact sum keeps the most decimals of its terms.)"""
    _, digits, exponent = total_weight.as_tuple()
    if len(digits) >= _EXACT.prec or not isinstance(exponent, int):
        return None
    places = max(0, -exponent)

    def scaled(values: tuple[Decimal, ...]) -> tuple[int, ...]:
        return tuple(map(int, map(_EXACT.scaleb, values, repeat(places))))

    return _per_object(scaled, bases)


def _proportional_targets(
    share_of_total: Decimal, denominator: Decimal
) -> Callable[[tuple[Decimal, ...]], tuple[Decimal, ...]]:
    """_split's targets, share_of_total x basis / denominator to 28 digits, for many bases."""

    def targets(bases: tuple[Decimal, ...]) -> tuple[Decimal, ...]:
        if share_of_total:
            try:
                divisor = _EXACT_OR_RAISE.divide(denominator, share_of_total)
            except (Inexact, InvalidOperation):
                pass
            else:
                # The same exact quotient rounded once the same way, for one division per
                # basis instead of a product and a division.
                return tuple(map(_DISPLAY.divide, bases, repeat(divisor)))
        products = map(_EXACT.multiply, repeat(share_of_total), bases)
        return tuple(map(_DISPLAY.divide, products, repeat(denominator)))

    return targets


def _per_object(
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


# -- independent methods, by columns -------------------------------------------------------


def _independent_columns(
    request: AllocationRequest, columns: _Columns
) -> tuple[tuple[AllocationLine, ...], list[int]] | None:
    """The lines _independent_line gives, or None for an order _allocate refuses or where a
    member has no basis (its stop distance is 0)."""
    sizes = _independent_sizes(request, columns)
    if sizes is None:
        return None
    numerators, denominators = sizes
    spec = columns.spec
    min_units = _step_counts(spec)[0]
    volumes = _VolumesByUnits(spec)
    steps = map(_EXACT.multiply, denominators, repeat(spec.volume_step))
    quotients = tuple(map(_EXACT.divmod, numerators, steps))
    units = list(map(int, map(_whole, quotients)))
    reasons = list(map(_ROUNDED_DOWN_IF.__getitem__, map(bool, map(_rest, quotients))))
    targets = tuple(map(_DISPLAY.divide, numerators, denominators))
    raise_to_min = request.settings.below_min_policy is BelowMinPolicy.ROUND_UP_TO_MIN
    below_min = list(compress(range(len(units)), map(min_units.__gt__, units)))
    for member in below_min:
        if raise_to_min and targets[member] > 0:
            units[member], reasons[member] = min_units, (AllocationReason.RAISED_TO_MIN,)
        else:
            units[member], reasons[member] = 0, (AllocationReason.SKIPPED_BELOW_MIN,)
    with_split = map(operator.add, reasons, volumes.split_reasons(units))
    return _lines(
        request, columns, targets, units, volumes, with_split, columns.entry_prices
    ), units


_whole = operator.itemgetter(0)
_rest = operator.itemgetter(1)
_ROUNDED_DOWN_IF: tuple[tuple[AllocationReason, ...], ...] = ((), (AllocationReason.ROUNDED_DOWN,))


def _independent_sizes(
    request: AllocationRequest, columns: _Columns
) -> tuple[tuple[Decimal, ...], tuple[Decimal, ...]] | None:
    """Each member's volume as numerator / denominator (exact products both), as
    _independent_line has them; None where it would not compute one."""
    method = request.settings.method
    spec, bases = columns.spec, _positive(columns.bases)
    if bases is None:
        return None
    count = len(bases)
    if method is AllocationMethod.FIXED_LOTS:
        return bases, (Decimal(1),) * count
    if method is AllocationMethod.PERCENT_RISK:
        return _percent_risk_sizes(request, columns, bases)
    denominator = spec.contract_size
    if method is AllocationMethod.EQUITY_RATIO:
        reference = request.reference_equity
        if reference is None or reference <= 0:
            return None
        denominator = reference * spec.contract_size
    # LOT_MULTIPLIER and EQUITY_RATIO: the master's exposure x the basis.
    exposure = request.volume * request.symbol.contract_size
    return tuple(map(_EXACT.multiply, bases, repeat(exposure))), (denominator,) * count


def _percent_risk_sizes(
    request: AllocationRequest, columns: _Columns, equities: tuple[Decimal, ...]
) -> tuple[tuple[Decimal, ...], tuple[Decimal, ...]] | None:
    """equity x r% x tick size over the stop distance x 100 x tick value, for each member."""
    stop_loss, spec = request.stop_loss, columns.spec
    entry_prices = columns.entry_prices
    if stop_loss is None or not all(map(operator.is_not, entry_prices, repeat(None))):
        return None
    prices = cast("tuple[Decimal, ...]", entry_prices)
    distances = tuple(map(_EXACT.abs, map(_EXACT.subtract, prices, repeat(stop_loss))))
    if not all(distances):
        return None
    risks = tuple(map(_risk_percent, columns.settings))
    if not all(map(operator.is_not, risks, repeat(None))):
        risks = tuple(risk or Decimal(0) for risk in risks)
    risked = map(_EXACT.multiply, equities, risks)
    numerators = tuple(map(_EXACT.multiply, risked, repeat(spec.tick_size)))
    per_lot = map(_EXACT.multiply, repeat(Decimal(100)), distances)
    return numerators, tuple(map(_EXACT.multiply, per_lot, repeat(spec.tick_value)))


# -- volumes by units ------------------------------------------------------------------------


class _VolumesByUnits:
    """What each unit count met in one allocation becomes on one spec, computed once: the
    volume, the child volumes (_split_at_max), and a split line's reasons by how its volume
    compares with its target (index 0: on it, 1: above, -1: below)."""

    __slots__ = ("by_rounding", "children", "max_units", "volume")

    def __init__(self, spec: SymbolSpec) -> None:
        self.max_units = _step_counts(spec)[1]
        self.volume = _Memo(functools.partial(from_steps, step=spec.volume_step))
        self.children = _Memo(self._children)
        self.by_rounding = _Memo(self._by_rounding)

    def _children(self, units: int) -> tuple[Decimal, ...]:
        # _split_at_max, with the child volumes taken from (and kept in) the volume memo.
        if units <= self.max_units:
            return (self.volume[units],) if units else ()
        parts = -(-units // self.max_units)
        base, extra = divmod(units, parts)
        return (self.volume[base + 1],) * extra + (self.volume[base],) * (parts - extra)

    def split_reasons(self, units: Iterable[int]) -> Iterator[tuple[AllocationReason, ...]]:
        """(SPLIT_MAX_VOLUME,) for each unit count above volume_max, else ()."""
        return map(_SPLIT_IF.__getitem__, map(self.max_units.__lt__, units))

    def _by_rounding(self, units: int) -> tuple[tuple[AllocationReason, ...], ...]:
        split = _SPLIT_IF[units > self.max_units]
        if units == 0:
            return (split, split, split)
        return (
            split,
            (AllocationReason.ROUNDED_UP, *split),
            (AllocationReason.ROUNDED_DOWN, *split),
        )


_SPLIT_IF: tuple[tuple[AllocationReason, ...], ...] = ((), (AllocationReason.SPLIT_MAX_VOLUME,))


class _Memo(dict[int, _V]):
    """A dict that computes a missing value once; lookups of known keys stay in C."""

    def __init__(self, compute: Callable[[int], _V]) -> None:
        super().__init__()
        self._compute = compute

    def __missing__(self, key: int) -> _V:
        value = self[key] = self._compute(key)
        return value
