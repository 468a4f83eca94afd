"""Server-assigned identifiers and the broker tag of a child order.

An id is a prefix and 20 Crockford base32 characters: 48 bits of milliseconds (so ids sort by
creation time) and 52 random bits. The tag put in a broker comment is "mam:" and the 20
characters: 24 ASCII characters, inside the ~26 that MetaTrader keeps intact.
"""

from __future__ import annotations

import secrets
import time
from typing import NewType

# Ids of different things are all strings, and must never be swapped: a distinct type for each
# lets mypy catch a child order id passed as a master order id. NewType costs nothing at run
# time: no new object and no check (MasterOrderId(s) is s itself), so the hot path pays
# nothing for it. A plain string is wrapped once, where it enters: new_id at creation, or a
# request's field in the API; rows read from the database are untyped and need no wrapping.
FillId = NewType("FillId", str)
MasterOrderId = NewType("MasterOrderId", str)
ChildOrderId = NewType("ChildOrderId", str)
AccountId = NewType("AccountId", str)
GroupId = NewType("GroupId", str)

# "None": a closing order's `closes_*` on an opening order, an event's child on a master's.
NO_MASTER_ORDER_ID = MasterOrderId("")
NO_CHILD_ORDER_ID = ChildOrderId("")

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_BODY_LENGTH = 20
TAG_PREFIX = "mam:"
MAX_TAG_LENGTH = 26


# Every pair of characters, by the 10 bits they encode: an id is 10 lookups, not 20 divisions.
_PAIRS = tuple(high + low for high in _ALPHABET for low in _ALPHABET)


def _encode(number: int, length: int) -> str:
    """The low 5 x length bits of number as `length` characters (an even count), most
    significant first."""
    return "".join([_PAIRS[(number >> shift) & 1023] for shift in range(5 * length - 10, -1, -10)])


def new_id(prefix: str, *, now_ms: int | None = None) -> str:
    millis = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    body = ((millis & (2**48 - 1)) << 52) | secrets.randbits(52)
    return f"{prefix}_{_encode(body, _BODY_LENGTH)}"


def tag_for_child(child_order_id: ChildOrderId) -> str:
    """The comment tag of a child order: fits MAX_TAG_LENGTH, ASCII, unique per child."""
    body = child_order_id.rsplit("_", 1)[-1]
    tag = f"{TAG_PREFIX}{body}"
    if len(tag) > MAX_TAG_LENGTH or not tag.isascii():
        raise ValueError(f"child order id {child_order_id!r} does not make a valid tag")
    return tag
