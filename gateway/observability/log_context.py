"""The fields of log lines about an order, in context variables: set where orders are handled,
read by the JSON log format (log_format.py).

The api sets the caller's key id once it has authenticated the call; the engine sets the
master order, child and account a task works on. A task starts with a copy of its creator's
context, so the dispatch a SubmitMasterOrder call starts logs with that caller's key id, and
each child's dispatch task with its own child and account. Setting costs one ContextVar.set:
no more than that is done per child.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

# The JSON log fields these carry, in the order they are written.
ORDER_FIELDS = ("master_order_id", "child_order_id", "account_id")
KEY_ID_FIELD = "key_id"


@dataclass(frozen=True, slots=True)
class OrderFields:
    master_order_id: str = ""
    child_order_id: str = ""
    account_id: str = ""


_ORDER: contextvars.ContextVar[OrderFields | None] = contextvars.ContextVar(
    "mam_log_order", default=None
)
_KEY_ID: contextvars.ContextVar[str] = contextvars.ContextVar("mam_log_key_id", default="")


def log_about(
    *, master_order_id: str = "", child_order_id: str = "", account_id: str = ""
) -> contextvars.Token[OrderFields | None]:
    """From here on in this task (and the tasks it starts), log lines are about this order,
    child and account; `forget(token)` ends it early (a loop over many orders)."""
    return _ORDER.set(OrderFields(master_order_id, child_order_id, account_id))


def forget(token: contextvars.Token[OrderFields | None]) -> None:
    _ORDER.reset(token)


def set_caller(key_id: str) -> None:
    """The API key of the call being served (empty with authentication off)."""
    _KEY_ID.set(key_id)


def context_fields() -> dict[str, str]:
    """The fields set in this context, without the empty ones."""
    fields: dict[str, str] = {}
    order = _ORDER.get()
    if order is not None:
        if order.master_order_id:
            fields["master_order_id"] = order.master_order_id
        if order.child_order_id:
            fields["child_order_id"] = order.child_order_id
        if order.account_id:
            fields["account_id"] = order.account_id
    key_id = _KEY_ID.get()
    if key_id:
        fields[KEY_ID_FIELD] = key_id
    return fields
