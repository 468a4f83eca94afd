"""One simulated account's terminal: the SimBroker behind the Terminal protocol, with the
latency and the faults of a real connection to an MT5 trade server.

A request sent at time t with a latency d reaches the broker at t + d and is executed as of
then (its quote, its time), however late the event loop runs the execution: the broker
shares the gateway's loop, a real trade server does not.

Runtime controls for tests: `disconnect()` / `reconnect()` (every call fails while
disconnected), `faults.settings = FaultSettings(...)`, `faults.fail_next(Fault.X, ...)`,
`latency.settings = LatencySettings(...)`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal

from gateway.domain import retcodes
from gateway.domain.symbols import SymbolSpec
from gateway.terminals.market import needs_pricing, priced_at_market, sent_at
from gateway.terminals.protocol import (
    AccountInfo,
    Deal,
    OrderRequest,
    OrderResult,
    PendingOrder,
    Position,
    Quote,
    SymbolNotFound,
    TaggedRecords,
    TerminalError,
    TerminalHealth,
    TradeAction,
)
from gateway.terminals.sim.broker import SimBroker
from gateway.terminals.sim.faults import Fault, FaultInjector, FaultSettings
from gateway.terminals.sim.latency import LatencyModel, LatencySettings
from gateway.terminals.sim.state_file import BrokerStateError


class SimTerminal:
    def __init__(
        self,
        account_id: str,
        login: int,
        broker: SimBroker,
        *,
        latency_ms: int = 0,
        latency: LatencySettings | None = None,
        faults: FaultSettings | None = None,
        seed: int = 1,
    ) -> None:
        """`latency` overrides the fixed `latency_ms`. Latency and faults are drawn from
        generators seeded by (seed, login): each terminal has its own reproducible stream."""
        self._account_id = account_id
        self._login = login
        self._broker = broker
        self.latency = LatencyModel(
            latency or LatencySettings(ms=float(latency_ms)), seed=f"{seed}:{login}:latency"
        )
        self.faults = FaultInjector(faults or FaultSettings(), seed=f"{seed}:{login}:faults")
        self._closed = False
        self._disconnected = ""
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests_sent = 0

    @property
    def account_id(self) -> str:
        return self._account_id

    # -- connection -------------------------------------------------------------------------

    def disconnect(self, reason: str = "connection to the trade server lost") -> None:
        """Every call fails with TerminalError until `reconnect()`."""
        self._disconnected = reason

    def reconnect(self) -> None:
        self._disconnected = ""

    def _check(self) -> None:
        if self._closed:
            raise TerminalError(f"terminal of account {self._account_id} is closed")
        if self._disconnected:
            raise TerminalError(f"terminal of account {self._account_id}: {self._disconnected}")

    # -- queries ----------------------------------------------------------------------------

    async def account_info(self) -> AccountInfo:
        self._check()
        # As _broker_errors, inline: every order reads every account's money.
        try:
            return self._broker.account_info(self._login)
        except BrokerStateError as error:
            raise TerminalError(str(error)) from error

    async def symbol_spec(self, symbol: str) -> SymbolSpec:
        self._check()
        if not self._broker.has_symbol(symbol):
            raise SymbolNotFound(symbol)
        return self._broker.spec(symbol)

    async def quote(self, symbol: str) -> Quote:
        self._check()
        if not self._broker.has_symbol(symbol):
            raise SymbolNotFound(symbol)
        bid, ask, now = self._broker.feed.bid_ask(symbol)
        return Quote(symbol, bid, ask, now)

    async def find_by_tag(self, tag: str) -> TaggedRecords:
        self._check()
        with _broker_errors():
            return self._broker.find_by_tag(self._login, tag)

    async def positions(self) -> list[Position]:
        self._check()
        with _broker_errors():
            return self._broker.positions(self._login)

    async def pending_orders(self) -> list[PendingOrder]:
        self._check()
        with _broker_errors():
            return self._broker.pending_orders(self._login)

    async def deals(self, since: datetime) -> list[Deal]:
        self._check()
        with _broker_errors():
            return self._broker.deals(self._login, since)

    async def health(self) -> TerminalHealth:
        if self._closed:
            return TerminalHealth(connected=False, detail="closed")
        if self._disconnected:
            return TerminalHealth(connected=False, detail=self._disconnected)
        return TerminalHealth(connected=True, detail="simulated")

    async def close(self) -> None:
        self._closed = True

    def volume_total(self) -> Decimal:
        return sum((p.volume for p in self._broker.positions(self._login)), Decimal(0))

    # -- trading ----------------------------------------------------------------------------

    async def send(self, request: OrderRequest) -> OrderResult:
        self._check()
        feed = self._broker.feed
        sent_ns = feed.clock_ns()
        priced = needs_pricing(request) and feed.has(request.symbol)
        if priced:
            # Priced here, right before it leaves, as a terminal prices a market order.
            bid, ask = feed.prices_now(request.symbol, sent_ns)
            pricing = priced_at_market(request, bid, ask)
            if isinstance(pricing, OrderResult):
                return pricing
            request = pricing
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            delay_ms = self.latency.sample_ms()
            if delay_ms:
                await asyncio.sleep(delay_ms / 1000)
            self._check()
            self.requests_sent += 1
            # The broker executes at the quote and time of the request's arrival, not of
            # whenever the loop gets round to this line.
            arrived_ns = sent_ns + round(delay_ms * 1_000_000)
            result = await self._answer(request, self.faults.draw(), arrived_ns)
            return sent_at(result, request) if priced else result
        finally:
            self.in_flight -= 1

    async def _answer(
        self, request: OrderRequest, fault: Fault | None, arrived_ns: int
    ) -> OrderResult:
        is_deal = request.action is TradeAction.DEAL
        if fault is Fault.REQUOTE and is_deal and self._broker.has_symbol(request.symbol):
            bid, ask, _ = self._broker.feed.bid_ask_at(request.symbol, arrived_ns)
            return OrderResult(retcodes.REQUOTE, "Requote", bid=bid, ask=ask)
        if fault is Fault.PRICE_OFF:
            return OrderResult(retcodes.PRICE_OFF, "No prices")
        if fault is Fault.TOO_MANY_REQUESTS:
            return OrderResult(retcodes.TOO_MANY_REQUESTS, "Too many requests")
        if fault is Fault.DISCONNECT_BEFORE:
            raise TerminalError(
                f"terminal of account {self._account_id}: connection lost before sending"
            )
        if fault is Fault.HANG_BEFORE:
            await asyncio.sleep(self.faults.settings.hang_seconds)
            return OrderResult(retcodes.TIMEOUT, "Request canceled by timeout")
        available = None
        if fault is Fault.PARTIAL_FILL and is_deal and self._broker.has_symbol(request.symbol):
            available = self.faults.partial_volume(
                self._broker.spec(request.symbol), request.volume
            )
        # As _broker_errors, inline: this is every request's path.
        try:
            result = self._broker.execute(
                self._login, request, available_volume=available, at_ns=arrived_ns
            )
        except BrokerStateError as error:
            raise TerminalError(str(error)) from error
        if fault is Fault.DISCONNECT_AFTER:
            raise TerminalError(
                f"terminal of account {self._account_id}: connection lost awaiting the answer"
            )
        if fault is Fault.HANG_AFTER:
            await asyncio.sleep(self.faults.settings.hang_seconds)
        return result


@contextmanager
def _broker_errors() -> Iterator[None]:
    """A broken state file makes the terminal unusable, not the caller's request invalid."""
    try:
        yield
    except BrokerStateError as error:
        raise TerminalError(str(error)) from error
