"""Real database faults in the middle of a 1,000-account fan-out lose and double nothing.

The gateway runs as a subprocess (tests/e2e/gateway_process.py) with its simulated brokers' books
in a file, as the crash test runs it, and a master order goes to 1,000 accounts. Then, while the
brokers' answers come back:
- SQLite: the filesystem holding the database fills up (a tmpfs the test mounts, filled by one
  fallocate right after the acknowledgement), and a second later the space is freed;
- PostgreSQL: every backend of the gateway (its pool and its writer-lock session) is killed with
  pg_terminate_backend, over and over for a second and a half;
- PostgreSQL: the server is restarted (`pg_ctl restart -m fast`).
Proven for each: every child executed once at its broker (one deal under its tag, nothing else),
every fill stored once and streamed to a subscriber exactly once with no gap, the master order
FILLED. While the database is away, health says NOT_SERVING and a submission is refused with
UNAVAILABLE / STORE_UNAVAILABLE, nothing stored or sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway._proto.mam.v1 import (
    account_service_pb2,
    account_service_pb2_grpc,
    order_pb2,
    trading_service_pb2,
    trading_service_pb2_grpc,
)
from gateway.api.server import simulated_broker
from gateway.config import load_config
from gateway.terminals.sim import SimBroker
from tests.e2e.gateway_process import GatewayProcess, write_config
from tests.integration.helpers import create_accounts, create_group, market_order
from tests.postgres import FAST_SETTINGS, PostgresServer
from tests.support import DEMO_CONFIG, error_details, until

ACCOUNTS = 1_000
LATENCY_MS = 10
VOLUME = "100.00"

FAULT_DISK_FULL = "SQLite, the disk full mid-order for 1 s"
FAULT_BACKENDS_KILLED = "PostgreSQL, every backend killed every 30 ms for 1.5 s"
FAULT_RESTART = "PostgreSQL, the server stopped (-m fast) mid fan-out and started again"
# What each fault cost, for the durability doc: printed (-s) at the end of each test.
COUNTS: dict[str, dict[str, int]] = {}


@dataclass(frozen=True)
class Population:
    """1,000 accounts in one group, made once per database by a gateway process."""

    group_id: str
    logins: dict[str, int]


async def _populate(address: str) -> Population:
    async with grpc.aio.insecure_channel(address) as channel:
        accounts = account_service_pb2_grpc.AccountServiceStub(channel)
        equities = [str(20_000 + 10 * i) for i in range(ACCOUNTS)]
        created = await create_accounts(accounts, equities, prefix="fault")
        group = await create_group(accounts, created)
        listed = await accounts.ListAccounts(
            account_service_pb2.ListAccountsRequest(page_size=ACCOUNTS)
        )
    return Population(group.group_id, {a.account_id: a.login for a in listed.accounts})


@dataclass
class Subscriber:
    """Reads every fill from the start, resuming after the last sequence whenever its stream
    breaks; records what a client would see."""

    trading: trading_service_pb2_grpc.TradingServiceStub
    fills: list[order_pb2.Fill] = field(default_factory=list)
    reconnects: int = 0
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            after = self.fills[-1].sequence if self.fills else 0
            stream = self.trading.SubscribeFills(
                trading_service_pb2.SubscribeFillsRequest(after_sequence=after)
            )
            try:
                while (message := await stream.read()) is not grpc.aio.EOF:
                    self.fills.extend(message.batch.fills)
            except grpc.aio.AioRpcError:
                pass
            self.reconnects += 1
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@dataclass
class Run:
    """One fault's fan-out: the gateway, its client side, and the order under test."""

    gateway: GatewayProcess
    channel: grpc.aio.Channel
    population: Population
    broker_state: Path
    subscriber: Subscriber
    master: order_pb2.MasterOrder | None = None
    final: order_pb2.MasterOrder | None = None

    @property
    def trading(self) -> trading_service_pb2_grpc.TradingServiceStub:
        return trading_service_pb2_grpc.TradingServiceStub(self.channel)

    async def submit(self, client_order_id: str) -> order_pb2.MasterOrder:
        request = market_order(
            self.population.group_id,
            VOLUME,
            client_order_id=client_order_id,
            max_deviation_points=100_000,
        )
        return (await self.trading.SubmitMasterOrder(request)).master_order

    async def serving(self) -> int:
        health = health_pb2_grpc.HealthStub(self.channel)
        return int((await health.Check(health_pb2.HealthCheckRequest(service=""))).status)

    async def refused_while_away(self) -> None:
        """Health NOT_SERVING and a submission refused, nothing stored: the store is away."""

        async def not_serving() -> bool:
            return await self.serving() == health_pb2.HealthCheckResponse.NOT_SERVING

        await until(not_serving, timeout_s=15)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await self.submit("while-away")
        details = error_details(refused.value)
        assert details.code is grpc.StatusCode.UNAVAILABLE, details
        assert details.reason == "STORE_UNAVAILABLE"

    async def check_exactly_once(self, fault: str) -> None:
        master = self.master
        assert master is not None and master.child_count == ACCOUNTS

        async def filled() -> bool:
            got = await self.trading.GetMasterOrder(
                trading_service_pb2.GetMasterOrderRequest(master_order_id=master.master_order_id)
            )
            return got.master_order.state == order_pb2.MASTER_ORDER_STATE_FILLED

        async def all_seen() -> bool:
            return len(self.subscriber.fills) >= ACCOUNTS

        await until(filled, timeout_s=60)
        await until(all_seen, timeout_s=30)
        await asyncio.sleep(0.3)  # a repeat, if any, would arrive now
        got = (
            await self.trading.GetMasterOrder(
                trading_service_pb2.GetMasterOrderRequest(master_order_id=master.master_order_id)
            )
        ).master_order
        await self.subscriber.stop()
        seen = self.subscriber.fills
        sequences = [f.sequence for f in seen]
        gaps = sum(1 for a, b in itertools.pairwise(sequences) if b != a + 1)
        repeats = len(sequences) - len(set(sequences))
        stored_children = {c.child_order_id for c in got.children}
        # Nothing since the fault was refused in a way that stored an order: only this one.
        listed = await self.trading.ListMasterOrders(
            trading_service_pb2.ListMasterOrdersRequest(page_size=10)
        )
        self.final = got
        COUNTS[fault] = {
            "fills lost": ACCOUNTS - len(set(sequences)),
            "master orders left non-final": int(got.state != order_pb2.MASTER_ORDER_STATE_FILLED),
            "gaps seen by the subscriber": gaps,
            "fills repeated to the subscriber": repeats,
            "subscriber reconnects": self.subscriber.reconnects,
        }
        assert [m.master_order_id for m in listed.master_orders] == [master.master_order_id]
        assert got.state == order_pb2.MASTER_ORDER_STATE_FILLED
        assert got.filled_child_count == ACCOUNTS
        assert sum(Decimal(c.filled_volume) for c in got.children) == Decimal(VOLUME)
        assert sequences == list(range(1, ACCOUNTS + 1))
        assert {f.child_order_id for f in seen} == stored_children

    def check_brokers(self, fault: str) -> None:
        """Once the gateway has stopped (it holds the brokers' file): one deal per child tag,
        of the child's volume; nothing else traded."""
        assert self.final is not None
        broker = _broker(self.broker_state)
        try:
            doubled = sum(
                len(broker.find_by_tag(self.population.logins[c.account_id], c.tag).deals) != 1
                for c in self.final.children
            )
            deal_count = sum(
                len(broker.deals(login, datetime(1970, 1, 1, tzinfo=UTC)))
                for login in self.population.logins.values()
            )
        finally:
            broker.close()
        COUNTS[fault]["children not executed exactly once"] = doubled
        COUNTS[fault]["deals at the brokers"] = deal_count
        print(f"\n{fault}: {COUNTS[fault]}")
        assert doubled == 0 and deal_count == ACCOUNTS


