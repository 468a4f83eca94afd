"""Cluster mode: a submission, a close or a cancel sent to a node that does not own the group
is done by the group's owner (docs/cluster.md, "Any node serves any caller").

The asking node stores the call (gateway/store/forwarding.py), NOTIFYs, and waits for the row
to be done; the owner, woken by the notification (or every `poll_s`), claims the waiting calls
of its groups, does each exactly as if it had been called (the same idempotency by
client_order_id, the call's audit record stored with the order), and stores the outcome. The
asking node answers its caller only then, with the stored master order, or the owner's error:
the acknowledgement still follows the order's commit. A call waiting while its group changes
hands (its owner died) is done by the new owner once it has taken the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import msgspec

from gateway.domain import errors
from gateway.domain.audit import AuditRecord
from gateway.domain.closing import StillExecuting
from gateway.domain.errors import DomainError, FieldViolation, Unavailable
from gateway.domain.ids import AccountId, GroupId, MasterOrderId, new_id
from gateway.domain.orders import MasterOrder, MasterOrderSpec
from gateway.engine.notices import listen_and_work
from gateway.engine.submission import Submission
from gateway.store import Store
from gateway.store.forwarding import FORWARD_CHANNEL, FORWARD_DONE_CHANNEL, ForwardedRequest

log = logging.getLogger(__name__)

SUBMIT = "submit"
CLOSE = "close"
CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class ForwardedSubmit:
    spec: MasterOrderSpec
    submitted_by: str
    audit: AuditRecord | None = None


@dataclass(frozen=True, slots=True)
class ForwardedClose:
    master_order_id: MasterOrderId
    client_order_id: str
    fraction: Decimal | None
    volume: Decimal | None
    submitted_by: str
    only_accounts: list[AccountId] | None = None


@dataclass(frozen=True, slots=True)
class ForwardedCancel:
    master_order_id: MasterOrderId


@dataclass(frozen=True, slots=True)
class ForwardedError:
    """A DomainError as the owner met it, for the asking node to raise."""

    kind: str
    message: str
    reason: str
    details: dict[str, str]
    violations: list[tuple[str, str]]


# The errors a forwarded call can end with, by name (anything else: the owner failed).
_KINDS: dict[str, type[DomainError]] = {
    cls.__name__: cls
    for cls in (
        errors.NotFound,
        errors.AlreadyExists,
        errors.FailedPrecondition,
        errors.Unavailable,
        errors.PermissionDenied,
        errors.ResourceExhausted,
    )
}


def error_json(error: DomainError) -> str:
    kind = "FailedPrecondition" if isinstance(error, StillExecuting) else type(error).__name__
    violations = (
        [(v.field, v.description) for v in error.violations]
        if isinstance(error, errors.InvalidArgument)
        else []
    )
    return msgspec.json.encode(
        ForwardedError(kind, error.message, error.reason, dict(error.details), violations)
    ).decode()


def error_of(text: str) -> DomainError:
    found = msgspec.json.decode(text, type=ForwardedError)
    if found.kind == "InvalidArgument":
        return errors.InvalidArgument(
            [FieldViolation(f, d) for f, d in found.violations],
            reason=found.reason,
            message=found.message,
        )
    cls = _KINDS.get(found.kind)
    if cls is None or cls is errors.ResourceExhausted:
        return Unavailable(found.message, reason=found.reason or "OWNER_FAILED")
    return cls(found.message, reason=found.reason, details=found.details)


Submit = Callable[..., Awaitable[Submission]]
Cancel = Callable[[MasterOrderId], Awaitable[MasterOrder]]


class RequestForwarding:
    def __init__(
        self,
        store: Store,
        url: str,
        *,
        node_id: str,
        owns: Callable[[GroupId], bool],
        owned: Callable[[], list[GroupId]],
        clock: Callable[[], datetime],
        wait_s: float = 30.0,
        poll_s: float = 0.5,
    ) -> None:
        self._store = store
        self._url = url
        self._node_id = node_id
        self.owns = owns
        self._owned = owned
        self._clock = clock
        self._wait_s = wait_s
        self._poll_s = poll_s
        self._waiters: dict[str, asyncio.Event] = {}
        self._work = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._submit: Submit | None = None
        self._close: Submit | None = None
        self._cancel: Cancel | None = None

    def serve(self, *, submit: Submit, close: Submit, cancel: Cancel) -> None:
        """What the owner does with a claimed call: the engine's own submit, close and
        cancel."""
        self._submit, self._close, self._cancel = submit, close, cancel

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="request-forwarding")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def groups_taken(self) -> None:
        """Calls may be waiting for groups just taken."""
        self._work.set()

    # -- the asking node ------------------------------------------------------------------------

    async def submit(
        self, spec: MasterOrderSpec, *, submitted_by: str, audit: AuditRecord | None
    ) -> Submission:
        payload = ForwardedSubmit(spec, submitted_by, audit)
        return await self._ask(spec.group_id, SUBMIT, payload)

    async def close(self, group_id: GroupId, call: ForwardedClose) -> Submission:
        return await self._ask(group_id, CLOSE, call)

    async def cancel(self, group_id: GroupId, master_order_id: MasterOrderId) -> MasterOrder:
        done = await self._ask(group_id, CANCEL, ForwardedCancel(master_order_id))
        return done.master

    async def _ask(self, group_id: GroupId, kind: str, payload: object) -> Submission:
        request_id = new_id("fw")
        done = self._waiters[request_id] = asyncio.Event()
        try:
            request = ForwardedRequest(
                request_id, group_id, kind, msgspec.json.encode(payload).decode()
            )
            await self._store.forwarded.ask(request, node_id=self._node_id, at=self._clock())
            deadline = asyncio.get_running_loop().time() + self._wait_s
            while True:
                found = await self._store.forwarded.get(request_id)
                if found is not None and found.state in ("DONE", "FAILED"):
                    return await self._answer(found)
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    raise Unavailable(
                        f"group {group_id}'s owner has not done the call within "
                        f"{self._wait_s:.0f} s (a takeover under way?); it may still be done: "
                        "send it again with the same client_order_id",
                        reason="OWNER_NOT_ANSWERING",
                        retry_after_s=1.0,
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), min(left, self._poll_s))
                done.clear()
        finally:
            self._waiters.pop(request_id, None)

    async def _answer(self, found: ForwardedRequest) -> Submission:
        if found.error is not None:
            raise error_of(found.error)
        assert found.master_order_id is not None
        master = await self._store.get_master_order(found.master_order_id)
        assert master is not None, f"forwarded call {found.request_id}: no master order"
        return Submission(master, replayed=found.replayed, audited=found.audited)

    # -- the owner ----------------------------------------------------------------------------

    def _heard(self, channel: str, payload: str) -> None:
        if channel == FORWARD_DONE_CHANNEL:
            waiter = self._waiters.get(payload)
            if waiter is not None:
                waiter.set()
        elif self.owns(GroupId(payload)):
            self._work.set()

    async def _run(self) -> None:
        await listen_and_work(
            self._url,
            [FORWARD_CHANNEL, FORWARD_DONE_CHANNEL],
            heard=self._heard,
            wake=self._work,
            work=self._work_round,
            poll_s=self._poll_s,
            name="forwarded calls",
        )

    async def _work_round(self) -> None:
        await self._do_waiting()
        # A waiter whose notification was lost still reads its row.
        for waiter in self._waiters.values():
            waiter.set()

    async def _do_waiting(self) -> None:
        owned = self._owned()
        if not owned or self._submit is None:
            return
        for request in await self._store.forwarded.claim(owned, node_id=self._node_id):
            await self._do(request)

    async def _do(self, request: ForwardedRequest) -> None:
        assert self._submit is not None and self._close is not None and self._cancel is not None
        store, at = self._store.forwarded, self._clock
        try:
            if request.kind == CANCEL:
                cancelled = msgspec.json.decode(request.payload, type=ForwardedCancel)
                submission = Submission(await self._cancel(cancelled.master_order_id))
            elif request.kind == SUBMIT:
                call = msgspec.json.decode(request.payload, type=ForwardedSubmit)
                submission = await self._submit(
                    call.spec, submitted_by=call.submitted_by, audit=call.audit
                )
            else:
                close = msgspec.json.decode(request.payload, type=ForwardedClose)
                submission = await self._close(
                    close.master_order_id,
                    client_order_id=close.client_order_id,
                    fraction=close.fraction,
                    volume=close.volume,
                    submitted_by=close.submitted_by,
                    only_accounts=(
                        None if close.only_accounts is None else frozenset(close.only_accounts)
                    ),
                )
        except DomainError as error:
            if error.reason == "GROUP_OWNED_ELSEWHERE":
                await store.give_back(request.request_id)  # lost the group meanwhile
                return
            await store.finish(request.request_id, at=at(), error=error_json(error))
            return
        except Exception as error:
            log.exception("forwarded call %s failed", request.request_id)
            failed = Unavailable(f"the group's owner failed: {error}", reason="OWNER_FAILED")
            await store.finish(request.request_id, at=at(), error=error_json(failed))
            return
        await store.finish(
            request.request_id,
            at=at(),
            master_order_id=submission.master.master_order_id,
            replayed=submission.replayed,
            audited=submission.audited,
        )
