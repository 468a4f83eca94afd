"""An account's (or a group's) performance over a period, from its stored history: equity
snapshots, cash flows and deals. Pure and exact; docs/reporting.md states every formula.

Conventions, in short:
- A snapshot taken at time t includes every cash flow with time <= t.
- The period's measured window runs from its first snapshot to its last; a flow in
  (t_k, t_k+1] between two snapshots is applied to the equity of the earlier one: the capital at
  work over that interval is E_k + F_k, and the interval's return is E_k+1 / (E_k + F_k) - 1.
- Returns chain those interval returns (time-weighted), so deposits and withdrawals earn nothing.
- Days are UTC days; a day's value is its last snapshot.
- Money is added exactly; ratios and statistics are computed to STATISTICS_CONTEXT's 34
  significant digits (ROUND_HALF_EVEN) and not rounded further: presentation rounds.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext

from gateway.domain.account_history import AccountDeal, DealEntry
from gateway.domain.accounts import AccountSnapshot
from gateway.domain.balance_operations import BalanceOperation, BalanceOperationKind
from gateway.domain.orders import Side
from gateway.domain.reporting_period import Period, utc_day

# Statistics (returns, volatility, ratios) are not money: 34 digits (IEEE decimal128's precision)
# keep every result far beyond what any report shows, and make the results reproducible.
STATISTICS_CONTEXT = Context(prec=34, rounding=ROUND_HALF_EVEN)
# Sums and products of money and volumes: wide enough to be exact.
EXACT_CONTEXT = Context(prec=80)

DEFAULT_ANNUALIZATION = 252
_ZERO = Decimal(0)
_ONE = Decimal(1)


# -- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EquityPoint:
    """An account's balance and equity at `time` (UTC): one stored snapshot."""

    time: datetime
    balance: Decimal
    equity: Decimal

    @classmethod
    def of(cls, snapshot: AccountSnapshot) -> EquityPoint:
        return cls(time=snapshot.time, balance=snapshot.balance, equity=snapshot.equity)


@dataclass(frozen=True, slots=True)
class TradeDeal:
    """A deal as reporting counts it: what it traded, and its result with its costs (in the
    account currency; commission and swap are negative when charged)."""

    ticket: int
    symbol: str
    side: Side
    entry: DealEntry
    volume: Decimal
    price: Decimal
    profit: Decimal
    executed_at: datetime
    commission: Decimal = _ZERO
    swap: Decimal = _ZERO

    @classmethod
    def of(
        cls, deal: AccountDeal, *, commission: Decimal = _ZERO, swap: Decimal = _ZERO
    ) -> TradeDeal:
        return cls(
            ticket=deal.ticket,
            symbol=deal.symbol,
            side=deal.side,
            entry=deal.entry,
            volume=deal.volume,
            price=deal.price,
            profit=deal.profit,
            executed_at=deal.executed_at,
            commission=commission,
            swap=swap,
        )

    @property
    def is_closing(self) -> bool:
        """Whether the deal closed (part of) a position: it is then one trade of the statistics."""
        return self.entry is not DealEntry.IN

    @property
    def net_result(self) -> Decimal:
        return self.profit + self.commission + self.swap


@dataclass(frozen=True, slots=True)
class AccountActivity:
    """What reporting reads of one account (or one group, combined): its snapshots, cash flows
    and deals, in any order."""

    account_id: str
    points: tuple[EquityPoint, ...] = ()
    operations: tuple[BalanceOperation, ...] = ()
    deals: tuple[TradeDeal, ...] = ()

    def within(self, period: Period) -> AccountActivity:
        """Only what happened in the period, each kind sorted by time."""
        return AccountActivity(
            account_id=self.account_id,
            points=tuple(sorted((p for p in self.points if period.contains(p.time)), key=_time)),
            operations=tuple(
                sorted((o for o in self.operations if period.contains(o.time)), key=_time)
            ),
            deals=tuple(
                sorted(
                    (d for d in self.deals if period.contains(d.executed_at)),
                    key=lambda d: (d.executed_at, d.ticket),
                )
            ),
        )


def _time(item: EquityPoint | BalanceOperation) -> datetime:
    return item.time


# -- outputs -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CashFlowTotals:
    """The period's cash flows added up by kind (withdrawals negative)."""

    deposits: Decimal = _ZERO
    withdrawals: Decimal = _ZERO
    credit: Decimal = _ZERO
    transfers: Decimal = _ZERO

    @property
    def net(self) -> Decimal:
        return self.deposits + self.withdrawals + self.credit + self.transfers


