"""A submission's walk up to its storing: snapshot -> allocation -> children, then stored and
started by the runner; and its preview, the same walk without the storing.

The snapshot is one reading per account of the group, all at once; the allocation and the
pre-trade checks are the domain's (gateway/domain/allocation.py, pre_trade_checks.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from opentelemetry.trace import Tracer

import gateway.observability.trace_context as traced
from gateway.domain.accounts import Account, AccountSnapshot, AllocationMethod, Group
from gateway.domain.allocation import (
    Allocation,
    AllocationRequest,
    MemberInput,
    allocate,
    effective_method,
)
from gateway.domain.audit import AuditRecord
from gateway.domain.copy_options import CopyOptions
from gateway.domain.copying import CopyReference, apply_copy_options
from gateway.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from gateway.domain.ids import AccountId, MasterOrderId, new_id
from gateway.domain.new_orders import new_master_order, sent_children, why_nothing_allocated
from gateway.domain.orders import MasterOrder, MasterOrderSpec, OrderType, Side
from gateway.domain.symbols import SpecInterner, SymbolSpec
from gateway.engine.deadlines import Deadlines
from gateway.engine.master_order_runner import MasterOrderRunner
from gateway.engine.pre_trade_checks import Holdings, PlannedChecks, PreTradeChecks
from gateway.engine.store_health import StoreHealth
from gateway.engine.submission import Submission, replayed_if
from gateway.engine.terminal_registry import TerminalRegistry
from gateway.engine.trading_gate import TradingGate
from gateway.observability.log_context import log_about
from gateway.store import Store
from gateway.terminals.protocol import SymbolNotFound, TerminalError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AccountReading:
    """What one account's terminal answered for an order: its money, its symbol's spec and,
    when needed, its entry price and holdings; None for what could not be read."""

    snapshot: AccountSnapshot | None = None
    spec: SymbolSpec | None = None
    entry_price: Decimal | None = None
    # Accounts under pre-trade risk checks only.
    holdings: Holdings | None = None
    # A mirrored order's member with a maximum slippage: its price on the side it trades.
    copy_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class PlannedOrder:
    """A master order's allocation over its group, with what it was computed from."""

    group: Group
    allocation: Allocation
    snapshots: dict[AccountId, AccountSnapshot]
    # Each account's point on its broker symbol, as read for the allocation: the dispatcher
    # need not ask each terminal again (a round trip per child over a remote worker).
    points: dict[AccountId, Decimal]


