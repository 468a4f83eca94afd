"""Groups and accounts as an operator names them on mamctl's command line: by id or by name."""

from __future__ import annotations

import grpc

from mam_client.errors import MamError
from mam_client.sync_client import SyncMamClient
from mam_client.types import Group


def find_group(client: SyncMamClient, key: str) -> Group:
    """The group whose id is key, else the one whose name is key."""
    named = None
    for group in client.list_groups(page_size=1000):
        if group.group_id == key:
            return group
        if group.name == key and named is None:
            named = group
    if named is not None:
        return named
    raise MamError(
        grpc.StatusCode.NOT_FOUND, f"no group with id or name {key!r}", reason="GROUP_NOT_FOUND"
    )


class AccountIds:
    """Account ids by id or name, the accounts listed once (at the first lookup). A key that
    is neither stays as it is, for the gateway to judge: a manager's or an investor's list
    holds its own accounts only."""

    def __init__(self, client: SyncMamClient) -> None:
        self._client = client
        self._ids: dict[str, str] | None = None

    def __call__(self, key: str) -> str:
        if self._ids is None:
            accounts = list(self._client.list_accounts(page_size=1000))
            # An id wins over a name that happens to be spelled like it.
            self._ids = {a.name: a.account_id for a in accounts}
            self._ids.update((a.account_id, a.account_id) for a in accounts)
        return self._ids.get(key, key)


def find_account_id(client: SyncMamClient, key: str) -> str:
    """The id of the account whose id or name is key (key itself when none is listed)."""
    return AccountIds(client)(key)
