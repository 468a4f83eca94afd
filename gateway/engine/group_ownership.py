"""Cluster mode: which groups this process owns, kept through their leases (docs/cluster.md).

Every `renew_interval_s` the node renews its leases (the groups it lost meanwhile are given
up at once: their dispatch halted, their terminals detached) and takes groups that nobody
holds (never leased, released in an orderly stop, or not renewed for the lease time) up to its
fair share: the groups divided by the live nodes, rounded up. A group taken is set up before
anything else of it runs: its members' and source's terminals attached, its unfinished
orders resumed (each child found by its tag before anything is sent again), its source
watched. A session to the database that is lost loses every lease with it: the node joins
again with a new one and starts over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from gateway.domain.errors import FailedPrecondition
from gateway.domain.ids import GroupId
from gateway.store.cluster import ClusterNode, ClusterView

log = logging.getLogger(__name__)

GroupsTaken = Callable[[list[GroupId]], Coroutine[Any, Any, None]]
GroupsLost = Callable[[frozenset[GroupId]], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class Takeover:
    """One acquisition, for the operator's view and the takeover-time measure."""

    group_id: GroupId
    epoch: int
    # time.monotonic() when it was taken.
    at: float


class GroupOwnership:
    def __init__(
        self,
        node: ClusterNode,
        *,
        renew_interval_s: float,
        on_taken: GroupsTaken,
        on_lost: GroupsLost,
        each_round: Callable[[], Awaitable[None]] | None = None,
        is_idle: Callable[[GroupId], bool] = lambda group_id: True,
    ) -> None:
        """`each_round`: after each round, what follows the other nodes' changes (kill
        switches, group members). `is_idle`: whether nothing of the group executes here (a
        group is handed over to another node only then)."""
        self.node = node
        self._interval_s = renew_interval_s
        self._on_taken = on_taken
        self._on_lost = on_lost
        self._each_round = each_round
        self._is_idle = is_idle
        self._giving_up: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._round_lock = asyncio.Lock()
        self.taken: list[Takeover] = []
        # Groups lost to another node or handed over, since the start.
        self.lost_count = 0
        # Groups taken here and not given up since; those whose setting up (terminals,
        # unfinished orders, source) has finished are ready: only they are served here (a
        # call for a group still being set up waits, or is refused, as if owned elsewhere).
        self._set_up: set[GroupId] = set()
        self._ready: set[GroupId] = set()

    @property
    def node_id(self) -> str:
        return self.node.identity.node_id

    def owns(self, group_id: GroupId) -> bool:
        """This node holds the group's lease and has set the group up."""
        return group_id in self._ready and self.node.owns(group_id)

    def owned(self) -> list[GroupId]:
        """The groups this node serves: held and set up."""
        return sorted(g for g in self.node.held if g in self._ready)

    def held(self) -> list[GroupId]:
        """The groups whose lease this node holds, set up or being set up."""
        return sorted(self.node.held)

    async def require(self, group_id: GroupId) -> None:
        """Refuses (FAILED_PRECONDITION, GROUP_OWNED_ELSEWHERE, with the owner's node and
        address) what only the group's owner may do, when this node is not it."""
        if self.owns(group_id):
            return
        owner, address = await self._owner_of(group_id)
        where = f"node {owner} at {address}" if owner else "no node yet (it is being taken)"
        raise FailedPrecondition(
            f"group {group_id} is owned by {where}: send this to its owner",
            reason="GROUP_OWNED_ELSEWHERE",
            details={"group_id": group_id, "owner_node": owner, "owner_address": address},
        )

    async def _owner_of(self, group_id: GroupId) -> tuple[str, str]:
        view = await self.view()
        lease = next((x for x in view.leases if x.group_id == group_id), None)
        if lease is None or lease.released_at is not None:
            return "", ""
        node = next((n for n in view.nodes if n.node_id == lease.node_id), None)
        if node is None or not node.live:
            return "", ""
        return node.node_id, node.address

    async def view(self) -> ClusterView:
        async with self._round_lock:
            return await self.node.view()

    # -- the rounds ---------------------------------------------------------------------------

    async def first_round(self) -> list[GroupId]:
        """Takes this node's first share (at start, before it serves); the groups taken."""
        return await self._take_share()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="group-ownership")

    async def stop(self) -> None:
        """Ends the rounds: the one under way finishes first (a query cancelled halfway
        leaves the node's session unusable, and its leases unreleased)."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=10)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval_s)
            if self._stopping.is_set():
                return
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("cluster round failed (tried again in %.1f s): %s", self._interval_s,
                            error)  # fmt: skip

    async def round(self) -> None:
        """One renewal and, with what is free, this node's share taken. A lost session loses
        every lease: the node joins again with a new one."""
        connected = True
        try:
            async with self._round_lock:
                await self.node.renew()
        except Exception as error:
            log.critical("the node's database session was lost (%s): every lease with it", error)
            connected = False
        lost = frozenset(self._set_up - set(self.node.held))
        if lost:
            log.critical("lost the leases of groups %s", sorted(lost))
            self._set_up -= lost
            self._ready -= lost
            self.lost_count += len(lost)
            await self._on_lost(lost)
        if not connected:
            async with self._round_lock:
                await self.node.reconnect()
        await self._take_share()
        await self._hand_over_excess()
        if self._each_round is not None:
            await self._each_round()

    async def _hand_over_excess(self) -> None:
        """Above its fair share (a node joined), this node lets go of idle groups, newest
        first, for the others to take: a group executing an order stays until it is idle."""
        async with self._round_lock:
            live, groups = await self.node.census()
        excess = len(self.node.held) - math.ceil(groups / live)
        for group_id in sorted(self.node.held, reverse=True):
            if excess <= 0:
                break
            if not self._is_idle(group_id):
                continue
            self._set_up.discard(group_id)
            self._ready.discard(group_id)
            self.node.forget(group_id)
            self.lost_count += 1
            await self._on_lost(frozenset({group_id}))
            async with self._round_lock:
                await self.node.release(group_id)
            log.info("handed group %s over: above this node's share", group_id)
            excess -= 1

    def give_up(self, groups: frozenset[GroupId]) -> None:
        """A commit found these groups taken over: they are given up now (their dispatch
        halted, their terminals detached), not at the next round."""
        lost = frozenset(g for g in groups if g in self._set_up)
        if not lost:
            return
        log.critical("lost the leases of groups %s: a commit found them taken over", sorted(lost))
        self._set_up -= lost
        self._ready -= lost
        self.lost_count += len(lost)
        for group_id in lost:
            self.node.forget(group_id)
        task = asyncio.create_task(self._on_lost(lost))
        self._giving_up.add(task)
        task.add_done_callback(self._giving_up.discard)

    async def _take_share(self) -> list[GroupId]:
        async with self._round_lock:
            live, groups = await self.node.census()
            share = math.ceil(groups / live)
            taken: list[GroupId] = []
            if len(self.node.held) < share:
                for group_id in await self.node.candidates():
                    if len(self.node.held) >= share:
                        break
                    epoch = await self.node.try_acquire(group_id)
                    if epoch is not None:
                        taken.append(group_id)
                        self.taken.append(Takeover(group_id, epoch, time.monotonic()))
                        log.info("took group %s (epoch %d)", group_id, epoch)
        if taken:
            self._set_up.update(taken)
            await self._on_taken(taken)
            # Served from now on (unless lost while being set up).
            self._ready.update(g for g in taken if g in self._set_up)
        return taken
