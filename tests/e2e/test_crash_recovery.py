"""SIGKILL in the middle of a 1,000-account fan-out loses and doubles nothing, on SQLite and on
PostgreSQL.

The gateway runs as a subprocess whose simulated broker keeps its books in a file, as a real
broker keeps them across a gateway crash. For each seeded kill point the gateway is killed with
SIGKILL right after the acknowledgement (point 0), after its subscriber has seen a given number
of fills (even points), or a given time after the acknowledgement (odd points), then restarted
on the same database and books. Proven at every kill point:
- every child executed exactly once at its broker (one deal under its tag);
- every fill stored exactly once, the master order FILLED with all its children;
- a subscriber resuming from its last sequence gets each remaining fill exactly once;
- resubmitting the same client_order_id after the restart returns the same master order.

Each database gets its 1,000 accounts once (a template: a SQLite file, or a PostgreSQL database
that CREATE DATABASE ... TEMPLATE copies), and each kill point starts from a copy of it.

`make test` runs 20 points on each database. The long mode (`make crash-test-long`,
docs/durability.md) sets, from the environment:
- MAM_CRASH_POINTS: kill points per database (20);
- MAM_CRASH_SEED: the base seed (0); point i draws its kill from seed base + i, shown in the
  test's id (`sqlite-7-seed1007`), so that one point can be run again with -k;
- MAM_CRASH_DATABASES: `sqlite`, `postgresql` or both, comma-separated (both).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import grpc
import pytest

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
from tests.postgres import PostgresServer
from tests.support import DEMO_CONFIG

ACCOUNTS = 1_000
LATENCY_MS = 10
VOLUME = "100.00"  # 0.10 lots per account on average
DATABASES = ("sqlite", "postgresql")


def _setting(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


KILL_POINTS = int(_setting("MAM_CRASH_POINTS", "20"))
BASE_SEED = int(_setting("MAM_CRASH_SEED", "0"))
SELECTED = tuple(
    name.strip() for name in _setting("MAM_CRASH_DATABASES", ",".join(DATABASES)).split(",")
)
if KILL_POINTS < 1 or not SELECTED or not set(SELECTED) <= set(DATABASES):
    raise ValueError(
        f"MAM_CRASH_POINTS={KILL_POINTS} (at least 1) or MAM_CRASH_DATABASES={SELECTED} "
        f"(of {', '.join(DATABASES)})"
    )


@dataclass(frozen=True)
class Outcome:
    """What one kill point did, each count measured rather than assumed."""

    seed: int
    kill: str  # when the gateway was killed
    seen_before: int  # fills the subscriber had before the kill
    found: int  # children found at the broker by tag after the restart
    resent: int  # children the restarted gateway still had to send
    lost: int  # children executed at their broker without a stored fill of that volume
    doubled: int  # deals beyond one per child tag, and deals under no child's tag
    non_final: int  # 1 if the master order was not FILLED after the restart
    gaps: int  # sequences 1..1,000 the subscriber missed, or got more than once


# Per database and kill point.
OUTCOMES: dict[tuple[str, int], Outcome] = {}


@dataclass(frozen=True)
class Template:
    directory: Path  # the configuration and the broker's books (and the SQLite database)
    group_id: str
    logins: dict[str, int]
    server: PostgresServer | None = None  # PostgreSQL: the server holding the template
    database: str = ""  # PostgreSQL: the template database's name


async def _build_template(
    directory: Path, server: PostgresServer | None, database: str
) -> Template:
    gateway = GatewayProcess(
        write_config(directory),
        directory / "gateway.db",
        latency_ms=LATENCY_MS,
        broker_state=directory / "broker.db",
        database_url=server.url(database) if server else "",
    )
    address = await gateway.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            accounts = account_service_pb2_grpc.AccountServiceStub(channel)
            equities = [str(20_000 + 10 * i) for i in range(ACCOUNTS)]
            created = await create_accounts(accounts, equities, prefix="crash")
            group = await create_group(accounts, created)
            listed = await accounts.ListAccounts(
                account_service_pb2.ListAccountsRequest(page_size=ACCOUNTS)
            )
            logins = {a.account_id: a.login for a in listed.accounts}
            assert len(logins) == ACCOUNTS
    finally:
        # A graceful stop closes every connection: a PostgreSQL template must have none when
        # CREATE DATABASE copies it.
        assert await gateway.stop() == 0
    return Template(directory, group.group_id, logins, server, database)


@pytest.fixture(scope="module")
def templates() -> Iterator[dict[str, Template]]:
    built: dict[str, Template] = {}
    yield built
    for made in built.values():
        if made.server is not None:
            asyncio.run(made.server.drop_database(made.database))


@pytest.fixture
def template(
    database: str,
    templates: dict[str, Template],
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Template:
    """1,000 accounts in a group, in a gateway database and a broker file, made once per
    database. A sync fixture: the PostgreSQL server and the template start outside any loop."""
    if database not in templates:
        directory = tmp_path_factory.mktemp(f"crash-template-{database}")
        if database == "postgresql":
            server: PostgresServer = request.getfixturevalue("postgres")
            name = asyncio.run(server.create_database())  # empty: the gateway migrates it
            templates[database] = asyncio.run(_build_template(directory, server, name))
        else:
            templates[database] = asyncio.run(_build_template(directory, None, ""))
    return templates[database]


def _copy_files(template: Template, directory: Path) -> None:
    for name in ("gateway.toml", "gateway.db", "broker.db"):
        if (template.directory / name).exists():
            shutil.copy(template.directory / name, directory / name)
    for suffix in ("-wal", "-shm"):
        for name in ("gateway.db", "broker.db"):
            extra = template.directory / (name + suffix)
            if extra.exists():
                shutil.copy(extra, directory / (name + suffix))


def _broker(state: Path) -> SimBroker:
    """The books the gateway's simulated broker left in its file, read the same way."""
    config = load_config(DEMO_CONFIG, environ={"MAM__SIMULATOR__STATE_PATH": str(state)})
    return simulated_broker(config)


