"""Groups and account settings as last stored, kept in memory for the reads of every order.

A submission reads its group and every member account (1,000 rows for a 1,000-account group)
before it can allocate; those change rarely and only through the Store, which is the only
writer of its database (one gateway process per database). So the Store keeps what it read
and drops an entry whenever it writes that group or account.

A read that overlaps a write must not put back what the write replaced: each write moves a
generation on, and what was read is kept only if no write happened while it was being read.
Accounts are kept without their latest money (`snapshot`), which changes with every reading
and is not what these reads are for.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from gateway.domain.accounts import Account, Group
from gateway.domain.ids import AccountId, GroupId


class SettingsCache:
    def __init__(self, *, keeping: bool = True) -> None:
        # False: nothing is kept, every read goes to the database (a cluster node: other
        # nodes write the same groups and accounts).
        self._keeping = keeping
        self._generation = 0
        self._groups: dict[GroupId, Group] = {}
        self._accounts: dict[AccountId, Account] = {}

    @property
    def generation(self) -> int:
        """Taken before a read, handed back with what was read (see keep_*)."""
        return self._generation

    def changed(
        self, *, account_ids: Iterable[AccountId] = (), group_ids: Iterable[GroupId] = ()
    ) -> None:
        """After (or on the failure of) a write of these accounts or groups."""
        self._generation += 1
        for account_id in account_ids:
            self._accounts.pop(account_id, None)
        for group_id in group_ids:
            self._groups.pop(group_id, None)

    def group(self, group_id: GroupId) -> Group | None:
        return self._groups.get(group_id)

    def keep_group(self, generation: int, group: Group) -> None:
        if self._keeping and generation == self._generation:
            self._groups[group.group_id] = group

    def accounts(
        self, account_ids: Iterable[AccountId]
    ) -> tuple[dict[AccountId, Account], list[AccountId]]:
        """The accounts kept, and the ids not kept (to be read)."""
        kept = self._accounts
        found: dict[AccountId, Account] = {}
        missing: list[AccountId] = []
        for account_id in account_ids:
            account = kept.get(account_id)
            if account is None:
                missing.append(account_id)
            else:
                found[account_id] = account
        return found, missing

    def keep_accounts(
        self, generation: int, accounts: Iterable[Account]
    ) -> dict[AccountId, Account]:
        """The accounts as kept (without their snapshot); kept only if nothing was written
        since `generation`."""
        settings = {
            a.account_id: a if a.snapshot is None else replace(a, snapshot=None) for a in accounts
        }
        if self._keeping and generation == self._generation:
            self._accounts.update(settings)
        return settings
