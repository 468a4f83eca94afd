"""A group's source account, and the signals stored from it with what was done with each.

A group may name one source: a trading account attached like any other, not a member of the
group, whose trades the group mirrors (gateway/domain/source_book.py gives the signals,
gateway/engine/source_watcher.py acts on them). Pausing keeps the source's book: on resuming,
what changed meanwhile is caught up like after a restart.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.domain.ids import AccountId, GroupId, MasterOrderId
from gateway.domain.source_book import SourceSignal

# What a new source is given when the caller says nothing.
DEFAULT_MAX_SIGNAL_AGE = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class GroupSource:
    group_id: GroupId
    account_id: AccountId
    paused: bool
    # A position or pending order seen later than this after it was opened is not copied
    # (recorded SKIPPED, SIGNAL_TOO_OLD): after a restart, a reconnect or a pause.
    max_signal_age: timedelta
    created_at: datetime
    updated_at: datetime


class SignalState(enum.Enum):
    # Stored, not yet acted on (or to be tried again: the order it acts on still executes).
    WAITING = "WAITING"
    # Done: its master orders are stored (submitted, closing, modified or cancelled).
    COPIED = "COPIED"
    # Nothing to do, by rule (SkipReason) or by kind (a pending order that triggered).
    SKIPPED = "SKIPPED"
    # Refused by the gateway (the group's risk, a symbol it does not know...): `detail` says.
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class SignalRecord:
    # Global, increasing; assigned anew at each change of the record (stored, then settled),
    # so a reader resuming after the last one it read misses no change (0 before stored).
    sequence: int
    group_id: GroupId
    source_account_id: AccountId
    signal: SourceSignal
    state: SignalState
    # SKIPPED: the SkipReason's value (or ORDER_TRIGGERED); FAILED: the refusal's reason and
    # message; COPIED: what was done.
    detail: str
    # The master orders the signal made or acted on, in order.
    master_order_ids: tuple[MasterOrderId, ...]
    observed_at: datetime
    settled_at: datetime | None = None


def first_state(signal: SourceSignal) -> tuple[SignalState, str]:
    """The state a signal is stored in, and its detail."""
    if signal.skip is not None:
        return SignalState.SKIPPED, signal.skip.value
    if not signal.acts:
        return SignalState.SKIPPED, signal.kind.value
    return SignalState.WAITING, ""
