# The frozen reference: gateway/domain/allocation.py as it was before the columnar fast path,
# copied verbatim. tests/unit/test_allocation_reference.py checks that allocate() still gives
# exactly what this gives. Never edit it to make that test pass.
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
"""

from __future__ import annotations

import enum
import functools
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from fractions import Fraction
from typing import TYPE_CHECKING, NamedTuple

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
        return _allocate(request, members)


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
    allocated = _tidy(exposure / master_contract, request.symbol.volume_step)
    return Allocation(
        method=settings.method,
        below_min_policy=settings.below_min_policy,
        requested_volume=request.volume,
        allocated_volume=allocated,
        unallocated_volume=_tidy(request.volume - allocated, request.symbol.volume_step),
        snapshot_time=request.snapshot_time,
        lines=ordered,
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
    return tuple(-ord(ch) for ch in text)
