"""What a metrics scrape reads of the running gateway: the gauges of gateway/engine/metrics.py.

Read when Prometheus asks, from the state the parts keep anyway, never updated per change. A
terminal's connection is a question of its own (its health call; a remote terminal's worker
session, without a round trip): `TerminalCensus.refresh` asks every attached terminal at once,
each within a second, before the scrape reads the counts. A terminal that does not answer in
time (an MT5 terminal answers one call at a time: a slow trade holds its health call) keeps the
state it was last seen in; one that fails to answer is disconnected.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

from gateway.engine.execution_recorder import ExecutionRecorder
from gateway.engine.fill_bus import FillBus
from gateway.engine.group_ownership import GroupOwnership
from gateway.engine.metrics import GaugeReadings, backend_of
from gateway.engine.stop_out_board import StopOutBoard
from gateway.engine.store_health import StoreHealth
from gateway.engine.terminal_registry import TerminalRegistry
from gateway.engine.trading_gate import TradingGate
from gateway.terminals.protocol import Terminal, TerminalError
from gateway.terminals.remote import RemoteTerminal, WorkerHub
from gateway.terminals.remote.worker_hub import worker_health_name

HEALTH_TIMEOUT_S = 1.0
_WORKER_PREFIX = worker_health_name("")


class TerminalCensus:
    """Attached terminals by (backend, connected), as last counted."""

    def __init__(self, registry: TerminalRegistry, hub: WorkerHub) -> None:
        self._registry = registry
        self._hub = hub
        self.counts: dict[tuple[str, bool], int] = {}
        # Each terminal's last answer, by account, for a terminal too busy to answer now.
        self._last: dict[str, bool] = {}

    async def refresh(self) -> None:
        terminals = self._registry.attached()
        states = await asyncio.gather(*(self._connected(t) for t in terminals))
        self._last = {t.account_id: up for t, up in zip(terminals, states, strict=True)}
        self.counts = dict(
            collections.Counter(
                (backend_of(t), up) for t, up in zip(terminals, states, strict=True)
            )
        )

    async def _connected(self, terminal: Terminal) -> bool:
        if isinstance(terminal, RemoteTerminal):
            return self._hub.view(terminal.login).connected
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                return (await terminal.health()).connected
        except TimeoutError:
            return self._last.get(terminal.account_id, False)
        except TerminalError:
            return False


def gauge_reader(
    *,
    bus: FillBus,
    census: TerminalCensus,
    hub: WorkerHub,
    gate: TradingGate,
    stop_outs: StopOutBoard,
    store_health: StoreHealth,
    lost_writer: asyncio.Event,
    recorder: ExecutionRecorder,
    ownership: GroupOwnership | None = None,
) -> Callable[[], GaugeReadings]:
    """The gateway's gauges as a scrape reads them."""

    def read() -> GaugeReadings:
        return GaugeReadings(
            subscriber_buffers=bus.buffer_depths(),
            subscriber_buffer_limit=bus.max_pending,
            subscriber_overflows=bus.overflows,
            terminals=census.counts,
            workers_connected=sum(
                1 for name, up in hub.health().items() if up and name.startswith(_WORKER_PREFIX)
            ),
            kill_switches=collections.Counter(s.scope.name.lower() for s in gate.active),
            stop_outs=collections.Counter(s.kind.name.lower() for s in stop_outs.active),
            store_reachable=store_health.reachable,
            writer_lock_held=not lost_writer.is_set(),
            master_orders_in_progress=len(recorder.in_progress()),
            cluster_groups_owned=None if ownership is None else len(ownership.owned()),
            cluster_groups_taken=0 if ownership is None else len(ownership.taken),
            cluster_groups_lost=0 if ownership is None else ownership.lost_count,
        )

    return read