@dataclass(frozen=True, slots=True)
class Drawdown:
    """The deepest fall of the account's unit value (its time-weighted growth of 1) from a
    previous high. `depth` is the fall as a fraction of the high: 0.25 fell 25%."""

    depth: Decimal
    peak_at: datetime
    trough_at: datetime
    # The first snapshot back at (or above) the peak's unit value; None: not recovered.
    recovered_at: datetime | None
    peak_equity: Decimal
    trough_equity: Decimal


@dataclass(frozen=True, slots=True)
class DailyReturn:
    day: date
    value: Decimal


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """The last snapshot of one UTC day."""

    day: date
    time: datetime
    balance: Decimal
    equity: Decimal


@dataclass(frozen=True, slots=True)
class TradeStatistics:
    """Closing deals as trades: each one's result is profit + commission + swap. A result of
    exactly 0 is a trade that neither won nor lost."""

    trades: int = 0
    wins: int = 0
    losses: int = 0
    # Sum of winning results (>= 0) and of losing results (<= 0).
    gross_profit: Decimal = _ZERO
    gross_loss: Decimal = _ZERO
    # wins / trades; None without trades.
    win_rate: Decimal | None = None
    # gross_profit / |gross_loss|; None without a loss (it would be infinite, or 0/0).
    profit_factor: Decimal | None = None
    # Mean winning result (> 0) and mean losing result (< 0); None without one.
    average_win: Decimal | None = None
    average_loss: Decimal | None = None


@dataclass(frozen=True, slots=True)
class SymbolExposure:
    """What an account traded in one symbol: every deal, opening and closing."""

    symbol: str
    deals: int
    volume: Decimal
    buy_volume: Decimal
    sell_volume: Decimal
    # Sum of volume x contract size x price, in the symbol's profit currency; None when the
    # symbol's contract size was not given.
    notional: Decimal | None


@dataclass(frozen=True, slots=True)
class PerformanceReport:
    account_id: str
    period: Period
    # The first and last snapshot of the period: the measured window. None: no snapshot.
    opening: EquityPoint | None
    closing: EquityPoint | None
    # Every cash flow of the period, and the net of those inside the measured window
    # (opening.time, closing.time]: only these are in the closing equity but not the opening.
    cash_flows: CashFlowTotals
    measured_net_flow: Decimal
    # closing equity - opening equity - measured_net_flow; None without a snapshot.
    net_pnl: Decimal | None
    # Sum of every deal's profit + commission + swap in the period (closed trades only).
    realized_pnl: Decimal
    commission: Decimal
    swap: Decimal
    # Chained interval returns over the measured window (0.05 = 5%); None without a snapshot.
    time_weighted_return: Decimal | None
    # None: no snapshot, or the unit value never fell.
    max_drawdown: Drawdown | None
    daily_returns: tuple[DailyReturn, ...]
    # Annualized sample standard deviation of the daily returns; None below 2 daily returns.
    volatility: Decimal | None
    # None below 2 daily returns, or when the deviation they divide by is 0.
    sharpe_ratio: Decimal | None
    sortino_ratio: Decimal | None
    trades: TradeStatistics
    exposure: tuple[SymbolExposure, ...]
    equity_curve: tuple[CurvePoint, ...]
    annualization: int
    risk_free_rate: Decimal


# -- the report --------------------------------------------------------------------------------


