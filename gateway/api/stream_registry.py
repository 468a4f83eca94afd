"""Every open streaming call of every API key, so that a revocation or a change of reach ends
or narrows the streams at once instead of at their callers' deadlines.

A stream outlives the check that admitted it: a SubscribeFills opened before RevokeApiKey used
to go on delivering fills for as long as its caller kept it open. So each mam.v1 stream is
registered here (the access interceptor wraps its responses with `StreamRegistry.guarded`),
with the key it was opened with and, for a stream scoped to accounts, the accounts it shows.

- RevokeApiKey (`key_revoked`): the key's streams end with UNAUTHENTICATED, API_KEY_REVOKED.
- Accounts leaving a manager's groups (UpdateGroup: `group_changed`, DeleteAccount:
  `accounts_left`): a stream whose request named such an account ends with PERMISSION_DENIED,
  ACCESS_SCOPE_CHANGED (the caller asked for that account); one that shows "all my accounts"
  is narrowed silently, and ends like the former once none is left. Narrowed, never widened:
  an account that joins later is seen by a stream opened later.
- A key revoked, deleted or changed in the database by another tool (`mam-gateway keys
  revoke`): every `recheck_s` the keys of the open streams are read again (a query per 500
  keys), and their streams end as above.

Ending a stream cancels its call's task where it waits inside the servicer (the servicer's own
cleanup runs, as on a client's disconnect), and the guard turns that cancellation into the
stream's status. A call parked in gRPC's write of a response (a reader that does not read) is
not cancelled there, since gRPC would then drop the call without a status: its hooks
(`OpenStream.on_end`) free what it holds at once, and the status follows the write. Either
way nothing the servicer produces after the end is sent.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

from gateway.api.access_rules import AccessScope
from gateway.api.authenticator import Authenticator
from gateway.domain.access import ApiKey, Principal
from gateway.domain.errors import DomainError, PermissionDenied, Unauthenticated
from gateway.store.access import AccessStore

log = logging.getLogger(__name__)

# How often the keys of open streams are read again by default: a key revoked straight in the
# database ends its streams within this time.
RECHECK_S = 5.0

_STREAM: contextvars.ContextVar[OpenStream | None] = contextvars.ContextVar(
    "mam_stream", default=None
)


def current_stream() -> OpenStream | None:
    """The registered stream being served (None for a unary call, or with authentication
    off: then no key can be revoked and every caller reaches everything)."""
    return _STREAM.get()


class OpenStream:
    """One streaming call: the key it was opened with and what it shows."""

    def __init__(self, registry: StreamRegistry, principal: Principal, task: asyncio.Task[Any]):
        self.principal = principal
        # Why the stream ends, once it must; raised to its caller as the stream's status.
        self.ending: DomainError | None = None
        # True while a response is in gRPC's hands (the task must not be cancelled then).
        self.sending = False
        self.closed = False
        # The accounts the stream shows (None: it is not scoped to accounts) and whether its
        # request named them (explicit) or took the key's whole reach.
        self.accounts: frozenset[str] | None = None
        self.explicit = False
        self._narrow: Callable[[frozenset[str]], None] | None = None
        self._on_end: list[Callable[[], object]] = []
        self._registry = registry
        self._task = task
        self._ended_at = 0.0
        # Cancellations of the task this stream asked for: answered by its status, not left
        # counted on the task (asyncio.timeout and TaskGroup read the count).
        self._cancels = 0

    def on_end(self, hook: Callable[[], object]) -> None:
        """`hook` runs the moment the stream is ended (not when it finishes on its own): for
        what must stop even while the call waits on a slow reader, such as a reader of
        further submissions."""
        self._on_end.append(hook)

    async def scope_to(
        self,
        accounts: frozenset[str],
        *,
        explicit: bool,
        narrow: Callable[[frozenset[str]], None],
    ) -> frozenset[str]:
        """Registers the accounts the stream shows; returns them as the key reaches them now.

        `explicit`: the request named them, and the stream ends (PERMISSION_DENIED) when one
        leaves the key's reach; else `narrow` is told the accounts that are left. The reach
        is read again after registering: a change committed while the call was being
        admitted is either seen by that read or followed by a pass that sees this stream.
        """
        if self.principal.is_admin or not accounts:
            return accounts
        self.accounts, self.explicit, self._narrow = accounts, explicit, narrow
        reach = await self._registry.scope.accounts_of(self.principal)
        refusal = self.hold_to(reach)
        if refusal is not None:
            raise refusal
        assert self.accounts is not None
        return self.accounts

    def end(self, error: DomainError) -> None:
        """Ends the stream with `error` as its status, promptly, from any task; the first
        reason wins."""
        if self.closed or self.ending is not None:
            return
        self.ending = error
        self._ended_at = asyncio.get_running_loop().time()
        for hook in self._on_end:
            try:
                hook()
            except Exception:
                log.exception("a hook of an ended stream failed")
        if not self.sending:
            self._cancel()

    def status(self) -> DomainError:
        """The status of an ended stream, raised by its own task."""
        while self._cancels and self._task.cancelling():
            self._cancels -= 1
            self._task.uncancel()  # the cancellation was ours, and it is answered
        assert self.ending is not None
        return self.ending

    def end_again_if_stuck(self, ended_before: float) -> None:
        """Cancels the task again if the stream was ended before `ended_before` (loop time)
        and is still open: its servicer swallowed the cancellation (asyncio.wait_for can, on
        Python 3.11, when what it waited for finished in the same step)."""
        if (
            self.ending is not None
            and not self.closed
            and not self.sending
            and self._ended_at < ended_before
        ):
            self._cancel()

    def _cancel(self) -> None:
        self._cancels += 1
        self._task.cancel()

    def hold_to(self, reach: frozenset[str]) -> DomainError | None:
        """Keeps the stream within `reach`: narrows it, or says why it must end."""
        accounts = self.accounts
        if accounts is None or self.closed or self.ending is not None:
            return None
        kept = accounts & reach
        if kept == accounts:
            return None
        if self.explicit or not kept:
            gone = sorted(accounts - reach)
            return PermissionDenied(
                f"account {gone[0]!r} is no longer within this API key's reach; this stream "
                "ended (open it again for what the key reaches now)",
                reason="ACCESS_SCOPE_CHANGED",
            )
        self.accounts = kept
        if self._narrow is not None:
            self._narrow(kept)
        return None


class StreamRegistry:
    def __init__(
        self,
        *,
        scope: AccessScope,
        keys: AccessStore,
        authenticator: Authenticator,
        recheck_s: float = RECHECK_S,
    ) -> None:
        self.scope = scope
        self._keys = keys
        self._authenticator = authenticator
        self._recheck_s = recheck_s
        self._by_key: dict[str, set[OpenStream]] = {}
        # Keys revoked while this process runs: a call admitted just before its key's
        # revocation must not open a stream after it.
        self._revoked: set[str] = set()
        self._rechecking: asyncio.Task[None] | None = None

    @property
    def open_count(self) -> int:
        return sum(len(streams) for streams in self._by_key.values())

    def start(self) -> None:
        self._rechecking = asyncio.get_running_loop().create_task(self._recheck_forever())

    async def stop(self) -> None:
        task, self._rechecking = self._rechecking, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def guarded(
        self, principal: Principal, responses: AsyncIterator[Any]
    ) -> AsyncIterator[Any]:
        """The servicer's responses, registered as one open stream of `principal`'s key, until
        they end or the stream is ended (then its status is raised in their place)."""
        if principal.key_id in self._revoked:
            raise _revoked(principal.key_id)
        task = asyncio.current_task()
        assert task is not None  # grpc.aio serves each call in a task of its own
        stream = OpenStream(self, principal, task)
        self._by_key.setdefault(principal.key_id, set()).add(stream)
        # The servicer runs in this task's context: current_stream() finds the stream.
        _STREAM.set(stream)
        try:
            while True:
                try:
                    response = await anext(responses)
                except StopAsyncIteration:
                    if stream.ending is not None:
                        raise stream.status() from None  # an ended stream never ends OK
                    return
                except asyncio.CancelledError:
                    if stream.ending is None:
                        raise  # the caller went away
                    raise stream.status() from None
                if stream.ending is not None:
                    # The servicer swallowed the cancellation: what it made is not sent.
                    raise stream.status()
                stream.sending = True
                try:
                    yield response
                finally:
                    stream.sending = False
                if stream.ending is not None:
                    raise stream.status()
        finally:
            # Unregistered before the servicer is closed: an end() from now on cannot cancel
            # the task while it sends the status.
            stream.closed = True
            streams = self._by_key.get(principal.key_id)
            if streams is not None:
                streams.discard(stream)
                if not streams:
                    del self._by_key[principal.key_id]
            aclose = getattr(responses, "aclose", None)
            if aclose is not None:
                await aclose()

    def key_revoked(self, key_id: str) -> None:
        """RevokeApiKey: the key's streams end now (UNAUTHENTICATED, API_KEY_REVOKED)."""
        self._revoked.add(key_id)
        for stream in list(self._by_key.get(key_id, ())):
            stream.end(_revoked(key_id))

    async def group_changed(self, group_id: str) -> None:
        """UpdateGroup: each open stream of a key naming the group is held to the key's reach
        as it is now. Awaited before the change is answered, so that from the answer on no
        stream shows an account its key no longer reaches."""
        await self._hold_to_reach([s for s in self._scoped() if group_id in s.principal.group_ids])

    async def accounts_left(self, account_ids: Collection[str]) -> None:
        """DeleteAccount: each open stream showing one of the accounts is held to its key's
        reach as it is now, before the deletion is answered."""
        left = frozenset(account_ids)
        await self._hold_to_reach(
            [s for s in self._scoped() if s.accounts and not s.accounts.isdisjoint(left)]
        )

    def _scoped(self) -> list[OpenStream]:
        return [
            stream
            for streams in self._by_key.values()
            for stream in streams
            if stream.accounts is not None
        ]

    async def _hold_to_reach(self, streams: list[OpenStream]) -> None:
        reach_of: dict[Principal, frozenset[str]] = {}
        for stream in streams:
            principal = stream.principal
            if principal not in reach_of:
                reach_of[principal] = await self.scope.accounts_of(principal)
            refusal = stream.hold_to(reach_of[principal])
            if refusal is not None:
                stream.end(refusal)

    async def recheck(self) -> None:
        """Reads the keys of the open streams again (a query per 500 keys) and ends the
        streams of keys revoked, deleted or changed since their streams opened: changes made
        beside this process, straight in the database (`mam-gateway keys revoke`)."""
        key_ids = sorted(self._by_key)
        if not key_ids:
            return
        stored = await self._keys.get_api_keys(key_ids)
        now = asyncio.get_running_loop().time()
        for key_id in key_ids:
            key = stored.get(key_id)
            if key is not None and key.is_revoked:
                self._revoked.add(key_id)
                self._authenticator.forget(key_id)  # calls with it are refused from now on too
            for stream in list(self._by_key.get(key_id, ())):
                refusal = _refusal(key_id, key, stream.principal)
                if refusal is not None:
                    stream.end(refusal)
                stream.end_again_if_stuck(now - self._recheck_s)

    async def _recheck_forever(self) -> None:
        while True:
            await asyncio.sleep(self._recheck_s)
            try:
                await self.recheck()
            except Exception:
                log.warning(
                    "the keys of open streams could not be read again; next try in %g s",
                    self._recheck_s,
                    exc_info=True,
                )


def _revoked(key_id: str) -> Unauthenticated:
    return Unauthenticated(f"API key {key_id} is revoked", reason="API_KEY_REVOKED")


def _refusal(key_id: str, key: ApiKey | None, opened_with: Principal) -> DomainError | None:
    """Why a stream opened with `opened_with` must end, now that its key reads `key`."""
    if key is None:
        return Unauthenticated(f"API key {key_id} no longer exists", reason="API_KEY_INVALID")
    if key.is_revoked:
        return _revoked(key_id)
    now = key.principal
    if (now.role, now.group_ids, now.account_ids) != (
        opened_with.role,
        opened_with.group_ids,
        opened_with.account_ids,
    ):
        return PermissionDenied(
            f"API key {key_id} was changed (its role, groups or accounts); this stream ended "
            "(open it again for what the key reaches now)",
            reason="ACCESS_SCOPE_CHANGED",
        )
    return None
