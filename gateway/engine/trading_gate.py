"""What may open or add to a position right now: the kill switches that are on, and the active
stop-outs of loss limits.

Consulted when a master order is planned (a switch over its whole group, or a stop-out of the
group, refuses it; an account's stop-out is applied by the pre-trade check) and by the dispatcher
right before every request leaves (a child a switch or a stop-out covers is cancelled, never
sent). Closing orders pass: stopping risk must never stop reducing it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from gateway.domain.drawdown_monitor import StopOutAction
from gateway.domain.kill_switches import KillSwitch
from gateway.domain.stop_outs import RecordedStopOut, WatchKind, most_severe


class TradingGate:
    def __init__(self, switches: Iterable[KillSwitch] = ()) -> None:
        self._switches: dict[str, KillSwitch] = {
            s.kill_switch_id: s for s in switches if s.is_active
        }
        # Active stop-outs by subject, and when this gate learnt of each: a plan made after
        # that has already applied it (see `stopping`).
        self._accounts: dict[str, dict[str, tuple[RecordedStopOut, datetime]]] = {}
        self._groups: dict[str, dict[str, tuple[RecordedStopOut, datetime]]] = {}

    def switch_on(self, switch: KillSwitch) -> None:
        if switch.is_active:
            self._switches[switch.kill_switch_id] = switch

    def switch_off(self, kill_switch_id: str) -> None:
        self._switches.pop(kill_switch_id, None)

    @property
    def active(self) -> list[KillSwitch]:
        return list(self._switches.values())

    def stop_out(self, stop_out: RecordedStopOut, *, known_at: datetime) -> None:
        """Puts an active stop-out on the gate; `known_at`: now, on the engine's clock."""
        if not stop_out.is_active:
            return
        by_subject = self._accounts if stop_out.kind is WatchKind.ACCOUNT else self._groups
        by_subject.setdefault(stop_out.subject_id, {})[stop_out.stop_out_id] = (stop_out, known_at)

    def lift(self, stop_out: RecordedStopOut) -> None:
        by_subject = self._accounts if stop_out.kind is WatchKind.ACCOUNT else self._groups
        held = by_subject.get(stop_out.subject_id)
        if held is not None:
            held.pop(stop_out.stop_out_id, None)
            if not held:
                del by_subject[stop_out.subject_id]

    def account_stop_out(self, account_id: str) -> StopOutAction | None:
        """The most severe action of the account's own active stop-outs, if any."""
        held = self._accounts.get(account_id)
        if not held:
            return None
        return most_severe([s for s, _ in held.values()])

    @property
    def has_account_stop_outs(self) -> bool:
        return bool(self._accounts)

    def stopping_group(self, group_id: str) -> KillSwitch | None:
        """A switch that stops every order of the group, if one is on."""
        for switch in self._switches.values():
            if switch.covers_group(group_id):
                return switch
        return None

    def stopped_group(self, group_id: str) -> RecordedStopOut | None:
        """An active stop-out of the group itself, if there is one."""
        held = self._groups.get(group_id)
        if not held:
            return None
        return next(iter(held.values()))[0]

    def stopping(
        self, account_id: str, group_id: str, *, planned_at: datetime | None = None
    ) -> KillSwitch | RecordedStopOut | None:
        """A switch or stop-out that stops opening orders of the group for the account, if any.

        `planned_at`: when the order's children were planned (its allocation's time). An
        account's stop-out the gate knew of by then was already applied by the pre-trade check,
        which lets through what the stop-out allows (a netting account's reduction under
        BLOCK_NEW_ENTRIES); without it, every opening child of a stopped-out account stops.
        """
        if not self._switches and not self._accounts and not self._groups:
            return None  # the common case, on every request: no work
        for switch in self._switches.values():
            if switch.covers(account_id, group_id):
                return switch
        held = self._groups.get(group_id)
        if held:
            return next(iter(held.values()))[0]
        for stop_out, known_at in self._accounts.get(account_id, {}).values():
            if planned_at is None or known_at >= planned_at:
                return stop_out
        return None
