"""Creating, reading and changing accounts and groups (with their risk settings); attaching
each account to its terminal."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from gateway.domain.accounts import (
    Account,
    AccountSnapshot,
    AccountState,
    Group,
    NewAccount,
    NewGroup,
    Platform,
)
from gateway.domain.drawdown_monitor import DrawdownState, LossLimits, LossRule
from gateway.domain.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
)
from gateway.domain.group_rules import group_violations
from gateway.domain.ids import new_id
from gateway.domain.risk_settings import NO_GROUP_RISK, GroupRisk
from gateway.domain.stop_outs import RecordedStopOut, WatchKind
from gateway.engine.risk_book import RiskBook
from gateway.engine.stop_out_board import StopOutBoard
from gateway.engine.terminal_registry import TerminalRegistry
from gateway.store import Store
from gateway.terminals.protocol import TerminalError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RiskView:
    """An account's or a group's loss limits as they stand: the settings, the active
    stop-outs, and what the limits are measured from."""

    loss_limits: LossLimits | None = None
    stop_outs: tuple[RecordedStopOut, ...] = ()
    watch: DrawdownState | None = None
    # Groups only: the pre-trade limits and policy.
    group: GroupRisk = NO_GROUP_RISK


class AccountManager:
    def __init__(
        self,
        store: Store,
        registry: TerminalRegistry,
        clock: Callable[[], datetime],
        *,
        risk: RiskBook | None = None,
        stop_outs: StopOutBoard | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._clock = clock
        self._risk = risk
        self._stop_outs = stop_outs

    async def attach_all(self) -> int:
        """Reconnects every stored account's terminal (at start)."""
        attached = 0
        for account in await self._store.all_accounts():
            if self._registry.attach(account) is not None:
                attached += 1
        return attached

    async def all_accounts(self) -> list[Account]:
        return await self._store.all_accounts()

    async def create_account(self, new: NewAccount) -> Account:
        if await self._store.account_name_taken(new.name):
            raise AlreadyExists(
                f"an account named {new.name!r} already exists", reason="ACCOUNT_NAME_TAKEN"
            )
        now = self._clock()
        account = Account(
            account_id=new_id("acc"),
            name=new.name,
            platform=new.platform,
            login=new.login,
            server=new.server,
            currency=new.currency,
            state=new.state,
            margin_mode=new.margin_mode,
            leverage=new.leverage,
            created_at=now,
            updated_at=now,
            initial_balance=new.initial_balance,
            symbol_mappings=new.symbol_mappings,
        )
        terminal = self._registry.attach(account)
        if terminal is not None:
            try:
                info = await terminal.account_info()
            except TerminalError as error:
                log.warning("account %s: no account info yet: %s", account.account_id, error)
            else:
                account = _with_snapshot(
                    account,
                    AccountSnapshot(
                        info.balance, info.equity, info.margin, info.free_margin, info.time
                    ),
                )
        elif new.platform is not Platform.SIMULATED:
            log.info(
                "account %s (%s) waits for its terminal to connect",
                account.account_id,
                new.platform.name,
            )
        await self._store.insert_account(account)
        return account

    async def get_account(self, account_id: str) -> Account:
        account = await self._store.get_account(account_id)
        if account is None:
            raise NotFound(f"account {account_id!r} does not exist", reason="ACCOUNT_NOT_FOUND")
        return account

    async def list_accounts(
        self,
        *,
        after: str,
        limit: int,
        group_id: str = "",
        within_groups: frozenset[str] | None = None,
        within_accounts: frozenset[str] | None = None,
    ) -> list[Account]:
        if group_id:
            await self.get_group(group_id)
        return await self._store.list_accounts(
            after=after,
            limit=limit,
            group_id=group_id,
            within_groups=within_groups,
            within_accounts=within_accounts,
        )

    async def update_account(
        self,
        account_id: str,
        *,
        name: str,
        state: AccountState,
        loss_limits: LossLimits | None,
    ) -> Account:
        """An account's new name, state and loss limits (already validated); the rest stays.

        Loss limits apply from the next account history round; changing them keeps the watch
        (its high-water mark, its day) and any active stop-out, which only ResetStopOut ends.
        """
        current = await self.get_account(account_id)
        if name != current.name and await self._store.account_name_taken(name):
            raise AlreadyExists(
                f"an account named {name!r} already exists", reason="ACCOUNT_NAME_TAKEN"
            )
        if name != current.name or state is not current.state:
            now = self._clock()
            await self._store.rename_account(account_id, name=name, state=state, updated_at=now)
            current = replace(current, name=name, state=state, updated_at=now)
        if self._risk is not None:
            await self._risk.set_account(account_id, loss_limits)
        return current

    def account_risk(self, account_id: str) -> RiskView:
        stop_outs, watch = self._stop_out_state(WatchKind.ACCOUNT, account_id)
        limits = self._risk.account_loss_limits(account_id) if self._risk else None
        return RiskView(loss_limits=limits, stop_outs=stop_outs, watch=watch)

    def group_risk(self, group_id: str) -> RiskView:
        stop_outs, watch = self._stop_out_state(WatchKind.GROUP, group_id)
        group = self._risk.group(group_id) if self._risk else NO_GROUP_RISK
        return RiskView(group.loss_limits, stop_outs, watch, group)

    def _stop_out_state(
        self, kind: WatchKind, subject_id: str
    ) -> tuple[tuple[RecordedStopOut, ...], DrawdownState | None]:
        if self._stop_outs is None:
            return (), None
        return (
            tuple(self._stop_outs.active_of(kind, subject_id)),
            self._stop_outs.watch_of(kind, subject_id),
        )

    async def reset_stop_out(
        self, kind: WatchKind, subject_id: str, rules: Iterable[LossRule] | None, *, by: str
    ) -> list[RecordedStopOut]:
        if self._stop_outs is None:
            return []
        return await self._stop_outs.reset(kind, subject_id, rules, by=by)

    async def list_stop_outs(
        self,
        *,
        before: str,
        limit: int,
        kind: WatchKind | None = None,
        subject_id: str = "",
        active_only: bool = False,
    ) -> list[RecordedStopOut]:
        if kind is WatchKind.ACCOUNT:
            await self.get_account(subject_id)
        elif kind is WatchKind.GROUP:
            await self.get_group(subject_id)
        if self._stop_outs is None:
            return []
        return await self._stop_outs.history(
            before=before, limit=limit, kind=kind, subject_id=subject_id, active_only=active_only
        )

    async def create_group(self, new: NewGroup, risk: GroupRisk = NO_GROUP_RISK) -> Group:
        await self._check_group(new)
        if await self._store.group_name_taken(new.name):
            raise AlreadyExists(
                f"a group named {new.name!r} already exists", reason="GROUP_NAME_TAKEN"
            )
        now = self._clock()
        group = Group(
            group_id=new_id("grp"),
            name=new.name,
            allocation=new.allocation,
            members=new.members,
            magic=new.magic if new.magic else await self._store.next_magic(),
            created_at=now,
            updated_at=now,
        )
        await self._store.insert_group(group)
        if self._risk is not None:
            await self._risk.set_group(group.group_id, risk)
        return group

    async def update_group(
        self, group_id: str, new: NewGroup, risk: GroupRisk = NO_GROUP_RISK
    ) -> Group:
        """Replaces a group's name, settings, members and risk settings; its id, magic and
        history stay.

        Master orders already allocated keep the allocation they were given (it is stored
        with them); the new settings apply from the next order on.
        """
        current = await self.get_group(group_id)
        await self._check_group(new)
        if new.name != current.name and await self._store.group_name_taken(new.name):
            raise AlreadyExists(
                f"a group named {new.name!r} already exists", reason="GROUP_NAME_TAKEN"
            )
        group = replace(
            current,
            name=new.name,
            allocation=new.allocation,
            members=new.members,
            updated_at=self._clock(),
        )
        await self._store.replace_group(group)
        if self._risk is not None:
            await self._risk.set_group(group_id, risk)
        return group

    async def _check_group(self, new: NewGroup) -> None:
        violations = group_violations(new.allocation, new.members)
        if violations:
            raise InvalidArgument(violations)
        wanted = {m.account_id for m in new.members}
        if new.allocation.reference_account_id:
            wanted.add(new.allocation.reference_account_id)
        found = await self._store.get_accounts(wanted)
        missing = sorted(wanted - found.keys())
        if missing:
            raise NotFound(
                "no such account: " + ", ".join(repr(a) for a in missing),
                reason="ACCOUNT_NOT_FOUND",
            )

    async def get_group(self, group_id: str) -> Group:
        group = await self._store.get_group(group_id)
        if group is None:
            raise NotFound(f"group {group_id!r} does not exist", reason="GROUP_NOT_FOUND")
        return group

    async def list_groups(
        self, *, after: str, limit: int, within: frozenset[str] | None = None
    ) -> list[Group]:
        return await self._store.list_groups(after=after, limit=limit, within=within)

    async def find_group_by_name(self, name: str) -> Group | None:
        after = ""
        while True:
            page = await self._store.list_groups(after=after, limit=500)
            for group in page:
                if group.name == name:
                    return group
            if len(page) < 500:
                return None
            after = page[-1].group_id


def _with_snapshot(account: Account, snapshot: AccountSnapshot) -> Account:
    return replace(account, snapshot=snapshot)
