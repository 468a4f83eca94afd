"""How many items one repeated field of a request may hold.

The bytes of a request are bounded by `server.max_request_bytes`, but what a request costs is
not its bytes: each account id of a fill filter, each member of a group is looked up, checked
against the caller's reach and named in any refusal. 20,000 unknown account ids in one
SubscribeFills took ~2 MB of the gateway's memory per refused call. So every repeated field of a
mam.v1 request, at any depth, holds at most `server.max_repeated_items` items (5,000 by default:
five times the 1,000 accounts of the largest group the gateway is measured with); beyond it the
request is refused before it is used, INVALID_ARGUMENT with reason TOO_MANY_ITEMS and a field
violation naming the field. Narrower limits of single fields (RiskLimits' symbols and trading
windows) are the servicers'.

WorkerService.Connect is not counted: a worker, authenticated by its token, answers a command with
what its terminal holds (every deal of an account's history), not what a caller chose to send.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from gateway.domain.errors import FieldViolation

DEFAULT_MAX_ITEMS = 5_000
_COUNTED_PACKAGE = "mam.v1."
_NOT_COUNTED = frozenset({"mam.v1.ConnectRequest"})


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    repeated: bool
    # The fields of the field's message type that hold repeated fields, at some depth; empty
    # when there are none (nothing to look into).
    inside: tuple[_Field, ...]


class RepeatedFieldLimit:
    """Counts the items of every repeated field of a request against `max_items`."""

    def __init__(self, max_items: int = DEFAULT_MAX_ITEMS) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, not {max_items}")
        self.max_items = max_items
        self._plans: dict[str, tuple[_Field, ...]] = {}

    def violations(self, request: Any) -> list[FieldViolation]:
        """One violation per repeated field of `request` holding more than `max_items`."""
        descriptor = getattr(request, "DESCRIPTOR", None)
        if not isinstance(descriptor, Descriptor):
            return []
        name = descriptor.full_name
        if not name.startswith(_COUNTED_PACKAGE) or name in _NOT_COUNTED:
            return []
        plan = self._plans.get(name)
        if plan is None:
            plan = self._plans[name] = _plan(descriptor, ())
        found: list[FieldViolation] = []
        if plan:
            self._count(request, plan, "", found)
        return found

    def _count(
        self, message: Any, plan: tuple[_Field, ...], path: str, found: list[FieldViolation]
    ) -> None:
        for field in plan:
            at = f"{path}.{field.name}" if path else field.name
            if field.repeated:
                items = getattr(message, field.name)
                if len(items) > self.max_items:
                    found.append(
                        FieldViolation(at, f"at most {self.max_items:,} items, got {len(items):,}")
                    )
                elif field.inside:
                    for i, item in enumerate(items):
                        self._count(item, field.inside, f"{at}[{i}]", found)
            elif message.HasField(field.name):
                self._count(getattr(message, field.name), field.inside, at, found)


def _plan(descriptor: Descriptor, enclosing: tuple[str, ...]) -> tuple[_Field, ...]:
    """The fields of `descriptor` worth looking into: repeated ones, and messages holding
    some. A type inside itself (google.protobuf.Struct) is looked into once."""
    enclosing = (*enclosing, descriptor.full_name)
    fields = []
    for field in descriptor.fields:
        repeated = field.is_repeated
        message_type = field.message_type if field.type == FieldDescriptor.TYPE_MESSAGE else None
        inside: tuple[_Field, ...] = ()
        is_map = message_type is not None and message_type.GetOptions().map_entry
        if message_type is not None and not is_map and message_type.full_name not in enclosing:
            inside = _plan(message_type, enclosing)
        if repeated or inside:
            fields.append(_Field(field.name, repeated, inside))
    return tuple(fields)
