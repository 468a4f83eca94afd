"""The simulated broker's books: accounts, positions, deals, and how it answers a trade request.

Plain synchronous Python; SimTerminal puts latency and asyncio around it. It answers with the
same retcodes and fields as an MT5 trade server: INVALID_VOLUME, REQUOTE beyond the deviation,
NO_MONEY when free margin does not cover the new margin, hedging and netting positions.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from gateway.domain import retcodes
from gateway.domain.accounts import MarginMode
from gateway.domain.orders import Side
from gateway.domain.symbols import SymbolSpec
from gateway.terminals.protocol import (
    AccountInfo,
    Deal,
    OrderRequest,
    OrderResult,
    Position,
    TaggedRecords,
    TradeAction,
)
from gateway.terminals.sim.quotes import QuoteFeed, QuoteSettings


@dataclass(frozen=True, slots=True)
class SimSymbol:
    spec: SymbolSpec
    quotes: QuoteSettings


@dataclass(slots=True)
class SimAccount:
    login: int
    currency: str
    leverage: int
    margin_mode: MarginMode
    balance: Decimal
    positions: dict[int, Position] = field(default_factory=dict)
    deals: list[Deal] = field(default_factory=list)


class SimBroker:
    def __init__(self, symbols: list[SimSymbol], *, seed: int = 1, tick_interval_ms: int = 250):
        self._specs = {s.spec.name: s.spec for s in symbols}
        self.feed = QuoteFeed(
            {s.spec.name: s.quotes for s in symbols}, seed=seed, tick_interval_ms=tick_interval_ms
        )
        self._accounts: dict[int, SimAccount] = {}
        self._tickets = itertools.count(1_000_001)

    # -- accounts ---------------------------------------------------------------------------

    def open_account(
        self,
        login: int,
        *,
        balance: Decimal,
        leverage: int = 100,
        currency: str = "USD",
        margin_mode: MarginMode = MarginMode.HEDGING,
    ) -> None:
        """Opens the account, or leaves an existing one as it is (reattaching after a restart)."""
        if login not in self._accounts:
            self._accounts[login] = SimAccount(login, currency, leverage, margin_mode, balance)

    def has_account(self, login: int) -> bool:
        return login in self._accounts

    def account_info(self, login: int) -> AccountInfo:
        account = self._accounts[login]
        _, _, now = self.feed.bid_ask(next(iter(self._specs)))
        profit = sum((self._profit(p) for p in account.positions.values()), Decimal(0))
        margin = sum(
            (self._margin(p, account.leverage) for p in account.positions.values()), Decimal(0)
        )
        equity = account.balance + profit
        return AccountInfo(
            login=login,
            currency=account.currency,
            leverage=account.leverage,
            margin_mode=account.margin_mode,
            balance=account.balance,
            equity=equity.quantize(Decimal("0.01")),
            margin=margin.quantize(Decimal("0.01")),
            free_margin=(equity - margin).quantize(Decimal("0.01")),
            time=now,
        )

    def spec(self, symbol: str) -> SymbolSpec:
        return self._specs[symbol]

    def has_symbol(self, symbol: str) -> bool:
        return symbol in self._specs

    def positions(self, login: int) -> list[Position]:
        return list(self._accounts[login].positions.values())

    def deals(self, login: int, since: datetime) -> list[Deal]:
        return [d for d in self._accounts[login].deals if d.executed_at >= since]

    def find_by_tag(self, login: int, tag: str) -> TaggedRecords:
        account = self._accounts[login]
        return TaggedRecords(
            positions=tuple(p for p in account.positions.values() if p.comment == tag),
            deals=tuple(d for d in account.deals if d.comment == tag),
        )

    # -- trading ----------------------------------------------------------------------------

    def execute(self, login: int, request: OrderRequest) -> OrderResult:
        account = self._accounts[login]
        if request.action is not TradeAction.DEAL:
            return OrderResult(retcodes.INVALID, "only market deals are simulated in this version")
        if request.symbol not in self._specs:
            return OrderResult(retcodes.INVALID, f"unknown symbol {request.symbol}")
        spec = self._specs[request.symbol]
        bid, ask, now = self.feed.bid_ask(request.symbol)
        if spec.volume_error(request.volume) is not None:
            return OrderResult(retcodes.INVALID_VOLUME, "Invalid volume", bid=bid, ask=ask)
        price = ask if request.side is Side.BUY else bid
        if request.price is not None:
            allowed = spec.point * request.deviation_points
            if abs(price - request.price) > allowed:
                return OrderResult(retcodes.REQUOTE, "Requote", bid=bid, ask=ask)
        new_margin = self._margin_for(spec, request.volume, price, account.leverage)
        info = self.account_info(login)
        if new_margin > info.free_margin and not self._reduces_netting(account, request):
            return OrderResult(retcodes.NO_MONEY, "No money", bid=bid, ask=ask)

        order_ticket = next(self._tickets)
        deal_ticket = next(self._tickets)
        position_ticket = self._book(account, request, price, now, order_ticket)
        account.deals.append(
            Deal(
                ticket=deal_ticket,
                order_ticket=order_ticket,
                position_ticket=position_ticket,
                symbol=request.symbol,
                side=request.side,
                volume=request.volume,
                price=price,
                magic=request.magic,
                comment=request.tag,
                executed_at=now,
            )
        )
        return OrderResult(
            retcode=retcodes.DONE,
            text="Request executed",
            order_ticket=order_ticket,
            deal_ticket=deal_ticket,
            position_ticket=position_ticket,
            volume=request.volume,
            price=price,
            bid=bid,
            ask=ask,
            executed_at=now,
        )

    def _book(
        self, account: SimAccount, request: OrderRequest, price: Decimal, now: datetime, ticket: int
    ) -> int:
        if account.margin_mode is MarginMode.HEDGING:
            account.positions[ticket] = Position(
                ticket=ticket,
                symbol=request.symbol,
                side=request.side,
                volume=request.volume,
                price_open=price,
                magic=request.magic,
                comment=request.tag,
                opened_at=now,
            )
            return ticket
        existing = next((p for p in account.positions.values() if p.symbol == request.symbol), None)
        if existing is None:
            account.positions[ticket] = Position(
                ticket,
                request.symbol,
                request.side,
                request.volume,
                price,
                request.magic,
                request.tag,
                now,
            )
            return ticket
        if existing.side is request.side:
            volume = existing.volume + request.volume
            average = (existing.price_open * existing.volume + price * request.volume) / volume
            account.positions[existing.ticket] = Position(
                existing.ticket,
                existing.symbol,
                existing.side,
                volume,
                self._specs[existing.symbol].normalize_price(average),
                existing.magic,
                existing.comment,
                existing.opened_at,
            )
            return existing.ticket
        # An opposite deal reduces, closes or reverses the netting position.
        closed = min(existing.volume, request.volume)
        account.balance += self._profit_of(existing, closed, price)
        rest = existing.volume - closed
        del account.positions[existing.ticket]
        if rest > 0:
            account.positions[existing.ticket] = Position(
                existing.ticket,
                existing.symbol,
                existing.side,
                rest,
                existing.price_open,
                existing.magic,
                existing.comment,
                existing.opened_at,
            )
        elif request.volume > closed:
            account.positions[existing.ticket] = Position(
                existing.ticket,
                request.symbol,
                request.side,
                request.volume - closed,
                price,
                request.magic,
                request.tag,
                now,
            )
        return existing.ticket

    def _reduces_netting(self, account: SimAccount, request: OrderRequest) -> bool:
        if account.margin_mode is not MarginMode.NETTING:
            return False
        return any(
            p.symbol == request.symbol and p.side is not request.side and p.volume >= request.volume
            for p in account.positions.values()
        )

    # -- money ------------------------------------------------------------------------------

    def _profit(self, position: Position) -> Decimal:
        bid, ask, _ = self.feed.bid_ask(position.symbol)
        close = bid if position.side is Side.BUY else ask
        return self._profit_of(position, position.volume, close)

    def _profit_of(self, position: Position, volume: Decimal, close: Decimal) -> Decimal:
        spec = self._specs[position.symbol]
        direction = 1 if position.side is Side.BUY else -1
        ticks = (close - position.price_open) * direction / spec.tick_size
        return (ticks * spec.tick_value * volume).quantize(Decimal("0.01"))

    def _margin(self, position: Position, leverage: int) -> Decimal:
        return self._margin_for(
            self._specs[position.symbol], position.volume, position.price_open, leverage
        )

    @staticmethod
    def _margin_for(spec: SymbolSpec, volume: Decimal, price: Decimal, leverage: int) -> Decimal:
        # Margin currency = the account currency for the symbols the simulator quotes (USD).
        return volume * spec.contract_size * price / leverage
