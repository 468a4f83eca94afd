"""Specs of the same exact value become one object for an order's allocation, so members on
terminals that answer with an object per call still share one table of step volumes."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from gateway.domain.accounts import AllocationMethod, AllocationSettings, BelowMinPolicy
from gateway.domain.allocation import AllocationRequest, allocate
from gateway.domain.allocation.limits import MemberSteps
from gateway.domain.symbols import SpecInterner, SymbolSpec
from tests.unit.test_allocation import EURUSD, NOW, member

D = Decimal


def _copy(spec: SymbolSpec) -> SymbolSpec:
    return dataclasses.replace(spec)


def test_equal_specs_become_one_object_and_other_exponents_stay_apart() -> None:
    interned = SpecInterner()
    first, second = _copy(EURUSD), _copy(EURUSD)
    assert first is not second
    assert interned(first) is interned(second) is first
    wider = dataclasses.replace(EURUSD, volume_step=D("0.010"))
    assert wider == EURUSD  # equal in value...
    assert interned(wider) is wider  # ...but its volumes would read 0.010, so it stays apart
    other = dataclasses.replace(EURUSD, volume_max=D(50))
    assert interned(other) is other


def test_members_on_terminals_with_their_own_spec_objects_share_one_step_table() -> None:
    request = AllocationRequest(
        volume=D("1.00"),
        symbol=EURUSD,
        settings=AllocationSettings(AllocationMethod.EQUITY, BelowMinPolicy.SKIP),
        snapshot_time=NOW,
    )
    apart = [member(f"acc_{i:03d}", 1000 + i, spec=_copy(EURUSD)) for i in range(20)]
    interned = SpecInterner()
    shared = [m._replace(spec=interned(m.spec)) for m in apart]  # type: ignore[arg-type]
    assert MemberSteps([m.spec for m in apart]).one is None  # type: ignore[misc]
    assert MemberSteps([m.spec for m in shared]).one is not None  # type: ignore[misc]
    assert allocate(request, shared) == allocate(request, apart)
