"""Mirroring: a deal at a group's source account -> every child of the group's copy filled and
received; and what watching a source costs the gateway.

The gateway runs as its own process (`python -m gateway`, SQLite, workers enabled), its group's
N members simulated inside it as in the e2e scenario (answering at once or after 50 ms). The
source is an MT5 account whose terminal is hosted by a worker run inside this process: the
worker's own client (gateway/worker/client.py TerminalWorker) and sim backend
(gateway/worker/backends.py, a simulated broker of its own, answering at once), connected to the
gateway over WorkerService.Connect as a `python -m gateway.worker` would be. So the gateway looks
at the source as at any remote terminal (two commands on the worker's stream per look), and the
benchmark holds the source's SimTerminal and trades on it directly, as a manager would by hand.

Per source deal (a hedging account, so each deal opens a position: POSITION_OPENED, copied as a
market master order of the deal's volume, 0.01 lot per member; sides alternate, so the netting
members stay flat; each after a seeded pause of 0 to one look interval, so that deals fall
anywhere in the look cycle): t0 right before the deal is sent; the end when the last fill of
the copy's master order (found on StreamSignals: the signal's master_order_ids) reaches a
SubscribeFills subscriber. Beside it, in the same gateway and interleaved with the deals, the
direct figure: SubmitMasterOrder of the same volume -> last fill received. The difference is
the wait for the next look (half the look interval on average) plus the look's store and the
act on the signal.
Each copy is also split at the signal's observe time and the master order's create time (the
gateway's clock, the same machine's): deal -> look, look -> copy accepted, accepted -> last fill.

Watching cost: a gateway with few members (and no account history snapshots, so none falls in a
window) watches no source, then one idle source, then that one and K more holding a few
positions and a pending order each (recorded OPEN_BEFORE_SOURCE at the first look; nothing
changes after): its CPU (/proc) over a window of each gives the CPU per source per second at
the configured look interval, and per look. The worker's side (this process, serving the looks'
commands) likewise. And in this process, the pure part of one look
(gateway/domain/source_book.py `observe` over 20 positions and 5 pending orders, nothing
changed, and the book compared).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc

from bench import client, population
from bench.common import RunContext, cpu_seconds, summarize_ms
from bench.gateway_process import GatewayProcess, sqlite_url
from bench.remote import _sim_config
from gateway._proto.mam.v1 import (
    account_pb2,
    account_service_pb2,
    account_service_pb2_grpc,
    common_pb2,
    order_pb2,
    signal_pb2,
    terminal_service_pb2,
    terminal_service_pb2_grpc,
    trading_service_pb2,
    trading_service_pb2_grpc,
)
from gateway.domain import retcodes
from gateway.domain.orders import OrderType, Side
from gateway.domain.source_book import SourceBook, observe
from gateway.terminals.protocol import (
    OrderRequest,
    PendingOrder,
    Position,
    Terminal,
    TradeAction,
)
from gateway.worker.backends import open_terminals
from gateway.worker.client import TerminalWorker
from gateway.worker.config import parse_worker_config

BASIC = order_pb2.MASTER_ORDER_VIEW_BASIC
TOKEN = "bench-source-token-0123456789abcdef"
WORKER_ID = "bench-source"
SERVER = "Broker-Source"
FIRST_LOGIN = 7_000_000
SOURCE_BALANCE = "100000000"
SYMBOL = "EURUSD"
SEED = 20261207
# Watching cost: what each source with positions holds while it is watched.
POSITIONS_EACH = 3
ORDERS_EACH = 1
# The pure part of a look: a book of this many positions and pending orders.
OBSERVE_POSITIONS = 20
OBSERVE_ORDERS = 5
_DONE = frozenset({retcodes.DONE, retcodes.PLACED})
_WAITING = signal_pb2.SIGNAL_STATE_WAITING


# -- the source's terminals: a worker run inside this process ---------------------------------


class SourceWorker:
    """Simulated MT5 terminals (the worker's sim backend, one broker of their own) served to the
    gateway by the worker's client, in this process's event loop."""

    def __init__(self, directory: Path, logins: range, gateway: str) -> None:
        terminals = [
            {
                "login": login,
                "server": SERVER,
                "platform": "MT5",
                "backend": "sim",
                "balance": SOURCE_BALANCE,
                "margin_mode": "HEDGING",
            }
            for login in logins
        ]
        self.config = parse_worker_config(
            {
                "worker_id": WORKER_ID,
                "gateway": gateway,
                "log_level": "WARNING",
                "reconnect_min_seconds": 0.1,
                "reconnect_max_seconds": 0.5,
                # The source's own deals answer at once: t0 -> position held is the send alone.
                "backends": {"sim": {"config": _sim_config(directory, 0).name}},
                "terminals": terminals,
            },
            {"MAM_WORKER_TOKEN": TOKEN},
            base_dir=directory,
        )
        self._backends, opened = open_terminals(self.config)
        self.terminals: dict[int, Terminal] = {login.login: t for login, t in opened.items()}
        self._connected = asyncio.Event()
        self.worker = TerminalWorker(self.config, opened, on_connected=self._connected.set)
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout_s: float = 30.0) -> None:
        self._task = asyncio.create_task(self.worker.run(), name="bench-source-worker")
        connected = asyncio.create_task(self._connected.wait())
        try:
            async with asyncio.timeout(timeout_s):
                done, _ = await asyncio.wait(
                    {self._task, connected}, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            connected.cancel()
        if self._task in done:
            self._task.result()  # raises why it ended
            raise RuntimeError("the source worker ended before connecting")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.worker.close(1.0)
        for terminal in self.terminals.values():
            with contextlib.suppress(Exception):
                await terminal.close()
        for backend in self._backends:
            backend.close()


def _deal(side: Side, volume: Decimal) -> OrderRequest:
    return OrderRequest(
        action=TradeAction.DEAL, symbol=SYMBOL, side=side, volume=volume, tag="", magic=0
    )


async def _send(terminal: Terminal, request: OrderRequest) -> int:
    """Sends at the source; the ticket of the position (a deal) or order (a pending order)."""
    result = await terminal.send(request)
    if result.retcode not in _DONE:
        raise RuntimeError(f"the source's {request.action.name}: {result.retcode} {result.text}")
    return result.position_ticket or result.order_ticket


async def _hold_a_few(terminal: Terminal) -> None:
    """POSITIONS_EACH positions of 0.01 and ORDERS_EACH limit orders far from the market."""
    for _ in range(POSITIONS_EACH):
        await _send(terminal, _deal(Side.BUY, Decimal("0.01")))
    quote = await terminal.quote(SYMBOL)
    for number in range(ORDERS_EACH):
        price = (quote.ask - Decimal("0.00500") - Decimal("0.00010") * number).quantize(
            Decimal("0.00001")
        )
        await _send(
            terminal,
            OrderRequest(
                action=TradeAction.PENDING, symbol=SYMBOL, side=Side.BUY,
                volume=Decimal("0.01"), tag="", magic=0, price=price,
                order_type=OrderType.LIMIT,
            ),
        )  # fmt: skip


# -- the gateway's side: accounts, sources, terminals ------------------------------------------


def _gateway(directory: Path, latency_ms: int, interval_s: float, **extra: str) -> GatewayProcess:
    return GatewayProcess(
        directory,
        sqlite_url(directory),
        latency_ms=latency_ms,
        environment={
            "MAM__WORKERS__ENABLED": "true",
            "MAM_WORKER_TOKENS": TOKEN,
            "MAM__SOURCES__LOOK_INTERVAL_SECONDS": str(interval_s),
            **extra,
        },
    )


async def _create_sources(channel: grpc.aio.Channel, logins: range) -> list[str]:
    stub = account_service_pb2_grpc.AccountServiceStub(channel)
    ids = []
    for login in logins:
        response = await stub.CreateAccount(
            account_service_pb2.CreateAccountRequest(
                account=account_pb2.Account(
                    name=f"source-{login}",
                    platform=common_pb2.PLATFORM_MT5,
                    login=login,
                    server=SERVER,
                    currency="USD",
                    margin_mode=common_pb2.MARGIN_MODE_HEDGING,
                    leverage=100,
                )
            )
        )
        ids.append(str(response.account.account_id))
    return ids


async def _wait_sources_connected(
    channel: grpc.aio.Channel, count: int, timeout_s: float = 60
) -> None:
    stub = terminal_service_pb2_grpc.TerminalServiceStub(channel)
    async with asyncio.timeout(timeout_s):
        while True:
            connected, token = 0, ""
            while True:
                page = await stub.ListTerminals(
                    terminal_service_pb2.ListTerminalsRequest(page_size=1000, page_token=token)
                )
                connected += sum(t.connected and t.worker_id == WORKER_ID for t in page.terminals)
                token = page.next_page_token
                if not token:
                    break
            if connected >= count:
                return
            await asyncio.sleep(0.1)


async def _set_source(channel: grpc.aio.Channel, group_id: str, account_id: str) -> None:
    await account_service_pb2_grpc.AccountServiceStub(channel).SetGroupSource(
        account_service_pb2.SetGroupSourceRequest(
            group_id=group_id, source=account_pb2.GroupSource(account_id=account_id)
        )
    )


async def _signal_count(trading: trading_service_pb2_grpc.TradingServiceStub) -> int:
    count, token = 0, ""
    while True:
        page = await trading.ListSignals(
            trading_service_pb2.ListSignalsRequest(page_size=1000, page_token=token)
        )
        count += len(page.signals)
        token = page.next_page_token
        if not token:
            return count


class SignalWatch:
    """One StreamSignals stream of a group: each signal's latest state, by event id."""

    def __init__(self, trading: trading_service_pb2_grpc.TradingServiceStub, group_id: str):
        self._call = trading.StreamSignals(
            trading_service_pb2.StreamSignalsRequest(group_id=group_id)
        )
        self.latest: dict[str, signal_pb2.Signal] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    async def start(self) -> None:
        """Returns once the stored signals are read (the stream's first heartbeat)."""
        while True:
            message = await self._call.read()
            assert message is not grpc.aio.EOF
            self._take(message)
            if message.HasField("heartbeat_time"):
                break
        self._task = asyncio.create_task(self._read())

    def _take(self, message: trading_service_pb2.StreamSignalsResponse) -> None:
        for signal in message.signals:
            self.latest[signal.event_id] = signal
        self._changed.set()

    async def _read(self) -> None:
        try:
            while (message := await self._call.read()) is not grpc.aio.EOF:
                self._take(message)
        except grpc.aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.CANCELLED:
                self.error = error
        finally:
            self._changed.set()

    async def settled(self, event_id: str, timeout_s: float = 60) -> signal_pb2.Signal:
        async with asyncio.timeout(timeout_s):
            while True:
                signal = self.latest.get(event_id)
                if signal is not None and signal.state != _WAITING:
                    return signal
                if self.error is not None:
                    raise self.error
                self._changed.clear()
                await self._changed.wait()

    async def stop(self) -> None:
        self._call.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# -- a source deal -> every child filled, beside a direct submission ---------------------------


@dataclass
class _Timings:
    mirrored: list[float]
    direct: list[float]
    deal: list[float]
    to_look: list[float]
    look_to_accept: list[float]
    accept_to_last_fill: list[float]


def _ms_between(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds() * 1000


async def _row(accounts: int, deals: int, latency_ms: int, interval_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mam-bench-mirror-") as name:
        directory = Path(name)
        people = await population.populate(sqlite_url(directory), accounts)
        gateway = _gateway(directory, latency_ms, interval_s)
        source: SourceWorker | None = None
        try:
            await gateway.start()
            source = SourceWorker(directory, range(FIRST_LOGIN, FIRST_LOGIN + 1), gateway.address)
            await source.start()
            async with gateway.channel() as channel:
                (source_id,) = await _create_sources(channel, range(FIRST_LOGIN, FIRST_LOGIN + 1))
                await _wait_sources_connected(channel, 1)
                await _set_source(channel, people.group_id, source_id)
                timings = await _deals(
                    channel,
                    source.terminals[FIRST_LOGIN],
                    people.group_id,
                    accounts,
                    deals,
                    interval_s,
                )
        finally:
            try:
                if source is not None:
                    await source.stop()
            finally:
                await gateway.stop()
    mirrored, direct = summarize_ms(timings.mirrored), summarize_ms(timings.direct)
    return {
        "accounts": accounts,
        "latency_ms": latency_ms,
        "look_interval_s": interval_s,
        "deals": deals,
        "mirrored": mirrored,
        "direct": direct,
        "difference_p50_ms": round(mirrored["median_ms"] - direct["median_ms"], 3),
        "source_deal": summarize_ms(timings.deal),
        "deal_to_look": summarize_ms(timings.to_look),
        "look_to_accept": summarize_ms(timings.look_to_accept),
        "accept_to_last_fill": summarize_ms(timings.accept_to_last_fill),
    }


async def _deals(
    channel: grpc.aio.Channel,
    terminal: Terminal,
    group_id: str,
    accounts: int,
    deals: int,
    interval_s: float,
) -> _Timings:
    """`deals` source deals and as many direct orders, interleaved, after one of each to warm
    up; sides alternate (deal BUY, direct BUY, deal SELL, direct SELL, ...). Before each deal a
    pause of 0 to one look interval (seeded): the deals fall anywhere in the look cycle, not in
    step with it (the gateway's look and the bench's orders would otherwise lock their phases)."""
    pauses = random.Random(SEED)
    trading = trading_service_pb2_grpc.TradingServiceStub(channel)
    volume = (Decimal("0.01") * accounts).quantize(Decimal("0.01"))
    counter = client.FillCounter(trading)
    signals = SignalWatch(trading, group_id)
    await counter.start()
    await signals.start()
    timings = _Timings([], [], [], [], [], [])
    try:
        for number in range(deals + 1):  # the first of each warms up
            sell = number % 2 == 1
            await asyncio.sleep(pauses.uniform(0, interval_s))
            # The source deal.
            t0_wall = datetime.now(UTC)
            t0 = time.perf_counter()
            ticket = await _send(terminal, _deal(Side.SELL if sell else Side.BUY, volume))
            sent = time.perf_counter()
            signal = await signals.settled(f"pos:{ticket}:open")
            if signal.state != signal_pb2.SIGNAL_STATE_COPIED or not signal.master_order_ids:
                state = signal_pb2.SignalState.Name(signal.state)
                raise RuntimeError(f"source deal {ticket}: signal {state}: {signal.detail}")
            master_id = signal.master_order_ids[0]
            last = await counter.wait_for(master_id, accounts, timeout_s=120)
            copy = await _basic(trading, master_id)
            if copy.child_count != accounts:
                raise RuntimeError(f"the copy has {copy.child_count} children for {accounts}")
            # The direct submission.
            start = time.perf_counter()
            master = await client.submit(trading, group_id, accounts, sell=sell, view=BASIC)
            if master.child_count != accounts:
                raise RuntimeError(f"{master.child_count} children for {accounts} accounts")
            direct_last = await counter.wait_for(master.master_order_id, accounts, timeout_s=120)
            if number == 0:
                continue
            looked = signal.observe_time.ToDatetime(UTC)
            accepted = copy.create_time.ToDatetime(UTC)
            last_wall = t0_wall + timedelta(seconds=last - t0)
            timings.mirrored.append((last - t0) * 1000)
            timings.direct.append((direct_last - start) * 1000)
            timings.deal.append((sent - t0) * 1000)
            timings.to_look.append(_ms_between(looked, t0_wall))
            timings.look_to_accept.append(_ms_between(accepted, looked))
            timings.accept_to_last_fill.append(_ms_between(last_wall, accepted))
    finally:
        await signals.stop()
        await counter.stop()
    return timings


async def _basic(
    trading: trading_service_pb2_grpc.TradingServiceStub, master_order_id: str
) -> order_pb2.MasterOrder:
    response = await trading.GetMasterOrder(
        trading_service_pb2.GetMasterOrderRequest(master_order_id=master_order_id, view=BASIC)
    )
    return response.master_order


# -- what watching costs -------------------------------------------------------------------------


@dataclass
class _Window:
    """One window: CPU ms per second of the gateway and of this process (the sources' worker,
    nothing else running), and looks per second (two worker commands each)."""

    gateway_ms_per_s: float
    worker_ms_per_s: float
    looks_per_s: float


async def _window(gateway_pid: int, worker: TerminalWorker, seconds: float) -> _Window:
    own = os.getpid()
    gateway, mine, commands = cpu_seconds(gateway_pid), cpu_seconds(own), worker.commands_received
    wall = time.perf_counter()
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - wall
    return _Window(
        (cpu_seconds(gateway_pid) - gateway) * 1000 / elapsed,
        (cpu_seconds(own) - mine) * 1000 / elapsed,
        (worker.commands_received - commands) / 2 / elapsed,
    )


async def _watching(interval_s: float, sources: int, seconds: float) -> dict[str, Any]:
    """The gateway's CPU watching no source, one idle source, then that one and `sources` more
    with POSITIONS_EACH positions and ORDERS_EACH pending orders each."""
    watched = sources + 1
    logins = range(FIRST_LOGIN, FIRST_LOGIN + watched)
    with tempfile.TemporaryDirectory(prefix="mam-bench-watch-") as name:
        directory = Path(name)
        # A group of one member per source: the groups' members are never traded here.
        people = await population.populate(sqlite_url(directory), watched, single_groups=watched)
        # No account history snapshot (every 60 s by default) falls in a window.
        gateway = _gateway(directory, 0, interval_s, MAM__ENGINE__HISTORY_INTERVAL_SECONDS="0")
        source: SourceWorker | None = None
        try:
            await gateway.start()
            source = SourceWorker(directory, logins, gateway.address)
            await source.start()
            async with gateway.channel() as channel:
                trading = trading_service_pb2_grpc.TradingServiceStub(channel)
                ids = await _create_sources(channel, logins)
                await _wait_sources_connected(channel, watched)
                for login in logins[1:]:
                    await _hold_a_few(source.terminals[login])
                settle = max(1.0, 3 * interval_s)
                await asyncio.sleep(settle)
                none = await _window(gateway.pid, source.worker, seconds)
                await _set_source(channel, people.single_group_ids[0], ids[0])
                await asyncio.sleep(settle)  # its first look stores its (empty) book
                one = await _window(gateway.pid, source.worker, seconds)
                for group_id, account_id in zip(people.single_group_ids[1:], ids[1:], strict=True):
                    await _set_source(channel, group_id, account_id)
                # Each first look records what the source holds (OPEN_BEFORE_SOURCE).
                expected = sources * (POSITIONS_EACH + ORDERS_EACH)
                deadline = time.monotonic() + 60
                while (recorded := await _signal_count(trading)) < expected:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{recorded} of {expected} signals after 60 s")
                    await asyncio.sleep(0.1)
                await asyncio.sleep(settle)
                many = await _window(gateway.pid, source.worker, seconds)
        finally:
            try:
                if source is not None:
                    await source.stop()
            finally:
                await gateway.stop()
    per_source = (many.gateway_ms_per_s - one.gateway_ms_per_s) / sources
    more_looks = many.looks_per_s - one.looks_per_s
    return {
        "look_interval_s": interval_s,
        "window_s": seconds,
        "sources": sources,
        "positions_each": POSITIONS_EACH,
        "orders_each": ORDERS_EACH,
        "gateway_cpu_ms_per_s": {
            "no_source": round(none.gateway_ms_per_s, 2),
            "one_idle_source": round(one.gateway_ms_per_s, 2),
            f"idle_and_{sources}_holding": round(many.gateway_ms_per_s, 2),
        },
        "looks_per_s": {
            "one_idle_source": round(one.looks_per_s, 2),
            f"idle_and_{sources}_holding": round(many.looks_per_s, 2),
        },
        "idle_source_cpu_ms_per_s": round(one.gateway_ms_per_s - none.gateway_ms_per_s, 3),
        "cpu_ms_per_source_per_s": round(per_source, 3),
        # The sources' extra CPU over their looks (counted at the worker).
        "cpu_ms_per_look": round(
            (many.gateway_ms_per_s - one.gateway_ms_per_s) / more_looks if more_looks else 0.0, 3
        ),
        "worker_cpu_ms_per_source_per_s": round(
            (many.worker_ms_per_s - one.worker_ms_per_s) / sources, 3
        ),
    }


def _observe_cost(repeats: int) -> dict[str, Any]:
    """The pure part of a look, in this process: observe() over OBSERVE_POSITIONS positions and
    OBSERVE_ORDERS pending orders, nothing changed, and the new book compared with the old."""
    now = datetime.now(UTC)
    positions = [
        Position(
            ticket=1000 + i, symbol=SYMBOL, side=Side.BUY if i % 2 else Side.SELL,
            volume=Decimal("0.10"), price_open=Decimal("1.08500"), magic=0, comment="",
            opened_at=now - timedelta(minutes=i), stop_loss=Decimal("1.07000"),
            take_profit=None,
        )
        for i in range(OBSERVE_POSITIONS)
    ]  # fmt: skip
    orders = [
        PendingOrder(
            ticket=2000 + i, symbol=SYMBOL, side=Side.BUY, volume=Decimal("0.10"),
            price=Decimal("1.08000") - Decimal("0.00010") * i, magic=0, comment="",
            placed_at=now - timedelta(minutes=i),
        )
        for i in range(OBSERVE_ORDERS)
    ]  # fmt: skip
    age = timedelta(seconds=60)
    book, _ = observe(SourceBook(), positions, orders, now=now, max_signal_age=age)
    opened = [*positions, Position(
        ticket=9999, symbol=SYMBOL, side=Side.BUY, volume=Decimal("0.10"),
        price_open=Decimal("1.08500"), magic=0, comment="", opened_at=now,
    )]  # fmt: skip

    def timed(seen: list[Position]) -> float:
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(repeats):
                new, _ = observe(book, seen, orders, now=now, max_signal_age=age)
                _ = new == book
            runs.append((time.perf_counter() - start) / repeats * 1e6)
        return round(statistics.median(runs), 1)

    return {
        "positions": OBSERVE_POSITIONS,
        "orders": OBSERVE_ORDERS,
        "unchanged_us": timed(positions),
        "one_opened_us": timed(opened),
    }


# -- the scenario ------------------------------------------------------------------------------


async def run(context: RunContext) -> dict[str, Any]:
    sizes = context.sizes
    rows = [
        await _row(sizes.mirroring_accounts, sizes.mirroring_deals, latency, interval)
        for interval in sizes.mirroring_intervals_s
        for latency in sizes.mirroring_latencies_ms
    ]
    watching = [
        await _watching(interval, sizes.mirroring_sources, sizes.mirroring_window_s)
        for interval in sizes.mirroring_intervals_s
    ]
    result: dict[str, Any] = {
        "accounts": sizes.mirroring_accounts,
        "source": (
            "an MT5 hedging account on a simulated terminal (answering at once) hosted by a "
            "worker (gateway.worker.client.TerminalWorker, sim backend) run inside the bench "
            "process, connected over WorkerService.Connect"
        ),
        "rows": rows,
        "watching": watching,
        "observe": _observe_cost(sizes.mirroring_observe_repeats),
    }
    result["summary"] = _summary(result)
    return result


def _summary(result: dict[str, Any]) -> str:
    parts = [
        f"{row['accounts']}@{row['latency_ms']}ms look {row['look_interval_s']} s: deal p50 "
        f"{row['mirrored']['median_ms']} ms p99 {row['mirrored']['p99_ms']} ms, direct p50 "
        f"{row['direct']['median_ms']} ms"
        for row in result["rows"]
    ]
    parts += [
        f"watching at {w['look_interval_s']} s: {w['cpu_ms_per_source_per_s']} CPU ms per source "
        "per s"
        for w in result["watching"]
    ]
    parts.append(f"observe {result['observe']['unchanged_us']} us")
    return "; ".join(parts)
