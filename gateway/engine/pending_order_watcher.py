"""Children still open after their dispatch: PLACED pending orders checked against their
brokers, and UNKNOWN children settled by their tag.

PLACED children are checked account by account, every `interval_s` (and at once when woken,
e.g. by a cancellation).

One `pending_orders()` request per account that has placed children tells which still rest
untouched; only a child whose order has gone or shrunk is searched for by its tag, its new
deals taken in as fills (never twice: the deal tickets of its stored fills are known), and the
child ended when its order is gone. A cancelled master order's resting children are removed.

An UNKNOWN child (its terminal could not be asked after an ambiguous outcome: a worker or a
connection that stayed away) is dispatched again every `unknown_retry_s` with reconciliation
first: found by its tag, taken in; provably absent, sent (or cancelled, or refused beyond the
deviation of its first price), exactly as at a restart. Without this it would wait for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

from gateway.domain.orders import ChildOrder, ChildOrderState, MasterOrder
from gateway.engine.dispatcher import Dispatcher
from gateway.engine.execution_recorder import ExecutionRecorder, MasterProgress
from gateway.engine.terminal_registry import TerminalRegistry
from gateway.observability.log_context import log_about
from gateway.store import Store
from gateway.terminals.protocol import TerminalError

log = logging.getLogger(__name__)


class PendingOrderWatcher:
    def __init__(
        self,
        store: Store,
        registry: TerminalRegistry,
        recorder: ExecutionRecorder,
        dispatcher: Dispatcher,
        *,
        interval_s: float = 0.5,
        unknown_retry_s: float = 5.0,
    ) -> None:
        self._store = store
        self._registry = registry
        self._recorder = recorder
        self._dispatcher = dispatcher
        self._interval_s = interval_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Per child: the deal tickets already stored as its fills.
        self._known: dict[str, set[int]] = {}
        # Master orders whose stored fills are in _known already.
        self._learned: set[str] = set()
        self._unknown_retry_s = unknown_retry_s
        self._next_unknown_retry = 0.0
        # UNKNOWN children being settled now: never two dispatches of one child at once.
        self._settling: set[str] = set()
        self._in_pass = False
        self._stopping = False
        self._settlers: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="pending-order-watcher")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Settlers are cancelled (a dispatch cancelled leaves its children to the next start's
        reconciliation); a pass under way is finished first, not cancelled: a PostgreSQL read
        cancelled mid-way can leave the asyncpg driver waiting for good."""
        self._stopping = True
        if self._task is not None:
            if not self._in_pass:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for settler in list(self._settlers):
            settler.cancel()
        await asyncio.gather(*self._settlers, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()
            self._in_pass = True
            try:
                await self._pass()
            finally:
                self._in_pass = False

    async def _pass(self) -> None:
        try:
            await self.check_once()
        except Exception:
            log.exception("checking resting pending orders failed; trying again")
        now = asyncio.get_running_loop().time()
        if now >= self._next_unknown_retry and not self._stopping:
            self._next_unknown_retry = now + self._unknown_retry_s
            try:
                await self.settle_unknown()
            except Exception:
                log.exception("settling UNKNOWN children failed; trying again")

    async def settle_unknown(self) -> None:
        """Dispatches every UNKNOWN child again, reconciliation first (in the background)."""
        for progress in self._recorder.in_progress():
            unknown = [
                c
                for c in progress.children.values()
                if c.state is ChildOrderState.UNKNOWN and c.child_order_id not in self._settling
            ]
            if not unknown:
                continue
            await self._learn_fills(progress.master)
            ids = [c.child_order_id for c in unknown]
            self._settling.update(ids)
            settler = asyncio.create_task(self._settle(progress.master, unknown))
            self._settlers.add(settler)
            settler.add_done_callback(self._settlers.discard)

    async def _settle(self, master: MasterOrder, unknown: list[ChildOrder]) -> None:
        if master.cancel_requested_at is not None:
            self._dispatcher.stop_sending(master.master_order_id)  # honoured as at a restart
        try:
            await self._dispatcher.dispatch(
                master,
                unknown,
                reconcile_first=frozenset(c.child_order_id for c in unknown),
                known_deals={
                    c.child_order_id: self._known.get(c.child_order_id, set()) for c in unknown
                },
            )
        finally:
            self._settling.difference_update(c.child_order_id for c in unknown)

    async def check_once(self) -> None:
        by_account: dict[str, list[tuple[MasterProgress, ChildOrder]]] = defaultdict(list)
        for progress in self._recorder.in_progress():
            for child in progress.children.values():
                if child.state is ChildOrderState.PLACED:
                    by_account[child.account_id].append((progress, child))
        if not by_account:
            return
        for progress in {id(p): p for items in by_account.values() for p, _ in items}.values():
            await self._learn_fills(progress.master)
        await asyncio.gather(*(self._check_account(a, items) for a, items in by_account.items()))

    async def _learn_fills(self, master: MasterOrder) -> None:
        """The stored fills of a master order's children, once (they may predate a restart)."""
        if master.master_order_id in self._learned:
            return
        self._learned.add(master.master_order_id)
        for fill in await self._store.fills_of(master.master_order_id):
            self._known.setdefault(fill.child_order_id, set()).add(fill.deal_ticket)

    async def _check_account(
        self, account_id: str, items: list[tuple[MasterProgress, ChildOrder]]
    ) -> None:
        terminal = self._registry.get(account_id)
        if terminal is None:
            return
        log_about(account_id=account_id)  # gather's task for this account
        async with self._dispatcher.slots, self._registry.lock(account_id):
            try:
                with self._dispatcher.deadlines.guard():
                    resting = {o.ticket: o for o in await terminal.pending_orders()}
            except (TimeoutError, TerminalError) as error:
                log.info("account %s: pending orders not read: %s", account_id, error)
                return
            for progress, child in items:
                current = progress.children.get(child.child_order_id, child)
                if current.state is not ChildOrderState.PLACED:
                    continue
                known = self._known.setdefault(child.child_order_id, set())
                log_about(
                    master_order_id=child.master_order_id,
                    child_order_id=child.child_order_id,
                    account_id=account_id,
                )
                try:
                    await self._dispatcher.check_resting(
                        progress.master,
                        current,
                        terminal,
                        resting.get(current.broker_order_ticket),
                        known,
                    )
                except (TimeoutError, TerminalError) as error:
                    log.info("child %s: not checked: %s", child.child_order_id, error)
