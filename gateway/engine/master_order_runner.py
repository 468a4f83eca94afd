"""Running master orders: a new one stored with its children and started, an unfinished one
resumed after a restart, each dispatched until its children end.

A submission and a close hand their new order in (store_then_start); the caller is answered
once it is committed, and execution goes on in the background. Pending orders resting at the
brokers are followed by the pending-order watcher, started with resume_unfinished.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from opentelemetry import trace
from opentelemetry.trace import Tracer

import gateway.observability.trace_context as traced
from gateway.domain.accounts import AccountSnapshot
from gateway.domain.audit import AuditRecord
from gateway.domain.ids import AccountId, GroupId, MasterOrderId
from gateway.domain.new_orders import NewMasterOrder
from gateway.domain.orders import ChildOrder, ChildOrderState, MasterOrder, MasterOrderState
from gateway.domain.retry_policy import RetryPolicy
from gateway.engine.dispatcher import Dispatcher
from gateway.engine.execution_recorder import ExecutionRecorder, MasterProgress
from gateway.engine.metrics import NO_METRICS, GatewayMetrics
from gateway.engine.pending_order_watcher import PendingOrderWatcher
from gateway.engine.submission import Submission
from gateway.engine.terminal_registry import TerminalRegistry
from gateway.observability.log_context import forget, log_about
from gateway.store import DuplicateClientOrderId, Store
from gateway.store.faults import is_transient
from gateway.store.writer_lock import WriterFenced

log = logging.getLogger(__name__)

# Storing a new master order through a passing store fault: a few quick tries within the
# caller's patience (about 0.35 s), then UNAVAILABLE.
INSERT_RETRY = RetryPolicy(initial_interval_s=0.05, maximum_interval_s=0.2, maximum_attempts=4)
# How often an order whose storing was in doubt is looked for while the store is down.
_IN_DOUBT_POLL_S = 0.5


class MasterOrderRunner:
    def __init__(
        self,
        *,
        store: Store,
        registry: TerminalRegistry,
        dispatcher: Dispatcher,
        recorder: ExecutionRecorder,
        clock: Callable[[], datetime],
        pending_check_interval_s: float,
        unknown_retry_s: float,
        metrics: GatewayMetrics = NO_METRICS,
        tracer: Tracer = traced.NO_TRACER,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._tracer = tracer
        self._dispatcher = dispatcher
        self._recorder = recorder
        self._health = recorder.health
        self._clock = clock
        self._running: set[asyncio.Task[None]] = set()
        # The group of each running execution (cluster mode: those of a lost group end).
        self._group_of_task: dict[asyncio.Task[None], GroupId] = {}
        # Submissions storing and starting their order, whether or not their caller waits.
        self._storing: set[asyncio.Task[Submission | None]] = set()
        # Callers waiting for an order not started yet to start (until_final), by its id.
        self._awaiting_start: dict[MasterOrderId, list[asyncio.Future[None]]] = {}
        # Pending master orders at work at the brokers (started with resume_unfinished).
        self._watcher = PendingOrderWatcher(
            store,
            registry,
            recorder,
            dispatcher,
            interval_s=pending_check_interval_s,
            unknown_retry_s=unknown_retry_s,
        )
        self._watcher_task_started = False

    async def store_then_start(
        self,
        new: NewMasterOrder,
        *,
        points: Mapping[AccountId, Decimal],
        replay: Callable[[MasterOrder], Submission],
        audit: AuditRecord | None = None,
        snapshots: dict[AccountId, AccountSnapshot] | None = None,
    ) -> Submission:
        """Stores a new master order with its children and starts it; `replay` answers for
        the order its caller stored before under the same client_order_id (or refuses).
        `points`: each account's point on its symbol, as read for the order; `audit`: the
        call's audit record and `snapshots` the accounts' money read, stored with the order.

        The order is started even when the caller is cancelled meanwhile (a client's deadline
        or disconnect): it is then either stored and dispatched or not stored, never stored and
        left unstarted until a restart; and the store's statements are never cancelled mid-way
        (asyncpg, cancelled while it sends a large executemany, can wait for good, holding the
        store's write lock). The caller's cancellation still ends the call at once; a
        resubmission finds the order. The caller starts the order itself, with no await before
        it returns, so that a StreamMasterOrders reader follows the order before the dispatch
        announces it."""
        master, children = new.master, new.children
        # The call's span names the order it stored (a StreamMasterOrders call's, its last).
        trace.get_current_span().set_attribute(traced.MASTER_ORDER_ID, master.master_order_id)

        async def store() -> Submission | None:
            log_about(master_order_id=master.master_order_id)  # this task's own context
            with self._tracer.start_as_current_span(
                traced.INSERT_SPAN,
                attributes={
                    traced.MASTER_ORDER_ID: master.master_order_id,
                    traced.CHILDREN: len(children),
                },
            ):
                existing = await self._insert(
                    master, children, audit=audit, snapshots=snapshots, earlier=[new.allocated]
                )
            return None if existing is None else replay(existing)

        def start() -> Submission:
            self._start(master, children, points)
            return Submission(master, audited=audit is not None)

        task = asyncio.ensure_future(store())
        self._storing.add(task)
        task.add_done_callback(self._storing.discard)
        try:
            replayed = await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(functools.partial(_start_without_caller, start))
            raise
        return replayed if replayed is not None else start()

    def stop_sending(self, master_order_id: MasterOrderId) -> None:
        """A cancellation just stored, applied to the order if it executes here: no child is
        sent after it, and the watcher removes its resting pending children."""
        progress = self._recorder.progress_of(master_order_id)
        if progress is not None:
            self._dispatcher.stop_sending(master_order_id)
            # Resting pending children are removed by the watcher, which must see the request.
            progress.master = replace(progress.master, cancel_requested_at=self._clock())
            self._watcher.wake()

    async def until_final(self, master_order_id: MasterOrderId) -> None:
        """Returns once the master order is final (or does not exist). An order executing
        here is waited for through its progress's `finished` event, set once its final state
        is committed; one not started yet (stored, to be resumed or started) first through
        its start. Bound it with a timeout: an order no one starts is waited for forever."""
        while True:
            progress = self._recorder.progress_of(master_order_id)
            if progress is not None:
                await progress.finished.wait()
                return
            # Registered before the store is read: a start meanwhile is not missed.
            started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiters = self._awaiting_start.setdefault(master_order_id, [])
            waiters.append(started)
            try:
                master = await self._store.get_master_order(master_order_id)
                if master is None or master.state.is_final:
                    return
                await started
            finally:
                # Unless its start took the waiters already.
                if self._awaiting_start.get(master_order_id) is waiters:
                    waiters.remove(started)
                    if not waiters:
                        del self._awaiting_start[master_order_id]

    async def resume_unfinished(self, groups: Collection[GroupId] | None = None) -> int:
        """Picks up every master order a previous run left unfinished (of `groups` only: a
        cluster node's, those it owns; one already running here is left to run)."""
        resumed = 0
        for master in await self._store.unfinished_master_orders():
            if groups is not None and master.spec.group_id not in groups:
                continue
            if self._recorder.progress_of(master.master_order_id) is not None:
                continue
            children = await self._store.children_of(master.master_order_id)
            self._spawn(self._resume(master, children), master.spec.group_id)
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
        await asyncio.gather(*list(self._storing), return_exceptions=True)
        await asyncio.sleep(0)  # their callbacks start what their gone callers left stored
        await self._watcher.stop()
        if self._running:
            _, pending = await asyncio.wait(list(self._running), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # -- starting and resuming --------------------------------------------------------------

    def _start(
        self, master: MasterOrder, children: list[ChildOrder], points: Mapping[AccountId, Decimal]
    ) -> None:
        """Dispatches a master order just stored by this process (DISPATCHING, its children
        SENT and none sent yet). Tracked before this returns, so a cancellation arriving
        right after the acknowledgement finds it; announced from the task, once the caller
        has followed the order (a StreamMasterOrders reader follows it on the return).
        `points`: each account's point on its symbol, as read for the order."""
        progress = self._track(master, children)
        self._spawn(
            self._traced_dispatch(progress, children, frozenset(), announce=True, points=points),
            master.spec.group_id,
        )

    async def _resume(self, master: MasterOrder, children: list[ChildOrder]) -> None:
        """Resumes a master order an earlier run left unfinished."""
        master, current, maybe_sent = await self._ready_to_dispatch(master, children)
        await self._traced_dispatch(self._track(master, current), current, maybe_sent)

    async def _traced_dispatch(
        self,
        progress: MasterProgress,
        current: list[ChildOrder],
        maybe_sent: frozenset[str],
        *,
        announce: bool = False,
        points: Mapping[AccountId, Decimal] | None = None,
    ) -> None:
        """_dispatch in a span of its own (a child of the submission's call; a resumed order's
        starts a trace), logging about the order."""
        master_order_id = progress.master.master_order_id
        logged = log_about(master_order_id=master_order_id)
        try:
            log.info(
                "master order %s: %s %d children",
                master_order_id,
                "dispatching" if announce else "resuming",
                len(current),
            )
            with self._tracer.start_as_current_span(
                traced.DISPATCH_SPAN,
                attributes={
                    traced.MASTER_ORDER_ID: master_order_id,
                    traced.CHILDREN: len(current),
                    traced.RESUMED: not announce,
                },
            ):
                await self._dispatch(
                    progress, current, maybe_sent, announce=announce, points=points
                )
        finally:
            forget(logged)

    def _track(self, master: MasterOrder, children: list[ChildOrder]) -> MasterProgress:
        """The order's progress, from now on the recorder's; wakes those awaiting its start."""
        progress = self._recorder.track(master, children)
        if self._awaiting_start:
            for started in self._awaiting_start.pop(master.master_order_id, ()):
                if not started.done():
                    started.set_result(None)
        return progress

    async def _dispatch(
        self,
        progress: MasterProgress,
        current: list[ChildOrder],
        maybe_sent: frozenset[str],
        *,
        announce: bool = False,
        points: Mapping[AccountId, Decimal] | None = None,
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

    async def _ready_to_dispatch(
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

    # -- storing ----------------------------------------------------------------------------

    async def _insert(
        self,
        master: MasterOrder,
        children: list[ChildOrder],
        *,
        audit: AuditRecord | None = None,
        snapshots: dict[AccountId, AccountSnapshot] | None = None,
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
                    kind = "fenced" if isinstance(error, WriterFenced) else "permanent"
                    self._metrics.store_error("insert_master_order", kind)
                    raise
                self._metrics.store_error("insert_master_order", "transient")
                tries += 1
                if not INSERT_RETRY.allows(tries):
                    self._spawn(self._start_if_stored(master.master_order_id), master.spec.group_id)
                    raise self._health.unavailable(error) from error
                self._metrics.store_retry("insert_master_order")
                await asyncio.sleep(INSERT_RETRY.delay_s(tries))

    async def _start_if_stored(self, master_order_id: MasterOrderId) -> None:
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
        await self._resume(master, children)

    def _spawn(self, coroutine: object, group_id: GroupId) -> None:
        assert asyncio.iscoroutine(coroutine)
        task: asyncio.Task[None] = asyncio.create_task(coroutine)
        self._running.add(task)
        self._group_of_task[task] = group_id
        task.add_done_callback(self._task_ended)

    async def drop_groups(self, groups: Collection[GroupId]) -> None:
        """Cluster mode: this node lost these groups. Their executions here end now (what
        they would store is fenced anyway) and their progress is forgotten, so that the
        groups' orders are resumed from the store if this node takes them again."""
        tasks = [t for t, g in self._group_of_task.items() if g in groups]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._recorder.forget_groups(groups)

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._group_of_task.pop(task, None)
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
