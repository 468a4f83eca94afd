"""An Mt4Terminal wired to a fake EA over a real TCP connection, for tests.

`mt4_bridge(...)` yields everything (server, fake EA, terminal, broker) for tests that inject
faults; `connected_mt4_terminal(...)` yields just a connected Mt4Terminal on a fresh funded
hedging account, for the shared Terminal contract suite. Both take `protocol_max`: 2 (the
default) for an EA that pushes its trade pool, 1 for one from before trade events.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from gateway.domain.accounts import MarginMode
from gateway.domain.symbols import SymbolSpec
from gateway.terminals.mt4 import (
    BridgeSettings,
    Mt4BridgeServer,
    Mt4Terminal,
    Mt4TerminalSettings,
    SessionSettings,
)
from gateway.terminals.sim import SimBroker, SimSymbol
from gateway.terminals.sim.quotes import QuoteSettings
from tests.fakes.fake_mt4_ea import FakeMt4Ea

D = Decimal
TOKEN = "s3cret-token-of-the-test-ea"
LOGIN = 5_001
OPENING_BALANCE = D(10_000)
EURUSD = SymbolSpec(
    "EURUSD", 5, D(100000), D("0.01"), D("0.01"), D(100), D("0.00001"), D(1), stops_level=10
)
EURUSD_QUOTES = QuoteSettings(initial_mid=D("1.08450"), spread_points=8, step_points=3, digits=5)
# A Monday, 12:00 UTC.
MONDAY_NOON = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
# Heartbeats every 50 ms; only a silence over 5 s (a fault, or a starved CI machine) ends a
# session. The heartbeat test sets its own, shorter timeout.
FAST_SESSION = SessionSettings(heartbeat_s=0.05, timeout_s=5.0, trade_timeout_s=10.0)


class ManualClock:
    """Nanoseconds since the epoch, moved by the test (the quote walk stands still)."""

    def __init__(self, start: datetime = MONDAY_NOON) -> None:
        self.ns = int(start.timestamp()) * 1_000_000_000

    def __call__(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += int(seconds * 1_000_000_000)


def make_broker(clock: Callable[[], int] | None = None) -> SimBroker:
    """A simulated broker quoting EURUSD, on the test's clock (the real one by default)."""
    return SimBroker(
        [SimSymbol(EURUSD, EURUSD_QUOTES)],
        seed=3,
        tick_interval_ms=1_000,
        clock_ns=clock or time.time_ns,
    )


@dataclass
class Mt4Bridge:
    server: Mt4BridgeServer
    ea: FakeMt4Ea
    terminal: Mt4Terminal
    broker: SimBroker
    login: int


@asynccontextmanager
async def mt4_bridge(
    broker: SimBroker | None = None,
    *,
    login: int = LOGIN,
    balance: Decimal = OPENING_BALANCE,
    leverage: int = 100,
    session: SessionSettings = FAST_SESSION,
    terminal_settings: Mt4TerminalSettings | None = None,
    account_id: str = "mt4-account",
    connect: bool = True,
    token: str = TOKEN,
    settings: BridgeSettings | None = None,
    protocol_max: int = 2,
) -> AsyncIterator[Mt4Bridge]:
    """A bridge server on a free port, a fake EA for `login` (a hedging account opened with
    `balance` on `broker`), connected unless `connect` is False, and its Mt4Terminal. `token`
    is the login's token at the gateway and the EA's; `settings` replaces the bridge's (whose
    `session` then wins over the `session` argument)."""
    broker = broker or make_broker(ManualClock())
    broker.open_account(login, balance=balance, leverage=leverage, margin_mode=MarginMode.HEDGING)
    server = await Mt4BridgeServer.start(
        host="127.0.0.1",
        port=0,
        tokens={login: token}.get,
        settings=settings or BridgeSettings(session=session, hello_timeout_s=2.0),
    )
    host, port = server.address
    ea = FakeMt4Ea(broker, login, host=host, port=port, token=token, protocol_max=protocol_max)
    terminal = Mt4Terminal(account_id, login, server, settings=terminal_settings)
    try:
        if connect:
            welcome = await ea.connect()
            assert welcome["type"] == "welcome", welcome
            await server.wait_for_session(login)
        yield Mt4Bridge(server, ea, terminal, broker, login)
    finally:
        await terminal.close()
        await ea.disconnect()
        await server.close()


@asynccontextmanager
async def connected_mt4_terminal(
    broker: SimBroker | None = None,
    *,
    login: int = LOGIN,
    balance: Decimal = OPENING_BALANCE,
    leverage: int = 100,
    account_id: str = "mt4-account",
    protocol_max: int = 2,
) -> AsyncIterator[Mt4Terminal]:
    """A connected Mt4Terminal over a fake EA, for a fresh hedging account funded with
    `balance` on `broker` (default: EURUSD on the real clock)."""
    async with mt4_bridge(
        broker or make_broker(),
        login=login,
        balance=balance,
        leverage=leverage,
        session=SessionSettings(heartbeat_s=0.5, timeout_s=10.0, trade_timeout_s=30.0),
        account_id=account_id,
        protocol_max=protocol_max,
    ) as bridge:
        yield bridge.terminal
