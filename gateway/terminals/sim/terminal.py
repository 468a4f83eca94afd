"""One simulated account's terminal: the SimBroker behind the Terminal protocol, with latency."""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal

from gateway.domain.symbols import SymbolSpec
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
)
from gateway.terminals.sim.broker import SimBroker


class SimTerminal:
    def __init__(
        self, account_id: str, login: int, broker: SimBroker, *, latency_ms: int = 0
    ) -> None:
        self._account_id = account_id
        self._login = login
        self._broker = broker
        self._latency_s = latency_ms / 1000
        self._closed = False
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests_sent = 0

    @property
    def account_id(self) -> str:
        return self._account_id

    def _check(self) -> None:
        if self._closed:
            raise TerminalError(f"terminal of account {self._account_id} is closed")

    async def account_info(self) -> AccountInfo:
        self._check()
        return self._broker.account_info(self._login)

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

    async def send(self, request: OrderRequest) -> OrderResult:
        self._check()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self._latency_s:
                # The broker executes at the price it sees when the request arrives.
                await asyncio.sleep(self._latency_s)
            self.requests_sent += 1
            return self._broker.execute(self._login, request)
        finally:
            self.in_flight -= 1

    async def find_by_tag(self, tag: str) -> TaggedRecords:
        self._check()
        return self._broker.find_by_tag(self._login, tag)

    async def positions(self) -> list[Position]:
        self._check()
        return self._broker.positions(self._login)

    async def pending_orders(self) -> list[PendingOrder]:
        self._check()
        return []

    async def deals(self, since: datetime) -> list[Deal]:
        self._check()
        return self._broker.deals(self._login, since)

    async def health(self) -> TerminalHealth:
        return TerminalHealth(connected=not self._closed, detail="simulated")

    async def close(self) -> None:
        self._closed = True

    def volume_total(self) -> Decimal:
        return sum((p.volume for p in self._broker.positions(self._login)), Decimal(0))