def measure_performance(
    activity: AccountActivity,
    period: Period,
    *,
    annualization: int = DEFAULT_ANNUALIZATION,
    risk_free_rate: Decimal = _ZERO,
    contract_sizes: Mapping[str, Decimal] | None = None,
) -> PerformanceReport:
    """Every metric of `activity` over `period`. `annualization` is the number of daily returns
    in a year (252 trading days; 365 for an account valued every calendar day);
    `risk_free_rate` is annual, as a fraction (0.04 = 4%)."""
    if annualization <= 0:
        raise ValueError(f"annualization must be positive: {annualization}")
    activity = activity.within(period)
    points = activity.points
    with localcontext(EXACT_CONTEXT):
        totals = cash_flow_totals(activity.operations)
        measured = _measured_flows(points, activity.operations)
        measured_net = sum((op.amount for op in measured), _ZERO)
        net_pnl = points[-1].equity - points[0].equity - measured_net if points else None
        realized = sum((d.net_result for d in activity.deals), _ZERO)
        commission = sum((d.commission for d in activity.deals), _ZERO)
        swap = sum((d.swap for d in activity.deals), _ZERO)
        exposure = exposure_by_symbol(activity.deals, contract_sizes or {})
    index = unit_values(points, measured)
    daily = daily_returns(points, index)
    values = [r.value for r in daily]
    return PerformanceReport(
        account_id=activity.account_id,
        period=period,
        opening=points[0] if points else None,
        closing=points[-1] if points else None,
        cash_flows=totals,
        measured_net_flow=measured_net,
        net_pnl=net_pnl,
        realized_pnl=realized,
        commission=commission,
        swap=swap,
        time_weighted_return=_growth_to_return(index[-1]) if index else None,
        max_drawdown=max_drawdown(points, index),
        daily_returns=tuple(daily),
        volatility=annualized_volatility(values, annualization=annualization),
        sharpe_ratio=sharpe_ratio(
            values, risk_free_rate=risk_free_rate, annualization=annualization
        ),
        sortino_ratio=sortino_ratio(
            values, risk_free_rate=risk_free_rate, annualization=annualization
        ),
        trades=trade_statistics(activity.deals),
        exposure=exposure,
        equity_curve=daily_equity_curve(points),
        annualization=annualization,
        risk_free_rate=risk_free_rate,
    )


def cash_flow_totals(operations: Iterable[BalanceOperation]) -> CashFlowTotals:
    sums = dict.fromkeys(BalanceOperationKind, _ZERO)
    with localcontext(EXACT_CONTEXT):
        for op in operations:
            sums[op.kind] += op.amount
    return CashFlowTotals(
        deposits=sums[BalanceOperationKind.DEPOSIT],
        withdrawals=sums[BalanceOperationKind.WITHDRAWAL],
        credit=sums[BalanceOperationKind.CREDIT],
        transfers=sums[BalanceOperationKind.TRANSFER],
    )


def _measured_flows(
    points: Sequence[EquityPoint], operations: Sequence[BalanceOperation]
) -> list[BalanceOperation]:
    """The flows in (first snapshot, last snapshot]: those the first snapshot does not hold
    yet and the last one does."""
    if not points:
        return []
    first, last = points[0].time, points[-1].time
    return [op for op in operations if first < op.time <= last]


# -- returns -----------------------------------------------------------------------------------


def unit_values(
    points: Sequence[EquityPoint], operations: Sequence[BalanceOperation]
) -> list[Decimal]:
    """The value at each snapshot of 1 held from the first one: the time-weighted growth.

    Between snapshots k and k+1 the flows F_k in (t_k, t_k+1] are applied to E_k: the interval's
    growth is E_k+1 / (E_k + F_k). An interval with no capital at work (E_k + F_k <= 0) has no
    return: its growth is 1. `points` and `operations` sorted by time.
    """
    if not points:
        return []
    values = [_ONE]
    flows = iter(operations)
    pending = next(flows, None)
    with localcontext(STATISTICS_CONTEXT):
        for before, after in itertools.pairwise(points):
            flow = _ZERO
            while pending is not None and pending.time <= after.time:
                if pending.time > before.time:
                    flow += pending.amount
                pending = next(flows, None)
            at_work = before.equity + flow
            growth = after.equity / at_work if at_work > 0 else _ONE
            values.append(values[-1] * growth)
    return values


def _growth_to_return(growth: Decimal) -> Decimal:
    with localcontext(STATISTICS_CONTEXT):
        return growth - 1


def daily_returns(points: Sequence[EquityPoint], values: Sequence[Decimal]) -> list[DailyReturn]:
    """Each UTC day's return: the unit value at its last snapshot over the unit value at the
    previous day's last snapshot (the first snapshot, for the first day). A day with no
    snapshot has no return; so has the first day when its only snapshot is the first one."""
    returns: list[DailyReturn] = []
    base = values[0] if values else _ONE
    with localcontext(STATISTICS_CONTEXT):
        for day, last in _last_index_per_day(points):
            if last == 0:
                continue
            value = values[last]
            # A unit value at or below 0 (equity wiped out) has no meaningful ratio after it.
            if base > 0:
                returns.append(DailyReturn(day=day, value=value / base - 1))
            base = value
    return returns


