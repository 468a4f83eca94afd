"""Sends child orders to their terminals: all at once across terminals, one at a time within one.

Per child, one attempt loop (`Dispatcher._send_until_settled`) for deals and pending placements
alike: the request with the child's tag and the group's magic (a deal at market is priced by its
terminal right before it leaves: gateway.terminals.market), and the answer's retcode class
decides what follows:
- SUCCESS: the fill is recorded (a deal), or the child is PLACED (a pending order);
- TRANSIENT (requote, busy, no quotes...): tried again after a backoff (a deal with a fresh
  price, within its band), as the OrderRetryPolicy allows;
- PERMANENT: the child is REJECTED with the retcode and text;
- AMBIGUOUS (timeout, lost connection, unclear error): the terminal is searched for the child's
  tag; it is sent again (by the same loop) only if provably absent, else it is UNKNOWN.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from gateway.domain import retcodes
from gateway.domain.fills import Fill
from gateway.domain.ids import AccountId, GroupId, MasterOrderId
from gateway.domain.orders import (
    ChildOrder,
    ChildOrderState,
    FillingPolicy,
    MasterOrder,
    OrderType,
)
from gateway.domain.retcodes import RetcodeClass
from gateway.domain.retry_policy import OrderRetryPolicy
from gateway.engine.attempts import (
    beyond_the_band,
    cancelled,
    deal_request,
    given_up,
    leaving,
    outside_band,
    placed,
    placement_request,
    removal_request,
    to_send_again,
    unknown,
    with_answered_deal,
    with_deal,
)
from gateway.engine.collector_hold import none_until_ready_callbacks_ran
from gateway.engine.deadlines import Deadlines
from gateway.engine.execution_recorder import ExecutionRecorder
from gateway.engine.metrics import NO_METRICS, GatewayMetrics, backend_of
from gateway.engine.terminal_registry import TerminalRegistry
from gateway.engine.trading_gate import TradingGate
from gateway.observability.log_context import log_about
from gateway.terminals.protocol import (
    Deal,
    PendingOrder,
    TaggedRecords,
    Terminal,
    TerminalError,
)

log = logging.getLogger(__name__)

# The child as its dispatch leaves it (to be recorded) and, if a deal filled it, that deal's fill.
Outcome = tuple[ChildOrder, Fill | None]

# Four attempts; waits of 50, 100 and 200 ms, each spread by a fifth; a band of 20 points.
ORDER_RETRY = OrderRetryPolicy()


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    # Child requests in flight at once over all terminals.
    max_concurrency: int = 1_000
    # How long one request may take before its outcome counts as unknown.
    request_timeout_s: float = 10.0
    # Attempts per child (transient refusals, provably absent ambiguous sends), the waits
    # between them, and how far from its first price a deal's retry may go.
    retry: OrderRetryPolicy = ORDER_RETRY


class Dispatcher:
    def __init__(
        self,
        registry: TerminalRegistry,
        recorder: ExecutionRecorder,
        settings: DispatchSettings,
        clock: Callable[[], datetime],
        gate: TradingGate | None = None,
        *,
        uniform: Callable[[], float] = random.random,
        metrics: GatewayMetrics = NO_METRICS,
    ) -> None:
        """`uniform`: the draw from [0, 1) that spreads each retry's wait (its jitter);
        `metrics`: where requests' durations, retries and searches by tag are counted."""
        self._gate = gate if gate is not None else TradingGate()
        self._registry = registry
        self._recorder = recorder
        self._metrics = metrics
        self._settings = settings
        self._clock = clock
        self._uniform = uniform
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        # Every terminal request's timeout: one watcher for all rather than a timer each.
        self._deadlines = Deadlines(settings.request_timeout_s)
        # Master orders whose cancellation was requested: none of their children is sent again.
        self._stopped_orders: set[MasterOrderId] = set()
        # Why nothing at all may be sent any more (another process took the database).
        self._halt_reason = ""
        # Cluster mode: groups this node lost, and why none of their children is sent here.
        self._halted_groups: dict[GroupId, str] = {}

    @property
    def slots(self) -> asyncio.Semaphore:
        """The global bound on requests in flight, for anything else that asks terminals."""
        return self._slots

    @property
    def request_timeout_s(self) -> float:
        return self._settings.request_timeout_s

    @property
    def deadlines(self) -> Deadlines:
        """The timeout of one terminal request, for anything else that asks terminals."""
        return self._deadlines

    def stop_sending(self, master_order_id: MasterOrderId) -> None:
        """From now on, each child of this master order that has not reached its broker is
        CANCELLED instead of sent (checked right before every request)."""
        self._stopped_orders.add(master_order_id)

    def halt(self, why: str) -> None:
        """From now on no child of any order is sent: each one not yet at its broker ends
        CANCELLED (in memory: a process that lost its database stores nothing more, and the
        process that took the database finds each child by its tag)."""
        self._halt_reason = why

    def halt_groups(self, groups: Collection[GroupId], why: str) -> None:
        """Cluster mode: no child of these groups' orders is sent from now on (this node
        lost them: their new owner finds each child by its tag)."""
        for group_id in groups:
            self._halted_groups[group_id] = why

    def resume_groups(self, groups: Collection[GroupId]) -> None:
        """Cluster mode: these groups are this node's (again)."""
        for group_id in groups:
            self._halted_groups.pop(group_id, None)

    def forget(self, master_order_id: MasterOrderId) -> None:
        self._stopped_orders.discard(master_order_id)

    async def dispatch(
        self,
        master: MasterOrder,
        children: list[ChildOrder],
        *,
        reconcile_first: frozenset[str] = frozenset(),
        known_deals: Mapping[str, Collection[int]] | None = None,
        points: Mapping[AccountId, Decimal] | None = None,
    ) -> None:
        """Executes every child concurrently; returns when each has a recorded outcome.

        Children in `reconcile_first` may have reached their broker in an earlier run: each is
        searched for by its tag, and sent only if provably absent. `known_deals`: per child, the
        deal tickets its stored fills already hold (never taken in twice). `points`: per
        account, the point of its symbol if already known (else its terminal is asked).
        """
        known_deals = known_deals or {}
        points = points or {}
        ordered = list(children)
        # Fairness: a per-order shuffle, seeded by the order id, so no account is always last.
        random.Random(master.master_order_id).shuffle(ordered)
        release = asyncio.Event()
        executions = [
            asyncio.ensure_future(
                self._execute(
                    master,
                    child,
                    child.child_order_id in reconcile_first,
                    set(known_deals.get(child.child_order_id, ())),
                    points.get(child.account_id),
                    release,
                )
            )
            for child in ordered
        ]
        # Every execution's first step runs before this (the loop runs its ready callbacks in
        # order): each first request is built by then, and they leave back to back.
        asyncio.get_running_loop().call_soon(_release_together, release)
        # Each child to its end, whatever another's outcome: one that cannot be stored (or a
        # writer that lost its database) must not end the order's dispatch while others run.
        outcomes = await asyncio.gather(*executions, return_exceptions=True)
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        for outcome in failed:
            if isinstance(outcome, asyncio.CancelledError):
                raise outcome
        if failed:
            log.error(
                "master order %s: %d of %d children's outcomes were not stored (%s); they stay "
                "as last stored and are found by their tags at the next start",
                master.master_order_id,
                len(failed),
                len(ordered),
                failed[0],
            )

    async def _execute(
        self,
        master: MasterOrder,
        child: ChildOrder,
        search_first: bool,
        known_deals: set[int],
        point: Decimal | None,
        release: asyncio.Event,
    ) -> None:
        # This child's own task: its log lines are about it.
        log_about(
            master_order_id=child.master_order_id,
            child_order_id=child.child_order_id,
            account_id=child.account_id,
        )
        try:
            async with self._slots, self._registry.lock(child.account_id):
                outcome, fill = await self._send_until_settled(
                    master, child, search_first, known_deals, point, release
                )
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug must not leave the child without an outcome
            log.exception("child %s: dispatch failed", child.child_order_id)
            text = f"dispatch failed: {error}"
            outcome, fill = unknown(child, child.attempts, 0, text, self._clock()), None
        log.debug(
            "child %s: %s after %d attempts: %s",
            child.child_order_id,
            outcome.state.name,
            outcome.attempts,
            outcome.status_text,
        )
        await self._recorder.record(outcome, fill)

    async def _send_until_settled(
        self,
        master: MasterOrder,
        child: ChildOrder,
        search_first: bool,
        known_deals: set[int],
        point: Decimal | None,
        release: asyncio.Event,
    ) -> Outcome:
        """The one attempt loop: sends the child, a deal at market or a pending placement,
        until it has an outcome, as the retry policy allows. `search_first`: it may have
        reached its broker in an earlier run (searched for by its tag first); `known_deals`:
        the deal tickets of its stored fills; `point`: its symbol's point, if known (else its
        terminal is asked); `release`: set once every child of the master order has built its
        first request (or is waiting for a slot, its terminal or an answer): the first requests
        are held until then, so that they leave together and the spread of their arrival at
        the brokers is the sending alone.

        A partial fill is stored at once and the rest sent again (a resting RETURN remainder is
        removed first), so the child's volume is what its deals add up to, each deal one fill.
        A pending child ends PLACED once it rests at its broker (its fills are then taken in by
        the PendingOrderWatcher).
        """
        terminal = self._registry.get(child.account_id)
        if terminal is None and search_first:
            return unknown(child, child.attempts, 0, "terminal not connected", self._clock()), None
        if terminal is None:
            return (
                child.moved_to(
                    ChildOrderState.REJECTED, self._clock(), status_text="no terminal connected"
                ),
                None,
            )
        spec = master.spec
        policy = self._settings.retry
        deviation = policy.deviation_points(spec.max_deviation_points)
        if point is None:
            point = (await terminal.symbol_spec(child.symbol)).point
        band = deviation * point
        # A pending child is placed to rest at its broker; a market (or closing) one deals.
        placing = spec.order_type is not OrderType.MARKET and not child.closes_child_order_id
        if placing and child.requested_price is None:
            # Slippage of a pending order is measured against its own price.
            child = replace(child, requested_price=spec.price)
        if search_first:
            child, outcome = await self._search_before_sending(
                master, terminal, child, known_deals, point, placing
            )
            if outcome is not None:
                return outcome
        attempts = child.attempts
        last_text = ""
        last_retcode = 0
        # The price the first request was sent at (a pending order's own price): retries stay
        # within the deviation of it.
        first_price: Decimal | None = child.requested_price
        first_request = child.attempts == 0
        while attempts < policy.maximum_attempts:
            if (why_not := self._why_not_to_send(master, child)) is not None:
                return cancelled(child, attempts, why_not, self._clock()), None
            attempts += 1
            request = (
                placement_request(spec, child)
                if placing
                else deal_request(spec, child, first_price, band, deviation)
            )
            # The moment the first request leaves is the child's sent time (taken now; the
            # child copied with it once the request is away, not on the way out).
            leaving_at: datetime | None = None
            if first_request:
                why_not = await self._why_not_once_released(master, child, release)
                if why_not is not None:
                    return cancelled(child, attempts - 1, why_not, self._clock()), None
                leaving_at, first_request = self._clock(), False
            timed = self._metrics.enabled
            sending_at = time.perf_counter() if timed else 0.0
            try:
                with self._deadlines.guard():
                    result = await terminal.send(request)
            except (TimeoutError, TerminalError) as error:
                if timed:
                    self._timed(terminal, "send", sending_at)
                if leaving_at is not None:
                    child = leaving(child, leaving_at)
                why = str(error) or "timeout"
                unknown_as = (0, f"outcome unknown: {why}")
                child, outcome = await self._settle_by_tag(
                    terminal, child, known_deals, first_price, point, attempts, placing, unknown_as
                )
                if outcome is not None:
                    return outcome
                last_text = f"provably not {'placed' if placing else 'executed'} after {why}"
                self._retrying("absent", attempts)
                continue
            if timed:
                self._timed(terminal, "send", sending_at)
            if leaving_at is not None:
                child = leaving(child, leaving_at)
            if first_price is None:
                first_price = result.request_price
            if outside_band(request, result):
                assert first_price is not None
                last_retcode = retcodes.PRICE_CHANGED
                last_text = beyond_the_band(child.side, result, first_price, point, deviation)
                attempts -= 1  # this one was never sent
                break
            # The price it left at (for its slippage); from before if the terminal sent none.
            requested = result.request_price or first_price
            kind = retcodes.classify(result.retcode)
            if kind is RetcodeClass.SUCCESS and placing:
                return placed(child, result.order_ticket, attempts, result, self._clock()), None
            if kind is RetcodeClass.SUCCESS and result.volume > 0:
                child, fill = with_answered_deal(
                    child, result, requested, point, attempts, self._clock()
                )
                known_deals.add(result.deal_ticket)
                if child.state is ChildOrderState.FILLED:
                    return child, fill
                # Partly filled: stored before anything else is sent.
                await self._recorder.record(child, fill)
                last_retcode, last_text = result.retcode, result.text
                if spec.filling_policy is FillingPolicy.RETURN and result.order_ticket:
                    child, final = await self._take_back_rest(
                        terminal,
                        child,
                        result.order_ticket,
                        known_deals,
                        requested,
                        point,
                        attempts,
                    )
                    if final is not None:
                        return final
                self._retrying("partial_fill", attempts)
                continue
            last_retcode, last_text = result.retcode, result.text
            if kind is RetcodeClass.TRANSIENT:
                self._retrying("transient", attempts)
                await asyncio.sleep(policy.delay_s(attempts, self._uniform))
                continue
            if kind is RetcodeClass.AMBIGUOUS:
                unknown_as = (result.retcode, result.text)
                child, outcome = await self._settle_by_tag(
                    terminal, child, known_deals, requested, point, attempts, placing, unknown_as
                )
                if outcome is not None:
                    return outcome
                self._retrying("absent", attempts)
                continue
            break
        return given_up(child, attempts, last_retcode, last_text, self._clock()), None

    def _retrying(self, reason: str, attempts: int) -> None:
        """Counts a retry, if the policy allows one more attempt."""
        if attempts < self._settings.retry.maximum_attempts:
            self._metrics.retried(reason)

    def _timed(self, terminal: Terminal, request: str, started: float) -> None:
        self._metrics.terminal_request(backend_of(terminal), request, time.perf_counter() - started)

    async def _search_before_sending(
        self,
        master: MasterOrder,
        terminal: Terminal,
        child: ChildOrder,
        known_deals: set[int],
        point: Decimal,
        placing: bool,
    ) -> tuple[ChildOrder, Outcome | None]:
        """A child that may have reached its broker in an earlier run: settled by what its tag
        finds, else (provably absent) ready to be sent again, or CANCELLED if it may no longer
        be sent."""
        attempts = child.attempts
        # A deal found by tag has no known requested price: no slippage then.
        requested = child.requested_price if placing else None
        unknown_as = (0, "terminal cannot be searched")
        child, outcome = await self._settle_by_tag(
            terminal, child, known_deals, requested, point, attempts, placing, unknown_as
        )
        if outcome is not None:
            return child, outcome
        # What is not found provably never reached the broker.
        if (why_not := self._why_not_to_send(master, child)) is not None:
            return child, (cancelled(child, attempts, why_not, self._clock()), None)
        return to_send_again(child, self._clock()), None

    async def _settle_by_tag(
        self,
        terminal: Terminal,
        child: ChildOrder,
        known_deals: set[int],
        requested: Decimal | None,
        point: Decimal,
        attempts: int,
        placing: bool,
        unknown_as: tuple[int, str],
    ) -> tuple[ChildOrder, Outcome | None]:
        """After an unknown outcome (or a restart): what its broker holds under the child's
        tag. Its deals not yet stored become fills; a pending child's order found resting makes
        it PLACED. Returns the child as it now stands and its outcome when it has one: UNKNOWN
        (with `unknown_as`' retcode and text) if the terminal cannot be searched, FILLED, or
        PLACED; none when what it lacks provably never reached the broker."""
        records = await self._find_by_tag(terminal, child)
        if records is None:
            self._metrics.reconciled("unreachable")
            return child, (unknown(child, attempts, *unknown_as, self._clock()), None)
        filled_before = child.filled_volume
        child, final = await self._take_in_deals(
            child, list(records.deals), known_deals, requested, point, attempts
        )
        if final is not None:
            self._metrics.reconciled("filled")
            return child, final
        if placing and records.orders:
            self._metrics.reconciled("placed")
            ticket = records.orders[0].ticket
            return child, (placed(child, ticket, attempts, None, self._clock()), None)
        found_some = child.filled_volume > filled_before
        self._metrics.reconciled("partially_filled" if found_some else "absent")
        return child, None

    async def check_resting(
        self,
        master: MasterOrder,
        child: ChildOrder,
        terminal: Terminal,
        resting: PendingOrder | None,
        known_deals: set[int],
    ) -> None:
        """One PLACED child against what its broker holds now (`resting`: its order, if still
        there). New deals become fills; an order gone ends the child; a cancellation request
        removes it first. The caller holds the terminal's lock and a slot."""
        untouched = resting is not None and resting.volume + child.filled_volume >= child.volume
        cancelling = master.cancel_requested_at is not None
        if untouched and not cancelling:
            return
        point = (await terminal.symbol_spec(child.symbol)).point
        if cancelling and resting is not None:
            try:
                with self._deadlines.guard():
                    result = await terminal.send(removal_request(child, resting.ticket))
            except (TimeoutError, TerminalError) as error:
                log.warning(
                    "child %s: removal unknown, checked again: %s", child.child_order_id, error
                )
                return
            if retcodes.classify(result.retcode) is not RetcodeClass.SUCCESS:
                log.warning("child %s: removal refused: %s", child.child_order_id, result.text)
        records = await self._find_by_tag(terminal, child)
        if records is None:
            return  # asked again on the next round
        child, final = await self._take_in_deals(
            child, list(records.deals), known_deals, child.requested_price, point, child.attempts
        )
        if final is not None:
            await self._recorder.record(*final)
            return
        if any(o.ticket == child.broker_order_ticket for o in records.orders):
            return  # still resting (partly filled: its fills are recorded)
        why = "removed on request" if cancelling else "expired or cancelled by the broker"
        if child.filled_volume > 0:
            ended = child.moved_to(
                ChildOrderState.PARTIALLY_FILLED,
                self._clock(),
                status_text=f"{child.filled_volume} of {child.volume} filled; rest {why}",
            )
        else:
            ended = child.moved_to(
                ChildOrderState.CANCELLED, self._clock(), status_text=f"pending order {why}"
            )
        await self._recorder.record(ended)

    async def _take_in_deals(
        self,
        child: ChildOrder,
        deals: list[Deal],
        known_deals: set[int],
        requested: Decimal | None,
        point: Decimal,
        attempts: int,
    ) -> tuple[ChildOrder, Outcome | None]:
        """Turns the child's deals not yet stored into fills (each stored at once). Returns the
        child as it now stands and, when its whole volume is filled, the final outcome to
        record."""
        for deal in deals:
            if deal.ticket in known_deals:
                continue
            known_deals.add(deal.ticket)
            child, fill = with_deal(
                child,
                self._clock(),
                volume=deal.volume,
                price=deal.price,
                requested=deal.price if requested is None else requested,
                point=point,
                attempts=attempts,
                retcode=retcodes.DONE,
                text="found by tag after an unknown outcome",
                deal_ticket=deal.ticket,
                order_ticket=deal.order_ticket,
                position_ticket=deal.position_ticket,
                executed_at=deal.executed_at,
            )
            if child.state is ChildOrderState.FILLED:
                return child, (child, fill)
            await self._recorder.record(child, fill)
        return child, None

    async def _take_back_rest(
        self,
        terminal: Terminal,
        child: ChildOrder,
        order_ticket: int,
        known_deals: set[int],
        requested: Decimal | None,
        point: Decimal,
        attempts: int,
    ) -> tuple[ChildOrder, Outcome | None]:
        """A RETURN remainder rests at the broker: removed so that only the gateway sends the
        rest, then whatever of it executed before the removal is taken in by tag."""
        try:
            with self._deadlines.guard():
                await terminal.send(removal_request(child, order_ticket))
        except (TimeoutError, TerminalError) as error:
            log.warning("child %s: removing the rest failed: %s", child.child_order_id, error)
        records = await self._find_by_tag(terminal, child)
        if records is None or any(o.ticket == order_ticket for o in records.orders):
            # The rest may still execute at the broker: sending it again could double it.
            text = "the rest of a partial fill still rests at the broker"
            return child, (unknown(child, attempts, 0, text, self._clock()), None)
        return await self._take_in_deals(
            child, list(records.deals), known_deals, requested, point, attempts
        )

    async def _why_not_once_released(
        self, master: MasterOrder, child: ChildOrder, release: asyncio.Event
    ) -> str | None:
        """Waits for the first requests' release; why the child must not go after all, if a
        cancellation or a kill switch came in meanwhile."""
        if release.is_set():
            return None
        await release.wait()
        return self._why_not_to_send(master, child)

    def _why_not_to_send(self, master: MasterOrder, child: ChildOrder) -> str | None:
        """Why the child must not be sent (now), if it must not."""
        if self._halt_reason:
            return self._halt_reason
        if self._halted_groups and master.spec.group_id in self._halted_groups:
            return self._halted_groups[master.spec.group_id]
        if child.master_order_id in self._stopped_orders:
            return "on request"
        if not master.spec.closes_master_order_id:
            switch = self._gate.stopping(
                child.account_id,
                master.spec.group_id,
                planned_at=master.allocation.snapshot_time,
            )
            if switch is not None:
                return f"by {switch.describe()}"
        return None

    async def _find_by_tag(self, terminal: Terminal, child: ChildOrder) -> TaggedRecords | None:
        """Everything its broker holds under the child's tag; None if it cannot be asked."""
        timed = self._metrics.enabled
        started = time.perf_counter() if timed else 0.0
        try:
            with self._deadlines.guard():
                return await terminal.find_by_tag(child.tag)
        except (TimeoutError, TerminalError):
            return None
        finally:
            if timed:
                self._timed(terminal, "find_by_tag", started)


def _release_together(release: asyncio.Event) -> None:
    """Lets the held first requests leave, with no collection of the heap until each has
    (their tasks, made ready by the set, run in one pass of the loop before the collector is
    enabled again)."""
    release.set()
    none_until_ready_callbacks_ran(asyncio.get_running_loop())
