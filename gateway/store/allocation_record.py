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


def _snapshot(snapshot: AccountSnapshot | None) -> dict[str, Any] | None:
    if snapshot is None:
        return None
    return {
        "balance": _dec(snapshot.balance),
        "equity": _dec(snapshot.equity),
        "margin": _dec(snapshot.margin),
        "free_margin": _dec(snapshot.free_margin),
        "time": snapshot.time.isoformat(),
    }


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


def allocation_to_json(allocation: Allocation) -> str:
    return json.dumps(
        {
            "method": allocation.method.value,
            "below_min_policy": allocation.below_min_policy.value,
            "requested_volume": _dec(allocation.requested_volume),
            "allocated_volume": _dec(allocation.allocated_volume),
            "unallocated_volume": _dec(allocation.unallocated_volume),
            "snapshot_time": allocation.snapshot_time.isoformat(),
            "reference_equity": _dec(allocation.reference_equity),
            "lines": [
                {
                    "account_id": line.account_id,
                    "symbol": line.symbol,
                    "method": line.method.value,
                    "basis": _dec(line.basis),
                    "target_volume": _dec(line.target_volume),
                    "volume": _dec(line.volume),
                    "child_volumes": [_dec(v) for v in line.child_volumes],
                    "reasons": [r.value for r in line.reasons],
                    "snapshot": _snapshot(line.snapshot),
                    "entry_price": _dec(line.entry_price),
                    "contract_size": _dec(line.contract_size),
                    # Only on checked lines: most lines of most groups carry none.
                    **(
                        {"risk_checks": [_decision(d) for d in line.risk_checks]}
                        if line.risk_checks
                        else {}
                    ),
                }
                for line in allocation.lines
            ],
        },
        separators=(",", ":"),
    )


def allocation_from_json(text: str) -> Allocation:
    data = json.loads(text)
    method = AllocationMethod(data["method"])
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
                risk_checks=tuple(_undecision(d) for d in line.get("risk_checks", ())),
            )
            for line in data["lines"]
        ),
    )
