"""Remote terminal workers against a real gateway: a server on a free port in this process and
workers in this process too, each on its own simulated broker (gateway/worker, sim backend).

Proven through the real stream: the hello and its token, every Terminal call round trip, the
replacement and refusal rules, a drop failing the call in flight, a restarted worker settling an
interrupted child by its tag (never sending it twice), and a silent worker being dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway._proto.mam.v1 import (
    account_pb2,
    account_service_pb2,
    account_service_pb2_grpc,
    common_pb2,
    order_pb2,
    terminal_service_pb2,
    terminal_service_pb2_grpc,
    trading_service_pb2,
    trading_service_pb2_grpc,
    worker_service_pb2,
    worker_service_pb2_grpc,
)
from gateway.api.server import RunningGateway, start_gateway
from gateway.config import TlsConfig, WorkersConfig, WorkerToken, load_config
from gateway.domain.accounts import Platform
from gateway.domain.orders import OrderType, Side
from gateway.terminals.protocol import (
    OrderRequest,
    OrderResult,
    SymbolNotFound,
    Terminal,
    TerminalError,
    TradeAction,
)
from gateway.terminals.remote import BrokerLogin, RemoteTerminal, wire
from gateway.terminals.remote.commands import SendOrder
from gateway.terminals.sim import SimTerminal
from gateway.terminals.sim.faults import Fault
from gateway.worker.backends import SimBackend
from gateway.worker.client import FatalWorkerError, TerminalWorker
from gateway.worker.config import TerminalEntry, WorkerConfig
from tests.integration.helpers import create_group, market_order
from tests.integration.test_tls import certificates  # noqa: F401  (a fixture)
from tests.support import DEMO_CONFIG, error_details, make_config

TOKEN = "integration-worker-token-0001"
OTHER_TOKEN = "integration-worker-token-0009"
SERVER = "Broker-Live"
FIRST_LOGIN = 91_001
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def _start(
    tmp_path: Path, *, heartbeat_s: float = 5.0, workers: WorkersConfig | None = None
) -> RunningGateway:
    config = make_config(tmp_path)
    workers = workers or WorkersConfig(
        enabled=True, tokens=(WorkerToken(TOKEN),), heartbeat_seconds=heartbeat_s
    )
    return await start_gateway(dataclasses.replace(config, workers=workers))


def _workers_of(tokens_env: str, **environ: str) -> WorkersConfig:
    """The [workers] section read as the gateway reads it, with these token entries."""
    return load_config(
        DEMO_CONFIG,
        environ={"MAM__WORKERS__ENABLED": "true", "MAM_WORKER_TOKENS": tokens_env, **environ},
    ).workers


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    running = await _start(tmp_path)
    try:
        yield running
    finally:
        await running.stop(0.5)


@pytest.fixture
async def channel(gateway: RunningGateway) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(gateway.address) as opened:
        yield opened


class Broker:
    """One worker host's simulated broker and its terminals (they outlive worker restarts, as
    a real broker's books and a terminal process do)."""

    def __init__(self, logins: list[int]) -> None:
        config = load_config(DEMO_CONFIG, environ={"MAM__SIMULATOR__LATENCY_MS": "0"})
        self.backend = SimBackend(config)
        self.entries = tuple(
            TerminalEntry(BrokerLogin(login, SERVER), Platform.MT5, "sim", {"balance": "10000"})
            for login in logins
        )
        self.terminals: dict[BrokerLogin, Terminal] = {
            entry.login: self.backend.open(entry) for entry in self.entries
        }

    def sim(self, login: int) -> SimTerminal:
        terminal = self.terminals[BrokerLogin(login, SERVER)]
        if isinstance(terminal, Observed):
            terminal = terminal.inner
        assert isinstance(terminal, SimTerminal)
        return terminal

    def observe(self, login: int) -> Observed:
        """The login's terminal, announcing each send as it reaches the broker."""
        observed = Observed(self.sim(login))
        self.terminals[BrokerLogin(login, SERVER)] = observed
        return observed

    def deals_by_tag(self, login: int, tag: str) -> list[Decimal]:
        return [d.volume for d in self.backend.broker.find_by_tag(login, tag).deals]


class Observed:
    """A simulated terminal that sets `sending` when a send reaches it. With no latency the
    broker executes before anything else runs, so a HANG_AFTER send has executed by then."""

    def __init__(self, inner: SimTerminal) -> None:
        self.inner = inner
        self.sending = asyncio.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def send(self, request: OrderRequest) -> OrderResult:
        self.sending.set()
        return await self.inner.send(request)


