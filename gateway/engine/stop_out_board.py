"""Loss limits watched at every account history round, and the stop-outs they trigger.

Each round (AccountMonitor.run_once) hands its snapshots here: every account with loss limits
is observed on its own snapshot, every group with loss limits on the sum of its members'
(gateway/domain/drawdown_monitor.py). The new states and the stop-outs that began or ended are
stored in one transaction; only then does a stop-out take effect: it goes on the trading gate
(no child of an opening master order reaches a stopped-out account, or any account for a
stopped-out group's orders), is logged, and a FLATTEN closes what the gateway's orders opened
there, by closing master orders labelled with the stop-out's id (so that a restart in the middle
finishes it without closing anything twice). A stop-out ends only by ResetStopOut, or, for a
daily loss, at the next trading day if its limits say so. At start the stored states and active
stop-outs are loaded back (`resume`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

from gateway.domain.accounts import AccountSnapshot
from gateway.domain.balance_operations import net_flow
from gateway.domain.drawdown_monitor import (
    DrawdownState,
    LossLimits,
    LossRule,
    StopOutAction,
    group_snapshot,
    observe_equity,
    record_transfer,
    reset_breaches,
    start_watch,
)
from gateway.domain.errors import NotFound
from gateway.domain.ids import AccountId, GroupId, new_id
from gateway.domain.stop_outs import LossWatchState, RecordedStopOut, WatchKind
from gateway.engine.risk_book import RiskBook
from gateway.engine.stop_out_feed import StopOutFeed
from gateway.engine.trading_engine import TradingEngine
from gateway.engine.trading_gate import TradingGate
from gateway.store import Store

log = logging.getLogger(__name__)

Subject = tuple[WatchKind, str]


class StopOutBoard:
    def __init__(
        self,
        store: Store,
        engine: TradingEngine,
        gate: TradingGate,
        book: RiskBook,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._engine = engine
        self._gate = gate
        self._book = book
        # Followers of stop-outs as they begin and end (WatchStopOuts).
        self.feed = StopOutFeed()
        self._clock = clock
        self._watches: dict[Subject, LossWatchState] = {}
        self._active: dict[str, RecordedStopOut] = {}
        # A round and a reset never interleave: both read and replace the same states.
        self._lock = asyncio.Lock()
        self._flattening: dict[str, asyncio.Task[None]] = {}

    async def resume(self) -> int:
        """Loads the stored states and puts the active stop-outs back on the gate; finishes the
        flattens they started. Returns how many stop-outs are active."""
        risk = self._store.risk
        self._watches = {(w.kind, w.subject_id): w for w in await risk.watches()}
        now = self._clock()
        for stop_out in await risk.active_stop_outs():
            self._active[stop_out.stop_out_id] = stop_out
            self._gate.stop_out(stop_out, known_at=now)
            if stop_out.action is StopOutAction.FLATTEN:
                self._start_flatten(stop_out)
        return len(self._active)

    async def refresh(self) -> None:
        """Cluster mode: the stop-outs other nodes put on or reset since, put on this node's
        gate (flattened, for this node's groups) or taken off; the watches as stored."""
        async with self._lock:
            risk = self._store.risk
            self._watches = {(w.kind, w.subject_id): w for w in await risk.watches()}
            stored = {s.stop_out_id: s for s in await risk.active_stop_outs()}
            for stop_out in list(self._active.values()):
                if stop_out.stop_out_id not in stored:
                    self._end(stop_out)
            now = self._clock()
            for stop_out_id, stop_out in stored.items():
                if stop_out_id in self._active:
                    continue
                self._active[stop_out_id] = stop_out
                self._gate.stop_out(stop_out, known_at=now)
                if stop_out.action is StopOutAction.FLATTEN:
                    self._start_flatten(stop_out)

    # -- reads ------------------------------------------------------------------------------

    @property
    def active(self) -> list[RecordedStopOut]:
        """Every stop-out in force now."""
        return list(self._active.values())

    def active_of(self, kind: WatchKind, subject_id: str) -> list[RecordedStopOut]:
        return [s for s in self._active.values() if s.kind is kind and s.subject_id == subject_id]

    def watch_of(self, kind: WatchKind, subject_id: str) -> DrawdownState | None:
        watch = self._watches.get((kind, subject_id))
        return watch.state if watch is not None else None

    async def history(
        self,
        *,
        before: str,
        limit: int,
        kind: WatchKind | None = None,
        subject_id: str = "",
        active_only: bool = False,
    ) -> list[RecordedStopOut]:
        found = await self._store.risk.list_stop_outs(
            before=before, limit=limit, kind=kind, subject_id=subject_id, active_only=active_only
        )
        # Closing orders a flatten is submitting now may be newer than the stored row.
        return [self._active.get(s.stop_out_id, s) for s in found]

    # -- a round ----------------------------------------------------------------------------

    async def observe(self, snapshots: Mapping[str, AccountSnapshot]) -> list[RecordedStopOut]:
        """One round's snapshots (account id -> snapshot) against every loss limit; returns
        the stop-outs it triggered."""
        accounts = self._book.watched_accounts
        groups = self._book.watched_groups
        if not accounts and not groups:
            return []
        async with self._lock:
            subjects: list[tuple[Subject, AccountSnapshot, LossLimits, tuple[str, ...]]] = []
            for account_id, limits in accounts.items():
                snapshot = snapshots.get(account_id)
                if snapshot is not None:
                    subjects.append(((WatchKind.ACCOUNT, account_id), snapshot, limits, ()))
            for group_id, limits in groups.items():
                group = await self._store.get_group(GroupId(group_id))
                if group is None:
                    continue
                members = group.account_ids
                summed = group_snapshot({m: snapshots.get(m) for m in members})
                if summed is not None:
                    subjects.append(((WatchKind.GROUP, group_id), summed, limits, members))
            return await self._observe(subjects)

    async def _observe(
        self, subjects: list[tuple[Subject, AccountSnapshot, LossLimits, tuple[str, ...]]]
    ) -> list[RecordedStopOut]:
        now = self._clock()
        watches: list[LossWatchState] = []
        triggered: list[RecordedStopOut] = []
        ended: list[RecordedStopOut] = []
        for (kind, subject_id), snapshot, limits, members in subjects:
            previous = self._watches.get((kind, subject_id))
            state = previous.state if previous is not None else None
            if state is not None and previous is not None and previous.members != members:
                # Another membership: the old sums say nothing of the new one's; breaches stay.
                state = replace(start_watch(snapshot, limits), breaches=state.breaches)
            if state is not None:
                # Money moved in or out since the last snapshot is not a profit or a loss.
                flow = await self._net_flow(
                    members or (subject_id,), after=state.at, until=snapshot.time
                )
                if flow:
                    state = record_transfer(state, flow)
            update = observe_equity(state, snapshot, limits)
            watches.append(LossWatchState(kind, subject_id, update.state, members))
            for breach in update.triggered:
                triggered.append(
                    RecordedStopOut(new_id("so"), kind, subject_id, breach, recorded_at=now)
                )
            for breach in update.ended:
                ended.extend(
                    replace(s, ended_at=now, ended_by="a new trading day")
                    for s in self.active_of(kind, subject_id)
                    if s.rule is breach.rule
                )
        await self._store.risk.save_watch_round(watches, triggered=triggered, ended=ended, at=now)
        for watch in watches:
            self._watches[(watch.kind, watch.subject_id)] = watch
        for stop_out in ended:
            self._end(stop_out)
            log.warning("%s ended: %s", stop_out.describe(), stop_out.ended_by)
        for stop_out in triggered:
            self._active[stop_out.stop_out_id] = stop_out
            self._gate.stop_out(stop_out, known_at=self._clock())
            log.warning("%s", stop_out.describe())
            if stop_out.action is StopOutAction.FLATTEN:
                self._start_flatten(stop_out)
        self.feed.publish([*ended, *triggered])
        return triggered

    async def _net_flow(
        self, account_ids: Iterable[str], *, after: datetime, until: datetime
    ) -> Decimal:
        """Deposits less withdrawals (and credit) recorded for the accounts in (after, until]."""
        tick = timedelta(microseconds=1)
        total = Decimal(0)
        for account_id in account_ids:
            operations = await self._store.reporting.balance_operations_of(
                account_id, after + tick, until + tick
            )
            total += net_flow(operations)
        return total

    # -- an explicit reset ------------------------------------------------------------------

    async def reset(
        self, kind: WatchKind, subject_id: str, rules: Iterable[LossRule] | None, *, by: str
    ) -> list[RecordedStopOut]:
        """Ends the subject's active stop-outs of `rules` (all when None); the rules start again
        from the latest equity. Returns the stop-outs ended (none if none was active)."""
        if (
            kind is WatchKind.ACCOUNT
            and await self._store.get_account(AccountId(subject_id)) is None
        ):
            raise NotFound(f"account {subject_id!r} does not exist", reason="ACCOUNT_NOT_FOUND")
        if kind is WatchKind.GROUP and await self._store.get_group(GroupId(subject_id)) is None:
            raise NotFound(f"group {subject_id!r} does not exist", reason="GROUP_NOT_FOUND")
        chosen = set(LossRule) if rules is None else set(rules)
        async with self._lock:
            now = self._clock()
            ending = [
                replace(s, ended_at=now, ended_by=f"reset by {by}")
                for s in self.active_of(kind, subject_id)
                if s.rule in chosen
            ]
            if not ending:
                return []
            watches = []
            previous = self._watches.get((kind, subject_id))
            if previous is not None:
                update = reset_breaches(previous.state, {s.rule for s in ending})
                watches.append(replace(previous, state=update.state))
            await self._store.risk.save_watch_round(watches, ended=ending, at=now)
            for watch in watches:
                self._watches[(watch.kind, watch.subject_id)] = watch
            for stop_out in ending:
                self._end(stop_out)
                log.warning("%s lifted by %s", stop_out.describe(), by)
            self.feed.publish(ending)
            return ending

    async def flattened(self) -> None:
        """Returns once every FLATTEN running now has submitted its closing orders."""
        while self._flattening:
            await asyncio.gather(*list(self._flattening.values()), return_exceptions=True)

    async def stop(self) -> None:
        for task in list(self._flattening.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _end(self, stop_out: RecordedStopOut) -> None:
        self._active.pop(stop_out.stop_out_id, None)
        self._gate.lift(stop_out)
        task = self._flattening.pop(stop_out.stop_out_id, None)
        if task is not None:
            # Closing orders already submitted go on; no further one is started.
            task.cancel()

    # -- FLATTEN ----------------------------------------------------------------------------

    def _start_flatten(self, stop_out: RecordedStopOut) -> None:
        if stop_out.stop_out_id in self._flattening:
            return
        task = asyncio.create_task(self._flatten(stop_out), name=f"flatten-{stop_out.stop_out_id}")
        self._flattening[stop_out.stop_out_id] = task
        task.add_done_callback(lambda _: self._flattening.pop(stop_out.stop_out_id, None))

    async def _flatten(self, stop_out: RecordedStopOut) -> None:
        ids = list(stop_out.closing_master_order_ids)
        try:
            async for closing_id in self._engine.flatten(
                label=stop_out.stop_out_id,
                submitted_by="stop-out",
                group_id=stop_out.subject_id if stop_out.kind is WatchKind.GROUP else "",
                account_id=stop_out.subject_id if stop_out.kind is WatchKind.ACCOUNT else "",
            ):
                if closing_id in ids:
                    continue
                ids.append(closing_id)
                await self._store.risk.set_closing_orders(stop_out.stop_out_id, ids)
                if stop_out.stop_out_id in self._active:
                    self._active[stop_out.stop_out_id] = replace(
                        self._active[stop_out.stop_out_id], closing_master_order_ids=tuple(ids)
                    )
        except Exception:
            log.exception("flatten of %s failed", stop_out.describe())
