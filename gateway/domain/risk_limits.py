"""Limits on what one account may trade, checked before each child order is sent
(gateway/domain/pre_trade_risk.py), and the check that a set of limits is well formed before it
is stored.

Every limit is optional: None (or an empty collection) is no limit. Volumes are in lots of the
symbol the account trades, money in the account currency, times in UTC. docs/risk.md has the
rules with a worked example.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time
from decimal import Decimal

from gateway.domain.errors import FieldViolation

_MICROSECONDS_PER_DAY = 86_400 * 1_000_000
MICROSECONDS_PER_WEEK = 7 * _MICROSECONDS_PER_DAY


class ViolationPolicy(enum.Enum):
    """What a group does with a child order that breaks a limit."""

    # Send the largest volume within every limit (rounded down to the lot step, at least the
    # symbol's volume_min); rules no smaller volume can satisfy still skip.
    CLIP = "CLIP"
    # Send nothing to that account.
    SKIP = "SKIP"


class Weekday(enum.IntEnum):
    """Days as datetime.weekday() counts them (MONDAY = 0), not as MT5 does (SUNDAY = 0)."""

    MONDAY = 0
    TUESDAY = 1
    WEDNESDAY = 2
    THURSDAY = 3
    FRIDAY = 4
    SATURDAY = 5
    SUNDAY = 6


@dataclass(frozen=True, slots=True)
class TradingWindow:
    """A weekly UTC interval [start, end): from `start` on start_day to `end` on end_day.

    A window ending earlier in the week than it starts wraps past Sunday midnight (Friday 22:00
    to Monday 01:00). Times carry no time zone: they are UTC.
    """

    start_day: Weekday
    start: time
    end_day: Weekday
    end: time

    @classmethod
    def daily(cls, days: Iterable[Weekday], start: time, end: time) -> tuple[TradingWindow, ...]:
        """One window on each of `days`, from start to end. A window ending at or before its
        start ends the next day: 22:00-02:00 crosses midnight, 00:00-00:00 is the whole day."""
        windows = []
        for day in sorted(set(days)):
            end_day = day if end > start else Weekday((day + 1) % 7)
            windows.append(cls(Weekday(day), start, end_day, end))
        return tuple(windows)

    @property
    def start_offset(self) -> int:
        """Microseconds from Monday 00:00 to the start."""
        return _offset_in_week(self.start_day, self.start)

    @property
    def end_offset(self) -> int:
        return _offset_in_week(self.end_day, self.end)

    def contains(self, at: datetime) -> bool:
        """Whether `at` (timezone-aware) is inside: the start is, the end is not."""
        offset = _week_offset_of(at)
        start, end = self.start_offset, self.end_offset
        if start < end:
            return start <= offset < end
        return offset >= start or offset < end


def within_trading_windows(windows: Iterable[TradingWindow], at: datetime) -> bool:
    """Whether `at` is inside any of `windows`; no windows at all is no restriction."""
    found = False
    for window in windows:
        found = True
        if window.contains(at):
            return True
    return not found


def _offset_in_week(day: int, moment: time) -> int:
    seconds = moment.hour * 3600 + moment.minute * 60 + moment.second
    return day * _MICROSECONDS_PER_DAY + seconds * 1_000_000 + moment.microsecond


def _week_offset_of(at: datetime) -> int:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{at!r} has no time zone; trading windows compare UTC times")
    utc = at.astimezone(UTC)
    return _offset_in_week(utc.weekday(), utc.time())


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """What one account may trade. None or empty: no limit of that kind."""

    # The volume of one child order, in lots.
    max_order_volume: Decimal | None = None
    # The volume open in one symbol after the trade, in lots (long + short on a hedging account).
    max_symbol_volume: Decimal | None = None
    # Volume open in one symbol x contract size x price, in the account currency.
    max_symbol_notional: Decimal | None = None
    # Positions open on the account, every symbol together.
    max_open_positions: int | None = None
    # Equity / margin x 100 after the trade, in percent.
    min_margin_level: Decimal | None = None
    # Empty: every symbol not denied. Names as the account trades them, or the gateway's names.
    allowed_symbols: frozenset[str] = frozenset()
    denied_symbols: frozenset[str] = frozenset()
    # Empty: any time.
    trading_windows: tuple[TradingWindow, ...] = ()

    @property
    def is_unlimited(self) -> bool:
        return self == NO_LIMITS


NO_LIMITS = RiskLimits()


def risk_limits_violations(limits: RiskLimits, path: str = "risk_limits") -> list[FieldViolation]:
    """Every malformed field of `limits`, named by its path (all at once, so a caller fixes
    them in one go); empty when the limits can be stored."""
    found: list[FieldViolation] = []

    def add(field: str, description: str) -> None:
        found.append(FieldViolation(f"{path}.{field}", description))

    amounts = (
        ("max_order_volume", limits.max_order_volume, "lots"),
        ("max_symbol_volume", limits.max_symbol_volume, "lots"),
        ("max_symbol_notional", limits.max_symbol_notional, "money"),
        ("min_margin_level", limits.min_margin_level, "percent"),
    )
    for name, value, unit in amounts:
        if value is None:
            continue
        if not value.is_finite():
            add(name, f"must be a finite number of {unit}, not {value}")
        elif value < 0:
            add(name, f"must be >= 0, not {value}")
    positions = limits.max_open_positions
    if positions is not None and (isinstance(positions, bool) or positions < 0):
        add("max_open_positions", f"must be an integer >= 0, not {positions}")
    for name, symbols in (
        ("allowed_symbols", limits.allowed_symbols),
        ("denied_symbols", limits.denied_symbols),
    ):
        for symbol in sorted(symbols):
            if not symbol or symbol != symbol.strip():
                add(name, f"{symbol!r} is not a symbol name")
    for symbol in sorted(limits.allowed_symbols & limits.denied_symbols):
        add("denied_symbols", f"{symbol!r} is both allowed and denied")
    for i, window in enumerate(limits.trading_windows):
        found.extend(_window_violations(window, f"{path}.trading_windows[{i}]"))
    return found


def _window_violations(window: TradingWindow, path: str) -> list[FieldViolation]:
    found = []
    for name, day in (("start_day", window.start_day), ("end_day", window.end_day)):
        if not 0 <= day <= 6:
            found.append(FieldViolation(f"{path}.{name}", f"{day} is not a weekday (0-6)"))
    for name, moment in (("start", window.start), ("end", window.end)):
        if moment.tzinfo is not None:
            found.append(
                FieldViolation(f"{path}.{name}", "a UTC time of day, given without a time zone")
            )
    if not found and window.start_offset == window.end_offset:
        found.append(
            FieldViolation(
                f"{path}.end",
                "the window ends where it starts: give a later end (a week-long window is "
                "no window at all)",
            )
        )
    return found
