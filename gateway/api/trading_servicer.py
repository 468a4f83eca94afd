"""mam.v1.TradingService."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gateway._proto.mam.v1 import order_pb2
from gateway._proto.mam.v1 import trading_service_pb2 as pb
from gateway._proto.mam.v1 import trading_service_pb2_grpc as pb_grpc
from gateway.api import requests
from gateway.api.errors import NotYetAvailable, SubscriberTooSlow
from gateway.api.mapping import allocation_to_proto, fill_to_proto, master_to_proto
from gateway.domain.errors import NotFound
from gateway.domain.fills import Fill
from gateway.engine.account_manager import AccountManager
from gateway.engine.fill_bus import FillBus
from gateway.engine.trading_engine import TradingEngine
from gateway.store import FillFilter, Store

Context = Any

# Fills per FillBatch message: batching on the wire is what makes a stream fast.
MAX_FILLS_PER_BATCH = 1_000


class TradingServicer(pb_grpc.TradingServiceServicer):
    def __init__(
        self,
        engine: TradingEngine,
        accounts: AccountManager,
        store: Store,
        bus: FillBus,
        *,
        heartbeat_s: float = 5.0,
    ) -> None:
        self._engine = engine
        self._accounts = accounts
        self._store = store
        self._bus = bus
        self._heartbeat_s = heartbeat_s

    async def SubmitMasterOrder(
        self, request: pb.SubmitMasterOrderRequest, context: Context
    ) -> pb.SubmitMasterOrderResponse:
        spec = requests.master_order_spec(request.order)
        master = await self._engine.submit(spec)
        return pb.SubmitMasterOrderResponse(master_order=master_to_proto(master))

    async def StreamMasterOrders(
        self, request_iterator: Any, context: Context
    ) -> AsyncIterator[pb.StreamMasterOrdersResponse]:
        raise NotYetAvailable("StreamMasterOrders is not available in this version")
        yield  # type: ignore[unreachable]  # makes this an async generator

    async def PreviewAllocation(
        self, request: pb.PreviewAllocationRequest, context: Context
    ) -> pb.PreviewAllocationResponse:
        spec = requests.master_order_spec(request.order)
        allocation = await self._engine.preview(spec)
        return pb.PreviewAllocationResponse(allocation=allocation_to_proto(allocation))

    async def GetMasterOrder(
        self, request: pb.GetMasterOrderRequest, context: Context
    ) -> pb.GetMasterOrderResponse:
        master_order_id = requests.required_id(request.master_order_id, "master_order_id")
        master, children = await self._engine.get(master_order_id)
        return pb.GetMasterOrderResponse(master_order=master_to_proto(master, children))

    async def ListMasterOrders(
        self, request: pb.ListMasterOrdersRequest, context: Context
    ) -> pb.ListMasterOrdersResponse:
        limit = requests.page_size(request.page_size, default=50, maximum=500)
        before = requests.decode_page_token(request.page_token)
        if request.group_id:
            await self._accounts.get_group(request.group_id)
        page = await self._engine.list_master_orders(
            before=before, limit=limit + 1, group_id=request.group_id
        )
        rows, token = requests.split_page(page, limit, lambda m: m.master_order_id)
        return pb.ListMasterOrdersResponse(
            master_orders=[master_to_proto(m) for m in rows], next_page_token=token
        )

    async def CancelMasterOrder(
        self, request: pb.CancelMasterOrderRequest, context: Context
    ) -> pb.CancelMasterOrderResponse:
        raise NotYetAvailable("CancelMasterOrder is not available in this version")

    async def ModifyMasterOrder(
        self, request: pb.ModifyMasterOrderRequest, context: Context
    ) -> pb.ModifyMasterOrderResponse:
        raise NotYetAvailable("ModifyMasterOrder is not available in this version")

    async def CloseMasterPosition(
        self, request: pb.CloseMasterPositionRequest, context: Context
    ) -> pb.CloseMasterPositionResponse:
        raise NotYetAvailable("CloseMasterPosition is not available in this version")

    async def SubscribeFills(
        self, request: pb.SubscribeFillsRequest, context: Context
    ) -> AsyncIterator[pb.SubscribeFillsResponse]:
        """Stored fills after after_sequence, then live ones, without a gap or a duplicate.

        The live subscription starts before the replay reads the store, so a fill committed
        during the replay is either read by it or buffered live (and then skipped by its
        sequence). A heartbeat marks the end of the replay and recurs on a quiet stream:
        every matching fill up to its sequence has been sent.
        """
        fill_filter = await self._filter(request)
        subscription = self._bus.subscribe(fill_filter)
        try:
            last = self._store.last_sequence if request.live_only else request.after_sequence
            if not request.live_only:
                while True:
                    stored = await self._store.fills_after(
                        last, limit=MAX_FILLS_PER_BATCH, fill_filter=fill_filter
                    )
                    if stored:
                        last = stored[-1].sequence
                        yield _batch(stored)
                    if len(stored) < MAX_FILLS_PER_BATCH:
                        break
            yield pb.SubscribeFillsResponse(heartbeat_sequence=max(last, self._store.last_sequence))
            while True:
                live = await subscription.next_batch(MAX_FILLS_PER_BATCH, wait_s=self._heartbeat_s)
                if subscription.overflowed:
                    raise SubscriberTooSlow(
                        f"the subscriber fell too far behind; resume with after_sequence={last}"
                    )
                fresh = [f for f in live if f.sequence > last]
                if fresh:
                    last = fresh[-1].sequence
                    yield _batch(fresh)
                elif not live:
                    yield pb.SubscribeFillsResponse(
                        heartbeat_sequence=max(last, self._store.last_sequence)
                    )
        finally:
            self._bus.unsubscribe(subscription)

    async def _filter(self, request: pb.SubscribeFillsRequest) -> FillFilter:
        account_ids = frozenset(request.account_ids)
        if account_ids:
            found = await self._store.get_accounts(account_ids)
            missing = sorted(account_ids - found.keys())
            if missing:
                raise NotFound(
                    "no such account: " + ", ".join(repr(a) for a in missing),
                    reason="ACCOUNT_NOT_FOUND",
                )
        if request.master_order_id:
            await self._engine.get(request.master_order_id)
        return FillFilter(account_ids=account_ids, master_order_id=request.master_order_id)


def _batch(fills: list[Fill]) -> pb.SubscribeFillsResponse:
    return pb.SubscribeFillsResponse(
        batch=order_pb2.FillBatch(
            fills=[fill_to_proto(f) for f in fills], last_sequence=fills[-1].sequence
        )
    )
