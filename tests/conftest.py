from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from gateway._proto.mam.v1 import account_service_pb2_grpc, trading_service_pb2_grpc
from gateway.api.server import RunningGateway, start_gateway
from tests.support import make_config


@dataclass
class Client:
    channel: grpc.aio.Channel
    accounts: account_service_pb2_grpc.AccountServiceStub
    trading: trading_service_pb2_grpc.TradingServiceStub


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    running = await start_gateway(make_config(tmp_path))
    try:
        yield running
    finally:
        await running.stop(0.5)


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[Client]:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        yield Client(
            channel,
            account_service_pb2_grpc.AccountServiceStub(channel),
            trading_service_pb2_grpc.TradingServiceStub(channel),
        )
