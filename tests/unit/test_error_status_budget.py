"""Every status the gateway sends fits gRPC's metadata limit, however many ids or violations its
error lists, and says how many it left out."""

from __future__ import annotations

import urllib.parse
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from gateway.api.errors import (
    MAX_LISTED_VIOLATIONS,
    MAX_MESSAGE_BYTES,
    capped_text,
    status_of,
)
from gateway.domain.errors import FieldViolation, InvalidArgument, NotFound

# From here gRPC clients begin to refuse trailers (soft limit; hard at 16 KiB).
CLIENT_METADATA_SOFT_LIMIT = 8 * 1024


def _trailer_bytes(status: grpc.Status) -> int:
    """What the status weighs in the trailers as gRPC counts it: the percent-encoded message
    plus each trailing entry, 32 bytes of overhead each (HPACK)."""
    size = len("grpc-message") + len(urllib.parse.quote(status.details, safe=" ")) + 32
    for key, value in status.trailing_metadata:
        size += len(key) + len(value) + 32
    return size


def _parts(status: grpc.Status) -> tuple[Any, Any]:
    [(_, raw)] = status.trailing_metadata
    proto = status_pb2.Status.FromString(raw)
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    for detail in proto.details:
        if detail.Is(info.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(bad.DESCRIPTOR):
            detail.Unpack(bad)
    return info, bad


def test_a_thousand_violations_are_listed_up_to_the_budget_then_counted() -> None:
    violations = [
        FieldViolation(f"group.members[{i}].account_id", f"account 'a-{i}' is listed twice")
        for i in range(1_000)
    ]
    status = status_of(InvalidArgument(violations))
    info, bad = _parts(status)
    listed = list(bad.field_violations)
    assert len(listed) <= MAX_LISTED_VIOLATIONS + 1
    *shown, summary = listed
    assert [(v.field, v.description) for v in shown] == [
        (v.field, v.description) for v in violations[: len(shown)]
    ]
    omitted = 1_000 - len(shown)
    assert summary.field == ""
    assert summary.description == f"{omitted:,} more field violations not listed"
    assert info.metadata["omitted_violations"] == str(omitted)
    assert status.details.endswith("more field violations")
    assert _trailer_bytes(status) < CLIENT_METADATA_SOFT_LIMIT * 3 // 4


def test_a_not_found_listing_a_thousand_ids_is_cut_and_says_how_many_more() -> None:
    ids = [f"'acc-{i:06d}-unknown'" for i in range(1_000)]
    error = NotFound("no such account: " + ", ".join(ids), reason="ACCOUNT_NOT_FOUND")
    status = status_of(error)
    message = status.details
    assert len(message.encode()) <= MAX_MESSAGE_BYTES
    shown = message.count("'acc-")
    more = int(message.rsplit("… and ", 1)[1].removesuffix(" more").replace(",", ""))
    assert shown + more == 1_000
    assert _trailer_bytes(status) < CLIENT_METADATA_SOFT_LIMIT * 3 // 4


def test_huge_non_ascii_fields_and_descriptions_stay_within_the_budget() -> None:
    violations = [FieldViolation("é" * 5_000, "ü" * 50_000) for _ in range(200)]
    status = status_of(InvalidArgument(violations, message="ß" * 100_000))
    assert _trailer_bytes(status) < CLIENT_METADATA_SOFT_LIMIT * 3 // 4
    _, bad = _parts(status)
    assert bad.field_violations[-1].description.endswith("more field violations not listed")


def test_a_small_error_is_sent_unchanged() -> None:
    violations = [FieldViolation("order.volume", "must be greater than 0")]
    status = status_of(InvalidArgument(violations, reason="INVALID_VOLUME"))
    info, bad = _parts(status)
    assert status.details == "order.volume: must be greater than 0"
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("order.volume", "must be greater than 0")
    ]
    assert info.reason == "INVALID_VOLUME" and dict(info.metadata) == {}


def test_text_without_a_list_is_cut_on_a_character_and_counts_the_rest() -> None:
    text = "é" * 1_000
    cut = capped_text(text, 100)
    assert len(cut.encode()) <= 100
    kept = cut.split("…")[0]
    assert set(kept) == {"é"}
    assert cut.endswith(f"({1_000 - len(kept):,} more characters)")
    assert capped_text("short", 100) == "short"
