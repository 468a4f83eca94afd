"""Every group's and account's risk settings, kept in memory and written through to the store.

One gateway process serves one database, so what this book holds is what is stored: it is
loaded at start and changed only by `set_group` and `set_account` (after the store's commit).
Planning an order then costs a dictionary lookup, and nothing at all for a group without
limits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from gateway.domain.drawdown_monitor import LossLimits
from gateway.domain.risk_settings import NO_GROUP_RISK, GroupRisk, watched
from gateway.store import Store


class RiskBook:
    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock
        self._groups: dict[str, GroupRisk] = {}
        self._accounts: dict[str, LossLimits] = {}

    async def load(self) -> None:
        settings = await self._store.risk.settings()
        self._groups = {g: r for g, r in settings.groups.items() if r != NO_GROUP_RISK}
        self._accounts = dict(settings.accounts)

    def group(self, group_id: str) -> GroupRisk:
        return self._groups.get(group_id, NO_GROUP_RISK)

    def account_loss_limits(self, account_id: str) -> LossLimits | None:
        return self._accounts.get(account_id)

    @property
    def watched_accounts(self) -> Mapping[str, LossLimits]:
        return self._accounts

    @property
    def watched_groups(self) -> dict[str, LossLimits]:
        return {g: r.loss_limits for g, r in self._groups.items() if r.loss_limits is not None}

    async def set_group(self, group_id: str, risk: GroupRisk) -> None:
        risk = GroupRisk(risk.limits, risk.policy, risk.member_limits, watched(risk.loss_limits))
        if risk == self.group(group_id):
            return
        await self._store.risk.set_group_risk(group_id, risk, self._clock())
        if risk == NO_GROUP_RISK:
            self._groups.pop(group_id, None)
        else:
            self._groups[group_id] = risk

    async def set_account(self, account_id: str, loss_limits: LossLimits | None) -> None:
        loss_limits = watched(loss_limits)
        if loss_limits == self.account_loss_limits(account_id):
            return
        await self._store.risk.set_account_loss_limits(account_id, loss_limits, self._clock())
        if loss_limits is None:
            self._accounts.pop(account_id, None)
        else:
            self._accounts[account_id] = loss_limits
