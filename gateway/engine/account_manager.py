"""Creating and reading accounts and groups; attaching each account to its terminal."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from gateway.domain.accounts import (
    Account,
    AccountSnapshot,
    Group,
    NewAccount,
    NewGroup,
    Platform,
)
from gateway.domain.allocation import PROPORTIONAL_METHODS
from gateway.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    Violations,
)
from gateway.domain.ids import new_id
from gateway.engine.terminal_registry import TerminalRegistry
from gateway.store import Store
from gateway.terminals.protocol import TerminalError

log = logging.getLogger(__name__)


class AccountManager:
    def __init__(
        self, store: Store, registry: TerminalRegistry, clock: Callable[[], datetime]
    ) -> None:
        self._store = store
        self._registry = registry
        self._clock = clock

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

    async def list_accounts(self, *, after: str, limit: int, group_id: str = "") -> list[Account]:
        if group_id:
            await self.get_group(group_id)
        return await self._store.list_accounts(after=after, limit=limit, group_id=group_id)

    async def create_group(self, new: NewGroup) -> Group:
        violations = Violations()
        if new.allocation.method not in PROPORTIONAL_METHODS:
            raise FailedPrecondition(
                f"allocation method {new.allocation.method.name} is not available in this "
                f"version; available: {', '.join(sorted(m.name for m in PROPORTIONAL_METHODS))}",
                reason="ALLOCATION_METHOD_UNAVAILABLE",
            )
        seen: set[str] = set()
        for index, member in enumerate(new.members):
            if member.account_id in seen:
                violations.add(
                    f"group.members[{index}].account_id",
                    f"account {member.account_id!r} is listed twice",
                )
            seen.add(member.account_id)
        violations.raise_if_any()
        found = await self._store.get_accounts(seen)
        missing = [
            (i, m.account_id) for i, m in enumerate(new.members) if m.account_id not in found
        ]
        if missing:
            raise NotFound(
                "no such account: " + ", ".join(repr(a) for _, a in missing),
                reason="ACCOUNT_NOT_FOUND",
            )
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
        return group

    async def get_group(self, group_id: str) -> Group:
        group = await self._store.get_group(group_id)
        if group is None:
            raise NotFound(f"group {group_id!r} does not exist", reason="GROUP_NOT_FOUND")
        return group

    async def list_groups(self, *, after: str, limit: int) -> list[Group]:
        return await self._store.list_groups(after=after, limit=limit)

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
