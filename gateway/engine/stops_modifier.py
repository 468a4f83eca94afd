"""ModifyMasterOrder: a master order's stop loss and take profit changed on every open position.

Each account that still holds part of the order's position gets one TRADE_ACTION_SLTP request
for that position (the opening child's ticket on hedging accounts, the symbol's net position on
netting accounts), all concurrently under the same limits as dispatch: the global slots, one
request at a time per terminal, a timeout per request. Every account's answer is returned and
stored as an order event of its child. A modification executes no deal, so a retry is harmless:
a position already at the asked stops answers NO_CHANGES, which counts as done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from gateway.domain import retcodes
from gateway.domain.accounts import MarginMode
from gateway.domain.copying import child_terms
from gateway.domain.ids import AccountId, ChildOrderId
from gateway.domain.order_events import OrderEvent
from gateway.domain.orders import ChildOrder, MasterOrder, Side
from gateway.domain.retcodes import RetcodeClass
from gateway.engine.terminal_registry import TerminalRegistry
from gateway.store import Store
from gateway.terminals.protocol import OrderRequest, Position, TerminalError, TradeAction

log = logging.getLogger(__name__)

# "0" on the wire: remove the stop.
REMOVE = Decimal(0)


@dataclass(frozen=True, slots=True)
class StopsChange:
    # None: leave as it is; REMOVE (0): remove the stop.
    stop_loss: Decimal | None
    take_profit: Decimal | None


@dataclass(frozen=True, slots=True)
class StopsOutcome:
    account_id: AccountId
    child_order_id: ChildOrderId
    retcode: int
    text: str

    @property
    def done(self) -> bool:
        return retcodes.classify(self.retcode) is RetcodeClass.SUCCESS


class StopsModifier:
    def __init__(
        self,
        store: Store,
        registry: TerminalRegistry,
        clock: Callable[[], datetime],
        *,
        slots: asyncio.Semaphore,
        request_timeout_s: float,
    ) -> None:
        self._store = store
        self._registry = registry
        self._clock = clock
        self._slots = slots
        self._timeout_s = request_timeout_s

    async def modify(
        self,
        side: Side,
        open_children: Sequence[ChildOrder],
        margin_modes: dict[str, MarginMode],
        change: StopsChange,
    ) -> list[StopsOutcome]:
        """One SLTP request per account holding an open part of the order of `side`; its
        answers. An account whose member does not copy stops is left as it is (NO_CHANGES);
        a reversed copy (its child on the other side) gets the change with SL and TP swapped."""
        first_per_account: dict[str, ChildOrder] = {}
        for child in open_children:
            first_per_account.setdefault(child.account_id, child)
        outcomes = await asyncio.gather(
            *(
                self._modify_one(child, margin_modes.get(child.account_id), change)
                if child.side is side
                else self._modify_one(
                    child,
                    margin_modes.get(child.account_id),
                    StopsChange(stop_loss=change.take_profit, take_profit=change.stop_loss),
                )
                for child in first_per_account.values()
            )
        )
        now = self._clock()
        await self._store.save_events(
            [
                OrderEvent(
                    0,
                    child.master_order_id,
                    child.child_order_id,
                    child.state,
                    f"stops {_describe(change)}: retcode {o.retcode}: {o.text}",
                    now,
                )
                for child, o in zip(first_per_account.values(), outcomes, strict=True)
            ]
        )
        return list(outcomes)

    async def modify_resting(
        self, master: MasterOrder, placed: Sequence[ChildOrder], change: StopsChange
    ) -> list[StopsOutcome]:
        """One MODIFY request per resting pending child: the master spec's (new) price, stop
        limit price, stops and expiration. Answers stored as order events, like SL/TP."""
        outcomes = await asyncio.gather(*(self._modify_order(master, c) for c in placed))
        now = self._clock()
        await self._store.save_events(
            [
                OrderEvent(
                    0,
                    child.master_order_id,
                    child.child_order_id,
                    child.state,
                    f"pending order price={master.spec.price} {_describe(change)}: "
                    f"retcode {o.retcode}: {o.text}",
                    now,
                )
                for child, o in zip(placed, outcomes, strict=True)
            ]
        )
        return list(outcomes)

    async def _modify_order(self, master: MasterOrder, child: ChildOrder) -> StopsOutcome:
        def outcome(retcode: int, text: str) -> StopsOutcome:
            return StopsOutcome(child.account_id, child.child_order_id, retcode, text)

        terminal = self._registry.get(child.account_id)
        if terminal is None:
            return outcome(retcodes.CONNECTION, "no terminal connected")
        spec = master.spec
        terms = child_terms(spec, child)
        try:
            async with (
                self._slots,
                self._registry.lock(child.account_id),
                asyncio.timeout(self._timeout_s),
            ):
                result = await terminal.send(
                    OrderRequest(
                        action=TradeAction.MODIFY,
                        symbol=child.symbol,
                        side=child.side,
                        volume=Decimal(0),
                        tag=child.tag,
                        magic=child.magic,
                        order_ticket=child.broker_order_ticket,
                        price=spec.price,
                        order_type=terms.order_type,
                        stop_limit_price=spec.stop_limit_price,
                        stop_loss=terms.stop_loss,
                        take_profit=terms.take_profit,
                        time_in_force=spec.time_in_force,
                        expires_at=spec.expire_time,
                    )
                )
        except (TimeoutError, TerminalError) as error:
            return outcome(retcodes.TIMEOUT, f"outcome unknown: {error or 'timeout'}")
        return outcome(result.retcode, result.text)

    async def _modify_one(
        self, child: ChildOrder, margin_mode: MarginMode | None, change: StopsChange
    ) -> StopsOutcome:
        def outcome(retcode: int, text: str) -> StopsOutcome:
            return StopsOutcome(child.account_id, child.child_order_id, retcode, text)

        if not child.stops_copied:
            return outcome(retcodes.NO_CHANGES, "the member does not copy stops")
        terminal = self._registry.get(child.account_id)
        if terminal is None:
            return outcome(retcodes.CONNECTION, "no terminal connected")
        try:
            async with (
                self._slots,
                self._registry.lock(child.account_id),
                asyncio.timeout(self._timeout_s),
            ):
                position = _position_of(child, margin_mode, await terminal.positions())
                if position is None:
                    return outcome(retcodes.POSITION_CLOSED, "no open position of this order")
                result = await terminal.send(
                    OrderRequest(
                        action=TradeAction.SLTP,
                        symbol=position.symbol,
                        side=position.side,
                        volume=position.volume,
                        tag=child.tag,
                        magic=child.magic,
                        position_ticket=position.ticket,
                        stop_loss=_new(change.stop_loss, position.stop_loss),
                        take_profit=_new(change.take_profit, position.take_profit),
                    )
                )
        except (TimeoutError, TerminalError) as error:
            # Nothing traded either way: the caller may simply modify again.
            return outcome(retcodes.TIMEOUT, f"outcome unknown: {error or 'timeout'}")
        return outcome(result.retcode, result.text)


def _position_of(
    child: ChildOrder, margin_mode: MarginMode | None, positions: list[Position]
) -> Position | None:
    if margin_mode is MarginMode.NETTING:
        return next((p for p in positions if p.symbol == child.symbol), None)
    return next((p for p in positions if p.ticket == child.position_ticket), None)


def _new(asked: Decimal | None, current: Decimal | None) -> Decimal | None:
    if asked is None:
        return current
    return None if asked == REMOVE else asked


def _describe(change: StopsChange) -> str:
    def one(name: str, value: Decimal | None) -> str:
        if value is None:
            return f"{name} kept"
        return f"{name} removed" if value == REMOVE else f"{name}={value}"

    return f"{one('sl', change.stop_loss)}, {one('tp', change.take_profit)}"
