"""Stop-outs as recorded: a loss limit's breach (drawdown_monitor.StopOut) of one account or
group, with its id, when it was recorded, and how it ended.

A stop-out is active until it ends: by an explicit reset (ResetStopOut), or, for a daily loss
whose limits say so, at the next trading day. While active it holds back every child of an
opening master order for its account (or for its group's orders); closing orders go on.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from gateway.domain.drawdown_monitor import DrawdownState, LossRule, StopOut, StopOutAction


class WatchKind(enum.Enum):
    """What a loss watch follows: one account's equity, or the sum of a group's members'."""

    ACCOUNT = "ACCOUNT"
    GROUP = "GROUP"


@dataclass(frozen=True, slots=True)
class LossWatchState:
    """One watched account's or group's drawdown state, as stored between readings."""

    kind: WatchKind
    subject_id: str
    state: DrawdownState
    # GROUP: the members whose equity the state sums; a change of membership starts a new
    # watch (the references of other members' money mean nothing for the new sum).
    members: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RecordedStopOut:
    stop_out_id: str
    kind: WatchKind
    subject_id: str
    breach: StopOut
    recorded_at: datetime
    ended_at: datetime | None = None
    # Who or what ended it: "reset by <key id>", "a new trading day".
    ended_by: str = ""
    # FLATTEN: the closing master orders submitted for it.
    closing_master_order_ids: tuple[str, ...] = ()

    @property
    def is_active(self) -> bool:
        return self.ended_at is None

    @property
    def rule(self) -> LossRule:
        return self.breach.rule

    @property
    def action(self) -> StopOutAction:
        return self.breach.action

    def covers(self, account_id: str, group_id: str) -> bool:
        """Whether an order of group `group_id` for `account_id` is held back by it."""
        if not self.is_active:
            return False
        if self.kind is WatchKind.ACCOUNT:
            return self.subject_id == account_id
        return self.subject_id == group_id

    def describe(self) -> str:
        return (
            f"stop-out {self.stop_out_id} of {self.kind.value.lower()} {self.subject_id} "
            f"({self.breach.describe()})"
        )


def most_severe(stop_outs: list[RecordedStopOut]) -> StopOutAction | None:
    """The action that applies with several stop-outs active; None when there is none."""
    active = [s.action for s in stop_outs if s.is_active]
    if not active:
        return None
    return max(active, key=lambda action: action.severity)
