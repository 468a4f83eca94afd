"""The google.protobuf.Timestamp and Duration values of a request, checked against the ranges
their protos document before any servicer converts one (ToDatetime and ToTimedelta raise
ValueError outside them, which would surface as INTERNAL).

Which fields can lead to a Timestamp or a Duration is worked out once per message type from
its descriptor, so a message type without any costs one dictionary lookup, and a request is
walked only along those fields that are set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor

from gateway.domain.errors import FieldViolation

TIMESTAMP = "google.protobuf.Timestamp"
DURATION = "google.protobuf.Duration"

# 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the range timestamp.proto documents.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
# About 10,000 years either way, the range duration.proto documents.
MAX_DURATION_SECONDS = 315_576_000_000
MAX_NANOS = 999_999_999

_TIMESTAMP_RANGE = "must lie between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z"


@dataclass(frozen=True, slots=True)
class _Step:
    """One field of a message type that holds, or may lead to, a Timestamp or a Duration."""

    name: str
    target: str  # TIMESTAMP, DURATION, or "" for a message to walk into
    repeated: bool
    map_values: bool  # a map whose values are messages: walked by key


_PLANS: dict[Descriptor, tuple[_Step, ...]] = {}


def time_violations(message: Any) -> list[FieldViolation]:
    """Every Timestamp or Duration set in `message` that is outside its documented range,
    named by its path in the message (`order.expire_time`, `items[2].time`)."""
    descriptor = message.DESCRIPTOR
    plan = _PLANS.get(descriptor)
    if plan is None:
        plan = _plan_of(descriptor)
    if not plan:
        return []
    found: list[FieldViolation] = []
    _walk(message, plan, "", found)
    return found


def _walk(message: Any, plan: tuple[_Step, ...], prefix: str, found: list[FieldViolation]) -> None:
    for step in plan:
        if step.repeated:
            values = getattr(message, step.name)
            if not values:
                continue
            if step.map_values:
                items: Any = ((f"[{key!r}]", value) for key, value in values.items())
            else:
                items = ((f"[{index}]", value) for index, value in enumerate(values))
            for suffix, value in items:
                _visit(value, step, f"{prefix}{step.name}{suffix}", found)
        elif message.HasField(step.name):
            _visit(getattr(message, step.name), step, prefix + step.name, found)


def _visit(value: Any, step: _Step, path: str, found: list[FieldViolation]) -> None:
    if step.target == TIMESTAMP:
        problem = timestamp_problem(value.seconds, value.nanos)
    elif step.target == DURATION:
        problem = duration_problem(value.seconds, value.nanos)
    else:
        _walk(value, _PLANS.get(value.DESCRIPTOR) or _plan_of(value.DESCRIPTOR), path + ".", found)
        return
    if problem:
        found.append(FieldViolation(path, problem))


def timestamp_problem(seconds: int, nanos: int) -> str:
    """What is wrong with a Timestamp, or "" when nothing is."""
    if not 0 <= nanos <= MAX_NANOS:
        return f"nanos {nanos} is outside 0..{MAX_NANOS:,}"
    if not MIN_TIMESTAMP_SECONDS <= seconds <= MAX_TIMESTAMP_SECONDS:
        return f"{_TIMESTAMP_RANGE} (seconds {seconds} is outside)"
    return ""


def duration_problem(seconds: int, nanos: int) -> str:
    """What is wrong with a Duration, or "" when nothing is."""
    if not -MAX_NANOS <= nanos <= MAX_NANOS:
        return f"nanos {nanos} is outside -{MAX_NANOS:,}..{MAX_NANOS:,}"
    if not -MAX_DURATION_SECONDS <= seconds <= MAX_DURATION_SECONDS:
        return f"seconds {seconds} is outside ±{MAX_DURATION_SECONDS:,} (about 10,000 years)"
    if (seconds < 0 < nanos) or (nanos < 0 < seconds):
        return f"seconds {seconds} and nanos {nanos} must not have opposite signs"
    return ""


def _plan_of(descriptor: Descriptor) -> tuple[_Step, ...]:
    steps = []
    for field in descriptor.fields:
        kind = field.message_type
        if kind is None:
            continue
        map_values = kind.GetOptions().map_entry
        if map_values:
            kind = kind.fields_by_name["value"].message_type
            if kind is None:
                continue  # a map of scalars
        if kind.full_name in (TIMESTAMP, DURATION):
            target = kind.full_name
        elif _may_hold_times(kind):
            target = ""
        else:
            continue
        steps.append(_Step(field.name, target, field.is_repeated, map_values))
    plan = tuple(steps)
    _PLANS[descriptor] = plan
    return plan


_HOLDS_TIMES: dict[Descriptor, bool] = {}


def _may_hold_times(descriptor: Descriptor) -> bool:
    """Whether any message type reachable from this one is a Timestamp or a Duration
    (reachability, not recursion: message types may refer to themselves)."""
    known = _HOLDS_TIMES.get(descriptor)
    if known is not None:
        return known
    seen = {descriptor}
    pending = [descriptor]
    holds = False
    while pending and not holds:
        for field in pending.pop().fields:
            kind = field.message_type
            if kind is None or kind in seen:
                continue
            if kind.full_name in (TIMESTAMP, DURATION):
                holds = True
                break
            seen.add(kind)
            pending.append(kind)
    _HOLDS_TIMES[descriptor] = holds
    return holds