class Worker:
    """A worker process, in this process: started, killed (nothing finishes, as with SIGKILL)."""

    def __init__(
        self,
        gateway: RunningGateway,
        broker: Broker,
        *,
        worker_id: str = "win-1",
        token: str = TOKEN,
        batches: bool = True,
        prices_at_market: bool = True,
    ) -> None:
        config = WorkerConfig(
            worker_id=worker_id,
            gateway=gateway.address,
            token=token,
            terminals=broker.entries,
            reconnect_min_seconds=0.05,
            reconnect_max_seconds=0.2,
        )
        self.connected = asyncio.Event()
        self.worker = TerminalWorker(
            config,
            broker.terminals,
            on_connected=self.connected.set,
            batches=batches,
            prices_at_market=prices_at_market,
        )
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> Worker:
        self.task = asyncio.create_task(self.worker.run())
        waiting = asyncio.create_task(self.connected.wait())
        await asyncio.wait({self.task, waiting}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if self.task.done():
            self.task.result()
        assert self.connected.is_set(), "the worker did not connect"
        return self

    async def refused(self) -> FatalWorkerError:
        """Runs until the gateway refuses the worker for good."""
        with pytest.raises(FatalWorkerError) as refused:
            async with asyncio.timeout(10):
                await self.worker.run()
        return refused.value

    async def kill(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.worker.close(grace_s=0)


@pytest.fixture
async def workers() -> AsyncIterator[list[Worker]]:
    """Workers a test starts; all killed at its end, before the gateway stops."""
    started: list[Worker] = []
    yield started
    for worker in started:
        await worker.kill()


async def _accounts(channel: grpc.aio.Channel, logins: list[int]) -> list[account_pb2.Account]:
    stub = account_service_pb2_grpc.AccountServiceStub(channel)
    created = []
    for login in logins:
        response = await stub.CreateAccount(
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
        created.append(response.account)
    return created


def _remote(gateway: RunningGateway, account_id: str) -> RemoteTerminal:
    terminal = gateway.registry.get(account_id)
    assert isinstance(terminal, RemoteTerminal)
    return terminal


async def _health(channel: grpc.aio.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service))
    except grpc.aio.AioRpcError as error:
        assert error.code() is grpc.StatusCode.NOT_FOUND
        return health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    return response.status


async def _health_becomes(channel: grpc.aio.Channel, service: str, status: int) -> None:
    """Waits for the health entry to have the status (health is updated asynchronously)."""
    async with asyncio.timeout(10):
        while True:
            if await _health(channel, service) == status:
                return
            await asyncio.sleep(0.01)


def _hello(worker_id: str, token: str, logins: list[int]) -> worker_service_pb2.ConnectRequest:
    return worker_service_pb2.ConnectRequest(
        hello=worker_service_pb2.WorkerHello(
            worker_id=worker_id,
            token=token,
            terminals=[
                worker_service_pb2.HostedTerminal(
                    login=login, server=SERVER, platform=common_pb2.PLATFORM_MT5, backend="raw"
                )
                for login in logins
            ],
        )
    )


async def _hello_then_silence(worker_id: str) -> AsyncIterator[worker_service_pb2.ConnectRequest]:
    yield _hello(worker_id, TOKEN, [FIRST_LOGIN])
    await asyncio.Event().wait()  # the stream stays open, saying nothing


async def test_a_worker_says_hello_and_its_accounts_become_reachable(
    gateway: RunningGateway, channel: grpc.aio.Channel, workers: list[Worker]
) -> None:
    logins = [FIRST_LOGIN, FIRST_LOGIN + 1]
    workers.append(await Worker(gateway, Broker(logins)).start())
    accounts = await _accounts(channel, logins)
    assert all(a.snapshot.equity == "10000.00" for a in accounts)  # read through the worker

    listed = await terminal_service_pb2_grpc.TerminalServiceStub(channel).ListTerminals(
        terminal_service_pb2.ListTerminalsRequest(page_size=1)
    )
    assert len(listed.terminals) == 1 and listed.next_page_token
    rest = await terminal_service_pb2_grpc.TerminalServiceStub(channel).ListTerminals(
        terminal_service_pb2.ListTerminalsRequest(page_token=listed.next_page_token)
    )
    rows = [*listed.terminals, *rest.terminals]
    assert not rest.next_page_token
    assert [(r.account_id, r.login, r.server) for r in rows] == sorted(
        (a.account_id, a.login, SERVER) for a in accounts
    )
    assert all(r.backend == "sim" and r.worker_id == "win-1" and r.connected for r in rows)
    assert all(r.HasField("last_heartbeat_time") for r in rows)
    await _health_becomes(channel, "worker/win-1", health_pb2.HealthCheckResponse.SERVING)
    await _health_becomes(channel, "remote-terminals", health_pb2.HealthCheckResponse.SERVING)


async def test_a_bad_token_is_unauthenticated_and_the_worker_gives_up(
    gateway: RunningGateway, channel: grpc.aio.Channel
) -> None:
    call = worker_service_pb2_grpc.WorkerServiceStub(channel).Connect(
        iter([_hello("win-1", "not-the-token-but-long-enough", [FIRST_LOGIN])])
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call.read()
    details = error_details(refused.value)
    assert (details.code, details.reason) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")

    worker = Worker(gateway, Broker([FIRST_LOGIN]), token="not-the-token-but-long-enough")
    assert "UNAUTHENTICATED" in str(await worker.refused())
    assert await _health(channel, "worker/win-1") == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


async def _refusal(channel: grpc.aio.Channel, worker_id: str, token: str, logins: list[int]) -> Any:
    """The error details of a Connect the gateway refuses."""
    call = worker_service_pb2_grpc.WorkerServiceStub(channel).Connect(
        iter([_hello(worker_id, token, logins)])
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call.read()
    return error_details(refused.value)


# -- issue 28: who may connect as which worker, hosting which logins --------------------------


async def test_a_token_bound_to_logins_may_not_host_another_workers_login(
    tmp_path: Path,
) -> None:
    workers: list[Worker] = []
    gateway = await _start(
        tmp_path,
        workers=_workers_of(f"w-1:{TOKEN} {FIRST_LOGIN},w-9:{OTHER_TOKEN} 80009@{SERVER}"),
    )
    try:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            refused = await _refusal(channel, "w-1", TOKEN, [FIRST_LOGIN, 80009])
            assert (refused.code, refused.reason) == (
                grpc.StatusCode.PERMISSION_DENIED,
                "LOGIN_NOT_PERMITTED",
            )
            assert "80009" in refused.message
            assert gateway.workers.connected_session(BrokerLogin(80009, SERVER)) is None
            nine = Worker(gateway, Broker([80009]), worker_id="w-9", token=OTHER_TOKEN)
            workers.append(await nine.start())
            assert gateway.workers.view(BrokerLogin(80009, SERVER)).worker_id == "w-9"
            one = Worker(gateway, Broker([FIRST_LOGIN]), worker_id="w-1", token=TOKEN)
            workers.append(await one.start())
    finally:
        for worker in workers:
            await worker.kill()
        await gateway.stop(0.5)


@pytest.mark.parametrize(
    ("tokens", "code", "reason"),
    [
        # Another token may not displace a connected worker.
        (f"{TOKEN},{OTHER_TOKEN}", grpc.StatusCode.ALREADY_EXISTS, "WORKER_ID_IN_USE"),
        # A token not bound to a worker id may not use an id another token claims.
        (f"win-1:{TOKEN},{OTHER_TOKEN}", grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"),
    ],
    ids=["another-token-displacing", "unbound-token-taking-a-claimed-id"],
)
async def test_another_token_cannot_take_a_connected_workers_place(
    tmp_path: Path, tokens: str, code: grpc.StatusCode, reason: str
) -> None:
    workers: list[Worker] = []
    gateway = await _start(tmp_path, workers=_workers_of(tokens))
    try:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            first = await Worker(gateway, Broker([FIRST_LOGIN])).start()
            workers.append(first)
            refused = await _refusal(channel, "win-1", OTHER_TOKEN, [FIRST_LOGIN])
            assert (refused.code, refused.reason) == (code, reason)
            session = gateway.workers.connected_session(BrokerLogin(FIRST_LOGIN, SERVER))
            assert session is not None and session.drop_reason is None
            assert first.worker.sessions == 1
    finally:
        for worker in workers:
            await worker.kill()
        await gateway.stop(0.5)


async def test_a_token_removed_from_the_tokens_file_is_refused_and_its_worker_dropped_at_once(
    tmp_path: Path,
) -> None:
    tokens = tmp_path / "worker-tokens"
    tokens.write_text(f"win-1:{TOKEN}\nwin-2:{OTHER_TOKEN}\n")
    gateway = await _start(tmp_path, workers=_workers_of("", MAM__WORKERS__TOKENS_FILE=str(tokens)))
    first = Worker(gateway, Broker([FIRST_LOGIN]))
    try:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            await first.start()
            tokens.write_text(f"win-2:{OTHER_TOKEN}\n")
            refused = await _refusal(channel, "win-1", TOKEN, [FIRST_LOGIN])
            assert refused.code is grpc.StatusCode.UNAUTHENTICATED
            assert first.task is not None
            with pytest.raises(FatalWorkerError, match="was revoked"):
                async with asyncio.timeout(10):
                    await first.task
            assert gateway.workers.connected_session(BrokerLogin(FIRST_LOGIN, SERVER)) is None
    finally:
        await first.kill()
        await gateway.stop(0.5)


async def test_failed_worker_authentications_are_logged_and_throttled_per_address(
    gateway: RunningGateway, channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    reasons = [
        (await _refusal(channel, "win-1", "not-the-token-but-long-enough", [FIRST_LOGIN])).reason
        for _ in range(12)
    ]
    assert reasons == ["UNAUTHENTICATED"] * 10 + ["AUTHENTICATION_THROTTLED"] * 2
    # Throttled, even the right token is refused unchecked: guessing it gains nothing.
    throttled = await _refusal(channel, "win-1", TOKEN, [FIRST_LOGIN])
    assert (throttled.code, throttled.reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "AUTHENTICATION_THROTTLED",
    )
    assert throttled.retry_delay_s > 0
    assert caplog.text.count("worker authentication failed from ipv4:127.0.0.1") == 10
    assert "worker authentications from ipv4:127.0.0.1 throttled after 10 failures" in caplog.text
    assert "not-the-token" not in caplog.text


async def test_every_terminal_call_round_trips_through_the_worker(
    gateway: RunningGateway, channel: grpc.aio.Channel, workers: list[Worker]
) -> None:
    broker = Broker([FIRST_LOGIN])
    workers.append(await Worker(gateway, broker).start())
    (account,) = await _accounts(channel, [FIRST_LOGIN])
    remote, local = _remote(gateway, account.account_id), broker.sim(FIRST_LOGIN)
    since = datetime(2020, 1, 1, tzinfo=UTC)

    # The same account read twice: everything but the time of the reading.
    assert replace(await remote.account_info(), time=EPOCH) == replace(
        await local.account_info(), time=EPOCH
    )
    assert await remote.symbol_spec("XAUUSD") == await local.symbol_spec("XAUUSD")
    with pytest.raises(SymbolNotFound):
        await remote.symbol_spec("NOSUCH")
    quote = await remote.quote("EURUSD")
    assert quote.symbol == "EURUSD" and quote.bid < quote.ask

    deal = await remote.send(
        OrderRequest(TradeAction.DEAL, "EURUSD", Side.BUY, Decimal("0.05"), "mam:deal", 700_001)
    )
    assert (deal.retcode, deal.volume) == (10009, Decimal("0.05"))
    limit = await remote.send(
        OrderRequest(
            TradeAction.PENDING, "EURUSD", Side.BUY, Decimal("0.02"), "mam:limit", 700_001,
            price=quote.bid - Decimal("0.01000"), order_type=OrderType.LIMIT,
        )
    )  # fmt: skip
    assert limit.retcode == 10008, limit.text
    assert await remote.positions() == await local.positions() != []
    assert await remote.pending_orders() == await local.pending_orders() != []
    assert await remote.deals(since) == await local.deals(since) != []
    assert await remote.find_by_tag("mam:deal") == await local.find_by_tag("mam:deal")
    assert (await remote.health()).connected


async def test_a_master_order_over_remote_accounts_fills_each_child_once(
    gateway: RunningGateway, channel: grpc.aio.Channel, workers: list[Worker]
) -> None:
    logins = [FIRST_LOGIN + i for i in range(3)]
    broker = Broker(logins)
    workers.append(await Worker(gateway, broker).start())
    await _each_child_fills_once(gateway, channel, broker, logins)


async def _each_child_fills_once(
    gateway: RunningGateway, channel: grpc.aio.Channel, broker: Broker, logins: list[int]
) -> None:
    """An order of 0.10 lot per account over the logins: FILLED, one deal per child."""
    group = await create_group(
        account_service_pb2_grpc.AccountServiceStub(channel), await _accounts(channel, logins)
    )
    trading = trading_service_pb2_grpc.TradingServiceStub(channel)
    volume = f"{Decimal('0.10') * len(logins):.2f}"
    submitted = await trading.SubmitMasterOrder(market_order(group.group_id, volume))
    await gateway.engine.wait_idle()
    got = await trading.GetMasterOrder(
        trading_service_pb2.GetMasterOrderRequest(
            master_order_id=submitted.master_order.master_order_id
        )
    )
    assert got.master_order.state == order_pb2.MASTER_ORDER_STATE_FILLED
    logins_by_account = {a.account_id: a.login for a in await _listed_accounts(channel)}
    for child in got.master_order.children:
        deals = broker.deals_by_tag(logins_by_account[child.account_id], child.tag)
        assert deals == [Decimal("0.10")], child.tag


@pytest.mark.parametrize("batches", [True, False], ids=["batches", "one-a-message"])
async def test_a_fan_out_travels_in_batches_to_a_worker_that_reads_them(
    gateway: RunningGateway, channel: grpc.aio.Channel, workers: list[Worker], batches: bool
) -> None:
    """Commands waiting together go in one message, and results too; a worker without
    batches (as before them) gets and sends one a message, and trades the same."""
    logins = [FIRST_LOGIN + i for i in range(40)]
    broker = Broker(logins)
    worker = await Worker(gateway, broker, batches=batches).start()
    workers.append(worker)
    before = worker.worker.commands_received, worker.worker.command_messages
    await _each_child_fills_once(gateway, channel, broker, logins)
    stats = worker.worker
    commands = stats.commands_received - before[0]
    messages = stats.command_messages - before[1]
    # Each account: read as it is created, read and its symbol asked for the allocation, and
    # its deal sent (priced by the worker's terminal: no quote asked first).
    assert commands == 4 * len(logins)
    if batches:
        # 40 questions asked at once arrive in a message or a few, not in 40.
        assert messages <= commands // 3
        assert stats.result_messages < stats.results_written
    else:
        assert messages == commands
        assert stats.result_messages == stats.results_written


async def test_a_worker_sends_the_deals_of_one_batch_together(
    gateway: RunningGateway,
    channel: grpc.aio.Channel,
    workers: list[Worker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fairness on the worker as on the gateway: the commands of one message are each read
    and holding their terminal before any runs, so one order's deals leave back to back."""
    logins = [FIRST_LOGIN + i for i in range(20)]
    broker = Broker(logins)
    worker = await Worker(gateway, broker).start()
    workers.append(worker)
    read_sends = 0
    read_at_first_send: list[int] = []
    read = wire.command_from_proto

    def counted(message: worker_service_pb2.TerminalCommand) -> object:
        nonlocal read_sends
        command = read(message)
        read_sends += isinstance(command, SendOrder)
        return command

    original = SimTerminal.send

    async def observed(self: SimTerminal, request: OrderRequest) -> OrderResult:
        if not read_at_first_send:
            read_at_first_send.append(read_sends)
        return await original(self, request)

    monkeypatch.setattr(wire, "command_from_proto", counted)
    monkeypatch.setattr(SimTerminal, "send", observed)
    await _each_child_fills_once(gateway, channel, broker, logins)
    # The gateway's first requests leave together, so they reach the worker in one message
    # or very few: without the hold, the first deal would go before the second was read.
    assert read_at_first_send and read_at_first_send[0] > 1


async def test_a_worker_from_before_market_pricing_is_asked_its_quote_first(
    gateway: RunningGateway, channel: grpc.aio.Channel, workers: list[Worker]
) -> None:
    """A worker whose hello does not say its terminals price deals at market: the gateway asks
    for the quote and sends each deal priced by it, as before; each child fills once."""
    logins = [FIRST_LOGIN + i for i in range(5)]
    broker = Broker(logins)
    worker = await Worker(gateway, broker, prices_at_market=False).start()
    workers.append(worker)
    before = worker.worker.commands_received
    await _each_child_fills_once(gateway, channel, broker, logins)
    # Each account: read as it is created, read and its symbol asked for the allocation, a
    # quote, and its deal.
    assert worker.worker.commands_received - before == 5 * len(logins)


async def _listed_accounts(channel: grpc.aio.Channel) -> list[account_pb2.Account]:
    listed = await account_service_pb2_grpc.AccountServiceStub(channel).ListAccounts(
        account_service_pb2.ListAccountsRequest(page_size=1000)
    )
    return list(listed.accounts)


async def test_a_dropped_worker_fails_the_call_in_flight_as_outcome_unknown(
    gateway: RunningGateway, channel: grpc.aio.Channel, workers: list[Worker]
) -> None:
    broker = Broker([FIRST_LOGIN])
    observed = broker.observe(FIRST_LOGIN)
    worker = await Worker(gateway, broker).start()
    workers.append(worker)
    (account,) = await _accounts(channel, [FIRST_LOGIN])
    broker.sim(FIRST_LOGIN).faults.fail_next(Fault.HANG_AFTER)  # executes, then no answer
    request = OrderRequest(TradeAction.DEAL, "EURUSD", Side.BUY, Decimal("0.01"), "mam:x", 1)
    sending = asyncio.create_task(_remote(gateway, account.account_id).send(request))
    await asyncio.wait_for(observed.sending.wait(), 10)

    await worker.kill()
    with pytest.raises(TerminalError, match="outcome of the request is unknown"):
        await sending
    assert broker.deals_by_tag(FIRST_LOGIN, "mam:x") == [Decimal("0.01")]  # it did execute
    await _health_becomes(channel, "worker/win-1", health_pb2.HealthCheckResponse.NOT_SERVING)
    await _health_becomes(channel, "remote-terminals", health_pb2.HealthCheckResponse.NOT_SERVING)


async def test_an_account_no_worker_has_hosted_fails_at_once(
    gateway: RunningGateway, channel: grpc.aio.Channel
) -> None:
    (account,) = await _accounts(channel, [FIRST_LOGIN])
    with pytest.raises(TerminalError, match="no connected worker hosts"):
        await _remote(gateway, account.account_id).account_info()
    assert not (await _remote(gateway, account.account_id).health()).connected


async def test_a_restarted_worker_settles_the_interrupted_child_by_its_tag(
    gateway: RunningGateway, channel: grpc.aio.Channel, workers: list[Worker]
) -> None:
    logins = [FIRST_LOGIN + i for i in range(3)]
    broker = Broker(logins)
    observed = broker.observe(logins[1])
    first = await Worker(gateway, broker).start()
    workers.append(first)
    group = await create_group(
        account_service_pb2_grpc.AccountServiceStub(channel), await _accounts(channel, logins)
    )
    broker.sim(logins[1]).faults.fail_next(Fault.HANG_AFTER)  # executes, then no answer
    trading = trading_service_pb2_grpc.TradingServiceStub(channel)
    fills = trading.SubscribeFills(trading_service_pb2.SubscribeFillsRequest())
    submitted = await trading.SubmitMasterOrder(market_order(group.group_id, "0.30"))
    await asyncio.wait_for(observed.sending.wait(), 10)
    async with asyncio.timeout(10):  # the other two children are filled and stored
        seen = 0
        while seen < 2:
            seen += len((await fills.read()).batch.fills)
    fills.cancel()

    await first.kill()  # the answer of an executed child is lost with the worker
    workers.append(await Worker(gateway, broker).start())
    await gateway.engine.wait_idle()

    got = await trading.GetMasterOrder(
        trading_service_pb2.GetMasterOrderRequest(
            master_order_id=submitted.master_order.master_order_id
        )
    )
    assert got.master_order.state == order_pb2.MASTER_ORDER_STATE_FILLED
    logins_by_account = {a.account_id: a.login for a in await _listed_accounts(channel)}
    settled = [c for c in got.master_order.children if c.status_text.startswith("found by tag")]
    assert [logins_by_account[c.account_id] for c in settled] == [logins[1]]
    for child in got.master_order.children:
        deals = broker.deals_by_tag(logins_by_account[child.account_id], child.tag)
        assert deals == [Decimal("0.10")], child.tag  # executed once, never resent


async def test_a_second_connection_with_the_same_worker_id_replaces_the_first(
    gateway: RunningGateway, channel: grpc.aio.Channel, workers: list[Worker]
) -> None:
    broker = Broker([FIRST_LOGIN])
    first = await Worker(gateway, broker).start()
    workers.append(first)
    (account,) = await _accounts(channel, [FIRST_LOGIN])
    second = await Worker(gateway, broker).start()
    workers.append(second)

    assert first.task is not None
    with pytest.raises(FatalWorkerError, match="ABORTED"):
        async with asyncio.timeout(10):
            await first.task
    assert (await _remote(gateway, account.account_id).account_info()).login == FIRST_LOGIN
    assert second.worker.sessions == 1


async def test_a_login_another_worker_hosts_is_refused(
    gateway: RunningGateway, channel: grpc.aio.Channel, workers: list[Worker]
) -> None:
    workers.append(await Worker(gateway, Broker([FIRST_LOGIN])).start())
    call = worker_service_pb2_grpc.WorkerServiceStub(channel).Connect(
        iter([_hello("win-2", TOKEN, [FIRST_LOGIN + 7, FIRST_LOGIN])])
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call.read()
    details = error_details(refused.value)
    assert details.code is grpc.StatusCode.FAILED_PRECONDITION
    assert details.reason == "TERMINAL_HOSTED_ELSEWHERE"
    assert "win-1" in details.message


async def test_a_silent_worker_is_dropped(tmp_path: Path) -> None:
    gateway = await _start(tmp_path, heartbeat_s=0.2)
    try:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            call = worker_service_pb2_grpc.WorkerServiceStub(channel).Connect(
                _hello_then_silence("quiet")
            )
            assert (await call.read()).WhichOneof("message") == "welcome"
            with pytest.raises(grpc.aio.AioRpcError) as dropped:
                async with asyncio.timeout(10):
                    while True:  # the gateway's own heartbeats, then the end
                        message = await call.read()
                        assert message is not grpc.aio.EOF
                        assert message.WhichOneof("message") == "heartbeat"
            assert dropped.value.code() is grpc.StatusCode.UNAVAILABLE
            assert "no heartbeat" in (dropped.value.details() or "")
            await _health_becomes(
                channel, "worker/quiet", health_pb2.HealthCheckResponse.NOT_SERVING
            )
            call.cancel()
    finally:
        with contextlib.suppress(Exception):
            await gateway.stop(0.5)


async def test_a_stopping_gateway_tells_its_workers_once_no_dispatch_needs_them(
    tmp_path: Path,
) -> None:
    gateway = await _start(tmp_path)
    stopping: asyncio.Task[None] | None = None
    try:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            call = worker_service_pb2_grpc.WorkerServiceStub(channel).Connect(
                _hello_then_silence("win-1")
            )
            assert (await call.read()).WhichOneof("message") == "welcome"
            # A long grace: the stream ends because the engine is idle, not because it ran out.
            stopping = asyncio.create_task(gateway.stop(60))
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                async with asyncio.timeout(30):
                    while True:
                        assert await call.read() is not grpc.aio.EOF
            details = error_details(ended.value)
            assert (details.code, details.reason) == (
                grpc.StatusCode.UNAVAILABLE,
                "GATEWAY_STOPPING",
            )
    finally:
        if stopping is None:
            await gateway.stop(0.5)
        else:
            await stopping


async def test_a_worker_connects_over_mutual_tls(
    tmp_path: Path,
    certificates: Path,  # noqa: F811  (the fixture imported above)
) -> None:
    config = make_config(tmp_path)
    tls = TlsConfig(
        certificates / "server.pem", certificates / "server.key", certificates / "ca.pem"
    )
    config = dataclasses.replace(
        config,
        server=dataclasses.replace(config.server, tls=tls),
        workers=WorkersConfig(enabled=True, tokens=(WorkerToken(TOKEN, "win-tls"),)),
    )
    gateway = await start_gateway(config)
    broker = Broker([FIRST_LOGIN])
    worker_config = WorkerConfig(
        worker_id="win-tls",
        gateway=f"localhost:{gateway.port}",
        token=TOKEN,
        terminals=broker.entries,
        tls_ca_file=certificates / "ca.pem",
        tls_cert_file=certificates / "client.pem",
        tls_key_file=certificates / "client.key",
    )
    connected = asyncio.Event()
    worker = TerminalWorker(worker_config, broker.terminals, on_connected=connected.set)
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(connected.wait(), 10)
        terminal = RemoteTerminal("acc-tls", BrokerLogin(FIRST_LOGIN, SERVER), gateway.workers)
        assert (await terminal.account_info()).login == FIRST_LOGIN
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await gateway.stop(0.5)
