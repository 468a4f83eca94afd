"""An account's history at its broker, as reporting reads it: its money over time, the deals
the broker executed for it, and the positions it holds."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from gateway.domain.accounts import AccountSnapshot
from gateway.domain.orders import Side


class DealEntry(enum.Enum):
    """What a deal did to a position (MT5 DEAL_ENTRY_*)."""

    IN = 0
    OUT = 1
    # A netting position reversed: the old one closed and a new one opened in one deal.
    INOUT = 2
    # Closed by an opposite position (CLOSE_BY).
    OUT_BY = 3


@dataclass(frozen=True, slots=True)
class AccountDeal:
    """One deal of an account's history at its broker; (account_id, ticket) identifies it."""

    account_id: str
    ticket: int
    order_ticket: int
    position_ticket: int
    symbol: str
    side: Side
    volume: Decimal
    price: Decimal
    entry: DealEntry
    # Realized profit in the account currency (closing deals).
    profit: Decimal
    magic: int
    comment: str
    executed_at: datetime


@dataclass(frozen=True, slots=True)
class AccountPosition:
    """A position an account held when its terminal was last read (`seen_at`, UTC)."""

    account_id: str
    ticket: int
    symbol: str
    side: Side
    volume: Decimal
    price_open: Decimal
    magic: int
    comment: str
    opened_at: datetime
    seen_at: datetime
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None


@dataclass(frozen=True, slots=True)
class AccountReading:
    """What one read of an account's terminal found: its money at `snapshot.time`, the deals
    executed since the last stored one (some may be stored already), and every open position."""

    account_id: str
    snapshot: AccountSnapshot
    deals: tuple[AccountDeal, ...] = field(default=())
    positions: tuple[AccountPosition, ...] = field(default=())

    @property
    def taken_at(self) -> datetime:
        return self.snapshot.time
