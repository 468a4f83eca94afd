"""TOML tables read into the dataclasses that declare them, by msgspec, every error naming its key.

A model is a frozen dataclass: one field a key, its type, constraint and default on one line
(`max_attempts: PositiveInt = 4`). msgspec checks the types as TOML has them ("5" is not an int,
1 is not a bool, an int is a float), the constraints (msgspec.Meta), enums, required keys and a
model's __post_init__. This module adds what msgspec leaves to its caller: a key the model does
not declare is refused (msgspec would ignore it), a decimal is written as a string (never a
float, whose 0.1 is not 0.1), a path is a string ("": none where the field may be None), and each
message starts with the dotted key at fault: `engine.max_attempts: must be greater than 0`.

How a message reads: a field whose Meta has a `description` says "expected DESCRIPTION, got
VALUE" of any bad value (`server.listen: expected HOST:PORT, got 'nonsense'`), VALUE left out
when its Meta's extra holds {"secret": True}; a bound's message ends with the extra's "note"
("must not be negative (0: off)"); a model's __post_init__ starts its ValueError with
the field it is about ("hello_max_frame_bytes: must be from ...").
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import re
import types
import typing
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from gateway.domain.decimals import parse_decimal

Model = TypeVar("Model")

PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]

# A port, 0 to 65535: HOST:PORT with the host a name, an address or [an IPv6 address].
_PORT = r"(?:6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]\d{4}|\d{1,4})"
HostPort = Annotated[str, msgspec.Meta(pattern=rf"^.+:{_PORT}$", description="HOST:PORT")]
# The same, or empty: off.
OptionalHostPort = Annotated[
    str, msgspec.Meta(pattern=rf"^(?:.+:{_PORT})?$", description="HOST:PORT")
]

# A logging level, in any case.
LogLevel = Annotated[
    str,
    msgspec.Meta(
        pattern=r"(?i)^(?:DEBUG|INFO|WARNING|ERROR)$", description="DEBUG, INFO, WARNING or ERROR"
    ),
]


class TableError(ValueError):
    """A table that does not fit its model; the message starts with the key at fault."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    name: str
    # The type without Annotated and None.
    kind: Any
    optional: bool
    meta: msgspec.Meta | None
    # A dataclass: the value is a table of it ("table"), an array of them ("tables"), tables by
    # name ("named"); else "decimal", "path" or "value".
    shape: str
    model: type | None = None


def read_table(model: type[Model], data: object, where: str = "") -> Model:
    """`data` (a TOML table) as `model`. Raises TableError naming the key at fault, under
    `where` (the table's own key: "engine", "symbols[0]")."""
    if not isinstance(data, dict):
        raise TableError(f"{where or 'top level'}: expected a table")
    table: type = model
    declared = _fields(table)
    unknown = sorted(set(data) - set(declared))
    if unknown:
        raise TableError(f"{_join(where, unknown[0])}: unknown key")
    # Nested tables first, each with its own key in its errors; msgspec takes them as they are.
    values = {
        key: _prepared(declared[key], value, _join(where, key)) for key, value in data.items()
    }
    try:
        return msgspec.convert(values, model)
    except msgspec.ValidationError as error:
        raise TableError(_explained(str(error), declared, values, where)) from None


def unset_keys(model: type, data: Mapping[str, Any], where: str = "") -> list[str]:
    """The keys `model` declares that `data` does not set, nested tables included (each entry of
    an array of tables, `symbols[0].stops_level`): what a file documenting every key lacks."""
    unset: list[str] = []
    for name, spec in _fields(model).items():
        key = _join(where, name)
        value = data.get(name)
        if name not in data:
            unset.append(key)
        elif spec.model is not None and spec.shape == "table" and isinstance(value, dict):
            unset += unset_keys(spec.model, value, key)
        elif spec.model is not None and spec.shape == "tables" and isinstance(value, list):
            for i, entry in enumerate(value):
                if isinstance(entry, dict):
                    unset += unset_keys(spec.model, entry, f"{key}[{i}]")
        elif spec.model is not None and spec.shape == "named" and isinstance(value, dict):
            for name_of_entry, entry in value.items():
                if isinstance(entry, dict):
                    unset += unset_keys(spec.model, entry, f"{key}.{name_of_entry}")
    return unset


def field_names(model: type) -> frozenset[str]:
    """The keys a model declares."""
    return frozenset(_fields(model))


def _prepared(spec: _Field, value: Any, key: str) -> Any:
    if spec.model is not None:
        if spec.shape == "table" and isinstance(value, dict):
            return read_table(spec.model, value, key)
        if spec.shape == "tables" and isinstance(value, list):
            return [
                read_table(spec.model, entry, f"{key}[{i}]") if isinstance(entry, dict) else entry
                for i, entry in enumerate(value)
            ]
        if spec.shape == "named" and isinstance(value, dict):
            return {
                name: read_table(spec.model, entry, f"{key}.{name}")
                for name, entry in value.items()
            }
    if spec.shape == "decimal":
        if isinstance(value, float):
            raise TableError(f'{key}: write decimals as strings, e.g. "0.01"')
        # An int is exact too; anything else, or text that is not plain digits ("1e5", "NaN"),
        # is not a decimal.
        try:
            if isinstance(value, int) and not isinstance(value, bool):
                return Decimal(value)
            if isinstance(value, str):
                return parse_decimal(value)
        except ValueError:
            pass
        raise TableError(f"{key}: not a decimal: {value!r}")
    if spec.shape == "path" and isinstance(value, str):
        return None if not value and spec.optional else Path(value)
    return value


