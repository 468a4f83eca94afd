"""Group commit of execution outcomes: child state changes, fills and master order progress.

Dispatch tasks hand in outcomes; one writer task takes everything that is waiting, commits it
in one transaction, and only then publishes the fills (with their encoded messages, made once
in that commit) and order changes and wakes the tasks that wait on them.

Commit first, then believe it: what a batch changes in the in-memory progress of its master
orders (which other code reads: cancels, modifications, the watcher, streams) is worked out on
the side and applied only once the commit succeeded. A commit that fails for a passing fault
of the database is tried again, with backoff and jitter, for as long as it takes, keeping
every broker result of the batch; the store is marked unreachable meanwhile (submissions are
refused) and the dispatch tasks wait for their outcome to be stored before going on. A batch
that fails for any other reason is split until the outcome that cannot be stored is alone: that
one's waiter gets the error and its child stays as last stored (a restart finds its deals by
tag), and the rest is stored. A process that lost the database's writer lock stores nothing
more: every waiter gets WriterFenced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from opentelemetry.trace import SpanContext, Tracer

import gateway.observability.trace_context as traced
from gateway.domain.fills import Fill
from gateway.domain.ids import ChildOrderId, GroupId, MasterOrderId
from gateway.domain.orders import (
    ChildOrder,
    ChildOrderState,
    ExecutionStats,
    MasterOrder,
    MasterOrderState,
    final_master_state,
)
from gateway.domain.retry_policy import RetryPolicy
from gateway.engine.fill_bus import FillBus
from gateway.engine.metrics import NO_METRICS, GatewayMetrics
from gateway.engine.order_updates import OrderUpdateBus
from gateway.engine.store_health import StoreHealth
from gateway.store import Store
from gateway.store.cluster import GroupFenced
from gateway.store.faults import is_transient
from gateway.store.writer_lock import WriterFenced

log = logging.getLogger(__name__)

MAX_BATCH = 2_000
# Outcomes waiting to be stored at most: beyond it, dispatch tasks wait to hand theirs in.
MAX_WAITING = 100_000
# A store fault is waited out: from 50 ms between tries up to 2 s, for as long as it lasts.
STORE_RETRY = RetryPolicy(initial_interval_s=0.05, backoff_coefficient=2.0, maximum_interval_s=2.0)


@dataclass(slots=True)
class _Outcome:
    child: ChildOrder
    fill: Fill | None
    done: asyncio.Future[None]
    # The span it was recorded in (tracing on): its commit's span joins that trace.
    span: SpanContext | None = None


@dataclass(slots=True)
class MasterProgress:
    """The in-memory view of a master order while it executes."""

    master: MasterOrder
    children: dict[ChildOrderId, ChildOrder]
    fills: list[Fill] = field(default_factory=list)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    # Children not in a final state: kept as outcomes arrive, so a commit need not walk every
    # child of a 1,000-account order to learn whether it ended.
    open_children: int = 0
    # Cluster mode: the epoch of the group's lease this execution runs under; its outcomes
    # commit only while the lease is still at it (not after a takeover, even by this node).
    epoch: int | None = None


@dataclass(slots=True)
class _Staged:
    """What one batch changes in one master order's progress, applied once committed."""

    progress: MasterProgress
    # The master order as the changes were worked out from.
    base: MasterOrder
    children: dict[ChildOrderId, ChildOrder] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    open_children: int = 0
    master: MasterOrder | None = None
    finished: bool = False

    def take(self, child: ChildOrder) -> None:
        """A child's new state."""
        previous = self.children.get(child.child_order_id) or self.progress.children.get(
            child.child_order_id
        )
        self.children[child.child_order_id] = child
        self.open_children += (not child.state.is_final) - (
            previous is not None and not previous.state.is_final
        )

    def all_children(self) -> Iterator[ChildOrder]:
        """Every child as it stands with this batch's changes."""
        changed = self.children
        for child_order_id, child in self.progress.children.items():
            yield changed.get(child_order_id, child)

    def apply(self) -> None:
        progress = self.progress
        progress.children.update(self.children)
        progress.fills.extend(self.fills)
        progress.open_children = self.open_children
        if self.master is not None:
            current = progress.master
            if current is not self.base:
                # Changed while the batch was stored (a cancel, new prices): those changes are
                # the order's own columns, not the progress this batch stored, and are kept.
                self.master = replace(
                    self.master,
                    spec=current.spec,
                    cancel_requested_at=current.cancel_requested_at,
                )
            progress.master = self.master


