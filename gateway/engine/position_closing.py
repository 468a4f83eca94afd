"""Closing what master orders opened: CloseMasterPosition, and a flatten (kill switches,
stop-outs) that closes everything a scope holds.

A close is a master order of its own, planned by gateway/domain/closing.py from what is still
open, then stored and started by the runner like a submission.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from decimal import Decimal

from gateway.domain.allocation import AllocationLine
from gateway.domain.closing import (
    OpenPart,
    OpenPosition,
    StillExecuting,
    check_closable,
    closing_share,
    closing_spec,
    closing_targets,
    is_same_close,
    open_parts,
    plan_close,
)
from gateway.domain.errors import FailedPrecondition, NotFound
from gateway.domain.ids import AccountId, MasterOrderId, new_id
from gateway.domain.new_orders import new_master_order, sent_children, why_nothing_allocated
from gateway.domain.orders import MasterOrder
from gateway.domain.symbols import SymbolSpec
from gateway.engine.deadlines import Deadlines
from gateway.engine.master_order_runner import MasterOrderRunner
from gateway.engine.store_health import StoreHealth
from gateway.engine.submission import Submission, replayed_if
from gateway.engine.terminal_registry import TerminalRegistry
from gateway.store import Store
from gateway.terminals.protocol import SymbolNotFound, TerminalError

log = logging.getLogger(__name__)


class PositionCloser:
    def __init__(
        self,
        *,
        store: Store,
        registry: TerminalRegistry,
        symbols: Mapping[str, SymbolSpec],
        runner: MasterOrderRunner,
        health: StoreHealth,
        clock: Callable[[], datetime],
        snapshot_deadlines: Deadlines,
    ) -> None:
        self._store = store
        self._registry = registry
        self._symbols = symbols
        self._runner = runner
        self._health = health
        self._clock = clock
        # The timeout of reading one account's symbol (all the order's accounts at once).
        self._snapshot_deadlines = snapshot_deadlines

    async def close_position(
        self,
        master_order_id: MasterOrderId,
        *,
        client_order_id: str,
        fraction: Decimal | None = None,
        volume: Decimal | None = None,
        submitted_by: str = "",
        only_accounts: frozenset[AccountId] | None = None,
    ) -> Submission:
        """Closes `fraction` of what is still open of a master order's position, or `volume`
        lots of it (in lots of the master symbol): a closing master order whose children each
        close their account's share (gateway/domain/closing.py), dispatched like any order.
        `only_accounts`: close these accounts' parts only (a kill switch's flatten).

        Idempotent per (submitted_by, client_order_id) like a submission.
        """
        assert (fraction is None) != (volume is None)
        self._health.refuse_if_unreachable()
        existing = await self._store.find_by_client_order_id(submitted_by, client_order_id)
        if existing is not None:
            return _replay_close(existing, master_order_id, fraction, volume)
        opened, parts = await self.open_parts(master_order_id, only_accounts)
        master_symbol = self._symbols[opened.spec.symbol]
        share = closing_share(opened, parts, master_symbol, fraction=fraction, volume=volume)
        accounts = await self._store.get_account_settings({p.child.account_id for p in parts})
        lines = {line.account_id: line for line in opened.allocation.lines}
        positions = await self._open_positions(parts, lines)
        now = self._clock()
        allocation = plan_close(positions, share.share, master_spec=master_symbol, at=now)
        close_id = MasterOrderId(new_id("mo"))
        spec = closing_spec(
            opened.spec,
            master_order_id=master_order_id,
            client_order_id=client_order_id,
            fraction=fraction,
            share=share,
        )
        children = sent_children(
            allocation.lines,
            master_order_id=close_id,
            side=spec.side,
            magic=opened.magic,
            at=now,
            closing=closing_targets(
                allocation,
                positions,
                {a.account_id: a.margin_mode for a in accounts.values()},
            ),
        )
        if not children:
            raise FailedPrecondition(
                "no account's share reaches its minimum volume: "
                + why_nothing_allocated(allocation),
                reason="NOTHING_ALLOCATED",
            )
        new = new_master_order(
            spec,
            master_order_id=close_id,
            allocation=allocation,
            children=children,
            magic=opened.magic,
            submitted_by=submitted_by,
            at=now,
        )
        return await self._runner.store_then_start(
            new,
            points={p.child.account_id: p.spec.point for p in positions},
            replay=lambda existing: _replay_close(existing, master_order_id, fraction, volume),
        )

    async def flatten(
        self,
        *,
        label: str,
        submitted_by: str,
        group_id: str = "",
        account_id: str = "",
        wait_s: float = 60.0,
    ) -> AsyncIterator[MasterOrderId]:
        """Closes everything open that opening orders of the group (or for the account, or all)
        hold, one closing order per opening order; yields each closing order's id.

        An order still executing (or with a close of it still executing) is waited for, up to
        `wait_s`, until it is final (MasterOrderRunner.until_final: the event of its end, no
        polling), and then closed. Idempotent per `label`: flattening again with the same label
        closes nothing twice.
        """
        only = frozenset({AccountId(account_id)}) if account_id else None
        loop = asyncio.get_running_loop()
        for master_order_id in await self._store.opening_orders_touching(
            group_id=group_id, account_id=account_id
        ):
            deadline = loop.time() + wait_s
            while True:
                try:
                    submission = await self.close_position(
                        master_order_id,
                        client_order_id=f"{label}:{master_order_id}",
                        fraction=Decimal(1),
                        submitted_by=submitted_by,
                        only_accounts=only,
                    )
                except StillExecuting as refusal:
                    if loop.time() < deadline:
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout_at(deadline):
                                await self._runner.until_final(refusal.executing_master_order_id)
                        continue
                    log.warning("flatten %s: %s not closed: %s", label, master_order_id, refusal)
                    break
                except FailedPrecondition as error:
                    if error.reason not in ("NOTHING_TO_CLOSE", "NOTHING_ALLOCATED"):
                        log.warning("flatten %s: %s not closed: %s", label, master_order_id, error)
                    break
                yield submission.master.master_order_id
                break

    async def open_parts(
        self, master_order_id: MasterOrderId, only_accounts: frozenset[AccountId] | None = None
    ) -> tuple[MasterOrder, list[OpenPart]]:
        """A final opening master order and, per child, the volume it still holds (its filled
        volume less what closing orders filled); refused while it or a close of it executes."""
        opened = await self._store.get_master_order(master_order_id)
        if opened is None:
            raise NotFound(
                f"master order {master_order_id!r} does not exist",
                reason="MASTER_ORDER_NOT_FOUND",
            )
        children = await self._store.children_of(master_order_id)
        check_closable(opened)
        closes = await self._store.closing_orders_of(master_order_id)
        return opened, open_parts(master_order_id, children, closes, only_accounts=only_accounts)

    async def _open_positions(
        self, parts: list[OpenPart], lines: Mapping[AccountId, AllocationLine]
    ) -> list[OpenPosition]:
        """Each open part with its broker symbol's spec, read from its terminal (one per
        account: a split child order's parts share its account's position)."""

        async def read(part: OpenPart) -> OpenPosition | None:
            child = part.child
            terminal = self._registry.get(child.account_id)
            if terminal is None:
                return None
            try:
                with self._snapshot_deadlines.guard():
                    spec = await terminal.symbol_spec(child.symbol)
            except (TimeoutError, TerminalError, SymbolNotFound) as error:
                log.warning("account %s: cannot close: %s", child.account_id, error)
                return None
            return OpenPosition(child, part.open_volume, spec, lines[child.account_id].method)

        found = await asyncio.gather(*(read(p) for p in parts))
        return [p for p in found if p is not None]


def _replay_close(
    existing: MasterOrder,
    master_order_id: MasterOrderId,
    fraction: Decimal | None,
    volume: Decimal | None,
) -> Submission:
    """The answer to a close whose client_order_id names a stored order: that order for the
    same close, ALREADY_EXISTS otherwise."""
    return replayed_if(
        is_same_close(existing.spec, master_order_id, fraction=fraction, volume=volume), existing
    )
