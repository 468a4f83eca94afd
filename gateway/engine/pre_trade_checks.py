"""Pre-trade risk on a planned master order: which accounts are checked, what is read for them,
and the allocation with their decisions applied (gateway/domain/risk_allocation.py).

An account is checked when its limits (its member's own, or the group's) are not empty, or when
it has an active stop-out. For those accounts only, the order's reading of the terminal also
takes the open positions and a quote (OrderSubmitter._read_accounts, concurrently with the other
accounts), so a group without limits and without stopped-out members pays nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from gateway.domain.account_exposure import AccountExposure
from gateway.domain.accounts import Account, AccountSnapshot, Group
from gateway.domain.allocation import Allocation
from gateway.domain.ids import AccountId
from gateway.domain.orders import MasterOrderSpec, OrderType, Side
from gateway.domain.risk_allocation import AccountRiskInput, check_allocation
from gateway.domain.risk_settings import NO_GROUP_RISK, GroupRisk
from gateway.domain.symbols import SymbolSpec
from gateway.engine.risk_book import RiskBook
from gateway.engine.trading_gate import TradingGate
from gateway.terminals.protocol import AccountInfo, Position, Quote, SymbolNotFound, Terminal


@dataclass(frozen=True, slots=True)
class Holdings:
    """What a checked account holds, read with the order's snapshot."""

    info: AccountInfo
    positions: tuple[Position, ...]
    # The expected fill price of the order's side, in the account's symbol.
    price: Decimal | None
    # Profit currency -> account currency; None: no quote converts them.
    rate: Decimal | None


@dataclass(frozen=True, slots=True)
class PlannedChecks:
    risk: GroupRisk
    # The accounts whose holdings are read and whose children are checked.
    accounts: frozenset[str]


class PreTradeChecks:
    def __init__(
        self, book: RiskBook | None, gate: TradingGate, symbols: Mapping[str, SymbolSpec]
    ) -> None:
        self._book = book
        self._gate = gate
        self._symbols = symbols

    def plan(self, group: Group) -> PlannedChecks:
        risk = self._book.group(group.group_id) if self._book is not None else NO_GROUP_RISK
        accounts: set[str] = set()
        if risk.checks_orders:
            accounts.update(a for a in group.account_ids if not risk.limits_for(a).is_unlimited)
        if self._gate.has_account_stop_outs:
            accounts.update(
                a for a in group.account_ids if self._gate.account_stop_out(a) is not None
            )
        return PlannedChecks(risk, frozenset(accounts))

    def needed(self, planned: PlannedChecks) -> bool:
        """False in the common case (no limits, no stop-out): then nothing is checked at all."""
        return bool(planned.accounts) or self._gate.has_account_stop_outs

    async def read(
        self,
        terminal: Terminal,
        account: Account,
        info: AccountInfo,
        symbol: SymbolSpec,
        order: MasterOrderSpec,
        quote: Quote | None,
        risk: GroupRisk,
    ) -> Holdings:
        """Positions, price and conversion rate of one checked account (under the caller's
        timeout and error handling)."""
        positions = tuple(await terminal.positions())
        price = _expected_price(order, quote)
        if price is None:
            quote = await terminal.quote(symbol.name)
            price = _expected_price(order, quote)
        limits = risk.limits_for(account.account_id)
        rate: Decimal | None = Decimal(1)
        if (limits.max_symbol_notional is not None or limits.min_margin_level is not None) and (
            price is not None
        ):
            rate = await self._rate(terminal, account, info.currency, symbol, price)
        return Holdings(info, positions, price, rate)

    def apply(
        self,
        allocation: Allocation,
        planned: PlannedChecks,
        *,
        accounts: Mapping[AccountId, Account],
        snapshots: Mapping[AccountId, AccountSnapshot],
        holdings: Mapping[AccountId, Holdings],
        specs: Mapping[AccountId, SymbolSpec | None],
        order: MasterOrderSpec,
        master_symbol: SymbolSpec,
        at: datetime,
    ) -> Allocation:
        """The allocation with every checked account's children decided. `at` must be taken
        before this reads the gate: a stop-out put on it later is the dispatcher's to apply."""
        if not self.needed(planned):
            return allocation
        inputs: dict[str, AccountRiskInput] = {}
        risk = planned.risk
        for line in allocation.lines:
            account_id = line.account_id
            stop_out = self._gate.account_stop_out(account_id)
            if account_id not in planned.accounts and stop_out is None:
                continue
            limits = risk.limits_for(account_id)
            held = holdings.get(account_id)
            snapshot = snapshots.get(account_id)
            if held is None or snapshot is None:
                why = (
                    "the account was stopped out while the order was planned"
                    if account_id not in planned.accounts
                    else "what the account holds could not be read"
                )
                inputs[account_id] = AccountRiskInput(
                    limits, None, None, None, stop_out=stop_out, unreadable=why
                )
                continue
            info = held.info
            leverage = info.leverage if info.leverage >= 1 else accounts[account_id].leverage
            try:
                exposure = AccountExposure.of_positions(
                    account_id,
                    snapshot,
                    held.positions,
                    leverage=leverage,
                    margin_mode=info.margin_mode,
                )
            except ValueError as error:
                inputs[account_id] = AccountRiskInput(
                    limits, None, None, None, stop_out=stop_out, unreadable=str(error)
                )
                continue
            inputs[account_id] = AccountRiskInput(
                limits=limits,
                exposure=exposure,
                spec=specs.get(account_id),
                price=held.price,
                rate=held.rate,
                stop_out=stop_out,
            )
        if not inputs:
            return allocation
        return check_allocation(
            allocation,
            inputs,
            side=order.side,
            master_symbol=master_symbol,
            policy=risk.policy,
            at=at,
        )

    async def _rate(
        self,
        terminal: Terminal,
        account: Account,
        currency: str,
        spec: SymbolSpec,
        price: Decimal,
    ) -> Decimal | None:
        """What one unit of the symbol's profit currency is worth in the account currency:
        1, the symbol's own price (its base is the account currency: 1 / price), or a quote of
        a gateway symbol pairing the two currencies; None when there is none."""
        profit = spec.currency_profit
        if not profit or profit == currency:
            return Decimal(1)
        if spec.currency_base == currency:
            return Decimal(1) / price
        for name, other in self._symbols.items():
            pair = (other.currency_base, other.currency_profit)
            if pair not in ((profit, currency), (currency, profit)):
                continue
            try:
                quote = await terminal.quote(account.broker_symbol(name))
            except SymbolNotFound:
                continue
            if pair == (profit, currency):
                return quote.bid if quote.bid > 0 else None
            return Decimal(1) / quote.ask if quote.ask > 0 else None
        return None


def _expected_price(order: MasterOrderSpec, quote: Quote | None) -> Decimal | None:
    """Where the order's children are expected to fill: the market's ask to buy or bid to
    sell; a pending order's own price (the limit price of a STOP_LIMIT)."""
    if order.order_type is OrderType.STOP_LIMIT and order.stop_limit_price is not None:
        return order.stop_limit_price
    if order.order_type is not OrderType.MARKET and order.price is not None:
        return order.price
    if quote is None:
        return None
    return quote.ask if order.side is Side.BUY else quote.bid
