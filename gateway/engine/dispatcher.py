"""Sends child orders to their terminals: all at once across terminals, one at a time within one.

Per child: a fresh quote, the request with the child's tag and the group's magic, and the
answer's retcode class decides what follows:
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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from gateway.domain import retcodes
from gateway.domain.fills import Fill
from gateway.domain.ids import new_id
from gateway.domain.orders import ChildOrder, ChildOrderState, MasterOrder, Side
from gateway.domain.retcodes import RetcodeClass
from gateway.engine.execution_recorder import ExecutionRecorder
from gateway.engine.terminal_registry import TerminalRegistry
from gateway.terminals.protocol import (
    Deal,
    OrderRequest,
    OrderResult,
    Terminal,
    TerminalError,
    TradeAction,
)

log = logging.getLogger(__name__)


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
    ) -> None:
        self._registry = registry
        self._recorder = recorder
        self._settings = settings
        self._clock = clock
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        # Master orders whose cancellation was requested: none of their children is sent again.
        self._stopped: set[str] = set()

    @property
    def slots(self) -> asyncio.Semaphore:
        """The global bound on requests in flight, for anything else that asks terminals."""
        return self._slots

    @property
    def request_timeout_s(self) -> float:
        return self._settings.request_timeout_s

    def stop_sending(self, master_order_id: str) -> None:
        """From now on, each child of this master order that has not reached its broker is
        CANCELLED instead of sent (checked right before every request)."""
        self._stopped.add(master_order_id)

    def forget(self, master_order_id: str) -> None:
        self._stopped.discard(master_order_id)

    async def dispatch(
        self,
        master: MasterOrder,
        children: list[ChildOrder],
        *,
        reconcile_first: frozenset[str] = frozenset(),
    ) -> None:
        """Executes every child concurrently; returns when each has a recorded outcome.

        Children in `reconcile_first` may have reached their broker in an earlier run: each is
        searched for by its tag, and sent only if provably absent.
        """
        ordered = list(children)
        # Fairness: a per-order shuffle, seeded by the order id, so no account is always last.
        random.Random(master.master_order_id).shuffle(ordered)
        await asyncio.gather(
            *(
                self._execute(master, child, child.child_order_id in reconcile_first)
                for child in ordered
            )
        )

    async def _execute(self, master: MasterOrder, child: ChildOrder, reconcile: bool) -> None:
        try:
            async with self._slots, self._registry.lock(child.account_id):
                outcome, fill = await self._trade(master, child, reconcile)
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
        self, master: MasterOrder, child: ChildOrder, reconcile: bool
    ) -> tuple[ChildOrder, Fill | None]:
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
        point = (await terminal.symbol_spec(child.symbol)).point
        if reconcile:
            found = await self._reconcile(terminal, child)
            if found is None:
                return self._unknown(child, child.attempts, 0, "terminal cannot be searched"), None
            if found:
                return self._filled_from_deal(
                    child, found[0], found[0].price, point, child.attempts
                )
            if child.master_order_id in self._stopped:
                return self._cancelled(child, child.attempts), None
            if child.state is ChildOrderState.UNKNOWN:
                now = self._clock()
                child = child.moved_to(ChildOrderState.PENDING, now)
                child = child.moved_to(ChildOrderState.SENT, now, sent_at=now)
        attempts = child.attempts
        last_text = ""
        last_retcode = 0
        while attempts < self._settings.max_attempts:
            if child.master_order_id in self._stopped:
                return self._cancelled(child, attempts), None
            attempts += 1
            try:
                async with asyncio.timeout(self._settings.request_timeout_s):
                    quote = await terminal.quote(child.symbol)
            except (TimeoutError, TerminalError) as error:
                last_text = f"no quote: {error}"
                last_retcode = retcodes.PRICE_OFF
                await asyncio.sleep(self._settings.backoff_s * attempts)
                continue
            requested = quote.ask if child.side is Side.BUY else quote.bid
            request = OrderRequest(
                action=TradeAction.DEAL,
                symbol=child.symbol,
                side=child.side,
                volume=child.volume,
                tag=child.tag,
                magic=child.magic,
                price=requested,
                deviation_points=deviation,
                # A closing child names the position it closes (hedging accounts); an opening
                # child carries the master order's stops onto its position.
                position_ticket=child.position_ticket,
                stop_loss=None if child.closes_child_order_id else master.spec.stop_loss,
                take_profit=None if child.closes_child_order_id else master.spec.take_profit,
                filling=master.spec.filling_policy,
            )
            try:
                async with asyncio.timeout(self._settings.request_timeout_s):
                    result = await terminal.send(request)
            except (TimeoutError, TerminalError) as error:
                found = await self._reconcile(terminal, child)
                if found is None:
                    text = f"outcome unknown: {error or 'timeout'}"
                    return self._unknown(child, attempts, 0, text), None
                if found:
                    return self._filled_from_deal(child, found[0], requested, point, attempts)
                last_text = f"provably not executed after {error or 'timeout'}"
                continue
            kind = retcodes.classify(result.retcode)
            if kind is RetcodeClass.SUCCESS and result.volume > 0:
                return self._filled(child, result, requested, point, attempts)
            last_retcode, last_text = result.retcode, result.text
            if kind is RetcodeClass.TRANSIENT:
                await asyncio.sleep(self._settings.backoff_s * attempts)
                continue
            if kind is RetcodeClass.AMBIGUOUS:
                found = await self._reconcile(terminal, child)
                if found:
                    return self._filled_from_deal(child, found[0], requested, point, attempts)
                if found is None:
                    return self._unknown(child, attempts, result.retcode, result.text), None
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

    def _cancelled(self, child: ChildOrder, attempts: int) -> ChildOrder:
        # Only ever before a request leaves, or once the broker is proven not to have it.
        return child.moved_to(
            ChildOrderState.CANCELLED,
            self._clock(),
            attempts=attempts,
            status_text="cancelled on request before it reached the broker",
        )

    async def _reconcile(self, terminal: Terminal, child: ChildOrder) -> list[Deal] | None:
        """The child's deals on the terminal, [] if provably none, None if it cannot tell."""
        try:
            async with asyncio.timeout(self._settings.request_timeout_s):
                records = await terminal.find_by_tag(child.tag)
        except (TimeoutError, TerminalError):
            return None
        return list(records.deals)

    def _filled(
        self,
        child: ChildOrder,
        result: OrderResult,
        requested: Decimal,
        point: Decimal,
        attempts: int,
    ) -> tuple[ChildOrder, Fill]:
        assert result.price is not None
        return self._fill(
            child,
            volume=result.volume,
            price=result.price,
            requested=requested,
            point=point,
            attempts=attempts,
            retcode=result.retcode,
            text=result.text,
            deal_ticket=result.deal_ticket,
            order_ticket=result.order_ticket,
            position_ticket=result.position_ticket,
            executed_at=result.executed_at or self._clock(),
        )

    def _filled_from_deal(
        self, child: ChildOrder, deal: Deal, requested: Decimal, point: Decimal, attempts: int
    ) -> tuple[ChildOrder, Fill]:
        return self._fill(
            child,
            volume=deal.volume,
            price=deal.price,
            requested=requested,
            point=point,
            attempts=attempts,
            retcode=retcodes.DONE,
            text="found by tag after an unknown outcome",
            deal_ticket=deal.ticket,
            order_ticket=deal.order_ticket,
            position_ticket=deal.position_ticket,
            executed_at=deal.executed_at,
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
        direction = 1 if child.side is Side.BUY else -1
        slippage = ((price - requested) * direction / point).quantize(Decimal("0.1"))
        state = (
            ChildOrderState.FILLED if volume >= child.volume else ChildOrderState.PARTIALLY_FILLED
        )
        if child.state is ChildOrderState.UNKNOWN or child.state is ChildOrderState.SENT:
            updated = child.moved_to(
                state,
                self._clock(),
                filled_volume=volume,
                requested_price=requested,
                fill_price=price,
                slippage_points=slippage,
                retcode=retcode,
                status_text=text,
                broker_order_ticket=order_ticket,
                broker_deal_ticket=deal_ticket,
                position_ticket=position_ticket,
                attempts=attempts,
                filled_at=executed_at,
            )
        else:
            raise AssertionError(f"child {child.child_order_id} filled from {child.state.name}")
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
