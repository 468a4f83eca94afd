"""A symbol's volume limits in its own lot steps, and what a count of steps becomes: its volume,
and the child orders it is sent as (several of near-equal size above volume_max, none below
volume_min), with the reasons that go with them."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from itertools import repeat
from typing import TypeVar

from gateway.domain.allocation.records import AllocationReason
from gateway.domain.decimals import from_steps
from gateway.domain.symbols import SymbolSpec

_V = TypeVar("_V")

SPLIT_IF_ABOVE_MAX: tuple[tuple[AllocationReason, ...], ...] = (
    (),
    (AllocationReason.SPLIT_MAX_VOLUME,),
)


@functools.lru_cache(maxsize=1024)
def step_counts(spec: SymbolSpec) -> tuple[int, int]:
    """volume_min and volume_max of a symbol in its own steps."""
    return int(spec.volume_min // spec.volume_step), int(spec.volume_max // spec.volume_step)


def max_lots_in_steps(max_lots: Decimal | None, spec: SymbolSpec) -> int | None:
    """A member's own max_lots in the steps of the symbol it trades."""
    return None if max_lots is None else int(max_lots // spec.volume_step)


class _ComputedOnce(dict[int, _V]):
    """A dict that computes the value of a missing key once (known keys are plain lookups)."""

    def __init__(self, compute: Callable[[int], _V]) -> None:
        super().__init__()
        self._compute = compute

    def __missing__(self, key: int) -> _V:
        value = self[key] = self._compute(key)
        return value


class StepVolumes:
    """What each count of steps met in one allocation becomes on one spec object: the volume,
    the child order volumes, and a split line's reasons by how its volume compares with its
    target (index 0: on it, 1: above, -1: below). One per spec object, not per equal spec:
    volumes take the exponent of the object's own step (0.01 or 0.010)."""

    __slots__ = ("by_rounding", "child_volumes", "max_units", "min_units", "spec", "volume")

    def __init__(self, spec: SymbolSpec) -> None:
        self.spec = spec
        self.min_units, self.max_units = step_counts(spec)
        self.volume = _ComputedOnce(functools.partial(from_steps, step=spec.volume_step))
        self.child_volumes = _ComputedOnce(self._child_volumes)
        self.by_rounding = _ComputedOnce(self._by_rounding)

    def _child_volumes(self, units: int) -> tuple[Decimal, ...]:
        """One child order per volume_max at most, near-equal so none falls below volume_min."""
        if units <= self.max_units:
            return (self.volume[units],) if units else ()
        parts = -(-units // self.max_units)
        base, extra = divmod(units, parts)
        return (self.volume[base + 1],) * extra + (self.volume[base],) * (parts - extra)

    def _by_rounding(self, units: int) -> tuple[tuple[AllocationReason, ...], ...]:
        split = SPLIT_IF_ABOVE_MAX[units > self.max_units]
        if units == 0:
            return (split, split, split)
        return (
            split,
            (AllocationReason.ROUNDED_UP, *split),
            (AllocationReason.ROUNDED_DOWN, *split),
        )


class MemberSteps:
    """The StepVolumes of each member's spec object, and each member's limits in steps, as
    columns. Members usually share one spec object; the columns then repeat it."""

    __slots__ = ("max_units", "min_units", "one", "tables")

    def __init__(self, specs: Sequence[SymbolSpec]) -> None:
        first = specs[0]
        if all(map(operator.is_, specs, repeat(first))):
            self.one: StepVolumes | None = StepVolumes(first)
            self.tables: Sequence[StepVolumes] = (self.one,) * len(specs)
            self.min_units: Sequence[int] = (self.one.min_units,) * len(specs)
            self.max_units: Sequence[int] = (self.one.max_units,) * len(specs)
            return
        self.one = None
        by_object: dict[int, StepVolumes] = {}
        for spec in specs:
            if id(spec) not in by_object:
                by_object[id(spec)] = StepVolumes(spec)
        self.tables = tuple(map(by_object.__getitem__, map(id, specs)))
        self.min_units = tuple(map(_min_units, self.tables))
        self.max_units = tuple(map(_max_units, self.tables))

    def volumes(self, units: Iterable[int]) -> Iterator[Decimal]:
        if self.one is not None:
            return map(self.one.volume.__getitem__, units)
        return map(dict.__getitem__, map(_volume, self.tables), units)

    def child_volumes(self, units: Iterable[int]) -> Iterator[tuple[Decimal, ...]]:
        if self.one is not None:
            return map(self.one.child_volumes.__getitem__, units)
        return map(dict.__getitem__, map(_child_volumes, self.tables), units)

    def by_rounding(
        self, units: Iterable[int]
    ) -> Iterator[tuple[tuple[AllocationReason, ...], ...]]:
        if self.one is not None:
            return map(self.one.by_rounding.__getitem__, units)
        return map(dict.__getitem__, map(_by_rounding, self.tables), units)

    def split_reasons(self, units: Iterable[int]) -> Iterator[tuple[AllocationReason, ...]]:
        """(SPLIT_MAX_VOLUME,) for each count above its volume_max, else ()."""
        return map(SPLIT_IF_ABOVE_MAX.__getitem__, map(operator.lt, self.max_units, units))

    def exposure(self, units: Sequence[int]) -> Decimal:
        """What the members trade in all at `units` each (volume x contract size)."""
        if self.one is not None:
            spec = self.one.spec
            return from_steps(sum(units), spec.volume_step) * spec.contract_size
        counts: dict[int, int] = {}
        for table, count in zip(self.tables, units, strict=True):
            counts[id(table)] = counts.get(id(table), 0) + count
        specs = {id(table): table.spec for table in self.tables}
        return sum(
            (
                from_steps(count, specs[key].volume_step) * specs[key].contract_size
                for key, count in counts.items()
            ),
            Decimal(0),
        )


_volume = operator.attrgetter("volume")
_child_volumes = operator.attrgetter("child_volumes")
_by_rounding = operator.attrgetter("by_rounding")
_min_units = operator.attrgetter("min_units")
_max_units = operator.attrgetter("max_units")