def _broker(state: Path) -> SimBroker:
    config = load_config(DEMO_CONFIG, environ={"MAM__SIMULATOR__STATE_PATH": str(state)})
    return simulated_broker(config)


@contextlib.asynccontextmanager
async def _fan_out(
    gateway: GatewayProcess, population: Population, state: Path
) -> AsyncIterator[Run]:
    address = await gateway.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            subscriber = Subscriber(trading_service_pb2_grpc.TradingServiceStub(channel))
            subscriber.start()
            try:
                yield Run(gateway, channel, population, state, subscriber)
            finally:
                await subscriber.stop()
    finally:
        assert await gateway.stop() == 0


def _copy(source: Path, target: Path, names: tuple[str, ...]) -> None:
    for name in names:
        for suffix in ("", "-wal", "-shm"):
            if (source / (name + suffix)).exists():
                shutil.copy(source / (name + suffix), target / (name + suffix))


# -- SQLite: the disk fills up -----------------------------------------------------------------


@dataclass(frozen=True)
class SqliteTemplate:
    directory: Path
    population: Population


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    directory = tmp_path_factory.mktemp("sqlite-template")

    async def build() -> Population:
        gateway = GatewayProcess(
            write_config(directory), directory / "gateway.db", broker_state=directory / "broker.db"
        )
        address = await gateway.start()
        try:
            return await _populate(address)
        finally:
            assert await gateway.stop() == 0

    return SqliteTemplate(directory, asyncio.run(build()))