def _last_index_per_day(points: Sequence[EquityPoint]) -> list[tuple[date, int]]:
    days: list[tuple[date, int]] = []
    for index, point in enumerate(points):
        day = utc_day(point.time)
        if days and days[-1][0] == day:
            days[-1] = (day, index)
        else:
            days.append((day, index))
    return days


def daily_equity_curve(points: Sequence[EquityPoint]) -> tuple[CurvePoint, ...]:
    """The last snapshot of each UTC day that has one (days without are left out, not filled)."""
    return tuple(
        CurvePoint(day=day, time=points[i].time, balance=points[i].balance, equity=points[i].equity)
        for day, i in _last_index_per_day(points)
    )


def max_drawdown(points: Sequence[EquityPoint], values: Sequence[Decimal]) -> Drawdown | None:
    """The deepest fall of the unit value from its running high. Ties: the latest snapshot at
    the high is the peak, the first at the lowest point the trough."""
    if not points:
        return None
    peak = 0
    worst = _ZERO
    found: tuple[int, int] | None = None
    with localcontext(STATISTICS_CONTEXT):
        for index, value in enumerate(values):
            if value >= values[peak]:
                peak = index
                continue
            if values[peak] <= 0:
                continue
            fall = 1 - value / values[peak]
            if fall > worst:
                worst = fall
                found = (peak, index)
    if found is None:
        return None
    peak, trough = found
    recovered = next(
        (points[i].time for i in range(trough + 1, len(values)) if values[i] >= values[peak]),
        None,
    )
    return Drawdown(
        depth=worst,
        peak_at=points[peak].time,
        trough_at=points[trough].time,
        recovered_at=recovered,
        peak_equity=points[peak].equity,
        trough_equity=points[trough].equity,
    )


# -- statistics of a return series -------------------------------------------------------------


def sample_standard_deviation(values: Sequence[Decimal]) -> Decimal | None:
    """sqrt(sum((x - mean)^2) / (n - 1)): the sample (n - 1) deviation; None below 2 values."""
    if len(values) < 2:
        return None
    with localcontext(STATISTICS_CONTEXT):
        mean = sum(values, _ZERO) / len(values)
        variance = sum(((v - mean) ** 2 for v in values), _ZERO) / (len(values) - 1)
        return variance.sqrt()


def annualized_volatility(
    returns: Sequence[Decimal], *, annualization: int = DEFAULT_ANNUALIZATION
) -> Decimal | None:
    """Sample deviation of the daily returns x sqrt(annualization)."""
    deviation = sample_standard_deviation(returns)
    if deviation is None:
        return None
    with localcontext(STATISTICS_CONTEXT):
        return deviation * Decimal(annualization).sqrt()


def sharpe_ratio(
    returns: Sequence[Decimal],
    *,
    risk_free_rate: Decimal = _ZERO,
    annualization: int = DEFAULT_ANNUALIZATION,
) -> Decimal | None:
    """(mean daily return - risk_free_rate / annualization) / sample deviation of the daily
    returns x sqrt(annualization). None below 2 returns or when they do not vary."""
    deviation = sample_standard_deviation(returns)
    if deviation is None or deviation == 0:
        return None
    with localcontext(STATISTICS_CONTEXT):
        excess = sum(returns, _ZERO) / len(returns) - risk_free_rate / annualization
        return excess / deviation * Decimal(annualization).sqrt()


def sortino_ratio(
    returns: Sequence[Decimal],
    *,
    risk_free_rate: Decimal = _ZERO,
    annualization: int = DEFAULT_ANNUALIZATION,
) -> Decimal | None:
    """(mean daily return - target) / downside deviation x sqrt(annualization), the target being
    risk_free_rate / annualization and the downside deviation sqrt(sum(min(0, r - target)^2) / n)
    over all n returns. None below 2 returns or without a return under the target."""
    if len(returns) < 2:
        return None
    with localcontext(STATISTICS_CONTEXT):
        target = risk_free_rate / annualization
        shortfall = sum((min(_ZERO, r - target) ** 2 for r in returns), _ZERO)
        if shortfall == 0:
            return None
        downside = (shortfall / len(returns)).sqrt()
        excess = sum(returns, _ZERO) / len(returns) - target
        return excess / downside * Decimal(annualization).sqrt()


# -- trades and exposure -----------------------------------------------------------------------


