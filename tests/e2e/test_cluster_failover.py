"""Cluster mode with real processes on one real PostgreSQL: three gateway processes share the
groups; the owner of a group is SIGKILLed while a master order fans out, a survivor takes the
group over after the lease time and finishes the order (each child found by its tag before it
is sent again), and a subscriber on another process sees every fill once, in one sequence
1..N, resuming across the kill. A process stopped (SIGSTOP) past its lease finds, when it
runs again, that its commits of the group are refused (fenced).

The simulated brokers live in the gateway processes (a broker per process): an order a killed
process had sent is not at the new owner's broker, which sends it again. What is proved here
is the gateway's side: leases, fencing, resumption, the one fill sequence; the broker side of
a resend (found by its tag) is the crash tests' (tests/e2e/test_crash_recovery.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from decimal import Decimal
from pathlib import Path

import grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from gateway._proto.mam.v1 import trading_service_pb2, trading_service_pb2_grpc
from tests.e2e.gateway_process import GatewayProcess, write_config
from tests.integration.helpers import create_accounts, create_group, market_order
from tests.support import until

LEASE_S = 2.0
NODES = ("node-1", "node-2", "node-3")


def node(tmp_path: Path, url: str, name: str, *, latency_ms: int) -> GatewayProcess:
    directory = tmp_path / name
    directory.mkdir()
    return GatewayProcess(
        write_config(directory),
        directory / "unused.db",
        latency_ms=latency_ms,
        database_url=url,
        environment={
            "MAM__CLUSTER__ENABLED": "true",
            "MAM__CLUSTER__NODE_NAME": name,
            "MAM__CLUSTER__LEASE_SECONDS": str(LEASE_S),
            "MAM__CLUSTER__RENEW_INTERVAL_SECONDS": "0.25",
            "MAM__LOG_LEVEL": "INFO",
        },
    )


async def query(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(text(sql))).all()]
    finally:
        await engine.dispose()


async def owners(url: str) -> dict[str, str]:
    rows = await query(url, "SELECT group_id, node_id FROM group_leases WHERE released_at IS NULL")
    return {str(g): str(n) for g, n in rows}


class Client:
    def __init__(self, address: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        from gateway._proto.mam.v1 import account_service_pb2_grpc  # noqa: PLC0415

        self.accounts = account_service_pb2_grpc.AccountServiceStub(self.channel)
        self.trading = trading_service_pb2_grpc.TradingServiceStub(self.channel)


async def test_the_owner_killed_mid_fan_out_its_group_is_taken_over_and_every_fill_streamed_once(
    tmp_path: Path, pg_url: str
) -> None:
    processes = {name: node(tmp_path, pg_url, name, latency_ms=300) for name in NODES}
    try:
        addresses = {name: await p.start() for name, p in processes.items()}
        clients = {name: Client(address) for name, address in addresses.items()}
        first = clients["node-1"]
        groups = []
        for i in range(3):
            members = await create_accounts(
                first.accounts, ["10000"] * 8, prefix=f"g{i}", first_login=72000 + 100 * i
            )
            groups.append((await create_group(first.accounts, members, name=f"g{i}")).group_id)

        async def spread() -> bool:
            held = await owners(pg_url)
            return len(held) == 3 and len(set(held.values())) == 3

        await until(spread, timeout_s=20)
        held = await owners(pg_url)
        victim_group = groups[0]
        victim = held[victim_group]
        watcher = next(n for n in NODES if n != victim)
        # A subscriber on a process that stays, from the first fill on.
        stream = clients[watcher].trading.SubscribeFills(
            trading_service_pb2.SubscribeFillsRequest(after_sequence=0)
        )
        seen: list[int] = []

        async def read_fills() -> None:
            while True:
                message = await stream.read()
                if message is grpc.aio.EOF:
                    return
                seen.extend(f.sequence for f in message.batch.fills)

        reader = asyncio.create_task(read_fills())
        # An order on every group, through its owner; the victim's is killed mid fan-out.
        submitted = {}
        for group_id in groups:
            owner = clients[held[group_id]]
            answer = await owner.trading.SubmitMasterOrder(market_order(group_id, "0.80"))
            submitted[group_id] = answer.master_order.master_order_id
        await asyncio.sleep(0.1)  # the victim's children are at its (simulated) broker
        killed_at = time.monotonic()
        await processes[victim].kill()
        # Sent to a survivor meanwhile: waits for the group's new owner, which does it.
        late = asyncio.ensure_future(
            clients[watcher].trading.SubmitMasterOrder(market_order(victim_group, "0.80"))
        )

        async def taken_over() -> bool:
            now = await owners(pg_url)
            return now.get(victim_group, victim) != victim

        await until(taken_over, timeout_s=LEASE_S + 10)
        takeover_s = time.monotonic() - killed_at
        ((epoch,),) = await query(
            pg_url, f"SELECT epoch FROM group_leases WHERE group_id = '{victim_group}'"
        )
        assert epoch == 2

        # The survivors finish every order; the taken group's on its new owner.
        async def all_final() -> bool:
            rows = await query(
                pg_url,
                "SELECT count(*) FROM master_orders WHERE state NOT IN "
                "('FILLED', 'PARTIALLY_FILLED', 'REJECTED', 'CANCELLED', 'EXPIRED')",
            )
            return rows[0][0] == 0

        late_answer = await late
        assert late_answer.master_order.child_count == 8
        await until(all_final, timeout_s=30)
        rows = await query(
            pg_url, "SELECT child_order_id, count(*) FROM fills GROUP BY child_order_id"
        )
        assert all(count == 1 for _, count in rows), "a child filled twice"
        ((children,),) = await query(pg_url, "SELECT count(*) FROM child_orders")
        assert len(rows) == children == 32
        stored = [int(r[0]) for r in await query(pg_url, "SELECT sequence FROM fills ORDER BY 1")]
        assert stored == list(range(1, 33))

        async def streamed_all() -> bool:
            return len(seen) >= 32

        await until(streamed_all, timeout_s=10)
        assert seen == stored
        reader.cancel()
        print(f"takeover after SIGKILL: {takeover_s:.2f} s (lease {LEASE_S} s)")
    finally:
        for process in processes.values():
            await process.kill()


async def test_a_process_stopped_past_its_lease_cannot_commit_when_it_runs_again(
    tmp_path: Path, pg_url: str
) -> None:
    processes = {name: node(tmp_path, pg_url, name, latency_ms=1500) for name in NODES[:2]}
    try:
        addresses = {name: await p.start() for name, p in processes.items()}
        clients = {name: Client(address) for name, address in addresses.items()}
        first = clients["node-1"]
        groups = []
        for i in range(2):
            members = await create_accounts(
                first.accounts, ["10000"] * 2, prefix=f"s{i}", first_login=73000 + 100 * i
            )
            groups.append((await create_group(first.accounts, members, name=f"s{i}")).group_id)

        async def spread() -> bool:
            held = await owners(pg_url)
            return len(held) == 2 and len(set(held.values())) == 2

        await until(spread, timeout_s=20)
        held = await owners(pg_url)
        group_id = groups[0]
        paused_name = held[group_id]
        paused = processes[paused_name]
        # Its children wait 1.5 s at its broker; it is stopped meanwhile, past its lease.
        answer = await clients[paused_name].trading.SubmitMasterOrder(
            market_order(group_id, "0.20")
        )
        master_id = answer.master_order.master_order_id
        await asyncio.sleep(0.2)
        assert paused.process is not None
        os.kill(paused.process.pid, signal.SIGSTOP)
        try:

            async def taken_over() -> bool:
                return (await owners(pg_url)).get(group_id) not in (None, paused_name)

            await until(taken_over, timeout_s=LEASE_S + 15)
        finally:
            os.kill(paused.process.pid, signal.SIGCONT)

        # The new owner finishes the order; the stopped one, running again, is refused.
        async def final() -> bool:
            rows = await query(
                pg_url, f"SELECT state FROM master_orders WHERE master_order_id = '{master_id}'"
            )
            return rows[0][0] in ("FILLED", "PARTIALLY_FILLED", "REJECTED")

        await until(final, timeout_s=30)

        async def told_fenced() -> bool:
            return "lost the leases of groups" in paused.log.read_text()

        await until(told_fenced, timeout_s=30)
        rows = await query(
            pg_url, "SELECT child_order_id, count(*) FROM fills GROUP BY child_order_id"
        )
        assert all(count == 1 for _, count in rows), "a child's fill stored twice"
        filled = await query(
            pg_url,
            f"SELECT sum(CAST(volume AS numeric)) FROM fills WHERE master_order_id = '{master_id}'",
        )
        assert Decimal(str(filled[0][0])) == Decimal("0.20")
    finally:
        for process in processes.values():
            await process.kill()
