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
from gateway.domain.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
)
from gateway.domain.group_rules import group_violations
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
        return group

    async def update_group(self, group_id: str, new: NewGroup) -> Group:
        """Replaces a group's name, settings and members; its id, magic and history stay.

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
