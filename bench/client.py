"""The benchmark's side of the API: submitting master orders and counting their fills as a
subscriber receives them (SubscribeFills over real gRPC)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from decimal import Decimal

import grpc

from gateway._proto.mam.v1 import (
    common_pb2,
    order_pb2,
    trading_service_pb2,
    trading_service_pb2_grpc,
)


class FillCounter:
    """One SubscribeFills stream; counts fills per master order and notes when each arrived."""

    def __init__(
        self,
        trading: trading_service_pb2_grpc.TradingServiceStub,
        request: trading_service_pb2.SubscribeFillsRequest | None = None,
    ) -> None:
        self._trading = trading
        self._request = request or trading_service_pb2.SubscribeFillsRequest(live_only=True)
        self.counts: dict[str, int] = defaultdict(int)
        self.last_arrival: dict[str, float] = {}
        self.total = 0
        self.last_sequence = 0
        self.heartbeats = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._call: grpc.aio.UnaryStreamCall | None = None
        self.error: BaseException | None = None

    async def start(self) -> None:
        """Subscribes; returns once the stream is live (its first heartbeat)."""
        self._call = self._trading.SubscribeFills(self._request)
        first = await self._call.read()
        assert first is not grpc.aio.EOF
        self._take(first)
        self._task = asyncio.create_task(self._read())

    def _take(self, message: trading_service_pb2.SubscribeFillsResponse) -> None:
        if not message.HasField("batch"):
            self.heartbeats += 1
            return
        now = time.perf_counter()
        fills = message.batch.fills
        self.total += len(fills)
        self.last_sequence = message.batch.last_sequence
        counts, last = self.counts, self.last_arrival
        for fill in fills:
            counts[fill.master_order_id] += 1
            last[fill.master_order_id] = now
        self._changed.set()

    async def _read(self) -> None:
        assert self._call is not None
        try:
            while (message := await self._call.read()) is not grpc.aio.EOF:
                self._take(message)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.CANCELLED:
                self.error = error
        finally:
            self._changed.set()

    async def wait_for(self, master_order_id: str, count: int, timeout_s: float = 300) -> float:
        """Waits until `count` fills of the master order arrived; returns when the last did."""
        async with asyncio.timeout(timeout_s):
            while self.counts.get(master_order_id, 0) < count:
                if self.error is not None:
                    raise self.error
                self._changed.clear()
                await self._changed.wait()
        return self.last_arrival[master_order_id]

    async def wait_total(self, total: int, timeout_s: float = 300) -> None:
        async with asyncio.timeout(timeout_s):
            while self.total < total:
                if self.error is not None:
                    raise self.error
                self._changed.clear()
                await self._changed.wait()

    async def wait_heartbeat(self, timeout_s: float = 300) -> None:
        """Waits for the next heartbeat: the end of a replay, or a quiet stream."""
        seen = self.heartbeats
        async with asyncio.timeout(timeout_s):
            while self.heartbeats == seen:
                if self.error is not None:
                    raise self.error
                self._changed.clear()
                await self._changed.wait()

    async def stop(self) -> None:
        if self._call is not None:
            self._call.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def submit(
    trading: trading_service_pb2_grpc.TradingServiceStub,
    group_id: str,
    accounts: int,
    *,
    sell: bool = False,
    view: order_pb2.MasterOrderView.ValueType = order_pb2.MASTER_ORDER_VIEW_UNSPECIFIED,
) -> order_pb2.MasterOrder:
    """A market order of 0.01 lot per account (each gets exactly one 0.01-lot child).
    `view`: MASTER_ORDER_VIEW_BASIC answers without the allocation's lines."""
    volume = str((Decimal("0.01") * accounts).quantize(Decimal("0.01")))
    response = await trading.SubmitMasterOrder(
        trading_service_pb2.SubmitMasterOrderRequest(
            order=order_pb2.MasterOrderSpec(
                # Each submission its own: a retried one would find the stored order instead.
                client_order_id=f"bench-{uuid.uuid4().hex[:24]}",
                group_id=group_id,
                symbol="EURUSD",
                side=common_pb2.SIDE_SELL if sell else common_pb2.SIDE_BUY,
                type=common_pb2.ORDER_TYPE_MARKET,
                volume=volume,
                max_deviation_points=1000,
            ),
            view=view,
        )
    )
    return response.master_order


async def master_order(
    trading: trading_service_pb2_grpc.TradingServiceStub, master_order_id: str
) -> order_pb2.MasterOrder:
    response = await trading.GetMasterOrder(
        trading_service_pb2.GetMasterOrderRequest(master_order_id=master_order_id)
    )
    return response.master_order
