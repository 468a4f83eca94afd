"""Server assembly: store, simulated broker, engine and servicers behind one grpc.aio server."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from gateway._proto.mam.v1 import (
    account_service_pb2,
    account_service_pb2_grpc,
    admin_service_pb2,
    admin_service_pb2_grpc,
    reporting_service_pb2,
    reporting_service_pb2_grpc,
    terminal_service_pb2,
    terminal_service_pb2_grpc,
    trading_service_pb2,
    trading_service_pb2_grpc,
    worker_service_pb2,
    worker_service_pb2_grpc,
)
from gateway.api import fill_wire
from gateway.api.access_interceptor import AccessControl, AccessInterceptor, Allowance
from gateway.api.access_rules import AccessScope
from gateway.api.account_servicer import AccountServicer
from gateway.api.admin_servicer import AdminServicer
from gateway.api.audit_trail import AuditTrail
from gateway.api.authentication_interceptor import AuthenticationInterceptor
from gateway.api.authenticator import Authenticator
from gateway.api.errors import ErrorInterceptor
from gateway.api.gateway_gauges import TerminalCensus, gauge_reader
from gateway.api.health import GatewayHealth
from gateway.api.peer_throttle import AuthenticationLimits, AuthenticationThrottle
from gateway.api.repeated_fields import RepeatedFieldLimit
from gateway.api.reporting_servicer import ReportingServicer
from gateway.api.stream_registry import StreamRegistry
from gateway.api.tls_credentials import ServerCertificates
from gateway.api.trading_servicer import TradingServicer
from gateway.api.worker_servicer import TerminalServicer, WorkerHealth, WorkerServicer
from gateway.config import ConfigError, DemoAccount, DemoConfig, GatewayConfig, ServerConfig
from gateway.config.models import ClusterConfig
from gateway.demo_strategy import DemoStrategy
from gateway.domain.access import ApiKey, Role, issue_key
from gateway.domain.accounts import (
    Account,
    AccountState,
    AllocationSettings,
    Group,
    GroupMember,
    MarginMode,
    NewAccount,
    NewGroup,
    Platform,
)
from gateway.domain.group_source import DEFAULT_MAX_SIGNAL_AGE
from gateway.domain.ids import GroupId
from gateway.domain.peer_authentication import FailurePolicy
from gateway.domain.retry_policy import OrderRetryPolicy
from gateway.engine.account_manager import AccountManager
from gateway.engine.account_monitor import AccountMonitor
from gateway.engine.cluster_fill_feed import ClusterFillFeed
from gateway.engine.dispatcher import Dispatcher, DispatchSettings
from gateway.engine.execution_recorder import ExecutionRecorder
from gateway.engine.fill_bus import FillBus
from gateway.engine.group_ownership import GroupOwnership
from gateway.engine.kill_switch_board import KillSwitchBoard
from gateway.engine.latest_history import LatestHistory
from gateway.engine.metrics import NO_METRICS, GatewayMetrics
from gateway.engine.notices import listen_and_work
from gateway.engine.order_updates import OrderUpdateBus
from gateway.engine.request_forwarding import RequestForwarding
from gateway.engine.risk_book import RiskBook
from gateway.engine.source_watcher import SourceWatchers, SourceWatchSettings
from gateway.engine.stop_out_board import StopOutBoard
from gateway.engine.store_health import StoreHealth
from gateway.engine.terminal_registry import TerminalRegistry
from gateway.engine.trading_engine import TradingEngine, TradingLimits
from gateway.engine.trading_gate import TradingGate
from gateway.observability.metrics_endpoint import MetricsEndpoint
from gateway.observability.tracing import Tracing
from gateway.secret_files import write_owner_only
from gateway.store import Store
from gateway.store.cluster import KEYS_CHANNEL, ClusterLockHeld, ClusterNode, NodeIdentity
from gateway.terminals.mt4 import (
    BridgeSettings,
    Mt4BridgeServer,
    Mt4Terminal,
    Mt4TerminalSettings,
    SessionSettings,
    TokenFileError,
    token_lookup,
)
from gateway.terminals.mt4.tokens import Mt4Tokens
from gateway.terminals.mt5 import Mt5Terminal
from gateway.terminals.protocol import Terminal
from gateway.terminals.remote import BrokerLogin, RemoteTerminal, WorkerHub
from gateway.terminals.sim import SimBroker, SimSymbol, SimTerminal
from gateway.terminals.sim.quotes import QuoteSettings
from gateway.tls_files import TlsFileError

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    account_service_pb2.DESCRIPTOR.services_by_name["AccountService"].full_name,
    admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    reporting_service_pb2.DESCRIPTOR.services_by_name["ReportingService"].full_name,
    terminal_service_pb2.DESCRIPTOR.services_by_name["TerminalService"].full_name,
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
    access: AccessControl
    kill_switches: KillSwitchBoard
    health_server: grpc.aio.Server | None = None
    health_port: int = 0
    workers: WorkerHub = field(default_factory=WorkerHub)
    mt4_bridge: Mt4BridgeServer | None = None
    stop_outs: StopOutBoard | None = None
    # Set once another process has taken the database's writer lock: this one must stop.
    lost_writer: asyncio.Event = field(default_factory=asyncio.Event)
    store_health: StoreHealth | None = None
    worker_health: WorkerHealth | None = None
    # What reload() reads again.
    certificates: ServerCertificates | None = None
    mt4_tokens: Mt4Tokens | None = None
    worker_service: WorkerServicer | None = None
    # Off unless [tracing] is enabled (or a test's tracing was given to start_gateway).
    tracing: Tracing = field(default_factory=Tracing)
    # NO_METRICS and no endpoint when [metrics] is off.
    metrics: GatewayMetrics = NO_METRICS
    metrics_endpoint: MetricsEndpoint | None = None
    # Mirroring: every group's source account watched, its signals acted on.
    sources: SourceWatchers | None = None
    # Cluster mode: the groups this process owns, through their leases.
    ownership: GroupOwnership | None = None
    # [demo] strategy: trades on the demo group's source account.
    demo_strategy: DemoStrategy | None = None

    @property
    def metrics_port(self) -> int:
        """The port GET /metrics is served on (0: metrics are off)."""
        return 0 if self.metrics_endpoint is None else self.metrics_endpoint.port

    @property
    def address(self) -> str:
        return f"{self.config.server.host}:{self.port}"

    def reload(self) -> None:
        """Reads again, now, the files the gateway re-reads while it runs (SIGHUP): the TLS
        certificate, key and client CA, the MT4 token file and the worker token file. Files
        not usable now leave what was read before in force (logged as errors)."""
        log.info("reading the certificate and token files again")
        rereads: list[Callable[[], object]] = []
        if self.certificates is not None:
            rereads.append(self.certificates.reload)
        if self.mt4_tokens is not None:
            rereads.append(self.mt4_tokens.reload)
        if self.worker_service is not None:
            rereads.append(self.worker_service.reload_tokens)
        for reread in rereads:
            try:
                reread()
            except Exception:  # a signal handler's failure must not end the process
                log.exception("reading files again failed; what was read before stays")

    async def stop(self, grace_s: float | None = None) -> None:
        """Stops taking calls, lets running ones and in-flight dispatches finish, closes."""
        grace = self.config.server.grace_seconds if grace_s is None else grace_s
        await self.health.enter_graceful_shutdown()
        # Endless streams end now (their callers resume elsewhere or after the restart);
        # unary calls and dispatches get the grace period.
        self.bus.stop()
        self.recorder.updates.stop()
        # Nothing more is copied from sources (what a source does meanwhile is caught up at
        # the next start), and signal streams end now.
        if self.demo_strategy is not None:
            await self.demo_strategy.stop()
        if self.sources is not None:
            await self.sources.stop()
        # No group is taken or handed over any more; those held are released at the end
        # (store.close), once their dispatches have finished.
        if self.ownership is not None:
            await self.ownership.stop()
        # Worker streams stay open while running dispatches still need their terminals.
        self.workers.close_when(self.engine.wait_idle())
        await self.server.stop(grace)
        if self.health_server is not None:
            await self.health_server.stop(0)
        await self.monitor.stop()
        await self.kill_switches.stop()
        if self.stop_outs is not None:
            await self.stop_outs.stop()
        await self.engine.stop(grace)
        await self.access.audit.stop()
        if self.access.streams is not None:
            await self.access.streams.stop()
        # Outcomes still waiting for a database that stays down are found by tag at the next
        # start: the stop does not wait for it longer than the grace period.
        await self.recorder.stop(timeout_s=max(grace, 1.0))
        if self.worker_health is not None:
            await self.worker_health.stop()
        if self.store_health is not None:
            await self.store_health.stop()
        await self.registry.close_all()
        if self.mt4_bridge is not None:
            await self.mt4_bridge.close()
        self.broker.close()
        await self.store.close()
        if self.metrics_endpoint is not None:
            await self.metrics_endpoint.close()
        await self.tracing.shutdown()


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


async def start_gateway(config: GatewayConfig, *, tracing: Tracing | None = None) -> RunningGateway:
    """Starts the gateway, in an order that fails before anything runs twice or half:
    the store and its writer lock first (another gateway on the database: WriterLockHeld,
    nothing written), then every part is built and the ports are bound (a port taken: OSError,
    nothing resumed), and only then does work begin (unfinished orders resume, terminals
    are watched, calls are served). A start that fails stops whatever it had started.
    `tracing`: instead of the one [tracing] describes (tests: an in-memory exporter's)."""
    async with contextlib.AsyncExitStack() as started:
        if tracing is None:
            tracing = Tracing.from_config(config.tracing, service="mam-gateway")
        started.push_async_callback(tracing.shutdown)
        running = await _start(config, started, tracing)
        started.pop_all()  # from here on, RunningGateway.stop
        return running


async def _start(
    config: GatewayConfig, started: contextlib.AsyncExitStack, tracing: Tracing
) -> RunningGateway:
    # The files read at start are read before the database is touched: one changed since the
    # configuration was checked stops the start with its key named and nothing written.
    tls, bridge = config.server.tls, config.mt4_bridge
    try:
        certificates = None if tls is None else ServerCertificates(tls)
        mt4_tokens = token_lookup(bridge.tokens_file) if bridge.listen else None
    except TlsFileError as error:
        raise ConfigError(str(error)) from None
    except TokenFileError as error:
        raise ConfigError(f"mt4_bridge.tokens_file: {error}") from None
    cluster = config.cluster
    node = None
    if cluster.enabled:
        node = ClusterNode(
            config.database_url,
            NodeIdentity.of_this_process(
                cluster.node_name, cluster.advertise_address or config.server.listen
            ),
            lease_seconds=cluster.lease_seconds,
        )
    try:
        store = await Store.open(config.database_url, fill_encoder=fill_wire.encode, cluster=node)
    except ClusterLockHeld as error:
        raise ConfigError(f"cluster.enabled: {error}") from None
    started.push_async_callback(store.close)
    broker = simulated_broker(config)
    started.callback(broker.close)
    workers = WorkerHub(reconnect_grace_s=config.workers.reconnect_grace_seconds)

    mt4_bridge = None if mt4_tokens is None else await _start_mt4_bridge(config, mt4_tokens)
    if mt4_bridge is not None:
        started.push_async_callback(mt4_bridge.close)

    def connect_terminal(account: Account) -> Terminal | None:
        if account.platform is Platform.MT5 and account.login in config.mt5.by_login:
            settings = config.mt5.by_login[account.login]
            if not settings.server:
                settings = dataclasses.replace(settings, server=account.server)
            # Its own worker process: the MetaTrader5 module blocks and serves one terminal.
            return Mt5Terminal.in_worker_process(account.account_id, settings)
        # A login configured above stays on this host; the rest of the platform is remote.
        if config.workers.hosts(account.platform):
            login = BrokerLogin(account.login, account.server)
            return RemoteTerminal(account.account_id, login, workers)
        if account.platform is Platform.MT4 and mt4_bridge is not None:
            return Mt4Terminal(
                account.account_id,
                account.login,
                mt4_bridge,
                settings=Mt4TerminalSettings(
                    trade_timeout_s=config.mt4_bridge.request_timeout_seconds
                ),
            )
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
    started.push_async_callback(registry.close_all)
    gate = TradingGate()
    bus = FillBus()
    updates = OrderUpdateBus()
    lost_writer = asyncio.Event()
    store_health = StoreHealth(store.probe_write)
    started.push_async_callback(store_health.stop)

    def writer_lost() -> None:
        store_health.writer_lost()
        dispatcher.halt("because another gateway process took the database")
        lost_writer.set()

    metrics = GatewayMetrics() if config.metrics.enabled else NO_METRICS

    def groups_fenced(groups: frozenset[GroupId]) -> None:
        # A commit found them taken over: given up at once, not at the next round.
        if ownership is not None:
            ownership.give_up(groups)

    recorder = ExecutionRecorder(
        store,
        bus,
        utc_now,
        updates,
        health=store_health,
        on_fenced=writer_lost,
        on_groups_lost=groups_fenced,
        publish_fills=node is None,
        lease_epoch=None if node is None else node.held.get,
        tracer=tracing.tracer,
        metrics=metrics,
    )
    dispatcher = Dispatcher(
        registry,
        recorder,
        DispatchSettings(
            max_concurrency=config.engine.max_concurrency,
            request_timeout_s=config.engine.request_timeout_seconds,
            retry=OrderRetryPolicy(
                maximum_attempts=config.engine.max_attempts,
                default_deviation_points=config.engine.default_deviation_points,
            ),
        ),
        utc_now,
        gate=gate,
        metrics=metrics,
    )
    risk_book = RiskBook(store, utc_now)
    await risk_book.load()
    engine = TradingEngine(
        store=store,
        registry=registry,
        symbols=config.symbol_specs,
        dispatcher=dispatcher,
        recorder=recorder,
        clock=utc_now,
        limits=TradingLimits(
            max_master_volume=config.engine.max_master_volume,
            pending_check_interval_s=config.engine.pending_check_interval_seconds,
            unknown_retry_s=config.engine.unknown_retry_seconds,
        ),
        gate=gate,
        risk=risk_book,
        tracer=tracing.tracer,
        metrics=metrics,
    )
    kill_switches = KillSwitchBoard(store, engine, gate, utc_now)
    stop_outs = StopOutBoard(store, engine, gate, risk_book, utc_now)
    accounts = AccountManager(
        store,
        registry,
        utc_now,
        risk=risk_book,
        stop_outs=stop_outs,
        request_timeout_s=config.engine.request_timeout_seconds,
        attach_new=node is None,
        exclusive_accounts=node is not None,
    )
    ownership: GroupOwnership | None = None
    if node is not None:
        ownership = _ownership(
            node, cluster, dispatcher=dispatcher, accounts=accounts, engine=engine,
            sources=lambda: sources, kill_switches=kill_switches, stop_outs=stop_outs,
            risk_book=risk_book, recorder=recorder,
            on_taken=lambda: forwarding.groups_taken(),  # noqa: PLW0108 (made below)
        )  # fmt: skip
        forwarding = RequestForwarding(
            store,
            config.database_url,
            node_id=ownership.node_id,
            owns=ownership.owns,
            owned=ownership.owned,
            clock=utc_now,
        )
        engine.only_owned_groups(ownership.require, forwarding)
    sources = SourceWatchers(
        store=store,
        registry=registry,
        engine=engine,
        clock=utc_now,
        settings=SourceWatchSettings(
            look_interval_s=config.sources.look_interval_seconds,
            look_timeout_s=config.sources.look_timeout_seconds,
        ),
        owns=(lambda _: True) if ownership is None else ownership.owns,
    )
    monitor = AccountMonitor(
        store,
        registry,
        utc_now,
        interval_s=config.engine.history_interval_seconds,
        request_timeout_s=config.engine.request_timeout_seconds,
        loss_watch=stop_outs,
    )

    attached = await accounts.attach_all() if ownership is None else 0
    if config.demo is not None:
        # The accounts it creates are attached as they are made: counted with the others.
        attached += await _seed_demo(config, accounts)
    access = await _access_control(config, store)
    started.push_async_callback(access.audit.stop)
    if access.streams is not None:
        started.push_async_callback(access.streams.stop)

    limit = config.server.max_message_bytes
    # The error mapping wraps access control, so refusals carry the same details; with keys
    # required, the key is checked before the request is read (authentication_interceptor.py).
    interceptors: list[grpc.aio.ServerInterceptor] = [  # type: ignore[type-arg]
        ErrorInterceptor(
            repeated=RepeatedFieldLimit(config.server.max_repeated_items), metrics=metrics
        )
    ]
    # Outermost: a call's span holds all of it, from the caller's traceparent on.
    if (traced_calls := tracing.server_interceptor()) is not None:
        interceptors.insert(0, traced_calls)
    if access.required:
        interceptors.append(AuthenticationInterceptor(access))
    interceptors.append(AccessInterceptor(access))
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            (
                "grpc.max_receive_message_length",
                min(limit, config.server.max_request_bytes),
            ),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0),
        ],
    )
    started.push_async_callback(server.stop, 0)
    account_service_pb2_grpc.add_AccountServiceServicer_to_server(
        AccountServicer(
            accounts,
            stop_outs=stop_outs,
            heartbeat_s=config.server.heartbeat_seconds,
            streams=access.streams,
            sources=sources,
        ),
        server,
    )
    admin_service_pb2_grpc.add_AdminServiceServicer_to_server(
        AdminServicer(store, access, kill_switches, utc_now, ownership=ownership), server
    )
    trading_service_pb2_grpc.add_TradingServiceServicer_to_server(
        TradingServicer(
            engine,
            accounts,
            store,
            bus,
            updates=updates,
            access=access,
            heartbeat_s=config.server.heartbeat_seconds,
            metrics=metrics,
            sources=sources,
        ),
        server,
    )
    worker_service = WorkerServicer(workers, config.workers)
    worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(worker_service, server)
    reporting_service_pb2_grpc.add_ReportingServiceServicer_to_server(
        ReportingServicer(
            store,
            config.symbol_specs,
            utc_now,
            # A statement or report reads its account's terminal first: seconds after a close,
            # the closing deals are not in the last history round yet.
            latest=LatestHistory(
                store,
                registry,
                monitor,
                request_timeout_s=config.engine.request_timeout_seconds,
            ),
            letterhead=config.statements,
        ),
        server,
    )
    terminal_service_pb2_grpc.add_TerminalServiceServicer_to_server(
        TerminalServicer(registry, workers, store), server
    )
    health = GatewayHealth()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            *SERVICE_NAMES,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    # Bound before anything resumes: a port in use fails the start with nothing sent.
    port = _add_port(server, config.server, certificates)
    if node is not None and not cluster.advertise_address:
        # What others are told to call: the port really bound (server.listen may say 0), on
        # this host's name when it listens on every address.
        host = config.server.host
        if host in ("0.0.0.0", "::", "[::]", ""):
            host = socket.gethostname()
        await node.set_address(f"{host}:{port}")
    health_server, health_port = None, 0
    if config.server.health_listen:
        # Probes inside the host or container ask here, without the API's TLS or keys.
        health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        started.push_async_callback(health_server.stop, 0)
        health_pb2_grpc.add_HealthServicer_to_server(health, health_server)
        try:
            health_port = health_server.add_insecure_port(config.server.health_listen)
        except RuntimeError as error:
            raise OSError(f"cannot listen on {config.server.health_listen}: {error}") from None
        if health_port == 0:
            raise OSError(f"cannot listen on {config.server.health_listen}")
    metrics_endpoint = None
    if config.metrics.enabled:
        metrics.read_state_with(
            gauge_reader(
                bus=bus,
                census=(census := TerminalCensus(registry, workers)),
                hub=workers,
                gate=gate,
                stop_outs=stop_outs,
                store_health=store_health,
                lost_writer=lost_writer,
                recorder=recorder,
                ownership=ownership,
            )
        )
        metrics_endpoint = await _start_metrics(config, metrics, census)
        started.push_async_callback(metrics_endpoint.close)

    # The work begins.
    worker_health = WorkerHealth(workers, health)
    started.push_async_callback(worker_health.stop)
    recorder.start()
    started.push_async_callback(recorder.stop, 0)
    switched_on = await kill_switches.resume()
    started.push_async_callback(kill_switches.stop)
    stopped_out = await stop_outs.resume()
    started.push_async_callback(stop_outs.stop)
    started.push_async_callback(engine.stop, 0)
    if ownership is None:
        resumed = await engine.resume_unfinished()
    else:
        fill_feed = ClusterFillFeed(store, bus, config.database_url)
        await fill_feed.start()
        started.push_async_callback(fill_feed.stop)
        forwarding.start()
        started.push_async_callback(forwarding.stop)
        if access.authenticator is not None:
            revocations = _revocations_heard(config.database_url, access.authenticator)
            started.push_async_callback(_cancelled, revocations)
        # The first share of the groups, each set up (terminals, unfinished orders, source)
        # as it is taken; the rest as rounds go by.
        resumed = 0
        started.push_async_callback(ownership.stop)
        owned = await ownership.first_round()
        attached = len(registry.attached())
        log.info("cluster node %s owns %d groups", ownership.node_id, len(owned))
    # Sources after the resumption: a signal acting on an order that was unfinished finds it
    # executing again, not half done.
    started.push_async_callback(sources.stop)
    watched = await sources.start()
    demo_strategy = await _start_demo_strategy(config, accounts, registry)
    if demo_strategy is not None:
        started.push_async_callback(demo_strategy.stop)
    log.info(
        "attached %d terminals, resumed %d unfinished master orders, %d kill switches on, "
        "%d stop-outs active, %d group sources watched",
        attached,
        resumed,
        switched_on,
        stopped_out,
        watched,
    )
    monitor.start()
    started.push_async_callback(monitor.stop)
    if ownership is not None:
        ownership.start()
    await server.start()
    if health_server is not None:
        await health_server.start()
    for name in ("", *SERVICE_NAMES):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    # While the store cannot take writes, the gateway is not serving: submissions are refused.
    store_health.subscribe(functools.partial(_serving_while_store_reachable, health))
    store.watch_writer_lock(writer_lost)
    return RunningGateway(
        certificates=certificates,
        mt4_tokens=mt4_tokens,
        worker_service=worker_service,
        mt4_bridge=mt4_bridge,
        access=access,
        kill_switches=kill_switches,
        stop_outs=stop_outs,
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
        workers=workers,
        lost_writer=lost_writer,
        store_health=store_health,
        worker_health=worker_health,
        tracing=tracing,
        metrics=metrics,
        metrics_endpoint=metrics_endpoint,
        sources=sources,
        demo_strategy=demo_strategy,
        ownership=ownership,
    )


