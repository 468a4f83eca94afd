"""The split of a total over weighted members on integers, for any mix of lot steps, minimums
and max_lots: each member gets the floor of its exact share in its own steps, the steps left
go one each to the largest remainders (as fractions of each member's own step; ties to the
larger weight, then the smaller account id) while a step still fits; then members over their
max_lots are clipped and members under their minimum skipped or raised, and the rest split
again, until nothing changes.

largest_remainder_counted.py gives the same units faster for its narrower case (one step and
minimum for all, no max_lots); split.py chooses between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from gateway.domain.allocation.records import AllocationReason


def settle(
    weights: Sequence[int],
    steps: Sequence[int],
    min_units: Sequence[int],
    max_units: Sequence[int | None] | None,
    account_ids: Sequence[str],
    total: int,
    raise_to_min: bool,
) -> tuple[list[int], list[AllocationReason | None]]:
    """Each member's units and, for those fixed on the way, why (CLIPPED_MAX_LOT,
    RAISED_TO_MIN or SKIPPED_BELOW_MIN).

    Members come smallest relative to their minimum first (weight / (minimum x step), then
    weight; equal ones by account id descending): under SKIP the first ones leave, as few as
    possible. `steps` are each member's step of exposure and `total` the exposure to share,
    both integers at one scale; `max_units` is None when no member has a max_lots.
    """
    split = _Split(weights, steps, min_units, account_ids)
    units = split.units
    reasons: list[AllocationReason | None] = [None] * len(weights)
    fixed_exposure = 0
    free = list(range(len(weights)))
    while True:
        remaining = max(0, total - fixed_exposure)
        split.largest_remainder(free, remaining)
        fixing: list[int] = []
        if max_units is not None:
            fixing = [i for i in free if (cap := max_units[i]) is not None and units[i] > cap]
            for i in fixing:
                units[i], reasons[i] = max_units[i] or 0, AllocationReason.CLIPPED_MAX_LOT
        if not fixing:
            fixing = [i for i in free if units[i] < min_units[i]]
            if not fixing:
                return units, reasons
            if raise_to_min:
                for i in fixing:
                    units[i], reasons[i] = min_units[i], AllocationReason.RAISED_TO_MIN
            else:
                fixing = free[: split.fewest_to_skip(free, remaining)]
                for i in fixing:
                    units[i], reasons[i] = 0, AllocationReason.SKIPPED_BELOW_MIN
        fixed_exposure += sum(units[i] * steps[i] for i in fixing)
        free = [i for i in free if reasons[i] is None]


class _Split:
    """The members' terms, and the units the last split gave each."""

    __slots__ = ("account_ids", "min_units", "steps", "units", "weights")

    def __init__(
        self,
        weights: Sequence[int],
        steps: Sequence[int],
        min_units: Sequence[int],
        account_ids: Sequence[str],
    ) -> None:
        self.weights, self.steps, self.min_units = weights, steps, min_units
        self.account_ids = account_ids
        self.units = [0] * len(weights)

    def uniform(self, members: Sequence[int]) -> bool:
        """Whether `members` all have one step and one minimum."""
        if not members:
            return True
        step, minimum = self.steps[members[0]], self.min_units[members[0]]
        return all(self.steps[i] == step and self.min_units[i] == minimum for i in members)

    def largest_remainder(self, members: Sequence[int], total: int) -> None:
        """Floors in each member's own steps, then one step each to the largest remainders."""
        if not members:
            return
        weights, steps, units = self.weights, self.steps, self.units
        total_weight = sum(weights[i] for i in members)
        if total <= 0 or total_weight <= 0:
            for i in members:
                units[i] = 0
            return
        if self.uniform(members):
            self._largest_remainder_one_step(members, total, total_weight)
            return
        given = 0
        ranked: list[tuple[Fraction, int, str, int]] = []
        for i in members:
            denominator = total_weight * steps[i]
            share, remainder = divmod(total * weights[i], denominator)
            units[i] = share
            given += share * steps[i]
            ranked.append((-Fraction(remainder, denominator), -weights[i], self.account_ids[i], i))
        left = total - given
        if left <= 0:
            return
        ranked.sort()
        for *_, i in ranked:
            if steps[i] <= left:
                units[i] += 1
                left -= steps[i]
                if left == 0:
                    return

    def _largest_remainder_one_step(
        self, members: Sequence[int], total: int, total_weight: int
    ) -> None:
        """The same split when every member has the same step: remainders compare as
        integers, and exactly left / step members get one more step, so only those are
        ranked (by remainder, then larger weight, then smaller account id)."""
        weights, units = self.weights, self.units
        step = self.steps[members[0]]
        denominator = total_weight * step
        rests: list[int] = []
        given = 0
        for i in members:
            share, rest = divmod(total * weights[i], denominator)
            units[i] = share
            given += share
            rests.append(rest)
        winners = (total - given * step) // step
        if winners <= 0:
            return
        # The winners' smallest remainder: all above it win, ties on it are ranked.
        threshold = sorted(rests, reverse=True)[min(winners, len(rests)) - 1]
        tied: list[int] = []
        for i, rest in zip(members, rests, strict=True):
            if rest > threshold:
                units[i] += 1
                winners -= 1
            elif rest == threshold:
                tied.append(i)
        tied.sort(key=lambda i: (-weights[i], self.account_ids[i]))
        for i in tied[:winners]:
            units[i] += 1

    def fewest_to_skip(self, free: list[int], total: int) -> int:
        """How many of the first of `free` must leave for every other to reach its minimum.

        Shares only grow when members leave, so feasibility is monotone in the count, and it
        is found by bisection. Exact shares bound the search: from `high` on, the first kept
        member's exact share already reaches its minimum.
        """
        weights, steps, min_units = self.weights, self.steps, self.min_units
        suffix = [0] * (len(free) + 1)
        for k in range(len(free) - 1, -1, -1):
            suffix[k] = suffix[k + 1] + weights[free[k]]
        high = len(free)
        for k, i in enumerate(free):
            if total * weights[i] >= min_units[i] * steps[i] * suffix[k]:
                high = k
                break
        uniform = self.uniform(free)

        def feasible(skip: int) -> bool:
            kept = free[skip:]
            if uniform:
                # With one step, units never fall as weight rises: the first kept decides.
                return self._first_reaches_min(kept, total, suffix[skip])
            self.largest_remainder(kept, total)
            return all(self.units[i] >= min_units[i] for i in kept)

        low = 0
        while low < high:
            middle = (low + high) // 2
            if feasible(middle):
                high = middle
            else:
                low = middle + 1
        return low

    def _first_reaches_min(self, kept: list[int], total: int, total_weight: int) -> bool:
        """Whether kept[0] gets its minimum in a largest-remainder split (one step for all),
        in one pass without sorting: it needs its floor, or a leftover step by remainder rank.

        total_weight is the sum of kept's weights. The floors are not summed one by one: they
        are (total x total_weight - the remainders) / denominator, exactly."""
        if not kept:
            return True
        weights, ids = self.weights, self.account_ids
        first = kept[0]
        step = self.steps[first]
        denominator = total_weight * step
        floor, remainder = divmod(total * weights[first], denominator)
        if floor >= self.min_units[first]:
            return True
        if floor < self.min_units[first] - 1:
            return False
        rests = [total * weights[i] % denominator for i in kept]
        given = (total * total_weight - sum(rests)) // denominator
        ahead = sum(map(remainder.__lt__, rests))
        if rests.count(remainder) > 1:
            mine = (weights[first], _descending(ids[first]))
            ahead += sum(
                1
                for i, rest in zip(kept, rests, strict=True)
                if rest == remainder and (weights[i], _descending(ids[i])) > mine
            )
        leftover_steps = (total - given * step) // step
        return ahead < leftover_steps


def _descending(text: str) -> tuple[int, ...]:
    """A key that sorts texts in descending order. The end marks 1, above every character's
    -ord, so a prefix sorts after what extends it ("acc_12" before "acc_1"), as in descending
    string order: without it the two disagreed with the tie-break of the split, and a
    below-minimum skip between them never settled."""
    return (*(-ord(ch) for ch in text), 1)
