"""Sends child orders to their terminals: all at once across terminals, one at a time within one.

Per child: the request at market with the child's tag and the group's magic (its terminal
prices it right before it leaves: gateway.terminals.market), and the answer's retcode class
decides what follows:
- SUCCESS: the fill is recorded;
- TRANSIENT (requote, busy, no quotes...): retried with a fresh price after a backoff, a bounded
  number of times;
- PERMANENT: the child is REJECTED with the retcode and text;
- AMBIGUOUS (timeout, lost connection, unclear error): the child is UNKNOWN and the terminal is
  searched for its tag; it is resent only if provably absent.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from gateway.domain import retcodes
from gateway.domain.field_copies import copier
from gateway.domain.fills import Fill
from gateway.domain.ids import new_id
from gateway.domain.orders import (
    ChildOrder,
    ChildOrderState,
    FillingPolicy,
    MasterOrder,
    OrderType,
    Side,
)
from gateway.domain.retcodes import RetcodeClass
from gateway.engine.collector_hold import none_until_ready_callbacks_ran
from gateway.engine.deadlines import Deadlines
from gateway.engine.execution_recorder import ExecutionRecorder
from gateway.engine.terminal_registry import TerminalRegistry
from gateway.engine.trading_gate import TradingGate
from gateway.terminals.protocol import (
    Deal,
    OrderRequest,
    OrderResult,
    PendingOrder,
    TaggedRecords,
    Terminal,
    TerminalError,
    TradeAction,
)

log = logging.getLogger(__name__)

# The average fill price of a child filled in several deals.
_PRICE_QUANTUM = Decimal("1E-8")


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    # Child requests in flight at once over all terminals.
    max_concurrency: int = 1_000
    # How long one request may take before its outcome counts as unknown.
    request_timeout_s: float = 10.0
    # Attempts per child for transient refusals and provably absent ambiguous sends.
    max_attempts: int = 4
    backoff_s: float = 0.05
    # Used when a master order sets no maximum deviation.
    default_deviation_points: int = 20


class Dispatcher:
    def __init__(
        self,
        registry: TerminalRegistry,
        recorder: ExecutionRecorder,
        settings: DispatchSettings,
        clock: Callable[[], datetime],
        gate: TradingGate | None = None,
    ) -> None:
        self._gate = gate if gate is not None else TradingGate()
        self._registry = registry
        self._recorder = recorder
        self._settings = settings
        self._clock = clock
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        # Every terminal request's timeout: one watcher for all rather than a timer each.
        self._deadlines = Deadlines(settings.request_timeout_s)
        # Master orders whose cancellation was requested: none of their children is sent again.
        self._stopped: set[str] = set()
        # Why nothing at all may be sent any more (another process took the database).
        self._halted = ""

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

    def stop_sending(self, master_order_id: str) -> None:
        """From now on, each child of this master order that has not reached its broker is
        CANCELLED instead of sent (checked right before every request)."""
        self._stopped.add(master_order_id)

    def halt(self, why: str) -> None:
        """From now on no child of any order is sent: each one not yet at its broker ends
        CANCELLED (in memory: a process that lost its database stores nothing more, and the
        process that took the database finds each child by its tag)."""
        self._halted = why

    def forget(self, master_order_id: str) -> None:
        self._stopped.discard(master_order_id)

    async def dispatch(
        self,
        master: MasterOrder,
        children: list[ChildOrder],
        *,
        reconcile_first: frozenset[str] = frozenset(),
        known_deals: Mapping[str, Collection[int]] | None = None,
        points: Mapping[str, Decimal] | None = None,
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
        reconcile: bool,
        known: set[int],
        point: Decimal | None,
        release: asyncio.Event,
    ) -> None:
        try:
            async with self._slots, self._registry.lock(child.account_id):
                outcome, fill = await self._trade(master, child, reconcile, known, point, release)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug must not leave the child without an outcome
            log.exception("child %s: dispatch failed", child.child_order_id)
            outcome, fill = (
                self._unknown(child, child.attempts, 0, f"dispatch failed: {error}"),
                None,
            )
        await self._recorder.record(outcome, fill)

    def _unknown(self, child: ChildOrder, attempts: int, retcode: int, text: str) -> ChildOrder:
        if child.state is ChildOrderState.UNKNOWN:
            return child
        return child.moved_to(
            ChildOrderState.UNKNOWN,
            self._clock(),
            attempts=attempts,
            retcode=retcode,
            status_text=text,
        )

    async def _trade(
        self,
        master: MasterOrder,
        child: ChildOrder,
        reconcile: bool,
        known: set[int],
        point: Decimal | None,
        release: asyncio.Event,
    ) -> tuple[ChildOrder, Fill | None]:
        """Executes one child to its outcome. `known`: the deal tickets of its stored fills;
        `point`: its symbol's point, if known (else its terminal is asked); `release`: set once
        every child of the master order has built its first request (or is waiting for a
        slot, its terminal or an answer): the first requests are held until then, so that they
        leave together and the spread of their arrival at the brokers is the sending alone.

        A partial fill is stored at once and the rest sent again (a resting RETURN remainder is
        removed first), so the child's volume is what its deals add up to, each deal one fill.
        """
        terminal = self._registry.get(child.account_id)
        if terminal is None and reconcile:
            return self._unknown(child, child.attempts, 0, "terminal not connected"), None
        if terminal is None:
            return (
                child.moved_to(
                    ChildOrderState.REJECTED, self._clock(), status_text="no terminal connected"
                ),
                None,
            )
        deviation = master.spec.max_deviation_points or self._settings.default_deviation_points
        if point is None:
            point = (await terminal.symbol_spec(child.symbol)).point
        if master.spec.order_type is not OrderType.MARKET and not child.closes_child_order_id:
            return await self._place(master, child, terminal, reconcile, known, point, release)
        filling = master.spec.filling_policy
        attempts = child.attempts
        if reconcile:
            found = await self._reconcile(terminal, child)
            if found is None:
                return self._unknown(child, attempts, 0, "terminal cannot be searched"), None
            child, final = await self._absorb(child, found, known, None, point, attempts)
            if final is not None:
                return final
            # What is not in the found deals provably never executed.
            if (halt := self._halt(master, child)) is not None:
                return self._cancelled(child, attempts, halt), None
            child = self._sendable(child)
        last_text = ""
        last_retcode = 0
        # The price the first request was sent at: retries stay within the deviation of it.
        first_price: Decimal | None = child.requested_price
        first_request = child.attempts == 0
        band = deviation * point
        while attempts < self._settings.max_attempts:
            if (halt := self._halt(master, child)) is not None:
                return self._cancelled(child, attempts, halt), None
            attempts += 1
            request = OrderRequest(
                action=TradeAction.DEAL,
                symbol=child.symbol,
                side=child.side,
                volume=child.volume - child.filled_volume,
                tag=child.tag,
                magic=child.magic,
                # At market: the terminal prices it right before it leaves (terminals.market).
                # A retry chases the market only within the order's maximum deviation of the
                # first price sent: beyond it the manager's price is gone.
                lowest_price=None if first_price is None else first_price - band,
                highest_price=None if first_price is None else first_price + band,
                deviation_points=deviation,
                # A closing child names the position it closes (hedging accounts); an opening
                # child carries the master order's stops onto its position.
                position_ticket=child.position_ticket if child.closes_child_order_id else 0,
                stop_loss=None if child.closes_child_order_id else master.spec.stop_loss,
                take_profit=None if child.closes_child_order_id else master.spec.take_profit,
                filling=filling,
            )
            # The moment the first request leaves is the child's sent time (taken now; the
            # child copied with it once the request is away, not on the way out).
            leaving_at: datetime | None = None
            if first_request:
                if (halt := await self._released(master, child, release)) is not None:
                    return self._cancelled(child, attempts - 1, halt), None
                leaving_at, first_request = self._clock(), False
            try:
                with self._deadlines.guard():
                    result = await terminal.send(request)
            except (TimeoutError, TerminalError) as error:
                if leaving_at is not None:
                    child = _leaving(child, leaving_at)
                found = await self._reconcile(terminal, child)
                if found is None:
                    text = f"outcome unknown: {error or 'timeout'}"
                    return self._unknown(child, attempts, 0, text), None
                child, final = await self._absorb(child, found, known, first_price, point, attempts)
                if final is not None:
                    return final
                last_text = f"provably not executed after {error or 'timeout'}"
                continue
            if leaving_at is not None:
                child = _leaving(child, leaving_at)
            if first_price is None:
                first_price = result.request_price
            if _outside_band(request, result):
                assert first_price is not None
                seen = result.ask if child.side is Side.BUY else result.bid
                moved = "" if seen is None else f"{abs(seen - first_price) / point:f} points "
                last_retcode = retcodes.PRICE_CHANGED
                last_text = (
                    f"the price moved {moved}from the first price {first_price}, beyond the "
                    f"maximum deviation of {deviation}"
                )
                attempts -= 1  # this one was never sent
                break
            # The price it left at (for its slippage); from before if the terminal sent none.
            requested = result.request_price or first_price
            kind = retcodes.classify(result.retcode)
            if kind is RetcodeClass.SUCCESS and result.volume > 0:
                child, fill = self._filled(child, result, requested, point, attempts)
                known.add(result.deal_ticket)
                if child.state is ChildOrderState.FILLED:
                    return child, fill
                # Partly filled: stored before anything else is sent.
                await self._recorder.record(child, fill)
                last_retcode, last_text = result.retcode, result.text
                if filling is FillingPolicy.RETURN and result.order_ticket:
                    child, final = await self._take_back_rest(
                        terminal, child, result.order_ticket, known, requested, point, attempts
                    )
                    if final is not None:
                        return final
                continue
            last_retcode, last_text = result.retcode, result.text
            if kind is RetcodeClass.TRANSIENT:
                await asyncio.sleep(self._settings.backoff_s * attempts)
                continue
            if kind is RetcodeClass.AMBIGUOUS:
                found = await self._reconcile(terminal, child)
                if found is None:
                    return self._unknown(child, attempts, result.retcode, result.text), None
                child, final = await self._absorb(child, found, known, requested, point, attempts)
                if final is not None:
                    return final
                continue
            break
        text = f"{retcodes.name_of(last_retcode)}: {last_text}"
        if child.filled_volume > 0:
            return (
                child.moved_to(
                    ChildOrderState.PARTIALLY_FILLED,
                    self._clock(),
                    attempts=attempts,
                    retcode=last_retcode,
                    status_text=f"{child.filled_volume} of {child.volume} filled; rest: {text}",
                ),
                None,
            )
        return (
            child.moved_to(
                ChildOrderState.REJECTED,
                self._clock(),
                attempts=attempts,
                retcode=last_retcode,
                status_text=text,
            ),
            None,
        )

    async def _place(
        self,
        master: MasterOrder,
        child: ChildOrder,
        terminal: Terminal,
        reconcile: bool,
        known: set[int],
        point: Decimal,
        release: asyncio.Event,
    ) -> tuple[ChildOrder, Fill | None]:
        """Places a pending child at its broker: PLACED once it rests there (its fills are
        then taken in by the PendingOrderWatcher). Retries and reconciliation as for deals:
        an unknown outcome is searched for by tag, and the order placed again only if absent."""
        spec = master.spec
        attempts = child.attempts
        if child.requested_price is None:
            # Slippage of a pending order is measured against its own price.
            child = replace(child, requested_price=spec.price)
        if reconcile:
            child, outcome = await self._settle_placement(terminal, child, known, point, attempts)
            if outcome is not None:
                return outcome
        first_request = child.attempts == 0
        last_text = ""
        last_retcode = 0
        while attempts < self._settings.max_attempts:
            if (halt := self._halt(master, child)) is not None:
                return self._cancelled(child, attempts, halt), None
            attempts += 1
            request = OrderRequest(
                action=TradeAction.PENDING,
                symbol=child.symbol,
                side=child.side,
                volume=child.volume - child.filled_volume,
                tag=child.tag,
                magic=child.magic,
                price=spec.price,
                order_type=spec.order_type,
                stop_limit_price=spec.stop_limit_price,
                stop_loss=spec.stop_loss,
                take_profit=spec.take_profit,
                time_in_force=spec.time_in_force,
                expires_at=spec.expire_time,
                filling=spec.filling_policy,
            )
            if first_request:
                if (halt := await self._released(master, child, release)) is not None:
                    return self._cancelled(child, attempts - 1, halt), None
                child, first_request = _leaving(child, self._clock()), False
            try:
                with self._deadlines.guard():
                    result = await terminal.send(request)
            except (TimeoutError, TerminalError) as error:
                child, outcome = await self._settle_placement(
                    terminal, child, known, point, attempts, why=str(error) or "timeout"
                )
                if outcome is not None:
                    return outcome
                last_text = f"provably not placed after {error or 'timeout'}"
                continue
            kind = retcodes.classify(result.retcode)
            last_retcode, last_text = result.retcode, result.text
            if kind is RetcodeClass.SUCCESS:
                return self._placed(child, result.order_ticket, attempts, result), None
            if kind is RetcodeClass.TRANSIENT:
                await asyncio.sleep(self._settings.backoff_s * attempts)
                continue
            if kind is RetcodeClass.AMBIGUOUS:
                child, outcome = await self._settle_placement(
                    terminal, child, known, point, attempts, why=result.text
                )
                if outcome is not None:
                    return outcome
                continue
            break
        return (
            child.moved_to(
                ChildOrderState.REJECTED,
                self._clock(),
                attempts=attempts,
                retcode=last_retcode,
                status_text=f"{retcodes.name_of(last_retcode)}: {last_text}",
            ),
            None,
        )

    async def _settle_placement(
        self,
        terminal: Terminal,
        child: ChildOrder,
        known: set[int],
        point: Decimal,
        attempts: int,
        why: str = "",
    ) -> tuple[ChildOrder, tuple[ChildOrder, Fill | None] | None]:
        """After an unknown outcome: the child's order resting (PLACED), its deals taken in,
        or neither (then it may be placed again). The outcome, when there is one."""
        records = await self._find(terminal, child)
        if records is None:
            text = f"outcome unknown: {why}" if why else "terminal cannot be searched"
            return child, (self._unknown(child, attempts, 0, text), None)
        child, final = await self._absorb(
            child, list(records.deals), known, child.requested_price, point, attempts
        )
        if final is not None:
            return child, final
        if records.orders:
            return child, (self._placed(child, records.orders[0].ticket, attempts, None), None)
        return self._sendable(child), None

    async def check_resting(
        self,
        master: MasterOrder,
        child: ChildOrder,
        terminal: Terminal,
        resting: PendingOrder | None,
        known: set[int],
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
                    result = await terminal.send(
                        OrderRequest(
                            action=TradeAction.REMOVE,
                            symbol=child.symbol,
                            side=child.side,
                            volume=Decimal(0),
                            tag=child.tag,
                            magic=child.magic,
                            order_ticket=resting.ticket,
                        )
                    )
            except (TimeoutError, TerminalError) as error:
                log.warning(
                    "child %s: removal unknown, checked again: %s", child.child_order_id, error
                )
                return
            if retcodes.classify(result.retcode) is not RetcodeClass.SUCCESS:
                log.warning("child %s: removal refused: %s", child.child_order_id, result.text)
        records = await self._find(terminal, child)
        if records is None:
            return  # asked again on the next round
        child, final = await self._absorb(
            child, list(records.deals), known, child.requested_price, point, child.attempts
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

    def _placed(
        self, child: ChildOrder, order_ticket: int, attempts: int, result: OrderResult | None
    ) -> ChildOrder:
        return child.moved_to(
            ChildOrderState.PLACED,
            self._clock(),
            attempts=attempts,
            broker_order_ticket=order_ticket,
            retcode=result.retcode if result is not None else retcodes.PLACED,
            status_text=result.text if result is not None else "found resting by its tag",
        )

    def _sendable(self, child: ChildOrder) -> ChildOrder:
        """An UNKNOWN child found (at most partly) absent goes back to SENT to be sent again."""
        if child.state is not ChildOrderState.UNKNOWN:
            return child
        now = self._clock()
        return child.moved_to(ChildOrderState.PENDING, now).moved_to(
            ChildOrderState.SENT, now, sent_at=now
        )

    async def _absorb(
        self,
        child: ChildOrder,
        deals: list[Deal],
        known: set[int],
        requested: Decimal | None,
        point: Decimal,
        attempts: int,
    ) -> tuple[ChildOrder, tuple[ChildOrder, Fill | None] | None]:
        """Turns the child's deals not yet stored into fills. Returns the child as it now
        stands and, when its whole volume is filled, the final outcome to record."""
        for deal in deals:
            if deal.ticket in known:
                continue
            known.add(deal.ticket)
            child, fill = self._fill(
                child,
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
        known: set[int],
        requested: Decimal | None,
        point: Decimal,
        attempts: int,
    ) -> tuple[ChildOrder, tuple[ChildOrder, Fill | None] | None]:
        """A RETURN remainder rests at the broker: removed so that only the gateway sends the
        rest, then whatever of it executed before the removal is taken in by tag."""
        try:
            with self._deadlines.guard():
                await terminal.send(
                    OrderRequest(
                        action=TradeAction.REMOVE,
                        symbol=child.symbol,
                        side=child.side,
                        volume=Decimal(0),
                        tag=child.tag,
                        magic=child.magic,
                        order_ticket=order_ticket,
                    )
                )
        except (TimeoutError, TerminalError) as error:
            log.warning("child %s: removing the rest failed: %s", child.child_order_id, error)
        records = await self._find(terminal, child)
        if records is None or any(o.ticket == order_ticket for o in records.orders):
            # The rest may still execute at the broker: sending it again could double it.
            text = "the rest of a partial fill still rests at the broker"
            return child, (self._unknown(child, attempts, 0, text), None)
        return await self._absorb(child, list(records.deals), known, requested, point, attempts)

    async def _released(
        self, master: MasterOrder, child: ChildOrder, release: asyncio.Event
    ) -> str | None:
        """Waits for the first requests' release; why the child must not go after all, if a
        cancellation or a kill switch came in meanwhile."""
        if release.is_set():
            return None
        await release.wait()
        return self._halt(master, child)

    def _halt(self, master: MasterOrder, child: ChildOrder) -> str | None:
        """Why the child must not be sent (now), if it must not."""
        if self._halted:
            return self._halted
        if child.master_order_id in self._stopped:
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

    def _cancelled(self, child: ChildOrder, attempts: int, why: str) -> ChildOrder:
        # Only ever before a request leaves, or once the broker is proven not to have it.
        if child.filled_volume > 0:
            return child.moved_to(
                ChildOrderState.PARTIALLY_FILLED,
                self._clock(),
                attempts=attempts,
                status_text=f"{child.filled_volume} of {child.volume} filled; rest cancelled {why}",
            )
        return child.moved_to(
            ChildOrderState.CANCELLED,
            self._clock(),
            attempts=attempts,
            status_text=f"cancelled {why} before it reached the broker",
        )

    async def _find(self, terminal: Terminal, child: ChildOrder) -> TaggedRecords | None:
        try:
            with self._deadlines.guard():
                return await terminal.find_by_tag(child.tag)
        except (TimeoutError, TerminalError):
            return None

    async def _reconcile(self, terminal: Terminal, child: ChildOrder) -> list[Deal] | None:
        """The child's deals on the terminal, [] if provably none, None if it cannot tell."""
        records = await self._find(terminal, child)
        return None if records is None else list(records.deals)

    def _filled(
        self,
        child: ChildOrder,
        result: OrderResult,
        requested: Decimal | None,
        point: Decimal,
        attempts: int,
    ) -> tuple[ChildOrder, Fill]:
        """`requested`: None when the price it was sent at is unknown (no slippage then)."""
        assert result.price is not None
        return self._fill(
            child,
            volume=result.volume,
            price=result.price,
            requested=result.price if requested is None else requested,
            point=point,
            attempts=attempts,
            retcode=result.retcode,
            text=result.text,
            deal_ticket=result.deal_ticket,
            order_ticket=result.order_ticket,
            position_ticket=result.position_ticket,
            executed_at=result.executed_at or self._clock(),
        )

    def _fill(
        self,
        child: ChildOrder,
        *,
        volume: Decimal,
        price: Decimal,
        requested: Decimal,
        point: Decimal,
        attempts: int,
        retcode: int,
        text: str,
        deal_ticket: int,
        order_ticket: int,
        position_ticket: int,
        executed_at: datetime,
    ) -> tuple[ChildOrder, Fill]:
        """One deal of the child as a fill, and the child with it added: FILLED once its deals
        reach its volume, else still SENT (the rest to be sent) with the average price."""
        if child.state not in (
            ChildOrderState.SENT,
            ChildOrderState.UNKNOWN,
            ChildOrderState.PLACED,
        ):
            raise AssertionError(f"child {child.child_order_id} filled from {child.state.name}")
        direction = 1 if child.side is Side.BUY else -1
        slippage = ((price - requested) * direction / point).quantize(Decimal("0.1"))
        total = child.filled_volume + volume
        average = price
        if child.filled_volume and child.fill_price is not None:
            average = ((child.fill_price * child.filled_volume + price * volume) / total).quantize(
                _PRICE_QUANTUM
            )
        changes: dict[str, object] = {
            "filled_volume": total,
            "requested_price": child.requested_price or requested,
            "fill_price": average,
            "slippage_points": slippage,
            "retcode": retcode,
            "status_text": text,
            "broker_order_ticket": order_ticket,
            "broker_deal_ticket": deal_ticket,
            "position_ticket": position_ticket,
            "attempts": attempts,
            "filled_at": executed_at,
        }
        if total >= child.volume:
            updated = child.moved_to(ChildOrderState.FILLED, self._clock(), **changes)
        else:
            updated = replace(self._sendable(child), updated_at=self._clock(), **changes)  # type: ignore[arg-type]
        fill = Fill(
            sequence=0,
            fill_id=new_id("fl"),
            master_order_id=child.master_order_id,
            child_order_id=child.child_order_id,
            account_id=child.account_id,
            symbol=child.symbol,
            side=child.side,
            volume=volume,
            price=price,
            requested_price=requested,
            slippage_points=slippage,
            deal_ticket=deal_ticket,
            order_ticket=order_ticket,
            position_ticket=position_ticket,
            executed_at=executed_at,
        )
        return updated, fill


_copy_child = copier(ChildOrder)


def _outside_band(request: OrderRequest, result: OrderResult) -> bool:
    """The terminal refused a priced retry unsent: its price had left the band."""
    banded = request.lowest_price is not None or request.highest_price is not None
    return banded and result.retcode == retcodes.PRICE_CHANGED and result.request_price is None


def _release_together(release: asyncio.Event) -> None:
    """Lets the held first requests leave, with no collection of the heap until each has
    (their tasks, made ready by the set, run in one pass of the loop before the collector is
    enabled again)."""
    release.set()
    none_until_ready_callbacks_ran(asyncio.get_running_loop())


def _leaving(child: ChildOrder, at: datetime) -> ChildOrder:
    """The child as its first request leaves: its sent time is that moment. (It was stored
    SENT with its master order, before any request left, so that a crash from then on has it
    searched for by tag; the request itself may leave much later in a large fan-out.)"""
    return _copy_child(child, {"sent_at": at})
