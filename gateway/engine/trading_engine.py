"""The walk of a master order: snapshot -> allocation -> stored children -> dispatch -> fills.

The caller is answered once the master order, its allocation and its children are committed;
execution goes on in the background. At start, unfinished master orders resume from the store.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from gateway.domain.accounts import (
    Account,
    AccountSnapshot,
    AllocationMethod,
    Group,
    MarginMode,
)
from gateway.domain.allocation import (
    Allocation,
    AllocationLine,
    AllocationRequest,
    MemberInput,
    allocate,
    effective_method,
)
from gateway.domain.audit import AuditRecord
from gateway.domain.closing import OpenPosition, plan_close
from gateway.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
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
from gateway.domain.retry_policy import RetryPolicy
from gateway.domain.symbols import SpecInterner, SymbolSpec
from gateway.engine.deadlines import Deadlines
from gateway.engine.dispatcher import Dispatcher
from gateway.engine.execution_recorder import ExecutionRecorder, MasterProgress
from gateway.engine.pending_order_watcher import PendingOrderWatcher
from gateway.engine.pre_trade_checks import Holdings, PlannedChecks, PreTradeChecks
from gateway.engine.risk_book import RiskBook
from gateway.engine.stops_modifier import StopsChange, StopsModifier, StopsOutcome
from gateway.engine.terminal_registry import TerminalRegistry
from gateway.engine.trading_gate import TradingGate
from gateway.store import DuplicateClientOrderId, Store
from gateway.store.faults import is_transient
from gateway.terminals.protocol import SymbolNotFound, TerminalError

log = logging.getLogger(__name__)

# Storing a new master order through a passing store fault: a few quick tries within the
# caller's patience (about 0.35 s), then UNAVAILABLE.
INSERT_RETRY = RetryPolicy(initial_interval_s=0.05, maximum_interval_s=0.2, maximum_attempts=4)
# How often an order whose storing was in doubt is looked for while the store is down.
_IN_DOUBT_POLL_S = 0.5


@dataclass(frozen=True, slots=True)
class TradingLimits:
    # Larger master orders are refused as input errors, whatever the group can take.
    max_master_volume: Decimal = Decimal(10_000)
    # How long reading one terminal's account values may take before it is left out.
    snapshot_timeout_s: float = 5.0
    # How often resting pending orders are checked for fills, expiry and removal.
    pending_check_interval_s: float = 0.5
    # How often UNKNOWN children (their terminal could not be asked) are tried again.
    unknown_retry_s: float = 5.0


@dataclass(frozen=True, slots=True)
class Submission:
    """A submission's answer: the stored master order, and whether it was stored before."""

    master: MasterOrder
    # True when the caller had already submitted this client_order_id with the same payload:
    # the original order is returned as it stands now, and nothing new is traded.
    replayed: bool = False
    # The call's audit record was stored with the order (in the same transaction).
    audited: bool = False


@dataclass(frozen=True, slots=True)
class _Reading:
    snapshot: AccountSnapshot | None = None
    spec: SymbolSpec | None = None
    entry_price: Decimal | None = None
    # Accounts under pre-trade risk checks only.
    holdings: Holdings | None = None


