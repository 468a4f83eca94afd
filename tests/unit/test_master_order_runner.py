"""Waiting for a master order to become final (a flatten does, before it closes the order):
through the event of its end, whether it executes already or is still to be started."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from gateway.domain.accounts import AllocationMethod, BelowMinPolicy
from gateway.domain.allocation import Allocation
from gateway.domain.orders import (
    ChildOrder,
    ChildOrderState,
    MasterOrder,
    MasterOrderSpec,
    MasterOrderState,
    OrderType,
    Side,
)
from gateway.engine.execution_recorder import ExecutionRecorder
from gateway.engine.fill_bus import FillBus
from gateway.engine.master_order_runner import MasterOrderRunner
from gateway.engine.store_health import StoreHealth

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def order(master_order_id: str, state: MasterOrderState) -> MasterOrder:
    spec = MasterOrderSpec("g_1", "EURUSD", Side.BUY, OrderType.MARKET, Decimal("0.10"), "d-1")
    allocation = Allocation(
        AllocationMethod.EQUITY, BelowMinPolicy.SKIP, Decimal(0), Decimal(0), Decimal(0), NOW, ()
    )
    return MasterOrder(master_order_id, spec, state, 1, allocation, NOW, NOW, child_count=1)


def child(master_order_id: str) -> ChildOrder:
    return ChildOrder(
        f"ch_{master_order_id}", master_order_id, "a", "EURUSD", Side.BUY, Decimal("0.10"),
        ChildOrderState.SENT, "mam:x", 1, NOW, NOW,
    )  # fmt: skip


@dataclass
class FakeStore:
    """The store as the runner reads and writes it for a resumed order."""

    masters: dict[str, MasterOrder] = field(default_factory=dict)

    async def get_master_order(self, master_order_id: str) -> MasterOrder | None:
        return self.masters.get(master_order_id)

    async def unfinished_master_orders(self) -> list[MasterOrder]:
        return [m for m in self.masters.values() if not m.state.is_final]

    async def children_of(self, master_order_id: str) -> list[ChildOrder]:
        return [child(master_order_id)]

    async def fills_of(self, master_order_id: str) -> list[Any]:
        return []

    async def save_progress(
        self,
        *,
        masters: list[MasterOrder],
        children: list[ChildOrder] | None = None,
        epochs: dict[str, int] | None = None,
    ) -> None:
        for master in masters:
            self.masters[master.master_order_id] = master


class FakeDispatcher:
    """Holds every dispatch until released."""

    def __init__(self) -> None:
        self.released = asyncio.Event()

    async def dispatch(self, master: MasterOrder, children: list[ChildOrder], **_: Any) -> None:
        await self.released.wait()

    def forget(self, master_order_id: str) -> None:
        pass

    def stop_sending(self, master_order_id: str) -> None:
        pass


@dataclass
class Running:
    runner: MasterOrderRunner
    recorder: ExecutionRecorder
    store: FakeStore
    dispatcher: FakeDispatcher

    async def finish(self, master_order_id: str) -> None:
        """The order's child fills and the recorder commits its final state."""
        self.dispatcher.released.set()
        progress = self.recorder.progress_of(master_order_id)
        assert progress is not None
        for child_order_id, c in progress.children.items():
            progress.children[child_order_id] = replace(
                c, state=ChildOrderState.FILLED, filled_volume=c.volume
            )
        await self.recorder.finish_if_complete(progress)


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    async def probe() -> None:
        pass

    store = FakeStore()
    dispatcher = FakeDispatcher()
    recorder = ExecutionRecorder(
        store,  # type: ignore[arg-type]
        FillBus(),
        lambda: NOW,
        health=StoreHealth(probe),
    )
    runner = MasterOrderRunner(
        store=store,  # type: ignore[arg-type]
        registry=None,  # type: ignore[arg-type]
        dispatcher=dispatcher,  # type: ignore[arg-type]
        recorder=recorder,
        clock=lambda: NOW,
        pending_check_interval_s=60,
        unknown_retry_s=60,
    )
    try:
        yield Running(runner, recorder, store, dispatcher)
    finally:
        dispatcher.released.set()
        await runner.stop(1)


async def settled() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_final_or_unknown_order_is_not_waited_for(running: Running) -> None:
    running.store.masters["mo_1"] = order("mo_1", MasterOrderState.FILLED)
    async with asyncio.timeout(1):
        await running.runner.until_final("mo_1")
        await running.runner.until_final("mo_NOSUCHORDER")


async def test_an_executing_order_is_waited_for_until_its_final_state_is_committed(
    running: Running,
) -> None:
    running.store.masters["mo_1"] = order("mo_1", MasterOrderState.DISPATCHING)
    assert await running.runner.resume_unfinished() == 1
    await settled()
    assert running.recorder.progress_of("mo_1") is not None
    waiting = asyncio.create_task(running.runner.until_final("mo_1"))
    await settled()
    assert not waiting.done()
    await running.finish("mo_1")
    async with asyncio.timeout(1):
        await waiting
    assert running.store.masters["mo_1"].state is MasterOrderState.FILLED


async def test_an_order_not_started_yet_is_waited_for_through_its_start_then_its_end(
    running: Running,
) -> None:
    # Stored unfinished by an earlier run, and not resumed yet (a flatten resumed at start
    # runs before the unfinished orders are).
    running.store.masters["mo_1"] = order("mo_1", MasterOrderState.DISPATCHING)
    waiting = asyncio.create_task(running.runner.until_final("mo_1"))
    await settled()
    assert not waiting.done()
    await running.runner.resume_unfinished()
    await settled()
    assert running.recorder.progress_of("mo_1") is not None
    assert not waiting.done()
    await running.finish("mo_1")
    async with asyncio.timeout(1):
        await waiting


async def test_a_wait_that_timed_out_is_forgotten(running: Running) -> None:
    running.store.masters["mo_1"] = order("mo_1", MasterOrderState.DISPATCHING)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await running.runner.until_final("mo_1")
    await running.runner.resume_unfinished()
    await settled()
    await running.finish("mo_1")
    async with asyncio.timeout(1):
        await running.runner.until_final("mo_1")