_health_updates: set[asyncio.Task[None]] = set()


def _revocations_heard(url: str, authenticator: Authenticator) -> asyncio.Task[None]:
    """Cluster mode: a key revoked through any node is dropped from this node's cache at
    once (the revoking node NOTIFYs in its transaction)."""

    async def nothing() -> None:
        return None

    return asyncio.create_task(
        listen_and_work(
            url,
            [KEYS_CHANNEL],
            heard=lambda channel, key_id: authenticator.forget(key_id),
            wake=asyncio.Event(),
            work=nothing,
            poll_s=5.0,
            name="key revocations",
        ),
        name="key-revocations",
    )


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# Cluster mode: how often a node attaches and detaches terminals after its groups' members.
MEMBERS_RESYNC_S = 5.0


def _ownership(
    node: ClusterNode,
    cluster: ClusterConfig,
    *,
    dispatcher: Dispatcher,
    accounts: AccountManager,
    engine: TradingEngine,
    sources: Callable[[], SourceWatchers],
    kill_switches: KillSwitchBoard,
    stop_outs: StopOutBoard,
    risk_book: RiskBook,
    recorder: ExecutionRecorder,
    on_taken: Callable[[], None],
) -> GroupOwnership:
    """Cluster mode: what taking and losing a group does on this node."""

    async def taken(groups: list[GroupId]) -> None:
        dispatcher.resume_groups(groups)
        await accounts.attach_groups(groups)
        resumed = await engine.resume_unfinished(groups)
        await sources().watch_groups(groups)
        kill_switches.flatten_again()
        on_taken()
        log.info("took groups %s: %d unfinished master orders resumed", groups, resumed)

    async def lost(groups: frozenset[GroupId]) -> None:
        dispatcher.halt_groups(groups, "this node lost the group's lease to another node")
        await sources().unwatch_groups(groups)
        await engine.drop_groups(groups)
        await accounts.keep_attached_only(ownership.held())

    resynced_at = 0.0

    async def each_round() -> None:
        nonlocal resynced_at
        await kill_switches.refresh()
        await stop_outs.refresh()
        # Group risk settings and account loss limits changed on any node.
        await risk_book.load()
        # Members added or removed on any node: this node's groups' terminals follow (every
        # few seconds: it reads every group of this node's, its source and its accounts).
        now = time.monotonic()
        if now - resynced_at >= MEMBERS_RESYNC_S:
            resynced_at = now
            await accounts.follow_groups(ownership.held())

    ownership = GroupOwnership(
        node,
        renew_interval_s=cluster.renew_interval_seconds,
        on_taken=taken,
        on_lost=lost,
        each_round=each_round,
        is_idle=lambda group_id: not recorder.executing_in(group_id),
    )
    return ownership


