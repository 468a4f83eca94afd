"""Mirroring: each group's source account watched, and every change on it done on the group.

One task per group with a source looks at the source's positions and pending orders every
`look_interval_s` (through the Terminal protocol, so any backend can be a source), gives the
look to gateway/domain/source_book.py, and stores the signals with the source's new book in one
transaction. Then it acts on the stored WAITING signals in order, through the trading engine,
as a caller would: a master order, a close of each copy, a stops change, a cancel. Each master
order's client order id is made from the signal's id (and the caller is the group's source),
so acting twice (after a crash between the store and the act, or a retry) submits once.

A signal that acts on an order still executing (a close of a master order not yet final) waits
and is tried again at the next look; the signals after it wait too, so the group sees the
source's changes in the order the source made them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from gateway.domain.accounts import Account
from gateway.domain.closing import StillExecuting
from gateway.domain.copying import CopyReference
from gateway.domain.errors import DomainError, FailedPrecondition, Unavailable
from gateway.domain.group_source import GroupSource, SignalRecord, SignalState
from gateway.domain.ids import AccountId, GroupId, MasterOrderId
from gateway.domain.orders import MasterOrder, MasterOrderSpec, OrderType, TimeInForce
from gateway.domain.source_book import (
    SignalKind,
    SourceBook,
    SourceSignal,
    book_from_json,
    observe,
)
from gateway.engine.look_pacer import LookPacer
from gateway.engine.stops_modifier import REMOVE, StopsChange
from gateway.engine.terminal_registry import TerminalRegistry
from gateway.engine.trading_engine import TradingEngine
from gateway.store import Store
from gateway.terminals.protocol import TerminalError

log = logging.getLogger(__name__)

# Reasons a refusal lasts only a moment: the signal is tried again at the next look.
_PASSING = frozenset({"CLOSE_IN_PROGRESS", "MASTER_ORDER_NOT_FINAL", "STORE_UNAVAILABLE"})


def source_caller(group_id: GroupId) -> str:
    """Who submits a group's copies: the idempotency of its master orders is per caller."""
    return f"source:{group_id}"


def copy_client_order_id(event_id: str) -> str:
    return f"src:{event_id}"


def copied_signal(master: MasterOrder) -> tuple[GroupId, str] | None:
    """(group, signal id) of a master order made for a source's signal, else None: an
    opening copy's client order id is src:<signal id>, a close's src:<signal id>:<copy>."""
    caller = source_caller(master.spec.group_id)
    client_order_id = master.spec.client_order_id
    if master.submitted_by != caller or not client_order_id.startswith("src:"):
        return None
    event_id = client_order_id.removeprefix("src:")
    if master.spec.closes_master_order_id:
        event_id = event_id.rpartition(":")[0]
    return master.spec.group_id, event_id


@dataclass(frozen=True, slots=True)
class SourceWatchSettings:
    # How often a source is looked at: the bound on how late a change is copied, and on what
    # a position opened and closed between two looks can hide.
    look_interval_s: float = 0.5
    # How long one look (positions and pending orders) may take before it is given up.
    look_timeout_s: float = 5.0


class SignalListener(Protocol):
    def __call__(self, records: list[SignalRecord]) -> None: ...


