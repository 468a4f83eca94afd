"""Who the MT4 bridge lets in, and what a connection costs it before its hello is accepted
(issue 28): the first frame is small, connections waiting for their hello are few and time out,
tokens are long, failed hellos from one address are throttled, and a hello nested too deeply is
refused like any malformed one. Real TCP connections to a real bridge server."""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from typing import Any

import pytest

from gateway.domain.peer_authentication import FailurePolicy
from gateway.terminals.mt4 import BridgeSettings, SessionSettings
from tests.fakes.fake_mt4_ea import FakeMt4Ea
from tests.fakes.mt4_bridge import LOGIN, TOKEN, Mt4Bridge, mt4_bridge

pytestmark = pytest.mark.timeout(30)

SESSION = SessionSettings(heartbeat_s=0.05, timeout_s=5.0, trade_timeout_s=10.0)


def hello(token: str = TOKEN, **fields: Any) -> dict[str, Any]:
    return {
        "type": "hello",
        "protocol_min": 1,
        "protocol_max": 1,
        "login": LOGIN,
        "server": "Sim-Demo",
        "token": token,
        "ea_version": "probe",
        "terminal_build": 1420,
        "company": "Simulated Broker",
        **fields,
    }


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


async def first_answer(
    bridge: Mt4Bridge, data: bytes
) -> tuple[dict[str, Any], asyncio.StreamReader, asyncio.StreamWriter]:
    """Connects, writes `data`, and reads the bridge's first frame."""
    reader, writer = await asyncio.open_connection(*bridge.server.address)
    writer.write(data)
    await writer.drain()
    (length,) = struct.unpack(">I", await reader.readexactly(4))
    return json.loads(await reader.readexactly(length)), reader, writer


async def received_until_closed(reader: asyncio.StreamReader) -> bytes:
    """What arrives until the bridge closes the connection (aborted: a reset, or an end)."""
    try:
        return await reader.read()
    except ConnectionResetError:
        return b""


async def answer_to(bridge: Mt4Bridge, data: bytes) -> dict[str, Any]:
    answer, reader, writer = await first_answer(bridge, data)
    assert await reader.read() == b""  # and the connection is closed
    writer.close()
    return answer


async def test_a_first_frame_longer_than_a_hello_is_refused_without_being_read() -> None:
    # The session's frames may hold a megabyte; a connection that has not said hello may not
    # make the bridge wait for (and hold) one.
    settings = BridgeSettings(session=SESSION, hello_timeout_s=20.0)
    async with mt4_bridge(connect=False, settings=settings) as bridge:
        answer = await answer_to(bridge, struct.pack(">I", 1 << 20) + b"{" * 1000)
        assert (answer["type"], answer["reason"]) == ("refused", "malformed")
        assert "above the limit of 4096" in answer["detail"]


async def test_connections_waiting_for_their_hello_are_capped_and_time_out() -> None:
    settings = BridgeSettings(session=SESSION, hello_timeout_s=3.0, max_pending_connections=3)
    async with mt4_bridge(connect=False, settings=settings) as bridge:
        idle = [await asyncio.open_connection(*bridge.server.address) for _ in range(3)]
        async with asyncio.timeout(10):
            while True:  # accepted one by one as the server's loop gets to them
                if bridge.server.pending_connections == 3:
                    break
                await asyncio.sleep(0.01)
        # One more is closed as it comes, without a word (no refusal after a wait for its
        # hello), while the three still wait.
        reader, writer = await asyncio.open_connection(*bridge.server.address)
        assert await received_until_closed(reader) == b""
        writer.close()
        assert bridge.server.pending_connections == 3
        # Their time up, each is refused and closed, and the EA gets in.
        for idle_reader, idle_writer in idle:
            (length,) = struct.unpack(">I", await idle_reader.readexactly(4))
            answer = json.loads(await idle_reader.readexactly(length))
            assert (answer["reason"], answer["detail"]) == ("malformed", "no hello in time")
            idle_writer.close()
        assert bridge.server.pending_connections == 0
        assert (await bridge.ea.connect())["type"] == "welcome"


async def test_a_one_character_token_configured_for_a_login_lets_nobody_in(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with mt4_bridge(connect=False, token="x") as bridge:
        answer = await bridge.ea.connect()
        assert (answer["type"], answer["reason"]) == ("refused", "unauthorized")
        assert bridge.server.session(LOGIN) is None
    assert "shorter than 16 characters" in caplog.text


async def test_guesses_from_one_address_are_throttled_and_never_displace_the_ea(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = BridgeSettings(
        session=SESSION, hello_timeout_s=2.0, failures=FailurePolicy(burst=3, refill_s=60.0)
    )
    caplog.set_level(logging.WARNING)
    async with mt4_bridge(settings=settings) as bridge:
        session = bridge.server.session(LOGIN)
        assert session is not None
        host, port = bridge.server.address
        for guess in range(3):
            guesser = FakeMt4Ea(bridge.broker, LOGIN, host=host, port=port, token=f"x{guess}")
            answer = await guesser.connect()
            assert (answer["reason"], answer["detail"]) == (
                "unauthorized",
                "unknown login or wrong token",
            )
        # The allowance spent, even the right token is refused unchecked: guessing it
        # meanwhile gains nothing.
        lucky = FakeMt4Ea(bridge.broker, LOGIN, host=host, port=port, token=TOKEN)
        answer = await lucky.connect()
        assert answer["reason"] == "unauthorized"
        assert answer["detail"].startswith("too many failed hellos from this address")
        assert bridge.server.session(LOGIN) is session and not session.is_closed
        assert (await bridge.terminal.account_info()).login == LOGIN
    assert caplog.text.count("refused: wrong token") == 3
    assert "hellos from 127.0.0.1 throttled after 3 failures" in caplog.text


async def test_a_hello_nested_too_deeply_is_refused_as_malformed() -> None:
    # 1,900 levels fit in a hello's 4 KiB; Python's parser gives up at about 1,000.
    nested = json.dumps(hello()).encode()[:-1] + b',"x":' + b"[" * 1_900 + b"]" * 1_900 + b"}"
    async with mt4_bridge(connect=False) as bridge:
        answer = await answer_to(bridge, frame(nested))
        assert (answer["type"], answer["reason"]) == ("refused", "malformed")
        assert "nests 1901 levels deep" in answer["detail"]
        assert (await bridge.ea.connect())["type"] == "welcome"
