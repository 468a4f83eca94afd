"""Remote workers: the end-to-end master order with every terminal in a `mam-worker` process.

In production the MetaTrader terminals live in workers (`python -m gateway.worker`) connected to
the gateway over WorkerService.Connect, and every terminal call of a child order (account info,
symbol spec, quote, send) is a command on that stream and a result back. Here the gateway runs
as its own process (SQLite, workers enabled) and W workers on loopback each host N / W simulated
terminals (the worker's `sim` backend, one simulated broker per worker, books in memory)
answering after the row's latency. Accounts (MT5, login and server) and the group are created
over the API, then every terminal is waited for (TerminalService.ListTerminals) and an order
warms up.

Per order, as the e2e scenario: submit -> last fill received by a SubscribeFills subscriber, the
acknowledgement, the dispatch skew (GetMasterOrder's execution stats); and the CPU the gateway
and the workers spent per order over the timed orders (/proc).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from bench import client
from bench.common import ROOT, RunContext, cpu_seconds, summarize_ms
from bench.gateway_process import DEMO_CONFIG, GatewayProcess, sqlite_url
from gateway._proto.mam.v1 import (
    account_pb2,
    account_service_pb2,
    account_service_pb2_grpc,
    common_pb2,
    order_pb2,
    terminal_service_pb2,
    terminal_service_pb2_grpc,
    trading_service_pb2_grpc,
)

BASIC = order_pb2.MASTER_ORDER_VIEW_BASIC
TOKEN = "bench-worker-token-0123456789abcdef"
SERVER = "Broker-Bench"
FIRST_LOGIN = 5_000_000
BALANCE = "100000"
CREATE_CHUNK = 100  # CreateAccount calls in flight at once


def _sim_config(directory: Path, latency_ms: int) -> Path:
    """The demo's simulated broker (its [simulator] and [[symbols]]) at the row's latency."""
    text = DEMO_CONFIG.read_text()
    text = text[: text.index("[demo]")]
    text, count = re.subn(r"^latency_ms = .*$", f"latency_ms = {latency_ms}", text, flags=re.M)
    assert count == 1, f"latency_ms is not a line of {DEMO_CONFIG}"
    path = directory / f"sim-{latency_ms}ms.toml"
    path.write_text(text)
    return path


class WorkerProcess:
    """`python -m gateway.worker` hosting some logins on its own simulated broker."""

    def __init__(self, directory: Path, name: str, logins: range, sim_config: Path) -> None:
        self.name = name
        self.directory = directory
        self.logins = logins
        self.sim_config = sim_config
        self.log = directory / f"worker-{name}.log"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _write_config(self, gateway: str) -> Path:
        terminals = "".join(
            f'[[terminals]]\nlogin = {login}\nserver = "{SERVER}"\nplatform = "MT5"\n'
            f'backend = "sim"\nbalance = "{BALANCE}"\nmargin_mode = "NETTING"\n\n'
            for login in self.logins
        )
        path = self.directory / f"worker-{self.name}.toml"
        path.write_text(
            f'worker_id = "bench-{self.name}"\ngateway = "{gateway}"\nlog_level = "WARNING"\n'
            "reconnect_min_seconds = 0.1\nreconnect_max_seconds = 0.5\n\n"
            f'[backends.sim]\nconfig = "{self.sim_config}"\n\n' + terminals
        )
        return path

    async def start(self, gateway: str, timeout_s: float = 60.0) -> None:
        config = self._write_config(gateway)
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
                    await self.process.wait()
                    tail = self.log.read_text()[-3000:]
                    raise RuntimeError(f"worker {self.name} exited:\n{tail}")
                if "connected to" in line:
                    return

    async def stop(self, timeout_s: float = 15.0) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout_s):
                await self.process.wait()
        except TimeoutError:
            print(f"bench: worker {self.name} did not stop in {timeout_s} s", file=sys.stderr)
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


async def _create_accounts(channel: grpc.aio.Channel, logins: range) -> list[str]:
    stub = account_service_pb2_grpc.AccountServiceStub(channel)

    async def create(login: int) -> str:
        response = await stub.CreateAccount(
            account_service_pb2.CreateAccountRequest(
                account=account_pb2.Account(
                    name=f"remote-{login}",
                    platform=common_pb2.PLATFORM_MT5,
                    login=login,
                    server=SERVER,
                    currency="USD",
                    margin_mode=common_pb2.MARGIN_MODE_NETTING,
                    leverage=100,
                )
            )
        )
        return str(response.account.account_id)

    ids: list[str] = []
    for first in range(0, len(logins), CREATE_CHUNK):
        ids += await asyncio.gather(*(create(x) for x in logins[first : first + CREATE_CHUNK]))
    return ids


async def _create_group(channel: grpc.aio.Channel, account_ids: list[str]) -> str:
    stub = account_service_pb2_grpc.AccountServiceStub(channel)
    response = await stub.CreateGroup(
        account_service_pb2.CreateGroupRequest(
            group=account_pb2.Group(
                name="bench-remote",
                allocation=account_pb2.AllocationSettings(
                    method=account_pb2.ALLOCATION_METHOD_EQUITY
                ),
                members=[account_pb2.GroupMember(account_id=a) for a in account_ids],
            )
        )
    )
    return str(response.group.group_id)


async def _connected_terminals(channel: grpc.aio.Channel) -> int:
    stub = terminal_service_pb2_grpc.TerminalServiceStub(channel)
    connected, token = 0, ""
    while True:
        page = await stub.ListTerminals(
            terminal_service_pb2.ListTerminalsRequest(page_size=1000, page_token=token)
        )
        connected += sum(t.connected for t in page.terminals)
        token = page.next_page_token
        if not token:
            return connected


async def _wait_connected(channel: grpc.aio.Channel, accounts: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while (connected := await _connected_terminals(channel)) < accounts:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"only {connected} of {accounts} remote terminals connected after {timeout_s} s"
            )
        await asyncio.sleep(0.1)


async def _orders(
    gateway: GatewayProcess,
    workers: list[WorkerProcess],
    group_id: str,
    accounts: int,
    rounds: int,
) -> dict[str, Any]:
    async with gateway.channel() as channel:
        trading = trading_service_pb2_grpc.TradingServiceStub(channel)
        counter = client.FillCounter(trading)
        await counter.start()
        try:
            totals, acks, skews, server_totals = [], [], [], []
            gateway_cpu = workers_cpu = 0.0
            for number in range(rounds + 1):  # the first order warms up
                if number == 1:
                    gateway_cpu = cpu_seconds(gateway.pid)
                    workers_cpu = sum(cpu_seconds(w.pid) for w in workers)
                start = time.perf_counter()
                master = await client.submit(
                    trading, group_id, accounts, sell=number % 2 == 1, view=BASIC
                )
                acknowledged = time.perf_counter()
                if master.child_count != accounts:
                    raise RuntimeError(f"{master.child_count} children for {accounts} accounts")
                last = await counter.wait_for(master.master_order_id, master.child_count)
                stored = await client.master_order(trading, master.master_order_id)
                if number == 0:
                    continue
                totals.append((last - start) * 1000)
                acks.append((acknowledged - start) * 1000)
                skews.append(stored.execution.dispatch_skew.ToMicroseconds() / 1000)
                server_totals.append(stored.execution.submit_to_last_fill.ToMicroseconds() / 1000)
            gateway_cpu = cpu_seconds(gateway.pid) - gateway_cpu
            workers_cpu = sum(cpu_seconds(w.pid) for w in workers) - workers_cpu
            received = all(counter.counts[m] == accounts for m in counter.counts)
        finally:
            await counter.stop()
    return {
        "submit_to_last_fill": summarize_ms(totals),
        "ack": summarize_ms(acks),
        "dispatch_skew": summarize_ms(skews),
        "server_accept_to_last_fill": summarize_ms(server_totals),
        "fills_received": counter.total,
        "all_fills_received": received and counter.total == accounts * (rounds + 1),
        "gateway_cpu_ms_per_order": round(gateway_cpu * 1000 / rounds, 1),
        "workers_cpu_ms_per_order": round(workers_cpu * 1000 / rounds, 1),
    }


async def _row(accounts: int, workers_count: int, rounds: int, latency_ms: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mam-bench-remote-") as name:
        directory = Path(name)
        sim_config = _sim_config(directory, latency_ms)
        logins = range(FIRST_LOGIN, FIRST_LOGIN + accounts)
        share = -(-accounts // workers_count)
        workers = [
            WorkerProcess(directory, str(i), logins[i * share : (i + 1) * share], sim_config)
            for i in range(workers_count)
        ]
        gateway = GatewayProcess(
            directory,
            sqlite_url(directory),
            environment={"MAM__WORKERS__ENABLED": "true", "MAM_WORKER_TOKENS": TOKEN},
        )
        try:
            await gateway.start()
            setup = time.perf_counter()
            async with asyncio.TaskGroup() as starting:  # one failing stops the others' starts
                for worker in workers:
                    starting.create_task(worker.start(gateway.address))
            async with gateway.channel() as channel:
                account_ids = await _create_accounts(channel, logins)
                group_id = await _create_group(channel, account_ids)
                await _wait_connected(channel, accounts)
            setup_s = time.perf_counter() - setup
            row: dict[str, Any] = {
                "accounts": accounts,
                "workers": workers_count,
                "latency_ms": latency_ms,
                "orders": rounds,
                "setup_s": round(setup_s, 1),
            }
            row.update(await _orders(gateway, workers, group_id, accounts, rounds))
            return row
        finally:
            try:
                await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
            finally:
                await gateway.stop()


async def run(context: RunContext) -> dict[str, Any]:
    sizes = context.sizes
    rows = [
        await _row(sizes.remote_accounts, sizes.remote_workers, sizes.remote_orders, latency)
        for latency in sizes.remote_latencies_ms
    ]
    return {"rows": rows, "summary": _summary(rows)}


def _summary(rows: list[dict[str, Any]]) -> str:
    parts = []
    for row in rows:
        total = row["submit_to_last_fill"]
        parts.append(
            f"{row['accounts']}@{row['latency_ms']}ms over {row['workers']} workers "
            f"p50 {total['median_ms']} ms p99 {total['p99_ms']} ms"
        )
    return "; ".join(parts)
