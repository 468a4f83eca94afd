"""Creating, reading, changing and deleting accounts and groups (with their risk settings);
attaching each account to its terminal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

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
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from gateway.domain.group_rules import group_violations
from gateway.domain.group_source import GroupSource
from gateway.domain.ids import AccountId, GroupId, new_id
from gateway.domain.risk_settings import NO_GROUP_RISK, GroupRisk
from gateway.domain.stop_outs import RecordedStopOut, WatchKind
from gateway.engine.account_monitor import AccountMonitor
from gateway.engine.risk_book import RiskBook
from gateway.engine.stop_out_board import StopOutBoard
from gateway.engine.terminal_registry import TerminalRegistry
from gateway.store import AccountInUse, Store, UnfinishedChild
from gateway.terminals.protocol import PendingOrder, Position, Terminal, TerminalError

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
        request_timeout_s: float = 10.0,
        attach_new: bool = True,
        exclusive_accounts: bool = False,
    ) -> None:
        """`request_timeout_s`: what a deletion waits for the account's terminal to answer.
        `attach_new`: a new account's terminal is attached at once (a cluster node attaches
        only its groups' accounts: attach_groups). `exclusive_accounts`: an account is traded
        by one group at most (a cluster: each group's owner attaches its accounts, and two
        owners must never trade one account)."""
        self._store = store
        self._registry = registry
        self._clock = clock
        self._risk = risk
        self._stop_outs = stop_outs
        self._request_timeout_s = request_timeout_s
        self._attach_new = attach_new
        self._exclusive_accounts = exclusive_accounts
        # A deleted account's last reading, stored for its statements before it is detached.
        self._history = AccountMonitor(
            store, registry, clock, interval_s=0, request_timeout_s=request_timeout_s
        )
        # Held by what writes group members and by a deletion's commit, so that no group gains
        # an account between its member check and a deletion (one process per database).
        self._membership = asyncio.Lock()

    async def attach_all(self) -> int:
        """Reconnects every stored account's terminal (at start); deleted accounts stay
        detached."""
        attached = 0
        for account in await self._store.all_accounts():
            if self._registry.attach(account) is not None:
                attached += 1
        return attached

    async def attach_groups(self, groups: Collection[GroupId]) -> int:
        """Cluster mode: the terminals of these groups' members and sources (a node attaches
        only what its groups trade, so that no account is traded by two nodes); how many
        were newly attached."""
        return await self._attach(await self._accounts_of(groups))

    async def keep_attached_only(self, groups: Collection[GroupId]) -> None:
        """Cluster mode: detaches (and closes) every terminal that no group of `groups`
        trades, after this node lost the others."""
        await self._detach_all_but(await self._accounts_of(groups))

    async def follow_groups(self, groups: Collection[GroupId]) -> None:
        """Cluster mode: exactly the terminals these groups trade attached (members added or
        removed through any node), their accounts read once."""
        accounts = await self._accounts_of(groups)
        await self._attach(accounts)
        await self._detach_all_but(accounts)

    async def _attach(self, wanted: set[AccountId]) -> int:
        attached = 0
        for account in (await self._store.get_accounts(wanted)).values():
            if account.is_deleted or self._registry.get(account.account_id):
                continue
            if self._registry.attach(account) is not None:
                attached += 1
        return attached

    async def _detach_all_but(self, keep: set[AccountId]) -> None:
        for terminal in self._registry.attached():
            if terminal.account_id not in keep:
                detached = self._registry.detach(terminal.account_id)
                if detached is not None:
                    with contextlib.suppress(Exception):
                        await detached.close()

    async def _accounts_of(self, groups: Collection[GroupId]) -> set[AccountId]:
        accounts: set[AccountId] = set()
        for group_id in groups:
            group = await self._store.get_group(group_id)
            if group is not None:
                accounts.update(group.account_ids)
            source = await self._store.sources.get_group_source(group_id)
            if source is not None:
                accounts.add(source.account_id)
        return accounts

    async def all_accounts(self) -> list[Account]:
        return await self._store.all_accounts()

    async def create_account(self, new: NewAccount) -> Account:
        if await self._store.account_name_taken(new.name):
            raise AlreadyExists(
                f"an account named {new.name!r} already exists", reason="ACCOUNT_NAME_TAKEN"
            )
        now = self._clock()
        account = Account(
            account_id=AccountId(new_id("acc")),
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
        terminal = self._registry.attach(account) if self._attach_new else None
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

    async def get_account(self, account_id: AccountId) -> Account:
        """The account; NOT_FOUND for a deleted one, as for one that never existed (its history
        is read through reporting)."""
        account = await self._store.get_account(account_id)
        if account is None or account.is_deleted:
            raise NotFound(f"account {account_id!r} does not exist", reason="ACCOUNT_NOT_FOUND")
        return account

    async def delete_account(self, account_id: AccountId) -> None:
        """Retires an account with nothing open: no position, no working order at its broker
        and no child order still executing. It leaves every group (each stored as UpdateGroup
        stores it) and the lists, its terminal is detached, and it is not attached again at
        start; its orders, fills, deals and statements stay, and so does its name in them,
        while the name itself is free for a new account.

        Refused with FAILED_PRECONDITION (nothing changed) while anything is open or a group
        takes its reference equity from it, and with UNAVAILABLE when its terminal cannot be
        asked: nothing is deleted blind.
        """
        await self.get_account(account_id)
        referencing = await self._store.groups_referencing(account_id)
        if referencing:
            raise _reference_of(account_id, referencing)
        await self._refuse_if_source(account_id)
        unfinished = await self._store.unfinished_children_of(account_id)
        positions, pending = await self._open_at_broker(account_id, unfinished)
        if positions or pending or unfinished:
            raise _not_flat(account_id, positions, pending, unfinished)
        # Deals since the last history round would otherwise be missing from statements.
        last = await self._history.run_once(account_ids={account_id})
        if account_id in last.failed:
            raise Unavailable(
                f"account {account_id}: its last history could not be read "
                f"({last.failed[account_id]}); nothing was deleted, try again",
                reason="TERMINAL_UNAVAILABLE",
            )
        # What was checked above is checked again in the deletion's transaction: an order
        # stored meanwhile refuses it there.
        async with self._membership:
            # Under the lock SetGroupSource takes: no group can name it between here and the
            # deletion.
            await self._refuse_if_source(account_id)
            try:
                groups = await self._store.delete_account(account_id, at=self._clock())
            except LookupError:
                raise NotFound(
                    f"account {account_id!r} does not exist", reason="ACCOUNT_NOT_FOUND"
                ) from None
            except AccountInUse as in_use:
                if in_use.referencing_groups:
                    raise _reference_of(account_id, in_use.referencing_groups) from None
                raise _not_flat(account_id, [], [], in_use.unfinished) from None
            terminal = self._registry.detach(account_id)
        if terminal is not None:
            try:
                await terminal.close()
            except Exception:
                # Detached already: nothing reaches it, whatever its close left behind.
                log.warning(
                    "account %s: its terminal did not close cleanly", account_id, exc_info=True
                )
        if self._risk is not None:
            for group in groups:
                # UpdateGroup without the member drops the member's own limits too.
                risk = self._risk.group(group.group_id)
                if account_id in risk.member_limits:
                    member_limits = dict(risk.member_limits)
                    del member_limits[account_id]
                    await self._risk.set_group(
                        group.group_id, replace(risk, member_limits=member_limits)
                    )
        log.info(
            "account %s deleted; it left %d groups: %s",
            account_id,
            len(groups),
            ", ".join(g.group_id for g in groups) or "none",
        )

    async def _open_at_broker(
        self, account_id: AccountId, unfinished: Sequence[UnfinishedChild]
    ) -> tuple[list[Position], list[PendingOrder]]:
        """The account's open positions and working orders as its terminal reports them."""
        terminal: Terminal | None = self._registry.get(account_id)
        why = "its terminal is not connected"
        if terminal is not None:
            try:
                async with (
                    asyncio.timeout(self._request_timeout_s),
                    self._registry.lock(account_id),
                ):
                    return await terminal.positions(), await terminal.pending_orders()
            except TimeoutError:
                why = f"its terminal did not answer within {self._request_timeout_s}s"
            except (TerminalError, OSError) as error:
                why = f"its terminal cannot be asked: {error}"
        if unfinished:
            # Refused either way: the executing orders are the more useful answer.
            raise _not_flat(account_id, [], [], unfinished)
        raise Unavailable(
            f"account {account_id}: {why}, so whether it holds positions or working orders is "
            "unknown; nothing was deleted",
            reason="TERMINAL_UNAVAILABLE",
        )

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
            await self.get_group(GroupId(group_id))
        return await self._store.list_accounts(
            after=after,
            limit=limit,
            group_id=group_id,
            within_groups=within_groups,
            within_accounts=within_accounts,
        )

    async def update_account(
        self,
        account_id: AccountId,
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
        if kind is WatchKind.ACCOUNT:
            await self.get_account(AccountId(subject_id))
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
            await self.get_account(AccountId(subject_id))
        elif kind is WatchKind.GROUP:
            await self.get_group(GroupId(subject_id))
        if self._stop_outs is None:
            return []
        return await self._stop_outs.history(
            before=before, limit=limit, kind=kind, subject_id=subject_id, active_only=active_only
        )

    async def create_group(self, new: NewGroup, risk: GroupRisk = NO_GROUP_RISK) -> Group:
        async with self._membership:
            await self._check_group(new)
            await self._check_exclusive(None, [m.account_id for m in new.members], "group.members")
            if await self._store.group_name_taken(new.name):
                raise AlreadyExists(
                    f"a group named {new.name!r} already exists", reason="GROUP_NAME_TAKEN"
                )
            now = self._clock()
            group = Group(
                group_id=GroupId(new_id("grp")),
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
        self, group_id: GroupId, new: NewGroup, risk: GroupRisk = NO_GROUP_RISK
    ) -> Group:
        """Replaces a group's name, settings, members and risk settings; its id, magic and
        history stay.

        Master orders already allocated keep the allocation they were given (it is stored
        with them); the new settings apply from the next order on.
        """
        async with self._membership:
            current = await self.get_group(group_id)
            await self._check_group(new)
            await self._check_not_source(group_id, new)
            await self._check_exclusive(
                group_id, [m.account_id for m in new.members], "group.members"
            )
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
        # A deleted account is no member or reference, as if it did not exist.
        missing = sorted(a for a in wanted if a not in found or found[a].is_deleted)
        if missing:
            raise NotFound(
                "no such account: " + ", ".join(repr(a) for a in missing),
                reason="ACCOUNT_NOT_FOUND",
            )

    async def _check_exclusive(
        self, group_id: GroupId | None, account_ids: list[AccountId], path: str
    ) -> None:
        """With exclusive accounts: none of these is traded by another group."""
        if not self._exclusive_accounts:
            return
        taken = await self._store.groups_trading(account_ids)
        violations = [
            FieldViolation(
                f"{path}[{i}].account_id" if path.endswith("members") else path,
                f"account {account_id} is traded by group {taken[account_id]}: in a cluster an "
                "account belongs to one group (its owner's node trades it)",
            )
            for i, account_id in enumerate(account_ids)
            if account_id in taken and taken[account_id] != group_id
        ]
        if violations:
            raise InvalidArgument(violations, reason="ACCOUNT_IN_ANOTHER_GROUP")

    async def _check_not_source(self, group_id: GroupId, new: NewGroup) -> None:
        """A group's source account is never one of its members: it would copy itself."""
        source = await self._store.sources.get_group_source(group_id)
        if source is None:
            return
        for i, member in enumerate(new.members):
            if member.account_id == source.account_id:
                raise InvalidArgument(
                    [
                        FieldViolation(
                            f"group.members[{i}].account_id",
                            f"account {source.account_id} is the group's source: a group does "
                            "not copy its own members (RemoveGroupSource first)",
                        )
                    ],
                    reason="SOURCE_IS_MEMBER",
                )

    # -- sources (mirroring) --------------------------------------------------------------------

    async def group_source(self, group_id: GroupId) -> GroupSource | None:
        return await self._store.sources.get_group_source(group_id)

    async def group_sources(self) -> dict[GroupId, GroupSource]:
        return {s.group_id: s for s in await self._store.sources.group_sources()}

    async def set_group_source(
        self,
        group_id: GroupId,
        *,
        account_id: AccountId,
        paused: bool,
        max_signal_age: timedelta,
    ) -> tuple[Group, GroupSource]:
        """Sets (or changes) the group's source account, checked under the lock that guards
        membership: an existing account, not deleted, and not a member of the group. Its
        terminal need not be attached yet: the watcher looks at it once it is."""
        async with self._membership:
            group = await self.get_group(group_id)
            account = await self._store.get_account(account_id)
            if account is None or account.is_deleted:
                raise NotFound(f"account {account_id!r} does not exist", reason="ACCOUNT_NOT_FOUND")
            await self._check_exclusive(group_id, [account_id], "source.account_id")
            if account_id in group.account_ids:
                raise InvalidArgument(
                    [
                        FieldViolation(
                            "source.account_id",
                            f"account {account_id} is a member of group {group_id}: a group "
                            "does not copy its own members",
                        )
                    ],
                    reason="SOURCE_IS_MEMBER",
                )
            current = await self._store.sources.get_group_source(group_id)
            now = self._clock()
            source = GroupSource(
                group_id=group_id,
                account_id=account_id,
                paused=paused,
                max_signal_age=max_signal_age,
                created_at=now if current is None else current.created_at,
                updated_at=now,
            )
            await self._store.sources.set_group_source(source)
        log.info(
            "group %s: source %s (%s, signals older than %s not copied)",
            group_id,
            account_id,
            "paused" if paused else "copying",
            max_signal_age,
        )
        return group, source

    async def _refuse_if_source(self, account_id: AccountId) -> None:
        source = await self._store.sources.source_of_account(account_id)
        if source is not None:
            raise FailedPrecondition(
                f"account {account_id} is the source of group {source.group_id}: remove the "
                "group's source first; nothing was deleted",
                reason="ACCOUNT_IS_GROUP_SOURCE",
            )

    async def remove_group_source(self, group_id: GroupId) -> Group:
        """Ends the group's mirroring (nothing to do on a group without a source)."""
        async with self._membership:
            group = await self.get_group(group_id)
            if await self._store.sources.remove_group_source(group_id):
                log.info("group %s: source removed", group_id)
        return group

    async def get_group(self, group_id: GroupId) -> Group:
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


def _reference_of(account_id: str, group_ids: Sequence[str]) -> FailedPrecondition:
    return FailedPrecondition(
        f"account {account_id} is the allocation reference of group "
        f"{', '.join(group_ids)}: give the group another reference first; nothing was deleted",
        reason="ACCOUNT_IS_ALLOCATION_REFERENCE",
    )


def _not_flat(
    account_id: str,
    positions: Sequence[Position],
    pending: Sequence[PendingOrder],
    unfinished: Sequence[UnfinishedChild],
) -> FailedPrecondition:
    """What still holds the account, for the operator to close or cancel."""
    held = []
    if positions:
        held.append(
            "open positions "
            + _listed(f"#{p.ticket} {p.symbol} {p.side.name} {p.volume:f}" for p in positions)
        )
    if pending:
        held.append(
            "working orders "
            + _listed(
                f"#{o.ticket} {o.symbol} {o.side.name} {o.order_type.name} {o.volume:f}"
                for o in pending
            )
        )
    if unfinished:
        held.append(
            "master orders still executing "
            + _listed(
                f"{u.master_order_id} ({u.master_state.name}; child {u.child_order_id} "
                f"{u.child_state.name})"
                for u in unfinished
            )
        )
    return FailedPrecondition(
        f"account {account_id} is not flat: {'; '.join(held)}; nothing was deleted",
        reason="ACCOUNT_NOT_FLAT",
    )


def _listed(items: Iterable[str], *, at_most: int = 20) -> str:
    """The first items and how many more: a status message stays small."""
    shown = list(items)
    more = len(shown) - at_most
    text = ", ".join(shown[:at_most])
    return f"{text} and {more} more" if more > 0 else text
