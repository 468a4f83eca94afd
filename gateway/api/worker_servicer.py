"""mam.v1.WorkerService: the endpoint remote terminal workers connect out to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gateway._proto.mam.v1 import worker_service_pb2 as pb
from gateway._proto.mam.v1 import worker_service_pb2_grpc as pb_grpc
from gateway.api.errors import NotYetAvailable


class WorkerServicer(pb_grpc.WorkerServiceServicer):
    async def Connect(
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[pb.ConnectResponse]:
        raise NotYetAvailable("remote terminal workers are not available in this version")
        yield  # type: ignore[unreachable]  # makes this an async generator
