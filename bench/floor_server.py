"""A trivial grpc.aio server, in its own process, for the floor: what gRPC itself costs.

    python -m bench.floor_server      # prints "listening on 127.0.0.1:PORT"

/bench.Floor/Echo answers its request bytes unchanged. /bench.Floor/Fills streams N fills
(the request is N in ASCII) as mam.v1 SubscribeFillsResponse messages of up to 1,000 fills each,
as the gateway batches them, each Fill message built fresh as the gateway must.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from gateway._proto.mam.v1 import common_pb2, order_pb2, trading_service_pb2

FILLS_PER_BATCH = 1_000
SERVICE = "bench.Floor"


def _identity(data: bytes) -> bytes:
    return data


def fill_batch(first_sequence: int, count: int, time: Timestamp) -> bytes:
    """A serialized SubscribeFillsResponse of `count` fills shaped like the gateway's."""
    fills = [
        order_pb2.Fill(
            sequence=sequence,
            fill_id=f"fl_{sequence:020d}",
            master_order_id="mo_01JDZ6G5R4Q9V3N8K2B7C1M0XT",
            child_order_id=f"ch_{sequence:020d}",
            account_id=f"acc_{sequence % 10_000:020d}",
            symbol="EURUSD",
            side=common_pb2.SIDE_BUY,
            volume="0.01",
            price="1.08500",
            requested_price="1.08490",
            slippage_points="1.0",
            deal_ticket=20_000_000 + sequence,
            order_ticket=10_000_000 + sequence,
            position_ticket=30_000_000 + sequence,
            time=time,
        )
        for sequence in range(first_sequence, first_sequence + count)
    ]
    response = trading_service_pb2.SubscribeFillsResponse(
        batch=order_pb2.FillBatch(fills=fills, last_sequence=first_sequence + count - 1)
    )
    return response.SerializeToString()


async def _echo(request: bytes, context: Any) -> bytes:
    return request


async def _fills(request: bytes, context: Any) -> AsyncIterator[bytes]:
    total = int(request.decode())
    time = Timestamp()
    time.FromDatetime(datetime.now(UTC))
    sent = 0
    while sent < total:
        count = min(FILLS_PER_BATCH, total - sent)
        yield fill_batch(sent + 1, count, time)
        sent += count


async def serve() -> None:
    server = grpc.aio.server(
        options=[("grpc.max_send_message_length", 64 * 1024 * 1024), ("grpc.so_reuseport", 0)]
    )
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                _echo, request_deserializer=_identity, response_serializer=_identity
            ),
            "Fills": grpc.unary_stream_rpc_method_handler(
                _fills, request_deserializer=_identity, response_serializer=_identity
            ),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)


def main() -> int:
    try:
        import uvloop  # noqa: PLC0415

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