async def _read_until_killed(
    stream: grpc.aio.UnaryStreamCall, received: list[order_pb2.Fill], kill_after: int | None,
    gateway: GatewayProcess,
) -> None:  # fmt: skip
    """Reads fills as a subscriber does; kills the gateway once kill_after have arrived (None:
    something else kills it)."""
    if kill_after == 0:
        await gateway.kill()
    try:
        while True:
            message = await stream.read()
            if message is grpc.aio.EOF:
                return
            received.extend(message.batch.fills)
            if (
                kill_after is not None
                and len(received) >= kill_after
                and gateway.process
                and gateway.process.returncode is None
            ):
                await gateway.kill()
    except grpc.aio.AioRpcError:
        return  # the stream died with the gateway


async def _kill_later(gateway: GatewayProcess, delay_s: float, kill: bool) -> None:
    if kill:
        await asyncio.sleep(delay_s)
        await gateway.kill()


def _kill_plan(point: int, seed: int) -> tuple[int | None, float]:
    """(kill after this many fills, or None: kill after this many seconds)."""
    # Spread over the fan-out: right after the ack, early, middle, late, and after the last fill;
    # by fills seen, and by time: the first requests of an order leave together, so its
    # answers come back close together and a few commits store them all, and a kill that waits
    # for fills seldom falls between a broker executing a child and the gateway storing it.
    rng = random.Random(seed)
    if point % 2 == 1:
        return None, rng.uniform(0.0, 0.25)
    if point:
        return rng.randrange(1, ACCOUNTS + 1), 0.0
    return 0, 0.0


def _points() -> list[object]:
    """(database, point, seed) for each kill point; the seed is in the id, to run it again."""
    return [
        pytest.param(database, point, seed, id=f"{database}-{point}-seed{seed}")
        for database in SELECTED
        for point, seed in enumerate(range(BASE_SEED, BASE_SEED + KILL_POINTS))
    ]


