"""The demo's manager: a seeded strategy trading by hand on the demo group's source account.

`make run` makes a simulated account, `demo-source`, the source of group `demo` (mirroring,
docs/mirroring.md) and runs this strategy on its terminal, straight through the Terminal
protocol as a manager at an MT4/MT5 terminal would trade: every `interval_s` one step of a
cycle that opens a position, scales out of part of it, moves its stops, closes it, places a
pending order and cancels it. The gateway sees each step at its next look at the source and
does it on every member of the group (`mamctl signals watch`, `mamctl watch fills`).

Sides, volumes and distances are drawn from a generator seeded with `seed`, so a run is the
same every time. A step that fails (a requote, a closed market) is logged and the cycle starts
again from a clean account: whatever the source still holds is closed or cancelled first, as
it is at start (a position left from before a restart, say).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from gateway.domain.orders import OrderType, Side
from gateway.domain.symbols import SymbolSpec
from gateway.terminals.protocol import (
    OrderRequest,
    OrderResult,
    Terminal,
    TerminalError,
    TradeAction,
)

log = logging.getLogger(__name__)

# MT5 retcodes of a request done (and of a pending order placed).
_DONE = frozenset({10008, 10009})
# Multiples of the symbol's minimum volume a position is opened with.
_LOTS = (100, 150, 200, 300)
# Stop and pending-order distances from the market, in points.
_STOP_POINTS = (300, 400, 500, 600, 800)
_PENDING_POINTS = (500, 700, 900, 1200)


class StepFailed(Exception):
    """A request of the strategy was not done; the cycle starts again."""


@dataclass
class _Held:
    """What the current cycle holds at the source."""

    side: Side = Side.BUY
    position_ticket: int = 0
    volume: Decimal = Decimal(0)
    order_ticket: int = 0


class DemoStrategy:
    def __init__(
        self,
        terminal_of: Callable[[], Terminal | None],
        *,
        symbol: SymbolSpec,
        interval_s: float,
        seed: int,
    ) -> None:
        """`terminal_of`: the source account's terminal as it is attached now (None while it
        is not)."""
        self._terminal_of = terminal_of
        self._symbol = symbol
        self._interval_s = interval_s
        self._random = random.Random(seed)
        self._held = _Held()
        # The steps of one cycle, in order; a clean-up comes first and after a failure.
        self._cycle: tuple[Callable[[Terminal], Awaitable[None]], ...] = (
            self._open,
            self._scale_out,
            self._move_stops,
            self._close,
            self._place_pending,
            self._cancel_pending,
        )
        self._next = -1  # -1: clean up first
        self._task: asyncio.Task[None] | None = None
        self.steps_done = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="demo-strategy")
        log.info(
            "demo strategy trading %s on the source account every %g s",
            self._symbol.name,
            self._interval_s,
        )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            terminal = self._terminal_of()
            if terminal is None:
                continue
            try:
                await self.step(terminal)
            except asyncio.CancelledError:
                raise
            except (StepFailed, TerminalError, TimeoutError) as error:
                log.warning("demo strategy: %s; starting the cycle again", error)
                self._next = -1
            except Exception:
                log.exception("demo strategy: a step failed; starting the cycle again")
                self._next = -1

    async def step(self, terminal: Terminal) -> None:
        """One step of the cycle (or the clean-up before it)."""
        if self._next < 0:
            await self._clean_up(terminal)
            self._next = 0
            return
        step = self._cycle[self._next]
        await step(terminal)
        self._next = (self._next + 1) % len(self._cycle)
        self.steps_done += 1

    # -- the steps ----------------------------------------------------------------------------

    async def _open(self, terminal: Terminal) -> None:
        side = self._random.choice((Side.BUY, Side.SELL))
        volume = self._symbol.volume_min * self._random.choice(_LOTS)
        result = await self._send(terminal, self._deal(side, volume), "open a position")
        self._held = _Held(side=side, position_ticket=result.position_ticket, volume=volume)
        log.info("demo strategy: opened %s %s %s", side.value, volume, self._symbol.name)

    async def _scale_out(self, terminal: Terminal) -> None:
        held = self._held
        part = self._floor_to_step(
            held.volume * self._random.choice((Decimal("0.3"), Decimal("0.5")))
        )
        part = max(part, self._symbol.volume_min)
        await self._send(
            terminal,
            self._deal(held.side.opposite, part, position=held.position_ticket),
            "scale out",
        )
        held.volume -= part
        log.info("demo strategy: scaled out %s of ticket %d", part, held.position_ticket)

    async def _move_stops(self, terminal: Terminal) -> None:
        held = self._held
        quote = await terminal.quote(self._symbol.name)
        stop = self._points(self._random.choice(_STOP_POINTS))
        target = self._points(self._random.choice(_STOP_POINTS))
        if held.side is Side.BUY:
            stop_loss, take_profit = quote.bid - stop, quote.ask + target
        else:
            stop_loss, take_profit = quote.ask + stop, quote.bid - target
        request = OrderRequest(
            action=TradeAction.SLTP,
            symbol=self._symbol.name,
            side=held.side,
            volume=Decimal(0),
            tag="",
            magic=0,
            position_ticket=held.position_ticket,
            stop_loss=self._price(stop_loss),
            take_profit=self._price(take_profit),
        )
        await self._send(terminal, request, "move the stops")
        log.info("demo strategy: stops of ticket %d moved", held.position_ticket)

    async def _close(self, terminal: Terminal) -> None:
        held = self._held
        await self._send(
            terminal,
            self._deal(held.side.opposite, held.volume, position=held.position_ticket),
            "close the position",
        )
        log.info("demo strategy: closed ticket %d", held.position_ticket)
        self._held = _Held()

    async def _place_pending(self, terminal: Terminal) -> None:
        side = self._random.choice((Side.BUY, Side.SELL))
        volume = self._symbol.volume_min * self._random.choice(_LOTS)
        quote = await terminal.quote(self._symbol.name)
        away = self._points(self._random.choice(_PENDING_POINTS))
        # A limit order well away from the market: it rests until it is cancelled.
        price = quote.ask - away if side is Side.BUY else quote.bid + away
        request = OrderRequest(
            action=TradeAction.PENDING,
            symbol=self._symbol.name,
            side=side,
            volume=volume,
            tag="",
            magic=0,
            price=self._price(price),
            order_type=OrderType.LIMIT,
        )
        result = await self._send(terminal, request, "place a pending order")
        self._held = _Held(side=side, order_ticket=result.order_ticket, volume=volume)
        log.info("demo strategy: placed %s LIMIT %s at %s", side.value, volume, request.price)

    async def _cancel_pending(self, terminal: Terminal) -> None:
        held = self._held
        await self._send(terminal, self._remove(held.order_ticket), "cancel the pending order")
        log.info("demo strategy: cancelled order %d", held.order_ticket)
        self._held = _Held()

    async def _clean_up(self, terminal: Terminal) -> None:
        """Closes what the source holds and cancels its pending orders: a clean start."""
        for order in await terminal.pending_orders():
            await self._send(terminal, self._remove(order.ticket), "cancel a pending order")
        for position in await terminal.positions():
            await self._send(
                terminal,
                self._deal(position.side.opposite, position.volume, position=position.ticket),
                "close a position",
            )
        self._held = _Held()

    # -- requests -----------------------------------------------------------------------------

    def _deal(self, side: Side, volume: Decimal, *, position: int = 0) -> OrderRequest:
        return OrderRequest(
            action=TradeAction.DEAL,
            symbol=self._symbol.name,
            side=side,
            volume=volume,
            tag="",
            magic=0,
            position_ticket=position,
            deviation_points=50,
        )

    def _remove(self, ticket: int) -> OrderRequest:
        return OrderRequest(
            action=TradeAction.REMOVE,
            symbol=self._symbol.name,
            side=Side.BUY,
            volume=Decimal(0),
            tag="",
            magic=0,
            order_ticket=ticket,
        )

    async def _send(self, terminal: Terminal, request: OrderRequest, what: str) -> OrderResult:
        result = await terminal.send(request)
        if result.retcode not in _DONE:
            raise StepFailed(f"could not {what}: retcode {result.retcode} {result.text}")
        return result

    def _points(self, count: int) -> Decimal:
        return self._symbol.point * count

    def _price(self, value: Decimal) -> Decimal:
        tick = self._symbol.tick_size
        return (value / tick).to_integral_value() * tick

    def _floor_to_step(self, volume: Decimal) -> Decimal:
        step = self._symbol.volume_step
        return (volume / step).to_integral_value(rounding=ROUND_DOWN) * step
