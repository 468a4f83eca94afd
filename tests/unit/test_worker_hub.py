"""The hub's rules, without a stream: answers by command id, a drop failing the calls in flight,
the wait for a dropped worker within the grace, replacement, refusal, and health."""

from __future__ import annotations

import asyncio

import pytest

from gateway.terminals.protocol import TerminalError, TerminalHealth
from gateway.terminals.remote import (
    BrokerLogin,
    DropReason,
    HostedElsewhere,
    HostedTerminal,
    RemoteTerminal,
    WorkerHub,
    WorkerSession,
)
from gateway.terminals.remote.commands import GetHealth, GetQuote
from gateway.terminals.remote.worker_hub import (
    REMOTE_TERMINALS_HEALTH,
    OutgoingCommand,
    WorkerIdInUse,
)

A, B = BrokerLogin(1, "S"), BrokerLogin(2, "S")


def hosting(*logins: BrokerLogin) -> list[HostedTerminal]:
    return [HostedTerminal(login, backend="sim") for login in logins]


async def next_command(session: WorkerSession) -> OutgoingCommand:
    command = await asyncio.wait_for(session.next_command(), 5)
    assert command is not None
    return command


async def test_answers_reach_their_calls_by_command_id_in_any_order() -> None:
    hub = WorkerHub()
    session = hub.connect("w", hosting(A, B))
    first = asyncio.create_task(RemoteTerminal("acc-a", A, hub).health())
    second = asyncio.create_task(RemoteTerminal("acc-b", B, hub).health())
    to_a, to_b = await next_command(session), await next_command(session)
    assert (to_a.account_id, to_a.login, to_a.command) == ("acc-a", A, GetHealth())
    assert session.resolve(to_b.command_id, TerminalHealth(True, "b"))
    assert session.resolve(to_a.command_id, TerminalHealth(True, "a"))
    assert [(await first).detail, (await second).detail] == ["a", "b"]
    assert not session.resolve(to_a.command_id, TerminalHealth(True, "again"))


async def test_a_drop_fails_every_call_in_flight_as_outcome_unknown() -> None:
    hub = WorkerHub()
    session = hub.connect("w", hosting(A))
    quoting = asyncio.create_task(RemoteTerminal("acc-a", A, hub).quote("EURUSD"))
    await next_command(session)
    hub.disconnect(session, DropReason.STREAM_FAILED, "reset")
    with pytest.raises(TerminalError, match="outcome of the request is unknown"):
        await quoting
    assert await session.next_command() is None


async def test_a_call_waits_for_a_dropped_worker_within_the_grace_and_goes_to_it() -> None:
    hub = WorkerHub(reconnect_grace_s=30)
    hub.disconnect(hub.connect("w", hosting(A)), DropReason.ENDED)
    quoting = asyncio.create_task(RemoteTerminal("acc-a", A, hub).quote("EURUSD"))
    await asyncio.sleep(0)
    assert not quoting.done()
    back = hub.connect("w", hosting(A))
    command = await next_command(back)
    assert command.command == GetQuote("EURUSD")
    back.resolve(command.command_id, TerminalError("at the worker: closed"))
    with pytest.raises(TerminalError, match="at the worker"):
        await quoting


async def test_a_worker_that_stays_away_past_the_grace_fails_the_call() -> None:
    hub = WorkerHub(reconnect_grace_s=0.05)
    hub.disconnect(hub.connect("w", hosting(A)), DropReason.HEARTBEAT_TIMEOUT)
    with pytest.raises(TerminalError, match="did not come back"):
        await RemoteTerminal("acc-a", A, hub).quote("EURUSD")
    with pytest.raises(TerminalError, match="no connected worker hosts"):
        await RemoteTerminal("acc-b", B, hub).quote("EURUSD")


async def test_the_same_worker_id_replaces_its_session_and_another_id_is_refused() -> None:
    hub = WorkerHub()
    old = hub.connect("w", hosting(A))
    quoting = asyncio.create_task(RemoteTerminal("acc-a", A, hub).quote("EURUSD"))
    await next_command(old)
    new = hub.connect("w", hosting(A))
    assert old.drop_reason is DropReason.REPLACED
    with pytest.raises(TerminalError, match="replaced"):
        await quoting
    with pytest.raises(HostedElsewhere) as refused:
        hub.connect("other", hosting(B, A))
    assert (refused.value.login, refused.value.worker_id) == (A, "w")
    assert hub.connected_session(A) is new and hub.connected_session(B) is None


async def test_a_connection_with_another_credential_does_not_replace_the_connected_worker() -> None:
    hub = WorkerHub()
    connected = hub.connect("w", hosting(A), credential="token-1")
    with pytest.raises(WorkerIdInUse):
        hub.connect("w", hosting(A), credential="token-2")
    assert connected.drop_reason is None and hub.connected_session(A) is connected
    again = hub.connect("w", hosting(A), credential="token-1")  # the worker reconnecting
    assert connected.drop_reason is DropReason.REPLACED and hub.connected_session(A) is again


async def test_a_command_its_caller_gave_up_on_is_never_written() -> None:
    hub = WorkerHub()
    session = hub.connect("w", hosting(A))
    terminal = RemoteTerminal("acc-a", A, hub)
    abandoned = asyncio.create_task(terminal.quote("EURUSD"))
    await asyncio.sleep(0)
    abandoned.cancel()
    kept = asyncio.create_task(terminal.quote("XAUUSD"))
    await asyncio.sleep(0)
    assert (await next_command(session)).command == GetQuote("XAUUSD")
    kept.cancel()


async def test_health_tells_each_worker_and_whether_every_remote_account_is_reachable() -> None:
    hub = WorkerHub()
    terminal = RemoteTerminal("acc-a", A, hub)
    assert hub.health() == {REMOTE_TERMINALS_HEALTH: False}
    session = hub.connect("w", hosting(A))
    assert hub.health() == {"worker/w": True, REMOTE_TERMINALS_HEALTH: True}
    hub.disconnect(session, DropReason.ENDED)
    assert hub.health() == {"worker/w": False, REMOTE_TERMINALS_HEALTH: False}
    assert not (await terminal.health()).connected
    await terminal.close()
    assert hub.health()[REMOTE_TERMINALS_HEALTH]
    view = hub.view(A)
    assert (view.worker_id, view.backend, view.connected) == ("w", "sim", False)


async def test_commands_waiting_together_are_taken_together_and_the_end_stays_last() -> None:
    hub = WorkerHub()
    session = hub.connect("w", hosting(A, B))
    calls = [
        asyncio.create_task(RemoteTerminal(f"acc-{i}", login, hub).health())
        for i, login in enumerate((A, B, A))
    ]
    await asyncio.sleep(0)  # every call is queued
    abandoned = calls.pop(1)
    abandoned.cancel()
    await asyncio.gather(abandoned, return_exceptions=True)
    first = await next_command(session)
    more = session.more_commands(10)
    # The abandoned call's command is never written.
    assert [first.account_id, *(c.account_id for c in more)] == ["acc-0", "acc-2"]
    assert session.more_commands(10) == []

    late = asyncio.create_task(RemoteTerminal("acc-3", B, hub).health())
    await asyncio.sleep(0)
    hub.disconnect(session, DropReason.STREAM_FAILED, "reset")
    assert session.more_commands(10) == []  # the session ended: nothing more to write...
    assert await session.next_command() is None  # ...and the end is still seen
    await asyncio.gather(*calls, late, return_exceptions=True)