@pytest.mark.parametrize(("database", "kill_point", "seed"), _points())
async def test_sigkill_mid_fan_out_executes_and_streams_every_child_once(
    database: str, kill_point: int, seed: int, template: Template, tmp_path: Path
) -> None:
    _copy_files(template, tmp_path)
    database_url = ""
    if template.server is not None:
        copy = await template.server.create_database(template=template.database)
        database_url = template.server.url(copy)
    try:
        outcome = await _kill_and_restart(template, tmp_path, database_url, kill_point, seed)
    finally:
        if template.server is not None:
            await template.server.drop_database(copy)
    OUTCOMES[database, kill_point] = outcome
    print(f"{database} kill point {kill_point}: {outcome}")
    assert (outcome.lost, outcome.doubled, outcome.non_final, outcome.gaps) == (0, 0, 0, 0), outcome


async def _kill_and_restart(
    template: Template, directory: Path, database_url: str, kill_point: int, seed: int
) -> Outcome:
    kill_after, kill_delay_s = _kill_plan(kill_point, seed)
    config, sqlite_file, state = (
        directory / "gateway.toml",
        directory / "gateway.db",
        directory / "broker.db",
    )

    def gateway_process() -> GatewayProcess:
        return GatewayProcess(
            config, sqlite_file, latency_ms=LATENCY_MS, broker_state=state,
            database_url=database_url,
        )  # fmt: skip

    gateway = gateway_process()
    address = await gateway.start()
    request = market_order(
        template.group_id,
        VOLUME,
        client_order_id=f"crash-{kill_point}",
        max_deviation_points=100_000,
    )
    before: list[order_pb2.Fill] = []
    async with grpc.aio.insecure_channel(address) as channel:
        trading = trading_service_pb2_grpc.TradingServiceStub(channel)
        stream = trading.SubscribeFills(trading_service_pb2.SubscribeFillsRequest())
        assert (await stream.read()).heartbeat_sequence == 0
        submitted = (await trading.SubmitMasterOrder(request)).master_order
        killer = asyncio.create_task(_kill_later(gateway, kill_delay_s, kill_after is None))
        async with asyncio.timeout(60):
            await _read_until_killed(stream, before, kill_after, gateway)
        await killer
    await gateway.kill()
    killed = datetime.now(UTC)
    master_id, child_count = submitted.master_order_id, submitted.child_count
    assert child_count == ACCOUNTS
    # What the subscriber saw before the crash was stored, in sequence, from the start.
    assert [f.sequence for f in before] == list(range(1, len(before) + 1))

    restarted = gateway_process()
    address = await restarted.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            trading = trading_service_pb2_grpc.TradingServiceStub(channel)
            resumed = trading.SubscribeFills(
                trading_service_pb2.SubscribeFillsRequest(
                    after_sequence=before[-1].sequence if before else 0
                )
            )
            after: list[order_pb2.Fill] = []
            try:
                async with asyncio.timeout(60):
                    while len(before) + len(after) < child_count:
                        message = await resumed.read()
                        assert message is not grpc.aio.EOF
                        after.extend(message.batch.fills)
            except TimeoutError:
                pass  # counted below as gaps
            resumed.cancel()
            fills = before + after

            got = await _final_master_order(trading, master_id)
            found = sum(1 for c in got.children if c.status_text.startswith("found by tag"))
            resent = sum(1 for c in got.children if c.fill_time.ToDatetime(tzinfo=UTC) > killed)

            again = await trading.SubmitMasterOrder(request)
            assert again.replayed and again.master_order.master_order_id == master_id
    finally:
        assert await restarted.stop() == 0

    sequences = [f.sequence for f in fills]
    expected = set(range(1, child_count + 1))
    gaps = len(expected - set(sequences)) + len(sequences) - len(set(sequences))
    # At the broker: one deal per child tag, of the child's volume; nothing else traded.
    broker = _broker(state)
    try:
        lost = doubled = tagged = 0
        for child in got.children:
            deals = broker.find_by_tag(template.logins[child.account_id], child.tag).deals
            tagged += len(deals)
            doubled += max(0, len(deals) - 1)
            executed = sum((d.volume for d in deals), Decimal(0))
            lost += int(executed > 0 and Decimal(child.filled_volume) != executed)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        deal_count = sum(len(broker.deals(login, epoch)) for login in template.logins.values())
        doubled += deal_count - tagged
    finally:
        broker.close()
    kill = (
        "right after the ack" if kill_after == 0
        else f"after {kill_after} fills" if kill_after is not None
        else f"{kill_delay_s * 1000:.1f} ms after the ack"
    )  # fmt: skip
    outcome = Outcome(
        seed=seed,
        kill=kill,
        seen_before=len(before),
        found=found,
        resent=resent,
        lost=lost,
        doubled=doubled,
        non_final=int(got.state != order_pb2.MASTER_ORDER_STATE_FILLED),
        gaps=gaps,
    )
    # The stricter forms of the counts, for a failure that names what differs.
    assert sequences == list(range(1, child_count + 1)), outcome
    assert len({f.child_order_id for f in fills}) == child_count, outcome
    assert got.filled_child_count == child_count, outcome
    assert sum(Decimal(c.filled_volume) for c in got.children) == Decimal(VOLUME), outcome
    assert {c.child_order_id for c in got.children} == {f.child_order_id for f in fills}, outcome
    assert deal_count == child_count, outcome
    return outcome


