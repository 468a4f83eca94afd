"""The largest-remainder split counted rather than visited, for members that share one lot
step and one minimum and have no max_lots (a whole group on one symbol spec, the usual case):
the same units as largest_remainder.settle, from integer weights sorted ascending, equal
weights by account id descending (the order in which SKIP lets the smallest go first, and the
reverse of the order in which remainder ties win: larger weight, then smaller id).

Counting instead of visiting: a member's floor(total x weight / denominator) is its whole
steps, and members get a handful of steps each, so along the sorted weights the floor takes
few values; the members with one floor are one run of the list, found by bisection, and so are
the members of a run whose remainder exceeds a given value. The units come out as runs too.
When the floors take too many values for that to pay, every share is computed instead.
"""

from __future__ import annotations

import itertools
import math
import operator
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from typing import Protocol

# Counting pays while there are at least this many members per distinct floor.
_MEMBERS_PER_FLOOR = 8
# Remainders few enough to rank one by one.
_FEW_ENOUGH_TO_RANK = 32


def settle(
    weights: Sequence[int],
    account_id: Callable[[int], str],
    total: int,
    step: int,
    min_units: int,
    raise_to_min: bool,
) -> tuple[int, list[int]] | None:
    """largest_remainder.settle for one step, one minimum and no max_lots: the number of
    members fixed first (left out at 0 under SKIP, raised to min_units under ROUND_UP_TO_MIN),
    then the units of every other member, in the order of `weights` (ascending, equal ones by
    id descending); account_id(position) is the id of the member at a position.

    None where the skip would never settle: the feasibility test here ranks tied remainders
    by comparing ids character by character, which disagrees with the tie-break of the split
    on ids that are prefixes of one another (acc_1, acc_12); the caller then splits with
    largest_remainder.settle, whose test agrees with its tie-break.
    """
    weight_after = _WeightAfter(weights)
    fixed = 0
    while True:
        # Skipped members trade nothing; raised ones take min_units each from the total.
        remaining = max(0, total - fixed * min_units * step) if raise_to_min else max(0, total)
        units = largest_remainder(weights, fixed, weight_after(fixed), remaining, step)
        # Units never fall as the position rises, so the first free member is the smallest.
        if not units or units[0] >= min_units:
            return fixed, units
        if raise_to_min:
            fixed += bisect_left(units, min_units)
            continue
        skip = _fewest_to_skip(weights, account_id, fixed, weight_after, remaining, step, min_units)
        if skip == 0:
            return None
        fixed += skip


class _WeightAfter:
    """The sum of the weights from a position on. Few positions are asked for, mostly near
    the start (the members that may be left out), so sums are taken as needed."""

    __slots__ = ("_sum", "_weights")

    def __init__(self, weights: Sequence[int]) -> None:
        self._weights = weights
        self._sum = sum(weights)

    def __call__(self, position: int) -> int:
        return self._sum - sum(itertools.islice(self._weights, position))


