"""A simulated broker on a clock the test moves, and trade requests as MT5 sends them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway.domain.accounts import MarginMode
from gateway.domain.orders import OrderType, Side
from gateway.domain.symbols import SymbolSpec
from gateway.terminals.protocol import OrderRequest, TradeAction
from gateway.terminals.sim import SimBroker, SimSymbol, SymbolRules
from gateway.terminals.sim.quotes import QuoteSettings

D = Decimal
EURUSD = SymbolSpec(
    "EURUSD", 5, D(100000), D("0.01"), D("0.01"), D(100), D("0.00001"), D(1), stops_level=10
)
QUOTES = QuoteSettings(initial_mid=D("1.08450"), spread_points=8, step_points=3, digits=5)
HEDGING, NETTING = 1, 2
OPENING_BALANCE = D(10_000)
# A Monday, 12:00 UTC.
MONDAY_NOON = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
TICK_MS = 1_000


class Clock:
    """Nanoseconds since the epoch, moved by the test; one quote tick per second."""

    def __init__(self, start: datetime = MONDAY_NOON) -> None:
        self.ns = int(start.timestamp()) * 1_000_000_000

    def __call__(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += int(seconds * 1_000_000_000)


def make_broker(
    clock: Clock | None = None,
    *,
    rules: SymbolRules | None = None,
    state_path: Path | None = None,
    balance: Decimal = OPENING_BALANCE,
) -> SimBroker:
    """Account 1 hedging, account 2 netting, both with `balance` USD at 1:100."""
    sim = SimBroker(
        [SimSymbol(EURUSD, QUOTES, rules or SymbolRules())],
        seed=3,
        tick_interval_ms=TICK_MS,
        state_path=state_path,
        clock_ns=clock or Clock(),
    )
    sim.open_account(HEDGING, balance=balance)
    sim.open_account(NETTING, balance=balance, margin_mode=MarginMode.NETTING)
    return sim


def deal(side: Side, volume: str, tag: str = "mam:T", **fields: Any) -> OrderRequest:
    return OrderRequest(TradeAction.DEAL, "EURUSD", side, D(volume), tag, 7, **fields)


def pending(
    side: Side,
    order_type: OrderType,
    volume: str,
    price: Decimal | None,
    tag: str = "mam:P",
    **fields: Any,
) -> OrderRequest:
    return OrderRequest(
        TradeAction.PENDING,
        "EURUSD",
        side,
        D(volume),
        tag,
        7,
        price=price,
        order_type=order_type,
        **fields,
    )


def on_ticket(action: TradeAction, **fields: Any) -> OrderRequest:
    """A request about an existing order or position (MODIFY, REMOVE, SLTP, CLOSE_BY)."""
    return OrderRequest(action, "EURUSD", Side.BUY, D(0), "mam:M", 7, **fields)


def points(count: int) -> Decimal:
    return EURUSD.point * count
