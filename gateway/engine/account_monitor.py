"""Account history: every attached terminal's money, deals and open positions, read on a timer
and stored a round at a time for reporting.

Each round asks every terminal for its account info, its open positions and its deals since the
newest one stored (with an overlap: a deal read twice is stored once), a bounded number of
terminals at a time, each request under the terminal's lock (MetaTrader terminals serve one
request at a time) and a timeout. A terminal that fails or does not answer in time is logged
and left out of the round; the other accounts' readings are stored in one transaction.

Once stored, the round's snapshots go to the loss watch (StopOutBoard.observe), which checks
every account's and group's loss limits against them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from gateway.domain.account_history import AccountDeal, AccountPosition, AccountReading
from gateway.domain.accounts import AccountSnapshot
from gateway.engine.stop_out_board import StopOutBoard
from gateway.engine.terminal_registry import TerminalRegistry
from gateway.store import Store
from gateway.terminals.protocol import Deal, Position, Terminal

log = logging.getLogger(__name__)

# Deals are asked for from this long before the newest stored one: a broker may report a deal
# stamped a little earlier than one it reported before; re-read deals are not stored twice.
DEAL_OVERLAP = timedelta(minutes=1)
# An account without stored deals gets its whole history.
_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class MonitorRound:
    """What one round stored, and which accounts it left out and why."""

    stored: tuple[str, ...] = ()
    failed: Mapping[str, str] = field(default_factory=dict)


class AccountMonitor:
    def __init__(
        self,
        store: Store,
        registry: TerminalRegistry,
        clock: Callable[[], datetime],
        *,
        interval_s: float,
        request_timeout_s: float,
        max_concurrency: int = 64,
        loss_watch: StopOutBoard | None = None,
    ) -> None:
        """`interval_s` between the end of a round and the start of the next; 0: no rounds
        run by themselves (run_once still works)."""
        self._store = store
        self._registry = registry
        self._clock = clock
        self._interval_s = interval_s
        self._request_timeout_s = request_timeout_s
        self._slots = asyncio.Semaphore(max_concurrency)
        self._task: asyncio.Task[None] | None = None
        self._in_round = False
        self._stopping = False
        self._loss_watch = loss_watch

    def start(self) -> None:
        if self._interval_s <= 0 or self._task is not None:
            return
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="account-monitor")

    @property
    def in_round(self) -> bool:
        """A round started by the timer is under way."""
        return self._in_round

    async def stop(self) -> None:
        """Ends the rounds: between two at once; a round under way is finished first (its
        terminal reads are bounded by their timeout, its store is one transaction). It is not
        cancelled: a PostgreSQL statement cancelled mid-way can leave the asyncpg driver
        waiting for good, and the gateway's stop with it."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        if not self._in_round:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self._interval_s)
            self._in_round = True
            try:
                await self.run_once()
            except Exception:
                log.exception("account history round failed; the next round tries again")
            finally:
                self._in_round = False

    async def run_once(self, *, account_ids: Collection[str] | None = None) -> MonitorRound:
        """Reads every attached terminal (or those of `account_ids`: a deleted account's last
        reading) and stores what was read, in one transaction; then checks the loss limits
        against the stored snapshots."""
        terminals = [
            t
            for t in self._registry.attached()
            if account_ids is None or t.account_id in account_ids
        ]
        history = self._store.history
        newest = await history.last_deal_times(t.account_id for t in terminals)
        outcomes = await asyncio.gather(
            *(self._read(t, newest.get(t.account_id)) for t in terminals)
        )
        failed = {
            t.account_id: outcome
            for t, outcome in zip(terminals, outcomes, strict=True)
            if isinstance(outcome, str)
        }
        readings = [r for r in outcomes if isinstance(r, AccountReading)]
        stored = await history.save_account_history(readings)
        if self._loss_watch is not None and stored:
            kept = set(stored)
            await self._loss_watch.observe(
                {r.account_id: r.snapshot for r in readings if r.account_id in kept}
            )
        return MonitorRound(tuple(stored), failed)

    async def _read(self, terminal: Terminal, newest_deal: datetime | None) -> AccountReading | str:
        """The terminal's reading, or why there is none."""
        account_id = terminal.account_id
        since = _BEGINNING if newest_deal is None else newest_deal - DEAL_OVERLAP
        try:
            async with self._slots:
                info = await self._ask(account_id, terminal.account_info)
                taken_at = self._clock()
                positions = await self._ask(account_id, terminal.positions)
                deals = await self._ask(account_id, lambda: terminal.deals(since))
        except TimeoutError:
            log.warning(
                "account %s: no history this round: no answer within %ss",
                account_id,
                self._request_timeout_s,
            )
            return f"no answer within {self._request_timeout_s}s"
        except Exception as error:
            log.warning("account %s: no history this round: %s", account_id, error)
            return str(error) or type(error).__name__
        return AccountReading(
            account_id=account_id,
            snapshot=AccountSnapshot(
                info.balance, info.equity, info.margin, info.free_margin, taken_at
            ),
            deals=tuple(_account_deal(account_id, d) for d in deals),
            positions=tuple(_account_position(account_id, p, taken_at) for p in positions),
        )

    async def _ask(self, account_id: str, request: Callable[[], Awaitable[_T]]) -> _T:
        """One request under the terminal's lock; the timeout includes waiting for the lock."""
        async with asyncio.timeout(self._request_timeout_s), self._registry.lock(account_id):
            return await request()


def _account_deal(account_id: str, deal: Deal) -> AccountDeal:
    return AccountDeal(
        account_id=account_id,
        ticket=deal.ticket,
        order_ticket=deal.order_ticket,
        position_ticket=deal.position_ticket,
        symbol=deal.symbol,
        side=deal.side,
        volume=deal.volume,
        price=deal.price,
        entry=deal.entry,
        profit=deal.profit,
        magic=deal.magic,
        comment=deal.comment,
        executed_at=deal.executed_at,
    )


def _account_position(account_id: str, position: Position, seen_at: datetime) -> AccountPosition:
    return AccountPosition(
        account_id=account_id,
        ticket=position.ticket,
        symbol=position.symbol,
        side=position.side,
        volume=position.volume,
        price_open=position.price_open,
        magic=position.magic,
        comment=position.comment,
        opened_at=position.opened_at,
        seen_at=seen_at,
        stop_loss=position.stop_loss,
        take_profit=position.take_profit,
    )