def _serving_while_store_reachable(health: HealthServicer, reachable: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if reachable
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )

    async def update() -> None:
        for name in ("", *SERVICE_NAMES):
            await health.set(name, status)

    task = asyncio.get_running_loop().create_task(update())
    _health_updates.add(task)
    task.add_done_callback(_health_updates.discard)


async def _start_metrics(
    config: GatewayConfig, metrics: GatewayMetrics, census: TerminalCensus
) -> MetricsEndpoint:
    """GET /metrics on [metrics] listen, each scrape counting the terminals first."""
    try:
        endpoint = await MetricsEndpoint.start(
            config.metrics.listen, metrics.registry, refresh=census.refresh
        )
    except OSError as error:
        raise OSError(f"cannot listen on {config.metrics.listen}: {error}") from None
    log.info("metrics on %s", endpoint.url)
    return endpoint


async def _start_mt4_bridge(config: GatewayConfig, tokens: Mt4Tokens) -> Mt4BridgeServer:
    bridge = config.mt4_bridge
    host, _, port = bridge.listen.rpartition(":")
    server = await Mt4BridgeServer.start(
        host=host.strip("[]"),
        port=int(port),
        tokens=tokens,
        settings=bridge_settings(config),
    )
    log.info("MT4 bridge listening on %s", bridge.listen)
    return server


