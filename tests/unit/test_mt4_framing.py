"""Frames of the MT4 bridge: 4-byte big-endian length + ASCII/UTF-8 JSON, strictly decoded."""

from __future__ import annotations

import asyncio
import struct

import pytest

from gateway.terminals.mt4.framing import (
    ConnectionClosed,
    FrameError,
    decode_payload,
    encode_frame,
    read_frame,
    read_message,
)


def stream(data: bytes, *, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


def test_a_frame_is_a_big_endian_length_then_compact_json() -> None:
    frame = encode_frame({"type": "quote", "id": "r-1", "symbol": "EURUSD"})
    assert frame[:4] == struct.pack(">I", len(frame) - 4)
    assert frame[4:] == b'{"type":"quote","id":"r-1","symbol":"EURUSD"}'


def test_text_beyond_ascii_travels_escaped_so_the_ea_parses_ascii_only() -> None:
    frame = encode_frame({"type": "bye", "reason": "fermé €"})
    assert frame[4:].isascii()
    assert decode_payload(frame[4:])["reason"] == "fermé €"


async def test_messages_read_back_one_frame_at_a_time() -> None:
    first = {"type": "heartbeat"}
    second = {"type": "orders", "id": "r-2", "orders": [{"ticket": 7, "lots": "0.10"}]}
    reader = stream(encode_frame(first) + encode_frame(second))
    assert await read_message(reader, max_bytes=1024) == first
    assert await read_message(reader, max_bytes=1024) == second
    with pytest.raises(ConnectionClosed):
        await read_message(reader, max_bytes=1024)


async def test_a_frame_above_the_limit_is_refused_without_reading_its_payload() -> None:
    # No payload follows and no EOF: reading it would hang; the limit is checked first.
    reader = stream(struct.pack(">I", 2_000_000), eof=False)
    with pytest.raises(FrameError, match="above the limit"):
        await read_frame(reader, max_bytes=1 << 20)


async def test_an_empty_frame_is_refused() -> None:
    with pytest.raises(FrameError, match="empty"):
        await read_frame(stream(struct.pack(">I", 0)), max_bytes=1024)


async def test_a_connection_closed_inside_a_frame_is_a_closed_connection() -> None:
    with pytest.raises(ConnectionClosed, match="3 of 10 bytes"):
        await read_frame(stream(struct.pack(">I", 10) + b'{"t'), max_bytes=1024)
    with pytest.raises(ConnectionClosed):
        await read_frame(stream(b"\x00\x00"), max_bytes=1024)


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b"{type: quote}", "not JSON"),
        (b'["type", "quote"]', "not a JSON object"),
        (b'{"id": "r-1"}', "without a string 'type'"),
        (b'{"type": ""}', "without a string 'type'"),
        (b'{"type": 5}', "without a string 'type'"),
        (b'{"type": "quote", "bid": 1.0845}', "decimals travel as strings"),
        (b'{"type": "quote", "bid": 1e5}', "decimals travel as strings"),
        (b'{"type": "quote", "bid": NaN}', "not a JSON value"),
        (b'{"type": "quote", "type": "orders"}', "duplicate key"),
    ],
)
def test_payloads_that_break_the_rules_are_refused(payload: bytes, why: str) -> None:
    with pytest.raises(FrameError, match=why):
        decode_payload(payload)


def test_outgoing_floats_are_refused_even_nested() -> None:
    with pytest.raises(FrameError, match="float"):
        encode_frame({"type": "orders", "orders": [{"lots": 0.1}]})


def test_an_outgoing_message_above_the_limit_is_refused() -> None:
    with pytest.raises(FrameError, match="above the frame limit"):
        encode_frame({"type": "bye", "reason": "x" * 100}, max_bytes=64)


def test_a_payload_nested_deeper_than_the_limit_is_refused_before_the_parser_recurses() -> None:
    # Deeper than the interpreter's recursion limit: Python's parser would raise RecursionError.
    deep = b'{"type":"hello","x":' + b"[" * 5_000 + b"]" * 5_000 + b"}"
    with pytest.raises(FrameError, match="nests 5001 levels deep"):
        decode_payload(deep)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = '{"type":"bye","reason":"' + "[{" * 100 + '\\"]"}'
    assert decode_payload(text.encode())["reason"] == "[{" * 100 + '"]'
