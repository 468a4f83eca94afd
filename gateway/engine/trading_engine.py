"""The walk of a master order: snapshot -> allocation -> stored children -> dispatch -> fills.

The caller is answered once the master order, its allocation and its children are committed;
execution goes on in the background. At start, unfinished master orders resume from the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from gateway.domain.accounts import Account, AccountSnapshot, AllocationMethod, Group
from gateway.domain.allocation import (
    Allocation,
    AllocationRequest,
    MemberInput,
    allocate,
    effective_method,
)
from gateway.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from gateway.domain.ids import new_id, tag_for_child
from gateway.domain.orders import (
    ChildOrder,
    ChildOrderState,
    MasterOrder,
    MasterOrderSpec,
    MasterOrderState,
    OrderType,
    Side,
)
from gateway.domain.symbols import SymbolSpec
from gateway.engine.dispatcher import Dispatcher
from gateway.engine.execution_recorder import ExecutionRecorder
from gateway.engine.terminal_registry import TerminalRegistry
from gateway.store import Store
from gateway.terminals.protocol import SymbolNotFound, TerminalError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TradingLimits:
    # Larger master orders are refused as input errors, whatever the group can take.
    max_master_volume: Decimal = Decimal(10_000)
    # How long reading one terminal's account values may take before it is left out.
    snapshot_timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class _Reading:
    snapshot: AccountSnapshot | None = None
    spec: SymbolSpec | None = None
    entry_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class _Planned:
    group: Group
    allocation: Allocation
    snapshots: dict[str, AccountSnapshot]


class TradingEngine:
    def __init__(
        self,
        *,
        store: Store,
        registry: TerminalRegistry,
        symbols: Mapping[str, SymbolSpec],
        dispatcher: Dispatcher,
        recorder: ExecutionRecorder,
        clock: Callable[[], datetime],
        limits: TradingLimits = TradingLimits(),
    ) -> None:
        self._store = store
        self._registry = registry
        self._symbols = dict(symbols)
        self._dispatcher = dispatcher
        self._recorder = recorder
        self._clock = clock
        self._limits = limits
        self._running: set[asyncio.Task[None]] = set()

    @property
    def symbols(self) -> Mapping[str, SymbolSpec]:
        return self._symbols

    # -- commands ---------------------------------------------------------------------------

    async def preview(self, spec: MasterOrderSpec) -> Allocation:
        """The allocation a submission would get now; sends and stores nothing."""
        return (await self._plan(spec)).allocation

    async def submit(self, spec: MasterOrderSpec) -> MasterOrder:
        planned = await self._plan(spec)
        allocation = planned.allocation
        now = self._clock()
        master_order_id = new_id("mo")
        children = [
            ChildOrder(
                child_order_id=(child_id := new_id("ch")),
                master_order_id=master_order_id,
                account_id=line.account_id,
                symbol=line.symbol,
                side=spec.side,
                volume=volume,
                state=ChildOrderState.PENDING,
                tag=tag_for_child(child_id),
                magic=planned.group.magic,
                created_at=now,
                updated_at=now,
            )
            for line in allocation.lines
            for volume in line.child_volumes
        ]
        if not children:
            raise FailedPrecondition(
                "no account of the group receives any volume: " + _why_nothing(allocation),
                reason="NOTHING_ALLOCATED",
            )
        master = MasterOrder(
            master_order_id=master_order_id,
            spec=spec,
            state=MasterOrderState.ACCEPTED,
            magic=planned.group.magic,
            allocation=allocation,
            created_at=now,
            updated_at=now,
            child_count=len(children),
        ).moved_to(MasterOrderState.ALLOCATED, now)
        await self._store.save_snapshots(planned.snapshots)
        await self._store.insert_master_order(master, children)
        self._spawn(self._execute(master, children))
        return master

    async def get(self, master_order_id: str) -> tuple[MasterOrder, list[ChildOrder]]:
        master = await self._store.get_master_order(master_order_id)
        if master is None:
            raise NotFound(
                f"master order {master_order_id!r} does not exist",
                reason="MASTER_ORDER_NOT_FOUND",
            )
        return master, await self._store.children_of(master_order_id)

    async def list_master_orders(
        self, *, before: str, limit: int, group_id: str = ""
    ) -> list[MasterOrder]:
        return await self._store.list_master_orders(before=before, limit=limit, group_id=group_id)

    async def resume_unfinished(self) -> int:
        """Picks up every master order a previous run left unfinished."""
        resumed = 0
        for master in await self._store.unfinished_master_orders():
            children = await self._store.children_of(master.master_order_id)
            self._spawn(self._execute(master, children))
            resumed += 1
        return resumed

    async def wait_idle(self) -> None:
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    async def stop(self, grace_s: float) -> None:
        """Lets running dispatches finish for up to grace_s, then cancels the rest; what
        was cancelled stays SENT in the store and is reconciled at the next start."""
        if self._running:
            _, pending = await asyncio.wait(list(self._running), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # -- the walk ---------------------------------------------------------------------------

    async def _plan(self, spec: MasterOrderSpec) -> _Planned:
        symbol = self._symbols.get(spec.symbol)
        if symbol is None:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "order.symbol",
                        f"unknown symbol {spec.symbol!r}; "
                        f"known: {', '.join(sorted(self._symbols))}",
                    )
                ],
                reason="UNKNOWN_SYMBOL",
            )
        self._check_volume(spec, symbol)
        if spec.order_type is not OrderType.MARKET:
            raise FailedPrecondition(
                f"{spec.order_type.name} master orders are not available in this version; "
                "only MARKET",
                reason="ORDER_TYPE_UNAVAILABLE",
            )
        group = await self._store.get_group(spec.group_id)
        if group is None:
            raise NotFound(f"group {spec.group_id!r} does not exist", reason="GROUP_NOT_FOUND")
        settings = group.allocation
        wanted = list(group.account_ids)
        if settings.reference_account_id and settings.reference_account_id not in wanted:
            wanted.append(settings.reference_account_id)
        accounts = await self._store.get_accounts(wanted)
        methods = {m.account_id: effective_method(settings, m) for m in group.members}
        readings = await self._read_accounts(
            [accounts[a] for a in wanted if a in accounts], spec, methods
        )
        reference_equity = settings.reference_equity
        if reference_equity is None and settings.reference_account_id:
            reference = readings.get(settings.reference_account_id)
            reference_equity = (
                reference.snapshot.equity if reference and reference.snapshot else None
            )
        members = [
            MemberInput(
                account_id=member.account_id,
                symbol=accounts[member.account_id].broker_symbol(spec.symbol),
                spec=readings[member.account_id].spec,
                active=accounts[member.account_id].is_active,
                snapshot=readings[member.account_id].snapshot,
                settings=member,
                entry_price=readings[member.account_id].entry_price,
            )
            for member in group.members
            if member.account_id in accounts
        ]
        allocation = allocate(
            AllocationRequest(
                volume=spec.volume,
                symbol=symbol,
                settings=settings,
                snapshot_time=self._clock(),
                stop_loss=spec.stop_loss,
                reference_equity=reference_equity,
            ),
            members,
        )
        snapshots = {
            account_id: reading.snapshot
            for account_id, reading in readings.items()
            if reading.snapshot is not None
        }
        return _Planned(group, allocation, snapshots)

    def _check_volume(self, spec: MasterOrderSpec, symbol: SymbolSpec) -> None:
        problem = None
        if spec.volume > self._limits.max_master_volume:
            problem = f"above the gateway's limit of {self._limits.max_master_volume} lots"
        elif spec.volume % symbol.volume_step != 0:
            problem = f"not a multiple of the volume step {symbol.volume_step} of {symbol.name}"
        elif spec.volume < symbol.volume_min:
            problem = f"below the minimum volume {symbol.volume_min} of {symbol.name}"
        if problem:
            raise InvalidArgument(
                [FieldViolation("order.volume", problem)], reason="INVALID_VOLUME"
            )

    async def _read_accounts(
        self,
        accounts: list[Account],
        spec: MasterOrderSpec,
        methods: dict[str, AllocationMethod],
    ) -> dict[str, _Reading]:
        """One reading per account for this order, all concurrently: its money, the spec of
        the symbol it trades, and (for PERCENT_RISK) its entry price."""

        async def read(account: Account) -> tuple[str, _Reading]:
            terminal = self._registry.get(account.account_id)
            if terminal is None or not account.is_active:
                return account.account_id, _Reading()
            symbol = account.broker_symbol(spec.symbol)
            try:
                async with asyncio.timeout(self._limits.snapshot_timeout_s):
                    info = await terminal.account_info()
                    snapshot = AccountSnapshot(
                        info.balance, info.equity, info.margin, info.free_margin, info.time
                    )
                    try:
                        symbol_spec = await terminal.symbol_spec(symbol)
                    except SymbolNotFound:
                        return account.account_id, _Reading(snapshot)
                    entry = None
                    if methods.get(account.account_id) is AllocationMethod.PERCENT_RISK:
                        quote = await terminal.quote(symbol)
                        entry = quote.ask if spec.side is Side.BUY else quote.bid
            except (TimeoutError, TerminalError) as error:
                log.warning("account %s: no snapshot: %s", account.account_id, error)
                return account.account_id, _Reading()
            return account.account_id, _Reading(snapshot, symbol_spec, entry)

        return dict(await asyncio.gather(*(read(a) for a in accounts)))

    async def _execute(self, master: MasterOrder, children: list[ChildOrder]) -> None:
        now = self._clock()
        # Children a previous run may have sent: found by tag before anything is resent.
        maybe_sent = frozenset(
            c.child_order_id
            for c in children
            if c.state in (ChildOrderState.SENT, ChildOrderState.UNKNOWN)
        )
        if master.state is MasterOrderState.ALLOCATED:
            master = master.moved_to(MasterOrderState.DISPATCHING, now)
        # Stored as SENT before the first request leaves: after a crash these are
        # reconciled by tag, never blindly resent.
        ready = [c for c in children if c.state is ChildOrderState.PENDING]
        sent = [c.moved_to(ChildOrderState.SENT, now, sent_at=now) for c in ready]
        await self._store.save_progress(masters=[master], children=sent)
        by_id = {c.child_order_id: c for c in children}
        by_id.update({c.child_order_id: c for c in sent})
        current = list(by_id.values())
        progress = self._recorder.track(master, current)
        open_children = [c for c in current if not c.state.is_final]
        if not open_children:
            # Every child ended before a restart but the master was not closed: close it.
            await self._recorder.finish_if_complete(progress)
            return
        await self._dispatcher.dispatch(master, open_children, reconcile_first=maybe_sent)

    def _spawn(self, coroutine: object) -> None:
        assert asyncio.iscoroutine(coroutine)
        task: asyncio.Task[None] = asyncio.create_task(coroutine)
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("master order execution failed", exc_info=task.exception())


def _why_nothing(allocation: Allocation) -> str:
    reasons = sorted({r.name for line in allocation.lines for r in line.reasons})
    return ", ".join(reasons) if reasons else "the group has no members"