class ExecutionRecorder:
    def __init__(
        self,
        store: Store,
        bus: FillBus,
        clock: Callable[[], datetime],
        updates: OrderUpdateBus | None = None,
        *,
        health: StoreHealth | None = None,
        retry: RetryPolicy = STORE_RETRY,
        on_fenced: Callable[[], None] | None = None,
        on_groups_lost: Callable[[frozenset[GroupId]], None] | None = None,
        publish_fills: bool = True,
        lease_epoch: Callable[[GroupId], int | None] | None = None,
        metrics: GatewayMetrics = NO_METRICS,
        tracer: Tracer = traced.NO_TRACER,
    ) -> None:
        """`tracer`: a span per commit of outcomes recorded in a span (NO_TRACER: none).
        `on_groups_lost`: cluster mode, a commit found this node no longer owns groups."""
        self._store = store
        self._bus = bus
        self._metrics = metrics
        self._tracer = tracer
        self._tracing = traced.is_tracing(tracer)
        self.updates = updates or OrderUpdateBus()
        self._clock = clock
        self._health = health if health is not None else StoreHealth(store.probe_write)
        self._retry = retry
        self._on_fenced = on_fenced
        self._on_groups_lost = on_groups_lost
        self._publish_fills = publish_fills
        # Cluster mode: the epoch this node holds each group's lease at now.
        self._lease_epoch = lease_epoch
        self._fenced: WriterFenced | None = None
        self._queue: asyncio.Queue[_Outcome] = asyncio.Queue(MAX_WAITING)
        self._progress: dict[MasterOrderId, MasterProgress] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def health(self) -> StoreHealth:
        return self._health

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="execution-recorder")

    async def stop(self, timeout_s: float | None = None) -> None:
        """Commits what is queued, then stops. With `timeout_s`, gives up waiting after it
        (a database that stays down): what is not stored then is found by tag at the restart."""
        if self._task is None:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self._queue.join()
        except TimeoutError:
            log.error(
                "stopping with %d execution outcomes not stored: the next start finds their "
                "deals by tag",
                self._queue.qsize(),
            )
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    def track(self, master: MasterOrder, children: list[ChildOrder]) -> MasterProgress:
        progress = MasterProgress(
            master,
            {c.child_order_id: c for c in children},
            open_children=sum(1 for c in children if not c.state.is_final),
            epoch=None if self._lease_epoch is None else self._lease_epoch(master.spec.group_id),
        )
        self._progress[master.master_order_id] = progress
        return progress

    def progress_of(self, master_order_id: MasterOrderId) -> MasterProgress | None:
        return self._progress.get(master_order_id)

    def forget_groups(self, groups: Collection[GroupId]) -> None:
        """Cluster mode: this node lost these groups: their orders' progress here is no
        longer the truth (their new owner's is), and is dropped."""
        for master_order_id, progress in list(self._progress.items()):
            if progress.master.spec.group_id in groups:
                del self._progress[master_order_id]

    def in_progress(self) -> list[MasterProgress]:
        """Every master order executing now (dispatching, or working at the brokers)."""
        return list(self._progress.values())

    async def record(self, child: ChildOrder, fill: Fill | None = None) -> None:
        """Returns once the outcome is committed (and its fill published); raises
        WriterFenced once this process may no longer write its database."""
        if self._fenced is not None:
            raise self._fenced
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        span = traced.current_span_context() if self._tracing else None
        await self._queue.put(_Outcome(child, fill, done, span))
        await done

    async def finish_if_complete(self, progress: MasterProgress) -> None:
        """Closes a master order whose children all ended (e.g. just before a crash)."""
        children = list(progress.children.values())
        if not all(c.state.is_final for c in children):
            return
        fills = await self._store.fills_of(progress.master.master_order_id)
        master = _completed(progress.master, children, fills, self._clock())
        await self._store.save_progress(masters=[master], epochs=_epochs([progress]))
        progress.master = master
        self._metrics.master_orders_ended([master])
        self.updates.publish([master], [])
        self._progress.pop(master.master_order_id, None)
        progress.finished.set()

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                if self._tracing:
                    await self._store_traced(batch)
                else:
                    await self._store_batch(batch)
            except Exception as error:  # a bug here: the waiting tasks get it, the writer goes on
                log.exception("commit of %d execution outcomes failed", len(batch))
                _fail(batch, error)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _store_traced(self, batch: list[_Outcome]) -> None:
        """_store_batch in a span: a child of the span the batch's first outcome was recorded
        in (its master order's dispatch), linked to the others' (other orders' dispatches).
        Outcomes recorded outside any span (the watcher's) get none."""
        parent, links = traced.parent_and_links(outcome.span for outcome in batch)
        if parent is None:
            await self._store_batch(batch)
            return
        attributes = {
            traced.OUTCOMES: len(batch),
            traced.FILLS: sum(1 for outcome in batch if outcome.fill is not None),
            traced.MASTER_ORDERS: len({outcome.child.master_order_id for outcome in batch}),
        }
        with self._tracer.start_as_current_span(
            traced.COMMIT_SPAN, context=parent, links=links, attributes=attributes
        ):
            await self._store_batch(batch)

    async def _store_batch(self, batch: list[_Outcome]) -> None:
        """Commits the batch, trying again through passing faults; splits it around an
        outcome that cannot be stored."""
        attempt = object()  # the same on every try: a try stored in doubt is not stored twice
        tries = 0
        while True:
            if self._fenced is not None:
                _fail(batch, self._fenced)
                return
            try:
                await self._commit(batch, attempt)
            except GroupFenced as error:
                # Cluster mode: this node lost these groups; their new owner finds each
                # child by its tag. The rest of the batch is this node's to store.
                self._metrics.store_error("group_commit", "fenced")
                fenced = [o for o in batch if self._group_of(o) in error.groups]
                _fail(fenced, error)
                if self._on_groups_lost is not None:
                    self._on_groups_lost(error.groups)
                batch = [o for o in batch if self._group_of(o) not in error.groups]
                if not batch:
                    return
                attempt = object()
                continue
            except WriterFenced as error:
                self._metrics.store_error("group_commit", "fenced")
                self._lost_writer(error)
                _fail(batch, error)
                return
            except Exception as error:
                if not is_transient(error):
                    self._metrics.store_error("group_commit", "permanent")
                    await self._split(batch, error)
                    return
                self._metrics.store_error("group_commit", "transient")
                self._metrics.store_retry("group_commit")
                tries += 1
                self._health.failed(error)
                delay = self._retry.delay_s(tries)
                if tries == 1 or tries % 20 == 0:
                    log.warning(
                        "commit of %d execution outcomes failed (try %d), trying again in "
                        "%.2f s: %s",
                        len(batch),
                        tries,
                        delay,
                        error,
                    )
                await asyncio.sleep(delay)
                continue
            if tries:
                log.warning("%d execution outcomes stored after %d failed tries", len(batch), tries)
            self._health.recovered()
            return

    async def _split(self, batch: list[_Outcome], error: Exception) -> None:
        if len(batch) == 1:
            outcome = batch[0]
            log.error(
                "child %s: its outcome (%s) cannot be stored; it stays as last stored and is "
                "found by its tag at the next start",
                outcome.child.child_order_id,
                outcome.child.state.name,
                exc_info=error,
            )
            _fail(batch, error)
            return
        half = len(batch) // 2
        await self._store_batch(batch[:half])
        await self._store_batch(batch[half:])

    def executing_in(self, group_id: GroupId) -> bool:
        """Whether a master order of the group executes here now."""
        return any(p.master.spec.group_id == group_id for p in self._progress.values())

    def _group_of(self, outcome: _Outcome) -> GroupId | None:
        progress = self._progress.get(outcome.child.master_order_id)
        return None if progress is None else progress.master.spec.group_id

    def _lost_writer(self, error: WriterFenced) -> None:
        if self._fenced is not None:
            return
        self._fenced = error
        log.critical("execution outcomes can no longer be stored: %s", error)
        if self._on_fenced is not None:
            self._on_fenced()

    async def _commit(self, batch: list[_Outcome], attempt: object) -> None:
        now = self._clock()
        staged: dict[str, _Staged] = {}
        if self._lease_epoch is not None:
            # Cluster mode: an outcome of an execution this node dropped (it lost the group)
            # is not this node's to store.
            orphans = [o for o in batch if o.child.master_order_id not in self._progress]
            if orphans:
                _fail(orphans, GroupFenced(()))
                batch[:] = [o for o in batch if o.child.master_order_id in self._progress]
                if not batch:
                    return
        for outcome in batch:
            master_order_id = outcome.child.master_order_id
            change = staged.get(master_order_id)
            if change is None:
                progress = self._progress.get(master_order_id)
                if progress is None:
                    continue
                change = staged[master_order_id] = _Staged(
                    progress, progress.master, open_children=progress.open_children
                )
            change.take(outcome.child)
            if outcome.fill is not None:
                change.fills.append(outcome.fill)
        masters: list[MasterOrder] = []
        for change in staged.values():
            base = change.base
            if change.open_children == 0:
                fills = [*change.progress.fills, *change.fills]
                change.master = _completed(base, list(change.all_children()), fills, now)
                change.finished = True
                masters.append(change.master)
            elif base.state is MasterOrderState.DISPATCHING and _resting(change.all_children()):
                # A pending order: sent everywhere, now waiting for its price at the brokers.
                change.master = base.moved_to(MasterOrderState.WORKING, now)
                masters.append(change.master)
        children = [o.child for o in batch]
        started = time.perf_counter()
        committed = await self._store.save_progress(
            masters=masters,
            children=children,
            fills=[o.fill for o in batch if o.fill is not None],
            attempt=attempt,
            epochs=_epochs(change.progress for change in staged.values()),
        )
        # Counted before anything is published: who sees a fill finds it counted.
        metrics = self._metrics
        if metrics.enabled:
            metrics.committed(children, len(committed), time.perf_counter() - started, len(batch))
            metrics.master_orders_ended(
                c.master for c in staged.values() if c.finished and c.master
            )
        # Stored: now the progress, the streams and the waiting tasks may know.
        for change in staged.values():
            change.apply()
        # With the messages they were stored with: subscribers send those bytes. (A cluster
        # node's feed publishes every node's, in the global order: not here.)
        if self._publish_fills:
            self._bus.publish(committed)
        self.updates.publish([c.master for c in staged.values() if c.master is not None], children)
        for change in staged.values():
            if change.finished:
                del self._progress[change.progress.master.master_order_id]
                change.progress.finished.set()
        for outcome in batch:
            if not outcome.done.done():
                outcome.done.set_result(None)


