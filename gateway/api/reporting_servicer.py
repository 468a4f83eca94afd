"""mam.v1.ReportingService: cash flows, deal history, performance, fees, execution quality and
statements, computed by the domain's pure reporting functions from the stored history.

A statement or a performance report whose period reaches past the account's last stored
reading reads its terminal first (gateway/engine/latest_history.py): a statement made seconds
after a close has the closing deals. When the terminal cannot be read, the statement says as of
when its history is.

Who may ask is settled before a call gets here (gateway/api/access_rules.py): every request
names one account or group the caller may reach. The computations (and the rendering of a
statement, about 1 ms a deal as PDF) run in worker threads, so a long report never holds up
the event loop that serves trading.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from gateway._proto.mam.v1 import reporting_service_pb2 as pb
from gateway._proto.mam.v1 import reporting_service_pb2_grpc as pb_grpc
from gateway.api import reporting_mapping as mapping
from gateway.api import requests
from gateway.api.access_interceptor import current_principal
from gateway.domain.access import Role
from gateway.domain.accounts import Account
from gateway.domain.errors import AlreadyExists, NotFound, Violations
from gateway.domain.execution_quality import (
    AccountExecution,
    MasterDispatchSkew,
    dispatch_skews,
    execution_quality,
)
from gateway.domain.fees import (
    HighWaterMark,
    PeriodFees,
    management_fee,
    performance_fees,
    period_fees,
)
from gateway.domain.figures import SymbolPrecision
from gateway.domain.ids import AccountId, GroupId
from gateway.domain.open_positions import ValuedPosition
from gateway.domain.performance import (
    AccountActivity,
    PerformanceReport,
    combine_accounts,
    measure_performance,
)
from gateway.domain.reporting_period import Period, is_boundary
from gateway.domain.statement import (
    ClientDetails,
    FeeCharged,
    HistoryAsOf,
    Letterhead,
    Statement,
    build_statement,
    shows_open_positions,
)
from gateway.domain.symbols import SymbolSpec
from gateway.engine.latest_history import LatestHistory
from gateway.engine.source_watcher import copied_signal
from gateway.statements import render_deals_csv, render_html, render_pdf
from gateway.store import Store
from gateway.store.reporting import AccountFeeSchedule, AccountOrder, CrystallisedFee

Context = Any

# A statement is streamed in chunks of at most this many bytes.
STATEMENT_CHUNK_BYTES = 256 * 1024
# Master orders one GetExecutionQuality answer covers.
MAX_EXECUTION_ORDERS = 10_000
# Crystallised fee charges a statement reads (a monthly schedule makes 12 a year).
MAX_STATEMENT_FEE_CHARGES = 10_000


@dataclass(frozen=True, slots=True)
class StatementFormat:
    content_type: str
    extension: str


_CSV = StatementFormat("text/csv; charset=utf-8", "csv")
_RENDERERS: dict[int, tuple[StatementFormat, Callable[[Statement], bytes]]] = {
    pb.STATEMENT_FORMAT_HTML: (
        StatementFormat("text/html; charset=utf-8", "html"),
        lambda s: render_html(s).encode(),
    ),
    pb.STATEMENT_FORMAT_PDF: (StatementFormat("application/pdf", "pdf"), render_pdf),
}


class ReportingServicer(pb_grpc.ReportingServiceServicer):
    def __init__(
        self,
        store: Store,
        symbols: Mapping[str, SymbolSpec],
        clock: Callable[[], datetime],
        *,
        latest: LatestHistory | None = None,
        letterhead: Letterhead | None = None,
    ) -> None:
        """`latest`: reads an account's terminal before a statement or report of a period
        that reaches past its last stored reading (None: the stored history only);
        `letterhead`: the configuration's [statements]."""
        self._store = store
        self._symbols = dict(symbols)
        self._clock = clock
        self._latest = latest
        self._letterhead = letterhead or Letterhead()
        # Recording a cash flow and crystallising fees both read the fee state, then write:
        # one at a time (one gateway process per database), so neither slips past the other.
        self._fee_lock = asyncio.Lock()

    # -- cash flows -----------------------------------------------------------------------------

    async def RecordBalanceOperation(
        self, request: pb.RecordBalanceOperationRequest, context: Context
    ) -> pb.RecordBalanceOperationResponse:
        recorded = mapping.balance_operation(
            request.balance_operation,
            recorded_by=current_principal().actor,
            recorded_at=self._clock(),
        )
        await self._account(recorded.account_id)
        async with self._fee_lock:
            stored, replayed = await self._store.reporting.record_balance_operation(recorded)
        if replayed and not stored.same_operation(recorded):
            raise AlreadyExists(
                f"operation_id {recorded.operation_id!r} of account {recorded.account_id} is "
                "taken by another operation",
                reason="DUPLICATE_OPERATION_ID",
            )
        return pb.RecordBalanceOperationResponse(
            balance_operation=mapping.balance_operation_to_proto(stored), replayed=replayed
        )

    async def ListBalanceOperations(
        self, request: pb.ListBalanceOperationsRequest, context: Context
    ) -> pb.ListBalanceOperationsResponse:
        v = Violations()
        account_id = mapping.required_text(v, "account_id", request.account_id)
        since, until = mapping.optional_bounds(v, request)
        limit = requests.page_size(request.page_size, default=100, maximum=1000)
        v.raise_if_any()
        after = _operation_key(request.page_token)
        await self._account(account_id)
        page = await self._store.reporting.list_balance_operations(
            account_id, since=since, until=until, limit=limit + 1, after=after
        )
        rows, token = requests.split_page(
            page, limit, lambda r: f"{mapping.micros(r.operation.time)}:{r.operation_id}"
        )
        return pb.ListBalanceOperationsResponse(
            balance_operations=[mapping.balance_operation_to_proto(r) for r in rows],
            next_page_token=token,
        )

    # -- deals ----------------------------------------------------------------------------------

    async def ListAccountDeals(
        self, request: pb.ListAccountDealsRequest, context: Context
    ) -> pb.ListAccountDealsResponse:
        v = Violations()
        account_id = mapping.required_text(v, "account_id", request.account_id)
        since, until = mapping.optional_bounds(v, request)
        limit = requests.page_size(request.page_size, default=100, maximum=1000)
        v.raise_if_any()
        after = mapping.numeric_key(request.page_token) or 0
        await self._account(account_id)
        page = await self._store.history.deals_of(
            account_id,
            since or mapping.EARLIEST,
            until or mapping.LATEST,
            limit=limit + 1,
            after_ticket=after,
        )
        rows, token = requests.split_page(page, limit, lambda d: str(d.ticket))
        return pb.ListAccountDealsResponse(
            deals=[mapping.deal_to_proto(d) for d in rows], next_page_token=token
        )

    async def ListAccountPositions(
        self, request: pb.ListAccountPositionsRequest, context: Context
    ) -> pb.ListAccountPositionsResponse:
        v = Violations()
        account_id = mapping.required_text(v, "account_id", request.account_id)
        limit = requests.page_size(request.page_size, default=100, maximum=1000)
        v.raise_if_any()
        after = mapping.numeric_key(request.page_token) or 0
        await self._account(account_id)
        # An account holds few positions: read them all, page in memory.
        held = [p for p in await self._store.history.positions_of(account_id) if p.ticket > after]
        rows, token = requests.split_page(held[: limit + 1], limit, lambda p: str(p.ticket))
        return pb.ListAccountPositionsResponse(
            positions=[mapping.position_to_proto(p) for p in rows], next_page_token=token
        )

    # -- performance ----------------------------------------------------------------------------

    async def GetAccountPerformance(
        self, request: pb.GetAccountPerformanceRequest, context: Context
    ) -> pb.GetAccountPerformanceResponse:
        v = Violations()
        account_id = mapping.required_text(v, "account_id", request.account_id)
        period = mapping.required_period(v, request)
        annualization, risk_free_rate = mapping.performance_options(v, request)
        v.raise_if_any()
        assert period is not None
        account = await self._account(account_id)
        await self._read_latest(account, period)
        activity = await self._store.reporting.account_activity(
            account_id, period.start, period.end
        )
        report = await asyncio.to_thread(
            measure_performance,
            activity,
            period,
            annualization=annualization,
            risk_free_rate=risk_free_rate,
            contract_sizes=self._contract_sizes([account]),
        )
        return pb.GetAccountPerformanceResponse(report=mapping.performance_to_proto(report))

    async def GetGroupPerformance(
        self, request: pb.GetGroupPerformanceRequest, context: Context
    ) -> pb.GetGroupPerformanceResponse:
        v = Violations()
        group_id = mapping.required_text(v, "group_id", request.group_id)
        period = mapping.required_period(v, request)
        annualization, risk_free_rate = mapping.performance_options(v, request)
        v.raise_if_any()
        assert period is not None
        group = await self._store.get_group(GroupId(group_id))
        if group is None:
            raise NotFound(f"group {group_id!r} does not exist", reason="GROUP_NOT_FOUND")
        members = list(group.account_ids)
        accounts = await self._store.get_accounts(members)
        if self._latest is not None:
            await self._latest.refresh(
                [a.account_id for a in accounts.values() if _behind(a, period)]
            )
        activities = await self._store.reporting.accounts_activity(
            members, period.start, period.end
        )

        def measure() -> PerformanceReport:
            return measure_performance(
                combine_accounts(group_id, activities),
                period,
                annualization=annualization,
                risk_free_rate=risk_free_rate,
                contract_sizes=self._contract_sizes(accounts.values()),
            )

        report = await asyncio.to_thread(measure)
        return pb.GetGroupPerformanceResponse(
            report=mapping.performance_to_proto(report), account_ids=members
        )

    # -- fees -----------------------------------------------------------------------------------

    async def GetFeeSchedule(
        self, request: pb.GetFeeScheduleRequest, context: Context
    ) -> pb.GetFeeScheduleResponse:
        account_id = requests.required_id(request.account_id, "account_id")
        await self._account(account_id)
        stored = await self._store.reporting.get_fee_schedule(account_id)
        if stored is None:
            raise NotFound(
                f"account {account_id} has no fee schedule", reason="FEE_SCHEDULE_NOT_FOUND"
            )
        return pb.GetFeeScheduleResponse(fee_schedule=mapping.fee_schedule_to_proto(stored))

    async def UpdateFeeSchedule(
        self, request: pb.UpdateFeeScheduleRequest, context: Context
    ) -> pb.UpdateFeeScheduleResponse:
        schedule = mapping.fee_schedule(
            request.fee_schedule, updated_by=current_principal().actor, updated_at=self._clock()
        )
        await self._account(schedule.account_id)
        async with self._fee_lock:
            await self._store.reporting.put_fee_schedule(schedule)
        return pb.UpdateFeeScheduleResponse(fee_schedule=mapping.fee_schedule_to_proto(schedule))

    async def ListFeeCharges(
        self, request: pb.ListFeeChargesRequest, context: Context
    ) -> pb.ListFeeChargesResponse:
        account_id = requests.required_id(request.account_id, "account_id")
        limit = requests.page_size(request.page_size, default=100, maximum=1000)
        after = mapping.numeric_key(request.page_token)
        await self._account(account_id)
        reporting = self._store.reporting
        response = pb.ListFeeChargesResponse()
        stored = await reporting.get_fee_schedule(account_id)
        if stored is not None:
            now = self._clock()
            async with self._fee_lock:
                state = await self._crystallise(stored, now)
            accrued = await self._accrued(stored, state, now)
            if accrued is not None:
                response.accrued.CopyFrom(accrued)
            if state is not None:
                response.high_water_mark.CopyFrom(mapping.high_water_mark_to_proto(state))
        page = await reporting.list_fee_charges(
            account_id,
            limit=limit + 1,
            after=mapping.from_micros(after) if after is not None else None,
        )
        rows, token = requests.split_page(
            page, limit, lambda c: str(mapping.micros(c.period.start))
        )
        response.fee_charges.extend(mapping.crystallised_fee_to_proto(c) for c in rows)
        response.next_page_token = token
        return response

    async def _crystallise(self, stored: AccountFeeSchedule, now: datetime) -> HighWaterMark | None:
        """Charges every crystallisation period completed since the last one (stored once),
        and returns the state after them."""
        reporting = self._store.reporting
        state = await reporting.get_fee_state(stored.account_id)
        start = state.as_of if state is not None else stored.effective_from
        if start >= now:
            return state
        frequency = stored.schedule.crystallisation
        completed = [
            p for p in Period(start, now).split(frequency) if is_boundary(p.end, frequency)
        ]
        if not completed:
            return state
        window = Period(start, completed[-1].end)
        activity = await reporting.account_activity(stored.account_id, window.start, window.end)
        charges, closing = await asyncio.to_thread(
            _crystallised_charges, activity, stored, window, state, now
        )
        if closing is None:
            return state  # never valued yet: nothing to carry
        await reporting.save_crystallisation(stored.account_id, charges, closing, at=now)
        return closing

    async def _accrued(
        self, stored: AccountFeeSchedule, state: HighWaterMark | None, now: datetime
    ) -> pb.FeeCharge | None:
        """The fees of the current period so far."""
        start = state.as_of if state is not None else stored.effective_from
        if start >= now:
            return None
        period = Period(start, now)
        activity = await self._store.reporting.account_activity(
            stored.account_id, period.start, period.end
        )
        fees = await asyncio.to_thread(
            period_fees, activity, stored.schedule, period, high_water_mark=state
        )
        if not fees.performance.charges:
            return None
        performance = fees.performance.charges[-1]
        return mapping.fee_charge_to_proto(
            performance, fees.management, stored.schedule, crystallised_at=None
        )

    # -- execution quality ----------------------------------------------------------------------

    async def GetExecutionQuality(
        self, request: pb.GetExecutionQualityRequest, context: Context
    ) -> pb.GetExecutionQualityResponse:
        v = Violations()
        account_id = mapping.required_text(v, "account_id", request.account_id)
        period = mapping.required_period(v, request)
        v.raise_if_any()
        assert period is not None
        await self._account(account_id)
        orders = await self._store.reporting.orders_of_account(
            account_id, period.start, period.end, limit=MAX_EXECUTION_ORDERS + 1
        )
        truncated = len(orders) > MAX_EXECUTION_ORDERS
        orders = orders[:MAX_EXECUTION_ORDERS]
        signal_times = await self._store.sources.signal_times(
            [copy for order in orders if (copy := copied_signal(order.master)) is not None]
        )
        executions = [
            e
            for order in orders
            for e in self._executions(order, _signal_time(order, signal_times))
        ]
        qualities = await asyncio.to_thread(execution_quality, executions)
        quality = next((q for q in qualities if q.account_id == account_id), None)
        if current_principal().role is Role.INVESTOR:
            # An investor reads its own account, not the order's others: the skews, and the
            # delay after the order's first child, are measured on the other accounts' sends.
            skews: tuple[MasterDispatchSkew, ...] = ()
            if quality is not None:
                quality = replace(
                    quality, average_dispatch_delay_us=None, max_dispatch_delay_us=None
                )
        else:
            skews = await asyncio.to_thread(dispatch_skews, executions)
        return mapping.execution_quality_to_proto(account_id, quality, skews, truncated=truncated)

    def _executions(
        self, order: AccountOrder, signal_at: datetime | None = None
    ) -> list[AccountExecution]:
        """Each account's part of one master order: its exact share, its rounded share, its
        fills. The master's price is its limit or stop price, or for a market order the price
        its first child was sent at (the market when dispatch began)."""
        master = order.master
        spec = self._symbols.get(master.spec.symbol)
        sent = sorted(
            (c for c in order.children if c.sent_at is not None and c.requested_price is not None),
            key=lambda c: (c.sent_at, c.child_order_id),
        )
        master_price = master.spec.price or (sent[0].requested_price if sent else None)
        by_account: dict[str, list[Any]] = {}
        for child in order.children:
            by_account.setdefault(child.account_id, []).append(child)
        executions: list[AccountExecution] = []
        for line in master.allocation.lines:
            children = by_account.get(line.account_id, [])
            if line.target_volume <= 0 and line.volume <= 0 and not children:
                continue
            filled = sum((c.filled_volume for c in children), Decimal(0))
            priced = [c for c in children if c.fill_price is not None and c.filled_volume > 0]
            fill_price = (
                sum((c.fill_price * c.filled_volume for c in priced), Decimal(0)) / filled
                if priced and filled > 0
                else None
            )
            sends = [c.sent_at for c in children if c.sent_at is not None]
            fills = [c.filled_at for c in children if c.filled_at is not None]
            executions.append(
                AccountExecution(
                    master_order_id=master.master_order_id,
                    account_id=line.account_id,
                    symbol=line.symbol,
                    point=spec.point if spec is not None else Decimal(1),
                    side=master.spec.side,
                    submitted_at=master.allocation.snapshot_time,
                    target_volume=line.target_volume,
                    allocated_volume=line.volume,
                    filled_volume=filled,
                    # Without the symbol's point, points cannot be counted: no slippage then.
                    master_price=master_price if spec is not None else None,
                    fill_price=fill_price,
                    sent_at=min(sends) if sends else None,
                    filled_at=min(fills) if fills else None,
                    signal_at=signal_at,
                )
            )
        return executions

    # -- statements -----------------------------------------------------------------------------

    async def GetAccountStatement(
        self, request: pb.GetAccountStatementRequest, context: Context
    ) -> AsyncIterator[pb.GetAccountStatementResponse]:
        v = Violations()
        account_id = mapping.required_text(v, "account_id", request.account_id)
        period = mapping.required_period(v, request)
        csv = request.format == pb.STATEMENT_FORMAT_CSV
        if not csv and request.format not in _RENDERERS:
            v.add("format", "must be STATEMENT_FORMAT_CSV, STATEMENT_FORMAT_HTML or _PDF")
        v.raise_if_any()
        assert period is not None
        account = await self._account(account_id)
        reporting = self._store.reporting
        as_of = await self._read_latest(account, period)
        if csv:
            # The deals alone: no snapshots to read, no report to compute.
            form = _CSV
            deals = await reporting.trade_deals(account_id, period.start, period.end)
            data = await asyncio.to_thread(lambda: render_deals_csv(deals).encode())
        else:
            form, render_statement = _RENDERERS[request.format]
            activity = await reporting.account_activity(account_id, period.start, period.end)
            fees = await self._statement_fees(account_id, activity, period)
            charges = await self._fees_charged(account_id, period)
            positions: tuple[ValuedPosition, ...] = ()
            if shows_open_positions(period, as_of):
                positions = (
                    await self._latest.valued_positions(account_id)
                    if self._latest is not None
                    else tuple(
                        ValuedPosition(p)
                        for p in await self._store.history.positions_of(account_id)
                    )
                )
            generated_at = self._clock()

            def render() -> bytes:
                statement = build_statement(
                    activity,
                    period,
                    account_name=account.name,
                    currency=account.currency,
                    generated_at=generated_at,
                    fees=fees,
                    contract_sizes=self._contract_sizes([account]),
                    client=ClientDetails(
                        name=account.name,
                        account_id=account.account_id,
                        login=account.login,
                        server=account.server,
                        platform=account.platform.name,
                        currency=account.currency,
                        leverage=account.leverage,
                    ),
                    letterhead=self._letterhead,
                    as_of=as_of,
                    open_positions=positions,
                    fee_charges=charges,
                    precisions=self._precisions([account]),
                )
                return render_statement(statement)

            data = await asyncio.to_thread(render)
        file_name = (
            f"statement-{account_id}-{period.first_day.isoformat()}-"
            f"{period.last_day.isoformat()}.{form.extension}"
        )
        for offset in range(0, max(len(data), 1), STATEMENT_CHUNK_BYTES):
            chunk = data[offset : offset + STATEMENT_CHUNK_BYTES]
            if offset == 0:
                yield pb.GetAccountStatementResponse(
                    content_type=form.content_type,
                    file_name=file_name,
                    total_size=len(data),
                    data=chunk,
                )
            else:
                yield pb.GetAccountStatementResponse(data=chunk)

    async def _statement_fees(
        self, account_id: str, activity: AccountActivity, period: Period
    ) -> PeriodFees | None:
        """The fees of the statement's period under the account's schedule, the high-water
        mark carried from a crystallisation at the period's start; None without a schedule."""
        reporting = self._store.reporting
        stored = await reporting.get_fee_schedule(account_id)
        if stored is None:
            return None
        start = max(period.start, stored.effective_from)
        if start >= period.end:
            return None
        carried = await reporting.fee_charge_ending_at(account_id, start)
        mark = (
            HighWaterMark(
                value=carried.performance.closing_high_water_mark,
                equity=carried.performance.equity,
                as_of=start,
            )
            if carried is not None
            else None
        )
        return await asyncio.to_thread(
            period_fees, activity, stored.schedule, Period(start, period.end), high_water_mark=mark
        )

    async def _fees_charged(self, account_id: str, period: Period) -> tuple[FeeCharged, ...]:
        """The fee charges crystallised for periods that ended within `period`, the periods
        completed by now crystallised first (as ListFeeCharges does)."""
        reporting = self._store.reporting
        stored = await reporting.get_fee_schedule(account_id)
        if stored is None:
            return ()
        async with self._fee_lock:
            await self._crystallise(stored, self._clock())
        charges = await reporting.list_fee_charges(account_id, limit=MAX_STATEMENT_FEE_CHARGES)
        return tuple(
            FeeCharged(
                period=c.period,
                performance_fee=c.performance.fee,
                management_fee=c.management.fee,
                high_water_mark=c.performance.closing_high_water_mark,
                charged_at=c.crystallised_at,
            )
            for c in charges
            if period.start < c.period.end <= period.end
        )

    # -- shared ---------------------------------------------------------------------------------

    async def _read_latest(self, account: Account, period: Period) -> HistoryAsOf:
        """Reads the account's terminal when the period reaches past its last stored reading;
        how recent the stored history is then."""
        read_at = account.snapshot.time if account.snapshot is not None else None
        if self._latest is None or account.is_deleted or not _behind(account, period):
            return HistoryAsOf(read_at)
        problems = await self._latest.refresh([account.account_id])
        problem = problems.get(account.account_id, "")
        if not problem:
            account = await self._account(account.account_id)
            read_at = account.snapshot.time if account.snapshot is not None else read_at
        return HistoryAsOf(read_at, problem)

    def _precisions(self, accounts: Any) -> dict[str, SymbolPrecision]:
        """Each symbol's volume step and digits by the names deals carry: the gateway's
        symbols and each account's broker names for them."""
        precisions = {
            name: SymbolPrecision(spec.volume_step, spec.digits)
            for name, spec in self._symbols.items()
        }
        for account in accounts:
            for symbol, broker_symbol in account.symbol_mappings:
                spec = self._symbols.get(symbol)
                if spec is not None:
                    precisions[broker_symbol] = SymbolPrecision(spec.volume_step, spec.digits)
        return precisions

    async def _account(self, account_id: str) -> Account:
        account = await self._store.get_account(AccountId(account_id))
        if account is None:
            raise NotFound(f"account {account_id!r} does not exist", reason="ACCOUNT_NOT_FOUND")
        return account

    def _contract_sizes(self, accounts: Any) -> dict[str, Decimal]:
        """Contract sizes by the names deals carry: the gateway's symbols and each account's
        broker names for them."""
        sizes = {name: spec.contract_size for name, spec in self._symbols.items()}
        for account in accounts:
            for symbol, broker_symbol in account.symbol_mappings:
                spec = self._symbols.get(symbol)
                if spec is not None:
                    sizes[broker_symbol] = spec.contract_size
        return sizes


