"""What an allocation reads (one member, the request) and what it gives (the Allocation and
its lines, one per member, with the reasons of each volume)."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import repeat
from typing import NamedTuple

from gateway.domain.accounts import (
    AccountSnapshot,
    AllocationMethod,
    AllocationSettings,
    BelowMinPolicy,
    GroupMember,
)
from gateway.domain.decimals import decimal_places
from gateway.domain.ids import AccountId
from gateway.domain.pre_trade_risk import RiskDecision
from gateway.domain.symbols import SymbolSpec

# Targets are exact rationals; lines show them rounded to this.
TARGET_DISPLAY_QUANTUM = Decimal("1E-10")


class AllocationReason(enum.Enum):
    ROUNDED_DOWN = "ROUNDED_DOWN"
    ROUNDED_UP = "ROUNDED_UP"
    SKIPPED_BELOW_MIN = "SKIPPED_BELOW_MIN"
    RAISED_TO_MIN = "RAISED_TO_MIN"
    CLIPPED_MAX_LOT = "CLIPPED_MAX_LOT"
    SPLIT_MAX_VOLUME = "SPLIT_MAX_VOLUME"
    INACTIVE = "INACTIVE"
    NO_STOP_LOSS = "NO_STOP_LOSS"
    NO_BASIS = "NO_BASIS"
    TERMINAL_UNAVAILABLE = "TERMINAL_UNAVAILABLE"
    SYMBOL_UNAVAILABLE = "SYMBOL_UNAVAILABLE"
    # Pre-trade risk (gateway/domain/risk_allocation.py): a child order was sent smaller than
    # allocated, or not at all; the line's risk_checks say which rules and why.
    RISK_CLIPPED = "RISK_CLIPPED"
    RISK_SKIPPED = "RISK_SKIPPED"
    # A member's copy options (gateway/domain/copying.py). The account trades the other side,
    # or without the order's SL/TP: its children still go out.
    REVERSED = "REVERSED"
    STOPS_NOT_COPIED = "STOPS_NOT_COPIED"
    # Its volume was below the member's own minimum and raised to it.
    RAISED_TO_COPY_MIN = "RAISED_TO_COPY_MIN"
    # The account copies nothing of the order:
    SKIPPED_BELOW_COPY_MIN = "SKIPPED_BELOW_COPY_MIN"
    CLOSE_ONLY = "CLOSE_ONLY"
    PENDING_NOT_COPIED = "PENDING_NOT_COPIED"
    DIRECTION_FILTERED = "DIRECTION_FILTERED"
    NOT_REVERSIBLE = "NOT_REVERSIBLE"
    SIGNAL_TOO_OLD = "SIGNAL_TOO_OLD"
    SLIPPAGE_TOO_HIGH = "SLIPPAGE_TOO_HIGH"
    # Its price could not be read to compare with the source's: skipped on the safe side.
    SLIPPAGE_UNKNOWN = "SLIPPAGE_UNKNOWN"


class MemberInput(NamedTuple):
    """One member as the allocation sees it, from one snapshot. (A named tuple: a group may
    have ten thousand members, and these are read field by field.)"""

    account_id: AccountId
    # The broker symbol the member trades, and its spec there (None: not tradable there).
    symbol: str
    spec: SymbolSpec | None
    active: bool
    # The member's money when the order arrived (None: its terminal could not say).
    snapshot: AccountSnapshot | None
    settings: GroupMember
    # PERCENT_RISK: the member's current price on the order's side (ask to buy, bid to sell).
    entry_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class AllocationRequest:
    """What is shared: the master order's volume and what the methods need from it."""

    volume: Decimal
    symbol: SymbolSpec
    settings: AllocationSettings
    snapshot_time: datetime
    stop_loss: Decimal | None = None
    # EQUITY_RATIO: the group's fixed base amount, or its reference account's equity.
    reference_equity: Decimal | None = None


