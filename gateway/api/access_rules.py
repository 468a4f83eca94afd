"""The per-RPC rule table: which roles may call each mam.v1 method, and on which resources.

Every method of every mam.v1 service has exactly one rule; a method without one is refused
(tests/integration/test_access_control.py fails when a method has none). Admins pass every
resource check. For the others, a resource the caller may not reach is PERMISSION_DENIED
whether or not it exists (AIP-211), so that errors reveal nothing of other accounts.

A state-changing call is also checked on every resource its request names, at any depth (a
group's members and reference account, a key's scope, a kill switch's target: see
resource_references): a write may name only what the caller could read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from gateway.api.resource_references import ResourceKind, resource_references
from gateway.domain.access import Principal, Role
from gateway.domain.errors import PermissionDenied
from gateway.domain.ids import AccountId, GroupId, MasterOrderId
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

    async def accounts_of(self, principal: Principal) -> frozenset[AccountId]:
        """The accounts a principal may see: an investor's own, a manager's groups' members
        and their source accounts (the accounts its groups mirror)."""
        if principal.role is Role.INVESTOR:
            return principal.account_ids
        members: set[AccountId] = set()
        for group_id in principal.group_ids:
            group = await self._store.get_group(group_id)
            if group is not None:
                members.update(group.account_ids)
                source = await self._store.sources.get_group_source(group_id)
                if source is not None:
                    members.add(source.account_id)
        return frozenset(members)

    async def group_of_master_order(self, master_order_id: MasterOrderId) -> GroupId | None:
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
    group_id = await scope.group_of_master_order(MasterOrderId(order_id)) if order_id else None
    if group_id is None or group_id not in principal.group_ids:
        raise deny(f"reach master order {order_id!r}")


async def require_references(scope: AccessScope, principal: Principal, request: Any) -> None:
    """Every resource the request names is one the caller may read; a kind no read reaches
    (keys, kill switches, stop-outs, an id field not yet classified) is never the caller's."""
    if principal.role is Role.ADMIN:
        return
    accounts: list[str] = []
    for reference in resource_references(request):
        resource_id = reference.resource_id
        if reference.kind is ResourceKind.ACCOUNT:
            accounts.append(resource_id)
        elif reference.kind is ResourceKind.GROUP:
            await require_group(principal, resource_id)
        elif reference.kind is ResourceKind.MASTER_ORDER:
            await require_master_order(scope, principal, resource_id)
        elif reference.kind is ResourceKind.GROUP_OR_ACCOUNT:
            if resource_id not in principal.group_ids:
                await require_accounts(scope, principal, [resource_id])
        else:
            raise deny(f"name {reference.kind.value} {resource_id!r}")
    await require_accounts(scope, principal, accounts)


def _write(roles: frozenset[Role], check: ResourceCheck | None = None) -> Rule:
    """A state-changing RPC's rule: audited, `check` first, then every resource it names."""

    async def checked(scope: AccessScope, principal: Principal, request: Any) -> None:
        if check is not None:
            await check(scope, principal, request)
        await require_references(scope, principal, request)

    return Rule(roles, changes_state=True, check=checked)


async def _account(scope: AccessScope, principal: Principal, request: Any) -> None:
    await require_accounts(scope, principal, [request.account_id or "<none>"])


async def _account_in_body(scope: AccessScope, principal: Principal, request: Any) -> None:
    await require_accounts(scope, principal, [request.account.account_id or "<none>"])


async def _group(scope: AccessScope, principal: Principal, request: Any) -> None:
    await require_group(principal, request.group_id)