def _behind(account: Account, period: Period) -> bool:
    """Whether the period reaches past the account's last stored reading."""
    snapshot = account.snapshot
    return snapshot is None or snapshot.time is None or snapshot.time < period.end


def _operation_key(token: str) -> tuple[datetime, str] | None:
    """The (time, operation id) a ListBalanceOperations page continues after."""
    key = mapping.page_key(token)
    if not key:
        return None
    at, sep, operation_id = key.partition(":")
    if not sep or not at.isdigit() or len(at) > 18 or not operation_id:
        raise mapping.bad_page_token()
    return mapping.from_micros(int(at)), operation_id


def _crystallised_charges(
    activity: AccountActivity,
    stored: AccountFeeSchedule,
    window: Period,
    state: HighWaterMark | None,
    now: datetime,
) -> tuple[list[CrystallisedFee], HighWaterMark | None]:
    """The charges of the complete crystallisation periods of `window` and the state after
    them. Each period's management fee counts the days before its first snapshot at the
    equity carried in."""
    schedule = stored.schedule
    result = performance_fees(activity, schedule, window, high_water_mark=state)
    carried_equity = state.equity if state is not None else None
    charges: list[CrystallisedFee] = []
    for charge in result.charges:
        management = management_fee(
            activity, schedule, charge.period, opening_equity=carried_equity
        )
        carried_equity = charge.equity
        charges.append(
            CrystallisedFee(
                account_id=stored.account_id,
                performance=charge,
                management=management,
                performance_fee_percent=schedule.performance_fee_percent,
                management_fee_percent=schedule.management_fee_percent,
                crystallised_at=now,
            )
        )
    return charges, result.high_water_mark


def _signal_time(
    order: AccountOrder, times: dict[tuple[GroupId, str], datetime]
) -> datetime | None:
    """When the source made the change the order copies; None for any other order."""
    copy = copied_signal(order.master)
    return None if copy is None else times.get(copy)
