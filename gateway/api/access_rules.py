"""The per-RPC rule table: which roles may call each mam.v1 method, and on which resources.

Every method of every mam.v1 service has exactly one rule; a method without one is refused
(tests/integration/test_access_control.py fails when a method has none). Admins pass every
resource check. For the others, a resource the caller may not reach is PERMISSION_DENIED
whether or not it exists (AIP-211), so that errors reveal nothing of other accounts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from gateway.domain.access import Principal, Role
from gateway.domain.errors import PermissionDenied
from gateway.store import Store

ADMIN = frozenset({Role.ADMIN})
MANAGERS = frozenset({Role.ADMIN, Role.MANAGER})
EVERYONE = frozenset({Role.ADMIN, Role.MANAGER, Role.INVESTOR})

ResourceCheck = Callable[["AccessScope", Principal, Any], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Rule:
    roles: frozenset[Role]
    # Changes state: audited, one record per call (per submission on a stream).
    changes_state: bool = False
    # For non-admins: the request's resources must be the caller's.
    check: ResourceCheck | None = None
    # Authenticated by the service itself (the worker endpoint's worker tokens), not API keys.
    own_authentication: bool = False


class AccessScope:
    """What a non-admin principal reaches, read from the store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def accounts_of(self, principal: Principal) -> frozenset[str]:
        """The accounts a principal may see: an investor's own, a manager's groups' members."""
        if principal.role is Role.INVESTOR:
            return principal.account_ids
        members: set[str] = set()
        for group_id in principal.group_ids:
            group = await self._store.get_group(group_id)
            if group is not None:
                members.update(group.account_ids)
        return frozenset(members)

    async def group_of_master_order(self, master_order_id: str) -> str | None:
        master = await self._store.get_master_order(master_order_id)
        return master.spec.group_id if master is not None else None


def deny(what: str) -> PermissionDenied:
    return PermissionDenied(f"this API key may not {what}", reason="PERMISSION_DENIED")


async def require_group(principal: Principal, group_id: str) -> None:
    if principal.role is not Role.ADMIN and group_id not in principal.group_ids:
        raise deny(f"use group {group_id!r}")


async def require_accounts(scope: AccessScope, principal: Principal, ids: Collection[str]) -> None:
    if principal.role is Role.ADMIN or not ids:
        return
    visible = await scope.accounts_of(principal)
    outside = sorted(set(ids) - visible)
    if outside:
        raise deny(f"reach account {outside[0]!r}")


async def require_master_order(scope: AccessScope, principal: Principal, order_id: str) -> None:
    if principal.role is Role.ADMIN:
        return
    group_id = await scope.group_of_master_order(order_id) if order_id else None
    if group_id is None or group_id not in principal.group_ids:
        raise deny(f"reach master order {order_id!r}")


async def _account(scope: AccessScope, principal: Principal, request: Any) -> None:
    await require_accounts(scope, principal, [request.account_id or "<none>"])


async def _account_in_body(scope: AccessScope, principal: Principal, request: Any) -> None:
    await require_accounts(scope, principal, [request.account.account_id or "<none>"])


async def _group(scope: AccessScope, principal: Principal, request: Any) -> None:
    await require_group(principal, request.group_id)


async def _group_in_body(scope: AccessScope, principal: Principal, request: Any) -> None:
    await require_group(principal, request.group.group_id)
    if "members" in request.update_mask.paths or not request.update_mask.paths:
        # A manager may arrange its own accounts, never draw in someone else's.
        await require_accounts(scope, principal, [m.account_id for m in request.group.members])


async def _order_group(scope: AccessScope, principal: Principal, request: Any) -> None:
    await require_group(principal, request.order.group_id)


async def _master_order(scope: AccessScope, principal: Principal, request: Any) -> None:
    await require_master_order(scope, principal, request.master_order_id)


async def _fee_schedule_in_body(scope: AccessScope, principal: Principal, request: Any) -> None:
    await require_accounts(scope, principal, [request.fee_schedule.account_id or "<none>"])


async def _balance_operation_in_body(
    scope: AccessScope, principal: Principal, request: Any
) -> None:
    await require_accounts(scope, principal, [request.balance_operation.account_id or "<none>"])


async def _optional_group(scope: AccessScope, principal: Principal, request: Any) -> None:
    # No group: the servicer lists only what the caller may see.
    if request.group_id:
        if principal.role is Role.INVESTOR:
            raise deny("list the members of a group")
        await require_group(principal, request.group_id)


async def _account_or_group(scope: AccessScope, principal: Principal, request: Any) -> None:
    # A stop-out's subject: a manager reaches its groups and their members' accounts.
    if request.group_id:
        await require_group(principal, request.group_id)
    if request.account_id or not request.group_id:
        await require_accounts(scope, principal, [request.account_id or "<none>"])