def bridge_settings(config: GatewayConfig) -> BridgeSettings:
    """The MT4 bridge's settings from [mt4_bridge]."""
    bridge = config.mt4_bridge
    return BridgeSettings(
        session=SessionSettings(
            heartbeat_s=bridge.heartbeat_seconds,
            timeout_s=bridge.timeout_seconds,
            trade_timeout_s=bridge.trade_timeout_seconds,
            max_frame_bytes=bridge.max_frame_bytes,
        ),
        hello_timeout_s=bridge.hello_timeout_seconds,
        hello_max_frame_bytes=bridge.hello_max_frame_bytes,
        max_pending_connections=bridge.max_pending_connections,
        failures=FailurePolicy(
            burst=bridge.hello_failures_per_address,
            refill_s=bridge.hello_failure_refill_seconds,
        ),
    )


async def _access_control(config: GatewayConfig, store: Store) -> AccessControl:
    auth = config.auth
    if auth.required and auth.bootstrap_admin_key_file is not None:
        await bootstrap_admin_key(store, auth.bootstrap_admin_key_file, utc_now())
    if not auth.required:
        log.warning("authentication is off: every caller on %s is an admin", config.server.listen)
    audit = AuditTrail(store.access)
    audit.start()
    authenticator = (
        Authenticator(
            store.access,
            throttle=AuthenticationThrottle(
                AuthenticationLimits(
                    failures_per_connection=auth.failures_per_connection,
                    connection_failure_refill_s=auth.connection_failure_refill_seconds,
                    failures_per_address=auth.failures_per_address,
                    address_failure_refill_s=auth.address_failure_refill_seconds,
                    verifications_per_second=auth.verifications_per_second,
                    verification_burst=auth.verification_burst,
                )
            ),
        )
        if auth.required
        else None
    )
    scope = AccessScope(store)
    streams = None
    if authenticator is not None:
        streams = StreamRegistry(
            scope=scope,
            keys=store.access,
            authenticator=authenticator,
            recheck_s=auth.stream_recheck_seconds,
        )
        streams.start()
    return AccessControl(
        authenticator=authenticator,
        scope=scope,
        audit=audit,
        allowance=Allowance(
            rate_per_second=auth.rate_per_second,
            burst=auth.burst,
            max_streams=auth.max_streams_per_key,
        ),
        clock=utc_now,
        streams=streams,
    )


