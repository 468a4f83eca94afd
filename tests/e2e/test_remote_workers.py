"""A worker killed with SIGKILL in the middle of a fan-out, and restarted, loses and doubles
nothing.

The gateway and three workers run as real processes on loopback (`python -m gateway` and
`python -m gateway.worker`), each worker hosting 30 simulated terminals on its own simulated
broker, whose books live in a file as a real broker's outlive a worker crash. One master order
goes to all 90 accounts. Worker B answers slowly, and a seeded 40 % of its sends execute at the
broker and then never answer; B is killed once A's and C's children have all filled and some of
its own have, then restarted on the same books without faults. Proven:
- every child FILLED, each exactly once at its broker (one deal under its tag, nothing else);
- SubscribeFills, live and again from sequence 0, gives each child's fill exactly once, with
  gap-free sequences;
- some of B's children were executed but unanswered when B died, and were settled by their tag.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import grpc
import pytest

from gateway._proto.mam.v1 import (
    account_pb2,
    account_service_pb2,
    account_service_pb2_grpc,
    common_pb2,
    order_pb2,
    trading_service_pb2,
    trading_service_pb2_grpc,
)
from gateway.api.server import simulated_broker
from gateway.config import load_config
from tests.e2e.gateway_process import GatewayProcess, write_config
from tests.integration.helpers import create_group, market_order
from tests.support import DEMO_CONFIG, ROOT

TOKEN = "e2e-worker-token-0123456789abcdef"
SERVER = "Broker-E2E"
PER_WORKER = 30
WORKERS = ("a", "b", "c")
VOLUME = "9.00"  # 0.10 lots per account: equal balances, allocation by equity


def _logins(worker: str) -> list[int]:
    first = 72_001 + WORKERS.index(worker) * 1_000
    return list(range(first, first + PER_WORKER))


def _sim_config(directory: Path, name: str, **settings: str) -> Path:
    """The demo's simulated broker, with some [simulator] settings changed."""
    text = DEMO_CONFIG.read_text()
    text = text[: text.index("[demo]")]
    for key, value in settings.items():
        text, count = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
        assert count == 1, f"{key} is not a line of {DEMO_CONFIG}"
    path = directory / f"{name}.toml"
    path.write_text(text)
    return path


class WorkerProcess:
    def __init__(self, directory: Path, worker: str, sim_config: Path) -> None:
        self.worker = worker
        self.directory = directory
        self.books = directory / f"books-{worker}.db"
        self.sim_config = sim_config
        self.log = directory / f"worker-{worker}.log"
        self.process: asyncio.subprocess.Process | None = None

    def write_config(self, gateway: str) -> Path:
        terminals = "".join(
            f'[[terminals]]\nlogin = {login}\nserver = "{SERVER}"\nplatform = "MT5"\n'
            f'backend = "sim"\nbalance = "10000"\n\n'
            for login in _logins(self.worker)
        )
        path = self.directory / f"worker-{self.worker}.toml"
        path.write_text(
            f'worker_id = "w-{self.worker}"\ngateway = "{gateway}"\n'
            "reconnect_min_seconds = 0.1\nreconnect_max_seconds = 0.5\n\n"
            f'[backends.sim]\nconfig = "{self.sim_config}"\nstate_path = "{self.books}"\n\n'
            + terminals
        )
        return path

    async def start(self, gateway: str, timeout_s: float = 30.0) -> None:
        config = self.write_config(gateway)
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.worker", "--config", str(config),
                cwd=ROOT, env={**os.environ, "MAM_WORKER_TOKEN": TOKEN},
                stdout=asyncio.subprocess.PIPE, stderr=log,
            )  # fmt: skip
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout_s):
            while True:
                line = (await self.process.stdout.readline()).decode()
                if not line:
                    raise RuntimeError(f"worker exited; see {self.log}:\n{self.log.read_text()}")
                if "connected to" in line:
                    return

    async def kill(self) -> None:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def stop(self) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            return await self.process.wait()

    def deals_by_tag(self) -> dict[str, list[Decimal]]:
        """Every deal in this worker's books, by tag (read after the worker stopped)."""
        config = load_config(
            self.sim_config, environ={"MAM__SIMULATOR__STATE_PATH": str(self.books)}
        )
        broker = simulated_broker(config)
        try:
            epoch = datetime(1970, 1, 1, tzinfo=UTC)
            found: dict[str, list[Decimal]] = {}
            for login in _logins(self.worker):
                for deal in broker.deals(login, epoch):
                    found.setdefault(deal.comment, []).append(deal.volume)
            return found
        finally:
            broker.close()


async def _create_accounts(channel: grpc.aio.Channel) -> dict[str, str]:
    """account id -> the worker hosting it."""
    stub = account_service_pb2_grpc.AccountServiceStub(channel)
    hosted_by: dict[str, str] = {}
    for worker in WORKERS:
        for login in _logins(worker):
            created = await stub.CreateAccount(
                account_service_pb2.CreateAccountRequest(
                    account=account_pb2.Account(
                        name=f"remote-{login}",
                        platform=common_pb2.PLATFORM_MT5,
                        login=login,
                        server=SERVER,
                        currency="USD",
                    )
                )
            )
            hosted_by[created.account.account_id] = worker
    return hosted_by