_LOCATED = re.compile(r"(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.S)
_AT_FIELD = re.compile(r"\.(?P<name>[^.\[]+)(?P<rest>.*)")
_INDEX = re.compile(r"\[(?P<index>\d+)\]")
_MISSING = re.compile(r"Object missing required field `(?P<name>[^`]+)`")
_WRONG_TYPE = re.compile(r"Expected `(?P<expected>[^`]+)`, got `[^`]+`")
_CONSTRAINT = re.compile(r"Expected `[^`]+` ")
_BAD_ENUM = re.compile(r"Invalid enum value ")
# msgspec's names of TOML's types, as this configuration's messages have always said them.
_KINDS = {"array": "list", "Path": "str"}


def _explained(
    error: str, declared: Mapping[str, _Field], values: Mapping[str, Any], where: str
) -> str:
    """msgspec's message about one table, told with the key at fault and what it holds."""
    located = _LOCATED.fullmatch(error)
    assert located is not None  # the pattern matches any text
    message, path = located["message"], located["path"] or ""
    if missing := _MISSING.fullmatch(message):
        return f"{_join(where, missing['name'])}: required"
    at = _AT_FIELD.fullmatch(path)
    if at is None or at["name"] not in declared:
        # About the table as a whole: its __post_init__ names the field first, if any.
        name, colon, rest = message.partition(": ")
        if colon and name in declared:
            return f"{_join(where, name)}: {rest}"
        return f"{where}: {message}" if where else message
    spec = declared[at["name"]]
    key = _join(where, spec.name)
    value = values.get(spec.name)
    extra = (spec.meta.extra if spec.meta is not None else None) or {}
    wrong = _WRONG_TYPE.fullmatch(message)
    if spec.meta is not None and spec.meta.description and not (wrong and not at["rest"]):
        # Any value but one of the wrong type altogether: what the field takes.
        return f"{key}: expected {spec.meta.description}{_got_value(value, extra)}"
    if (index := _INDEX.fullmatch(at["rest"])) and isinstance(value, list):
        key += at["rest"]
        value = value[int(index["index"])]
    got = _got_value(value, extra)
    if wrong:
        expected = wrong["expected"].removesuffix(" | null")
        if expected == "object":
            return f"{key}: expected a table"
        return f"{key}: expected {_KINDS.get(expected, expected)}{got}"
    if _CONSTRAINT.match(message) and spec.meta is not None:
        note = f" ({extra['note']})" if "note" in extra else ""
        return f"{key}: {_bound(spec.meta)}{note}"
    if _BAD_ENUM.match(message):
        return f"{key}: expected one of {', '.join(_choices(spec.kind))}{got}"
    return f"{key}: {message}"


def _got_value(value: Any, extra: Mapping[str, Any]) -> str:
    """ ", got VALUE", unless the value is the text of a secret."""
    return "" if extra.get("secret") and isinstance(value, str) else f", got {value!r}"


def _bound(meta: msgspec.Meta) -> str:
    if meta.gt is not None:
        return f"must be greater than {meta.gt}"
    if meta.ge is not None:
        return "must not be negative" if meta.ge == 0 else f"must be at least {meta.ge}"
    if meta.lt is not None:
        return f"must be less than {meta.lt}"
    if meta.le is not None:
        return f"must be at most {meta.le}"
    if meta.min_length is not None:
        return f"must hold at least {meta.min_length}"
    return "out of range"


def _choices(kind: Any) -> list[str]:
    for arg in (kind, *typing.get_args(kind)):
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            return [str(member.value) for member in arg]
        if typing.get_origin(arg) is Literal:
            return [str(choice) for choice in typing.get_args(arg)]
    return []


@functools.cache
def _fields(model: type) -> dict[str, _Field]:
    hints = typing.get_type_hints(model, include_extras=True)
    return {f.name: _field(f.name, hints[f.name]) for f in dataclasses.fields(model) if f.init}


def _field(name: str, hint: Any) -> _Field:
    meta = None
    if typing.get_origin(hint) is Annotated:
        meta = next((m for m in hint.__metadata__ if isinstance(m, msgspec.Meta)), None)
        hint = hint.__origin__
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        optional = len(members) < len(typing.get_args(hint))
        hint = members[0] if len(members) == 1 else hint
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if (model := _model(hint)) is not None:
        return _Field(name, hint, optional, meta, "table", model)
    if origin in (tuple, list) and args and (model := _model(args[0])) is not None:
        return _Field(name, hint, optional, meta, "tables", model)
    if origin is dict and len(args) == 2 and (model := _model(args[1])) is not None:
        return _Field(name, hint, optional, meta, "named", model)
    if hint is Decimal:
        return _Field(name, hint, optional, meta, "decimal")
    if hint is Path:
        return _Field(name, hint, optional, meta, "path")
    return _Field(name, hint, optional, meta, "value")


def _model(hint: Any) -> type | None:
    return hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
