"""Cluster mode (docs/cluster.md): several gateway processes on one PostgreSQL database.

Every gateway runs as an operator runs it (`python -m gateway`, [cluster] on through its
MAM__CLUSTER__* environment, a lease of `LEASE_S` s renewed every `RENEW_S` s), each on a port
of its own that it also registers as its address, each with its own simulated terminals (a
group's terminals are attached by the process that owns the group). The database is one of the
throwaway server's (durable commits), holding 3 groups of 100 simulated netting accounts
(allocated by equity; each order 0.01 lot per account, sides alternating per group) stored
through the Store before the first process starts. The client routes each submission to the
group's owner as any client would: the owner's address from `group_leases` and
`cluster_nodes`, and on a GROUP_OWNED_ELSEWHERE refusal the address in its ErrorInfo.

1. Throughput with 1, 2 and 3 processes, and before them one process of the default mode on
   the same database and load (terminals answering at once): once the groups are spread (each
   live process holds its share), one order per group to warm up, then `window`
   master orders in flight per group (each submitted to the owner, waited for until all its
   fills reached the subscriber, then the next) for `seconds`. Durable fills/s from the
   newest stored fill's sequence, read at both ends of the window; streamed fills/s from one
   SubscribeFills subscriber on the first process, which receives every process's fills
   (checked gap-free and unrepeated, up to the last stored). CPU over
   the window from /proc: each gateway process (utime + stime), PostgreSQL (the postmaster,
   its live children and those it waited for), the bench process, and the whole machine (shared
   with other work), per fill; sessions waiting on a row lock (pg_stat_activity every 50 ms);
   commits of fills (one notification each). And the gateways' CPU idle (the lease rounds).
2. Takeover over repeated SIGKILLs (3 processes, terminals answering after `kill_latency_ms`):
   a master order is submitted to a group's owner, the owner is SIGKILLed while the order's
   children wait at its (simulated) broker; from the kill, `group_leases` is polled every
   20 ms until its row names another live process (the takeover); a subscriber on a surviving
   process times the first and last fill of the resumed order (the new owner finds no child at
   its own broker and sends them again: one simulated latency is in these figures); and right
   after the takeover a new order is submitted to the new owner (its acknowledgement, and
   whether all its children filled). The killed process is then restarted under its name, and
   the next kill waits until the groups are spread again. The victim's group rotates.
3. NOTIFY-to-subscriber lag (2 processes, terminals answering at once): orders one at a time
   with a pause, alternating between a group owned by process A and one owned by B, and a
   subscriber on each process. The bench LISTENs on `mam_fills` itself: the moment it is woken
   by a commit's notification stands for the commit (the nodes' feeds are woken by the same
   notification). Per fill: notification seen -> received by the subscriber on the process
   that executed it ("same") and on the other ("other"); and the broker's execution time (the
   fill's `time`, the same machine's clock) -> notification seen, which holds the wait for the
   group commit, the commit and the notification's delivery. Per order: acknowledgement -> first
   and last fill, same and other. Under the throughput load the same notification -> received
   lag is also split by whether the fill was executed on the subscriber's process.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import itertools
import math
import os
import resource
import socket
import statistics
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from google.rpc import error_details_pb2, status_pb2

from bench import floor, population
from bench.common import RunContext, cpu_seconds, summarize_ms
from bench.gateway_process import GatewayProcess
from gateway._proto.mam.v1 import (
    common_pb2,
    order_pb2,
    trading_service_pb2,
    trading_service_pb2_grpc,
)
from gateway.api import fill_wire
from gateway.store import Store

LEASE_S = 2.0
RENEW_S = 0.25
# Populated accounts start at this index (bench/population.py's numbering): apart from any
# other scenario's on a database named by MAM_BENCH_POSTGRES_URL.
FIRST_ACCOUNT = 800_000
BASIC = order_pb2.MASTER_ORDER_VIEW_BASIC
LEASE_POLL_S = 0.02
FILLS_CHANNEL = "mam_fills"


@dataclass(frozen=True)
class ClusterSizes:
    groups: int = 3
    accounts: int = 100  # per group
    nodes: tuple[int, ...] = (1, 2, 3)
    seconds: float = 15.0  # the load's window per configuration
    window: int = 3  # master orders in flight per group
    idle_s: float = 2.0
    kill_nodes: int = 3
    kills: int = 12
    kill_latency_ms: int = 300
    lag_orders: int = 60
    lag_pause_s: float = 0.15


FULL_SIZES = ClusterSizes()
SMOKE_SIZES = ClusterSizes(
    accounts=4,
    nodes=(1, 2),
    seconds=1.0,
    window=1,
    idle_s=0.3,
    kill_nodes=2,
    kills=2,
    kill_latency_ms=200,
    lag_orders=4,
    lag_pause_s=0.05,
)


def _dsn(url: str) -> str:
    """The asyncpg form of a SQLAlchemy URL."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- CPU as /proc counts it ---------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def _command(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def _children_cpu(parent: int) -> float:
    """User + system CPU of the live children of `parent`."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = _stat_fields(int(entry.name))
            if int(fields[1]) == parent:
                total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


class PostgresCpu:
    """The server's CPU: the postmaster, its live children (backends, checkpointer, WAL
    writer...) and the children it has waited for (backends of sessions that ended)."""

    def __init__(self, postmaster: int) -> None:
        self.postmaster = postmaster

    @classmethod
    async def of(cls, db: asyncpg.Connection) -> PostgresCpu | None:
        """The server of this session, when it runs on this machine (its backend's parent)."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            backend = int(await db.fetchval("SELECT pg_backend_pid()"))
            postmaster = int(_stat_fields(backend)[1])
            if _command(postmaster) == "postgres":
                return cls(postmaster)
        return None

    def seconds(self) -> float:
        fields = _stat_fields(self.postmaster)
        own = sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLOCK_TICKS
        return own + _children_cpu(self.postmaster)


def _machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy so far (anyone's work)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def _own_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- the gateway processes ---------------------------------------------------------------------


class Node:
    """A gateway process of the cluster, restartable under its name on its port."""

    def __init__(
        self,
        root: Path,
        url: str,
        name: str,
        *,
        latency_ms: int,
        lease_s: float = LEASE_S,
        renew_s: float = RENEW_S,
        cluster: bool = True,
    ) -> None:
        """`cluster`: False for a process of the default mode (the database its own)."""
        self.name = name
        self.cluster = cluster
        self.url = url
        self.address = f"127.0.0.1:{_free_port()}"
        self.directory = root / name
        self.directory.mkdir(parents=True, exist_ok=True)
        self.latency_ms = latency_ms
        self.lease_s = lease_s
        self.renew_s = renew_s
        self.gateway: GatewayProcess | None = None
        self.channel: grpc.aio.Channel | None = None
        self.trading: trading_service_pb2_grpc.TradingServiceStub | None = None

    @property
    def running(self) -> bool:
        return (
            self.gateway is not None
            and self.gateway.process is not None
            and self.gateway.process.returncode is None
            and self.trading is not None
        )

    @property
    def pid(self) -> int:
        assert self.gateway is not None
        return self.gateway.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    async def start(self) -> float:
        """Starts the process; the seconds it took to serve."""
        started = time.perf_counter()
        self.gateway = GatewayProcess(
            self.directory,
            self.url,
            latency_ms=self.latency_ms,
            environment={
                # A fixed port, so that the address the node registers is the one it serves.
                "MAM__SERVER__LISTEN": self.address,
                "MAM__CLUSTER__ENABLED": str(self.cluster).lower(),
                **(
                    {
                        "MAM__CLUSTER__NODE_NAME": self.name,
                        "MAM__CLUSTER__LEASE_SECONDS": str(self.lease_s),
                        "MAM__CLUSTER__RENEW_INTERVAL_SECONDS": str(self.renew_s),
                    }
                    if self.cluster
                    else {}
                ),
            },
        )
        await self.gateway.start()
        # A new channel each start: one that saw the old process die waits out its backoff.
        self.channel = self.gateway.channel()
        self.trading = trading_service_pb2_grpc.TradingServiceStub(self.channel)
        return time.perf_counter() - started

    async def _close_channel(self) -> None:
        channel, self.channel, self.trading = self.channel, None, None
        if channel is not None:
            await channel.close()

    async def kill(self) -> float:
        """SIGKILL (no shutdown code runs); when the signal was sent (perf_counter)."""
        assert self.gateway is not None and self.gateway.process is not None
        self.gateway.process.kill()
        killed_at = time.perf_counter()
        await self.gateway.process.wait()
        await self._close_channel()
        return killed_at

    async def stop(self) -> None:
        await self._close_channel()
        if self.gateway is not None:
            await self.gateway.stop()


async def _start_all(nodes: Sequence[Node]) -> list[float]:
    return list(await asyncio.gather(*(n.start() for n in nodes)))


async def _stop_all(nodes: Sequence[Node]) -> None:
    await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)


# -- the fills as a subscriber receives them ----------------------------------------------------


class FillStream:
    """One live SubscribeFills stream on one node: fills per master order with their arrival
    times, the sequence checked gap-free and unrepeated, and (while `recording`) every fill's
    sequence, arrival, account and broker time."""

    def __init__(self, node: Node) -> None:
        assert node.trading is not None
        self.node = node.name
        self._call = node.trading.SubscribeFills(
            trading_service_pb2.SubscribeFillsRequest(live_only=True)
        )
        self.total = 0
        self.last_sequence = 0
        self.gaps = 0
        self.repeats = 0
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.recording = False
        self.sequences: list[int] = []
        self.received_at: list[float] = []
        self.accounts: list[str] = []
        self.executed_at: list[float] = []  # the broker's time, seconds since the epoch
        self._waiters: dict[str, list[tuple[int, asyncio.Future[float]]]] = defaultdict(list)
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    async def start(self) -> None:
        """Returns once the stream is live (its first message, a heartbeat)."""
        first = await self._call.read()
        assert first is not grpc.aio.EOF
        self._take(first)
        self._task = asyncio.create_task(self._read())

    def _take(self, message: trading_service_pb2.SubscribeFillsResponse) -> None:
        if not message.HasField("batch"):
            return
        now = time.perf_counter()
        touched = set()
        for fill in message.batch.fills:
            sequence = fill.sequence
            if self.last_sequence:
                if sequence <= self.last_sequence:
                    self.repeats += 1
                    continue
                self.gaps += sequence - self.last_sequence - 1
            self.last_sequence = sequence
            self.total += 1
            self.arrivals[fill.master_order_id].append(now)
            touched.add(fill.master_order_id)
            if self.recording:
                self.sequences.append(sequence)
                self.received_at.append(now)
                self.accounts.append(fill.account_id)
                self.executed_at.append(fill.time.seconds + fill.time.nanos / 1e9)
        for master_id in touched & self._waiters.keys():
            count = len(self.arrivals[master_id])
            waiting = []
            for wanted, future in self._waiters.pop(master_id):
                if count >= wanted:
                    if not future.done():
                        future.set_result(now)
                else:
                    waiting.append((wanted, future))
            if waiting:
                self._waiters[master_id] = waiting

    async def _read(self) -> None:
        try:
            while (message := await self._call.read()) is not grpc.aio.EOF:
                self._take(message)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.CANCELLED:
                self.error = error
        finally:
            for waiters in self._waiters.values():
                for _, future in waiters:
                    if not future.done():
                        future.set_exception(self.error or ConnectionError("the stream ended"))
            self._waiters.clear()

    async def wait_for(self, master_order_id: str, count: int, timeout_s: float) -> float | None:
        """When the `count`-th fill of the master order arrived; None if not within the time."""
        arrived = self.arrivals.get(master_order_id, [])
        if len(arrived) >= count:
            return arrived[count - 1]
        if self.error is not None:
            raise self.error
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters[master_order_id].append((count, future))
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return None

    async def wait_sequence(self, sequence: int, timeout_s: float) -> bool:
        """Whether every fill up to `sequence` arrived within the time."""
        deadline = time.perf_counter() + timeout_s
        while self.last_sequence < sequence:
            if self.error is not None or time.perf_counter() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def stop(self) -> None:
        self._call.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class CommitNotices:
    """The bench's own LISTEN on the fills channel: when each commit's notification (its last
    sequence) woke it."""

    def __init__(self) -> None:
        self.lasts: list[int] = []
        self.seen_at: list[float] = []
        self.out_of_order = 0
        self._conn: asyncpg.Connection | None = None

    async def start(self, dsn: str) -> None:
        self._conn = await asyncpg.connect(dsn)
        await self._conn.add_listener(FILLS_CHANNEL, self._notified)

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        now = time.perf_counter()
        last = int(payload)
        if self.lasts and last <= self.lasts[-1]:
            self.out_of_order += 1
            return
        self.lasts.append(last)
        self.seen_at.append(now)

    def of(self, sequence: int) -> float | None:
        """When the commit holding this fill was announced (the first notification whose
        last sequence is at or above it: commits are numbered in commit order)."""
        index = bisect.bisect_left(self.lasts, sequence)
        return self.seen_at[index] if index < len(self.lasts) else None

    async def stop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None


# -- routing to the owner ------------------------------------------------------------------------


def _error_info(error: grpc.aio.AioRpcError) -> tuple[str, dict[str, str]]:
    """The ErrorInfo reason and metadata of a gateway error."""
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return info.reason, dict(info.metadata)
    return "", {}


class Router:
    """Submits each master order to its group's owner: the owner's address as the database
    has it (group_leases + cluster_nodes), or as a GROUP_OWNED_ELSEWHERE refusal names it."""

    def __init__(
        self, db: asyncpg.Connection, nodes: Collection[Node], *, only: Node | None = None
    ) -> None:
        """`only`: the one process of the default mode, which every order goes to."""
        self._db = db
        self._only = only
        self._by_address = {n.address: n for n in nodes}
        self.owner: dict[str, str] = {}  # group id -> the owner's address
        self.redirects = 0
        self.unavailable = 0
        self.refusals: Counter[str] = Counter()
        # The addresses the nodes registered that are none of the nodes' (should be none).
        self.unknown_addresses: set[str] = set()
        self._sides: dict[str, itertools.count[int]] = defaultdict(itertools.count)

    async def refresh(self) -> None:
        rows = await self._db.fetch(
            "SELECT l.group_id, n.address FROM group_leases l JOIN cluster_nodes n "
            "ON n.node_id = l.node_id WHERE l.released_at IS NULL AND n.stopped_at IS NULL"
        )
        self.owner = {r["group_id"]: r["address"] for r in rows}
        self.unknown_addresses |= {a for a in self.owner.values() if a not in self._by_address}

    def node_of(self, group_id: str) -> Node | None:
        if self._only is not None:
            return self._only
        return self._by_address.get(self.owner.get(group_id, ""))

    async def submit(
        self, group_id: str, accounts: int, *, timeout_s: float = 60.0, retry_refused: bool = False
    ) -> tuple[order_pb2.MasterOrder, Node]:
        """A market order of 0.01 lot per account (sides alternating per group), sent to the
        owner (again, with the same client order id, after a refusal naming another owner);
        and where it went. `retry_refused`: any other FAILED_PRECONDITION is counted in
        `refusals` (by reason) and the order sent again, as a new one, every 20 ms."""
        volume = str((Decimal("0.01") * accounts).quantize(Decimal("0.01")))
        sell = next(self._sides[group_id]) % 2 == 1
        spec = order_pb2.MasterOrderSpec(
            client_order_id=f"bench-{uuid.uuid4().hex[:24]}",
            group_id=group_id,
            symbol="EURUSD",
            side=common_pb2.SIDE_SELL if sell else common_pb2.SIDE_BUY,
            type=common_pb2.ORDER_TYPE_MARKET,
            volume=volume,
            max_deviation_points=1000,
        )
        deadline = time.perf_counter() + timeout_s
        while True:
            pause = 0.05
            node = self.node_of(group_id)
            if node is not None and node.running:
                assert node.trading is not None
                request = trading_service_pb2.SubmitMasterOrderRequest(order=spec, view=BASIC)
                try:
                    response = await node.trading.SubmitMasterOrder(request)
                    return response.master_order, node
                except grpc.aio.AioRpcError as error:
                    reason, metadata = _error_info(error)
                    code = error.code()
                    if reason == "GROUP_OWNED_ELSEWHERE":
                        self.redirects += 1
                        if metadata.get("owner_address") in self._by_address:
                            self.owner[group_id] = metadata["owner_address"]
                            continue
                    elif code is grpc.StatusCode.UNAVAILABLE:
                        self.unavailable += 1
                    elif code is grpc.StatusCode.FAILED_PRECONDITION and retry_refused:
                        self.refusals[f"{reason}: {error.details()}"] += 1
                        spec.client_order_id = f"bench-{uuid.uuid4().hex[:24]}"
                        pause = 0.02
                    else:
                        raise
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no owner of group {group_id} took the order")
            await asyncio.sleep(pause)
            await self.refresh()


async def _owners(db: asyncpg.Connection) -> dict[str, str]:
    """Each leased group's owner (node name)."""
    rows = await db.fetch("SELECT group_id, node_id FROM group_leases WHERE released_at IS NULL")
    return {r["group_id"]: r["node_id"] for r in rows}


async def _wait_spread(
    db: asyncpg.Connection, groups: Sequence[str], names: Collection[str], timeout_s: float = 90
) -> dict[str, str]:
    """Until every group is held by one of `names`, each holding its share (the groups over
    the nodes, rounded down or up); each group's owner."""
    low, high = len(groups) // len(names), math.ceil(len(groups) / len(names))
    async with asyncio.timeout(timeout_s):
        while True:
            owners = {g: n for g, n in (await _owners(db)).items() if n in names}
            counts = Counter(owners.values())
            if set(groups) <= owners.keys() and all(low <= counts[n] <= high for n in names):
                return {g: owners[g] for g in groups}
            await asyncio.sleep(0.05)


async def _fill_counter(db: asyncpg.Connection) -> int:
    """The newest durable fill's sequence (in both modes: one process of the default mode
    numbers in process, and leaves the cluster's counter row alone)."""
    return int(await db.fetchval("SELECT COALESCE(max(sequence), 0) FROM fills"))


async def _populate(url: str, groups: int, accounts: int) -> dict[str, list[str]]:
    """`groups` groups of `accounts` accounts each (no account in two groups, as cluster mode
    requires), through the Store; each group's account ids."""
    store = await Store.open(url, fill_encoder=fill_wire.encode)
    try:
        made: dict[str, list[str]] = {}
        for g in range(groups):
            ids: list[str] = []
            for i in range(accounts):
                created = population.account(FIRST_ACCOUNT + g * accounts + i)
                await store.insert_account(created)
                ids.append(created.account_id)
            group = population.group(f"cluster-{g}", ids, await store.next_magic())
            await store.insert_group(group)
            made[group.group_id] = ids
        return made
    finally:
        await store.close()


class LockWaits:
    """Samples pg_stat_activity every 50 ms on a connection of its own: how many of the
    database's sessions wait on a lock (a row lock, in these runs: a counter row or a lease
    row held by another transaction until its COMMIT)."""

    def __init__(self) -> None:
        self.samples = 0
        self.waiting = 0  # sessions waiting, summed over the samples
        self.with_a_wait = 0  # samples where any session waited
        self.events: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None

    async def start(self, dsn: str) -> None:
        conn = await asyncpg.connect(dsn)
        self._task = asyncio.create_task(self._run(conn))

    async def _run(self, conn: asyncpg.Connection) -> None:
        try:
            while True:
                rows = await conn.fetch(
                    "SELECT wait_event FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
                self.samples += 1
                self.waiting += len(rows)
                self.with_a_wait += bool(rows)
                self.events.update(r["wait_event"] for r in rows)
                await asyncio.sleep(0.05)
        finally:
            await conn.close()

    async def stop(self) -> dict[str, Any]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return {
            "samples": self.samples,
            "mean_sessions_waiting": round(self.waiting / self.samples, 2) if self.samples else 0,
            "share_of_samples_with_a_wait": (
                round(self.with_a_wait / self.samples, 2) if self.samples else 0
            ),
            "wait_events": dict(self.events),
        }


def _lags(
    stream: FillStream, notices: CommitNotices, start: int = 0
) -> tuple[list[int], list[float]]:
    """Per recorded fill from `start` on: its sequence and notification -> received (ms)."""
    sequences, lags = [], []
    for sequence, received in zip(
        stream.sequences[start:], stream.received_at[start:], strict=True
    ):
        seen = notices.of(sequence)
        if seen is not None:
            sequences.append(sequence)
            lags.append((received - seen) * 1000)
    return sequences, lags


# -- 1. throughput ------------------------------------------------------------------------------


async def _throughput(
    url: str,
    db: asyncpg.Connection,
    root: Path,
    groups: dict[str, list[str]],
    sizes: ClusterSizes,
    count: int,
    pg_cpu: PostgresCpu | None,
    *,
    cluster: bool = True,
) -> dict[str, Any]:
    """`count` cluster nodes, or (`cluster` False) one process of the default mode."""
    mode = "cluster" if cluster else "default"
    nodes = [
        Node(root / f"load-{mode}-{count}", url, f"node-{i + 1}", latency_ms=0, cluster=cluster)
        for i in range(count)
    ]
    group_ids = list(groups)
    group_of = {a: g for g, members in groups.items() for a in members}
    stream: FillStream | None = None
    notices = CommitNotices()
    try:
        start_s = await _start_all(nodes)
        if cluster:
            owners = await _wait_spread(db, group_ids, [n.name for n in nodes])
            router = Router(db, nodes)
            await router.refresh()
        else:
            owners = dict.fromkeys(group_ids, nodes[0].name)
            router = Router(db, nodes, only=nodes[0])
        stream = FillStream(nodes[0])
        await stream.start()
        if cluster:
            await notices.start(_dsn(url))

        # Idle: the lease rounds alone.
        idle_before = [n.cpu_seconds() for n in nodes]
        idle_started = time.perf_counter()
        await asyncio.sleep(sizes.idle_s)
        idle_wall = time.perf_counter() - idle_started
        idle_cpu = sum(n.cpu_seconds() for n in nodes) - sum(idle_before)

        async def one(group_id: str, timeout_s: float) -> tuple[float, bool]:
            started = time.perf_counter()
            master, _ = await router.submit(group_id, len(groups[group_id]))
            assert stream is not None
            last = await stream.wait_for(master.master_order_id, master.child_count, timeout_s)
            return ((last or time.perf_counter()) - started) * 1000, last is not None

        # One order per group first: connections, caches and the first commits.
        await asyncio.gather(*(one(g, 60) for g in group_ids))
        latencies: list[float] = []
        incomplete = 0
        measuring = True

        async def worker(group_id: str) -> None:
            nonlocal incomplete
            while measuring:
                latency, complete = await one(group_id, 30)
                latencies.append(latency)
                incomplete += not complete

        workers = [asyncio.create_task(worker(g)) for g in group_ids for _ in range(sizes.window)]
        try:
            await asyncio.sleep(0.5)  # every worker's first order under way
            stream.recording = True
            counter_before, streamed_before = await _fill_counter(db), stream.total
            cpu_before = [n.cpu_seconds() for n in nodes]
            pg_before = pg_cpu.seconds() if pg_cpu else 0.0
            own_before, machine_before = _own_seconds(), _machine_busy_seconds()
            orders_before, commits_before = len(latencies), len(notices.lasts)
            locks = LockWaits()
            await locks.start(_dsn(url))
            started = time.perf_counter()
            await asyncio.sleep(sizes.seconds)
            lock_waits = await locks.stop()
            counter_after, streamed_after = await _fill_counter(db), stream.total
            commits = len(notices.lasts) - commits_before
            elapsed = time.perf_counter() - started
            cpu_after = [n.cpu_seconds() for n in nodes]
            pg_after = pg_cpu.seconds() if pg_cpu else 0.0
            own_after, machine_after = _own_seconds(), _machine_busy_seconds()
            stream.recording = False
            orders = len(latencies) - orders_before
            window_latencies = latencies[orders_before:]
            measuring = False
            async with asyncio.timeout(120):
                await asyncio.gather(*workers)
        finally:
            measuring = False
            for task in workers:
                task.cancel()
        owners_after = (
            await _wait_spread(db, group_ids, [n.name for n in nodes], timeout_s=5)
            if cluster
            else owners
        )
        final = await _fill_counter(db)
        streamed_all = await stream.wait_sequence(final, timeout_s=30)
        stored, largest = await db.fetchrow("SELECT count(*), max(sequence) FROM fills")
    finally:
        await notices.stop()
        if stream is not None:
            await stream.stop()
        await _stop_all(nodes)

    durable = counter_after - counter_before
    streamed = streamed_after - streamed_before
    gateways = [a - b for a, b in zip(cpu_after, cpu_before, strict=True)]
    pg = pg_after - pg_before
    own = own_after - own_before
    machine = machine_after - machine_before
    per_fill = 1e6 / durable if durable else 0.0
    row: dict[str, Any] = {
        "mode": mode,
        "nodes": count,
        "groups_per_node": dict(sorted(Counter(owners.values()).items())),
        "start_s": [round(s, 2) for s in start_s],
        "seconds": round(elapsed, 2),
        "fills_durable": durable,
        "fills_streamed": streamed,
        "durable_fills_per_s": round(durable / elapsed),
        "streamed_fills_per_s": round(streamed / elapsed),
        "orders": orders,
        "order_latency": summarize_ms(window_latencies),
        "incomplete_orders": incomplete,
        "cpu": {
            "gateways_s": round(sum(gateways), 2),
            "per_gateway_s": [round(c, 2) for c in gateways],
            "postgres_s": round(pg, 2) if pg_cpu else None,
            "bench_client_s": round(own, 2),
            "machine_busy_s": round(machine, 2),
            "gateway_cores": round(sum(gateways) / elapsed, 2),
            "machine_busy_cores": round(machine / elapsed, 2),
            "gateway_us_per_fill": round(sum(gateways) * per_fill, 1),
            "postgres_us_per_fill": round(pg * per_fill, 1) if pg_cpu else None,
            "bench_client_us_per_fill": round(own * per_fill, 1),
            "ours_us_per_fill": round((sum(gateways) + pg + own) * per_fill, 1),
            "machine_us_per_fill": round(machine * per_fill, 1),
        },
        "idle_gateway_cpu_ms_per_s": round(idle_cpu * 1000 / idle_wall, 1),
        "lock_waits": lock_waits,
        "owners_moved_during_load": owners_after != owners,
        "streamed_every_fill": streamed_all and stream.gaps == 0 and stream.repeats == 0,
        "stream_gaps": stream.gaps,
        "stream_repeats": stream.repeats,
        "database_gap_free": int(stored) == int(largest or 0) == final,
        "redirects": router.redirects,
        "registered_addresses_unknown": sorted(router.unknown_addresses),
    }
    if cluster:
        # Each commit of fills notifies once: commits and their size.
        row["fill_commits_per_s"] = round(commits / elapsed, 1)
        row["fills_per_commit"] = round(durable / commits, 1) if commits else 0.0
    if cluster and count > 1:
        # Notification -> received on node-1, by where the fill was executed.
        sequences, lags = _lags(stream, notices)
        origin = dict(zip(stream.sequences, stream.accounts, strict=True))
        same = [
            lag
            for seq, lag in zip(sequences, lags, strict=True)
            if owners[group_of[origin[seq]]] == nodes[0].name
        ]
        other = [
            lag
            for seq, lag in zip(sequences, lags, strict=True)
            if owners[group_of[origin[seq]]] != nodes[0].name
        ]
        row["lag_under_load"] = {
            "same_node": summarize_ms(same),
            "other_node": summarize_ms(other),
            "notices_out_of_order": notices.out_of_order,
        }
    return row


# -- 2. takeover -------------------------------------------------------------------------------


async def _poll_takeover(
    db: asyncpg.Connection, group_id: str, victim: str, live: Collection[str], timeout_s: float
) -> tuple[float, str, int, int] | None:
    """Polls the group's lease until it names another live node: when it was seen
    (perf_counter), the new owner, its epoch and how many polls it took."""
    polls = 0
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        polls += 1
        row = await db.fetchrow(
            "SELECT node_id, epoch FROM group_leases WHERE group_id = $1 AND released_at IS NULL",
            group_id,
        )
        if row is not None and row["node_id"] != victim and row["node_id"] in live:
            return time.perf_counter(), row["node_id"], int(row["epoch"]), polls
        await asyncio.sleep(LEASE_POLL_S)
    return None


async def _takeover(
    url: str,
    db: asyncpg.Connection,
    root: Path,
    groups: dict[str, list[str]],
    sizes: ClusterSizes,
    kills: int,
) -> dict[str, Any]:
    nodes = {
        f"node-{i + 1}": Node(root / "takeover", url, f"node-{i + 1}",
                              latency_ms=sizes.kill_latency_ms, lease_s=LEASE_S, renew_s=RENEW_S)
        for i in range(sizes.kill_nodes)
    }  # fmt: skip
    names = list(nodes)
    group_ids = list(groups)
    latency_s = sizes.kill_latency_ms / 1000
    streams: dict[str, FillStream] = {}
    ended: list[FillStream] = []  # the streams of the processes killed
    rows: list[dict[str, Any]] = []
    router = Router(db, nodes.values())
    try:
        await _start_all(list(nodes.values()))
        for name, node in nodes.items():
            streams[name] = FillStream(node)
            await streams[name].start()
        for number in range(kills):
            respread_started = time.perf_counter()
            await _wait_spread(db, group_ids, names)
            respread_s = time.perf_counter() - respread_started
            await router.refresh()
            group_id = group_ids[number % len(group_ids)]
            # The owner the database names takes it (a refusal would send it on to the owner).
            master, victim = await router.submit(group_id, len(groups[group_id]))
            master_id = master.master_order_id
            # The children are at the victim's broker, waiting out its latency.
            await asyncio.sleep(latency_s / 3)
            survivors = [n for n in names if n != victim.name]
            watcher = streams[survivors[0]]
            fills_before = len(watcher.arrivals.get(master_id, []))
            killed_at = await victim.kill()
            ended.append(streams.pop(victim.name))
            with contextlib.suppress(Exception):
                await ended[-1].stop()
            taken = await _poll_takeover(db, group_id, victim.name, survivors, LEASE_S + 30)
            row: dict[str, Any] = {"victim": victim.name, "respread_s": round(respread_s, 2)}
            if taken is None:
                row["taken_over"] = False
            else:
                taken_at, new_owner, epoch, polls = taken
                row.update(
                    taken_over=True,
                    new_owner=new_owner,
                    epoch=epoch,
                    kill_to_lease_ms=round((taken_at - killed_at) * 1000, 1),
                    lease_polls=polls,
                )
                # A new order at once, to the new owner.
                router.owner[group_id] = nodes[new_owner].address
                refused_before = sum(router.refusals.values())
                fresh, _ = await router.submit(group_id, len(groups[group_id]), retry_refused=True)
                row["kill_to_new_order_ack_ms"] = round((time.perf_counter() - killed_at) * 1000, 1)
                row["new_order_refusals"] = sum(router.refusals.values()) - refused_before
                last_resumed = await watcher.wait_for(master_id, master.child_count, 30)
                arrivals = [t for t in watcher.arrivals.get(master_id, []) if t > killed_at]
                row.update(
                    fills_before_kill=fills_before,
                    resumed_fills=len(arrivals),
                    resumed_complete=last_resumed is not None,
                )
                if arrivals:
                    row["kill_to_first_resumed_fill_ms"] = round(
                        (arrivals[0] - killed_at) * 1000, 1
                    )
                    row["kill_to_last_resumed_fill_ms"] = round(
                        (arrivals[-1] - killed_at) * 1000, 1
                    )
                fresh_last = await watcher.wait_for(fresh.master_order_id, fresh.child_count, 30)
                row["new_order_children"] = fresh.child_count
                row["new_order_fills"] = len(watcher.arrivals.get(fresh.master_order_id, []))
                row["new_order_complete"] = fresh_last is not None
            row["restart_s"] = round(await victim.start(), 2)
            streams[victim.name] = FillStream(victim)
            await streams[victim.name].start()
            rows.append(row)
        await _wait_spread(db, group_ids, names)
        final = await _fill_counter(db)
        stored, largest = await db.fetchrow("SELECT count(*), max(sequence) FROM fills")
        repeated = await db.fetchval(
            "SELECT count(*) FROM (SELECT child_order_id FROM fills GROUP BY child_order_id "
            "HAVING count(*) > 1) AS twice"
        )
    finally:
        for stream in streams.values():
            with contextlib.suppress(Exception):
                await stream.stop()
        await _stop_all(list(nodes.values()))
    taken_rows = [r for r in rows if r.get("taken_over")]

    def figure(key: str, less: float = 0.0) -> dict[str, float]:
        return summarize_ms([r[key] - less for r in taken_rows if key in r])

    return {
        "nodes": sizes.kill_nodes,
        "lease_seconds": LEASE_S,
        "renew_interval_seconds": RENEW_S,
        "latency_ms": sizes.kill_latency_ms,
        "kills": len(rows),
        "taken_over": len(taken_rows),
        "kill_to_lease": figure("kill_to_lease_ms"),
        "kill_to_lease_beyond_lease": figure("kill_to_lease_ms", LEASE_S * 1000),
        "kill_to_first_resumed_fill": figure("kill_to_first_resumed_fill_ms"),
        "kill_to_first_resumed_fill_less_latency": figure(
            "kill_to_first_resumed_fill_ms", sizes.kill_latency_ms
        ),
        "kill_to_last_resumed_fill": figure("kill_to_last_resumed_fill_ms"),
        "kill_to_new_order_ack": figure("kill_to_new_order_ack_ms"),
        "resumed_complete": sum(bool(r.get("resumed_complete")) for r in taken_rows),
        "new_orders_complete": sum(bool(r.get("new_order_complete")) for r in taken_rows),
        "fills_before_kill": sum(r.get("fills_before_kill", 0) for r in taken_rows),
        "restart_s": statistics.median(r["restart_s"] for r in rows) if rows else 0.0,
        # Each stream over its life (those on killed processes until the kill): no fill
        # skipped or repeated, the watchers' through every takeover.
        "live_streams_gap_free": all(
            s.gaps == 0 and s.repeats == 0 for s in [*streams.values(), *ended]
        ),
        "database_gap_free": int(stored) == int(largest or 0) == final,
        "children_filled_twice": int(repeated),
        "new_order_refusals": dict(router.refusals),
        "new_orders_short_of_children": sum(
            r.get("new_order_children", 0) < len(next(iter(groups.values()))) for r in taken_rows
        ),
        "rows": rows,
    }


# -- 3. notification lag ------------------------------------------------------------------------


async def _lag(
    url: str, db: asyncpg.Connection, root: Path, groups: dict[str, list[str]], sizes: ClusterSizes
) -> dict[str, Any]:
    nodes = [
        Node(root / "lag", url, f"node-{i + 1}", latency_ms=0, lease_s=LEASE_S, renew_s=RENEW_S)
        for i in range(2)
    ]
    by_name = {n.name: n for n in nodes}
    group_of = {a: g for g, members in groups.items() for a in members}
    streams: dict[str, FillStream] = {}
    notices = CommitNotices()
    acks: dict[str, list[float]] = {"same_first": [], "other_first": [], "same_last": [],
                                    "other_last": []}  # fmt: skip
    try:
        await _start_all(nodes)
        owners = await _wait_spread(db, list(groups), list(by_name))
        router = Router(db, nodes)
        await router.refresh()
        for node in nodes:
            streams[node.name] = FillStream(node)
            await streams[node.name].start()
        await notices.start(_dsn(url))
        # A group of each node, alternately.
        chosen = [next(g for g in groups if owners[g] == n.name) for n in nodes]
        for group_id in chosen:  # warm-up
            master, _ = await router.submit(group_id, len(groups[group_id]))
            for stream in streams.values():
                await stream.wait_for(master.master_order_id, master.child_count, 30)
        marks = {name: len(s.sequences) for name, s in streams.items()}
        for stream in streams.values():
            stream.recording = True
        for number in range(sizes.lag_orders):
            group_id = chosen[number % len(chosen)]
            master, node = await router.submit(group_id, len(groups[group_id]))
            acknowledged = time.perf_counter()
            for name, stream in streams.items():
                kind = "same" if name == node.name else "other"
                last = await stream.wait_for(master.master_order_id, master.child_count, 30)
                arrived = stream.arrivals.get(master.master_order_id, [])
                if last is not None and arrived:
                    acks[f"{kind}_first"].append((arrived[0] - acknowledged) * 1000)
                    acks[f"{kind}_last"].append((last - acknowledged) * 1000)
            await asyncio.sleep(sizes.lag_pause_s)
        for stream in streams.values():
            stream.recording = False
    finally:
        await notices.stop()
        for stream in streams.values():
            with contextlib.suppress(Exception):
                await stream.stop()
        await _stop_all(nodes)

    same: list[float] = []
    other: list[float] = []
    execution: list[float] = []
    wall_offset = time.time() - time.perf_counter()
    for name, stream in streams.items():
        start = marks[name]
        sequences, lags = _lags(stream, notices, start)
        origin = dict(zip(stream.sequences[start:], stream.accounts[start:], strict=True))
        for sequence, lag in zip(sequences, lags, strict=True):
            (same if owners[group_of[origin[sequence]]] == name else other).append(lag)
        if name == nodes[0].name:
            for sequence, executed in zip(
                stream.sequences[start:], stream.executed_at[start:], strict=True
            ):
                seen = notices.of(sequence)
                if seen is not None:
                    execution.append((seen + wall_offset - executed) * 1000)
    return {
        "orders": sizes.lag_orders,
        "accounts": sizes.accounts,
        "pause_s": sizes.lag_pause_s,
        "notice_to_same_node_subscriber": summarize_ms(same),
        "notice_to_other_node_subscriber": summarize_ms(other),
        "execution_to_notice": summarize_ms(execution),
        "ack_to_first_fill_same": summarize_ms(acks["same_first"]),
        "ack_to_first_fill_other": summarize_ms(acks["other_first"]),
        "ack_to_last_fill_same": summarize_ms(acks["same_last"]),
        "ack_to_last_fill_other": summarize_ms(acks["other_last"]),
        "notices": len(notices.lasts),
        "notices_out_of_order": notices.out_of_order,
        "streams_gap_free": all(s.gaps == 0 and s.repeats == 0 for s in streams.values()),
    }


# -- the scenario -------------------------------------------------------------------------------


async def run(
    context: RunContext, *, seconds: float | None = None, kills: int | None = None
) -> dict[str, Any]:
    sizes = SMOKE_SIZES if context.sizes.name == "smoke" else FULL_SIZES
    if seconds is not None:
        sizes = dataclasses.replace(sizes, seconds=seconds)
    if kills is not None:
        sizes = dataclasses.replace(sizes, kills=kills)
    url = await context.postgres_url()
    if url is None:
        return {
            "skipped": context.postgres_status,
            "summary": f"skipped: cluster mode needs PostgreSQL ({context.postgres_status})",
        }
    groups = await _populate(url, sizes.groups, sizes.accounts)
    # The platform's floor in this run: commits of fill-shaped rows on the same server (in a
    # database of their own, when the server gives one).
    floor_url = await context.postgres_url()
    commit_floor = (
        await floor._commits(floor_url, [1, 100], 7) if floor_url and floor_url != url else None
    )
    db = await asyncpg.connect(_dsn(url))
    try:
        pg_cpu = await PostgresCpu.of(db)
        with tempfile.TemporaryDirectory(prefix="mam-bench-cluster-") as name:
            root = Path(name)
            # One process of the default mode first, on the same database and load.
            throughput = [await _throughput(url, db, root, groups, sizes, 1, pg_cpu, cluster=False)]
            for count in sizes.nodes:
                throughput.append(await _throughput(url, db, root, groups, sizes, count, pg_cpu))
            takeover = await _takeover(url, db, root, groups, sizes, sizes.kills)
            lag = await _lag(url, db, root, groups, sizes)
    finally:
        await db.close()
    base = next(r for r in throughput if r["mode"] == "cluster")["durable_fills_per_s"] or 1
    for row in throughput:
        row["fills_per_s_vs_one_node"] = round(row["durable_fills_per_s"] / base, 2)
    result: dict[str, Any] = {
        "groups": sizes.groups,
        "accounts_per_group": sizes.accounts,
        "orders_in_flight_per_group": sizes.window,
        "lease_seconds": LEASE_S,
        "renew_interval_seconds": RENEW_S,
        "postgres_cpu_measured": pg_cpu is not None,
        "postgres_commit_floor": commit_floor,
        "throughput": throughput,
        "takeover": takeover,
        "lag": lag,
    }
    result["summary"] = _summary(result)
    return result


def _summary(result: dict[str, Any]) -> str:
    parts = [
        (
            f"{row['nodes']} node{'s' if row['nodes'] > 1 else ''}"
            if row["mode"] == "cluster"
            else "default mode"
        )
        + f" {row['durable_fills_per_s']:,} fills/s ({row['cpu']['gateway_us_per_fill']} us "
        "gateway CPU/fill)"
        for row in result["throughput"]
    ]
    t, lag = result["takeover"], result["lag"]
    parts.append(
        f"takeover p50 {t['kill_to_lease']['median_ms']:,.0f} ms p99 "
        f"{t['kill_to_lease']['p99_ms']:,.0f} ms over {t['kills']} kills (lease "
        f"{t['lease_seconds']:g} s)"
    )
    parts.append(
        f"NOTIFY -> subscriber p50 same node {lag['notice_to_same_node_subscriber']['median_ms']} "
        f"ms, other {lag['notice_to_other_node_subscriber']['median_ms']} ms"
    )
    return "; ".join(parts)
