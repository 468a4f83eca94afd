"""How well each account followed the master: volume against its exact share, price against the
master's, and time against the other accounts of the same master order. Pure and exact.

Volume: an account's exact share of a master order (the allocation's target) is rounded to its
lot step (rounding drift), then may fill short of that (unfilled volume). Both accumulate over
orders; the drift is filled - target, counted per account and symbol (lots of different symbols
are not added together).
Price: slippage in points = (fill price - master price) x direction / point, direction +1 for a
buy and -1 for a sell, so a positive slippage is adverse (paid more, or sold for less), as the
dispatcher records it.
Time: the dispatch skew of a master order is the time from its first child sent to its last;
an account's dispatch delay is how long after the first child of the same master order its
own was sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, localcontext

from gateway.domain.orders import Side
from gateway.domain.performance import EXACT_CONTEXT, STATISTICS_CONTEXT

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class AccountExecution:
    """One account's part of one master order."""

    master_order_id: str
    account_id: str
    # The broker symbol the account traded, and its point (price step of one point).
    symbol: str
    point: Decimal
    side: Side
    # When the master order was accepted (its allocation's snapshot time).
    submitted_at: datetime
    # The account's exact share (AllocationLine.target_volume), its volume after rounding to the
    # lot step (AllocationLine.volume), and what its children filled.
    target_volume: Decimal
    allocated_volume: Decimal
    filled_volume: Decimal
    # The price the master traded at or asked for, and the account's volume-weighted average
    # fill price; None: no price to compare (nothing filled, or a master without a price).
    master_price: Decimal | None = None
    fill_price: Decimal | None = None
    # When the account's first child was sent, and its first fill.
    sent_at: datetime | None = None
    filled_at: datetime | None = None
    # A copy of a source account's change (mirroring): when the source made it.
    signal_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class VolumeDrift:
    """One order's step in an account's accumulated volume drift on one symbol."""

    master_order_id: str
    submitted_at: datetime
    # allocated - target, and allocated - filled, of this order.
    rounding: Decimal
    unfilled: Decimal
    # Sums over this order and every earlier one.
    cumulative_rounding: Decimal
    cumulative_unfilled: Decimal
    # cumulative filled - cumulative target.
    cumulative_drift: Decimal


@dataclass(frozen=True, slots=True)
class SymbolVolumeQuality:
    symbol: str
    orders: int
    target_volume: Decimal
    allocated_volume: Decimal
    filled_volume: Decimal
    # allocated - target; allocated - filled; filled - target (= rounding - unfilled).
    rounding_drift: Decimal
    unfilled_volume: Decimal
    drift: Decimal
    history: tuple[VolumeDrift, ...]


@dataclass(frozen=True, slots=True)
class SlippageSummary:
    # Orders with a fill and both prices.
    fills: int = 0
    # Weighted by filled volume; positive is adverse.
    average_points: Decimal | None = None
    worst_points: Decimal | None = None
    best_points: Decimal | None = None


@dataclass(frozen=True, slots=True)
class AccountExecutionQuality:
    account_id: str
    orders: int
    volumes: tuple[SymbolVolumeQuality, ...]
    slippage: SlippageSummary
    # Over the orders the account was sent: mean and largest delay after its master order's
    # first child, and mean time from the master's acceptance to the account's send.
    average_dispatch_delay_us: int | None
    max_dispatch_delay_us: int | None
    average_send_latency_us: int | None
    # Over the copies of a source's changes: how many, and the mean and largest time from the
    # change at the source to the account's send and to its first fill.
    copied_orders: int = 0
    average_signal_to_send_us: int | None = None
    max_signal_to_send_us: int | None = None
    average_signal_to_fill_us: int | None = None
    max_signal_to_fill_us: int | None = None


@dataclass(frozen=True, slots=True)
class MasterDispatchSkew:
    master_order_id: str
    # Accounts whose child was sent.
    accounts_sent: int
    # Last send - first send, and last first fill - first first fill; None without a send (fill).
    dispatch_skew_us: int | None
    fill_skew_us: int | None
    # A copy of a source's change: from the change to the first send and to the last first
    # fill; None otherwise (or without a send, a fill).
    signal_to_first_send_us: int | None = None
    signal_to_last_fill_us: int | None = None


def slippage_points(
    side: Side, master_price: Decimal, fill_price: Decimal, point: Decimal
) -> Decimal:
    """(fill - master) x direction / point: positive is adverse. Exact: a point is a power of 10."""
    if point <= 0:
        raise ValueError(f"a point must be positive: {point}")
    direction = 1 if side is Side.BUY else -1
    with localcontext(EXACT_CONTEXT):
        return (fill_price - master_price) * direction / point


def execution_quality(
    executions: Iterable[AccountExecution],
) -> tuple[AccountExecutionQuality, ...]:
    """Each account's execution quality over the given orders, by account id."""
    records = sorted(executions, key=lambda e: (e.submitted_at, e.master_order_id))
    first_sent = _first_sent_by_master(records)
    by_account: dict[str, list[AccountExecution]] = {}
    for record in records:
        by_account.setdefault(record.account_id, []).append(record)
    return tuple(
        _account_quality(account_id, by_account[account_id], first_sent)
        for account_id in sorted(by_account)
    )