def largest_remainder(
    weights: Sequence[int], start: int, weight_sum: int, total: int, step: int
) -> list[int]:
    """Units of weights[start:] (weight_sum is their sum): floors in steps, then one step each
    to the largest remainders, ties to the later position."""
    count = len(weights) - start
    if count == 0:
        return []
    if total <= 0 or weight_sum <= 0:
        return [0] * count
    shares = _shares(weights, start, total, weight_sum * step)
    return shares.units((total - shares.floor_sum() * step) // step)


def _fewest_to_skip(
    weights: Sequence[int],
    account_id: Callable[[int], str],
    start: int,
    weight_after: _WeightAfter,
    total: int,
    step: int,
    min_units: int,
) -> int:
    """largest_remainder's fewest_to_skip over weights[start:]: a bisection on the count, bounded by
    the first member whose exact share reaches its minimum (a test that, once true, stays true
    further on: weights rise and the weight left after them falls, so it is bisected too)."""
    count = len(weights) - start
    low, high = 0, count
    while low < high:
        middle = (low + high) // 2
        at = start + middle
        if total * weights[at] >= min_units * step * weight_after(at):
            high = middle
        else:
            low = middle + 1
    low = 0
    while low < high:
        middle = (low + high) // 2
        at = start + middle
        if _smallest_reaches_min(weights, account_id, at, weight_after(at), total, step, min_units):
            high = middle
        else:
            low = middle + 1
    return low


def _smallest_reaches_min(
    weights: Sequence[int],
    account_id: Callable[[int], str],
    first: int,
    weight_sum: int,
    total: int,
    step: int,
    min_units: int,
) -> bool:
    """Whether, with the members from `first` on kept, the first gets its minimum: by its
    floor, or by a leftover step won on its remainder."""
    if first == len(weights):
        return True
    denominator = weight_sum * step
    floor, remainder = divmod(total * weights[first], denominator)
    if floor >= min_units:
        return True
    if floor < min_units - 1:
        return False
    shares = _shares(weights, first, total, denominator)
    ahead = shares.count_above(remainder)
    tied = shares.count_equal(remainder)
    if tied > 1:
        # The same remainder: every heavier member is ahead, and of those with the first's
        # weight (all of smaller account id), the ones a comparison of the ids' characters
        # puts ahead: all but the proper prefixes of the first's id.
        same_end = bisect_right(weights, weights[first], first)
        mine = account_id(first)
        prefixes = sum(map(mine.startswith, map(account_id, range(first + 1, same_end))))
        ahead += tied - 1 - prefixes
    leftover_steps = (total - shares.floor_sum() * step) // step
    return ahead < leftover_steps


# -- shares: floors and remainders of total x weight / denominator -------------------------


class _Shares(Protocol):
    def floor_sum(self) -> int: ...

    def count_above(self, rest: int) -> int:
        """How many remainders exceed `rest`."""
        ...

    def count_equal(self, rest: int) -> int: ...

    def units(self, winners: int) -> list[int]:
        """Floors plus one step to each of the `winners` largest remainders (ties: later
        positions first), in position order."""
        ...


def _shares(weights: Sequence[int], start: int, total: int, denominator: int) -> _Shares:
    """The shares of weights[start:] (total > 0: runs are told apart by weight / total)."""
    floors = total * weights[-1] // denominator - total * weights[start] // denominator + 1
    if total > 0 and floors * _MEMBERS_PER_FLOOR <= len(weights) - start:
        return _FloorRuns(weights, start, total, denominator)
    return _EachShare(weights, start, total, denominator)


class _EachShare:
    """Every member's floor and remainder, computed."""

    __slots__ = ("floors", "rests")

    def __init__(self, weights: Sequence[int], start: int, total: int, denominator: int) -> None:
        products = list(map(total.__mul__, itertools.islice(weights, start, None)))
        self.floors = list(map(operator.floordiv, products, itertools.repeat(denominator)))
        self.rests = list(map(operator.mod, products, itertools.repeat(denominator)))

    def floor_sum(self) -> int:
        return sum(self.floors)

    def count_above(self, rest: int) -> int:
        return sum(map(rest.__lt__, self.rests))

    def count_equal(self, rest: int) -> int:
        return self.rests.count(rest)

    def units(self, winners: int) -> list[int]:
        if winners <= 0:
            return list(self.floors)
        rests = self.rests
        ordered = sorted(rests)
        threshold = ordered[len(ordered) - min(winners, len(ordered))]
        units = list(map(operator.add, self.floors, map(threshold.__lt__, rests)))
        tied_winners = winners - (len(ordered) - bisect_right(ordered, threshold))
        if tied_winners > 0:
            tied = list(itertools.compress(range(len(rests)), map(threshold.__eq__, rests)))
            for position in tied[-tied_winners:]:
                units[position] += 1
        return units


class _FloorRuns:
    """The members as runs of equal floors: run j holds positions bounds[j] to bounds[j + 1],
    all of floor first_floor + j, and their remainders rise with the position."""

    __slots__ = ("bounds", "denominator", "first_floor", "runs", "total", "weights")

    def __init__(self, weights: Sequence[int], start: int, total: int, denominator: int) -> None:
        self.weights, self.total, self.denominator = weights, total, denominator
        self.first_floor = total * weights[start] // denominator
        last_floor = total * weights[-1] // denominator
        bounds = [start]
        for floor in range(self.first_floor + 1, last_floor + 1):
            # The first position whose weight reaches `floor` steps: ceil(floor x denom / total).
            bounds.append(bisect_left(weights, -(-floor * denominator // total), bounds[-1]))
        bounds.append(len(weights))
        self.bounds = bounds
        # (floor, first position, end position) of each run.
        self.runs = [
            (self.first_floor + j, bounds[j], bounds[j + 1]) for j in range(len(bounds) - 1)
        ]

    def floor_sum(self) -> int:
        return sum(floor * (end - begin) for floor, begin, end in self.runs)

    def _first_above(self, floor: int, begin: int, end: int, rest: int) -> int:
        """The first position of the run whose remainder exceeds `rest`."""
        # remainder = total x weight - floor x denominator > rest <=> weight > the bound below.
        limit = (floor * self.denominator + rest) // self.total
        return bisect_right(self.weights, limit, begin, end)

    def count_above(self, rest: int) -> int:
        return sum(end - self._first_above(f, begin, end, rest) for f, begin, end in self.runs)

    def count_equal(self, rest: int) -> int:
        count = 0
        for floor, begin, end in self.runs:
            weight, off = divmod(floor * self.denominator + rest, self.total)
            if off == 0:
                count += bisect_right(self.weights, weight, begin, end) - bisect_left(
                    self.weights, weight, begin, end
                )
        return count

    def _threshold(self, wanted: int) -> int:
        """The wanted-th largest remainder. Remainders spread evenly over [0, denominator), so
        two bounds close in on it by interpolation (with a bisection when that gains little)
        until few remainders lie between them; those are then computed and ranked."""
        # count_above(low) >= wanted > count_above(high): the answer is in (low, high].
        low, high = -1, self.denominator - 1
        above_low, above_high = self.bounds[-1] - self.bounds[0], 0

        def narrow(value: int) -> None:
            nonlocal low, high, above_low, above_high
            above = self.count_above(value)
            if above >= wanted:
                low, above_low = value, above
            else:
                high, above_high = value, above

        while above_low - above_high > _FEW_ENOUGH_TO_RANK and high - low > 1:
            between = above_low - above_high
            # Where count_above would cross wanted on the line between the bounds, and a
            # window around it as wide as the usual error, so that both bounds move.
            guess = low + (high - low) * (2 * (above_low - wanted) + 1) // (2 * between)
            width = max(1, (high - low) * (math.isqrt(between) + _FEW_ENOUGH_TO_RANK) // between)
            for value in (guess - width, guess + width):
                if low < value < high:
                    narrow(value)
            if (above_low - above_high) * 2 > between and high - low > 1:
                narrow((low + high) // 2)
        if high - low == 1:
            return high
        rests = []
        for floor, begin, end in self.runs:
            base = floor * self.denominator
            lower = self._first_above(floor, begin, end, low)
            upper = self._first_above(floor, begin, end, high)
            rests += [self.total * w - base for w in self.weights[lower:upper]]
        rests.sort(reverse=True)
        return rests[wanted - above_high - 1]

    def units(self, winners: int) -> list[int]:
        runs = self.runs
        if winners <= 0:
            cuts = [end for _, _, end in runs]
        else:
            threshold = self._threshold(min(winners, runs[-1][2] - runs[0][1]))
            cuts = [self._first_above(f, begin, end, threshold) for f, begin, end in runs]
            tied_winners = winners - sum(
                end - cut for (_, _, end), cut in zip(runs, cuts, strict=True)
            )
            # Ties on the threshold win from the last position down.
            for j in range(len(runs) - 1, -1, -1):
                if tied_winners <= 0:
                    break
                floor, begin, _ = runs[j]
                weight, off = divmod(floor * self.denominator + threshold, self.total)
                if off == 0:
                    tied = cuts[j] - bisect_left(self.weights, weight, begin, cuts[j])
                    taken = min(tied, tied_winners)
                    cuts[j] -= taken
                    tied_winners -= taken
        units: list[int] = []
        for (floor, begin, end), cut in zip(runs, cuts, strict=True):
            units += [floor] * (cut - begin)
            units += [floor + 1] * (end - cut)
        return units