def _fail(batch: list[_Outcome], error: BaseException) -> None:
    for outcome in batch:
        if not outcome.done.done():
            outcome.done.set_exception(error)


def _resting(children: Iterable[ChildOrder]) -> bool:
    """Every child is placed at its broker or ended, and at least one is placed."""
    placed = False
    for child in children:
        if child.state is ChildOrderState.PLACED:
            placed = True
        elif not child.state.is_final:
            return False
    return placed


def _completed(
    master: MasterOrder, children: list[ChildOrder], fills: list[Fill], now: datetime
) -> MasterOrder:
    filled_volume = sum((c.filled_volume for c in children), Decimal(0))
    notional = sum((c.filled_volume * (c.fill_price or 0) for c in children), Decimal(0))
    average = (notional / filled_volume) if filled_volume else None
    times = sorted(f.executed_at for f in fills)
    slippages = [c.slippage_points for c in children if c.slippage_points is not None]
    stats = ExecutionStats(
        dispatch_skew_us=_micros(times[-1] - times[0]) if times else None,
        submit_to_last_fill_us=_micros(times[-1] - master.created_at) if times else None,
        average_slippage_points=(
            (sum(slippages, Decimal(0)) / len(slippages)).quantize(Decimal("0.01"))
            if slippages
            else None
        ),
        max_slippage_points=max(slippages) if slippages else None,
    )
    cancelled = sum(1 for c in children if c.state is ChildOrderState.CANCELLED)
    reason = (
        f"cancelled on request: {cancelled} of {len(children)} child orders not sent"
        if cancelled
        else master.state_reason
    )
    return master.moved_to(
        final_master_state(children),
        now,
        state_reason=reason,
        filled_child_count=sum(1 for c in children if c.state is ChildOrderState.FILLED),
        rejected_child_count=sum(1 for c in children if c.state is ChildOrderState.REJECTED),
        filled_volume=filled_volume,
        average_fill_price=average.quantize(Decimal("1E-8")) if average is not None else None,
        execution=stats,
    )


def _micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _epochs(progresses: Iterable[MasterProgress]) -> dict[GroupId, int] | None:
    """Cluster mode: the lease epoch each group's progress must still be committed under."""
    epochs = {p.master.spec.group_id: p.epoch for p in progresses if p.epoch is not None}
    return epochs or None
