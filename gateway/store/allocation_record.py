"""The stored form of an allocation: the audit record of why each account got what it got.

JSON in the master order's row: the settings, every account's snapshot, method, basis, exact
target, final and child volumes, reasons and pre-trade risk decisions. Decimals are kept as their
exact strings.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from gateway.domain.accounts import AccountSnapshot, AllocationMethod, BelowMinPolicy
from gateway.domain.allocation import Allocation, AllocationLine, AllocationReason
from gateway.domain.pre_trade_risk import RiskAction, RiskDecision, RiskRule, RiskViolation


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:f}"


def _undec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _unsnapshot(data: dict[str, Any] | None) -> AccountSnapshot | None:
    if data is None:
        return None
    return AccountSnapshot(
        balance=Decimal(data["balance"]),
        equity=Decimal(data["equity"]),
        margin=Decimal(data["margin"]),
        free_margin=Decimal(data["free_margin"]),
        time=datetime.fromisoformat(data["time"]),
    )


def _decision(decision: RiskDecision) -> dict[str, Any]:
    return {
        "action": decision.action.value,
        "requested_volume": _dec(decision.requested_volume),
        "volume": _dec(decision.volume),
        "summary": decision.summary,
        "violations": [
            {
                "rule": v.rule.value,
                "message": v.message,
                "clippable": v.clippable,
                "limit": _dec(v.limit),
                "value": _dec(v.value),
            }
            for v in decision.violations
        ],
    }


def _undecision(data: dict[str, Any]) -> RiskDecision:
    return RiskDecision(
        action=RiskAction(data["action"]),
        requested_volume=Decimal(data["requested_volume"]),
        volume=Decimal(data["volume"]),
        summary=data["summary"],
        violations=tuple(
            RiskViolation(
                rule=RiskRule(v["rule"]),
                message=v["message"],
                clippable=v["clippable"],
                limit=_undec(v["limit"]),
                value=_undec(v["value"]),
            )
            for v in data["violations"]
        ),
    )


# A line is stored as an array of these, named once per record: half the bytes of an object
# per line, and a third of the encoding time. The snapshot is an array of SNAPSHOT_FIELDS.
LINE_FIELDS = (
    "account_id", "symbol", "method", "basis", "target_volume", "volume", "child_volumes",
    "reasons", "snapshot", "entry_price", "contract_size", "risk_checks",
)  # fmt: skip
SNAPSHOT_FIELDS = ("balance", "equity", "margin", "free_margin", "time")


def allocation_to_json(allocation: Allocation) -> str:
    """The record, written in the submission's transaction (so before it is acknowledged).

    Thousands of lines share a few decimal objects (volumes, contract sizes) and snapshot
    times: their texts are made once per object."""
    texts: dict[int, str] = {}
    times: dict[int, str] = {}

    def text(value: Decimal | None) -> str | None:
        if value is None:
            return None
        found = texts.get(id(value))
        if found is None:
            found = texts[id(value)] = f"{value:f}"
        return found

    def snapshot(value: AccountSnapshot | None) -> list[str | None] | None:
        if value is None:
            return None
        at = times.get(id(value.time))
        if at is None:
            at = times[id(value.time)] = value.time.isoformat()
        return [text(value.balance), text(value.equity), text(value.margin),
                text(value.free_margin), at]  # fmt: skip

    return _ENCODER.encode(
        {
            "method": allocation.method.value,
            "below_min_policy": allocation.below_min_policy.value,
            "requested_volume": _dec(allocation.requested_volume),
            "allocated_volume": _dec(allocation.allocated_volume),
            "unallocated_volume": _dec(allocation.unallocated_volume),
            "snapshot_time": allocation.snapshot_time.isoformat(),
            "reference_equity": _dec(allocation.reference_equity),
            "line_fields": LINE_FIELDS,
            "snapshot_fields": SNAPSHOT_FIELDS,
            "lines": [
                (
                    line.account_id,
                    line.symbol,
                    _METHODS[line.method],
                    text(line.basis),
                    text(line.target_volume),
                    text(line.volume),
                    [text(v) for v in line.child_volumes],
                    [_REASONS[r] for r in line.reasons],
                    snapshot(line.snapshot),
                    text(line.entry_price),
                    text(line.contract_size),
                    # Only on checked lines: most lines of most groups carry none.
                    [_decision(d) for d in line.risk_checks] if line.risk_checks else None,
                )
                for line in allocation.lines
            ],
        }
    )


# Enum values by member: Enum.value is a descriptor call, and this runs per line.
_METHODS = {method: method.value for method in AllocationMethod}
_REASONS = {reason: reason.value for reason in AllocationReason}
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def allocation_from_json(text: str) -> Allocation:
    """Reads both forms: lines as arrays (LINE_FIELDS) and, from earlier records, as objects."""
    data = json.loads(text)
    method = AllocationMethod(data["method"])
    fields = data.get("line_fields")
    if fields is None:
        lines = data["lines"]
    else:
        snapshot_fields = data["snapshot_fields"]
        lines = [dict(zip(fields, values, strict=True)) for values in data["lines"]]
        for line in lines:
            if line["snapshot"] is not None:
                line["snapshot"] = dict(zip(snapshot_fields, line["snapshot"], strict=True))
    return Allocation(
        method=method,
        below_min_policy=BelowMinPolicy(data["below_min_policy"]),
        requested_volume=Decimal(data["requested_volume"]),
        allocated_volume=Decimal(data["allocated_volume"]),
        unallocated_volume=Decimal(data["unallocated_volume"]),
        snapshot_time=datetime.fromisoformat(data["snapshot_time"]),
        reference_equity=_undec(data.get("reference_equity")),
        lines=tuple(
            AllocationLine(
                account_id=line["account_id"],
                symbol=line["symbol"],
                method=AllocationMethod(line.get("method", method.value)),
                basis=_undec(line["basis"]),
                target_volume=Decimal(line["target_volume"]),
                volume=Decimal(line["volume"]),
                child_volumes=tuple(Decimal(v) for v in line["child_volumes"]),
                reasons=tuple(AllocationReason(r) for r in line["reasons"]),
                snapshot=_unsnapshot(line.get("snapshot")),
                entry_price=_undec(line.get("entry_price")),
                contract_size=_undec(line.get("contract_size")),
                risk_checks=tuple(_undecision(d) for d in line.get("risk_checks") or ()),
            )
            for line in lines
        ),
    )
