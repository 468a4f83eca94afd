"""Server assembly: store, simulated broker, engine and servicers behind one grpc.aio server."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from gateway._proto.mam.v1 import (
    account_service_pb2,
    account_service_pb2_grpc,
    trading_service_pb2,
    trading_service_pb2_grpc,
    worker_service_pb2,
    worker_service_pb2_grpc,
)
from gateway.api.account_servicer import AccountServicer
from gateway.api.errors import ErrorInterceptor
from gateway.api.trading_servicer import TradingServicer
from gateway.api.worker_servicer import WorkerServicer
from gateway.config import GatewayConfig, ServerConfig
from gateway.domain.accounts import (
    Account,
    AccountState,
    AllocationSettings,
    GroupMember,
    MarginMode,
    NewAccount,
    NewGroup,
    Platform,
)
from gateway.engine.account_manager import AccountManager
from gateway.engine.account_monitor import AccountMonitor
from gateway.engine.dispatcher import Dispatcher, DispatchSettings
from gateway.engine.execution_recorder import ExecutionRecorder
from gateway.engine.fill_bus import FillBus
from gateway.engine.order_updates import OrderUpdateBus
from gateway.engine.terminal_registry import TerminalRegistry
from gateway.engine.trading_engine import TradingEngine, TradingLimits
from gateway.store import Store
from gateway.terminals.protocol import Terminal
from gateway.terminals.sim import SimBroker, SimSymbol, SimTerminal
from gateway.terminals.sim.quotes import QuoteSettings

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    account_service_pb2.DESCRIPTOR.services_by_name["AccountService"].full_name,
    trading_service_pb2.DESCRIPTOR.services_by_name["TradingService"].full_name,
    worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name,
)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RunningGateway:
    config: GatewayConfig
    server: grpc.aio.Server
    port: int
    store: Store
    broker: SimBroker
    registry: TerminalRegistry
    recorder: ExecutionRecorder
    bus: FillBus
    engine: TradingEngine
    accounts: AccountManager
    monitor: AccountMonitor
    health: HealthServicer
    health_server: grpc.aio.Server | None = None
    health_port: int = 0

    @property
    def address(self) -> str:
        return f"{self.config.server.host}:{self.port}"

    async def stop(self, grace_s: float | None = None) -> None:
        """Stops taking calls, lets running ones and in-flight dispatches finish, closes."""
        grace = self.config.server.grace_seconds if grace_s is None else grace_s
        await self.health.enter_graceful_shutdown()
        # Endless streams end now (their callers resume elsewhere or after the restart);
        # unary calls and dispatches get the grace period.
        self.bus.stop()
        self.recorder.updates.stop()
        await self.server.stop(grace)
        if self.health_server is not None:
            await self.health_server.stop(0)
        await self.monitor.stop()
        await self.engine.stop(grace)
        await self.recorder.stop()
        await self.registry.close_all()
        self.broker.close()
        await self.store.close()


def simulated_broker(config: GatewayConfig) -> SimBroker:
    """The simulated broker the configuration describes (its books from state_path, if set)."""
    return SimBroker(
        [
            SimSymbol(
                spec=s.spec,
                quotes=QuoteSettings(
                    initial_mid=s.initial_price,
                    spread_points=s.spread_points,
                    step_points=s.step_points,
                    digits=s.spec.digits,
                ),
                rules=config.simulator.rules_for(s.spec.name),
            )
            for s in config.symbols
        ],
        seed=config.simulator.seed,
        tick_interval_ms=config.simulator.tick_interval_ms,
        state_path=config.simulator.state_path,
    )


async def start_gateway(config: GatewayConfig) -> RunningGateway:
    store = await Store.open(config.database_url)
    broker = simulated_broker(config)

    def connect_terminal(account: Account) -> Terminal | None:
        if account.platform is not Platform.SIMULATED:
            return None  # MT4/MT5 terminals connect through their own backends
        broker.open_account(
            account.login,
            balance=account.initial_balance or Decimal(0),
            leverage=account.leverage,
            currency=account.currency,
            margin_mode=account.margin_mode,
        )
        return SimTerminal(
            account.account_id,
            account.login,
            broker,
            latency=config.simulator.latency,
            faults=config.simulator.faults,
            seed=config.simulator.seed,
        )

    registry = TerminalRegistry(connect_terminal)
    bus = FillBus()
    updates = OrderUpdateBus()
    recorder = ExecutionRecorder(store, bus, utc_now, updates)
    dispatcher = Dispatcher(
        registry,
        recorder,
        DispatchSettings(
            max_concurrency=config.engine.max_concurrency,
            request_timeout_s=config.engine.request_timeout_seconds,
            max_attempts=config.engine.max_attempts,
            default_deviation_points=config.engine.default_deviation_points,
        ),
        utc_now,
    )
    engine = TradingEngine(
        store=store,
        registry=registry,
        symbols=config.symbol_specs,
        dispatcher=dispatcher,
        recorder=recorder,
        clock=utc_now,
        limits=TradingLimits(max_master_volume=config.engine.max_master_volume),
    )
    accounts = AccountManager(store, registry, utc_now)
    monitor = AccountMonitor(
        store,
        registry,
        utc_now,
        interval_s=config.engine.history_interval_seconds,
        request_timeout_s=config.engine.request_timeout_seconds,
    )

    attached = await accounts.attach_all()
    if config.demo is not None:
        await _seed_demo(config, accounts)
    recorder.start()
    resumed = await engine.resume_unfinished()
    log.info("attached %d terminals, resumed %d unfinished master orders", attached, resumed)
    monitor.start()

    limit = config.server.max_message_bytes
    server = grpc.aio.server(
        interceptors=[ErrorInterceptor()],
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0),
        ],
    )
    account_service_pb2_grpc.add_AccountServiceServicer_to_server(AccountServicer(accounts), server)
    trading_service_pb2_grpc.add_TradingServiceServicer_to_server(
        TradingServicer(
            engine,
            accounts,
            store,
            bus,
            updates=updates,
            heartbeat_s=config.server.heartbeat_seconds,
        ),
        server,
    )
    worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(WorkerServicer(), server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            *SERVICE_NAMES,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    port = _add_port(server, config.server)
    await server.start()
    health_server, health_port = None, 0
    if config.server.health_listen:
        # Probes inside the host or container ask here, without the API's TLS or keys.
        health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(health, health_server)
        health_port = health_server.add_insecure_port(config.server.health_listen)
        if health_port == 0:
            raise OSError(f"cannot listen on {config.server.health_listen}")
        await health_server.start()
    for name in ("", *SERVICE_NAMES):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningGateway(
        config=config,
        server=server,
        port=port,
        store=store,
        broker=broker,
        registry=registry,
        recorder=recorder,
        bus=bus,
        engine=engine,
        accounts=accounts,
        monitor=monitor,
        health=health,
        health_server=health_server,
        health_port=health_port,
    )


def _add_port(server: grpc.aio.Server, config: ServerConfig) -> int:
    if config.tls is None:
        port = server.add_insecure_port(config.listen)
    else:
        tls = config.tls
        credentials = grpc.ssl_server_credentials(
            [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
            root_certificates=tls.client_ca_file.read_bytes() if tls.client_ca_file else None,
            require_client_auth=tls.client_ca_file is not None,
        )
        port = server.add_secure_port(config.listen, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {config.listen}")
    return port


async def _seed_demo(config: GatewayConfig, accounts: AccountManager) -> None:
    """Creates the demo accounts and group once; later starts find them and change nothing."""
    demo = config.demo
    assert demo is not None
    existing = {a.name: a for a in await accounts.all_accounts()}
    members = []
    for entry in demo.accounts:
        account = existing.get(entry.name)
        if account is None:
            account = await accounts.create_account(
                NewAccount(
                    name=entry.name,
                    platform=Platform.SIMULATED,
                    login=entry.login,
                    server="mam-sim",
                    currency="USD",
                    state=AccountState.ACTIVE,
                    margin_mode=MarginMode.HEDGING,
                    leverage=entry.leverage,
                    initial_balance=entry.initial_balance,
                )
            )
        members.append(GroupMember(account_id=account.account_id))
    if await accounts.find_group_by_name(demo.group) is None and members:
        group = await accounts.create_group(
            NewGroup(name=demo.group, allocation=AllocationSettings(), members=tuple(members))
        )
        log.info(
            "created demo group %s (%s) with %d accounts", group.name, group.group_id, len(members)
        )
