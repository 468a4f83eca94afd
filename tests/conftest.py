from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from gateway._proto.mam.v1 import account_service_pb2_grpc, trading_service_pb2_grpc
from gateway.api.server import RunningGateway, start_gateway
from gateway.store import Store
from tests.postgres import (
    FAST_SETTINGS,
    SKIP_VARIABLE,
    PostgresServer,
    PostgresUnavailable,
    skip_requested,
)
from tests.support import make_config

# A database migrated to head once per session; each test gets a copy (CREATE DATABASE TEMPLATE).
MIGRATED_TEMPLATE = "mam_migrated"


@dataclass
class Client:
    channel: grpc.aio.Channel
    accounts: account_service_pb2_grpc.AccountServiceStub
    trading: trading_service_pb2_grpc.TradingServiceStub


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole session; fails (never skips) if it cannot start,
    unless MAM_TEST_SKIP_POSTGRES=1."""
    if skip_requested():
        pytest.skip(f"{SKIP_VARIABLE}=1: PostgreSQL tests skipped")
    try:
        server = PostgresServer.start(settings=FAST_SETTINGS)
    except PostgresUnavailable as error:
        failure = str(error)
    else:
        failure = ""
    if failure:  # outside the except block: the message alone, no chained traceback
        pytest.fail(
            f"{failure}\n(set {SKIP_VARIABLE}=1 to skip the PostgreSQL runs)", pytrace=False
        )

    async def migrate_template() -> None:
        await server.create_database(name=MIGRATED_TEMPLATE)
        store = await Store.open(server.url(MIGRATED_TEMPLATE))
        await store.close()

    try:
        asyncio.run(migrate_template())
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_backend(request: pytest.FixtureRequest) -> PostgresServer | None:
    """Each test that uses a database runs on both; the PostgreSQL server only starts (once)
    when a test needs it. A sync fixture: the server starts outside any event loop."""
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres")
        return server
    return None


@pytest.fixture
async def database_url(
    database_backend: PostgresServer | None, tmp_path: Path
) -> AsyncIterator[str]:
    """A new database at schema head: a SQLite file, or a PostgreSQL database of its own."""
    server = database_backend
    if server is None:
        yield f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
        return
    name = await server.create_database(template=MIGRATED_TEMPLATE)
    try:
        yield server.url(name)
    finally:
        await server.drop_database(name)


@pytest.fixture
async def pg_url(postgres: PostgresServer) -> AsyncIterator[str]:
    """A new PostgreSQL database at schema head, for what runs on PostgreSQL only (cluster
    mode)."""
    name = await postgres.create_database(template=MIGRATED_TEMPLATE)
    try:
        yield postgres.url(name)
    finally:
        await postgres.drop_database(name)


@pytest.fixture
async def empty_database_url(
    database_backend: PostgresServer | None, tmp_path: Path
) -> AsyncIterator[str]:
    """A new database without any table (not even alembic's)."""
    server = database_backend
    if server is None:
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    name = await server.create_database(template="template0")
    try:
        yield server.url(name)
    finally:
        await server.drop_database(name)


@pytest.fixture
async def gateway(tmp_path: Path, database_url: str) -> AsyncIterator[RunningGateway]:
    running = await start_gateway(make_config(tmp_path, database_url=database_url))
    try:
        yield running
    finally:
        await running.stop(0.5)


@contextlib.asynccontextmanager
async def client_of(gateway: RunningGateway) -> AsyncIterator[Client]:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        yield Client(
            channel,
            account_service_pb2_grpc.AccountServiceStub(channel),
            trading_service_pb2_grpc.TradingServiceStub(channel),
        )


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[Client]:
    async with client_of(gateway) as connected:
        yield connected
