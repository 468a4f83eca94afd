"""StreamRegistry: an ended stream's status takes the place of whatever its servicer would send
next, whether the servicer was waiting or the call was in the middle of a send; and a stream of
"all my accounts" whose key reaches none of them any more ends instead of showing everything."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.api.stream_registry import StreamRegistry, current_stream
from gateway.domain.access import Principal, Role
from gateway.domain.errors import PermissionDenied, Unauthenticated

MANAGER = Principal(
    key_id="0123456789abcdef", name="desk", role=Role.MANAGER, group_ids=frozenset({"grp_a"})
)


class Reach:
    """AccessScope's answer, set by the test."""

    def __init__(self, *account_ids: str) -> None:
        self.account_ids = frozenset(account_ids)

    async def accounts_of(self, principal: Principal) -> frozenset[str]:
        return self.account_ids


def registry(reach: Reach | None = None) -> StreamRegistry:
    # Revocations and group changes read neither the key store nor the authenticator.
    return StreamRegistry(scope=reach or Reach(), keys=None, authenticator=None)  # type: ignore[arg-type]


class Servicer:
    """A servicer's stream: one response, then a wait for what never comes."""

    def __init__(self) -> None:
        self.waiting = asyncio.Event()
        self.closed = asyncio.Event()
        self.hook_ran = False

    async def responses(self) -> AsyncIterator[str]:
        stream = current_stream()
        assert stream is not None
        stream.on_end(self._hook)
        try:
            yield "first"
            self.waiting.set()
            await asyncio.Event().wait()
            yield "never"
        finally:
            self.closed.set()

    def _hook(self) -> None:
        self.hook_ran = True


async def test_a_stream_waiting_in_its_servicer_ends_with_its_status_at_once() -> None:
    streams = registry()
    servicer = Servicer()

    async def consume() -> list[str]:
        return [r async for r in streams.guarded(MANAGER, servicer.responses())]

    call = asyncio.create_task(consume())
    await servicer.waiting.wait()
    streams.key_revoked(MANAGER.key_id)
    with pytest.raises(Unauthenticated) as ended:
        await asyncio.wait_for(call, 1.0)
    assert ended.value.reason == "API_KEY_REVOKED"
    assert servicer.closed.is_set() and servicer.hook_ran
    assert streams.open_count == 0


async def test_a_stream_ended_while_sending_sends_nothing_more_and_is_not_cancelled() -> None:
    streams = registry()
    servicer = Servicer()
    guarded = streams.guarded(MANAGER, servicer.responses())
    assert await anext(guarded) == "first"
    # The guard is parked at its yield, as while gRPC writes the response: this task must not
    # be cancelled (gRPC would drop the call without a status), but the hooks run now.
    streams.key_revoked(MANAGER.key_id)
    assert servicer.hook_ran
    await asyncio.sleep(0)  # a cancellation of this task would land here
    with pytest.raises(Unauthenticated):
        await anext(guarded)
    assert servicer.closed.is_set()
    assert streams.open_count == 0


async def test_a_key_revoked_while_its_call_was_admitted_opens_no_stream() -> None:
    streams = registry()
    streams.key_revoked(MANAGER.key_id)
    with pytest.raises(Unauthenticated):
        await anext(streams.guarded(MANAGER, Servicer().responses()))


async def test_all_my_accounts_narrows_and_ends_once_none_is_left() -> None:
    reach = Reach("acc_1", "acc_2")
    streams = registry(reach)
    narrowed: list[frozenset[str]] = []
    ended: list[BaseException] = []

    async def responses() -> AsyncIterator[str]:
        stream = current_stream()
        assert stream is not None
        shown = await stream.scope_to(reach.account_ids, explicit=False, narrow=narrowed.append)
        yield ",".join(sorted(shown))
        await asyncio.Event().wait()
        yield "never"

    async def consume() -> None:
        try:
            async for _ in streams.guarded(MANAGER, responses()):
                pass
        except PermissionDenied as error:
            ended.append(error)

    call = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    reach.account_ids = frozenset({"acc_1"})
    await streams.group_changed("grp_a")
    assert narrowed == [frozenset({"acc_1"})] and not ended
    # Narrowed to nothing, a filter of no account would mean every account: it ends instead.
    reach.account_ids = frozenset()
    await streams.group_changed("grp_a")
    await asyncio.wait_for(call, 1.0)
    assert [e.reason for e in ended if isinstance(e, PermissionDenied)] == ["ACCESS_SCOPE_CHANGED"]
    assert narrowed == [frozenset({"acc_1"})]
