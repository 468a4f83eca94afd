"""Client accounts, their money at a point in time, and the groups a manager trades them in."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from gateway.domain.copy_options import DEFAULT_COPY_OPTIONS, CopyOptions
from gateway.domain.ids import AccountId, GroupId


class Platform(enum.Enum):
    MT4 = "MT4"
    MT5 = "MT5"
    SIMULATED = "SIMULATED"


class AccountState(enum.Enum):
    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"


class MarginMode(enum.Enum):
    HEDGING = "HEDGING"
    NETTING = "NETTING"


class AllocationMethod(enum.Enum):
    EQUITY = "EQUITY"
    BALANCE = "BALANCE"
    FREE_MARGIN = "FREE_MARGIN"
    EQUAL = "EQUAL"
    PERCENTAGE = "PERCENTAGE"
    LOT_MULTIPLIER = "LOT_MULTIPLIER"
    FIXED_LOTS = "FIXED_LOTS"
    EQUITY_RATIO = "EQUITY_RATIO"
    PERCENT_RISK = "PERCENT_RISK"


class BelowMinPolicy(enum.Enum):
    SKIP = "SKIP"
    ROUND_UP_TO_MIN = "ROUND_UP_TO_MIN"


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """An account's money as its terminal reported it at `time` (UTC)."""

    balance: Decimal
    equity: Decimal
    margin: Decimal
    free_margin: Decimal
    time: datetime

    @property
    def margin_level(self) -> Decimal | None:
        """Equity / margin x 100, or None while no margin is used."""
        if self.margin == 0:
            return None
        return (self.equity / self.margin * 100).quantize(Decimal("0.01"))


@dataclass(frozen=True, slots=True)
class Account:
    account_id: AccountId
    name: str
    platform: Platform
    login: int
    server: str
    currency: str
    state: AccountState
    margin_mode: MarginMode
    leverage: int
    created_at: datetime
    updated_at: datetime
    # PLATFORM SIMULATED: the opening deposit the simulated broker gives the account.
    initial_balance: Decimal | None = None
    snapshot: AccountSnapshot | None = None
    # Gateway symbol -> broker symbol.
    symbol_mappings: tuple[tuple[str, str], ...] = ()
    # Set by DeleteAccount: the account trades no more and is in no list or group, but its
    # history (orders, fills, deals, statements, audit) stays and names it.
    deleted_at: datetime | None = None

    @property
    def is_active(self) -> bool:
        return self.state is AccountState.ACTIVE and self.deleted_at is None

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    def broker_symbol(self, symbol: str) -> str:
        for gateway_symbol, broker_symbol in self.symbol_mappings:
            if gateway_symbol == symbol:
                return broker_symbol
        return symbol

    def gateway_symbol(self, broker_symbol: str) -> str:
        """The gateway's symbol of one this account's broker trades (a source's trades)."""
        for gateway_symbol, mapped in self.symbol_mappings:
            if mapped == broker_symbol:
                return gateway_symbol
        return broker_symbol


@dataclass(frozen=True, slots=True)
class AllocationSettings:
    method: AllocationMethod = AllocationMethod.EQUITY
    below_min_policy: BelowMinPolicy = BelowMinPolicy.SKIP
    reference_equity: Decimal | None = None
    reference_account_id: AccountId | None = None


@dataclass(frozen=True, slots=True)
class GroupMember:
    account_id: AccountId
    percentage: Decimal | None = None
    lot_multiplier: Decimal | None = None
    fixed_lots: Decimal | None = None
    risk_percent: Decimal | None = None
    max_lots: Decimal | None = None
    method: AllocationMethod | None = None
    # How the account copies the group's opening orders (reverse, filters, minimums).
    copy: CopyOptions = DEFAULT_COPY_OPTIONS


# A group's magic number is stamped on its child orders. MT4's OrderSend takes an int, so the
# largest magic every terminal accepts is a signed 32-bit one; assigned numbers start here.
MAX_MAGIC = 2**31 - 1
FIRST_MAGIC = 700_001


@dataclass(frozen=True, slots=True)
class Group:
    group_id: GroupId
    name: str
    allocation: AllocationSettings
    members: tuple[GroupMember, ...]
    magic: int
    created_at: datetime
    updated_at: datetime

    @property
    def account_ids(self) -> tuple[AccountId, ...]:
        return tuple(member.account_id for member in self.members)


@dataclass(frozen=True, slots=True)
class NewAccount:
    """A validated account to create (the server assigns id and times)."""

    name: str
    platform: Platform
    login: int
    server: str
    currency: str
    state: AccountState
    margin_mode: MarginMode
    leverage: int
    initial_balance: Decimal | None
    symbol_mappings: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class NewGroup:
    name: str
    allocation: AllocationSettings
    members: tuple[GroupMember, ...] = field(default=())
    magic: int | None = None
