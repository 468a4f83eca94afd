"""One simulated account's books: balance, positions, pending orders, deals.

Every change goes through a method here so that it is also written down in the account's
journal: the state file persists exactly the journaled rows, in one transaction per request.
Booking follows MT5: on a hedging account each entry deal opens its own position (ticket =
the opening order's ticket) and a partial close keeps the ticket; on a netting account there
is one position per symbol, which opposite deals reduce, close or reverse.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from gateway.domain.account_history import DealEntry
from gateway.domain.accounts import MarginMode
from gateway.domain.orders import Side
from gateway.domain.symbols import SymbolSpec
from gateway.terminals.protocol import Deal, PendingOrder, Position
from gateway.terminals.sim import money


@dataclass(slots=True)
class Journal:
    """What changed since the last commit; None marks a deleted row."""

    account: bool = False
    positions: dict[int, Position | None] = field(default_factory=dict)
    orders: dict[int, PendingOrder | None] = field(default_factory=dict)
    deals: list[Deal] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.account or bool(self.positions or self.orders or self.deals)

    def clear(self) -> None:
        self.account = False
        self.positions.clear()
        self.orders.clear()
        self.deals.clear()


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution to book: who, what, at which price, under which tickets."""

    symbol: str
    side: Side
    volume: Decimal
    price: Decimal
    magic: int
    comment: str
    order_ticket: int
    deal_ticket: int
    executed_at: datetime
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None


@dataclass(slots=True)
class Exposure:
    """All positions of one symbol and side, summed: enough for their profit and margin
    without walking every position on every request."""

    volume: Decimal = Decimal(0)
    # Sum of volume x open price.
    cost: Decimal = Decimal(0)


