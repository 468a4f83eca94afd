"""Every Terminal backend the contract suite runs against, in one list.

Each backend is a name and a factory: given the account a test needs (FreshAccount) and a
scratch directory, it yields a connected Terminal logged in to a new account at a broker
quoting SYMBOLS, and closes it afterwards. A new backend is one more entry in BACKENDS.

Quotes stand still for the length of a test (one tick per hour, starting at the configured
mid), so prices a test reads are the prices the broker executes at.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import grpc
import pytest

import gateway.terminals.mt5.emulator as mt5_emulator
from gateway._proto.mam.v1.worker_service_pb2_grpc import add_WorkerServiceServicer_to_server
from gateway.api.worker_servicer import WorkerServicer
from gateway.config import WorkersConfig, WorkerToken
from gateway.domain.accounts import MarginMode, Platform
from gateway.domain.symbols import SymbolSpec
from gateway.terminals.mt5 import ModuleSpec, Mt5Settings, Mt5Terminal
from gateway.terminals.mt5.emulator import EmulatorAccount, EmulatorConfig, TerminalBehaviour
from gateway.terminals.protocol import Terminal
from gateway.terminals.remote import BrokerLogin, RemoteTerminal, WorkerHub
from gateway.terminals.sim import SimBroker, SimSymbol, SimTerminal, SymbolRules
from gateway.terminals.sim.quotes import QuoteSettings
from gateway.worker.client import TerminalWorker
from gateway.worker.config import TerminalEntry, WorkerConfig
from tests.fakes.mt4_bridge import connected_mt4_terminal

D = Decimal
LOGIN = 50_001
PASSWORD = "contract-secret"
SERVER = "MAM-Contract"
OPENING_BALANCE = D(10_000)
SEED = 11
# One quote per hour: a test sees the same bid and ask from start to end.
TICK_MS = 3_600_000
# MT5 reports the trade server's clock; the MT5 backends run it ahead of UTC to prove the
# adapter turns it back.
SERVER_UTC_OFFSET = timedelta(hours=2)
# The account's own terminal, as a Windows host names it (not a folder here: no lock is taken).
TERMINAL_PATH = f"C:\\MT5\\{LOGIN}\\terminal64.exe"
# The emulated MT5 terminals answer as real ones do wherever that keeps a terminal usable:
# modes enforced per symbol, deals missing from the answer and late in the history, history
# dates positional only, "none" as None with RES_E_NOT_FOUND, no data outside Market Watch,
# filters as documented. The contract holds through all of it.
REAL_TERMINAL = TerminalBehaviour.like_a_real_terminal()

EURUSD = SymbolSpec(
    "EURUSD",
    5,
    D(100_000),
    D("0.01"),
    D("0.01"),
    D(100),
    D("0.00001"),
    D(1),
    currency_base="EUR",
    currency_profit="USD",
    stops_level=10,
)
XAUUSD = SymbolSpec(
    "XAUUSD",
    2,
    D(100),
    D("0.01"),
    D("0.01"),
    D(50),
    D("0.01"),
    D(1),
    currency_base="XAU",
    currency_profit="USD",
    stops_level=20,
)
QUOTES = {
    "EURUSD": QuoteSettings(initial_mid=D("1.08450"), spread_points=8, step_points=3, digits=5),
    "XAUUSD": QuoteSettings(initial_mid=D("2350.00"), spread_points=30, step_points=5, digits=2),
}
SYMBOLS = {spec.name: spec for spec in (EURUSD, XAUUSD)}


@dataclass(frozen=True, slots=True)
class FreshAccount:
    """The account a test trades on, new and funded."""

    margin_mode: MarginMode = MarginMode.HEDGING
    balance: Decimal = OPENING_BALANCE
    leverage: int = 100
    # Symbol name -> its trading rules (a closed market, close-only...); others trade freely.
    rules: tuple[tuple[str, SymbolRules], ...] = field(default=())


TerminalFactory = Callable[[FreshAccount, Path], AbstractAsyncContextManager[Terminal]]
# What the open_terminal fixture gives a test: a terminal of the backend on a fresh account.
OpenTerminal = Callable[[FreshAccount], Awaitable[Terminal]]


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    open: TerminalFactory
    # What the platform itself lacks (not a backend's shortcut): MT4 has no stop-limit orders
    # and keeps times in whole seconds.
    stop_limit_orders: bool = True
    time_resolution: timedelta = timedelta(microseconds=1)


def sim_symbols(account: FreshAccount) -> tuple[SimSymbol, ...]:
    rules = dict(account.rules)
    return tuple(
        SimSymbol(spec, QUOTES[name], rules.get(name, SymbolRules()))
        for name, spec in SYMBOLS.items()
    )


@asynccontextmanager
async def sim_terminal(account: FreshAccount, scratch: Path) -> AsyncIterator[Terminal]:
    broker = SimBroker(sim_symbols(account), seed=SEED, tick_interval_ms=TICK_MS)
    broker.open_account(
        LOGIN, balance=account.balance, leverage=account.leverage, margin_mode=account.margin_mode
    )
    terminal = SimTerminal("contract", LOGIN, broker)
    try:
        yield terminal
    finally:
        await terminal.close()
        broker.close()


def emulator_config(account: FreshAccount, state_path: Path | None = None) -> EmulatorConfig:
    return EmulatorConfig(
        symbols=sim_symbols(account),
        account=EmulatorAccount(
            login=LOGIN,
            balance=account.balance,
            password=PASSWORD,
            server=SERVER,
            leverage=account.leverage,
            margin_mode=account.margin_mode,
        ),
        seed=SEED,
        tick_interval_ms=TICK_MS,
        state_path=state_path,
        server_utc_offset=SERVER_UTC_OFFSET,
        terminal_path=TERMINAL_PATH,
        behaviour=REAL_TERMINAL,
    )


def mt5_settings(module: ModuleSpec | None = None) -> Mt5Settings:
    return Mt5Settings(
        login=LOGIN,
        terminal_path=TERMINAL_PATH,
        password=PASSWORD,
        server=SERVER,
        server_utc_offset=SERVER_UTC_OFFSET,
        module=module or ModuleSpec(),
    )


@asynccontextmanager
async def mt5_in_thread(account: FreshAccount, scratch: Path) -> AsyncIterator[Terminal]:
    """The adapter over the emulator module itself (module-level state, as the package)."""
    mt5_emulator.emulator_configure(emulator_config(account))
    terminal = await Mt5Terminal.connect(
        "contract", mt5_settings(), isolation="thread", module=mt5_emulator
    )
    try:
        yield terminal
    finally:
        await terminal.close()


# Workers of the contract suite fork from a server that has the worker code imported already:
# the suite then costs no interpreter start per test. Spawning (the production default) is
# covered by test_mt5_worker.py.
WORKER_START_METHOD = (
    "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
)
if WORKER_START_METHOD == "forkserver":
    multiprocessing.set_forkserver_preload(
        ["gateway.terminals.mt5.worker", "gateway.terminals.mt5.emulator"]
    )


@asynccontextmanager
async def mt5_in_worker(account: FreshAccount, scratch: Path) -> AsyncIterator[Terminal]:
    """The adapter in a worker process, which builds its emulated broker from the config."""
    settings = mt5_settings(ModuleSpec.emulator(emulator_config(account)))
    terminal = Mt5Terminal.in_worker_process("contract", settings, start_method=WORKER_START_METHOD)
    try:
        await terminal.ensure_connected()
        yield terminal
    finally:
        await terminal.close()


@asynccontextmanager
async def mt4_over_bridge(
    account: FreshAccount, scratch: Path, *, protocol_max: int = 2
) -> AsyncIterator[Terminal]:
    """An Mt4Terminal over the bridge protocol, a fake EA at the other end of a real TCP
    connection, trading on the simulated broker with MT4's semantics. The EA pushes its trade
    pool (protocol 2), which positions() and pending_orders() read while it is current."""
    if account.margin_mode is not MarginMode.HEDGING:
        pytest.skip("MT4 accounts are hedging accounts")
    broker = SimBroker(sim_symbols(account), seed=SEED, tick_interval_ms=TICK_MS)
    async with connected_mt4_terminal(
        broker,
        login=LOGIN,
        balance=account.balance,
        leverage=account.leverage,
        account_id="contract",
        protocol_max=protocol_max,
    ) as terminal:
        yield terminal
    broker.close()


@asynccontextmanager
async def mt4_over_bridge_old_ea(account: FreshAccount, scratch: Path) -> AsyncIterator[Terminal]:
    """The same with an EA from before trade events (protocol 1): every read is asked."""
    async with mt4_over_bridge(account, scratch, protocol_max=1) as terminal:
        yield terminal


WORKER_TOKEN = "contract-worker-token"


@asynccontextmanager
async def terminal_on_a_worker(account: FreshAccount, scratch: Path) -> AsyncIterator[Terminal]:
    """A RemoteTerminal: every call crosses the worker stream (WorkerService.Connect on a real
    gRPC server) to a worker hosting a simulated terminal, and its answer comes back."""
    broker = SimBroker(sim_symbols(account), seed=SEED, tick_interval_ms=TICK_MS)
    broker.open_account(
        LOGIN, balance=account.balance, leverage=account.leverage, margin_mode=account.margin_mode
    )
    login = BrokerLogin(LOGIN, SERVER)
    hub = WorkerHub(reconnect_grace_s=0.0)
    server = grpc.aio.server()
    add_WorkerServiceServicer_to_server(
        WorkerServicer(hub, WorkersConfig(enabled=True, tokens=(WorkerToken(WORKER_TOKEN),))),
        server,
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    connected = asyncio.Event()
    worker = TerminalWorker(
        WorkerConfig(
            worker_id="contract-worker",
            gateway=f"127.0.0.1:{port}",
            token=WORKER_TOKEN,
            terminals=(TerminalEntry(login, Platform.MT5, "sim"),),
        ),
        {login: SimTerminal("contract", LOGIN, broker)},
        on_connected=connected.set,
    )
    running = asyncio.create_task(worker.run())
    terminal = RemoteTerminal("contract", login, hub)
    try:
        async with asyncio.timeout(10):
            await connected.wait()
        yield terminal
    finally:
        await terminal.close()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await worker.close(grace_s=0)
        await server.stop(0)
        broker.close()


BACKENDS = [
    Backend("sim", sim_terminal),
    Backend("mt5-thread", mt5_in_thread),
    Backend("mt5-worker", mt5_in_worker),
    Backend("remote-worker", terminal_on_a_worker),
    Backend(
        "mt4-bridge",
        mt4_over_bridge,
        stop_limit_orders=False,
        time_resolution=timedelta(seconds=1),
    ),
    Backend(
        "mt4-bridge-old-ea",
        mt4_over_bridge_old_ea,
        stop_limit_orders=False,
        time_resolution=timedelta(seconds=1),
    ),
]