@contextlib.contextmanager
def _small_disk(directory: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `directory` (as root), unmounted after."""
    directory.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False, capture_output=True)


def _fill(disk: Path) -> list[Path]:
    """Takes every free byte of the filesystem: one fallocate, then small writes to the end."""
    ballast = [disk / "ballast", disk / "ballast-tail"]
    stat = os.statvfs(disk)
    descriptor = os.open(ballast[0], os.O_WRONLY | os.O_CREAT)
    try:
        os.posix_fallocate(descriptor, 0, stat.f_bavail * stat.f_frsize)
    except OSError:
        pass
    finally:
        os.close(descriptor)
    descriptor = os.open(ballast[1], os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(descriptor, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(descriptor)
    return ballast


async def test_sqlite_on_a_disk_that_fills_up_mid_order(
    sqlite_template: SqliteTemplate, tmp_path: Path
) -> None:
    _copy(sqlite_template.directory, tmp_path, ("gateway.toml", "broker.db"))
    with _small_disk(tmp_path / "disk", "64m") as disk:
        _copy(sqlite_template.directory, disk, ("gateway.db",))
        gateway = GatewayProcess(
            tmp_path / "gateway.toml",
            disk / "gateway.db",
            latency_ms=LATENCY_MS,
            broker_state=tmp_path / "broker.db",
        )
        gateway.log = tmp_path / "gateway.log"  # not on the disk that fills up
        async with _fan_out(gateway, sqlite_template.population, tmp_path / "broker.db") as run:
            run.master = await run.submit("disk-full")
            ballast = _fill(disk)
            await run.refused_while_away()
            await asyncio.sleep(1.0)  # every broker has answered meanwhile
            for path in ballast:
                path.unlink()
            await run.check_exactly_once(FAULT_DISK_FULL)
        run.check_brokers(FAULT_DISK_FULL)
    assert "database or disk is full" in gateway.log.read_text()


# -- PostgreSQL: backends killed, server restarted -----------------------------------------------

TEMPLATE_DATABASE = "fault_template"


@dataclass(frozen=True)
class PostgresTemplate:
    server: PostgresServer
    directory: Path
    population: Population


@pytest.fixture(scope="module")
def postgres_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresTemplate]:
    """A server of its own (these tests restart it) with 1,000 accounts in a template database."""
    server = PostgresServer.start(settings=FAST_SETTINGS)
    directory = tmp_path_factory.mktemp("postgres-template")

    async def build() -> Population:
        await server.create_database(name=TEMPLATE_DATABASE)
        gateway = GatewayProcess(
            write_config(directory),
            directory / "gateway.db",
            broker_state=directory / "broker.db",
            database_url=server.url(TEMPLATE_DATABASE),
        )
        address = await gateway.start()
        try:
            return await _populate(address)
        finally:
            assert await gateway.stop() == 0

    try:
        yield PostgresTemplate(server, directory, asyncio.run(build()))
    finally:
        server.stop()


async def _gateway_on_copy(template: PostgresTemplate, tmp_path: Path) -> GatewayProcess:
    _copy(template.directory, tmp_path, ("gateway.toml", "broker.db"))
    database = await template.server.create_database(template=TEMPLATE_DATABASE)
    return GatewayProcess(
        tmp_path / "gateway.toml",
        tmp_path / "gateway.db",
        latency_ms=LATENCY_MS,
        broker_state=tmp_path / "broker.db",
        database_url=template.server.url(database),
    )


async def _kill_backends(server: PostgresServer, database: str, *, for_s: float) -> int:
    """pg_terminate_backend on every session of `database` but this one, every 30 ms."""
    killed = 0
    loop = asyncio.get_running_loop()
    until_time = loop.time() + for_s
    connection = await asyncpg.connect(host="127.0.0.1", port=server.port, user="postgres")
    try:
        while loop.time() < until_time:
            rows = await connection.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
            killed += sum(1 for r in rows if r[0])
            await asyncio.sleep(0.03)
    finally:
        await connection.close()
    return killed


async def test_postgresql_backends_killed_mid_commit(
    postgres_template: PostgresTemplate, tmp_path: Path
) -> None:
    gateway = await _gateway_on_copy(postgres_template, tmp_path)
    database = gateway.database_url.rsplit("/", 1)[-1]
    async with _fan_out(gateway, postgres_template.population, tmp_path / "broker.db") as run:
        run.master = await run.submit("backends-killed")
        killed = await _kill_backends(postgres_template.server, database, for_s=1.5)
        assert killed > 0
        await run.check_exactly_once(FAULT_BACKENDS_KILLED)
    COUNTS[FAULT_BACKENDS_KILLED]["backends killed"] = killed
    run.check_brokers(FAULT_BACKENDS_KILLED)


async def test_postgresql_server_restarted_mid_fan_out(
    postgres_template: PostgresTemplate, tmp_path: Path
) -> None:
    gateway = await _gateway_on_copy(postgres_template, tmp_path)
    server = postgres_template.server
    async with _fan_out(gateway, postgres_template.population, tmp_path / "broker.db") as run:
        run.master = await run.submit("server-restart")
        # pg_ctl restart -m fast, in its two halves, with the checks between them.
        await asyncio.to_thread(server.stop_fast)
        try:
            await run.refused_while_away()
            await asyncio.sleep(0.5)
        finally:
            await asyncio.to_thread(server.start_again)
        await run.check_exactly_once(FAULT_RESTART)
    run.check_brokers(FAULT_RESTART)
