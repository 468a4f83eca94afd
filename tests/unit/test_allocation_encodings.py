"""The allocation's two encodings (the stored JSON record and the mam.v1 message), and the
Timestamp conversion every message uses: exact, whatever objects the lines share."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from google.protobuf import timestamp_pb2

from gateway._proto.mam.v1 import order_pb2
from gateway.api import mapping
from gateway.api.mapping import allocation_to_proto, timestamp
from gateway.domain.accounts import AccountSnapshot, AllocationMethod, BelowMinPolicy
from gateway.domain.allocation import Allocation, AllocationLine, AllocationReason
from gateway.domain.pre_trade_risk import RiskAction, RiskDecision, RiskRule, RiskViolation
from gateway.store.allocation_record import allocation_from_json, allocation_to_json

D = Decimal
AT = datetime(2026, 11, 25, 9, 30, 15, 123456, tzinfo=UTC)
SHARED_VOLUME = D("0.10")


def _allocation() -> Allocation:
    snapshot = AccountSnapshot(D("1000.50"), D("990.25"), D("12.00"), D("978.25"), AT)
    no_margin = AccountSnapshot(D("500"), D("500"), D("0"), D("500"), AT + timedelta(seconds=1))
    clipped = RiskDecision(
        RiskAction.CLIP,
        D("0.30"),
        D("0.20"),
        (RiskViolation(RiskRule.SYMBOL_DENIED, "limit", True, D("0.20"), D("0.30")),),
        "clipped to 0.20",
    )
    lines = (
        # Two lines sharing one volume object and one contract size object.
        AllocationLine(
            "acc_a", "EURUSD", AllocationMethod.EQUITY, D("990.25"), D("0.1000000000"),
            SHARED_VOLUME, (SHARED_VOLUME,), (AllocationReason.ROUNDED_DOWN,), snapshot,
            None, D(100000),
        ),
        AllocationLine(
            "acc_b", "EURUSD.m", AllocationMethod.PERCENT_RISK, D("500"), D("0.1049999999"),
            SHARED_VOLUME, (D("0.05"), D("0.05")),
            (AllocationReason.ROUNDED_DOWN, AllocationReason.SPLIT_MAX_VOLUME), no_margin,
            D("1.08450"), D("1000"), (clipped,),
        ),
        AllocationLine(
            "acc_c", "EURUSD", AllocationMethod.EQUITY, None, D(0), D(0), (),
            (AllocationReason.TERMINAL_UNAVAILABLE,),
        ),
    )  # fmt: skip
    return Allocation(
        method=AllocationMethod.EQUITY,
        below_min_policy=BelowMinPolicy.SKIP,
        requested_volume=D("0.30"),
        allocated_volume=D("0.2"),
        unallocated_volume=D("0.1"),
        snapshot_time=AT,
        lines=lines,
        reference_equity=None,
    )


def test_the_stored_record_reads_back_exactly() -> None:
    allocation = _allocation()
    text = allocation_to_json(allocation)
    read = allocation_from_json(text)
    assert read == allocation
    # Exponents survive too: 0.10 stays 0.10, not 0.1.
    assert [str(v) for line in read.lines for v in line.child_volumes] == ["0.10", "0.05", "0.05"]
    assert json.loads(text)["lines"][2][8] is None  # no snapshot


def test_records_written_with_lines_as_objects_still_read() -> None:
    """Records stored before lines became arrays: one object per line."""
    allocation = _allocation()
    record = json.loads(allocation_to_json(allocation))
    fields, snapshot_fields = record.pop("line_fields"), record.pop("snapshot_fields")
    objects = []
    for values in record["lines"]:
        line = dict(zip(fields, values, strict=True))
        if line["snapshot"] is not None:
            line["snapshot"] = dict(zip(snapshot_fields, line["snapshot"], strict=True))
        if line["risk_checks"] is None:
            del line["risk_checks"]
        objects.append(line)
    record["lines"] = objects
    assert allocation_from_json(json.dumps(record)) == allocation


def test_the_message_carries_every_field_of_every_line() -> None:
    message = allocation_to_proto(_allocation())
    first, second, third = message.lines
    assert (first.account_id, first.basis, first.target_volume, first.volume) == (
        "acc_a", "990.25", "0.1000000000", "0.10",
    )  # fmt: skip
    assert list(first.child_volumes) == ["0.10"]
    assert list(first.reasons) == [order_pb2.ALLOCATION_REASON_ROUNDED_DOWN]
    level = _allocation().lines[0].snapshot.margin_level  # type: ignore[union-attr]
    assert level is not None and first.snapshot.margin_level == f"{level:f}" == "8252.08"
    assert first.snapshot.time.ToDatetime(tzinfo=UTC) == AT
    assert first.entry_price == "" and first.contract_size == "100000"
    assert list(second.child_volumes) == ["0.05", "0.05"]
    assert second.snapshot.margin_level == "" and second.entry_price == "1.08450"
    assert second.snapshot.time.ToDatetime(tzinfo=UTC) == AT + timedelta(seconds=1)
    (check,) = second.risk_checks
    assert (check.requested_volume, check.volume, check.summary) == (
        "0.30",
        "0.20",
        "clipped to 0.20",
    )
    assert not third.HasField("snapshot") and third.basis == "" and third.contract_size == ""
    assert list(third.reasons) == [order_pb2.ALLOCATION_REASON_TERMINAL_UNAVAILABLE]


def test_the_summary_only_message_builds_no_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """MASTER_ORDER_VIEW_BASIC saves the lines' CPU: they are not built and then dropped."""
    full = allocation_to_proto(_allocation())

    def no_lines(allocation: Allocation) -> list[order_pb2.AllocationLine]:
        raise AssertionError("lines built for a summary-only allocation")

    monkeypatch.setattr(mapping, "_allocation_lines", no_lines)
    summary = allocation_to_proto(_allocation(), lines=False)
    assert list(summary.lines) == [] and len(full.lines) == 3
    full.ClearField("lines")
    assert summary == full  # everything else, field by field


@pytest.mark.parametrize(
    "value",
    [
        AT,
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1900, 3, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=3))),
        datetime(2026, 3, 29, 1, 30, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
        datetime(2026, 11, 25, 12, 0, 0, 7),  # naive: UTC, as FromDatetime reads it
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_timestamps_equal_protobufs_own_conversion(value: datetime) -> None:
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(value)
    assert timestamp(value) == expected
