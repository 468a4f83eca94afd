"""A member's copy options: how its account copies the group's opening orders, beside how
much of each it gets (its allocation settings). What they do to an order is
gateway/domain/copying.py's; here is what they are and what a valid set is.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from gateway.domain.errors import FieldViolation
from gateway.domain.side import Side

# Bounds of what may be written: beyond them a value is a typo, not a setting.
MAX_MIN_VOLUME = Decimal(100_000)
MAX_SLIPPAGE_POINTS = 1_000_000
MAX_SIGNAL_AGE = timedelta(days=7)


class CopyDirection(enum.Enum):
    """Which sides the account opens, counted after any reversal: the side it trades."""

    BOTH = "BOTH"
    BUY_ONLY = "BUY_ONLY"
    SELL_ONLY = "SELL_ONLY"


class MinVolumePolicy(enum.Enum):
    """What a volume below the member's minimum becomes: nothing, or the minimum."""

    SKIP = "SKIP"
    RAISE = "RAISE"


@dataclass(frozen=True, slots=True)
class CopyOptions:
    # Trade the other side: a BUY is copied as a SELL, the source's stop loss becomes the
    # take profit and the other way round, a LIMIT becomes a STOP at the same price.
    reverse: bool = False
    direction: CopyDirection = CopyDirection.BOTH
    # Copy the master order's stop loss and take profit (and later changes of them).
    copy_stops: bool = True
    # Copy pending master orders (and so the positions they open when they trigger).
    copy_pending: bool = True
    # The smallest volume the account trades, in lots of its own symbol; what a smaller one
    # becomes is min_volume_policy's.
    min_volume: Decimal | None = None
    min_volume_policy: MinVolumePolicy = MinVolumePolicy.SKIP
    # Mirrored orders: skip the account when its price is further than this many of its
    # symbol's points from the source's fill price.
    max_slippage_points: int | None = None
    # Mirrored orders: skip the account when the source's change is older than this.
    max_signal_age: timedelta | None = None
    # Open nothing: closes only (what it holds is closed with the group).
    close_only: bool = False

    @property
    def is_default(self) -> bool:
        return self == DEFAULT_COPY_OPTIONS

    def side_of(self, side: Side) -> Side:
        """The side the account trades for a master order of `side`."""
        return side.opposite if self.reverse else side

    @property
    def needs_price(self) -> bool:
        return self.max_slippage_points is not None


DEFAULT_COPY_OPTIONS = CopyOptions()


def copy_option_violations(
    options: CopyOptions, path: str, *, max_lots: Decimal | None = None
) -> list[FieldViolation]:
    """What is wrong with a member's copy options, each with its field (`path`.field)."""
    found: list[FieldViolation] = []

    def add(field: str, description: str) -> None:
        found.append(FieldViolation(f"{path}.{field}", description))

    minimum = options.min_volume
    if minimum is not None:
        if not minimum.is_finite() or minimum <= 0:
            add("min_volume", "must be > 0 lots")
        elif minimum > MAX_MIN_VOLUME:
            add("min_volume", f"must be at most {MAX_MIN_VOLUME} lots")
        elif max_lots is not None and minimum > max_lots:
            add("min_volume", f"is above the member's max_lots {max_lots}: nothing could trade")
    elif options.min_volume_policy is MinVolumePolicy.RAISE:
        add("min_volume_policy", "RAISE needs a min_volume to raise to")
    slippage = options.max_slippage_points
    if slippage is not None and not 0 <= slippage <= MAX_SLIPPAGE_POINTS:
        add("max_slippage_points", f"must be in [0, {MAX_SLIPPAGE_POINTS}]")
    age = options.max_signal_age
    if age is not None and not timedelta(0) < age <= MAX_SIGNAL_AGE:
        add("max_signal_age", f"must be > 0 and at most {MAX_SIGNAL_AGE.days} days")
    if options.close_only and options.direction is not CopyDirection.BOTH:
        add("direction", "a close-only member opens nothing: a direction filter says nothing")
    return found
