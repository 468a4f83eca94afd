"""The simulated trade server: accounts, and how it answers each trade request.

Plain synchronous Python; SimTerminal puts latency, faults and asyncio around it. It answers
with the retcodes and fields of an MT5 trade server: market deals (open, close a position
fully or partly, netting), pending orders (place, modify, remove, trigger, expire), SL/TP,
close-by; refusals for volume, price, stops, money, trade mode and market hours.

Pending orders are evaluated lazily: whenever an account is touched (any request or query),
its orders are checked against the current quote, triggered or expired.

A request can be executed as of a given time (`execute(..., at_ns=)`): the time it reached the
server. It is then priced, checked and stamped with the quote and the time as they stood then,
however late the caller gets round to it, as a trade server in another process would.

With a state file, the changes of each request are committed to it before the answer is
returned (see state_file.py); the broker reloads everything from it on construction.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from gateway.domain import retcodes
from gateway.domain.accounts import MarginMode
from gateway.domain.orders import FillingPolicy, OrderType, Side, TimeInForce
from gateway.domain.symbols import SymbolSpec
from gateway.terminals.protocol import (
    AccountInfo,
    Deal,
    OrderRequest,
    OrderResult,
    PendingOrder,
    Position,
    TaggedRecords,
    TradeAction,
)
from gateway.terminals.sim import money
from gateway.terminals.sim.book import Fill, SimAccount
from gateway.terminals.sim.price_rules import pending_price_error, stops_error, triggered
from gateway.terminals.sim.quotes import QuoteFeed
from gateway.terminals.sim.state_file import BrokerStateFile
from gateway.terminals.sim.symbol import SimSymbol, SymbolTradeMode

FIRST_TICKET = 1_000_001


@dataclasses.dataclass(frozen=True, slots=True)
class _Market:
    """The symbol and its quote at the moment a request is handled."""

    symbol: SimSymbol
    bid: Decimal
    ask: Decimal
    now: datetime
    # The clock time (ns) the request is handled as of; None: the feed's clock, as it runs.
    at_ns: int | None

    @property
    def spec(self) -> SymbolSpec:
        return self.symbol.spec

    @property
    def stops_distance(self) -> Decimal:
        return self.spec.point * self.spec.stops_level


class SimBroker:
    def __init__(
        self,
        symbols: list[SimSymbol],
        *,
        seed: int = 1,
        tick_interval_ms: int = 250,
        state_path: Path | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._symbols = {s.spec.name: s for s in symbols}
        # A pending order is matched against the ticks after the one it was placed in.
        self._tick = timedelta(milliseconds=max(1, tick_interval_ms))
        self.feed = QuoteFeed(
            {s.spec.name: s.quotes for s in symbols},
            seed=seed,
            tick_interval_ms=tick_interval_ms,
            clock_ns=clock_ns,
        )
        self._state = None if state_path is None else BrokerStateFile(state_path)
        if self._state is None:
            self._accounts: dict[int, SimAccount] = {}
            self._next_ticket = FIRST_TICKET
        else:
            loaded = self._state.load(FIRST_TICKET)
            self._accounts, self._next_ticket = loaded.accounts, loaded.next_ticket

    @property
    def state_path(self) -> Path | None:
        return None if self._state is None else self._state.path

    def close(self) -> None:
        if self._state is not None:
            self._state.close()

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
        if login in self._accounts:
            return
        account = SimAccount(login, currency, leverage, margin_mode, balance)
        account.journal.account = True
        self._accounts[login] = account
        with self._touched(login):
            pass

    def has_account(self, login: int) -> bool:
        return login in self._accounts

    def account_info(self, login: int) -> AccountInfo:
        with self._touched(login) as account:
            equity, margin = self._equity_and_margin(account)
        return AccountInfo(
            login=login,
            currency=account.currency,
            leverage=account.leverage,
            margin_mode=account.margin_mode,
            balance=account.balance,
            equity=equity.quantize(money.CENT),
            margin=margin.quantize(money.CENT),
            free_margin=(equity - margin).quantize(money.CENT),
            time=self.feed.now(),
        )

    def spec(self, symbol: str) -> SymbolSpec:
        return self._symbols[symbol].spec

    def symbol(self, symbol: str) -> SimSymbol:
        return self._symbols[symbol]

    def has_symbol(self, symbol: str) -> bool:
        return symbol in self._symbols

    def positions(self, login: int) -> list[Position]:
        with self._touched(login) as account:
            return list(account.positions.values())

    def pending_orders(self, login: int) -> list[PendingOrder]:
        with self._touched(login) as account:
            return list(account.orders.values())

    def deals(self, login: int, since: datetime) -> list[Deal]:
        with self._touched(login) as account:
            return [d for d in account.deals if d.executed_at >= since]

    def find_by_tag(self, login: int, tag: str) -> TaggedRecords:
        with self._touched(login) as account:
            return TaggedRecords(
                orders=tuple(o for o in account.orders.values() if o.comment == tag),
                positions=tuple(p for p in account.positions.values() if p.comment == tag),
                deals=tuple(account.deals_by_tag.get(tag, ())),
            )

    # -- transactions -----------------------------------------------------------------------

    def transfer(self, login: int, amount: Decimal) -> None:
        """A deposit (amount > 0) or a withdrawal (< 0) on the account's balance, as a broker's
        back office books one (an MT5 balance deal; not a trade, so not among `deals`)."""
        with self._touched(login) as account:
            account.credit(amount)

    def _ticket(self) -> int:
        ticket = self._next_ticket
        self._next_ticket += 1
        return ticket

    @contextmanager
    def _touched(self, login: int, at_ns: int | None = None) -> Iterator[SimAccount]:
        """The account, its pending orders settled (as of `at_ns`, None: now); what the block
        changes is committed in one transaction when it ends, before anything is answered.

        If the block or the commit fails, the books are reloaded from the state file, which
        still holds the state before the request: the request did not happen.
        """
        account = self._accounts[login]
        tickets_before = self._next_ticket
        try:
            self._settle(account, at_ns)
            yield account
            if self._state is not None and (account.journal or self._next_ticket != tickets_before):
                self._state.commit(account, self._next_ticket)
        except BaseException:
            self._reload()
            raise
        finally:
            account.journal.clear()

    def _reload(self) -> None:
        if self._state is None:
            return  # in memory there is nothing to go back to
        loaded = self._state.load(FIRST_TICKET)
        self._accounts, self._next_ticket = loaded.accounts, loaded.next_ticket

    # -- trading ----------------------------------------------------------------------------

    def execute(
        self,
        login: int,
        request: OrderRequest,
        *,
        available_volume: Decimal | None = None,
        at_ns: int | None = None,
    ) -> OrderResult:
        """Answers one trade request. `available_volume`: what the market can fill at once
        (None: everything); the request's filling policy says what happens to the rest.
        `at_ns`: the clock time (ns since the epoch) the request reached the server, whose
        quote prices it and which stamps it, market hours included (None: now)."""
        with self._touched(login, at_ns) as account:
            return self._handle(account, request, available_volume, at_ns)

    def _handle(
        self,
        account: SimAccount,
        request: OrderRequest,
        available: Decimal | None,
        at_ns: int | None,
    ) -> OrderResult:
        action = request.action
        symbol_name = self._subject_symbol(account, request)
        if symbol_name is None and action in (TradeAction.SLTP, TradeAction.CLOSE_BY):
            return _refused(retcodes.POSITION_CLOSED, "Position already closed")
        if symbol_name is None:
            return _refused(retcodes.INVALID, "Invalid request: no such order")
        if symbol_name not in self._symbols:
            return _refused(retcodes.INVALID, f"Invalid request: unknown symbol {symbol_name}")
        market = self._market(symbol_name, at_ns)
        if market.symbol.rules.trade_mode is SymbolTradeMode.DISABLED:
            return _refused(retcodes.TRADE_DISABLED, "Trade disabled", market)
        if not market.symbol.rules.sessions.is_open(market.now):
            return _refused(retcodes.MARKET_CLOSED, "Market closed", market)
        if action is TradeAction.DEAL:
            return self._deal(account, request, market, available)
        if action is TradeAction.PENDING:
            return self._place(account, request, market)
        if action is TradeAction.MODIFY:
            return self._modify(account, request, market)
        if action is TradeAction.REMOVE:
            account.drop_order(request.order_ticket)
            return OrderResult(retcodes.DONE, "Request executed", order_ticket=request.order_ticket)
        if action is TradeAction.SLTP:
            return self._sltp(account, request, market)
        return self._close_by(account, request, market)

    def _subject_symbol(self, account: SimAccount, request: OrderRequest) -> str | None:
        """The symbol a request is about: an existing order's or position's when it names
        one, else the request's own. None when the named order or position does not exist."""
        if request.action in (TradeAction.MODIFY, TradeAction.REMOVE):
            order = account.orders.get(request.order_ticket)
            return None if order is None else order.symbol
        if request.action in (TradeAction.SLTP, TradeAction.CLOSE_BY):
            position = account.positions.get(request.position_ticket)
            return None if position is None else position.symbol
        return request.symbol

    def _market(self, symbol: str, at_ns: int | None) -> _Market:
        if at_ns is None:
            bid, ask, now = self.feed.bid_ask(symbol)
        else:
            bid, ask, now = self.feed.bid_ask_at(symbol, at_ns)
        return _Market(self._symbols[symbol], bid, ask, now, at_ns)

    # -- market deals -----------------------------------------------------------------------

    def _deal(
        self,
        account: SimAccount,
        request: OrderRequest,
        market: _Market,
        available: Decimal | None,
    ) -> OrderResult:
        spec = market.spec
        if request.order_type is not OrderType.MARKET:
            return _refused(retcodes.INVALID, "Invalid request: a deal is a market order", market)
        if spec.volume_error(request.volume) is not None:
            return _refused(retcodes.INVALID_VOLUME, "Invalid volume", market)
        price = money.opening_price(request.side, market.bid, market.ask)
        if request.price is not None:
            allowed = spec.point * request.deviation_points
            if abs(price - request.price) > allowed:
                return _refused(retcodes.REQUOTE, "Requote", market)

        target = None
        if request.position_ticket:
            target = account.positions.get(request.position_ticket)
            if target is None:
                return _refused(retcodes.POSITION_CLOSED, "Position already closed", market)
            if target.symbol != request.symbol or target.side is request.side:
                return _refused(
                    retcodes.INVALID,
                    "Invalid request: a close is an opposite deal on the position's symbol",
                    market,
                )
            if request.volume > target.volume:
                return _refused(retcodes.INVALID_CLOSE_VOLUME, "Invalid close volume", market)
        closing = self._closing_volume(account, request, target)
        refusal = _trade_mode_refusal(
            market.symbol.rules.trade_mode, request.side, request.volume - closing
        )
        if refusal is not None:
            return _refused(*refusal, market)
        if request.volume > closing and (
            error := stops_error(
                request.side,
                money.closing_price(request.side, market.bid, market.ask),
                request.stop_loss,
                request.take_profit,
                market.stops_distance,
            )
        ):
            return _refused(retcodes.INVALID_STOPS, f"Invalid stops: {error}", market)

        volume = request.volume
        if available is not None and available < volume:
            if request.filling is FillingPolicy.FOK:
                return _refused(
                    retcodes.REJECT, "Request rejected: not enough liquidity to fill", market
                )
            volume = available
        opening = max(Decimal(0), volume - closing)
        if opening and self._lacks_margin(account, spec, opening, price, market.at_ns):
            return _refused(retcodes.NO_MONEY, "No money", market)

        order_ticket = self._ticket()
        fill = Fill(
            symbol=request.symbol,
            side=request.side,
            volume=volume,
            price=price,
            magic=request.magic,
            comment=request.tag,
            order_ticket=order_ticket,
            deal_ticket=self._ticket(),
            executed_at=market.now,
            stop_loss=request.stop_loss,
            take_profit=request.take_profit,
        )
        deal = account.book(spec, fill, request.position_ticket)
        returns_rest = request.filling is FillingPolicy.RETURN and not request.position_ticket
        if volume < request.volume and returns_rest:
            # The rest keeps working as a limit order at the price of the filled part (the
            # rest of a position close is cancelled: a resting order would open, not close).
            account.put_order(
                PendingOrder(
                    ticket=order_ticket,
                    symbol=request.symbol,
                    side=request.side,
                    volume=request.volume - volume,
                    price=price,
                    magic=request.magic,
                    comment=request.tag,
                    placed_at=market.now,
                    order_type=OrderType.LIMIT,
                    stop_loss=request.stop_loss,
                    take_profit=request.take_profit,
                    filling=FillingPolicy.RETURN,
                    volume_initial=request.volume,
                )
            )
        partial = volume < request.volume
        return OrderResult(
            retcode=retcodes.DONE_PARTIAL if partial else retcodes.DONE,
            text="Request executed partially" if partial else "Request executed",
            order_ticket=order_ticket,
            deal_ticket=deal.ticket,
            position_ticket=deal.position_ticket,
            volume=volume,
            price=price,
            bid=market.bid,
            ask=market.ask,
            executed_at=market.now,
        )

    @staticmethod
    def _closing_volume(
        account: SimAccount, request: OrderRequest, target: Position | None
    ) -> Decimal:
        """How much of the request closes existing volume rather than opening new."""
        if target is not None:
            return request.volume
        if account.margin_mode is MarginMode.HEDGING:
            return Decimal(0)
        existing = account.netting_position(request.symbol)
        if existing is None or existing.side is request.side:
            return Decimal(0)
        return min(existing.volume, request.volume)

    # -- pending orders ---------------------------------------------------------------------

    def _place(self, account: SimAccount, request: OrderRequest, market: _Market) -> OrderResult:
        if request.order_type is OrderType.MARKET:
            return _refused(
                retcodes.INVALID,
                "Invalid request: a pending order is a LIMIT, STOP or STOP_LIMIT",
                market,
            )
        if market.spec.volume_error(request.volume) is not None:
            return _refused(retcodes.INVALID_VOLUME, "Invalid volume", market)
        refusal = _trade_mode_refusal(market.symbol.rules.trade_mode, request.side, request.volume)
        if refusal is not None:
            return _refused(*refusal, market)
        if request.price is None:
            return _refused(retcodes.INVALID_PRICE, "Invalid price: none given", market)
        price = market.spec.normalize_price(request.price)
        stop_limit = (
            None
            if request.stop_limit_price is None or request.order_type is not OrderType.STOP_LIMIT
            else market.spec.normalize_price(request.stop_limit_price)
        )
        checked = self._check_resting(
            request.order_type,
            request.side,
            price,
            stop_limit,
            request.stop_loss,
            request.take_profit,
            market,
        )
        if checked is not None:
            return checked
        try:
            expires_at = _expiry(request.time_in_force, request.expires_at, market.now)
        except ValueError as error:
            return _refused(retcodes.INVALID_EXPIRATION, f"Invalid expiration: {error}", market)
        ticket = self._ticket()
        account.put_order(
            PendingOrder(
                ticket=ticket,
                symbol=request.symbol,
                side=request.side,
                volume=request.volume,
                price=price,
                magic=request.magic,
                comment=request.tag,
                placed_at=market.now,
                order_type=request.order_type,
                stop_limit_price=stop_limit,
                stop_loss=request.stop_loss,
                take_profit=request.take_profit,
                time_in_force=request.time_in_force,
                expires_at=expires_at,
                filling=request.filling,
                volume_initial=request.volume,
            )
        )
        return OrderResult(
            retcodes.PLACED,
            "Order placed",
            order_ticket=ticket,
            volume=request.volume,
            price=price,
            bid=market.bid,
            ask=market.ask,
            executed_at=market.now,
        )

    def _modify(self, account: SimAccount, request: OrderRequest, market: _Market) -> OrderResult:
        """Sets price, SL, TP and expiration of a pending order, like MT5: None for SL/TP
        removes them; None for the price keeps it."""
        order = account.orders[request.order_ticket]
        price = order.price if request.price is None else market.spec.normalize_price(request.price)
        stop_limit = order.stop_limit_price
        if order.order_type is OrderType.STOP_LIMIT and request.stop_limit_price is not None:
            stop_limit = market.spec.normalize_price(request.stop_limit_price)
        try:
            expires_at = (
                order.expires_at
                if request.time_in_force is order.time_in_force is TimeInForce.DAY
                else _expiry(request.time_in_force, request.expires_at, market.now)
            )
        except ValueError as error:
            return _refused(retcodes.INVALID_EXPIRATION, f"Invalid expiration: {error}", market)
        changed = dataclasses.replace(
            order,
            price=price,
            stop_limit_price=stop_limit,
            stop_loss=request.stop_loss,
            take_profit=request.take_profit,
            time_in_force=request.time_in_force,
            expires_at=expires_at,
        )
        if changed == order:
            return _refused(retcodes.NO_CHANGES, "No changes", market)
        checked = self._check_resting(
            order.order_type,
            order.side,
            price,
            stop_limit,
            request.stop_loss,
            request.take_profit,
            market,
        )
        if checked is not None:
            return checked
        account.put_order(changed)
        return OrderResult(
            retcodes.DONE,
            "Request executed",
            order_ticket=order.ticket,
            volume=order.volume,
            price=price,
            bid=market.bid,
            ask=market.ask,
            executed_at=market.now,
        )

    @staticmethod
    def _check_resting(
        order_type: OrderType,
        side: Side,
        price: Decimal,
        stop_limit: Decimal | None,
        stop_loss: Decimal | None,
        take_profit: Decimal | None,
        market: _Market,
    ) -> OrderResult | None:
        """The refusal for a pending order that may not rest at these prices, or None."""
        error = pending_price_error(
            order_type, side, price, stop_limit, market.bid, market.ask, market.stops_distance
        )
        if error is not None:
            return _refused(retcodes.INVALID_PRICE, f"Invalid price: {error}", market)
        opens_at = stop_limit if stop_limit is not None else price
        error = stops_error(side, opens_at, stop_loss, take_profit, market.stops_distance)
        if error is not None:
            return _refused(retcodes.INVALID_STOPS, f"Invalid stops: {error}", market)
        return None

    def _settle(self, account: SimAccount, at_ns: int | None) -> None:
        """Expires, activates and fills the account's pending orders against the quote of
        `at_ns` (None: the current one); MT5 does this on every tick, the simulator when the
        account is touched."""
        if not account.orders:
            return
        for resting in list(account.orders.values()):
            market = self._market(resting.symbol, at_ns)
            if resting.expires_at is not None and market.now >= resting.expires_at:
                account.drop_order(resting.ticket)
                continue
            if not market.symbol.rules.sessions.is_open(market.now):
                continue
            if market.now - resting.placed_at < self._tick:
                continue
            if not triggered(
                resting.order_type, resting.side, resting.price, market.bid, market.ask
            ):
                continue
            order = resting
            if order.order_type is OrderType.STOP_LIMIT:
                # The stop is reached: the order becomes a limit order at its limit price.
                assert order.stop_limit_price is not None
                account.put_order(
                    dataclasses.replace(
                        order,
                        order_type=OrderType.LIMIT,
                        price=order.stop_limit_price,
                        stop_limit_price=None,
                        filling=FillingPolicy.RETURN,
                        placed_at=market.now,
                    )
                )
                continue
            self._fill_triggered(account, order, market)

    def _fill_triggered(self, account: SimAccount, order: PendingOrder, market: _Market) -> None:
        account.drop_order(order.ticket)
        price = money.opening_price(order.side, market.bid, market.ask)
        closing = Decimal(0)
        existing = (
            account.netting_position(order.symbol)
            if account.margin_mode is MarginMode.NETTING
            else None
        )
        if existing is not None and existing.side is not order.side:
            closing = min(existing.volume, order.volume)
        if order.volume > closing and self._lacks_margin(
            account, market.spec, order.volume - closing, price, market.at_ns
        ):
            return  # the server cancels an order it cannot cover when it triggers
        fill = Fill(
            symbol=order.symbol,
            side=order.side,
            volume=order.volume,
            price=price,
            magic=order.magic,
            comment=order.comment,
            order_ticket=order.ticket,
            deal_ticket=self._ticket(),
            executed_at=market.now,
            stop_loss=order.stop_loss,
            take_profit=order.take_profit,
        )
        account.book(market.spec, fill)

    # -- positions --------------------------------------------------------------------------

    def _sltp(self, account: SimAccount, request: OrderRequest, market: _Market) -> OrderResult:
        position = account.positions[request.position_ticket]
        if (position.stop_loss, position.take_profit) == (request.stop_loss, request.take_profit):
            return _refused(retcodes.NO_CHANGES, "No changes", market)
        error = stops_error(
            position.side,
            money.closing_price(position.side, market.bid, market.ask),
            request.stop_loss,
            request.take_profit,
            market.stops_distance,
        )
        if error is not None:
            return _refused(retcodes.INVALID_STOPS, f"Invalid stops: {error}", market)
        account.put_position(
            dataclasses.replace(
                position, stop_loss=request.stop_loss, take_profit=request.take_profit
            )
        )
        return OrderResult(
            retcodes.DONE,
            "Request executed",
            position_ticket=position.ticket,
            bid=market.bid,
            ask=market.ask,
            executed_at=market.now,
        )

    def _close_by(self, account: SimAccount, request: OrderRequest, market: _Market) -> OrderResult:
        if account.margin_mode is not MarginMode.HEDGING:
            return _refused(
                retcodes.INVALID, "Invalid request: close by needs a hedging account", market
            )
        position = account.positions[request.position_ticket]
        by = account.positions.get(request.position_by)
        if by is None:
            return _refused(retcodes.POSITION_CLOSED, "Position already closed", market)
        if by.symbol != position.symbol or by.side is position.side:
            return _refused(
                retcodes.INVALID,
                "Invalid request: close by needs an opposite position on the same symbol",
                market,
            )
        order_ticket = self._ticket()
        fill = Fill(
            symbol=position.symbol,
            side=by.side,
            volume=min(position.volume, by.volume),
            price=by.price_open,
            magic=request.magic,
            comment=request.tag,
            order_ticket=order_ticket,
            deal_ticket=self._ticket(),
            executed_at=market.now,
        )
        first, _ = account.close_by(market.spec, position, by, fill, self._ticket())
        return OrderResult(
            retcodes.DONE,
            "Request executed",
            order_ticket=order_ticket,
            deal_ticket=first.ticket,
            position_ticket=position.ticket,
            volume=first.volume,
            price=first.price,
            bid=market.bid,
            ask=market.ask,
            executed_at=market.now,
        )

    # -- money ------------------------------------------------------------------------------

    def _equity_and_margin(
        self, account: SimAccount, at_ns: int | None = None
    ) -> tuple[Decimal, Decimal]:
        """Equity and used margin from the account's exposures (unrounded), at the quotes of
        `at_ns` (None: the current ones)."""
        profit = Decimal(0)
        margin = Decimal(0)
        for (symbol, side), exposure in account.exposures.items():
            if not exposure.volume:
                continue
            spec = self._symbols[symbol].spec
            if at_ns is None:
                bid, ask, _ = self.feed.bid_ask(symbol)
            else:
                bid, ask, _ = self.feed.bid_ask_at(symbol, at_ns)
            close = money.closing_price(side, bid, ask)
            direction = 1 if side is Side.BUY else -1
            moved = (close * exposure.volume - exposure.cost) * direction
            profit += moved / spec.tick_size * spec.tick_value
            margin += exposure.cost * spec.contract_size
        return account.balance + profit, margin / account.leverage

    def _lacks_margin(
        self,
        account: SimAccount,
        spec: SymbolSpec,
        volume: Decimal,
        price: Decimal,
        at_ns: int | None,
    ) -> bool:
        equity, margin = self._equity_and_margin(account, at_ns)
        return money.margin(spec, volume, price, account.leverage) > equity - margin


