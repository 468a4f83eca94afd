"""Fills: executions of child orders at a broker."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from gateway.domain.orders import Side


@dataclass(frozen=True, slots=True)
class Fill:
    # Global, gap-free, increasing; assigned when the fill is committed (0 before).
    sequence: int
    fill_id: str
    master_order_id: str
    child_order_id: str
    account_id: str
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