class OrderSubmitter:
    def __init__(
        self,
        *,
        store: Store,
        registry: TerminalRegistry,
        symbols: Mapping[str, SymbolSpec],
        runner: MasterOrderRunner,
        health: StoreHealth,
        gate: TradingGate,
        checks: PreTradeChecks,
        clock: Callable[[], datetime],
        max_master_volume: Decimal,
        snapshot_deadlines: Deadlines,
        tracer: Tracer = traced.NO_TRACER,
    ) -> None:
        self._tracer = tracer
        self._store = store
        self._registry = registry
        self._symbols = symbols
        self._runner = runner
        self._gate = gate
        self._checks = checks
        self._health = health
        self._clock = clock
        self._max_master_volume = max_master_volume
        # The timeout of reading one account (a submission reads all its group's at once).
        self._snapshot_deadlines = snapshot_deadlines

    async def preview(
        self, spec: MasterOrderSpec, *, reference: CopyReference | None = None
    ) -> Allocation:
        """The allocation a submission would get now; sends and stores nothing."""
        return (await self._plan(spec, reference)).allocation

    async def submit(
        self,
        spec: MasterOrderSpec,
        *,
        submitted_by: str = "",
        audit: AuditRecord | None = None,
        reference: CopyReference | None = None,
    ) -> Submission:
        """Stores and starts a master order, once per (submitted_by, client_order_id).

        A resubmission with the same payload gets the original order back (in flight or
        finished); the same id with a different payload is ALREADY_EXISTS. The store's unique
        index settles races between concurrent resubmissions. `audit`: the call's audit record,
        stored with the order in its transaction (Submission.audited says it was).
        `reference`: a mirrored order's source change, what copy options compare with.
        """
        self._health.refuse_if_unreachable()
        existing = await self._store.find_by_client_order_id(submitted_by, spec.client_order_id)
        if existing is not None:
            return _replay(existing, spec)
        switch = self._gate.stopping_group(spec.group_id)
        if switch is not None:
            raise FailedPrecondition(
                f"trading is stopped by {switch.describe()}; it is lifted only explicitly",
                reason="KILL_SWITCH_ACTIVE",
            )
        planned = await self._plan(spec, reference)
        allocation = planned.allocation
        now = self._clock()
        master_order_id = MasterOrderId(new_id("mo"))
        children = sent_children(
            allocation.lines,
            master_order_id=master_order_id,
            side=spec.side,
            magic=planned.group.magic,
            at=now,
        )
        if not children:
            raise FailedPrecondition(
                "no account of the group receives any volume: " + why_nothing_allocated(allocation),
                reason="NOTHING_ALLOCATED",
            )
        new = new_master_order(
            spec,
            master_order_id=master_order_id,
            allocation=allocation,
            children=children,
            magic=planned.group.magic,
            submitted_by=submitted_by,
            at=now,
        )
        return await self._runner.store_then_start(
            new,
            points=planned.points,
            replay=lambda existing: _replay(existing, spec),
            audit=(
                None
                if audit is None
                else replace(audit, result=f"master_order_id={master_order_id}")
            ),
            snapshots=planned.snapshots,
        )

    async def _plan(self, spec: MasterOrderSpec, reference: CopyReference | None) -> PlannedOrder:
        symbol = self._symbols.get(spec.symbol)
        if symbol is None:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "order.symbol",
                        f"unknown symbol {spec.symbol!r}; "
                        f"known: {', '.join(sorted(self._symbols))}",
                    )
                ],
                reason="UNKNOWN_SYMBOL",
            )
        self._check_volume(spec, symbol)
        group = await self._store.get_group(spec.group_id)
        if group is None:
            raise NotFound(f"group {spec.group_id!r} does not exist", reason="GROUP_NOT_FOUND")
        stopped = self._gate.stopped_group(group.group_id)
        if stopped is not None:
            raise FailedPrecondition(
                f"the group is stopped out: {stopped.describe()}; ResetStopOut lifts it",
                reason="STOPPED_OUT",
            )
        checks = self._checks.plan(group)
        settings = group.allocation
        wanted = list(group.account_ids)
        if settings.reference_account_id and settings.reference_account_id not in wanted:
            wanted.append(settings.reference_account_id)
        accounts = await self._store.get_account_settings(wanted)
        methods = {m.account_id: effective_method(settings, m) for m in group.members}
        options = {m.account_id: m.copy for m in group.members if not m.copy.is_default}
        # A member's price is compared with the source's when it limits slippage.
        priced = (
            reference is not None
            and reference.price is not None
            and spec.order_type is OrderType.MARKET
        )
        with self._tracer.start_as_current_span(
            traced.SNAPSHOT_SPAN, attributes={traced.GROUP_ID: group.group_id}
        ) as snapshot_span:
            readings = await self._read_accounts(
                [accounts[a] for a in wanted if a in accounts],
                spec,
                methods,
                checks,
                options=options,
                priced=priced,
            )
            if snapshot_span.is_recording():
                snapshot_span.set_attribute(traced.ACCOUNTS, len(readings))
                unread = sum(1 for r in readings.values() if r.snapshot is None)
                snapshot_span.set_attribute(traced.ACCOUNTS_UNREAD, unread)
        reference_equity = settings.reference_equity
        if reference_equity is None and settings.reference_account_id:
            read = readings.get(settings.reference_account_id)
            reference_equity = read.snapshot.equity if read and read.snapshot else None
        with self._tracer.start_as_current_span(
            traced.ALLOCATE_SPAN,
            attributes={
                traced.GROUP_ID: group.group_id,
                traced.SYMBOL: spec.symbol,
                traced.ALLOCATION_METHOD: settings.method.name,
            },
        ) as allocating:
            same_spec = SpecInterner()
            members = [
                MemberInput(
                    account_id=member.account_id,
                    symbol=accounts[member.account_id].broker_symbol(spec.symbol),
                    spec=_interned(same_spec, readings[member.account_id].spec),
                    active=accounts[member.account_id].is_active,
                    snapshot=readings[member.account_id].snapshot,
                    settings=member,
                    entry_price=readings[member.account_id].entry_price,
                )
                for member in group.members
                if member.account_id in accounts
            ]
            now = self._clock()
            allocation = allocate(
                AllocationRequest(
                    volume=spec.volume,
                    symbol=symbol,
                    settings=settings,
                    snapshot_time=now,
                    stop_loss=spec.stop_loss,
                    reference_equity=reference_equity,
                ),
                members,
            )
            snapshots = {
                account_id: reading.snapshot
                for account_id, reading in readings.items()
                if reading.snapshot is not None
            }
            if options:
                allocation = apply_copy_options(
                    allocation,
                    options,
                    order=spec,
                    specs={a: r.spec for a, r in readings.items()},
                    prices={
                        a: r.copy_price for a, r in readings.items() if r.copy_price is not None
                    },
                    reference=reference,
                    master_symbol=symbol,
                    now=now,
                )
            # After the allocation's time is taken: the checks read the gate's stop-outs, and a
            # stop-out the gate learns of later is the dispatcher's to apply.
            if self._checks.needed(checks):
                allocation = self._checks.apply(
                    allocation,
                    checks,
                    accounts=accounts,
                    snapshots=snapshots,
                    holdings={a: r.holdings for a, r in readings.items() if r.holdings is not None},
                    specs={a: r.spec for a, r in readings.items()},
                    order=spec,
                    master_symbol=symbol,
                    at=now,
                )
            if allocating.is_recording():
                allocating.set_attribute(
                    traced.CHILDREN, sum(1 for line in allocation.lines if line.volume > 0)
                )
        points = {a: r.spec.point for a, r in readings.items() if r.spec is not None}
        return PlannedOrder(group, allocation, snapshots, points)

    def _check_volume(self, spec: MasterOrderSpec, symbol: SymbolSpec) -> None:
        problem = None
        if spec.volume > self._max_master_volume:
            problem = f"above the gateway's limit of {self._max_master_volume} lots"
        elif spec.volume % symbol.volume_step != 0:
            problem = f"not a multiple of the volume step {symbol.volume_step} of {symbol.name}"
        elif spec.volume < symbol.volume_min:
            problem = f"below the minimum volume {symbol.volume_min} of {symbol.name}"
        if problem:
            raise InvalidArgument(
                [FieldViolation("order.volume", problem)], reason="INVALID_VOLUME"
            )

    async def _read_accounts(
        self,
        accounts: list[Account],
        spec: MasterOrderSpec,
        methods: dict[AccountId, AllocationMethod],
        checks: PlannedChecks,
        *,
        options: Mapping[AccountId, CopyOptions],
        priced: bool,
    ) -> dict[AccountId, AccountReading]:
        """One reading per account for this order, all concurrently: its money, the spec of
        the symbol it trades, (for PERCENT_RISK) its entry price, (for an account under
        pre-trade checks) its open positions and price, and (`priced`: for a member with a
        maximum slippage) its price on the side it trades."""

        async def read(account: Account) -> tuple[AccountId, AccountReading]:
            log_about(account_id=account.account_id)  # this task's own context (gather's)
            terminal = self._registry.get(account.account_id)
            if terminal is None or not account.is_active:
                return account.account_id, AccountReading()
            symbol = account.broker_symbol(spec.symbol)
            try:
                with self._snapshot_deadlines.guard():
                    info = await terminal.account_info()
                    snapshot = AccountSnapshot(
                        info.balance, info.equity, info.margin, info.free_margin, info.time
                    )
                    try:
                        symbol_spec = await terminal.symbol_spec(symbol)
                    except SymbolNotFound:
                        return account.account_id, AccountReading(snapshot)
                    entry = quote = copy_price = None
                    # The account's own order: on the other side when it is reversed.
                    copy = options.get(account.account_id)
                    own = spec if copy is None else replace(spec, side=copy.side_of(spec.side))
                    if methods.get(account.account_id) is AllocationMethod.PERCENT_RISK:
                        quote = await terminal.quote(symbol)
                        entry = quote.ask if spec.side is Side.BUY else quote.bid
                    if priced and copy is not None and copy.needs_price:
                        quote = quote or await terminal.quote(symbol)
                        copy_price = quote.ask if own.side is Side.BUY else quote.bid
                    holdings = None
                    if account.account_id in checks.accounts:
                        holdings = await self._checks.read(
                            terminal, account, info, symbol_spec, own, quote, checks.risk
                        )
            except (TimeoutError, TerminalError, SymbolNotFound) as error:
                log.warning("account %s: no snapshot: %s", account.account_id, error)
                return account.account_id, AccountReading()
            return account.account_id, AccountReading(
                snapshot, symbol_spec, entry, holdings, copy_price
            )

        return dict(await asyncio.gather(*(read(a) for a in accounts)))


def _replay(existing: MasterOrder, spec: MasterOrderSpec) -> Submission:
    """The answer to a submission whose client_order_id names a stored order: that order for
    the same payload, ALREADY_EXISTS otherwise."""
    return replayed_if(existing.spec == spec, existing)


def _interned(interner: SpecInterner, spec: SymbolSpec | None) -> SymbolSpec | None:
    return None if spec is None else interner(spec)
