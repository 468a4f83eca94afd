"""Kill switches: switched on and off by an admin, kept in the store, enforced by the gate.

On: stored first, then the gate stops every opening child in the scope before its request
leaves (the dispatcher checks right before each send). With `flatten`, what the scope holds is
closed by closing master orders, labelled with the switch's id so that a restart in the middle
of a flatten finishes it without closing anything twice. Off: only by an explicit call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from gateway.domain.errors import NotFound
from gateway.domain.ids import AccountId, GroupId, new_id
from gateway.domain.kill_switches import KillSwitch, KillSwitchScope
from gateway.engine.trading_engine import TradingEngine
from gateway.engine.trading_gate import TradingGate
from gateway.store import Store

log = logging.getLogger(__name__)

# How long ActivateKillSwitch waits for a flatten's first closing orders before answering.
ANSWER_WITHIN_S = 2.0


class KillSwitchBoard:
    def __init__(
        self,
        store: Store,
        engine: TradingEngine,
        gate: TradingGate,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._engine = engine
        self._gate = gate
        self._clock = clock
        self._flattening: dict[str, asyncio.Task[None]] = {}
        self._closing_ids: dict[str, list[str]] = {}

    async def resume(self) -> int:
        """Puts the stored switches that are on back on the gate; finishes their flattens."""
        active = await self._store.access.list_kill_switches(
            offset=0, limit=10_000, active_only=True
        )
        for switch in active:
            self._gate.switch_on(switch)
            if switch.flatten:
                self._start_flatten(switch)
        return len(active)

    async def refresh(self) -> None:
        """Cluster mode: the switches other nodes turned on or off since, put on (and
        flattened, for this node's groups) or taken off this node's gate."""
        active = await self._store.access.list_kill_switches(
            offset=0, limit=10_000, active_only=True
        )
        on = {switch.kill_switch_id for switch in active}
        for switch in self._gate.active:
            if switch.kill_switch_id not in on:
                self._gate.switch_off(switch.kill_switch_id)
        known = {switch.kill_switch_id for switch in self._gate.active}
        for switch in active:
            if switch.kill_switch_id not in known:
                self._gate.switch_on(switch)
                if switch.flatten:
                    self._start_flatten(switch)

    def flatten_again(self) -> None:
        """Cluster mode: the flattens of the switches on, run again for groups this node has
        just taken (what was closed is not closed twice: each flatten is idempotent)."""
        for switch in self._gate.active:
            if switch.flatten:
                self._start_flatten(switch)

    async def activate(
        self, scope: KillSwitchScope, target_id: str, *, flatten: bool, reason: str, by: str
    ) -> KillSwitch:
        if (
            scope is KillSwitchScope.GROUP
            and await self._store.get_group(GroupId(target_id)) is None
        ):
            raise NotFound(f"group {target_id!r} does not exist", reason="GROUP_NOT_FOUND")
        if scope is KillSwitchScope.ACCOUNT:
            account = await self._store.get_account(AccountId(target_id))
            if account is None or account.is_deleted:
                raise NotFound(f"account {target_id!r} does not exist", reason="ACCOUNT_NOT_FOUND")
        switch = KillSwitch(
            kill_switch_id=new_id("ks"),
            scope=scope,
            target_id=target_id if scope is not KillSwitchScope.GLOBAL else "",
            flatten=flatten,
            reason=reason,
            activated_at=self._clock(),
            activated_by=by,
        )
        # Stored before it takes effect: a switch that acted is always on record.
        await self._store.access.insert_kill_switch(switch)
        self._gate.switch_on(switch)
        log.warning("%s (by %s)", switch.describe(), by)
        if flatten:
            task = self._start_flatten(switch)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), ANSWER_WITHIN_S)
            switch = replace(
                switch,
                closing_master_order_ids=tuple(self._closing_ids.get(switch.kill_switch_id, ())),
            )
        return switch

    async def deactivate(self, kill_switch_id: str, *, by: str) -> KillSwitch:
        switch = await self._store.access.deactivate_kill_switch(kill_switch_id, self._clock(), by)
        if switch is None:
            raise NotFound(
                f"kill switch {kill_switch_id!r} does not exist", reason="KILL_SWITCH_NOT_FOUND"
            )
        self._gate.switch_off(kill_switch_id)
        log.warning("kill switch %s lifted by %s", kill_switch_id, by)
        return switch

    async def stop(self) -> None:
        for task in list(self._flattening.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _start_flatten(self, switch: KillSwitch) -> asyncio.Task[None]:
        task = self._flattening.get(switch.kill_switch_id)
        if task is None:
            task = asyncio.create_task(self._flatten(switch))
            self._flattening[switch.kill_switch_id] = task
            task.add_done_callback(lambda _: self._flattening.pop(switch.kill_switch_id, None))
        return task

    async def _flatten(self, switch: KillSwitch) -> None:
        ids = self._closing_ids.setdefault(
            switch.kill_switch_id, list(switch.closing_master_order_ids)
        )
        try:
            async for closing_id in self._engine.flatten(
                label=switch.kill_switch_id,
                submitted_by="kill-switch",
                group_id=switch.target_id if switch.scope is KillSwitchScope.GROUP else "",
                account_id=switch.target_id if switch.scope is KillSwitchScope.ACCOUNT else "",
            ):
                if closing_id not in ids:
                    ids.append(closing_id)
                    await self._store.access.set_closing_orders(switch.kill_switch_id, ids)
        except Exception:
            log.exception("flatten of kill switch %s failed", switch.kill_switch_id)
