"""allocate() gives exactly what the frozen reference (reference_allocation.py) gives.

The fast columnar path and the general path must both agree with it field for field, down to
each Decimal's exponent: lines are compared as tuples of strings.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain.accounts import (
    AccountSnapshot,
    AllocationMethod,
    AllocationSettings,
    BelowMinPolicy,
    GroupMember,
)
from gateway.domain.allocation import (
    AllocationRequest,
    MemberInput,
    allocate,
    largest_remainder_counted,
)
from gateway.domain.errors import FailedPrecondition
from gateway.domain.symbols import SymbolSpec
from tests.unit import reference_allocation as reference

D = Decimal
T = TypeVar("T")
M = AllocationMethod
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
EURUSD = SymbolSpec("EURUSD", 5, D(100000), D("0.01"), D("0.01"), D(100), D("0.00001"), D(1))
# The same rules written with other exponents: volumes take the step's exponent.
EURUSD_WIDE = SymbolSpec(
    "EURUSD", 5, D("100000.0"), D("0.010"), D("0.010"), D("100.00"), D("0.00001"), D(1)
)
EURUSD_MINI = SymbolSpec(
    "EURUSD.m", 5, D(10000), D("0.1"), D("0.1"), D(500), D("0.00001"), D("0.1")
)
US500 = SymbolSpec("US500", 2, D(1), D("0.1"), D("0.1"), D(500), D("0.01"), D("0.01"))
XAUUSD = SymbolSpec("XAUUSD", 2, D(100), D("0.01"), D("0.01"), D(50), D("0.01"), D(1))
COARSE_MIN = SymbolSpec("XYZ", 2, D(100), D("0.10"), D("0.01"), D("2.00"), D("0.01"), D(1))
# A low volume_max: most volumes become several child orders.
LOW_MAX = SymbolSpec("LOW", 2, D(100000), D("0.01"), D("0.01"), D("2.50"), D("0.00001"), D(1))
# A contract size that does not divide the master's: exposures are not whole lots.
ODD = SymbolSpec("ODD", 3, D(30000), D("0.02"), D("0.01"), D(20), D("0.001"), D("0.3"))
# The symbols members may trade for each master symbol (mapped, with their own contracts).
FAMILIES = {
    EURUSD: [EURUSD, EURUSD_WIDE, EURUSD_MINI, LOW_MAX, ODD],
    US500: [US500],
    XAUUSD: [XAUUSD, COARSE_MIN],
    COARSE_MIN: [COARSE_MIN, XAUUSD],
}


def _text(value: object) -> object:
    """Decimals by their text (so 0.10 and 0.1 differ), enums by value, tuples item by item."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple):
        return tuple(_text(item) for item in value)
    if hasattr(value, "value") and not isinstance(value, AccountSnapshot):
        return value.value
    return value


def _fields(allocation: Any) -> tuple[object, ...]:
    return (
        allocation.method,
        allocation.below_min_policy,
        _text(allocation.requested_volume),
        _text(allocation.allocated_volume),
        _text(allocation.unallocated_volume),
        allocation.snapshot_time,
        _text(allocation.reference_equity),
        tuple(_text(tuple(line)) for line in allocation.lines),
    )


def _outcome(function: Any, request: AllocationRequest, members: list[MemberInput]) -> object:
    try:
        return _fields(function(request, members))
    except FailedPrecondition as error:
        return ("refused", error.reason, str(error))


def assert_same_as_reference(request: AllocationRequest, members: list[MemberInput]) -> None:
    # Both listing orders: with an account listed twice, the order decides which line stays.
    for listed in (members, members[::-1]):
        assert _outcome(allocate, request, listed) == _outcome(reference.allocate, request, listed)


# -- scenarios ------------------------------------------------------------------------------


class _Draws:
    """Choices drawn by hypothesis (small groups shrink to readable failures)."""

    def __init__(self, draw: st.DrawFn) -> None:
        self._draw = draw

    def pick(self, options: Sequence[T]) -> T:
        return self._draw(st.sampled_from(options))

    def number(self, low: int, high: int) -> int:
        return self._draw(st.integers(min_value=low, max_value=high))