async def bootstrap_admin_key(store: Store, path: Path, now: datetime) -> str | None:
    """Creates the first admin key when there is none, written to `path` (owner-only);
    returns its id, or None when an admin key exists already."""
    if await store.access.has_admin_key():
        return None
    issued = issue_key()
    await store.access.insert_api_key(
        ApiKey(
            key_id=issued.key_id,
            name="bootstrap admin",
            role=Role.ADMIN,
            secret_hash=issued.secret_hash,
            created_at=now,
            created_by="bootstrap",
        )
    )
    write_owner_only(path, issued.key + "\n")
    log.warning("created admin API key %s; the key is in %s (owner-only)", issued.key_id, path)
    return issued.key_id


def _add_port(
    server: grpc.aio.Server, config: ServerConfig, certificates: ServerCertificates | None
) -> int:
    try:
        if certificates is None:
            port = server.add_insecure_port(config.listen)
        else:
            port = server.add_secure_port(config.listen, certificates.credentials())
    except RuntimeError as error:  # grpcio raises "Failed to bind" where older ones returned 0
        raise OSError(f"cannot listen on {config.listen}: {error}") from None
    if port == 0:
        raise OSError(f"cannot listen on {config.listen}")
    return port


async def _seed_demo(config: GatewayConfig, accounts: AccountManager) -> int:
    """Creates the demo accounts and group once; later starts find them and change nothing
    (an account deleted since is not made again). The same for the group's source account.
    Returns how many accounts it created."""
    demo = config.demo
    assert demo is not None
    before = len(await accounts.all_accounts())
    group = await accounts.find_group_by_name(demo.group)
    if group is None:
        group = await _seed_demo_group(demo, accounts)
    if group is not None and demo.source is not None:
        await _seed_demo_source(demo.source, group, accounts)
    return len(await accounts.all_accounts()) - before