@dataclass(frozen=True, slots=True)
class _Planned:
    group: Group
    allocation: Allocation
    snapshots: dict[str, AccountSnapshot]
    # Each account's point on its broker symbol, as read for the allocation: the dispatcher
    # need not ask each terminal again (a round trip per child over a remote worker).
    points: dict[str, Decimal]


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
        gate: TradingGate | None = None,
        risk: RiskBook | None = None,
    ) -> None:
        self._gate = gate if gate is not None else TradingGate()
        self._checks = PreTradeChecks(risk, self._gate, symbols)
        self._store = store
        self._registry = registry
        self._symbols = dict(symbols)
        self._dispatcher = dispatcher
        self._recorder = recorder
        self._health = recorder.health
        self._clock = clock
        self._limits = limits
        # The timeout of reading one account (a submission reads all its group's at once).
        self._snapshot_deadlines = Deadlines(limits.snapshot_timeout_s)
        self._running: set[asyncio.Task[None]] = set()
        # Submissions storing and starting their order, whether or not their caller waits.
        self._carrying: set[asyncio.Task[Submission | None]] = set()
        # Pending master orders at work at the brokers (started with resume_unfinished).
        self._watcher = PendingOrderWatcher(
            store,
            registry,
            recorder,
            dispatcher,
            interval_s=limits.pending_check_interval_s,
            unknown_retry_s=limits.unknown_retry_s,
        )
        self._watcher_task_started = False
        self._stops = StopsModifier(
            store,
            registry,
            clock,
            slots=dispatcher.slots,
            request_timeout_s=dispatcher.request_timeout_s,
        )

    @property
    def symbols(self) -> Mapping[str, SymbolSpec]:
        return self._symbols

    # -- commands ---------------------------------------------------------------------------

    async def preview(self, spec: MasterOrderSpec) -> Allocation:
        """The allocation a submission would get now; sends and stores nothing."""
        return (await self._plan(spec)).allocation

    async def submit(
        self,
        spec: MasterOrderSpec,
        *,
        submitted_by: str = "",
        audit: AuditRecord | None = None,
    ) -> Submission:
        """Stores and starts a master order, once per (submitted_by, client_order_id).

        A resubmission with the same payload gets the original order back (in flight or
        finished); the same id with a different payload is ALREADY_EXISTS. The store's unique
        index settles races between concurrent resubmissions. `audit`: the call's audit record,
        stored with the order in its transaction (Submission.audited says it was).
        """
        self._health.refuse_if_unreachable()
        existing = await self._store.find_by_client_order_id(submitted_by, spec.client_order_id)
        if existing is not None:
            return _replay(existing, spec)
        switch = self._gate.stopping_group(spec.group_id)
        if switch is not None:
            raise FailedPrecondition(
                f"trading is stopped by {switch.describe()}; it is lifted only explicitly",
                reason="KILL_SWITCH_ACTIVE",
            )
        planned = await self._plan(spec)
        allocation = planned.allocation
        now = self._clock()
        master_order_id = new_id("mo")
        # Stored SENT (past PENDING, with its SENT event) before the first request leaves:
        # after a crash each is searched for by its tag before anything is resent. Its sent
        # time is the moment its request leaves (the dispatcher's), none until then.
        children = [
            ChildOrder(
                child_order_id=(child_id := new_id("ch")),
                master_order_id=master_order_id,
                account_id=line.account_id,
                symbol=line.symbol,
                side=spec.side,
                volume=volume,
                state=ChildOrderState.SENT,
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
        allocated = MasterOrder(
            master_order_id=master_order_id,
            spec=spec,
            state=MasterOrderState.ACCEPTED,
            magic=planned.group.magic,
            allocation=allocation,
            created_at=now,
            updated_at=now,
            child_count=len(children),
            submitted_by=submitted_by,
        ).moved_to(MasterOrderState.ALLOCATED, now)
        master = allocated.moved_to(MasterOrderState.DISPATCHING, now)

        async def store() -> Submission | None:
            existing = await self._insert(
                master,
                children,
                audit=(
                    None
                    if audit is None
                    else replace(audit, result=f"master_order_id={master_order_id}")
                ),
                snapshots=planned.snapshots,
                earlier=[allocated],
            )
            return None if existing is None else _replay(existing, spec)

        def start() -> Submission:
            self._start(master, children, planned.points)
            return Submission(master, audited=audit is not None)

        return await self._carried_through(store(), start)

    async def close(
        self,
        master_order_id: str,
        *,
        client_order_id: str,
        fraction: Decimal | None = None,
        volume: Decimal | None = None,
        submitted_by: str = "",
        only_accounts: frozenset[str] | None = None,
    ) -> Submission:
        """Closes `fraction` of what is still open of a master order's position, or `volume`
        lots of it (in lots of the master symbol): a closing master order whose children each
        close their account's share (gateway/domain/closing.py), dispatched like any order.
        `only_accounts`: close these accounts' parts only (a kill switch's flatten).

        Idempotent per (submitted_by, client_order_id) like a submission.
        """
        assert (fraction is None) != (volume is None)
        self._health.refuse_if_unreachable()
        existing = await self._store.find_by_client_order_id(submitted_by, client_order_id)
        if existing is not None:
            return _replay_close(existing, master_order_id, fraction, volume)
        opened, still_open = await self._open_parts(master_order_id, only_accounts)
        master_symbol = self._symbols[opened.spec.symbol]
        lines = {line.account_id: line for line in opened.allocation.lines}
        open_master = sum(
            (
                Fraction(left)
                * Fraction(lines[c.account_id].contract_size or master_symbol.contract_size)
                / Fraction(master_symbol.contract_size)
                for c, left in still_open
            ),
            Fraction(0),
        )
        if volume is not None:
            if volume > open_master:
                raise InvalidArgument(
                    [
                        FieldViolation(
                            "volume",
                            f"above the open volume {_shown(open_master)} of master order "
                            f"{master_order_id}",
                        )
                    ],
                    reason="INVALID_VOLUME",
                )
            share = Fraction(volume) / open_master
        else:
            assert fraction is not None
            share = Fraction(fraction)
        accounts = await self._store.get_account_settings({c.account_id for c, _ in still_open})
        positions = await self._open_positions(still_open, lines, share)
        now = self._clock()
        allocation = plan_close(positions, share, master_spec=master_symbol, at=now)
        by_child = {p.child.account_id: p.child for p in positions}
        close_id = new_id("mo")
        side = Side.SELL if opened.spec.side is Side.BUY else Side.BUY
        closing_children = [
            ChildOrder(
                child_order_id=(child_id := new_id("ch")),
                master_order_id=close_id,
                account_id=line.account_id,
                symbol=line.symbol,
                side=side,
                volume=part,
                # Stored SENT before any request leaves, as a submission's children.
                state=ChildOrderState.SENT,
                tag=tag_for_child(child_id),
                magic=opened.magic,
                created_at=now,
                updated_at=now,
                # Hedging: close that very position; netting: an opposite deal reduces it.
                position_ticket=(
                    by_child[line.account_id].position_ticket
                    if accounts[line.account_id].margin_mode is MarginMode.HEDGING
                    else 0
                ),
                closes_child_order_id=by_child[line.account_id].child_order_id,
            )
            for line in allocation.lines
            for part in line.child_volumes
        ]
        if not closing_children:
            raise FailedPrecondition(
                "no account's share reaches its minimum volume: " + _why_nothing(allocation),
                reason="NOTHING_ALLOCATED",
            )
        spec = replace(
            opened.spec,
            client_order_id=client_order_id,
            side=side,
            volume=volume if volume is not None else _shown(share * open_master),
            comment=f"close of {master_order_id}",
            closes_master_order_id=master_order_id,
            close_fraction=fraction,
        )
        allocated = MasterOrder(
            master_order_id=close_id,
            spec=spec,
            state=MasterOrderState.ACCEPTED,
            magic=opened.magic,
            allocation=allocation,
            created_at=now,
            updated_at=now,
            child_count=len(closing_children),
            submitted_by=submitted_by,
        ).moved_to(MasterOrderState.ALLOCATED, now)
        master = allocated.moved_to(MasterOrderState.DISPATCHING, now)
        points = {p.child.account_id: p.spec.point for p in positions}

        async def store() -> Submission | None:
            existing = await self._insert(master, closing_children, earlier=[allocated])
            if existing is None:
                return None
            return _replay_close(existing, master_order_id, fraction, volume)

        def start() -> Submission:
            self._start(master, closing_children, points)
            return Submission(master)

        return await self._carried_through(store(), start)

    async def flatten(
        self,
        *,
        label: str,
        submitted_by: str,
        group_id: str = "",
        account_id: str = "",
        wait_s: float = 60.0,
    ) -> AsyncIterator[str]:
        """Closes everything open that opening orders of the group (or for the account, or all)
        hold, one closing order per opening order; yields each closing order's id.

        An order still executing is waited for (up to `wait_s`) and then closed. Idempotent
        per `label`: flattening again with the same label closes nothing twice.
        """
        only = frozenset({account_id}) if account_id else None
        for master_order_id in await self._store.opening_orders_touching(
            group_id=group_id, account_id=account_id
        ):
            deadline = asyncio.get_running_loop().time() + wait_s
            while True:
                try:
                    submission = await self.close(
                        master_order_id,
                        client_order_id=f"{label}:{master_order_id}",
                        fraction=Decimal(1),
                        submitted_by=submitted_by,
                        only_accounts=only,
                    )
                except FailedPrecondition as error:
                    waiting = error.reason in ("MASTER_ORDER_NOT_FINAL", "CLOSE_IN_PROGRESS")
                    if waiting and asyncio.get_running_loop().time() < deadline:
                        await asyncio.sleep(0.1)
                        continue
                    if error.reason not in ("NOTHING_TO_CLOSE", "NOTHING_ALLOCATED"):
                        log.warning("flatten %s: %s not closed: %s", label, master_order_id, error)
                    break
                yield submission.master.master_order_id
                break

    async def modify_stops(
        self, master_order_id: str, change: StopsChange, *, price: Decimal | None = None
    ) -> tuple[MasterOrder, list[StopsOutcome]]:
        """Sets the stop loss and take profit of every open position of the order; of a
        WORKING pending order, the price, stop loss and take profit of every resting child."""
        progress = self._recorder.progress_of(master_order_id)
        if progress is not None and progress.master.spec.order_type is not OrderType.MARKET:
            return await self._modify_working(progress, change, price)
        if price is not None:
            raise FailedPrecondition(
                f"master order {master_order_id} has no resting pending order to move; price "
                "is for a WORKING LIMIT, STOP or STOP_LIMIT order",
                reason="NOT_WORKING",
            )
        opened, still_open = await self._open_parts(master_order_id)
        accounts = await self._store.get_account_settings({c.account_id for c, _ in still_open})
        outcomes = await self._stops.modify(
            [c for c, _ in still_open],
            {a.account_id: a.margin_mode for a in accounts.values()},
            change,
        )
        return opened, outcomes

    async def _modify_working(
        self, progress: MasterProgress, change: StopsChange, price: Decimal | None
    ) -> tuple[MasterOrder, list[StopsOutcome]]:
        spec = progress.master.spec
        new_spec = replace(
            spec,
            price=price if price is not None else spec.price,
            stop_loss=_stop(change.stop_loss, spec.stop_loss),
            take_profit=_stop(change.take_profit, spec.take_profit),
        )
        # Stored first: children still being placed take the new values, and a restart too.
        await self._store.set_master_prices(
            progress.master.master_order_id,
            price=new_spec.price,
            stop_loss=new_spec.stop_loss,
            take_profit=new_spec.take_profit,
        )
        progress.master = replace(progress.master, spec=new_spec)
        placed = [c for c in progress.children.values() if c.state is ChildOrderState.PLACED]
        outcomes = await self._stops.modify_resting(progress.master, placed, change)
        return progress.master, outcomes

    async def _open_parts(
        self, master_order_id: str, only_accounts: frozenset[str] | None = None
    ) -> tuple[MasterOrder, list[tuple[ChildOrder, Decimal]]]:
        """A final opening master order and, per child, the volume it still holds (its filled
        volume less what closing orders filled); refused while a close is executing."""
        opened, children = await self.get(master_order_id)
        _check_closable(opened)
        closes = await self._store.closing_orders_of(master_order_id)
        running = [c.master_order_id for c, _ in closes if not c.state.is_final]
        if running:
            raise FailedPrecondition(
                f"closing order {running[0]} of {master_order_id} is still executing; try "
                "again once it is final",
                reason="CLOSE_IN_PROGRESS",
            )
        closed: dict[str, Decimal] = {}
        for _, closing_children in closes:
            for c in closing_children:
                closed[c.closes_child_order_id] = (
                    closed.get(c.closes_child_order_id, Decimal(0)) + c.filled_volume
                )
        still_open = [
            (c, c.filled_volume - closed.get(c.child_order_id, Decimal(0)))
            for c in children
            if c.filled_volume > closed.get(c.child_order_id, Decimal(0))
            and (only_accounts is None or c.account_id in only_accounts)
        ]
        if not still_open:
            raise FailedPrecondition(
                f"nothing of master order {master_order_id} is open", reason="NOTHING_TO_CLOSE"
            )
        return opened, still_open

    async def _open_positions(
        self,
        still_open: list[tuple[ChildOrder, Decimal]],
        lines: Mapping[str, AllocationLine],
        share: Fraction,
    ) -> list[OpenPosition]:
        """Each open child with its broker symbol's spec, read from its terminal (one per
        account: a split child order's parts share its account's position)."""

        async def read(child: ChildOrder, left: Decimal) -> OpenPosition | None:
            terminal = self._registry.get(child.account_id)
            if terminal is None:
                return None
            try:
                with self._snapshot_deadlines.guard():
                    spec = await terminal.symbol_spec(child.symbol)
            except (TimeoutError, TerminalError, SymbolNotFound) as error:
                log.warning("account %s: cannot close: %s", child.account_id, error)
                return None
            return OpenPosition(child, left, spec, lines[child.account_id].method)

        found = await asyncio.gather(*(read(c, left) for c, left in still_open))
        return [p for p in found if p is not None]

    async def cancel(self, master_order_id: str) -> MasterOrder:
        """Stops sending the master order's children: each one not yet at its broker ends
        CANCELLED; those already sent go on to their outcome. Stored before it takes effect,
        so a restart honours it. Asking again is harmless; a final order is refused."""
        if not await self._store.request_cancel(master_order_id, self._clock()):
            master = await self._store.get_master_order(master_order_id)
            if master is None:
                raise NotFound(
                    f"master order {master_order_id!r} does not exist",
                    reason="MASTER_ORDER_NOT_FOUND",
                )
            raise FailedPrecondition(
                f"master order {master_order_id} is {master.state.name}: it is final, "
                "nothing is left to cancel",
                reason="MASTER_ORDER_FINAL",
            )
        progress = self._recorder.progress_of(master_order_id)
        if progress is not None:
            self._dispatcher.stop_sending(master_order_id)
            # Resting pending children are removed by the watcher, which must see the request.
            progress.master = replace(progress.master, cancel_requested_at=self._clock())
            self._watcher.wake()
        master, _ = await self.get(master_order_id)
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
        self,
        *,
        before: str,
        limit: int,
        group_id: str = "",
        within_groups: frozenset[str] | None = None,
    ) -> list[MasterOrder]:
        return await self._store.list_master_orders(
            before=before, limit=limit, group_id=group_id, within_groups=within_groups
        )

    async def resume_unfinished(self) -> int:
        """Picks up every master order a previous run left unfinished."""
        resumed = 0
        for master in await self._store.unfinished_master_orders():
            children = await self._store.children_of(master.master_order_id)
            self._spawn(self._execute(master, children))
            resumed += 1
        if self._watcher_task_started is False:
            self._watcher.start()
            self._watcher_task_started = True
        return resumed

    async def wait_idle(self) -> None:
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    async def stop(self, grace_s: float) -> None:
        """Lets running dispatches finish for up to grace_s, then cancels the rest; what
        was cancelled stays SENT in the store and is reconciled at the next start."""
        await asyncio.gather(*list(self._carrying), return_exceptions=True)
        await asyncio.sleep(0)  # their callbacks start what their gone callers left stored
        await self._watcher.stop()
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
        group = await self._store.get_group(spec.group_id)
        if group is None:
            raise NotFound(f"group {spec.group_id!r} does not exist", reason="GROUP_NOT_FOUND")
        stopped = self._gate.stopped_group(group.group_id)
        if stopped is not None:
            raise FailedPrecondition(
                f"the group is stopped out: {stopped.describe()}; ResetStopOut lifts it",
                reason="STOPPED_OUT",
            )
        checks = self._checks.plan(group)
        settings = group.allocation
        wanted = list(group.account_ids)
        if settings.reference_account_id and settings.reference_account_id not in wanted:
            wanted.append(settings.reference_account_id)
        accounts = await self._store.get_account_settings(wanted)
        methods = {m.account_id: effective_method(settings, m) for m in group.members}
        readings = await self._read_accounts(
            [accounts[a] for a in wanted if a in accounts], spec, methods, checks
        )
        reference_equity = settings.reference_equity
        if reference_equity is None and settings.reference_account_id:
            reference = readings.get(settings.reference_account_id)
            reference_equity = (
                reference.snapshot.equity if reference and reference.snapshot else None
            )
        same_spec = SpecInterner()
        members = [
            MemberInput(
                account_id=member.account_id,
                symbol=accounts[member.account_id].broker_symbol(spec.symbol),
                spec=_interned(same_spec, readings[member.account_id].spec),
                active=accounts[member.account_id].is_active,
                snapshot=readings[member.account_id].snapshot,
                settings=member,
                entry_price=readings[member.account_id].entry_price,
            )
            for member in group.members
            if member.account_id in accounts
        ]
        now = self._clock()
        allocation = allocate(
            AllocationRequest(
                volume=spec.volume,
                symbol=symbol,
                settings=settings,
                snapshot_time=now,
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
        # After the allocation's time is taken: the checks read the gate's stop-outs, and a
        # stop-out the gate learns of later is the dispatcher's to apply.
        if self._checks.needed(checks):
            allocation = self._checks.apply(
                allocation,
                checks,
                accounts=accounts,
                snapshots=snapshots,
                holdings={a: r.holdings for a, r in readings.items() if r.holdings is not None},
                specs={a: r.spec for a, r in readings.items()},
                order=spec,
                master_symbol=symbol,
                at=now,
            )
        points = {a: r.spec.point for a, r in readings.items() if r.spec is not None}
        return _Planned(group, allocation, snapshots, points)

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
        checks: PlannedChecks,
    ) -> dict[str, _Reading]:
        """One reading per account for this order, all concurrently: its money, the spec of
        the symbol it trades, (for PERCENT_RISK) its entry price, and (for an account under
        pre-trade checks) its open positions and price."""

        async def read(account: Account) -> tuple[str, _Reading]:
            terminal = self._registry.get(account.account_id)
            if terminal is None or not account.is_active:
                return account.account_id, _Reading()
            symbol = account.broker_symbol(spec.symbol)
            try:
                with self._snapshot_deadlines.guard():
                    info = await terminal.account_info()
                    snapshot = AccountSnapshot(
                        info.balance, info.equity, info.margin, info.free_margin, info.time
                    )
                    try:
                        symbol_spec = await terminal.symbol_spec(symbol)
                    except SymbolNotFound:
                        return account.account_id, _Reading(snapshot)
                    entry = quote = None
                    if methods.get(account.account_id) is AllocationMethod.PERCENT_RISK:
                        quote = await terminal.quote(symbol)
                        entry = quote.ask if spec.side is Side.BUY else quote.bid
                    holdings = None
                    if account.account_id in checks.accounts:
                        holdings = await self._checks.read(
                            terminal, account, info, symbol_spec, spec, quote, checks.risk
                        )
            except (TimeoutError, TerminalError, SymbolNotFound) as error:
                log.warning("account %s: no snapshot: %s", account.account_id, error)
                return account.account_id, _Reading()
            return account.account_id, _Reading(snapshot, symbol_spec, entry, holdings)

        return dict(await asyncio.gather(*(read(a) for a in accounts)))

    def _start(
        self, master: MasterOrder, children: list[ChildOrder], points: Mapping[str, Decimal]
    ) -> None:
        """Dispatches a master order just stored by this process (DISPATCHING, its children
        SENT and none sent yet). Tracked before this returns, so a cancellation arriving
        right after the acknowledgement finds it; announced from the task, once the caller
        has followed the order (a StreamMasterOrders reader follows it on the return).
        `points`: each account's point on its symbol, as read for the order."""
        progress = self._recorder.track(master, children)
        self._spawn(self._dispatch(progress, children, frozenset(), announce=True, points=points))

    async def _execute(self, master: MasterOrder, children: list[ChildOrder]) -> None:
        """Resumes a master order an earlier run left unfinished."""
        master, current, maybe_sent = await self._resumed(master, children)
        await self._dispatch(self._recorder.track(master, current), current, maybe_sent)

    async def _dispatch(
        self,
        progress: MasterProgress,
        current: list[ChildOrder],
        maybe_sent: frozenset[str],
        *,
        announce: bool = False,
        points: Mapping[str, Decimal] | None = None,
    ) -> None:
        master = progress.master
        if announce:
            self._recorder.updates.publish([master], current)
        open_children = [c for c in current if not c.state.is_final]
        to_dispatch = [c for c in open_children if c.state is not ChildOrderState.PLACED]
        if not open_children:
            # Every child ended before a restart but the master was not closed: close it.
            await self._recorder.finish_if_complete(progress)
            return
        if master.cancel_requested_at is not None:
            self._dispatcher.stop_sending(master.master_order_id)
        # Deals already stored as fills (a partly filled child before a restart): never twice.
        known_deals: dict[str, set[int]] = {}
        if maybe_sent:
            for fill in await self._store.fills_of(master.master_order_id):
                known_deals.setdefault(fill.child_order_id, set()).add(fill.deal_ticket)
        try:
            if to_dispatch:
                await self._dispatcher.dispatch(
                    master,
                    to_dispatch,
                    reconcile_first=maybe_sent,
                    known_deals=known_deals,
                    points=points,
                )
        finally:
            self._dispatcher.forget(master.master_order_id)

    async def _resumed(
        self, master: MasterOrder, children: list[ChildOrder]
    ) -> tuple[MasterOrder, list[ChildOrder], frozenset[str]]:
        """A master order left unfinished by an earlier run, made ready to dispatch: the
        master DISPATCHING and its PENDING children SENT, stored before any request leaves.
        Also the children that run may have sent (SENT or UNKNOWN): each is found by its tag
        before anything is resent."""
        now = self._clock()
        maybe_sent = frozenset(
            c.child_order_id
            for c in children
            if c.state in (ChildOrderState.SENT, ChildOrderState.UNKNOWN)
        )
        if master.state is MasterOrderState.ALLOCATED:
            master = master.moved_to(MasterOrderState.DISPATCHING, now)
        # Pending children already resting at their brokers are the watcher's to follow.
        sent = [
            c.moved_to(ChildOrderState.SENT, now, sent_at=now)
            for c in children
            if c.state is ChildOrderState.PENDING
        ]
        await self._store.save_progress(masters=[master], children=sent)
        self._recorder.updates.publish([master], sent)
        by_id = {c.child_order_id: c for c in children}
        by_id.update({c.child_order_id: c for c in sent})
        return master, list(by_id.values()), maybe_sent

    async def _insert(
        self,
        master: MasterOrder,
        children: list[ChildOrder],
        *,
        audit: AuditRecord | None = None,
        snapshots: dict[str, AccountSnapshot] | None = None,
        earlier: list[MasterOrder],
    ) -> MasterOrder | None:
        """Stores a new master order with its children: None once stored, or the order its
        caller stored before under the same client_order_id.

        A passing store fault is tried through a few times (INSERT_RETRY); a try that failed
        may have been stored all the same (a connection lost during COMMIT), which the next
        try finds as its own order. Past the last try the caller gets UNAVAILABLE, and the
        order, should that try have been stored after all, is started once the store answers
        (never stored and left unstarted)."""
        tries = 0
        while True:
            try:
                await self._store.insert_master_order(
                    master, children, audit=audit, snapshots=snapshots, earlier=earlier
                )
                return None
            except DuplicateClientOrderId as duplicate:
                if duplicate.existing.master_order_id == master.master_order_id:
                    return None  # an earlier try was stored after all
                return duplicate.existing
            except Exception as error:
                if not is_transient(error):
                    raise
                tries += 1
                if not INSERT_RETRY.allows(tries):
                    self._spawn(self._start_if_stored(master.master_order_id))
                    raise self._health.unavailable(error) from error
                await asyncio.sleep(INSERT_RETRY.delay_s(tries))

    async def _start_if_stored(self, master_order_id: str) -> None:
        """After a submission's storing ended in doubt: once the store answers, starts the
        order if it was stored after all (and nothing started it meanwhile)."""
        while True:
            try:
                master = await self._store.get_master_order(master_order_id)
                children = [] if master is None else await self._store.children_of(master_order_id)
                break
            except Exception as error:
                if not is_transient(error):
                    log.error("master order %s: cannot tell whether it was stored", master_order_id,
                              exc_info=error)  # fmt: skip
                    return
                await asyncio.sleep(_IN_DOUBT_POLL_S)
        if master is None or master.state.is_final:
            return
        if self._recorder.progress_of(master_order_id) is not None:
            return
        log.warning(
            "master order %s was stored although its submitter was told UNAVAILABLE: started now",
            master_order_id,
        )
        await self._execute(master, children)

    async def _carried_through(
        self, store: Coroutine[Any, Any, Submission | None], start: Callable[[], Submission]
    ) -> Submission:
        """Stores a master order (`store`: None once stored, or the replay of an order stored
        before) and starts it, even when the caller is cancelled meanwhile (a client's deadline
        or disconnect): the order is then either stored and dispatched or not stored, never
        stored and left unstarted until a restart; and the store's statements are never
        cancelled mid-way (asyncpg, cancelled while it sends a large executemany, can wait for
        good, holding the store's write lock). The caller's cancellation still ends the call
        at once; a resubmission finds the order. The caller starts the order itself, with no
        await before it returns, so that a StreamMasterOrders reader follows the order before
        the dispatch announces it."""
        task = asyncio.ensure_future(store)
        self._carrying.add(task)
        task.add_done_callback(self._carrying.discard)
        try:
            replay = await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(functools.partial(_start_without_caller, start))
            raise
        return replay if replay is not None else start()

    def _spawn(self, coroutine: object) -> None:
        assert asyncio.iscoroutine(coroutine)
        task: asyncio.Task[None] = asyncio.create_task(coroutine)
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("master order execution failed", exc_info=task.exception())


def _start_without_caller(
    start: Callable[[], Submission], stored: asyncio.Task[Submission | None]
) -> None:
    """Starts an order whose submitter was cancelled while it was being stored."""
    if stored.cancelled():
        return
    if (error := stored.exception()) is not None:
        log.error("storing a submission whose caller had gone failed", exc_info=error)
    elif stored.result() is None:
        start()


def _stop(asked: Decimal | None, current: Decimal | None) -> Decimal | None:
    """A ModifyMasterOrder stop: None keeps the current one, 0 removes it."""
    if asked is None:
        return current
    return None if asked == 0 else asked


def _check_closable(opened: MasterOrder) -> None:
    if opened.spec.closes_master_order_id:
        raise FailedPrecondition(
            f"master order {opened.master_order_id} is itself a closing order",
            reason="NOT_AN_OPENING_ORDER",
        )
    if not opened.state.is_final:
        raise FailedPrecondition(
            f"master order {opened.master_order_id} is {opened.state.name}: its position can "
            "be closed or modified once it is final (cancel it first to stop it)",
            reason="MASTER_ORDER_NOT_FINAL",
        )


def _replay_close(
    existing: MasterOrder,
    master_order_id: str,
    fraction: Decimal | None,
    volume: Decimal | None,
) -> Submission:
    spec = existing.spec
    same = spec.closes_master_order_id == master_order_id and (
        spec.close_fraction == fraction
        if fraction is not None
        else spec.close_fraction is None and spec.volume == volume
    )
    return _replayed_if(same, existing)


def _shown(value: Fraction) -> Decimal:
    """A volume in master lots for display: exact when it can be, else to 8 decimals."""
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return exact.quantize(Decimal("1E-8")).normalize()


def _replay(existing: MasterOrder, spec: MasterOrderSpec) -> Submission:
    return _replayed_if(existing.spec == spec, existing)


def _replayed_if(same_payload: bool, existing: MasterOrder) -> Submission:
    """The original order for a resubmission of the same payload; ALREADY_EXISTS otherwise."""
    if not same_payload:
        spec = existing.spec
        raise AlreadyExists(
            f"client_order_id {spec.client_order_id!r} was used for master order "
            f"{existing.master_order_id} with a different payload; a new order needs a new "
            "client_order_id",
            reason="DUPLICATE_CLIENT_ORDER_ID",
        )
    return Submission(existing, replayed=True)


def _why_nothing(allocation: Allocation) -> str:
    reasons = sorted({r.name for line in allocation.lines for r in line.reasons})
    return ", ".join(reasons) if reasons else "the group has no members"


def _interned(interner: SpecInterner, spec: SymbolSpec | None) -> SymbolSpec | None:
    return None if spec is None else interner(spec)
