"""Copies of frozen dataclasses with some fields changed, cheaper than dataclasses.replace.

dataclasses.replace re-inspects the class's fields on every call, and an order moves through
three or four states per child, for thousands of children per master order. A copier reads
the fields once, when it is made.

A frozen dataclass's own __init__ sets each field through object.__setattr__: for a class with
__slots__ and no __post_init__, the copier is a function generated once per class (as
dataclasses generates __init__) that fills a new instance through the slot descriptors
instead (docs/performance.md has the figures).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar

T = TypeVar("T")


def copier(cls: type[T]) -> Callable[[T, dict[str, Any]], T]:
    """copy(obj, changes) -> a new cls with obj's fields, and changes over them.

    For dataclasses whose fields are all init fields (the domain's records); a name that is
    not a field raises TypeError, as replace does."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    if any(not f.init for f in fields):
        raise TypeError(f"{cls.__name__} has fields outside __init__")
    names = tuple(f.name for f in fields)
    if "__slots__" in cls.__dict__ and not hasattr(cls, "__post_init__"):
        return _by_slots(cls, names)
    positions = {name: i for i, name in enumerate(names)}
    read = attrgetter(*names)
    # attrgetter of one name answers the value itself, not a tuple of one.
    read_all = read if len(names) > 1 else lambda obj: (read(obj),)

    def copy(obj: T, changes: dict[str, Any]) -> T:
        values = list(read_all(obj))
        for name, value in changes.items():
            position = positions.get(name)
            if position is None:
                raise TypeError(f"{cls.__name__} has no field {name!r}")
            values[position] = value
        return cls(*values)

    return copy


def _by_slots(cls: type[T], names: tuple[str, ...]) -> Callable[[T, dict[str, Any]], T]:
    """The copier of a slotted class: a new instance whose slots are set one by one (what
    __init__ would store, without its checks: every value comes from an instance or the
    caller's changes, as with replace)."""
    known = frozenset(names)
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": cls, "_known": known}
    lines = ["def copy(obj, changes):"]
    lines.append("    if not _known.issuperset(changes):")
    lines.append("        _refuse(changes)")
    lines.append("    new = _new(_cls)")
    lines.append("    get = changes.get")
    for i, name in enumerate(names):
        scope[f"_set{i}"] = getattr(cls, name).__set__
        lines.append(f"    _set{i}(new, get({name!r}, obj.{name}))")
    lines.append("    return new")

    def refuse(changes: dict[str, Any]) -> None:
        unknown = sorted(set(changes) - known)
        raise TypeError(f"{cls.__name__} has no field {unknown[0]!r}")

    scope["_refuse"] = refuse
    # Generated from the class's own field names, as dataclasses generates __init__.
    exec("\n".join(lines), scope)
    copy: Callable[[T, dict[str, Any]], T] = scope["copy"]
    return copy