class SourceWatchers:
    """The watching tasks of every group with a source, and the signal stream's listeners."""

    def __init__(
        self,
        *,
        store: Store,
        registry: TerminalRegistry,
        engine: TradingEngine,
        clock: Callable[[], datetime],
        settings: SourceWatchSettings = SourceWatchSettings(),
        owns: Callable[[GroupId], bool] = lambda group_id: True,
    ) -> None:
        self._store = store
        self._registry = registry
        self._engine = engine
        self._clock = clock
        self._settings = settings
        # Cluster mode: only the groups this node owns are watched here.
        self._owns = owns
        self._tasks: dict[GroupId, asyncio.Task[None]] = {}
        self._wake: dict[GroupId, asyncio.Event] = {}
        self._listeners: set[SignalListener] = set()
        self._stopping = False
        # Set by stop(): signal streams end (their callers resume after a restart).
        self._stopped = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> int:
        """Starts watching every stored source (of the groups this node owns); returns how
        many."""
        sources = await self._store.sources.group_sources()
        watched = [s.group_id for s in sources if self._owns(s.group_id)]
        for group_id in watched:
            self._watch(group_id)
        return len(watched)

    async def watch_groups(self, groups: Collection[GroupId]) -> None:
        """Cluster mode: groups this node has just taken are watched from now on (those with
        a source: a task finds none and ends)."""
        for group_id in groups:
            if not self._stopping and group_id not in self._tasks:
                self._watch(group_id)

    async def unwatch_groups(self, groups: Collection[GroupId]) -> None:
        """Cluster mode: groups this node lost are no longer watched here."""
        tasks = [self._tasks.pop(g) for g in groups if g in self._tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def wait_stopping(self) -> None:
        """Returns once stop() was called."""
        await self._stopped.wait()

    async def stop(self) -> None:
        self._stopping = True
        self._stopped.set()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def source_changed(self, group_id: GroupId) -> None:
        """A group's source was set, changed, paused, resumed or removed: its task reads it
        again now (and starts, if the group had none)."""
        if self._stopping or not self._owns(group_id):
            return
        if group_id in self._tasks and not self._tasks[group_id].done():
            self._wake[group_id].set()
        else:
            self._watch(group_id)

    # -- the signal stream ----------------------------------------------------------------------

    def listen(self, listener: SignalListener) -> Callable[[], None]:
        """Calls `listener` with each batch of signal records stored or settled from now on;
        returns what stops it."""
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)

    def _publish(self, records: list[SignalRecord]) -> None:
        if records:
            for listener in list(self._listeners):
                listener(records)

    # -- one group's watch ----------------------------------------------------------------------

    def _watch(self, group_id: GroupId) -> None:
        self._wake[group_id] = asyncio.Event()
        self._tasks[group_id] = asyncio.create_task(
            self._run(group_id), name=f"source-watch:{group_id}"
        )

    async def _run(self, group_id: GroupId) -> None:
        watch = _GroupWatch(self, group_id)
        wake = self._wake[group_id]
        # Read again only when it changed (source_changed wakes the task): a look that finds
        # nothing new then costs the terminal's two reads and no database read.
        source: GroupSource | None = None
        pacer = LookPacer()
        while True:
            try:
                if source is None:
                    source = await self._store.sources.get_group_source(group_id)
                    if source is None:
                        return
                if not source.paused:
                    await watch.look(source)
                    await watch.act(source)
            except asyncio.CancelledError:
                raise
            except (TerminalError, TimeoutError, Unavailable) as error:
                log.warning("source of group %s: %s; looking again shortly", group_id, error)
            except Exception:
                log.exception("source of group %s: the look failed; looking again", group_id)
            # Woken early when the source's terminal is told of a trade (an MT4 EA's push).
            terminal = None if source is None else self._registry.get(source.account_id)
            await pacer.wait(self._settings.look_interval_s, wake=wake, terminal=terminal)
            if wake.is_set():
                source = None
            wake.clear()


