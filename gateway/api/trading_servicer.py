"""mam.v1.TradingService."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from gateway._proto.mam.v1 import order_pb2
from gateway._proto.mam.v1 import trading_service_pb2 as pb
from gateway._proto.mam.v1 import trading_service_pb2_grpc as pb_grpc
from gateway.api import fill_wire, requests, signal_calls
from gateway.api.access_interceptor import AccessControl, current_principal, mark_audited
from gateway.api.access_rules import RULES
from gateway.api.errors import code_of
from gateway.api.mapping import (
    allocation_to_proto,
    child_to_proto,
    dec,
    enum_to_proto,
    master_to_proto,
)
from gateway.api.stream_registry import current_stream
from gateway.domain.errors import (
    DomainError,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from gateway.domain.ids import AccountId, GroupId, MasterOrderId
from gateway.domain.orders import ChildOrder, MasterOrder, MasterOrderState
from gateway.domain.symbols import SymbolSpec
from gateway.engine.account_manager import AccountManager
from gateway.engine.fill_bus import FillBus, Subscription
from gateway.engine.metrics import NO_METRICS, GatewayMetrics
from gateway.engine.order_updates import Follower, OrderUpdate, OrderUpdateBus
from gateway.engine.source_watcher import SourceWatchers
from gateway.engine.stops_modifier import StopsChange
from gateway.engine.trading_engine import TradingEngine
from gateway.store import FillFilter, Store

Context = Any

log = logging.getLogger(__name__)

# Fills per FillBatch message: batching on the wire is what makes a stream fast.
MAX_FILLS_PER_BATCH = 1_000
# Sequences are stored as signed 64-bit integers.
MAX_SEQUENCE = 2**63 - 1
# Submissions of one StreamMasterOrders call taken ahead of the answers the caller has read.
MAX_UNANSWERED = 64
STREAM_METHOD = "/mam.v1.TradingService/StreamMasterOrders"
SUBMIT_METHOD = "/mam.v1.TradingService/SubmitMasterOrder"


class TradingServicer(pb_grpc.TradingServiceServicer):
    def __init__(
        self,
        engine: TradingEngine,
        accounts: AccountManager,
        store: Store,
        bus: FillBus,
        *,
        updates: OrderUpdateBus,
        access: AccessControl,
        heartbeat_s: float = 5.0,
        sources: SourceWatchers | None = None,
        metrics: GatewayMetrics = NO_METRICS,
    ) -> None:
        self._access = access
        # Mirroring: the signals of groups' source accounts (None: not served).
        self._sources = sources
        self._metrics = metrics
        self._engine = engine
        self._accounts = accounts
        self._store = store
        self._bus = bus
        self._updates = updates
        self._heartbeat_s = heartbeat_s

    async def SubmitMasterOrder(
        self, request: pb.SubmitMasterOrderRequest, context: Context
    ) -> pb.SubmitMasterOrderResponse:
        spec, view = requests.submission(request)
        principal = current_principal()
        # The call's audit record goes in the order's own transaction: no commit of its own
        # between the caller and its acknowledgement.
        audit = self._access.audit_record(principal, SUBMIT_METHOD, request, peer=context.peer())
        submission = await self._engine.submit(spec, submitted_by=principal.key_id, audit=audit)
        if submission.audited:
            mark_audited()
        return pb.SubmitMasterOrderResponse(
            master_order=master_to_proto(submission.master, allocation_lines=view.allocation_lines),
            replayed=submission.replayed,
        )

    async def StreamMasterOrders(
        self, request_iterator: AsyncIterator[pb.StreamMasterOrdersRequest], context: Context
    ) -> AsyncIterator[pb.StreamMasterOrdersResponse]:
        """Submissions in, acknowledgements and order events out, on one stream.

        Submissions are taken one at a time, at most MAX_UNANSWERED ahead of what the caller has
        read: a caller that stops reading stops being read (gRPC flow control does the rest).
        Each acknowledgement precedes its order's events; the stream ends once the caller has
        half-closed and every order it submitted is final.
        """
        follower = self._updates.open()
        window = asyncio.Semaphore(MAX_UNANSWERED)
        reading = asyncio.create_task(
            self._read_submissions(request_iterator, follower, window, context.peer())
        )
        stream = current_stream()
        if stream is not None:
            # Ended (its key revoked): no submission is taken from then on, even while the
            # answers wait for a slow reader.
            stream.on_end(reading.cancel)
        # The state, client_order_id and view of each followed master order, for its events;
        # an order's entries go when it is unfollowed, at its final state, so that a long stream
        # holds only the orders still moving.
        states: dict[str, MasterOrderState] = {}
        client_ids: dict[str, str] = {}
        views: dict[str, requests.MasterOrderView] = {}

        def unfollow(master_order_id: MasterOrderId) -> None:
            follower.unfollow(master_order_id)
            states.pop(master_order_id, None)
            client_ids.pop(master_order_id, None)
            views.pop(master_order_id, None)

        try:
            while True:
                if self._updates.stopping:
                    raise Unavailable(
                        "the gateway is stopping; resubmit with the same client_order_id to "
                        "follow an order again (nothing is traded twice)",
                        reason="GATEWAY_STOPPING",
                    )
                if reading.done():
                    if not reading.cancelled() and reading.exception() is not None:
                        reading.result()  # ends the stream with the reader's failure
                    if not (follower.following or follower.stale or follower.has_items):
                        return
                for item in await follower.next_items(wait_s=1.0):
                    if isinstance(item, _Answer):
                        window.release()
                        accepted = item.master
                        # An order not followed (final when submitted, or read final from the
                        # store already) has no events to come: nothing is kept for it.
                        if accepted is not None and accepted.master_order_id in follower.following:
                            assert item.view is not None  # set with every acceptance
                            states[accepted.master_order_id] = accepted.state
                            client_ids[accepted.master_order_id] = item.client_order_id
                            views[accepted.master_order_id] = item.view
                        yield item.response
                        continue
                    assert isinstance(item, OrderUpdate)
                    master_order_id = item.master_order_id
                    if master_order_id in follower.stale:
                        continue  # superseded by the store read below
                    if master_order_id not in follower.following:
                        continue  # taken before its final event unfollowed it
                    if item.master is not None:
                        states[master_order_id] = item.master.state
                    yield self._event_response(
                        client_ids.get(master_order_id, ""),
                        master_order_id,
                        states[master_order_id],
                        item.master,
                        item.children,
                        views.get(master_order_id, requests.MasterOrderView.FULL),
                    )
                    if states[master_order_id].is_final:
                        unfollow(master_order_id)
                for master_order_id in sorted(follower.stale):
                    follower.stale.discard(master_order_id)
                    master, children = await self._engine.get(master_order_id)
                    states[master_order_id] = master.state
                    yield self._event_response(
                        master.spec.client_order_id,
                        master_order_id,
                        master.state,
                        master,
                        tuple(children),
                        views.get(master_order_id, requests.MasterOrderView.FULL),
                    )
                    if master.state.is_final:
                        unfollow(master_order_id)
        finally:
            reading.cancel()
            self._updates.close(follower)

    @staticmethod
    def _event_response(
        client_order_id: str,
        master_order_id: MasterOrderId,
        state: MasterOrderState,
        master: MasterOrder | None,
        children: tuple[ChildOrder, ...],
        view: requests.MasterOrderView,
    ) -> pb.StreamMasterOrdersResponse:
        return pb.StreamMasterOrdersResponse(
            client_order_id=client_order_id,
            update=pb.MasterOrderEvent(
                master_order_id=master_order_id,
                state=enum_to_proto(order_pb2.MasterOrderState, "MASTER_ORDER_STATE", state),
                children=[child_to_proto(c) for c in children],
                master_order=(
                    master_to_proto(master, allocation_lines=view.allocation_lines)
                    if master is not None
                    else None
                ),
            ),
        )

    async def _read_submissions(
        self,
        request_iterator: AsyncIterator[pb.StreamMasterOrdersRequest],
        follower: Follower,
        window: asyncio.Semaphore,
        peer: str,
    ) -> None:
        principal = current_principal()
        # The interceptor sees a stream, not its submissions: each is checked here.
        check = RULES[STREAM_METHOD].check
        try:
            async for request in request_iterator:
                await window.acquire()
                client_order_id = request.order.client_order_id
                try:
                    if check is not None and not principal.is_admin:
                        await check(self._access.scope, principal, request)
                    spec, view = requests.submission(request)
                    audit = self._access.audit_record(principal, STREAM_METHOD, request, peer=peer)
                    submission = await self._engine.submit(
                        spec, submitted_by=principal.key_id, audit=audit
                    )
                except DomainError as error:
                    self._metrics.refused(error)
                    await self._access.record(
                        principal, STREAM_METHOD, request, peer=peer, error=error
                    )
                    rejected = pb.StreamMasterOrdersResponse(
                        client_order_id=client_order_id, rejected=_rejection(error)
                    )
                    follower.put(_Answer(rejected, client_order_id, None, None))
                    continue
                master = submission.master
                if not submission.audited:  # a replay: recorded on its own
                    await self._access.record(
                        principal,
                        STREAM_METHOD,
                        request,
                        peer=peer,
                        result=f"master_order_id={master.master_order_id}",
                    )
                # No await since submit returned: no committed change of this order was
                # published before it is followed.
                if not master.state.is_final:
                    follower.follow(master.master_order_id)
                    if submission.replayed:
                        follower.mark_stale(master.master_order_id)  # may have moved on since
                accepted = pb.StreamMasterOrdersResponse(
                    client_order_id=client_order_id,
                    accepted=master_to_proto(master, allocation_lines=view.allocation_lines),
                )
                follower.put(_Answer(accepted, client_order_id, master, view))
        finally:
            follower.wake()

    async def PreviewAllocation(
        self, request: pb.PreviewAllocationRequest, context: Context
    ) -> pb.PreviewAllocationResponse:
        spec = requests.master_order_spec(request.order, for_submission=False)
        allocation = await self._engine.preview(spec)
        return pb.PreviewAllocationResponse(allocation=allocation_to_proto(allocation))

    async def GetMasterOrder(
        self, request: pb.GetMasterOrderRequest, context: Context
    ) -> pb.GetMasterOrderResponse:
        master_order_id, view = requests.master_order_lookup(request)
        master, children = await self._engine.get(master_order_id)
        return pb.GetMasterOrderResponse(
            master_order=master_to_proto(master, children, allocation_lines=view.allocation_lines)
        )

    async def ListMasterOrders(
        self, request: pb.ListMasterOrdersRequest, context: Context
    ) -> pb.ListMasterOrdersResponse:
        limit = requests.page_size(request.page_size, default=50, maximum=500)
        before = requests.decode_page_token(request.page_token)
        view = requests.master_order_view(request.view)
        if request.group_id:
            await self._accounts.get_group(GroupId(request.group_id))
        principal = current_principal()
        page = await self._engine.list_master_orders(
            before=before,
            limit=limit + 1,
            group_id=request.group_id,
            within_groups=None if principal.is_admin else principal.group_ids,
        )
        rows, token = requests.split_page(page, limit, lambda m: m.master_order_id)
        return pb.ListMasterOrdersResponse(
            master_orders=[
                master_to_proto(m, allocation_lines=view.allocation_lines) for m in rows
            ],
            next_page_token=token,
        )

    async def CancelMasterOrder(
        self, request: pb.CancelMasterOrderRequest, context: Context
    ) -> pb.CancelMasterOrderResponse:
        master_order_id = MasterOrderId(
            requests.required_id(request.master_order_id, "master_order_id")
        )
        master = await self._engine.cancel(master_order_id)
        return pb.CancelMasterOrderResponse(master_order=master_to_proto(master))

    async def ModifyMasterOrder(
        self, request: pb.ModifyMasterOrderRequest, context: Context
    ) -> pb.ModifyMasterOrderResponse:
        stops = requests.stops_request(request)
        master, outcomes = await self._engine.modify_stops(
            stops.master_order_id,
            StopsChange(stops.stop_loss, stops.take_profit),
            price=stops.price,
        )
        return pb.ModifyMasterOrderResponse(
            master_order=master_to_proto(master),
            results=[
                pb.AccountResult(
                    account_id=o.account_id,
                    child_order_id=o.child_order_id,
                    retcode=o.retcode,
                    status_text=o.text,
                    done=o.done,
                )
                for o in outcomes
            ],
        )

    async def CloseMasterPosition(
        self, request: pb.CloseMasterPositionRequest, context: Context
    ) -> pb.CloseMasterPositionResponse:
        close = requests.close_request(request)
        submission = await self._engine.close_position(
            close.master_order_id,
            client_order_id=close.client_order_id,
            fraction=close.fraction,
            volume=close.volume,
            submitted_by=current_principal().key_id,
        )
        return pb.CloseMasterPositionResponse(
            master_order=master_to_proto(submission.master), replayed=submission.replayed
        )

    async def SubscribeFills(
        self, request: pb.SubscribeFillsRequest, context: Context
    ) -> AsyncIterator[pb.SubscribeFillsResponse]:
        """Stored fills after after_sequence, then live ones, without a gap or a duplicate.

        The live subscription starts before the replay reads the store, so a fill committed
        during the replay is either read by it or buffered live (and then skipped by its
        sequence). A heartbeat marks the end of the replay and recurs on a quiet stream:
        every matching fill up to its sequence has been sent.

        A reader too slow for its live buffer (FillBus.max_pending) is not cut off: its buffer
        is dropped and it catches up from the store the same way, then goes live again. gRPC
        flow control holds the replay to the reader's pace, so memory stays bounded.
        """
        scope = _FillScope(self._bus, await self._filter(request))
        stream = current_stream()
        if stream is not None:
            # An account leaving the key's reach ends a stream that named it and is dropped
            # silently from "all my accounts" (docs/access-control.md).
            await stream.scope_to(
                scope.filter.account_ids, explicit=bool(request.account_ids), narrow=scope.narrow
            )
            stream.on_end(scope.close)
        last = self._store.last_sequence if request.live_only else request.after_sequence
        while True:
            subscription = scope.subscribe()
            try:
                replay = fill_wire.stored_batches(
                    self._store, last, subscription.filter, batch_size=MAX_FILLS_PER_BATCH
                )
                async with contextlib.aclosing(replay) as batches:
                    async for response in batches:
                        if subscription.narrowed:
                            break  # read under the wider filter: read again under the new one
                        last = response.batch.last_sequence
                        yield response
                if subscription.narrowed:
                    continue
                yield pb.SubscribeFillsResponse(
                    heartbeat_sequence=max(last, self._store.last_sequence)
                )
                while not subscription.overflowed:
                    live = await subscription.next_batch(
                        MAX_FILLS_PER_BATCH, wait_s=self._heartbeat_s
                    )
                    if self._bus.stopping:
                        raise Unavailable(
                            f"the gateway is stopping; resubscribe with after_sequence={last}",
                            reason="GATEWAY_STOPPING",
                        )
                    fresh = [f for f in live if f.fill.sequence > last]
                    if fresh:
                        last = fresh[-1].fill.sequence
                        yield fill_wire.committed_batch(fresh)
                        # Back here once gRPC has taken the message.
                        lag_s = time.monotonic() - subscription.oldest_published_at
                        self._metrics.fills_sent(lag_s)
                    elif not live and not subscription.overflowed:
                        yield pb.SubscribeFillsResponse(
                            heartbeat_sequence=max(last, self._store.last_sequence)
                        )
            finally:
                self._bus.unsubscribe(subscription)
            log.info("fill subscriber fell behind at sequence %d: catching up from the store", last)

    async def ListSignals(
        self, request: pb.ListSignalsRequest, context: Context
    ) -> pb.ListSignalsResponse:
        return await signal_calls.list_signals(request, store=self._store, accounts=self._accounts)

    async def ListSymbols(
        self, request: pb.ListSymbolsRequest, context: Context
    ) -> pb.ListSymbolsResponse:
        limit = requests.page_size(request.page_size, default=100, maximum=1000)
        after = requests.decode_page_token(request.page_token)
        names = sorted(name for name in self._engine.symbols if name > after)
        rows, token = requests.split_page(names[: limit + 1], limit, lambda name: name)
        return pb.ListSymbolsResponse(
            symbols=[_symbol_to_proto(self._engine.symbols[name]) for name in rows],
            next_page_token=token,
        )

    async def StreamSignals(
        self, request: pb.StreamSignalsRequest, context: Context
    ) -> AsyncIterator[pb.StreamSignalsResponse]:
        responses = signal_calls.stream_signals(
            request,
            store=self._store,
            accounts=self._accounts,
            sources=self._sources,
            heartbeat_s=self._heartbeat_s,
        )
        async with contextlib.aclosing(responses):
            async for response in responses:
                yield response

    async def _filter(self, request: pb.SubscribeFillsRequest) -> FillFilter:
        if request.after_sequence > MAX_SEQUENCE:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "after_sequence",
                        f"must be at most {MAX_SEQUENCE} (sequences are signed 64-bit)",
                    )
                ]
            )
        account_ids = frozenset(map(AccountId, request.account_ids))
        if account_ids:
            found = await self._store.get_accounts(account_ids)
            missing = sorted(account_ids - found.keys())
            if missing:
                raise NotFound(
                    "no such account: " + ", ".join(repr(a) for a in missing),
                    reason="ACCOUNT_NOT_FOUND",
                )
        principal = current_principal()
        if request.master_order_id and principal.is_admin:
            await self._engine.get(MasterOrderId(request.master_order_id))
        if not principal.is_admin and not account_ids:
            # No filter: everything the key reaches, as of now.
            account_ids = await self._access.scope.accounts_of(principal)
            if not account_ids:
                raise PermissionDenied(
                    "this API key reaches no account", reason="PERMISSION_DENIED"
                )
        return FillFilter(account_ids=account_ids, master_order_id=request.master_order_id)


class _FillScope:
    """The filter of one SubscribeFills call and its current bus subscription, narrowed
    together when the caller's reach shrinks (so the filter of a catch-up is the new one)."""

    def __init__(self, bus: FillBus, fill_filter: FillFilter) -> None:
        self.filter = fill_filter
        self._bus = bus
        self._subscription: Subscription | None = None

    def subscribe(self) -> Subscription:
        self._subscription = self._bus.subscribe(self.filter)
        return self._subscription

    def narrow(self, account_ids: frozenset[str]) -> None:
        self.filter = replace(self.filter, account_ids=account_ids)
        if self._subscription is not None:
            self._subscription.narrow(self.filter)

    def close(self) -> None:
        """The stream was ended: its buffer goes now, even while a send holds the call."""
        if self._subscription is not None:
            self._bus.unsubscribe(self._subscription)


@dataclass(frozen=True, slots=True)
class _Answer:
    """A submission's acknowledgement or rejection, queued in order with the updates."""

    response: pb.StreamMasterOrdersResponse
    client_order_id: str
    master: MasterOrder | None
    # The view the submission asked for, for its events (None with a rejection).
    view: requests.MasterOrderView | None


def _rejection(error: DomainError) -> pb.SubmissionRejected:
    return pb.SubmissionRejected(
        code=code_of(error).value[0],
        reason=error.reason,
        message=error.message,
        fields=[v.field for v in error.violations] if isinstance(error, InvalidArgument) else [],
    )


def _symbol_to_proto(spec: SymbolSpec) -> pb.Symbol:
    return pb.Symbol(
        name=spec.name,
        digits=spec.digits,
        volume_min=dec(spec.volume_min),
        volume_step=dec(spec.volume_step),
        volume_max=dec(spec.volume_max),
        contract_size=dec(spec.contract_size),
        tick_size=dec(spec.tick_size),
        tick_value=dec(spec.tick_value),
        currency_base=spec.currency_base,
        currency_profit=spec.currency_profit,
    )