def dispatch_skews(executions: Iterable[AccountExecution]) -> tuple[MasterDispatchSkew, ...]:
    """Each master order's spread of send and first-fill times over its accounts."""
    by_master: dict[str, list[AccountExecution]] = {}
    for record in executions:
        by_master.setdefault(record.master_order_id, []).append(record)
    skews: list[MasterDispatchSkew] = []
    for master_order_id in sorted(by_master):
        records = by_master[master_order_id]
        sent = [r.sent_at for r in records if r.sent_at is not None]
        filled = [r.filled_at for r in records if r.filled_at is not None]
        signal_at = records[0].signal_at
        skews.append(
            MasterDispatchSkew(
                master_order_id=master_order_id,
                accounts_sent=len(sent),
                dispatch_skew_us=_micros(max(sent) - min(sent)) if sent else None,
                fill_skew_us=_micros(max(filled) - min(filled)) if filled else None,
                signal_to_first_send_us=(
                    _micros(min(sent) - signal_at) if sent and signal_at is not None else None
                ),
                signal_to_last_fill_us=(
                    _micros(max(filled) - signal_at) if filled and signal_at is not None else None
                ),
            )
        )
    return tuple(skews)


def _first_sent_by_master(records: Iterable[AccountExecution]) -> dict[str, datetime]:
    first: dict[str, datetime] = {}
    for record in records:
        if record.sent_at is not None:
            known = first.get(record.master_order_id)
            if known is None or record.sent_at < known:
                first[record.master_order_id] = record.sent_at
    return first


def _account_quality(
    account_id: str, records: Sequence[AccountExecution], first_sent: dict[str, datetime]
) -> AccountExecutionQuality:
    by_symbol: dict[str, list[AccountExecution]] = {}
    for record in records:
        by_symbol.setdefault(record.symbol, []).append(record)
    delays = [
        _micros(r.sent_at - first_sent[r.master_order_id]) for r in records if r.sent_at is not None
    ]
    latencies = [_micros(r.sent_at - r.submitted_at) for r in records if r.sent_at is not None]
    copies = [r for r in records if r.signal_at is not None]
    to_send = [_micros(r.sent_at - r.signal_at) for r in copies if r.sent_at and r.signal_at]
    to_fill = [_micros(r.filled_at - r.signal_at) for r in copies if r.filled_at and r.signal_at]
    return AccountExecutionQuality(
        account_id=account_id,
        orders=len(records),
        volumes=tuple(_volume_quality(s, by_symbol[s]) for s in sorted(by_symbol)),
        slippage=_slippage(records),
        average_dispatch_delay_us=_mean_micros(delays),
        max_dispatch_delay_us=max(delays) if delays else None,
        average_send_latency_us=_mean_micros(latencies),
        copied_orders=len(copies),
        average_signal_to_send_us=_mean_micros(to_send),
        max_signal_to_send_us=max(to_send) if to_send else None,
        average_signal_to_fill_us=_mean_micros(to_fill),
        max_signal_to_fill_us=max(to_fill) if to_fill else None,
    )


def _volume_quality(symbol: str, records: Sequence[AccountExecution]) -> SymbolVolumeQuality:
    history: list[VolumeDrift] = []
    target = allocated = filled = _ZERO
    with localcontext(EXACT_CONTEXT):
        for record in records:
            target += record.target_volume
            allocated += record.allocated_volume
            filled += record.filled_volume
            history.append(
                VolumeDrift(
                    master_order_id=record.master_order_id,
                    submitted_at=record.submitted_at,
                    rounding=record.allocated_volume - record.target_volume,
                    unfilled=record.allocated_volume - record.filled_volume,
                    cumulative_rounding=allocated - target,
                    cumulative_unfilled=allocated - filled,
                    cumulative_drift=filled - target,
                )
            )
        return SymbolVolumeQuality(
            symbol=symbol,
            orders=len(records),
            target_volume=target,
            allocated_volume=allocated,
            filled_volume=filled,
            rounding_drift=allocated - target,
            unfilled_volume=allocated - filled,
            drift=filled - target,
            history=tuple(history),
        )


def _slippage(records: Sequence[AccountExecution]) -> SlippageSummary:
    priced = [
        (slippage_points(r.side, r.master_price, r.fill_price, r.point), r.filled_volume)
        for r in records
        if r.master_price is not None and r.fill_price is not None and r.filled_volume > 0
    ]
    if not priced:
        return SlippageSummary()
    with localcontext(EXACT_CONTEXT):
        weighted = sum((points * volume for points, volume in priced), _ZERO)
        volume = sum((v for _, v in priced), _ZERO)
    with localcontext(STATISTICS_CONTEXT):
        average = weighted / volume
    values = [points for points, _ in priced]
    return SlippageSummary(
        fills=len(priced), average_points=average, worst_points=max(values), best_points=min(values)
    )


def _micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _mean_micros(values: Sequence[int]) -> int | None:
    """The mean rounded half up to a whole microsecond, in integers."""
    if not values:
        return None
    return (2 * sum(values) + len(values)) // (2 * len(values))