async def _final_master_order(
    trading: trading_service_pb2_grpc.TradingServiceStub, master_id: str, timeout_s: float = 60
) -> order_pb2.MasterOrder:
    """The master order once FILLED (it closes in the commit of its last fill), or as it is
    after timeout_s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        got = (
            await trading.GetMasterOrder(
                trading_service_pb2.GetMasterOrderRequest(master_order_id=master_id)
            )
        ).master_order
        if got.state == order_pb2.MASTER_ORDER_STATE_FILLED or loop.time() > deadline:
            return got
        assert got.state in (
            order_pb2.MASTER_ORDER_STATE_ALLOCATED,
            order_pb2.MASTER_ORDER_STATE_DISPATCHING,
        ), order_pb2.MasterOrderState.Name(got.state)
        await asyncio.sleep(0.05)


def _span(values: list[int]) -> str:
    return f"{min(values)}-{max(values)} (total {sum(values)})"


def test_the_kill_points_cover_both_sides_of_the_broker_answer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Not vacuous: on each database some kill fell between a broker executing a child and the
    gateway storing it (found by tag), and some before children were sent (sent after the
    restart). Prints each database's figures (docs/durability.md)."""
    complete = [
        database
        for database in SELECTED
        if all((database, point) in OUTCOMES for point in range(KILL_POINTS))
    ]
    if not complete:
        pytest.skip("needs every kill point of a database in this module to have run")
    for database in complete:
        outcomes = [OUTCOMES[database, point] for point in range(KILL_POINTS)]
        with capsys.disabled():
            print(
                f"\ncrash test, {database}: {len(outcomes)} kill points, seeds "
                f"{BASE_SEED}-{BASE_SEED + KILL_POINTS - 1}; children found by tag "
                f"{_span([o.found for o in outcomes])}, resent after the restart "
                f"{_span([o.resent for o in outcomes])}; fills lost "
                f"{sum(o.lost for o in outcomes)}, children doubled "
                f"{sum(o.doubled for o in outcomes)}, masters left non-final "
                f"{sum(o.non_final for o in outcomes)}, subscriber gaps "
                f"{sum(o.gaps for o in outcomes)}"
            )
        assert sum(o.found for o in outcomes) > 0, (database, outcomes)
        assert sum(o.resent for o in outcomes) > 0, (database, outcomes)