def _refused(retcode: int, text: str, market: _Market | None = None) -> OrderResult:
    if market is None:
        return OrderResult(retcode, text)
    return OrderResult(retcode, text, bid=market.bid, ask=market.ask)


def _trade_mode_refusal(
    mode: SymbolTradeMode, side: Side, opening_volume: Decimal
) -> tuple[int, str] | None:
    """The refusal for opening `opening_volume` on `side` under the symbol's trade mode.
    Closing existing volume is allowed in every mode but DISABLED (refused earlier)."""
    if opening_volume <= 0:
        return None
    if mode is SymbolTradeMode.CLOSEONLY:
        return retcodes.CLOSE_ONLY, "Only position closing is allowed"
    if mode is SymbolTradeMode.LONGONLY and side is Side.SELL:
        return retcodes.LONG_ONLY, "Only long positions are allowed"
    if mode is SymbolTradeMode.SHORTONLY and side is Side.BUY:
        return retcodes.SHORT_ONLY, "Only short positions are allowed"
    return None


def _expiry(
    time_in_force: TimeInForce, expires_at: datetime | None, now: datetime
) -> datetime | None:
    """When an order placed now expires (None: never). Raises ValueError for a SPECIFIED
    expiration that is missing or already past."""
    if time_in_force is TimeInForce.GTC:
        return None
    if time_in_force is TimeInForce.DAY:
        # The end of the trading day, taken as the next midnight UTC.
        return datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo)
    if expires_at is None:
        raise ValueError("a SPECIFIED order needs its expiration time")
    if expires_at <= now:
        raise ValueError(f"{expires_at.isoformat()} is already past")
    return expires_at