class AllocationLine(NamedTuple):
    account_id: AccountId
    symbol: str
    method: AllocationMethod
    # The value the volume was computed from: equity, balance or free margin for those methods,
    # 1 for EQUAL, the member's percentage, multiplier, fixed lots, or equity (ratio, risk).
    basis: Decimal | None
    target_volume: Decimal
    volume: Decimal
    child_volumes: tuple[Decimal, ...]
    reasons: tuple[AllocationReason, ...]
    snapshot: AccountSnapshot | None = None
    entry_price: Decimal | None = None
    # The contract size of the member's symbol (exposure = volume x contract size).
    contract_size: Decimal | None = None
    # The pre-trade risk decision on each allocated child volume, in order (none when the
    # account was not checked: its group and it have no limits and it is not stopped out).
    risk_checks: tuple[RiskDecision, ...] = ()


@dataclass(frozen=True, slots=True)
class Allocation:
    method: AllocationMethod
    below_min_policy: BelowMinPolicy
    requested_volume: Decimal
    # Both in lots of the master symbol (exposure / its contract size). Independent methods
    # and ROUND_UP_TO_MIN can trade more than requested: unallocated is then negative.
    allocated_volume: Decimal
    unallocated_volume: Decimal
    snapshot_time: datetime
    lines: tuple[AllocationLine, ...]
    reference_equity: Decimal | None = None

    @property
    def child_count(self) -> int:
        return sum(len(line.child_volumes) for line in self.lines)


def allocation_of(
    request: AllocationRequest, lines: tuple[AllocationLine, ...], exposure: Decimal
) -> Allocation:
    """The allocation of `lines` (ordered by account id), which trade `exposure` in all."""
    settings, master = request.settings, request.symbol
    allocated = plain_total(exposure / master.contract_size, master.volume_step)
    return Allocation(
        method=settings.method,
        below_min_policy=settings.below_min_policy,
        requested_volume=request.volume,
        allocated_volume=allocated,
        unallocated_volume=plain_total(request.volume - allocated, master.volume_step),
        snapshot_time=request.snapshot_time,
        lines=lines,
        reference_equity=request.reference_equity,
    )


def plain_total(value: Decimal, step: Decimal) -> Decimal:
    """A total in plain form: at least the step's decimals, no needless trailing zeros."""
    places = max(decimal_places(step), decimal_places(value.normalize()))
    return value.quantize(Decimal(1).scaleb(-places))


def line_exposure(lines: Iterable[AllocationLine], master_contract: Decimal) -> Decimal:
    """What `lines` trade in all, in units of the underlying (volume x contract size)."""
    return sum(
        (line.volume * (line.contract_size or master_contract) for line in lines), Decimal(0)
    )


def unable_line(
    member: MemberInput, method: AllocationMethod, basis: Decimal | None, reason: AllocationReason
) -> AllocationLine:
    """The line of a member that gets nothing at all, for `reason`."""
    return AllocationLine(
        member.account_id, member.symbol, method, basis, Decimal(0), Decimal(0), (), (reason,),
        member.snapshot, member.entry_price,
    )  # fmt: skip


def build_lines(
    account_ids: Iterable[AccountId],
    symbols: Iterable[str],
    methods: Iterable[AllocationMethod],
    bases: Iterable[Decimal | None],
    targets: Iterable[Decimal],
    volumes: Iterable[Decimal],
    child_volumes: Iterable[tuple[Decimal, ...]],
    reasons: Iterable[tuple[AllocationReason, ...]],
    snapshots: Iterable[AccountSnapshot | None],
    entry_prices: Iterable[Decimal | None],
    contract_sizes: Iterable[Decimal | None],
) -> tuple[AllocationLine, ...]:
    """Lines from their fields, column by column. tuple.__new__ is what AllocationLine's own
    (generated, Python) __new__ calls; mapped over the columns it builds each line in C."""
    return tuple(
        map(
            tuple.__new__,
            repeat(AllocationLine),
            zip(
                account_ids,
                symbols,
                methods,
                bases,
                targets,
                volumes,
                child_volumes,
                reasons,
                snapshots,
                entry_prices,
                contract_sizes,
                repeat(()),
            ),
        )
    )