class _Seeded:
    """Choices from a seeded generator: hundreds of members without hypothesis's cost."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def pick(self, options: Sequence[T]) -> T:
        return self._rng.choice(options)

    def number(self, low: int, high: int) -> int:
        return self._rng.randint(low, high)


Choices = _Draws | _Seeded


def _money(choose: Choices) -> Decimal:
    """Money with 0 to 3 decimals (the largest decimals of a set scale its weights), often
    from a few round amounts so that equal weights and remainder ties happen."""
    if choose.number(0, 3) == 0:
        return choose.pick([D(1000), D("1000.00"), D("2500.5"), D(40000)])
    return D(choose.number(1, 3_000_000)).scaleb(-choose.number(0, 3))


def _lots(choose: Choices) -> Decimal:
    return D(choose.number(1, 2000)).scaleb(-2)


# What may differ from the common case: nothing (PLAIN), whether a member can trade
# (UNAVAILABLE), or anything, methods and max_lots included (MIXED).
PLAIN, UNAVAILABLE, MIXED = "plain", "unavailable", "mixed"


def _member(
    choose: Choices, account_id: str, spec: SymbolSpec, family: list[SymbolSpec], kind: str
) -> MemberInput:
    equity = _money(choose)
    balance = _money(choose) if choose.number(0, 1) else equity
    snapshot: AccountSnapshot | None = AccountSnapshot(
        balance, equity, D(0), choose.pick([equity, balance]), NOW
    )
    active = True
    member_spec: SymbolSpec | None = spec
    entry: Decimal | None = choose.pick([D("1.08450"), D("1.1"), D("2650.00"), D("99.5")])
    if kind != PLAIN and choose.number(0, 3) == 0:
        roll = choose.number(0, 5)
        if roll == 0:
            active = False
        elif roll == 1:
            snapshot = None
        elif roll == 2:
            member_spec = choose.pick([*family, None])
        elif roll == 3:
            entry = None
        else:
            assert snapshot is not None
            snapshot = replace(snapshot, equity=choose.pick([D(0), D("-5.00")]))
    mixed = kind == MIXED
    settings_ = GroupMember(
        account_id,
        percentage=choose.pick([D(1), D("2.5"), D("0.125"), D(10)]),
        lot_multiplier=_lots(choose),
        fixed_lots=_lots(choose),
        risk_percent=choose.pick([None, D("0.5"), D(2)] if mixed else [D("0.5"), D("1.5")]),
        max_lots=_lots(choose) if mixed and choose.number(0, 1) else None,
        method=choose.pick([None, *M]) if mixed and choose.number(0, 1) else None,
    )
    symbol = member_spec.name if member_spec else f"{spec.name}.x"
    return MemberInput(account_id, symbol, member_spec, active, snapshot, settings_, entry)


def _scenario(
    choose: Choices, min_size: int, max_size: int
) -> tuple[AllocationRequest, list[MemberInput]]:
    master = choose.pick(list(FAMILIES))
    spec = choose.pick(FAMILIES[master])
    kind = choose.pick([PLAIN, UNAVAILABLE, MIXED])
    count = choose.number(min_size, max_size)
    # Fixed-width ids: with ids that are prefixes of one another (acc_1, acc_12) the
    # reference can loop forever (its tie-break and its feasibility test disagree on them).
    numbers = random.Random(choose.number(0, 1000)).sample(range(10_000), count)
    members = [_member(choose, f"acc_{n:04d}", spec, FAMILIES[master], kind) for n in numbers]
    # Up to 30 lots: the independent methods multiply it (up to 300 lots for 3M of equity).
    units = min(3000, choose.number(0, count * choose.pick([1, 10, 500])))
    request = AllocationRequest(
        volume=(master.volume_step * units).quantize(master.volume_step),
        symbol=master,
        settings=AllocationSettings(
            method=choose.pick(list(M)), below_min_policy=choose.pick(list(BelowMinPolicy))
        ),
        snapshot_time=NOW,
        stop_loss=choose.pick([D("1.08000"), D("2640.00"), D("99.5"), None]),
        reference_equity=choose.pick([D(100000), D("250000.50"), None, D(0)]),
    )
    return request, members


@st.composite
def small_scenarios(draw: st.DrawFn) -> tuple[AllocationRequest, list[MemberInput]]:
    return _scenario(_Draws(draw), 1, 30)


large_scenarios = st.builds(
    lambda seed: _scenario(_Seeded(seed), 60, 400), st.integers(min_value=0, max_value=2**32)
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(small_scenarios())
def test_small_groups_allocate_as_the_reference(scenario) -> None:
    assert_same_as_reference(*scenario)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(large_scenarios)
def test_large_groups_allocate_as_the_reference(scenario) -> None:
    assert_same_as_reference(*scenario)


def _bench_like(
    count: int, method: AllocationMethod, policy: BelowMinPolicy, units_per_account: int, seed: int
) -> tuple[AllocationRequest, list[MemberInput]]:
    """Thousands of accounts as the benchmark builds them: one spec object, one method."""
    rng = random.Random(seed)
    share = D(100) / count
    members = []
    for i in range(count):
        equity = D(rng.randint(50_000, 25_000_000)) / 100
        settings_ = GroupMember(
            f"acc_{i:06d}",
            percentage=share if i < count - 1 else D(100) - share * (count - 1),
            lot_multiplier=D(rng.randint(1, 300)) / 100,
            fixed_lots=D(rng.randint(1, 500)) / 100,
            risk_percent=D(rng.randint(1, 30)) / 10,
        )
        snapshot = AccountSnapshot(equity, equity, D(0), equity, NOW)
        members.append(
            MemberInput(f"acc_{i:06d}", "EURUSD", EURUSD, True, snapshot, settings_, D("1.08450"))
        )
    rng.shuffle(members)
    request = AllocationRequest(
        volume=(D("0.01") * count * units_per_account).quantize(D("0.01")),
        symbol=EURUSD,
        settings=AllocationSettings(method=method, below_min_policy=policy),
        snapshot_time=NOW,
        stop_loss=D("1.08000"),
        reference_equity=D(100_000),
    )
    return request, members


@pytest.mark.parametrize("method", list(M))
@pytest.mark.parametrize("policy", list(BelowMinPolicy))
@pytest.mark.parametrize("units_per_account", [2, 10])
def test_thousands_of_accounts_allocate_as_the_reference(
    method: AllocationMethod, policy: BelowMinPolicy, units_per_account: int
) -> None:
    request, members = _bench_like(800, method, policy, units_per_account, seed=units_per_account)
    assert _fields(allocate(request, members)) == _fields(reference.allocate(request, members))


def test_the_comparison_tells_exponents_apart() -> None:
    request, members = _bench_like(3, M.EQUITY, BelowMinPolicy.SKIP, 10, seed=1)
    allocation = allocate(request, members)
    line = allocation.lines[0]
    widened = line._replace(volume=line.volume.quantize(D("0.001")))
    assert widened == line
    assert _fields(replace(allocation, lines=(widened,))) != _fields(
        replace(allocation, lines=(line,))
    )


# -- the counting split against a plain one ------------------------------------------------


def _plain_units(weights: list[int], total: int, step: int, winners: int) -> list[int]:
    """Floors, then a step to the `winners` largest remainders, ties to later positions."""
    denominator = sum(weights) * step
    shares = [divmod(total * w, denominator) for w in weights]
    ranked = sorted(range(len(weights)), key=lambda i: (shares[i][1], i), reverse=True)
    units = [floor for floor, _ in shares]
    for position in ranked[: max(0, winners)]:
        units[position] += 1
    return units


@st.composite
def sorted_weights(draw: st.DrawFn) -> tuple[list[int], int, int, int]:
    top = draw(st.sampled_from([3, 50, 10**6]))
    weights = sorted(draw(st.lists(st.integers(1, top), min_size=1, max_size=300)))
    start = draw(st.integers(0, len(weights) - 1))
    step = draw(st.sampled_from([1, 3, 100]))
    # Up to a few steps per member: the shares then take few floor values.
    total = draw(st.integers(0, 4 * step * len(weights))) * draw(st.sampled_from([1, 7, 1000]))
    return weights, start, total, step


@settings(max_examples=300, deadline=None, derandomize=True)
@given(sorted_weights(), st.integers(-2, 400), st.integers(-1, 10**9))
def test_counting_by_floor_runs_agrees_with_computing_each_share(scenario, winners, rest) -> None:
    weights, start, total, step = scenario
    kept = weights[start:]
    denominator = sum(kept) * step
    expected = _plain_units(kept, total, step, winners)
    rest %= denominator
    both = [largest_remainder_counted._EachShare(weights, start, total, denominator)]
    if total > 0 and total * kept[-1] // denominator < 1000:  # runs: one per floor value
        both.append(largest_remainder_counted._FloorRuns(weights, start, total, denominator))
    for shares in both:
        assert shares.units(winners) == expected
        assert shares.floor_sum() == sum(total * w // denominator for w in kept)
        assert shares.count_above(rest) == sum(total * w % denominator > rest for w in kept)
        assert shares.count_equal(rest) == sum(total * w % denominator == rest for w in kept)


def test_ids_the_general_path_would_never_settle_are_left_to_it() -> None:
    # Equal weights, one step: "a" wins the tie, so "ab" is below its minimum; the general
    # path's feasibility test ranks "a" behind "ab" and finds nobody to skip, forever.
    assert largest_remainder_counted.settle([1, 1], ["ab", "a"].__getitem__, 1, 1, 1, False) is None
    settled = largest_remainder_counted.settle([1, 1], ["b", "a"].__getitem__, 1, 1, 1, False)
    assert settled == (1, [1])
