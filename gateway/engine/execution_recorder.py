"""Group commit of execution outcomes: child state changes, fills and master order progress.

Dispatch tasks hand in outcomes; one writer task takes everything that is waiting, commits it
in one transaction, and only then publishes the fills (with their encoded messages, made once
in that commit) and order changes and wakes the tasks that wait on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from gateway.domain.fills import Fill
from gateway.domain.orders import (
    ChildOrder,
    ChildOrderState,
    ExecutionStats,
    MasterOrder,
    MasterOrderState,
    final_master_state,
)
from gateway.engine.fill_bus import FillBus
from gateway.engine.order_updates import OrderUpdateBus
from gateway.store import Store

log = logging.getLogger(__name__)

MAX_BATCH = 2_000


@dataclass(slots=True)
class _Outcome:
    child: ChildOrder
    fill: Fill | None
    done: asyncio.Future[None]


@dataclass(slots=True)
class MasterProgress:
    """The in-memory view of a master order while it executes."""

    master: MasterOrder
    children: dict[str, ChildOrder]
    fills: list[Fill] = field(default_factory=list)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    # Children not in a final state: kept as outcomes arrive, so a commit need not walk every
    # child of a 1,000-account order to learn whether it ended.
    open_children: int = 0

    def take(self, child: ChildOrder) -> None:
        """A child's new state."""
        previous = self.children.get(child.child_order_id)
        self.children[child.child_order_id] = child
        self.open_children += (not child.state.is_final) - (
            previous is not None and not previous.state.is_final
        )


class ExecutionRecorder:
    def __init__(
        self,
        store: Store,
        bus: FillBus,
        clock: Callable[[], datetime],
        updates: OrderUpdateBus | None = None,
    ) -> None:
        self._store = store
        self._bus = bus
        self.updates = updates or OrderUpdateBus()
        self._clock = clock
        self._queue: asyncio.Queue[_Outcome] = asyncio.Queue()
        self._progress: dict[str, MasterProgress] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="execution-recorder")

    async def stop(self) -> None:
        """Commits what is queued, then stops."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    def track(self, master: MasterOrder, children: list[ChildOrder]) -> MasterProgress:
        progress = MasterProgress(
            master,
            {c.child_order_id: c for c in children},
            open_children=sum(1 for c in children if not c.state.is_final),
        )
        self._progress[master.master_order_id] = progress
        return progress

    def progress_of(self, master_order_id: str) -> MasterProgress | None:
        return self._progress.get(master_order_id)

    def in_progress(self) -> list[MasterProgress]:
        """Every master order executing now (dispatching, or working at the brokers)."""
        return list(self._progress.values())

    async def record(self, child: ChildOrder, fill: Fill | None = None) -> None:
        """Returns once the outcome is committed (and its fill published)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Outcome(child, fill, done))
        await done

    async def finish_if_complete(self, progress: MasterProgress) -> None:
        """Closes a master order whose children all ended (e.g. just before a crash)."""
        children = list(progress.children.values())
        if not all(c.state.is_final for c in children):
            return
        fills = await self._store.fills_of(progress.master.master_order_id)
        progress.master = _completed(progress.master, children, fills, self._clock())
        await self._store.save_progress(masters=[progress.master])
        self.updates.publish([progress.master], [])
        self._progress.pop(progress.master.master_order_id, None)
        progress.finished.set()

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            except Exception as error:  # the waiting tasks get the error; the writer goes on
                log.exception("commit of %d execution outcomes failed", len(batch))
                for outcome in batch:
                    if not outcome.done.done():
                        outcome.done.set_exception(error)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[_Outcome]) -> None:
        now = self._clock()
        touched: dict[str, MasterProgress] = {}
        for outcome in batch:
            progress = self._progress.get(outcome.child.master_order_id)
            if progress is not None:
                progress.take(outcome.child)
                if outcome.fill is not None:
                    progress.fills.append(outcome.fill)
                touched[progress.master.master_order_id] = progress
        finished: list[MasterProgress] = []
        masters: list[MasterOrder] = []
        for progress in touched.values():
            if progress.open_children == 0:
                children = list(progress.children.values())
                progress.master = _completed(progress.master, children, progress.fills, now)
                masters.append(progress.master)
                finished.append(progress)
            elif progress.master.state is MasterOrderState.DISPATCHING and _resting(
                progress.children.values()
            ):
                # A pending order: sent everywhere, now waiting for its price at the brokers.
                progress.master = progress.master.moved_to(MasterOrderState.WORKING, now)
                masters.append(progress.master)
        committed = await self._store.save_progress(
            masters=masters,
            children=[o.child for o in batch],
            fills=[o.fill for o in batch if o.fill is not None],
        )
        # With the messages they were stored with: subscribers send those bytes.
        self._bus.publish(committed)
        self.updates.publish(masters, [o.child for o in batch])
        for progress in finished:
            del self._progress[progress.master.master_order_id]
            progress.finished.set()
        for outcome in batch:
            if not outcome.done.done():
                outcome.done.set_result(None)


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
