"""Pre-trade risk: whether a child order goes to its account as allocated, smaller, or not at all.

A child is checked against its account's RiskLimits and what the account already holds (an
AccountExposure), at the price it is expected to fill at. The rules, and whether a smaller
volume can meet them (CLIP) or not (always SKIP):
- STOPPED_OUT: the account is stopped out. BLOCK_NEW_ENTRIES: the child adds exposure or a
  position (clips); CLOSE_ONLY, FLATTEN: it is not a close (never clips).
- SYMBOL_DENIED: its symbol is denied (never clips).
- SYMBOL_NOT_ALLOWED: there is an allow-list and its symbol is not on it (never clips).
- OUTSIDE_TRADING_HOURS: there are trading windows and the check time is in none (never clips).
- MAX_ORDER_VOLUME: volume > limit (clips).
- MAX_SYMBOL_VOLUME: it adds volume and the symbol's open volume after > limit (clips).
- MAX_SYMBOL_NOTIONAL: it adds volume and the symbol's open volume after x contract size x
  price x rate > limit (clips).
- MAX_OPEN_POSITIONS: it opens a position and the count after > limit (never clips: any volume
  opens one).
- MIN_MARGIN_LEVEL: it adds volume and equity / margin after x 100 < limit (clips).

Exactly at a limit is within it. Exposure limits judge only what a child adds: a child that
adds nothing (it reduces a netting position, or reverses it to no more than it was) passes
them, even on an account already over a limit. A closing child (it closes part of a position:
CloseMasterPosition, a FLATTEN) is always allowed: a risk rule exists to cap risk, and refusing
a close can only keep risk on.

Money: notional = volume x contract size x price x profit_to_account_rate, and the margin of a
new child = notional / leverage: MT5's forex formula (lots x contract size / leverage, in the
base currency) converted at the price into the profit currency, then into the account currency
at the rate given (1 when the symbol's profit currency is the account currency, e.g. EURUSD on a
USD account; 1 / price for USDJPY on a USD account, which gives back lots x contract size /
leverage in USD). It is what the simulated broker charges (gateway/terminals/sim/money.py).
Open volume is marked at the child's price. The estimate charges margin for added volume only:
a reduction frees none and a hedged pair is charged in full, both on the safe side. It takes the
broker's own margin rate for the symbol as 1: where a broker charges more (some CFDs, exotic
pairs), the real margin level after the trade is lower than this estimate.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal, localcontext

from gateway.domain.account_exposure import AccountExposure, SymbolExposure
from gateway.domain.decimals import from_steps
from gateway.domain.drawdown_monitor import StopOutAction
from gateway.domain.risk_limits import RiskLimits, ViolationPolicy, within_trading_windows
from gateway.domain.side import Side
from gateway.domain.symbols import SymbolSpec

ZERO = Decimal(0)
HUNDRED = Decimal(100)
CENT = Decimal("0.01")
# Wide enough that products of volumes, prices, contract sizes, rates and equities are exact.
_EXACT = Context(prec=80)


class RiskAction(enum.Enum):
    ALLOW = "ALLOW"
    CLIP = "CLIP"
    SKIP = "SKIP"


class RiskRule(enum.Enum):
    """The machine-readable reason of a violation (clients branch on it, never on text)."""

    STOPPED_OUT = "STOPPED_OUT"
    SYMBOL_DENIED = "SYMBOL_DENIED"
    SYMBOL_NOT_ALLOWED = "SYMBOL_NOT_ALLOWED"
    OUTSIDE_TRADING_HOURS = "OUTSIDE_TRADING_HOURS"
    MAX_ORDER_VOLUME = "MAX_ORDER_VOLUME"
    MAX_SYMBOL_VOLUME = "MAX_SYMBOL_VOLUME"
    MAX_SYMBOL_NOTIONAL = "MAX_SYMBOL_NOTIONAL"
    MAX_OPEN_POSITIONS = "MAX_OPEN_POSITIONS"
    MIN_MARGIN_LEVEL = "MIN_MARGIN_LEVEL"


@dataclass(frozen=True, slots=True)
class RiskViolation:
    """One rule the child breaks at its requested volume."""

    rule: RiskRule
    message: str
    # Whether a smaller volume can satisfy the rule (CLIP then applies).
    clippable: bool
    # The limit and the value the child would bring the account to, for rules with numbers
    # (lots, money in the account currency, percent, a count).
    limit: Decimal | None = None
    value: Decimal | None = None


@dataclass(frozen=True, slots=True)
class RiskDecision:
    action: RiskAction
    requested_volume: Decimal
    # What may be sent: the requested volume (ALLOW), a smaller one (CLIP), zero (SKIP).
    volume: Decimal
    violations: tuple[RiskViolation, ...] = ()
    summary: str = ""

    @property
    def rules(self) -> tuple[RiskRule, ...]:
        return tuple(v.rule for v in self.violations)


@dataclass(frozen=True, slots=True)
class ProposedChild:
    """A child order as the risk check sees it."""

    account_id: str
    # The symbol the account trades (after symbol mapping), as its positions are keyed.
    symbol: str
    side: Side
    volume: Decimal
    # The price it is expected to fill at (ask to buy, bid to sell), in the profit currency.
    price: Decimal
    # Converts the symbol's profit currency into the account currency (1: they are the same).
    profit_to_account_rate: Decimal = Decimal(1)
    # It closes part of an open position (CloseMasterPosition, a stop-out's FLATTEN).
    closing: bool = False
    # The master order's symbol, when the account trades it under another name: symbol lists
    # may name either.
    master_symbol: str = ""

    def __post_init__(self) -> None:
        if self.volume <= 0 or self.price <= 0 or self.profit_to_account_rate <= 0:
            raise ValueError(f"volume, price and rate must be > 0: {self}")


@dataclass(frozen=True, slots=True)
class ChildrenCheck:
    """The decisions for several children of one account, in order, and what the account holds
    once the allowed and clipped ones have filled."""

    decisions: tuple[RiskDecision, ...]
    exposure: AccountExposure


def notional_value(
    spec: SymbolSpec, volume: Decimal, price: Decimal, rate: Decimal = Decimal(1)
) -> Decimal:
    """volume x contract size x price x rate: the value of `volume` lots in the account currency."""
    with localcontext(_EXACT):
        return volume * spec.contract_size * price * rate


def required_margin(
    spec: SymbolSpec, volume: Decimal, price: Decimal, leverage: int, rate: Decimal = Decimal(1)
) -> Decimal:
    """The margin `volume` lots take at `leverage`, in the account currency (MT5's forex
    formula, see the module's docstring); exact to 80 significant digits."""
    with localcontext(_EXACT):
        return notional_value(spec, volume, price, rate) / leverage


def check_child(
    child: ProposedChild,
    *,
    limits: RiskLimits,
    exposure: AccountExposure,
    spec: SymbolSpec,
    at: datetime,
    policy: ViolationPolicy = ViolationPolicy.SKIP,
    stop_out: StopOutAction | None = None,
) -> RiskDecision:
    """ALLOW, CLIP or SKIP one child at time `at` (timezone-aware), with every violated rule.

    Under ViolationPolicy.CLIP, when every violation can be clipped, the child gets the largest
    volume within every limit, rounded down to the symbol's volume step; below its volume_min
    the child is skipped instead. `stop_out` is the account's active stop-out action, if any.
    """
    if child.account_id != exposure.account_id:
        raise ValueError(f"child of {child.account_id} checked against {exposure.account_id}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{at!r} has no time zone")
    requested = child.volume
    if child.closing:
        return RiskDecision(
            RiskAction.ALLOW, requested, requested, summary="a close: no risk limit holds it back"
        )
    if stop_out is None and limits.is_unlimited:
        return RiskDecision(RiskAction.ALLOW, requested, requested, summary="no limits")
    with localcontext(_EXACT):
        trial = _VolumeTrial(child, limits, exposure, spec, stop_out)
        violations = _access_violations(child, limits, at, stop_out) + trial.violations(requested)
        if not violations:
            return RiskDecision(
                RiskAction.ALLOW, requested, requested, summary="within every limit"
            )
        found = tuple(violations)
        if policy is ViolationPolicy.SKIP:
            return _skip(requested, found, "the group skips a child order that breaks a limit")
        fixed = [v.rule.name for v in found if not v.clippable]
        if fixed:
            return _skip(
                requested, found, f"no smaller volume meets {', '.join(dict.fromkeys(fixed))}"
            )
        volume = trial.largest_fitting(requested)
        if volume < spec.volume_min:
            return _skip(
                requested,
                found,
                f"the largest volume within the limits, {volume:f} lots, is below the minimum "
                f"{spec.volume_min:f} of {spec.name}",
            )
        return RiskDecision(
            RiskAction.CLIP,
            requested,
            volume,
            found,
            f"clipped from {requested:f} to {volume:f} lots, the largest volume within the limits",
        )


def check_children(
    children: Sequence[ProposedChild],
    *,
    limits: RiskLimits,
    exposure: AccountExposure,
    spec: SymbolSpec,
    at: datetime,
    policy: ViolationPolicy = ViolationPolicy.SKIP,
    stop_out: StopOutAction | None = None,
) -> ChildrenCheck:
    """Checks one account's children of one master order in order, each against the exposure
    the previous ones leave (allowed at their volume, clipped at the clipped one, skipped not at
    all): together they never exceed a limit one child alone may not."""
    decisions = []
    for child in children:
        decision = check_child(
            child,
            limits=limits,
            exposure=exposure,
            spec=spec,
            at=at,
            policy=policy,
            stop_out=stop_out,
        )
        decisions.append(decision)
        if decision.volume > 0:
            exposure = exposure_after(exposure, child, decision.volume, spec)
    return ChildrenCheck(tuple(decisions), exposure)


def exposure_after(
    exposure: AccountExposure, child: ProposedChild, volume: Decimal, spec: SymbolSpec
) -> AccountExposure:
    """What the account holds once `volume` lots of `child` have filled: its symbol's volume and
    positions, and its margin raised by the margin of the added volume (equity is unchanged:
    the spread and commission of the fill are left out)."""
    before = exposure.in_symbol(child.symbol)
    after = before.after(child.side, volume, netting=exposure.netting, closing=child.closing)
    added = max(ZERO, after.volume - before.volume)
    with localcontext(_EXACT):
        margin = exposure.margin + required_margin(
            spec, added, child.price, exposure.leverage, child.profit_to_account_rate
        )
    return exposure.with_symbol(child.symbol, after, margin=margin)


def _skip(requested: Decimal, found: tuple[RiskViolation, ...], why: str) -> RiskDecision:
    return RiskDecision(RiskAction.SKIP, requested, ZERO, found, f"skipped: {why}")


def _access_violations(
    child: ProposedChild, limits: RiskLimits, at: datetime, stop_out: StopOutAction | None
) -> list[RiskViolation]:
    """The rules no volume changes: who may trade what, and when."""
    found = []
    if stop_out in (StopOutAction.CLOSE_ONLY, StopOutAction.FLATTEN):
        assert stop_out is not None
        found.append(
            RiskViolation(
                RiskRule.STOPPED_OUT,
                f"the account is stopped out ({stop_out.name}): only closing orders are sent",
                clippable=False,
            )
        )
    names = {child.symbol, child.master_symbol} - {""}
    if names & limits.denied_symbols:
        found.append(
            RiskViolation(
                RiskRule.SYMBOL_DENIED,
                f"{child.symbol} is denied for account {child.account_id}",
                clippable=False,
            )
        )
    elif limits.allowed_symbols and not names & limits.allowed_symbols:
        found.append(
            RiskViolation(
                RiskRule.SYMBOL_NOT_ALLOWED,
                f"{child.symbol} is not among the symbols account {child.account_id} may trade",
                clippable=False,
            )
        )
    if not within_trading_windows(limits.trading_windows, at):
        found.append(
            RiskViolation(
                RiskRule.OUTSIDE_TRADING_HOURS,
                f"{at.isoformat()} ({at.strftime('%A')}) is outside the account's trading windows",
                clippable=False,
            )
        )
    return found


class _VolumeTrial:
    """The rules a volume decides, for one child: evaluated at the requested volume, and again
    at smaller ones while clipping. Every rule here holds for all volumes below one that meets
    it (what a child adds never shrinks as its volume grows), so the largest fitting volume is
    found by bisection over whole lot steps."""

    def __init__(
        self,
        child: ProposedChild,
        limits: RiskLimits,
        exposure: AccountExposure,
        spec: SymbolSpec,
        stop_out: StopOutAction | None,
    ) -> None:
        self.child = child
        self.limits = limits
        self.exposure = exposure
        self.spec = spec
        self.block_new_entries = stop_out is StopOutAction.BLOCK_NEW_ENTRIES
        self.before = exposure.in_symbol(child.symbol)
        self.positions_before = exposure.open_positions
        self.notional_per_lot = spec.contract_size * child.price * child.profit_to_account_rate

    def after(self, volume: Decimal) -> SymbolExposure:
        return self.before.after(
            self.child.side, volume, netting=self.exposure.netting, closing=False
        )

    def violations(self, volume: Decimal) -> list[RiskViolation]:
        limits, child = self.limits, self.child
        after = self.after(volume)
        added = max(ZERO, after.volume - self.before.volume)
        positions_after = self.positions_before - self.before.positions + after.positions
        opens_position = positions_after > self.positions_before
        found = []
        if self.block_new_entries and (added > 0 or opens_position):
            found.append(
                RiskViolation(
                    RiskRule.STOPPED_OUT,
                    "the account is stopped out (BLOCK_NEW_ENTRIES): nothing may add to its "
                    f"exposure, and this adds {added:f} lots of {child.symbol}",
                    clippable=True,
                )
            )
        limit = limits.max_order_volume
        if limit is not None and volume > limit:
            found.append(
                RiskViolation(
                    RiskRule.MAX_ORDER_VOLUME,
                    f"{volume:f} lots is above the account's limit of {limit:f} lots per order",
                    clippable=True,
                    limit=limit,
                    value=volume,
                )
            )
        limit = limits.max_symbol_volume
        if limit is not None and added > 0 and after.volume > limit:
            found.append(
                RiskViolation(
                    RiskRule.MAX_SYMBOL_VOLUME,
                    f"{child.symbol} would have {after.volume:f} lots open, above the limit of "
                    f"{limit:f} lots per symbol",
                    clippable=True,
                    limit=limit,
                    value=after.volume,
                )
            )
        limit = limits.max_symbol_notional
        if limit is not None and added > 0:
            notional = after.volume * self.notional_per_lot
            if notional > limit:
                # Rounded up to the cent: a notional above the limit never shows as equal to it.
                shown = notional.quantize(CENT, rounding=ROUND_CEILING)
                found.append(
                    RiskViolation(
                        RiskRule.MAX_SYMBOL_NOTIONAL,
                        f"{child.symbol} would have a notional of {shown:f} open, above the "
                        f"limit of {limit:f} per symbol",
                        clippable=True,
                        limit=limit,
                        value=shown,
                    )
                )
        count = limits.max_open_positions
        if count is not None and opens_position and positions_after > count:
            found.append(
                RiskViolation(
                    RiskRule.MAX_OPEN_POSITIONS,
                    f"the account would hold {positions_after} positions, above the limit of "
                    f"{count}",
                    clippable=False,
                    limit=Decimal(count),
                    value=Decimal(positions_after),
                )
            )
        limit = limits.min_margin_level
        if limit is not None and added > 0:
            exposure = self.exposure
            leverage = exposure.leverage
            # equity / margin_after x 100 < limit, without dividing: margin_after x leverage
            # = margin x leverage + added x notional per lot.
            margin_times_leverage = exposure.margin * leverage + added * self.notional_per_lot
            if exposure.equity * HUNDRED * leverage < limit * margin_times_leverage:
                # Rounded down: a level below the limit never shows as equal to it.
                level = (exposure.equity * HUNDRED * leverage / margin_times_leverage).quantize(
                    CENT, rounding=ROUND_FLOOR
                )
                found.append(
                    RiskViolation(
                        RiskRule.MIN_MARGIN_LEVEL,
                        f"the margin level would fall to {level:f}%, below the minimum of "
                        f"{limit:f}%",
                        clippable=True,
                        limit=limit,
                        value=level,
                    )
                )
        return found

    def fits(self, volume: Decimal) -> bool:
        return volume == 0 or not self.violations(volume)

    def largest_fitting(self, requested: Decimal) -> Decimal:
        """The largest whole number of lot steps, up to `requested`, that breaks no rule here."""
        step = self.spec.volume_step
        low, high = 0, int(requested // step)
        # fits(low) always; the answer is at most high.
        while low < high:
            middle = (low + high + 1) // 2
            if self.fits(from_steps(middle, step)):
                low = middle
            else:
                high = middle - 1
        return from_steps(low, step)
