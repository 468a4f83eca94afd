"""The walk of a master order: snapshot -> allocation -> stored children -> dispatch -> fills.

The caller is answered once the master order, its allocation and its children are committed;
execution goes on in the background. At start, unfinished master orders resume from the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

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
from gateway.domain.symbols import SymbolSpec
from gateway.engine.dispatcher import Dispatcher
from gateway.engine.execution_recorder import ExecutionRecorder
from gateway.engine.stops_modifier import StopsChange, StopsModifier, StopsOutcome
from gateway.engine.terminal_registry import TerminalRegistry
from gateway.store import DuplicateClientOrderId, Store
from gateway.terminals.protocol import SymbolNotFound, TerminalError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TradingLimits:
    # Larger master orders are refused as input errors, whatever the group can take.
    max_master_volume: Decimal = Decimal(10_000)
    # How long reading one terminal's account values may take before it is left out.
    snapshot_timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class Submission:
    """A submission's answer: the stored master order, and whether it was stored before."""

    master: MasterOrder
    # True when the caller had already submitted this client_order_id with the same payload:
    # the original order is returned as it stands now, and nothing new is traded.
    replayed: bool = False


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

    async def submit(self, spec: MasterOrderSpec, *, submitted_by: str = "") -> Submission:
        """Stores and starts a master order, once per (submitted_by, client_order_id).

        A resubmission with the same payload gets the original order back (in flight or
        finished); the same id with a different payload is ALREADY_EXISTS. The store's unique
        index settles races between concurrent resubmissions.
        """
        existing = await self._store.find_by_client_order_id(submitted_by, spec.client_order_id)
        if existing is not None:
            return _replay(existing, spec)
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
            submitted_by=submitted_by,
        ).moved_to(MasterOrderState.ALLOCATED, now)
        await self._store.save_snapshots(planned.snapshots)
        try:
            await self._store.insert_master_order(master, children)
        except DuplicateClientOrderId as duplicate:
            return _replay(duplicate.existing, spec)
        self._spawn(self._execute(master, children))
        return Submission(master)

    async def close(
        self,
        master_order_id: str,
        *,
        client_order_id: str,
        fraction: Decimal | None = None,
        volume: Decimal | None = None,
        submitted_by: str = "",
    ) -> Submission:
        """Closes `fraction` of what is still open of a master order's position, or `volume`
        lots of it (in lots of the master symbol): a closing master order whose children each
        close their account's share (gateway/domain/closing.py), dispatched like any order.

        Idempotent per (submitted_by, client_order_id) like a submission.
        """
        assert (fraction is None) != (volume is None)
        existing = await self._store.find_by_client_order_id(submitted_by, client_order_id)
        if existing is not None:
            return _replay_close(existing, master_order_id, fraction, volume)
        opened, still_open = await self._open_parts(master_order_id)
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
        accounts = await self._store.get_accounts({c.account_id for c, _ in still_open})
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
                state=ChildOrderState.PENDING,
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
        master = MasterOrder(
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
        try:
            await self._store.insert_master_order(master, closing_children)
        except DuplicateClientOrderId as duplicate:
            return _replay_close(duplicate.existing, master_order_id, fraction, volume)
        self._spawn(self._execute(master, closing_children))
        return Submission(master)

    async def modify_stops(
        self, master_order_id: str, change: StopsChange
    ) -> tuple[MasterOrder, list[StopsOutcome]]:
        """Sets the stop loss and take profit of every open position of the order."""
        opened, still_open = await self._open_parts(master_order_id)
        accounts = await self._store.get_accounts({c.account_id for c, _ in still_open})
        outcomes = await self._stops.modify(
            [c for c, _ in still_open],
            {a.account_id: a.margin_mode for a in accounts.values()},
            change,
        )
        return opened, outcomes

    async def _open_parts(
        self, master_order_id: str
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
                async with asyncio.timeout(self._limits.snapshot_timeout_s):
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
        if self._recorder.progress_of(master_order_id) is not None:
            self._dispatcher.stop_sending(master_order_id)
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
        self._recorder.updates.publish([master], sent)
        by_id = {c.child_order_id: c for c in children}
        by_id.update({c.child_order_id: c for c in sent})
        current = list(by_id.values())
        progress = self._recorder.track(master, current)
        open_children = [c for c in current if not c.state.is_final]
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
            await self._dispatcher.dispatch(
                master, open_children, reconcile_first=maybe_sent, known_deals=known_deals
            )
        finally:
            self._dispatcher.forget(master.master_order_id)

    def _spawn(self, coroutine: object) -> None:
        assert asyncio.iscoroutine(coroutine)
        task: asyncio.Task[None] = asyncio.create_task(coroutine)
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("master order execution failed", exc_info=task.exception())


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
