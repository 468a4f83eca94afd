"""One writer per database: a second gateway is refused, and one that lost the lock stops.

On SQLite and PostgreSQL: a second gateway on a database in use refuses to start and names the
process that holds it; a start that fails (its port taken) leaves nothing running and the lock
free; a gateway whose database was taken over (the fence moved on) commits nothing more and
stops. On PostgreSQL, whose lock lives in a session: a lost session is taken again when nobody
took the database meanwhile, and the gateway stops when somebody did.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text

from gateway._proto.mam.v1 import account_service_pb2_grpc, trading_service_pb2_grpc
from gateway.api.server import RunningGateway, start_gateway
from gateway.domain.orders import MasterOrderState
from gateway.store.engines import create_engine
from gateway.store.writer_lock import (
    ADVISORY_KEY,
    SqliteWriterLock,
    WriterIdentity,
    WriterLockHeld,
    take_fence,
    writer_lock_for,
)
from tests.conftest import client_of
from tests.e2e.gateway_process import GatewayProcess, write_config
from tests.integration.helpers import create_accounts, create_group, market_order
from tests.support import error_details, make_config, running, until


@pytest.fixture
async def slow_gateway(tmp_path: Path, database_url: str) -> AsyncIterator[RunningGateway]:
    """Brokers answering after 300 ms: a test can take the database over while orders execute."""
    async with running(make_config(tmp_path, database_url=database_url, latency_ms=300)) as started:
        yield started


@contextlib.asynccontextmanager
async def _taken_over(database_url: str) -> AsyncIterator[None]:
    """What another process taking the database does. SQLite: the lock file is replaced (an
    operator deleting it) and the new one locked; PostgreSQL: the fence moves on (the session
    lock is the other tests' concern). Both: the epoch moves on, as every takeover does."""
    lock = writer_lock_for(database_url)
    if isinstance(lock, SqliteWriterLock):
        lock.path.unlink()
        await lock.acquire(WriterIdentity("another-host", 1, datetime.now(UTC)))
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await take_fence(conn, WriterIdentity("another-host", 1, datetime.now(UTC)))
        yield
    finally:
        await engine.dispose()
        if isinstance(lock, SqliteWriterLock):
            await lock.release()


async def test_a_second_gateway_on_the_same_database_is_refused_naming_the_first(
    tmp_path: Path, database_url: str
) -> None:
    first = await start_gateway(make_config(tmp_path, database_url=database_url))
    try:
        other = tmp_path / "other"
        other.mkdir()
        with pytest.raises(WriterLockHeld) as refused:
            await start_gateway(make_config(other, database_url=database_url))
        message = str(refused.value)
        assert f"pid {os.getpid()}" in message
        assert socket.gethostname() in message
        # The first goes on as if nothing happened.
        async with client_of(first) as client:
            accounts = await create_accounts(client.accounts, ["10000"])
            group = await create_group(client.accounts, accounts)
            await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.10"))
            await first.engine.wait_idle()
    finally:
        await first.stop(0.5)
    # Once the first has stopped, the database is free.
    second = await start_gateway(make_config(tmp_path, database_url=database_url))
    await second.stop(0.5)


async def test_a_second_gateway_process_exits_with_the_holder_named(
    tmp_path: Path, database_url: str
) -> None:
    first = await start_gateway(make_config(tmp_path, database_url=database_url))
    second = GatewayProcess(
        write_config(tmp_path), tmp_path / "second.db", database_url=database_url
    )
    try:
        with pytest.raises(RuntimeError, match="gateway exited"):
            await second.start()
        assert second.process is not None and await second.process.wait() == 2
        assert f"pid {os.getpid()} on host {socket.gethostname()}" in second.log.read_text()
    finally:
        await second.kill()
        await first.stop(0.5)


async def test_a_start_whose_port_is_taken_leaves_nothing_running_and_the_database_free(
    tmp_path: Path, database_url: str
) -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        config = make_config(tmp_path, database_url=database_url)
        config = dataclasses.replace(
            config,
            server=dataclasses.replace(config.server, listen=f"127.0.0.1:{taken.getsockname()[1]}"),
        )
        before = asyncio.all_tasks()
        with pytest.raises(OSError, match="cannot listen"):
            await start_gateway(config)
        await asyncio.sleep(0.1)
        left = {t for t in asyncio.all_tasks() - before if not t.done()}
        assert left == set(), [t.get_name() for t in left]
    finally:
        taken.close()
    started = await start_gateway(make_config(tmp_path, database_url=database_url))
    await started.stop(0.5)


async def test_a_gateway_whose_database_was_taken_over_commits_nothing_more(
    slow_gateway: RunningGateway, database_url: str
) -> None:
    gateway = slow_gateway
    async with client_of(gateway) as client:
        accounts = await create_accounts(client.accounts, ["10000", "20000"])
        group = await create_group(client.accounts, accounts)
        master = (
            await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.30"))
        ).master_order
        async with _taken_over(database_url):  # the results arrive 300 ms later
            async with asyncio.timeout(10):
                await gateway.lost_writer.wait()
            assert await gateway.store.fills_of(master.master_order_id) == []
            children = await gateway.store.children_of(master.master_order_id)
            assert {c.filled_volume for c in children} == {0}
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.10"))
            details = error_details(refused.value)
            assert (details.code, details.reason) == (
                grpc.StatusCode.UNAVAILABLE,
                "WRITER_LOCK_LOST",
            )
            listed = await gateway.store.list_master_orders(before="", limit=10)
            assert [m.master_order_id for m in listed] == [master.master_order_id]
            assert listed[0].state is MasterOrderState.DISPATCHING


async def test_a_gateway_process_whose_database_was_taken_over_stops(
    tmp_path: Path, database_url: str
) -> None:
    gateway = GatewayProcess(
        write_config(tmp_path), tmp_path / "gateway.db", latency_ms=300, database_url=database_url
    )
    try:
        async with grpc.aio.insecure_channel(await gateway.start()) as channel:
            accounts_api = account_service_pb2_grpc.AccountServiceStub(channel)
            accounts = await create_accounts(accounts_api, ["10000"])
            group = await create_group(accounts_api, accounts)
            trading = trading_service_pb2_grpc.TradingServiceStub(channel)
            await trading.SubmitMasterOrder(market_order(group.group_id, "0.10"))
            async with _taken_over(database_url):
                assert gateway.process is not None
                async with asyncio.timeout(30):
                    assert await gateway.process.wait() == 3
    finally:
        await gateway.kill()
    assert "another process took this gateway's database" in gateway.log.read_text()


# -- PostgreSQL: the lock lives in a session ------------------------------------------------


async def _query(database_url: str, sql: str) -> list[int]:
    """One statement on a connection of the test's own; the first column of each row."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return [int(row[0]) for row in await conn.execute(text(sql))]
    finally:
        await engine.dispose()


async def _lock_sessions(database_url: str) -> list[int]:
    return await _query(
        database_url,
        "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted "
        "AND a.application_name LIKE 'mam-gateway writer%'",
    )


async def _terminate(database_url: str, pids: list[int]) -> None:
    for pid in pids:
        await _query(database_url, f"SELECT pg_terminate_backend({pid})::int")


@pytest.mark.parametrize("database_backend", ["postgresql"], indirect=True)
async def test_a_lost_lock_session_is_taken_again_when_nobody_took_the_database(
    slow_gateway: RunningGateway, database_url: str
) -> None:
    gateway = slow_gateway
    sessions = await _lock_sessions(database_url)
    assert len(sessions) == 1
    await _terminate(database_url, sessions)

    async def held_again() -> bool:
        return (await _lock_sessions(database_url)) not in ([], sessions)

    await until(held_again)
    assert len(await _lock_sessions(database_url)) == 1
    assert not gateway.lost_writer.is_set()
    async with client_of(gateway) as client:
        accounts = await create_accounts(client.accounts, ["10000"])
        group = await create_group(client.accounts, accounts)
        master = (
            await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.10"))
        ).master_order
        await gateway.engine.wait_idle()
    assert len(await gateway.store.fills_of(master.master_order_id)) == 1


@pytest.mark.parametrize("database_backend", ["postgresql"], indirect=True)
async def test_a_gateway_whose_lock_another_process_took_stops(
    slow_gateway: RunningGateway, database_url: str
) -> None:
    gateway = slow_gateway
    sessions = await _lock_sessions(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as other:
            await _terminate(database_url, sessions)

            async def taken() -> bool:
                lock = text(f"SELECT pg_try_advisory_lock({ADVISORY_KEY})")
                return bool((await other.execute(lock)).scalar())

            await until(taken, every_s=0.01)
            await other.commit()
            async with asyncio.timeout(10):
                await gateway.lost_writer.wait()
    finally:
        await engine.dispose()
