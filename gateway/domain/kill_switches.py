"""Kill switches: a global, group or account stop on everything that opens or adds to a position.

GLOBAL stops every order; GROUP the master orders of one group (its members still trade in
their other groups); ACCOUNT every order's child for one account.

A switch stays on until it is lifted explicitly; closing orders still go, so that a desk can
flatten what is open while nothing new is opened.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class KillSwitchScope(enum.Enum):
    GLOBAL = 1
    GROUP = 2
    ACCOUNT = 3


@dataclass(frozen=True, slots=True)
class KillSwitch:
    kill_switch_id: str
    scope: KillSwitchScope
    # A group id (GROUP), an account id (ACCOUNT), empty (GLOBAL).
    target_id: str
    flatten: bool
    reason: str
    activated_at: datetime
    activated_by: str
    deactivated_at: datetime | None = None
    deactivated_by: str = ""
    closing_master_order_ids: tuple[str, ...] = ()

    @property
    def is_active(self) -> bool:
        return self.deactivated_at is None

    def covers(self, account_id: str, group_id: str) -> bool:
        """Whether an order of group `group_id` for `account_id` is stopped by this switch."""
        if not self.is_active:
            return False
        if self.scope is KillSwitchScope.GLOBAL:
            return True
        if self.scope is KillSwitchScope.GROUP:
            return self.target_id == group_id
        return self.target_id == account_id

    def covers_group(self, group_id: str) -> bool:
        """Whether every order of the group is stopped (GLOBAL, or this group's switch)."""
        return self.is_active and (
            self.scope is KillSwitchScope.GLOBAL
            or (self.scope is KillSwitchScope.GROUP and self.target_id == group_id)
        )

    def describe(self) -> str:
        where = (
            "every account"
            if self.scope is KillSwitchScope.GLOBAL
            else (f"{self.scope.name.lower()} {self.target_id}")
        )
        return f"kill switch {self.kill_switch_id} on {where}: {self.reason}"
