"""Loss limits on equity: the daily loss limit and the maximum drawdown from the high-water mark,
watched snapshot by snapshot, and the stop-outs they trigger.

One DrawdownState per watched subject (an account, or a group watched on the sum of its members'
money). The account monitor calls observe_equity on each new snapshot and acts on what it
returns; nothing here reads a clock or does I/O. A breach stays until reset_breaches is called,
except that a daily-loss breach may end at the next trading day
(LossLimits.daily_breach_ends_next_day).
docs/risk.md has the rules with a worked example.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, tzinfo
from decimal import ROUND_UP, Context, Decimal, localcontext

from gateway.domain.accounts import AccountSnapshot
from gateway.domain.errors import FieldViolation

HUNDRED = Decimal(100)
PERCENT_QUANTUM = Decimal("0.01")
# Wide enough that products of equities and percentages are exact.
_EXACT = Context(prec=80)


class StopOutAction(enum.Enum):
    """What a breached subject may still do, from the mildest to the most severe."""

    # No order that adds exposure; closes and orders that reduce a position go on.
    BLOCK_NEW_ENTRIES = "BLOCK_NEW_ENTRIES"
    # Only closing orders; an order that would merely reduce a position is refused too.
    CLOSE_ONLY = "CLOSE_ONLY"
    # Close everything now, then as CLOSE_ONLY.
    FLATTEN = "FLATTEN"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {
    StopOutAction.BLOCK_NEW_ENTRIES: 1,
    StopOutAction.CLOSE_ONLY: 2,
    StopOutAction.FLATTEN: 3,
}


class LossRule(enum.Enum):
    # Equity below the start-of-day equity.
    DAILY_LOSS = "DAILY_LOSS"
    # Equity below the highest equity seen (the high-water mark).
    MAX_DRAWDOWN = "MAX_DRAWDOWN"


class LossUnit(enum.Enum):
    # In the account currency (the group's members share one currency for a group limit).
    MONEY = "MONEY"
    # Of the rule's reference: the start-of-day equity, or the high-water mark.
    PERCENT = "PERCENT"


@dataclass(frozen=True, slots=True)
class LossLimit:
    """The most a subject may lose under one rule: reaching it is allowed, passing it is not."""

    amount: Decimal
    unit: LossUnit
    action: StopOutAction = StopOutAction.BLOCK_NEW_ENTRIES

    def describe(self) -> str:
        if self.unit is LossUnit.PERCENT:
            return f"{self.amount:f}%"
        return f"{self.amount:f}"


@dataclass(frozen=True, slots=True)
class LossLimits:
    daily_loss: LossLimit | None = None
    max_drawdown: LossLimit | None = None
    # A trading day runs from midnight to midnight in this zone: a fixed offset
    # (timezone(timedelta(hours=2)) for a broker on UTC+2), a ZoneInfo, or UTC.
    day_zone: tzinfo = UTC
    # A daily-loss breach ends by itself at the next trading day (else only by reset_breaches).
    daily_breach_ends_next_day: bool = True

    def limit_of(self, rule: LossRule) -> LossLimit | None:
        return self.daily_loss if rule is LossRule.DAILY_LOSS else self.max_drawdown


@dataclass(frozen=True, slots=True)
class StopOut:
    """A loss limit breached: which, what to do, and the figures at the breaching snapshot."""

    rule: LossRule
    action: StopOutAction
    at: datetime
    equity: Decimal
    high_water_mark: Decimal
    day_start_equity: Decimal
    # Below the rule's reference (the start-of-day equity or the high-water mark), in money.
    loss: Decimal
    # Of that reference, rounded up to 0.01 so that a breach never shows as exactly the limit;
    # None when the reference is not above zero.
    loss_percent: Decimal | None
    limit: LossLimit

    @property
    def reference(self) -> Decimal:
        if self.rule is LossRule.DAILY_LOSS:
            return self.day_start_equity
        return self.high_water_mark

    def describe(self) -> str:
        reference = (
            "the start-of-day equity" if self.rule is LossRule.DAILY_LOSS else "the high-water mark"
        )
        percent = f" ({self.loss_percent:f}%)" if self.loss_percent is not None else ""
        return (
            f"{self.rule.name}: equity {self.equity:f} is {self.loss:f}{percent} below "
            f"{reference} {self.reference:f}, beyond the limit of {self.limit.describe()}: "
            f"{self.action.name}"
        )


@dataclass(frozen=True, slots=True)
class DrawdownState:
    """What the monitor knows of one subject after its latest snapshot."""

    high_water_mark: Decimal
    high_water_mark_at: datetime
    # The trading day (in LossLimits.day_zone) the latest snapshot belongs to, and the equity of
    # the first snapshot of that day.
    trading_day: date
    day_start_equity: Decimal
    equity: Decimal
    at: datetime
    # Active breaches, at most one per rule, in the order they happened.
    breaches: tuple[StopOut, ...] = ()

    @property
    def action(self) -> StopOutAction | None:
        """The most severe action of the active breaches; None: trading is unrestricted."""
        if not self.breaches:
            return None
        return max((b.action for b in self.breaches), key=lambda a: a.severity)

    @property
    def drawdown(self) -> Decimal:
        return self.high_water_mark - self.equity

    @property
    def daily_loss(self) -> Decimal:
        return self.day_start_equity - self.equity

    def breach_of(self, rule: LossRule) -> StopOut | None:
        return next((b for b in self.breaches if b.rule is rule), None)


@dataclass(frozen=True, slots=True)
class DrawdownUpdate:
    """A new state, and the breaches that began or ended on the way to it (usually none)."""

    state: DrawdownState
    triggered: tuple[StopOut, ...] = ()
    ended: tuple[StopOut, ...] = ()


def start_watch(snapshot: AccountSnapshot, limits: LossLimits) -> DrawdownState:
    """A fresh state: the snapshot's equity is both the high-water mark and the day's start."""
    at = _aware(snapshot.time)
    return DrawdownState(
        high_water_mark=snapshot.equity,
        high_water_mark_at=at,
        trading_day=trading_day_of(at, limits.day_zone),
        day_start_equity=snapshot.equity,
        equity=snapshot.equity,
        at=at,
    )


def observe_equity(
    state: DrawdownState | None, snapshot: AccountSnapshot, limits: LossLimits
) -> DrawdownUpdate:
    """The state after one more snapshot, evaluated against `limits`.

    In order: a snapshot older than the latest one is ignored (a late reading says nothing about
    now); a higher equity raises the high-water mark; the first snapshot of a new trading day
    sets that day's start equity (and ends a daily-loss breach if so configured); then each
    configured rule not already breached is checked. A breach stays in the state until reset.
    """
    if state is None:
        state = start_watch(snapshot, limits)
        return _evaluate(state, limits, ended=())
    at = _aware(snapshot.time)
    if at < state.at:
        return DrawdownUpdate(state)
    equity = snapshot.equity
    changes: dict[str, object] = {"equity": equity, "at": at}
    if equity > state.high_water_mark:
        changes |= {"high_water_mark": equity, "high_water_mark_at": at}
    ended: tuple[StopOut, ...] = ()
    day = trading_day_of(at, limits.day_zone)
    if day > state.trading_day:
        changes |= {"trading_day": day, "day_start_equity": equity}
        if limits.daily_breach_ends_next_day:
            ended = tuple(b for b in state.breaches if b.rule is LossRule.DAILY_LOSS)
            changes["breaches"] = tuple(b for b in state.breaches if b not in ended)
    return _evaluate(replace(state, **changes), limits, ended=ended)  # type: ignore[arg-type]


def reset_breaches(state: DrawdownState, rules: Iterable[LossRule] | None = None) -> DrawdownUpdate:
    """Ends the breaches of `rules` (all when None): an explicit decision, e.g. an operator's.

    Each reset rule starts again from the latest equity: MAX_DRAWDOWN takes it as its new
    high-water mark, DAILY_LOSS as the day's start equity. Otherwise the next snapshot, still
    below the old reference, would breach again at once.
    """
    chosen = set(LossRule) if rules is None else set(rules)
    ended = tuple(b for b in state.breaches if b.rule in chosen)
    changes: dict[str, object] = {"breaches": tuple(b for b in state.breaches if b not in ended)}
    for breach in ended:
        if breach.rule is LossRule.MAX_DRAWDOWN:
            changes |= {"high_water_mark": state.equity, "high_water_mark_at": state.at}
        else:
            changes["day_start_equity"] = state.equity
    return DrawdownUpdate(replace(state, **changes), ended=ended)  # type: ignore[arg-type]


def record_transfer(state: DrawdownState, amount: Decimal) -> DrawdownState:
    """Moves the references by a deposit (amount > 0) or a withdrawal (< 0), so that money
    moved in or out is not counted as profit or loss. Call it when the transfer is first seen,
    before the next snapshot that includes it."""
    return replace(
        state,
        high_water_mark=state.high_water_mark + amount,
        day_start_equity=state.day_start_equity + amount,
        equity=state.equity + amount,
    )


def group_snapshot(members: Mapping[str, AccountSnapshot | None]) -> AccountSnapshot | None:
    """A group's money as the sum of its members', at the latest member's time.

    None when any member has no snapshot (or there are no members): a member missing from the
    sum would look like a loss of its whole equity.
    """
    snapshots = list(members.values())
    if not snapshots or any(s is None for s in snapshots):
        return None
    present = [s for s in snapshots if s is not None]
    return AccountSnapshot(
        balance=sum((s.balance for s in present), Decimal(0)),
        equity=sum((s.equity for s in present), Decimal(0)),
        margin=sum((s.margin for s in present), Decimal(0)),
        free_margin=sum((s.free_margin for s in present), Decimal(0)),
        time=max(s.time for s in present),
    )


def trading_day_of(at: datetime, zone: tzinfo) -> date:
    return _aware(at).astimezone(zone).date()


def loss_limits_violations(limits: LossLimits, path: str = "loss_limits") -> list[FieldViolation]:
    """Every malformed field of `limits`, named by its path; empty when they can be stored."""
    found: list[FieldViolation] = []
    for name, limit in (("daily_loss", limits.daily_loss), ("max_drawdown", limits.max_drawdown)):
        if limit is None:
            continue
        amount = limit.amount
        where = f"{path}.{name}.amount"
        if not amount.is_finite() or amount <= 0:
            found.append(FieldViolation(where, f"must be a number > 0, not {amount}"))
        elif limit.unit is LossUnit.PERCENT and amount > HUNDRED:
            found.append(FieldViolation(where, f"a percentage in (0, 100], not {amount}"))
    if limits.day_zone.utcoffset(datetime(2026, 1, 1)) is None:
        found.append(FieldViolation(f"{path}.day_zone", "must give a UTC offset"))
    return found


def _evaluate(
    state: DrawdownState, limits: LossLimits, *, ended: tuple[StopOut, ...]
) -> DrawdownUpdate:
    triggered = []
    for rule in LossRule:
        limit = limits.limit_of(rule)
        if limit is None or state.breach_of(rule) is not None:
            continue
        breach = _breach(state, rule, limit)
        if breach is not None:
            triggered.append(breach)
    if triggered:
        state = replace(state, breaches=state.breaches + tuple(triggered))
    return DrawdownUpdate(state, tuple(triggered), ended)


def _breach(state: DrawdownState, rule: LossRule, limit: LossLimit) -> StopOut | None:
    reference = state.day_start_equity if rule is LossRule.DAILY_LOSS else state.high_water_mark
    loss = reference - state.equity
    with localcontext(_EXACT):
        if limit.unit is LossUnit.MONEY:
            breached = loss > limit.amount
        elif reference > 0:
            breached = loss * HUNDRED > limit.amount * reference
        else:
            # Nothing to take a percentage of: any further loss is beyond every percentage.
            breached = loss > 0
        if not breached:
            return None
        percent = (
            (loss * HUNDRED / reference).quantize(PERCENT_QUANTUM, rounding=ROUND_UP)
            if reference > 0
            else None
        )
    return StopOut(
        rule=rule,
        action=limit.action,
        at=state.at,
        equity=state.equity,
        high_water_mark=state.high_water_mark,
        day_start_equity=state.day_start_equity,
        loss=loss,
        loss_percent=percent,
        limit=limit,
    )


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{at!r} has no time zone; snapshots are stamped in UTC")
    return at
