"""The trading engine: the one façade the api servicers and the boards (kill switches,
stop-outs) use for master orders.

It holds the engine's parts together and adds the small commands of its own:
- order_submission.py: a submission's walk, snapshot -> allocation -> children (and preview);
- position_closing.py: CloseMasterPosition and a flatten, planned by gateway/domain/closing.py;
- master_order_runner.py: a new order stored and started (the caller is answered once it is
  committed; execution goes on in the background), unfinished orders resumed at start;
- stops_modifier.py: stop loss and take profit of open positions and resting orders.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from opentelemetry.trace import Tracer

from gateway.domain.allocation import Allocation
from gateway.domain.audit import AuditRecord
from gateway.domain.copying import CopyReference
from gateway.domain.errors import FailedPrecondition, NotFound
from gateway.domain.ids import AccountId, GroupId, MasterOrderId
from gateway.domain.orders import (
    ChildOrder,
    ChildOrderState,
    MasterOrder,
    MasterOrderSpec,
    OrderType,
)
from gateway.domain.symbols import SymbolSpec
from gateway.engine.deadlines import Deadlines
from gateway.engine.dispatcher import Dispatcher
from gateway.engine.execution_recorder import ExecutionRecorder, MasterProgress
from gateway.engine.master_order_runner import MasterOrderRunner
from gateway.engine.metrics import NO_METRICS, GatewayMetrics
from gateway.engine.order_submission import OrderSubmitter
from gateway.engine.position_closing import PositionCloser
from gateway.engine.pre_trade_checks import PreTradeChecks
from gateway.engine.request_forwarding import ForwardedClose, RequestForwarding
from gateway.engine.risk_book import RiskBook
from gateway.engine.stops_modifier import StopsChange, StopsModifier, StopsOutcome
from gateway.engine.submission import Submission
from gateway.engine.terminal_registry import TerminalRegistry
from gateway.engine.trading_gate import TradingGate
from gateway.observability.trace_context import NO_TRACER
from gateway.store import Store


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
        tracer: Tracer = NO_TRACER,
        metrics: GatewayMetrics = NO_METRICS,
    ) -> None:
        """`tracer`: spans of each master order's phases (snapshot, allocation, storing,
        dispatch); NO_TRACER makes none. `metrics`: where submissions and their orders are
        counted (the dispatcher and the recorder are given theirs)."""
        gate = gate if gate is not None else TradingGate()
        self._store = store
        self._symbols = dict(symbols)
        self._recorder = recorder
        self._clock = clock
        self._metrics = metrics
        self._runner = MasterOrderRunner(
            store=store,
            registry=registry,
            dispatcher=dispatcher,
            recorder=recorder,
            clock=clock,
            pending_check_interval_s=limits.pending_check_interval_s,
            unknown_retry_s=limits.unknown_retry_s,
            tracer=tracer,
            metrics=metrics,
        )
        # The timeout of reading one account (a submission reads all its group's at once).
        snapshot_deadlines = Deadlines(limits.snapshot_timeout_s)
        self._submitter = OrderSubmitter(
            store=store,
            registry=registry,
            symbols=self._symbols,
            runner=self._runner,
            health=recorder.health,
            gate=gate,
            checks=PreTradeChecks(risk, gate, symbols),
            clock=clock,
            max_master_volume=limits.max_master_volume,
            snapshot_deadlines=snapshot_deadlines,
            tracer=tracer,
        )
        self._closer = PositionCloser(
            store=store,
            registry=registry,
            symbols=self._symbols,
            runner=self._runner,
            health=recorder.health,
            clock=clock,
            snapshot_deadlines=snapshot_deadlines,
        )
        self._require_owner: Callable[[GroupId], Awaitable[None]] | None = None
        self._forwarding: RequestForwarding | None = None
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

    async def preview(
        self, spec: MasterOrderSpec, *, reference: CopyReference | None = None
    ) -> Allocation:
        """The allocation a submission would get now; sends and stores nothing."""
        return await self._submitter.preview(spec, reference=reference)

    async def submit(
        self,
        spec: MasterOrderSpec,
        *,
        submitted_by: str = "",
        audit: AuditRecord | None = None,
        reference: CopyReference | None = None,
        forward: bool = True,
    ) -> Submission:
        """Stores and starts a master order, once per (submitted_by, client_order_id)
        (OrderSubmitter.submit); `reference`: a mirrored order's source change. A cluster
        node that does not own the group has its owner do it (`forward`), or refuses."""
        forwarding = self._forwarding
        if forward and forwarding is not None and not forwarding.owns(spec.group_id):
            return await forwarding.submit(spec, submitted_by=submitted_by, audit=audit)
        arrived_at = time.monotonic()
        await self._owner_only(spec.group_id)
        submission = await self._submitter.submit(
            spec, submitted_by=submitted_by, audit=audit, reference=reference
        )
        if not submission.replayed:
            # No await since the order started: its end cannot have been recorded yet.
            self._metrics.submitted(submission.master, arrived_at)
        return submission

    async def close_position(
        self,
        master_order_id: MasterOrderId,
        *,
        client_order_id: str,
        fraction: Decimal | None = None,
        volume: Decimal | None = None,
        submitted_by: str = "",
        only_accounts: frozenset[AccountId] | None = None,
        forward: bool = True,
    ) -> Submission:
        """Closes `fraction` or `volume` lots of what is still open of a master order's
        position with a closing master order, once per (submitted_by, client_order_id)
        (PositionCloser.close_position); forwarded to the group's owner like a submission."""
        forwarding = self._forwarding
        if forwarding is not None:
            opened = await self._store.get_master_order(master_order_id)
            if forward and opened is not None and not forwarding.owns(opened.spec.group_id):
                call = ForwardedClose(
                    master_order_id,
                    client_order_id,
                    fraction,
                    volume,
                    submitted_by,
                    None if only_accounts is None else sorted(only_accounts),
                )
                return await forwarding.close(opened.spec.group_id, call)
            if opened is not None:
                await self._owner_only(opened.spec.group_id)
        else:
            await self._owner_only_of(master_order_id)
        arrived_at = time.monotonic()
        submission = await self._closer.close_position(
            master_order_id,
            client_order_id=client_order_id,
            fraction=fraction,
            volume=volume,
            submitted_by=submitted_by,
            only_accounts=only_accounts,
        )
        if not submission.replayed:
            self._metrics.submitted(submission.master, arrived_at)
        return submission

    def flatten(
        self,
        *,
        label: str,
        submitted_by: str,
        group_id: str = "",
        account_id: str = "",
        wait_s: float = 60.0,
    ) -> AsyncIterator[MasterOrderId]:
        """Closes everything the group's (or the account's, or all) opening orders hold,
        idempotent per `label`; yields each closing order's id (PositionCloser.flatten)."""
        return self._closer.flatten(
            label=label,
            submitted_by=submitted_by,
            group_id=group_id,
            account_id=account_id,
            wait_s=wait_s,
        )

    async def modify_stops(
        self, master_order_id: MasterOrderId, change: StopsChange, *, price: Decimal | None = None
    ) -> tuple[MasterOrder, list[StopsOutcome]]:
        """Sets the stop loss and take profit of every open position of the order; of a
        WORKING pending order, the price, stop loss and take profit of every resting child."""
        await self._owner_only_of(master_order_id)
        progress = self._recorder.progress_of(master_order_id)
        if progress is not None and progress.master.spec.order_type is not OrderType.MARKET:
            return await self._modify_working(progress, change, price)
        if price is not None:
            raise FailedPrecondition(
                f"master order {master_order_id} has no resting pending order to move; price "
                "is for a WORKING LIMIT, STOP or STOP_LIMIT order",
                reason="NOT_WORKING",
            )
        opened, parts = await self._closer.open_parts(master_order_id)
        accounts = await self._store.get_account_settings({p.child.account_id for p in parts})
        outcomes = await self._stops.modify(
            opened.spec.side,
            [p.child for p in parts],
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
            stop_loss=_stop_level(change.stop_loss, spec.stop_loss),
            take_profit=_stop_level(change.take_profit, spec.take_profit),
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

    async def cancel(self, master_order_id: MasterOrderId, *, forward: bool = True) -> MasterOrder:
        """Stops sending the master order's children: each one not yet at its broker ends
        CANCELLED; those already sent go on to their outcome. Stored before it takes effect,
        so a restart honours it. Asking again is harmless; a final order is refused. A
        cluster node that does not own the order's group has its owner do it."""
        forwarding = self._forwarding
        if forwarding is not None:
            master = await self._store.get_master_order(master_order_id)
            if forward and master is not None and not forwarding.owns(master.spec.group_id):
                return await forwarding.cancel(master.spec.group_id, master_order_id)
            if master is not None:
                await self._owner_only(master.spec.group_id)
        else:
            await self._owner_only_of(master_order_id)
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
        self._runner.stop_sending(master_order_id)
        master, _ = await self.get(master_order_id)
        return master

    def only_owned_groups(
        self,
        require: Callable[[GroupId], Awaitable[None]],
        forwarding: RequestForwarding | None = None,
    ) -> None:
        """Cluster mode: what acts on a group's orders (submit, close, modify, cancel) first
        awaits `require(group)`, which refuses a group this node does not own; submissions
        and closes of such a group go to its owner through `forwarding`, which does them with
        this engine's own when this node owns the group."""
        self._require_owner = require
        self._forwarding = forwarding
        if forwarding is not None:
            forwarding.serve(
                submit=functools.partial(self.submit, forward=False),
                close=functools.partial(self.close_position, forward=False),
                cancel=functools.partial(self.cancel, forward=False),
            )

    async def _owner_only(self, group_id: GroupId) -> None:
        if self._require_owner is not None:
            await self._require_owner(group_id)

    async def _owner_only_of(self, master_order_id: MasterOrderId) -> None:
        if self._require_owner is not None:
            master = await self._store.get_master_order(master_order_id)
            if master is not None:
                await self._require_owner(master.spec.group_id)

    async def get(self, master_order_id: MasterOrderId) -> tuple[MasterOrder, list[ChildOrder]]:
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

    # -- lifecycle --------------------------------------------------------------------------

    async def resume_unfinished(self, groups: Collection[GroupId] | None = None) -> int:
        """Picks up every master order a previous run left unfinished (of `groups` only)."""
        return await self._runner.resume_unfinished(groups)

    async def drop_groups(self, groups: Collection[GroupId]) -> None:
        """Cluster mode: the executions and progress of groups this node lost, ended."""
        await self._runner.drop_groups(groups)

    async def wait_idle(self) -> None:
        """Returns once every dispatch this engine started (or resumed) has ended."""
        await self._runner.wait_idle()

    async def stop(self, grace_s: float) -> None:
        """Lets running dispatches finish for up to grace_s, then cancels the rest; what
        was cancelled stays SENT in the store and is reconciled at the next start."""
        await self._runner.stop(grace_s)


def _stop_level(asked: Decimal | None, current: Decimal | None) -> Decimal | None:
    """A ModifyMasterOrder stop loss or take profit: None keeps the current one, 0 removes it."""
    if asked is None:
        return current
    return None if asked == 0 else asked
