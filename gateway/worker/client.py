"""The worker's side of mam.v1.WorkerService.Connect: hello, commands, results, heartbeats, and
reconnection with backoff when the stream drops.

Commands run on the local terminals concurrently across terminals and one at a time per terminal,
in the order they arrived. The per-terminal order outlives the stream: after a reconnection, the
gateway's search by tag for an interrupted send runs only once that send has finished on the
terminal, so it sees whatever the send did. A result whose stream has dropped is discarded (the
gateway reconciles by tag instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

import grpc
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

import gateway.observability.trace_context as traced
from gateway._proto.mam.v1 import worker_service_pb2 as pb
from gateway._proto.mam.v1 import worker_service_pb2_grpc as pb_grpc
from gateway.observability.log_context import forget, log_about
from gateway.terminals.protocol import SymbolNotFound, Terminal, TerminalError
from gateway.terminals.remote import wire
from gateway.terminals.remote.commands import run_command
from gateway.terminals.remote.worker_hub import BrokerLogin, HostedTerminal, utc_now
from gateway.worker.config import WorkerConfig
from gateway.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)

# What read() returns at the end of a stream (missing from grpc-stubs).
EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]

# The gateway is taken for gone after this many heartbeat intervals without a message.
MISSED_HEARTBEATS = 3
DEFAULT_HEARTBEAT_S = 5.0
# Results in one ResultBatch at most.
MAX_RESULT_BATCH = 1_000
# Answers the gateway gives that no reconnection changes: the configuration must.
FATAL_CODES = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNIMPLEMENTED,
        # WORKER_REPLACED: another process runs with this worker id.
        grpc.StatusCode.ABORTED,
    }
)


def _version() -> str:
    try:
        return importlib.metadata.version("mam-gateway")
    except importlib.metadata.PackageNotFoundError:
        return ""


class FatalWorkerError(Exception):
    """The gateway refused this worker in a way reconnecting cannot fix."""


def open_channel(config: WorkerConfig) -> grpc.aio.Channel:
    if not config.uses_tls:
        return grpc.aio.insecure_channel(config.gateway)
    assert config.tls_ca_file is not None
    credentials = grpc.ssl_channel_credentials(
        root_certificates=config.tls_ca_file.read_bytes(),
        private_key=config.tls_key_file.read_bytes() if config.tls_key_file else None,
        certificate_chain=config.tls_cert_file.read_bytes() if config.tls_cert_file else None,
    )
    options = []
    if config.tls_server_name:
        options.append(("grpc.ssl_target_name_override", config.tls_server_name))
    return grpc.aio.secure_channel(config.gateway, credentials, options=options)


class TerminalWorker:
    def __init__(
        self,
        config: WorkerConfig,
        terminals: Mapping[BrokerLogin, Terminal],
        *,
        on_connected: Callable[[], None] | None = None,
        channel_factory: Callable[[WorkerConfig], grpc.aio.Channel] = open_channel,
        batches: bool = True,
        prices_at_market: bool = True,
        tracer: Tracer = traced.NO_TRACER,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        """`batches`: read CommandBatch messages (said in the hello) and write ResultBatch ones
        to a gateway that reads them (said in its welcome); off, one command or result a
        message, as workers before batches did. `prices_at_market`: said in the hello (every
        backend prices a deal sent at market); off, as workers before it did. `tracer`: each
        command that carries its gateway span's traceparent is a span of that trace."""
        self._config = config
        self._tracer = tracer
        self.metrics = metrics if metrics is not None else WorkerMetrics()
        self._terminals = dict(terminals)
        self._locks = {login: asyncio.Lock() for login in self._terminals}
        self._hello = wire.Hello(
            worker_id=config.worker_id,
            terminals=tuple(
                HostedTerminal(entry.login, entry.platform, entry.backend)
                for entry in config.terminals
                if entry.login in self._terminals
            ),
            version=_version(),
            accepts_command_batches=batches,
            prices_at_market=prices_at_market,
        )
        self._batches = batches
        self._on_connected = on_connected
        self._channel_factory = channel_factory
        self._running: set[asyncio.Task[None]] = set()
        self._welcomed = False
        # Streams that got a welcome, commands received and the messages they came in, results
        # written and the messages they went in: for tests and logs.
        self.sessions = 0
        self.commands_received = 0
        self.command_messages = 0
        self.results_written = 0
        self.result_messages = 0

    async def run(self) -> None:
        """Serves until cancelled, reconnecting after every drop with an exponential backoff
        (reset by each welcome). Raises FatalWorkerError when the gateway refuses the worker."""
        delay = self._config.reconnect_min_seconds
        while True:
            self._welcomed = False
            try:
                await self._serve()
                log.warning("the gateway ended the stream")
            except grpc.aio.AioRpcError as error:
                if error.code() in FATAL_CODES:
                    raise FatalWorkerError(
                        f"the gateway refused worker {self._config.worker_id!r}: "
                        f"{error.code().name}: {error.details()}"
                    ) from None
                log.warning(
                    "stream to %s: %s: %s", self._config.gateway, error.code().name, error.details()
                )
            except (ConnectionError, TimeoutError) as error:
                log.warning("stream to %s: %s", self._config.gateway, error or "timeout")
            if self._welcomed:
                delay = self._config.reconnect_min_seconds
            pause = random.uniform(delay / 2, delay)
            log.info("reconnecting in %.1f s", pause)
            await asyncio.sleep(pause)
            self.metrics.reconnecting()
            delay = min(delay * 2, self._config.reconnect_max_seconds)

    async def _serve(self) -> None:
        """One stream, from hello to its end."""
        async with self._channel_factory(self._config) as channel:
            # Without a request iterator, the stream is written with call.write().
            call: Any = pb_grpc.WorkerServiceStub(channel).Connect()  # type: ignore[call-arg]
            try:
                await call.write(
                    pb.ConnectRequest(hello=wire.hello_to_proto(self._hello, self._config.token))
                )
                first = await call.read()
                if first is EOF or first.WhichOneof("message") != "welcome":
                    raise ConnectionError("the gateway answered the hello without a welcome")
                interval = first.welcome.heartbeat_interval.ToTimedelta().total_seconds()
                batches = self._batches and first.welcome.accepts_result_batches
                await self._connected(call, interval or DEFAULT_HEARTBEAT_S, batches)
            finally:
                call.cancel()

    async def _connected(self, call: Any, interval_s: float, batches: bool) -> None:
        self._welcomed = True
        self.sessions += 1
        self.metrics.connected(True)
        log.info("connected to %s as worker %s", self._config.gateway, self._config.worker_id)
        if self._on_connected is not None:
            self._on_connected()
        outbox: asyncio.Queue[pb.ConnectRequest] = asyncio.Queue()
        writer = asyncio.create_task(self._write(call, outbox, batches))
        beating = asyncio.create_task(_heartbeat(outbox, interval_s))
        try:
            while True:
                async with asyncio.timeout(interval_s * MISSED_HEARTBEATS):
                    message = await call.read()
                if message is EOF:
                    return
                kind = message.WhichOneof("message")
                if kind == "command":
                    self.command_messages += 1
                    self._start(message.command, outbox)
                elif kind == "commands":
                    # In the order given: each terminal's lock is taken in that order. They run
                    # together once each is read and holds its terminal (one pass of the loop),
                    # so the requests of one order leave back to back, as from the gateway.
                    self.command_messages += 1
                    release = asyncio.Event()
                    for command in message.commands.commands:
                        self._start(command, outbox, release)
                    asyncio.get_running_loop().call_soon(release.set)
        finally:
            self.metrics.connected(False)
            for task in (writer, beating):
                task.cancel()
            await asyncio.gather(writer, beating, return_exceptions=True)

    def _start(
        self,
        command: pb.TerminalCommand,
        outbox: asyncio.Queue[pb.ConnectRequest],
        release: asyncio.Event | None = None,
    ) -> None:
        # Tasks outlive the stream: a send in progress finishes even if the stream drops.
        self.commands_received += 1
        task = asyncio.create_task(self._execute(command, outbox, release))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _execute(
        self,
        message: pb.TerminalCommand,
        outbox: asyncio.Queue[pb.ConnectRequest],
        release: asyncio.Event | None,
    ) -> None:
        outbox.put_nowait(pb.ConnectRequest(result=await self.answer(message, release)))

    async def answer(
        self, message: pb.TerminalCommand, release: asyncio.Event | None = None
    ) -> pb.CommandResult:
        """Runs one command on its terminal, after the commands before it on that terminal;
        with `release`, read and holding its terminal, it waits for that first. A command
        carrying a traceparent is a span of its gateway's trace (tracing on)."""
        logged = log_about(account_id=message.account_id)
        try:
            parent = None
            if traced.is_tracing(self._tracer):
                parent = traced.context_of_traceparent(message.traceparent)
            if parent is None:
                return await self._answer(message, release)
            with self._tracer.start_as_current_span(
                traced.WORKER_COMMAND_SPAN,
                context=parent,
                kind=SpanKind.CONSUMER,
                attributes=_command_attributes(message, self._config.worker_id),
            ) as span:
                result = await self._answer(message, release)
                outcome = result.WhichOneof("result")
                if outcome == "send":
                    span.set_attribute(traced.RETCODE, result.send.retcode)
                elif outcome == "failure":
                    failure = pb.TerminalFailureKind.Name(result.failure.kind)
                    span.set_status(
                        Status(StatusCode.ERROR, f"{failure}: {result.failure.message}")
                    )
                return result
        finally:
            forget(logged)

    async def _answer(
        self, message: pb.TerminalCommand, release: asyncio.Event | None
    ) -> pb.CommandResult:
        """The command's result, counted by its kind and outcome."""
        received_at = self.metrics.received()
        try:
            result = await self._result(message, release)
        except BaseException:
            self.metrics.given_up()
            raise
        self.metrics.answered(message, result, received_at)
        return result

    async def _result(
        self, message: pb.TerminalCommand, release: asyncio.Event | None
    ) -> pb.CommandResult:
        command_id = message.command_id
        login = BrokerLogin(message.login, message.server)
        terminal = self._terminals.get(login)
        if terminal is None:
            return wire.failure_to_proto(
                command_id, wire.FailureKind.NOT_HOSTED, f"this worker hosts no login {login}"
            )
        try:
            command = wire.command_from_proto(message)
        except wire.WireError as error:
            return wire.failure_to_proto(command_id, wire.FailureKind.BAD_COMMAND, str(error))
        async with self._locks[login]:
            if release is not None and not release.is_set():
                await release.wait()
            try:
                return wire.answer_to_proto(
                    command_id, command, await run_command(terminal, command)
                )
            except SymbolNotFound as error:
                kind, text = wire.FailureKind.SYMBOL_NOT_FOUND, str(error)
            except TerminalError as error:
                kind, text = wire.FailureKind.TERMINAL_ERROR, str(error)
            except Exception as error:  # a backend bug: the outcome is unknown, say so
                log.exception("login %s: %s failed", login, type(command).__name__)
                kind, text = wire.FailureKind.TERMINAL_ERROR, f"{type(error).__name__}: {error}"
        return wire.failure_to_proto(command_id, kind, text)

    async def close(self, grace_s: float = 5.0) -> None:
        """Lets commands in progress finish for up to grace_s, then cancels them. The terminals
        stay open: whoever opened them closes them."""
        if self._running:
            _, pending = await asyncio.wait(list(self._running), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _write(
        self, call: Any, outbox: asyncio.Queue[pb.ConnectRequest], batches: bool
    ) -> None:
        # One writer: grpc.aio allows a single write in progress per stream. With batches,
        # the results waiting when it is free go in one message.
        with contextlib.suppress(
            grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError
        ):
            while True:
                message = await outbox.get()
                if message.WhichOneof("message") == "result":
                    if batches:
                        message = _with_waiting_results(message, outbox)
                    self.result_messages += 1
                    self.results_written += (
                        len(message.results.results) if message.HasField("results") else 1
                    )
                await call.write(message)


def _command_attributes(message: pb.TerminalCommand, worker_id: str) -> dict[str, str | int]:
    attributes: dict[str, str | int] = {
        traced.COMMAND: message.WhichOneof("command") or "",
        traced.ACCOUNT_ID: message.account_id,
        traced.LOGIN: message.login,
        traced.SERVER: message.server,
        traced.WORKER_ID: worker_id,
    }
    if message.HasField("send"):
        attributes[traced.TAG] = message.send.request.tag
    elif message.HasField("find_by_tag"):
        attributes[traced.TAG] = message.find_by_tag.tag
    return attributes


def _with_waiting_results(
    first: pb.ConnectRequest, outbox: asyncio.Queue[pb.ConnectRequest]
) -> pb.ConnectRequest:
    """`first` (a result) and the results waiting behind it, as one message. A heartbeat
    among them is dropped: the results say as much."""
    results = [first.result]
    while len(results) < MAX_RESULT_BATCH and not outbox.empty():
        waiting = outbox.get_nowait()
        if waiting.WhichOneof("message") == "result":
            results.append(waiting.result)
    if len(results) == 1:
        return first
    return pb.ConnectRequest(results=pb.ResultBatch(results=results))


async def _heartbeat(outbox: asyncio.Queue[pb.ConnectRequest], interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        outbox.put_nowait(pb.ConnectRequest(heartbeat=pb.Heartbeat(time=wire.stamp(utc_now()))))