async def _fills(scope: AccessScope, principal: Principal, request: Any) -> None:
    await require_accounts(scope, principal, list(request.account_ids))
    if request.master_order_id and principal.role is Role.MANAGER:
        await require_master_order(scope, principal, request.master_order_id)


_ACCOUNTS = "/mam.v1.AccountService/"
_TRADING = "/mam.v1.TradingService/"
_ADMIN = "/mam.v1.AdminService/"
_WORKERS = "/mam.v1.WorkerService/"
_REPORTING = "/mam.v1.ReportingService/"

RULES: dict[str, Rule] = {
    _ACCOUNTS + "CreateAccount": Rule(ADMIN, changes_state=True),
    _ACCOUNTS + "GetAccount": Rule(EVERYONE, check=_account),
    _ACCOUNTS + "ListAccounts": Rule(EVERYONE, check=_optional_group),
    _ACCOUNTS + "UpdateAccount": Rule(MANAGERS, changes_state=True, check=_account_in_body),
    _ACCOUNTS + "DeleteAccount": Rule(ADMIN, changes_state=True),
    _ACCOUNTS + "CreateGroup": Rule(ADMIN, changes_state=True),
    _ACCOUNTS + "GetGroup": Rule(MANAGERS, check=_group),
    _ACCOUNTS + "ListGroups": Rule(MANAGERS),
    _ACCOUNTS + "UpdateGroup": Rule(MANAGERS, changes_state=True, check=_group_in_body),
    _ACCOUNTS + "ResetStopOut": Rule(MANAGERS, changes_state=True, check=_account_or_group),
    _ACCOUNTS + "ListStopOuts": Rule(MANAGERS, check=_account_or_group),
    _ACCOUNTS + "WatchStopOuts": Rule(MANAGERS, check=_account_or_group),
    _TRADING + "SubmitMasterOrder": Rule(MANAGERS, changes_state=True, check=_order_group),
    # Checked and audited per submission by the servicer.
    _TRADING + "StreamMasterOrders": Rule(MANAGERS, changes_state=True),
    _TRADING + "PreviewAllocation": Rule(MANAGERS, check=_order_group),
    _TRADING + "GetMasterOrder": Rule(MANAGERS, check=_master_order),
    _TRADING + "ListMasterOrders": Rule(MANAGERS, check=_optional_group),
    _TRADING + "CancelMasterOrder": Rule(MANAGERS, changes_state=True, check=_master_order),
    _TRADING + "ModifyMasterOrder": Rule(MANAGERS, changes_state=True, check=_master_order),
    _TRADING + "CloseMasterPosition": Rule(MANAGERS, changes_state=True, check=_master_order),
    _TRADING + "SubscribeFills": Rule(EVERYONE, check=_fills),
    _ADMIN + "CreateApiKey": Rule(ADMIN, changes_state=True),
    _ADMIN + "ListApiKeys": Rule(ADMIN),
    _ADMIN + "RevokeApiKey": Rule(ADMIN, changes_state=True),
    _ADMIN + "ListAuditRecords": Rule(ADMIN),
    _ADMIN + "ActivateKillSwitch": Rule(ADMIN, changes_state=True),
    _ADMIN + "DeactivateKillSwitch": Rule(ADMIN, changes_state=True),
    _ADMIN + "ListKillSwitches": Rule(ADMIN),
    _WORKERS + "Connect": Rule(EVERYONE, own_authentication=True),
    "/mam.v1.TerminalService/ListTerminals": Rule(ADMIN),
    # Reporting: an investor reads its own accounts, a manager its groups' accounts and groups.
    _REPORTING + "RecordBalanceOperation": Rule(
        ADMIN, changes_state=True, check=_balance_operation_in_body
    ),
    _REPORTING + "ListBalanceOperations": Rule(EVERYONE, check=_account),
    _REPORTING + "ListAccountDeals": Rule(EVERYONE, check=_account),
    _REPORTING + "ListAccountPositions": Rule(EVERYONE, check=_account),
    _REPORTING + "GetAccountPerformance": Rule(EVERYONE, check=_account),
    _REPORTING + "GetGroupPerformance": Rule(MANAGERS, check=_group),
    _REPORTING + "GetFeeSchedule": Rule(EVERYONE, check=_account),
    _REPORTING + "UpdateFeeSchedule": Rule(ADMIN, changes_state=True, check=_fee_schedule_in_body),
    # Crystallises completed fee periods as it lists them: derived from stored history, not a
    # change anyone makes, so not audited.
    _REPORTING + "ListFeeCharges": Rule(EVERYONE, check=_account),
    _REPORTING + "GetExecutionQuality": Rule(EVERYONE, check=_account),
    _REPORTING + "GetAccountStatement": Rule(EVERYONE, check=_account),
}