@dataclass(slots=True)
class SimAccount:
    login: int
    currency: str
    leverage: int
    margin_mode: MarginMode
    balance: Decimal
    positions: dict[int, Position] = field(default_factory=dict)
    orders: dict[int, PendingOrder] = field(default_factory=dict)
    deals: list[Deal] = field(default_factory=list)
    journal: Journal = field(default_factory=Journal)
    # Reconciliation looks deals up by tag on every unknown outcome.
    deals_by_tag: dict[str, list[Deal]] = field(default_factory=dict)
    exposures: dict[tuple[str, Side], Exposure] = field(default_factory=dict)

    # -- journaled changes -------------------------------------------------------------------

    def credit(self, amount: Decimal) -> None:
        if amount:
            self.balance += amount
            self.journal.account = True

    def put_position(self, position: Position) -> None:
        self.restore_position(position)
        self.journal.positions[position.ticket] = position

    def drop_position(self, ticket: int) -> None:
        self._expose(self.positions.pop(ticket), -1)
        self.journal.positions[ticket] = None

    def restore_position(self, position: Position) -> None:
        """Sets a position without journaling it (loading from the state file)."""
        previous = self.positions.get(position.ticket)
        if previous is not None:
            self._expose(previous, -1)
        self.positions[position.ticket] = position
        self._expose(position, 1)

    def _expose(self, position: Position, sign: int) -> None:
        exposure = self.exposures.setdefault((position.symbol, position.side), Exposure())
        exposure.volume += sign * position.volume
        exposure.cost += sign * position.volume * position.price_open

    def put_order(self, order: PendingOrder) -> None:
        self.orders[order.ticket] = order
        self.journal.orders[order.ticket] = order

    def drop_order(self, ticket: int) -> None:
        del self.orders[ticket]
        self.journal.orders[ticket] = None

    def add_deal(self, deal: Deal) -> None:
        self.remember_deal(deal)
        self.journal.deals.append(deal)
        self.credit(deal.profit)

    def remember_deal(self, deal: Deal) -> None:
        """Adds a deal to the history without journaling it (loading from the state file)."""
        self.deals.append(deal)
        self.deals_by_tag.setdefault(deal.comment, []).append(deal)

    # -- booking ----------------------------------------------------------------------------

    def netting_position(self, symbol: str) -> Position | None:
        return next((p for p in self.positions.values() if p.symbol == symbol), None)

    def book(self, spec: SymbolSpec, fill: Fill, position_ticket: int = 0) -> Deal:
        """Books an execution: closes (part of) `position_ticket` if given, else opens a
        position (hedging) or nets into the symbol's position (netting). The caller has
        checked that a given position exists, is opposite and holds at least the volume."""
        if position_ticket:
            return self._close(spec, self.positions[position_ticket], fill, DealEntry.OUT)
        if self.margin_mode is MarginMode.HEDGING:
            # Later fills of the same order (the rest of a RETURN order) add to its position.
            same_order = self.positions.get(fill.order_ticket)
            if same_order is not None and same_order.side is fill.side:
                return self._increase(spec, same_order, fill)
            return self._open(fill)
        existing = self.netting_position(fill.symbol)
        if existing is None:
            return self._open(fill)
        if existing.side is fill.side:
            return self._increase(spec, existing, fill)
        if fill.volume <= existing.volume:
            return self._close(spec, existing, fill, DealEntry.OUT)
        return self._reverse(spec, existing, fill)

    def close_by(
        self, spec: SymbolSpec, position: Position, by: Position, fill: Fill, by_deal_ticket: int
    ) -> tuple[Deal, Deal]:
        """Closes the overlapping volume of two opposite positions against each other: the
        first at the second's open price (its whole profit), the second at its own (none)."""
        volume = min(position.volume, by.volume)
        first = dataclasses.replace(fill, volume=volume, price=by.price_open, side=by.side)
        second = dataclasses.replace(
            fill, volume=volume, price=by.price_open, side=position.side, deal_ticket=by_deal_ticket
        )
        return (
            self._close(spec, position, first, DealEntry.OUT_BY),
            self._close(spec, by, second, DealEntry.OUT_BY),
        )

    def _open(self, fill: Fill) -> Deal:
        self.put_position(
            Position(
                ticket=fill.order_ticket,
                symbol=fill.symbol,
                side=fill.side,
                volume=fill.volume,
                price_open=fill.price,
                magic=fill.magic,
                comment=fill.comment,
                opened_at=fill.executed_at,
                stop_loss=fill.stop_loss,
                take_profit=fill.take_profit,
            )
        )
        return self._deal(fill, fill.order_ticket, DealEntry.IN, Decimal(0))

    def _increase(self, spec: SymbolSpec, existing: Position, fill: Fill) -> Deal:
        volume = existing.volume + fill.volume
        average = (existing.price_open * existing.volume + fill.price * fill.volume) / volume
        self.put_position(
            dataclasses.replace(
                existing,
                volume=volume,
                price_open=spec.normalize_price(average),
                stop_loss=fill.stop_loss if fill.stop_loss is not None else existing.stop_loss,
                take_profit=(
                    fill.take_profit if fill.take_profit is not None else existing.take_profit
                ),
            )
        )
        return self._deal(fill, existing.ticket, DealEntry.IN, Decimal(0))

    def _close(self, spec: SymbolSpec, position: Position, fill: Fill, entry: DealEntry) -> Deal:
        realized = money.profit(spec, position.side, position.price_open, fill.volume, fill.price)
        rest = position.volume - fill.volume
        if rest > 0:
            self.put_position(dataclasses.replace(position, volume=rest))
        else:
            self.drop_position(position.ticket)
        return self._deal(fill, position.ticket, entry, realized)

    def _reverse(self, spec: SymbolSpec, existing: Position, fill: Fill) -> Deal:
        realized = money.profit(
            spec, existing.side, existing.price_open, existing.volume, fill.price
        )
        # The netting position keeps its ticket through a reversal.
        self.put_position(
            dataclasses.replace(
                existing,
                side=fill.side,
                volume=fill.volume - existing.volume,
                price_open=fill.price,
                magic=fill.magic,
                comment=fill.comment,
                opened_at=fill.executed_at,
                stop_loss=fill.stop_loss,
                take_profit=fill.take_profit,
            )
        )
        return self._deal(fill, existing.ticket, DealEntry.INOUT, realized)

    def _deal(self, fill: Fill, position_ticket: int, entry: DealEntry, profit: Decimal) -> Deal:
        deal = Deal(
            ticket=fill.deal_ticket,
            order_ticket=fill.order_ticket,
            position_ticket=position_ticket,
            symbol=fill.symbol,
            side=fill.side,
            volume=fill.volume,
            price=fill.price,
            magic=fill.magic,
            comment=fill.comment,
            executed_at=fill.executed_at,
            entry=entry,
            profit=profit,
        )
        self.add_deal(deal)
        return deal