def trade_statistics(deals: Iterable[TradeDeal]) -> TradeStatistics:
    """Win rate, profit factor and averages over the closing deals."""
    results = [d.net_result for d in deals if d.is_closing]
    if not results:
        return TradeStatistics()
    with localcontext(EXACT_CONTEXT):
        winners = [r for r in results if r > 0]
        losers = [r for r in results if r < 0]
        gross_profit = sum(winners, _ZERO)
        gross_loss = sum(losers, _ZERO)
    with localcontext(STATISTICS_CONTEXT):
        return TradeStatistics(
            trades=len(results),
            wins=len(winners),
            losses=len(losers),
            gross_profit=gross_profit,
            gross_loss=gross_loss,
            win_rate=Decimal(len(winners)) / len(results),
            profit_factor=gross_profit / -gross_loss if losers else None,
            average_win=gross_profit / len(winners) if winners else None,
            average_loss=gross_loss / len(losers) if losers else None,
        )


def exposure_by_symbol(
    deals: Iterable[TradeDeal], contract_sizes: Mapping[str, Decimal]
) -> tuple[SymbolExposure, ...]:
    """Volume and notional traded per symbol, by symbol name."""
    by_symbol: dict[str, list[TradeDeal]] = {}
    for deal in deals:
        by_symbol.setdefault(deal.symbol, []).append(deal)
    exposures: list[SymbolExposure] = []
    with localcontext(EXACT_CONTEXT):
        for symbol in sorted(by_symbol):
            traded = by_symbol[symbol]
            size = contract_sizes.get(symbol)
            exposures.append(
                SymbolExposure(
                    symbol=symbol,
                    deals=len(traded),
                    volume=sum((d.volume for d in traded), _ZERO),
                    buy_volume=sum((d.volume for d in traded if d.side is Side.BUY), _ZERO),
                    sell_volume=sum((d.volume for d in traded if d.side is Side.SELL), _ZERO),
                    notional=(
                        sum((d.volume * size * d.price for d in traded), _ZERO)
                        if size is not None
                        else None
                    ),
                )
            )
    return tuple(exposures)


# -- groups ------------------------------------------------------------------------------------


def combine_accounts(group_id: str, members: Sequence[AccountActivity]) -> AccountActivity:
    """A group as one account: the sum of its members' equity curves, cash flows and deals.

    At every time any member has a snapshot, the group's balance and equity are the sums of
    each member's latest snapshot at or before that time (members not valued yet count
    nothing). A member first valued after the group's first snapshot enters with a TRANSFER
    of its equity at that time, so joining is not a gain. A member's flows count only inside its
    own measured window (after its first snapshot, up to its last): outside it, its snapshots
    already hold them, or the group's sum never will. Deals are pooled as they are.
    """
    valued = [m for m in members if m.points]
    ordered = [sorted(m.points, key=_time) for m in valued]
    operations: list[BalanceOperation] = []
    group_start = min((pts[0].time for pts in ordered), default=None)
    for member, pts in zip(valued, ordered, strict=True):
        first, last = pts[0].time, pts[-1].time
        operations.extend(op for op in member.operations if first < op.time <= last)
        if first != group_start and pts[0].equity != 0:
            operations.append(
                BalanceOperation(
                    time=first,
                    kind=BalanceOperationKind.TRANSFER,
                    amount=pts[0].equity,
                    comment=f"{member.account_id} valued from here",
                )
            )
    points: list[EquityPoint] = []
    latest: dict[int, EquityPoint] = {}
    balance = equity = _ZERO
    merged = heapq.merge(
        *([(p.time, n, p) for p in pts] for n, pts in enumerate(ordered)),
        key=lambda item: item[0],
    )
    with localcontext(EXACT_CONTEXT):
        for time, member_index, point in merged:
            previous = latest.get(member_index)
            if previous is not None:
                balance -= previous.balance
                equity -= previous.equity
            balance += point.balance
            equity += point.equity
            latest[member_index] = point
            if points and points[-1].time == time:
                points[-1] = EquityPoint(time=time, balance=balance, equity=equity)
            else:
                points.append(EquityPoint(time=time, balance=balance, equity=equity))
    return AccountActivity(
        account_id=group_id,
        points=tuple(points),
        operations=tuple(sorted(operations, key=_time)),
        deals=tuple(d for m in members for d in m.deals),
    )
