"""The resources a request names, found from its descriptor: every id it carries, at any depth.

A string field whose name ends in `_id` or `_ids` names a resource, and its name says which
kind (REFERENCE_KINDS), wherever it sits: `account_id` of a GetAccountRequest, of a group's
member, `reference_account_id` of a group's allocation. The few such fields that name nothing of
anyone else's are listed with the reason in NOT_REFERENCES. A field in neither table is
UNRECOGNISED, which access control refuses to non-admins: a new field is closed until someone
decides what it names (tests/integration/test_tenant_isolation.py fails until then).

Beside an `update_mask`, a resource message counts only as the update applies it (its own id
and the masked paths, merged as the servicers merge them), so that a read-modify-write need not
clear output-only fields first; without a usable mask the whole message counts.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf import field_mask_pb2
from google.protobuf.descriptor import FieldDescriptor


class ResourceKind(enum.Enum):
    ACCOUNT = "account"
    GROUP = "group"
    MASTER_ORDER = "master order"
    # A kill switch's target_id: a group or an account, as its scope says.
    GROUP_OR_ACCOUNT = "group or account"
    API_KEY = "API key"
    KILL_SWITCH = "kill switch"
    STOP_OUT = "stop-out"
    UNRECOGNISED = "resource"


REFERENCE_KINDS: dict[str, ResourceKind] = {
    "account_id": ResourceKind.ACCOUNT,
    "account_ids": ResourceKind.ACCOUNT,
    "reference_account_id": ResourceKind.ACCOUNT,
    "group_id": ResourceKind.GROUP,
    "group_ids": ResourceKind.GROUP,
    "master_order_id": ResourceKind.MASTER_ORDER,
    "closing_master_order_ids": ResourceKind.MASTER_ORDER,
    "target_id": ResourceKind.GROUP_OR_ACCOUNT,
    "key_id": ResourceKind.API_KEY,
    "kill_switch_id": ResourceKind.KILL_SWITCH,
    "stop_out_id": ResourceKind.STOP_OUT,
}

NOT_REFERENCES: dict[str, str] = {
    "client_order_id": "the caller's own idempotency key: a retry finds only that key's orders",
    "operation_id": "an idempotency key within its balance operation's account_id (checked)",
}

_UPDATE_MASK = "update_mask"
_FIELD_MASK = "google.protobuf.FieldMask"
# Messages that hold no id of anyone's.
_OPAQUE = frozenset({_FIELD_MASK, "google.protobuf.Timestamp", "google.protobuf.Duration"})


@dataclass(frozen=True, slots=True)
class Reference:
    # The field's path in the request, as field violations name it: "group.members[1].account_id".
    path: str
    kind: ResourceKind
    resource_id: str


def names_a_resource(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_STRING and (
        field.name.endswith("_id") or field.name.endswith("_ids")
    )


def kind_of(field_name: str) -> ResourceKind | None:
    """The kind a field names, None for an id that names nothing of anyone else's."""
    if field_name in NOT_REFERENCES:
        return None
    return REFERENCE_KINDS.get(field_name, ResourceKind.UNRECOGNISED)


def resource_references(message: Any) -> Iterator[Reference]:
    """Every non-empty id the message sets, with its path and kind."""
    yield from _references(message, "")


def _references(message: Any, prefix: str) -> Iterator[Reference]:
    mask = _usable_mask(message)
    for field, value in message.ListFields():
        path = prefix + field.name
        if field.message_type is not None:
            if field.message_type.full_name in _OPAQUE:
                continue
            if field.message_type.GetOptions().map_entry:
                if field.message_type.fields_by_name["value"].message_type is None:
                    continue  # a map of scalars: its values are not named like ids
                items = [(f"{path}[{key!r}]", value[key]) for key in value]
            elif field.is_repeated:
                items = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
            else:
                items = [(path, value)]
            for item_path, item in items:
                applied = item if mask is None else _as_updated(item, field.name, mask)
                yield from _references(applied, item_path + ".")
        elif names_a_resource(field):
            kind = kind_of(field.name)
            if kind is None:
                continue
            ids = value if field.is_repeated else [value]
            for i, resource_id in enumerate(ids):
                if resource_id:
                    item_path = f"{path}[{i}]" if field.is_repeated else path
                    yield Reference(item_path, kind, resource_id)


def _usable_mask(message: Any) -> field_mask_pb2.FieldMask | None:
    field = message.DESCRIPTOR.fields_by_name.get(_UPDATE_MASK)
    if field is None or field.message_type is None or field.message_type.full_name != _FIELD_MASK:
        return None
    mask: field_mask_pb2.FieldMask = getattr(message, _UPDATE_MASK)
    return mask if mask.paths else None


def _as_updated(resource: Any, field_name: str, mask: field_mask_pb2.FieldMask) -> Any:
    """The part of `resource` an update applies: its own id (`<field>_id`, the resource it
    changes) and the masked paths. The whole resource when the mask does not fit it (the
    servicer refuses such a mask; nothing is left unchecked meanwhile)."""
    own_id = f"{field_name}_id"
    if own_id not in resource.DESCRIPTOR.fields_by_name or not mask.IsValidForDescriptor(
        resource.DESCRIPTOR
    ):
        return resource
    applied = type(resource)()
    setattr(applied, own_id, getattr(resource, own_id))
    mask.MergeMessage(resource, applied, replace_message_field=True, replace_repeated_field=True)
    return applied
