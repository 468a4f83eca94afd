"""Fills: executions of child orders at a broker."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from gateway.domain.ids import AccountId, ChildOrderId, FillId, MasterOrderId
from gateway.domain.orders import Side


@dataclass(frozen=True, slots=True)
class Fill:
    # Global, gap-free, increasing; assigned when the fill is committed (0 before).
    sequence: int
    fill_id: FillId
    master_order_id: MasterOrderId
    child_order_id: ChildOrderId
    account_id: AccountId
    symbol: str
    side: Side
    volume: Decimal
    price: Decimal
    requested_price: Decimal | None
    slippage_points: Decimal | None
    deal_ticket: int
    order_ticket: int
    position_ticket: int
    executed_at: datetime