async def test_a_worker_killed_mid_fan_out_executes_and_streams_every_child_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAM__WORKERS__ENABLED", "true")
    monkeypatch.setenv("MAM_WORKER_TOKENS", TOKEN)
    gateway = GatewayProcess(write_config(tmp_path), tmp_path / "gateway.db")
    address = await gateway.start()
    steady = _sim_config(tmp_path, "sim-steady", latency_ms="10")
    faulty = _sim_config(
        tmp_path,
        "sim-faulty",
        latency_ms="60",
        latency_distribution='"lognormal"',
        latency_sigma="1.0",
        hang="0.4",
        hang_executes="true",
    )
    workers = {w: WorkerProcess(tmp_path, w, faulty if w == "b" else steady) for w in WORKERS}
    try:
        await asyncio.gather(*(w.start(address) for w in workers.values()))
        async with grpc.aio.insecure_channel(address) as channel:
            hosted_by = await _create_accounts(channel)
            accounts = account_service_pb2_grpc.AccountServiceStub(channel)
            listed = await accounts.ListAccounts(
                account_service_pb2.ListAccountsRequest(page_size=1000)
            )
            group = await create_group(accounts, list(listed.accounts))
            trading = trading_service_pb2_grpc.TradingServiceStub(channel)
            live = trading.SubscribeFills(trading_service_pb2.SubscribeFillsRequest())
            assert (await live.read()).heartbeat_sequence == 0
            request = market_order(group.group_id, VOLUME, max_deviation_points=100_000)
            master = (await trading.SubmitMasterOrder(request)).master_order
            assert master.child_count == len(WORKERS) * PER_WORKER

            seen: list[order_pb2.Fill] = []
            async with asyncio.timeout(60):
                while True:  # until A and C are done and B is part way: then B dies
                    message = await live.read()
                    seen.extend(message.batch.fills)
                    done = {w: sum(hosted_by[f.account_id] == w for f in seen) for w in WORKERS}
                    if done["a"] == done["c"] == PER_WORKER and done["b"] >= 8:
                        break
            assert done["b"] < PER_WORKER  # B's hanging sends never answer
            await workers["b"].kill()
            workers["b"].sim_config = steady
            await workers["b"].start(address)

            async with asyncio.timeout(60):
                while len(seen) < master.child_count:
                    message = await live.read()
                    assert message is not grpc.aio.EOF
                    seen.extend(message.batch.fills)
            live.cancel()
            got = await _until_final(trading, master.master_order_id)
            replay = trading.SubscribeFills(trading_service_pb2.SubscribeFillsRequest())
            replayed: list[order_pb2.Fill] = []
            async with asyncio.timeout(30):
                while len(replayed) < master.child_count:
                    replayed.extend((await replay.read()).batch.fills)
            replay.cancel()
    finally:
        stopped = {}
        for name, worker in workers.items():
            if worker.process is not None:
                with contextlib.suppress(ProcessLookupError, TimeoutError):
                    stopped[name] = await worker.stop()
        assert await gateway.stop() == 0
    assert stopped == dict.fromkeys(WORKERS, 0)  # SIGTERM: a clean stop

    assert got.state == order_pb2.MASTER_ORDER_STATE_FILLED
    assert got.filled_child_count == master.child_count
    children = {c.child_order_id: c for c in got.children}
    for fills in (seen, replayed):
        assert [f.sequence for f in fills] == list(range(1, master.child_count + 1))
        assert sorted(f.child_order_id for f in fills) == sorted(children)

    deals = {w: workers[w].deals_by_tag() for w in WORKERS}
    for child in got.children:
        assert deals[hosted_by[child.account_id]].get(child.tag) == [Decimal("0.10")], child.tag
    for worker in WORKERS:  # nothing else traded
        assert sum(len(v) for v in deals[worker].values()) == PER_WORKER

    found = [
        c
        for c in got.children
        if hosted_by[c.account_id] == "b" and "found by tag" in c.status_text
    ]
    assert found, "no child of B was executed and unanswered when B died"


async def _until_final(
    trading: trading_service_pb2_grpc.TradingServiceStub, master_order_id: str
) -> order_pb2.MasterOrder:
    """The master order once final (it closes in the commit of its last fill)."""
    async with asyncio.timeout(30):
        while True:
            got = (
                await trading.GetMasterOrder(
                    trading_service_pb2.GetMasterOrderRequest(master_order_id=master_order_id)
                )
            ).master_order
            if got.state not in (
                order_pb2.MASTER_ORDER_STATE_ALLOCATED,
                order_pb2.MASTER_ORDER_STATE_DISPATCHING,
            ):
                return got
            await asyncio.sleep(0.05)