class _GroupWatch:
    """What one group's task keeps between looks: the source's book, read once."""

    def __init__(self, watchers: SourceWatchers, group_id: GroupId) -> None:
        self._w = watchers
        self._group_id = group_id
        self._book: SourceBook | None = None
        self._account: AccountId | None = None
        # Signals may be waiting: at start (a previous run's), after a look stored one, and
        # while one waits for an order still executing.
        self._may_wait = True

    async def look(self, source: GroupSource) -> None:
        w = self._w
        if self._book is None or self._account != source.account_id:
            self._book = book_from_json(await w._store.sources.source_book(self._group_id))
            self._account = source.account_id
        terminal = w._registry.get(source.account_id)
        if terminal is None:
            raise TerminalError(f"source account {source.account_id} has no terminal attached")
        async with asyncio.timeout(w._settings.look_timeout_s):
            positions = await terminal.positions()
            orders = await terminal.pending_orders()
        now = w._clock()
        book, signals = observe(
            self._book, positions, orders, now=now, max_signal_age=source.max_signal_age
        )
        if book == self._book:
            return
        records = await w._store.sources.record_source_look(
            self._group_id, source.account_id, book, signals, observed_at=now
        )
        self._book = book
        if any(r.state is SignalState.WAITING for r in records):
            self._may_wait = True
        w._publish(records)

    async def act(self, source: GroupSource) -> None:
        if not self._may_wait:
            return
        w = self._w
        waiting = await w._store.sources.waiting_signals(self._group_id)
        # Read when there is something to do: its symbol mappings name the symbols.
        account = await w._store.get_account(source.account_id) if waiting else None
        for record in waiting:
            try:
                master_ids, detail = await self._act_on(record.signal, account)
                state = SignalState.COPIED
            except (StillExecuting, Unavailable):
                return  # tried again at the next look, and the ones after it with it
            except FailedPrecondition as refused:
                if refused.reason in _PASSING:
                    return
                state, master_ids, detail = SignalState.FAILED, (), _refusal(refused)
            except DomainError as refused:
                state, master_ids, detail = SignalState.FAILED, (), _refusal(refused)
            settled = await w._store.sources.settle_signal(
                self._group_id,
                record.signal.event_id,
                state=state,
                detail=detail,
                master_order_ids=master_ids,
                at=w._clock(),
            )
            if settled is not None:
                w._publish([settled])
        self._may_wait = False

    async def _act_on(
        self, signal: SourceSignal, account: Account | None
    ) -> tuple[tuple[MasterOrderId, ...], str]:
        kind = signal.kind
        if kind in (
            SignalKind.POSITION_OPENED,
            SignalKind.POSITION_INCREASED,
            SignalKind.ORDER_PLACED,
        ):
            return await self._submit(signal, account)
        if kind in (SignalKind.POSITION_REDUCED, SignalKind.POSITION_CLOSED):
            return await self._close(signal)
        if kind is SignalKind.STOPS_CHANGED:
            return await self._modify(signal, price=None)
        if kind is SignalKind.ORDER_MODIFIED:
            return await self._modify(signal, price=signal.price)
        if kind is SignalKind.ORDER_REMOVED:
            return await self._cancel(signal)
        return (), ""

    async def _submit(
        self, signal: SourceSignal, account: Account | None
    ) -> tuple[tuple[MasterOrderId, ...], str]:
        # The source's broker may name the symbol its own way (its account's mappings).
        symbol = account.gateway_symbol(signal.symbol) if account is not None else signal.symbol
        pending = signal.kind is SignalKind.ORDER_PLACED
        spec = MasterOrderSpec(
            group_id=self._group_id,
            symbol=symbol,
            side=signal.side,
            order_type=signal.order_type if pending else OrderType.MARKET,
            volume=signal.volume,
            client_order_id=copy_client_order_id(signal.event_id),
            price=signal.price if pending else None,
            stop_limit_price=signal.stop_limit_price if pending else None,
            stop_loss=signal.stop_loss,
            take_profit=signal.take_profit,
            time_in_force=signal.time_in_force if pending else TimeInForce.GTC,
            expire_time=signal.expires_at if pending else None,
            comment=f"copy of {signal.event_id}",
        )
        submission = await self._w._engine.submit(
            spec,
            submitted_by=source_caller(self._group_id),
            reference=CopyReference(price=signal.price, signal_time=signal.source_time),
        )
        master = submission.master
        return (master.master_order_id,), f"master order {master.master_order_id}"

    async def _copies(self, signal: SourceSignal) -> list[MasterOrderId]:
        """The master orders of the copies a signal acts on (a copy that failed has none)."""
        found = []
        for copy in signal.copies:
            master = await self._w._store.find_by_client_order_id(
                source_caller(self._group_id), copy_client_order_id(copy)
            )
            if master is not None:
                found.append(master.master_order_id)
        return found

    async def _close(self, signal: SourceSignal) -> tuple[tuple[MasterOrderId, ...], str]:
        engine = self._w._engine
        assert signal.fraction is not None
        closing: list[MasterOrderId] = []
        notes: list[str] = []
        for index, master_id in enumerate(await self._copies(signal)):
            master, _ = await engine.get(master_id)
            if master.spec.order_type is not OrderType.MARKET and not master.state.is_final:
                # A pending copy: what has not triggered at the members is cancelled first.
                with contextlib.suppress(FailedPrecondition):
                    await engine.cancel(master_id)
            try:
                submission = await engine.close_position(
                    master_id,
                    client_order_id=f"{copy_client_order_id(signal.event_id)}:{index}",
                    fraction=signal.fraction,
                    submitted_by=source_caller(self._group_id),
                )
            except StillExecuting:
                raise
            except FailedPrecondition as refused:
                if refused.reason != "NOTHING_TO_CLOSE":
                    raise
                notes.append(f"{master_id}: nothing open")
                continue
            closing.append(submission.master.master_order_id)
            notes.append(f"{master_id} closed by {submission.master.master_order_id}")
        return tuple(closing), "; ".join(notes) or "no copy to close"

    async def _modify(
        self, signal: SourceSignal, *, price: Decimal | None
    ) -> tuple[tuple[MasterOrderId, ...], str]:
        change = StopsChange(
            stop_loss=signal.stop_loss if signal.stop_loss is not None else REMOVE,
            take_profit=signal.take_profit if signal.take_profit is not None else REMOVE,
        )
        modified = []
        for master_id in await self._copies(signal):
            master, _ = await self._w._engine.get(master_id)
            if master.state.is_final and price is not None:
                continue  # a pending copy that is done: nothing rests to move
            await self._w._engine.modify_stops(master_id, change, price=price)
            modified.append(master_id)
        return tuple(modified), f"modified {len(modified)} master order(s)"

    async def _cancel(self, signal: SourceSignal) -> tuple[tuple[MasterOrderId, ...], str]:
        cancelled = []
        for master_id in await self._copies(signal):
            try:
                await self._w._engine.cancel(master_id)
            except FailedPrecondition as refused:
                if refused.reason != "MASTER_ORDER_FINAL":
                    raise
                continue
            cancelled.append(master_id)
        return tuple(cancelled), f"cancelled {len(cancelled)} master order(s)"


