"""The one interface the engine trades through, whatever the backend.

| method            | required | what it does                                                   |
|-------------------|----------|----------------------------------------------------------------|
| account_info()    | yes      | balance, equity, margin of the logged-in account               |
| symbol_spec(s)    | yes      | volume and price rules of a broker symbol (SymbolNotFound)     |
| quote(s)          | yes      | the current bid/ask                                            |
| send(request)     | yes      | one trade request (deal, pending, modify, remove, SL/TP,       |
|                   |          | close-by); the broker's answer with its MT5 retcode; a deal at |
|                   |          | market is priced by the terminal (gateway.terminals.market)    |
| find_by_tag(tag)  | yes      | orders, positions and deals carrying a child's tag (reconcile) |
| positions()       | yes      | open positions                                                 |
| pending_orders()  | yes      | pending orders                                                 |
| deals(since)      | yes      | executed deals since a time                                    |
| health()          | yes      | connected or not, and why                                      |
| close()           | yes      | releases the connection                                        |

A backend is used by one engine task at a time per terminal (MetaTrader terminals trade
serially); the engine guarantees it, backends may assume it.

Optional, beside Terminal: a backend told of its account's trade changes as they happen may also
be a `TradeEventSource` (the MT4 bridge, whose EA of protocol 2 pushes them); a source watcher
then looks at such a source at once instead of at its next interval. Other backends need not.

| member                       | what it does                                                  |
|------------------------------|---------------------------------------------------------------|
| trade_events                 | how many trade changes the terminal was told of (only grows)  |
| wait_for_trade_event(after=) | returns once trade_events exceeds `after` (at once if it does |
|                              | already); the caller bounds the wait                          |
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable

from gateway.domain.account_history import DealEntry
from gateway.domain.accounts import MarginMode
from gateway.domain.orders import FillingPolicy, OrderType, Side, TimeInForce
from gateway.domain.symbols import SymbolSpec


class TradeAction(enum.Enum):
    """MT5 trade actions (TRADE_ACTION_*)."""

    DEAL = 1
    PENDING = 5
    SLTP = 6
    MODIFY = 7
    REMOVE = 8
    CLOSE_BY = 10


@dataclass(frozen=True, slots=True)
class OrderRequest:
    action: TradeAction
    symbol: str
    side: Side
    volume: Decimal
    # The child's tag, put in the broker comment; and the group's magic number.
    tag: str
    magic: int
    # The price the engine expects; None for "at market". PENDING: the order's price (the stop
    # price of a stop limit); MODIFY: the new price, None keeping the current one.
    # A DEAL at market is priced by the terminal itself, with its own bid/ask read right before
    # sending (where the request leaves, not one round trip earlier at the gateway), and the
    # result says which price that was (OrderResult.request_price).
    price: Decimal | None = None
    deviation_points: int = 0
    # A DEAL at market is sent only while the terminal's price (ask for a buy, bid for a sell)
    # lies within [lowest_price, highest_price]; outside, the terminal answers PRICE_CHANGED
    # with its bid/ask and sends nothing. None: no bound on that side.
    lowest_price: Decimal | None = None
    highest_price: Decimal | None = None
    # None: no SL/TP. MODIFY and SLTP set both, as MT5 does: None removes one.
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    # The position to close or modify, for closing deals and SLTP.
    position_ticket: int = 0
    # MARKET for deals; LIMIT, STOP or STOP_LIMIT (with `side`) for pending orders, whose
    # trigger price is `price`.
    order_type: OrderType = OrderType.MARKET
    # STOP_LIMIT: the price of the limit order placed when `price` is reached (MT5 stoplimit).
    stop_limit_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    # TimeInForce.SPECIFIED: when the pending order expires (UTC).
    expires_at: datetime | None = None
    # What happens to volume the market cannot fill at once (MT5 type_filling; FOK is MT5's 0).
    filling: FillingPolicy = FillingPolicy.FOK
    # The pending order to modify or remove (MODIFY, REMOVE).
    order_ticket: int = 0
    # CLOSE_BY: the opposite position that closes `position_ticket`.
    position_by: int = 0


@dataclass(frozen=True, slots=True)
class OrderResult:
    """The broker's answer (MT5 MqlTradeResult)."""

    retcode: int
    text: str
    order_ticket: int = 0
    deal_ticket: int = 0
    position_ticket: int = 0
    volume: Decimal = Decimal(0)
    price: Decimal | None = None
    bid: Decimal | None = None
    ask: Decimal | None = None
    executed_at: datetime | None = None
    # A DEAL at market: the price the terminal sent it at. None when it sent nothing (refused
    # before sending, e.g. outside its price band) or the request carried its own price.
    request_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class AccountInfo:
    login: int
    currency: str
    leverage: int
    margin_mode: MarginMode
    balance: Decimal
    equity: Decimal
    margin: Decimal
    free_margin: Decimal
    time: datetime


@dataclass(frozen=True, slots=True)
class Quote:
    symbol: str
    bid: Decimal
    ask: Decimal
    time: datetime


@dataclass(frozen=True, slots=True)
class Position:
    ticket: int
    symbol: str
    side: Side
    volume: Decimal
    price_open: Decimal
    magic: int
    comment: str
    opened_at: datetime
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None


@dataclass(frozen=True, slots=True)
class PendingOrder:
    ticket: int
    symbol: str
    side: Side
    volume: Decimal
    price: Decimal
    magic: int
    comment: str
    placed_at: datetime
    order_type: OrderType = OrderType.LIMIT
    stop_limit_price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    expires_at: datetime | None = None
    filling: FillingPolicy = FillingPolicy.RETURN
    # The volume first asked for; `volume` is what is left after partial fills.
    volume_initial: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Deal:
    ticket: int
    order_ticket: int
    position_ticket: int
    symbol: str
    side: Side
    volume: Decimal
    price: Decimal
    magic: int
    comment: str
    executed_at: datetime
    entry: DealEntry = DealEntry.IN
    # Realized profit in the account currency (closing deals); credited to the balance.
    profit: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class TaggedRecords:
    """Everything a terminal holds under one tag: the basis of reconciliation."""

    orders: tuple[PendingOrder, ...] = field(default=())
    positions: tuple[Position, ...] = field(default=())
    deals: tuple[Deal, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class TerminalHealth:
    connected: bool
    detail: str = ""


class TerminalError(Exception):
    """The terminal could not be asked (disconnected, crashed): the outcome is unknown."""


class SymbolNotFound(Exception):
    """The broker of this terminal has no such symbol."""


@runtime_checkable
class Terminal(Protocol):
    @property
    def account_id(self) -> str: ...

    async def account_info(self) -> AccountInfo: ...

    async def symbol_spec(self, symbol: str) -> SymbolSpec: ...

    async def quote(self, symbol: str) -> Quote: ...

    async def send(self, request: OrderRequest) -> OrderResult: ...

    async def find_by_tag(self, tag: str) -> TaggedRecords: ...

    async def positions(self) -> list[Position]: ...

    async def pending_orders(self) -> list[PendingOrder]: ...

    async def deals(self, since: datetime) -> list[Deal]: ...

    async def health(self) -> TerminalHealth: ...

    async def close(self) -> None: ...


@runtime_checkable
class TradeEventSource(Protocol):
    """Optional (see the module's table). A count and not a bare "something changed", so that
    every reader (two groups may mirror one source) catches a change made while it was busy
    looking: each waits for changes after the count it last saw."""

    @property
    def trade_events(self) -> int: ...

    async def wait_for_trade_event(self, *, after: int) -> None: ...
