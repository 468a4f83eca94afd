"""Money moved into or out of an account that is not trading: deposits, withdrawals, credit.

Reporting keeps these apart from performance: a deposit raises equity without earning
anything, so every return and the high-water mark are adjusted for them (docs/reporting.md).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


class BalanceOperationKind(enum.Enum):
    # MT5 DEAL_TYPE_BALANCE with a positive amount.
    DEPOSIT = "DEPOSIT"
    # MT5 DEAL_TYPE_BALANCE with a negative amount.
    WITHDRAWAL = "WITHDRAWAL"
    # MT5 DEAL_TYPE_CREDIT: the broker's credit, granted (> 0) or removed (< 0). It counts in
    # equity but is not the client's money, so it is a cash flow like a deposit.
    CREDIT = "CREDIT"
    # Capital entering (> 0) or leaving (< 0) an aggregate such as a group when one of its
    # accounts starts being valued mid-period; never reported by a broker.
    TRANSFER = "TRANSFER"


@dataclass(frozen=True, slots=True)
class BalanceOperation:
    """One cash flow of an account at `time` (UTC), signed as the broker reports it: money in
    is positive, money out negative."""

    time: datetime
    kind: BalanceOperationKind
    amount: Decimal
    # The broker's deal ticket, where there is one (0: none).
    ticket: int = 0
    comment: str = ""

    def __post_init__(self) -> None:
        if self.kind is BalanceOperationKind.DEPOSIT and self.amount <= 0:
            raise ValueError(f"a deposit must be positive: {self.amount}")
        if self.kind is BalanceOperationKind.WITHDRAWAL and self.amount >= 0:
            raise ValueError(f"a withdrawal must be negative: {self.amount}")


def net_flow(operations: Iterable[BalanceOperation]) -> Decimal:
    """The operations' amounts added up: money in less money out."""
    return sum((op.amount for op in operations), Decimal(0))