def _refusal(error: DomainError) -> str:
    reason = getattr(error, "reason", "") or type(error).__name__
    return f"{reason}: {error}"


async def signal_stream(
    watchers: SourceWatchers,
    store: Store,
    group_id: GroupId | None,
    after_sequence: int,
    *,
    max_behind: int = 1_000,
    within_groups: frozenset[GroupId] | None = None,
    page_size: int = 1_000,
) -> AsyncGenerator[list[SignalRecord], None]:
    """Stored signals changed after `after_sequence` (of one group, of `within_groups`, or
    all), then one empty batch (the stored ones are all sent: live from here), then each one
    as it is stored or settled: a record comes again with its later state and sequence.
    Live records the catch-up read already are not sent twice (the listener starts before the
    store is read, so that nothing falls in between).
    A subscriber `max_behind` batches behind is ended (Unavailable, SUBSCRIBER_TOO_SLOW): it
    resumes from the last sequence it read and misses nothing."""
    queue: asyncio.Queue[list[SignalRecord]] = asyncio.Queue(max_behind)
    overflowed = False

    def wanted(record: SignalRecord) -> bool:
        if group_id is not None and record.group_id != group_id:
            return False
        return within_groups is None or record.group_id in within_groups

    def listener(records: list[SignalRecord]) -> None:
        nonlocal overflowed
        mine = [r for r in records if wanted(r)]
        if mine and not overflowed:
            try:
                queue.put_nowait(mine)
            except asyncio.QueueFull:
                overflowed = True

    stop = watchers.listen(listener)
    try:
        caught_up = after_sequence
        while True:
            stored = await store.sources.list_signals(
                group_id=group_id,
                after_sequence=caught_up,
                limit=page_size,
                within_groups=within_groups,
            )
            if stored:
                caught_up = stored[-1].sequence
                yield stored
            if len(stored) < page_size:
                break
        yield []
        while True:
            if overflowed and queue.empty():
                raise Unavailable(
                    "the signal stream fell too far behind; resume from the last sequence read",
                    reason="SUBSCRIBER_TOO_SLOW",
                )
            fresh = [r for r in await queue.get() if r.sequence > caught_up]
            if fresh:
                yield fresh
    finally:
        stop()