def _demo_account(entry: DemoAccount) -> NewAccount:
    return NewAccount(
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


async def _seed_demo_source(entry: DemoAccount, group: Group, accounts: AccountManager) -> None:
    """The demo group's source: an account of its own, not a member, made the group's source
    at the first start with one; a start that finds the account, or a source on the group,
    changes nothing."""
    if await accounts.group_source(group.group_id) is not None:
        return
    if any(a.name == entry.name for a in await accounts.all_accounts()):
        return
    account = await accounts.create_account(_demo_account(entry))
    await accounts.set_group_source(
        group.group_id,
        account_id=account.account_id,
        paused=False,
        max_signal_age=DEFAULT_MAX_SIGNAL_AGE,
    )
    log.info(
        "created demo account %s (%s), the source of group %s",
        account.name,
        account.account_id,
        group.name,
    )


async def _start_demo_strategy(
    config: GatewayConfig, accounts: AccountManager, registry: TerminalRegistry
) -> DemoStrategy | None:
    """[demo] strategy: started on the demo source's terminal, trading the first symbol."""
    demo = config.demo
    if demo is None or not demo.strategy or demo.source is None:
        return None
    name = demo.source.name
    account = next((a for a in await accounts.all_accounts() if a.name == name), None)
    if account is None or not config.symbols:
        log.warning("demo strategy: no account %r to trade on; not started", name)
        return None
    account_id = account.account_id
    strategy = DemoStrategy(
        lambda: registry.get(account_id),
        symbol=config.symbols[0].spec,
        interval_s=demo.strategy_interval_seconds,
        seed=demo.strategy_seed,
    )
    strategy.start()
    return strategy


async def _seed_demo_group(demo: DemoConfig, accounts: AccountManager) -> Group | None:
    existing = {a.name: a for a in await accounts.all_accounts()}
    members = []
    for entry in demo.accounts:
        account = existing.get(entry.name)
        if account is None:
            account = await accounts.create_account(_demo_account(entry))
        members.append(GroupMember(account_id=account.account_id))
    if not members:
        return None
    group = await accounts.create_group(
        NewGroup(name=demo.group, allocation=AllocationSettings(), members=tuple(members))
    )
    log.info(
        "created demo group %s (%s) with %d accounts", group.name, group.group_id, len(members)
    )
    return group