async def _group_in_body(scope: AccessScope, principal: Principal, request: Any) -> None:
    # Its members and reference account are the references' check: a manager may arrange its
    # own accounts, never draw in (or read the equity of) someone else's.
    await require_group(principal, request.group.group_id)


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
    _ACCOUNTS + "CreateAccount": _write(ADMIN),
    _ACCOUNTS + "GetAccount": Rule(EVERYONE, check=_account),
    _ACCOUNTS + "ListAccounts": Rule(EVERYONE, check=_optional_group),
    _ACCOUNTS + "UpdateAccount": _write(MANAGERS, _account_in_body),
    _ACCOUNTS + "DeleteAccount": _write(ADMIN),
    _ACCOUNTS + "CreateGroup": _write(ADMIN),
    _ACCOUNTS + "GetGroup": Rule(MANAGERS, check=_group),
    _ACCOUNTS + "ListGroups": Rule(MANAGERS),
    _ACCOUNTS + "UpdateGroup": _write(MANAGERS, _group_in_body),
    _ACCOUNTS + "ResetStopOut": _write(MANAGERS, _account_or_group),
    _ACCOUNTS + "ListStopOuts": Rule(MANAGERS, check=_account_or_group),
    _ACCOUNTS + "WatchStopOuts": Rule(MANAGERS, check=_account_or_group),
    # The source account is one of the references: one the manager reaches already (a member
    # or the source of one of its groups), never another tenant's.
    _ACCOUNTS + "SetGroupSource": _write(MANAGERS, _group),
    _ACCOUNTS + "RemoveGroupSource": _write(MANAGERS, _group),
    _TRADING + "SubmitMasterOrder": _write(MANAGERS, _order_group),
    # Checked (with this check) and audited per submission by the servicer.
    _TRADING + "StreamMasterOrders": _write(MANAGERS, _order_group),
    _TRADING + "PreviewAllocation": Rule(MANAGERS, check=_order_group),
    _TRADING + "GetMasterOrder": Rule(MANAGERS, check=_master_order),
    _TRADING + "ListMasterOrders": Rule(MANAGERS, check=_optional_group),
    _TRADING + "CancelMasterOrder": _write(MANAGERS, _master_order),
    _TRADING + "ModifyMasterOrder": _write(MANAGERS, _master_order),
    _TRADING + "CloseMasterPosition": _write(MANAGERS, _master_order),
    _TRADING + "SubscribeFills": Rule(EVERYONE, check=_fills),
    # No group: the servicer shows the caller's groups' signals only.
    _TRADING + "ListSignals": Rule(MANAGERS, check=_optional_group),
    _TRADING + "StreamSignals": Rule(MANAGERS, check=_optional_group),
    # The symbols' volume and price rules: what every caller's figures are shown with.
    _TRADING + "ListSymbols": Rule(EVERYONE),
    _ADMIN + "CreateApiKey": _write(ADMIN),
    _ADMIN + "ListApiKeys": Rule(ADMIN),
    _ADMIN + "RevokeApiKey": _write(ADMIN),
    _ADMIN + "ListAuditRecords": Rule(ADMIN),
    _ADMIN + "ActivateKillSwitch": _write(ADMIN),
    _ADMIN + "DeactivateKillSwitch": _write(ADMIN),
    _ADMIN + "ListKillSwitches": Rule(ADMIN),
    _ADMIN + "GetClusterStatus": Rule(ADMIN),
    _WORKERS + "Connect": Rule(EVERYONE, own_authentication=True),
    "/mam.v1.TerminalService/ListTerminals": Rule(ADMIN),
    # Reporting: an investor reads its own accounts, a manager its groups' accounts and groups.
    _REPORTING + "RecordBalanceOperation": _write(ADMIN, _balance_operation_in_body),
    _REPORTING + "ListBalanceOperations": Rule(EVERYONE, check=_account),
    _REPORTING + "ListAccountDeals": Rule(EVERYONE, check=_account),
    _REPORTING + "ListAccountPositions": Rule(EVERYONE, check=_account),
    _REPORTING + "GetAccountPerformance": Rule(EVERYONE, check=_account),
    _REPORTING + "GetGroupPerformance": Rule(MANAGERS, check=_group),
    _REPORTING + "GetFeeSchedule": Rule(EVERYONE, check=_account),
    _REPORTING + "UpdateFeeSchedule": _write(ADMIN, _fee_schedule_in_body),
    # Crystallises completed fee periods as it lists them: derived from stored history, not a
    # change anyone makes, so not audited.
    _REPORTING + "ListFeeCharges": Rule(EVERYONE, check=_account),
    _REPORTING + "GetExecutionQuality": Rule(EVERYONE, check=_account),
    _REPORTING + "GetAccountStatement": Rule(EVERYONE, check=_account),
}
