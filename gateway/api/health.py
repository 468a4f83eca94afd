"""grpc.health.v1.Health with List, which grpcio-health-checking's asyncio servicer leaves
unimplemented (it answers INTERNAL "Method not implemented!")."""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

# The health proto asks servers to bound List and answer RESOURCE_EXHAUSTED beyond the bound.
# A gateway lists "", its services and one entry per worker: far fewer.
MAX_LISTED_STATUSES = 10_000


class GatewayHealth(HealthServicer):  # type: ignore[misc]
    """Check and Watch as grpc implements them; List gives every registered name (the server's
    own "" included) with its status."""

    async def List(
        self, request: health_pb2.HealthListRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthListResponse:
        # The base class keeps the statuses in _server_status and offers no reading of them.
        statuses = dict(self._server_status)
        if len(statuses) > MAX_LISTED_STATUSES:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{len(statuses):,} health entries, above the {MAX_LISTED_STATUSES:,} List gives",
            )
        return health_pb2.HealthListResponse(
            statuses={
                name: health_pb2.HealthCheckResponse(status=status)
                for name, status in statuses.items()
            }
        )
