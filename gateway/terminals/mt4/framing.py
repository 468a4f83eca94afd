"""Frames of the MT4 bridge: a 4-byte big-endian length, then that many bytes of UTF-8 JSON.

One frame holds one JSON object with a string "type". Decoding is strict, because both ends
are ours and anything unexpected is a bug or an attack: no floats (money, prices and volumes
travel as decimal strings), no NaN, no duplicate keys, no frame above the negotiated maximum,
no nesting deeper than MAX_NESTING (Python's parser recurses, and a payload of nothing but
brackets would exhaust the interpreter's stack).
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
from collections.abc import Mapping
from itertools import accumulate
from typing import Any

LENGTH_PREFIX = struct.Struct(">I")
DEFAULT_MAX_FRAME_BYTES = 1 << 20
# Objects and arrays inside one another at most: the deepest messages of protocols 1 and 2 (a
# `found` answer, an `orders_changed` push: records in arrays in the message) are 3 levels deep.
MAX_NESTING = 16
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKETS = bytes(set(range(256)) - set(b"{}[]"))
# +1 for an opening bracket, -1 for a closing one (indexed by the byte).
_DEPTH_STEP = [1 if byte in b"{[" else -1 for byte in range(256)]


class FrameError(Exception):
    """The peer broke the framing or encoding rules: the connection cannot go on."""


class ConnectionClosed(Exception):
    """The peer closed the connection (possibly mid-frame)."""


def encode_frame(message: Mapping[str, Any], *, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> bytes:
    """The frame of one message. ASCII-only JSON (other characters as \\u escapes), so the
    EA's parser never has to decode UTF-8 multi-byte sequences."""
    _refuse_floats(message)
    payload = json.dumps(message, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    data = payload.encode("ascii")
    if len(data) > max_bytes:
        raise FrameError(f"message of {len(data)} bytes above the frame limit of {max_bytes}")
    return LENGTH_PREFIX.pack(len(data)) + data


def nesting_depth(payload: bytes) -> int:
    """How deep objects and arrays nest in a JSON payload (brackets inside strings do not
    count). Linear in the payload and without recursion, so it runs before the parser does."""
    brackets = _JSON_STRING.sub(b"", payload).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


def decode_payload(payload: bytes) -> dict[str, Any]:
    """The message a frame's payload holds."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise FrameError(f"payload is not UTF-8: {error}") from None
    depth = nesting_depth(payload)
    if depth > MAX_NESTING:
        raise FrameError(f"payload nests {depth} levels deep, above the limit of {MAX_NESTING}")
    try:
        message = json.loads(
            text,
            parse_float=_refuse_float,
            parse_constant=_refuse_constant,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as error:
        raise FrameError(f"payload is not JSON: {error}") from None
    except RecursionError:  # not reached within MAX_NESTING; kept as the parser's own guard
        raise FrameError("payload nests too deeply") from None
    if not isinstance(message, dict):
        raise FrameError("payload is not a JSON object")
    kind = message.get("type")
    if not isinstance(kind, str) or not kind:
        raise FrameError("message without a string 'type'")
    return message


async def read_frame(reader: asyncio.StreamReader, *, max_bytes: int) -> bytes:
    """The next frame's payload. Raises ConnectionClosed at the end of the stream and
    FrameError for a length of 0 or above `max_bytes` (its payload is never read)."""
    try:
        header = await reader.readexactly(LENGTH_PREFIX.size)
    except asyncio.IncompleteReadError as error:
        raise ConnectionClosed("connection closed") from error
    (length,) = LENGTH_PREFIX.unpack(header)
    if length == 0:
        raise FrameError("empty frame")
    if length > max_bytes:
        raise FrameError(f"frame of {length} bytes above the limit of {max_bytes}")
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError as error:
        raise ConnectionClosed(
            f"connection closed inside a frame ({len(error.partial)} of {length} bytes)"
        ) from error


async def read_message(reader: asyncio.StreamReader, *, max_bytes: int) -> dict[str, Any]:
    return decode_payload(await read_frame(reader, max_bytes=max_bytes))


def _refuse_float(text: str) -> Any:
    raise FrameError(f"number {text} has a fraction or exponent: decimals travel as strings")


def _refuse_constant(text: str) -> Any:
    raise FrameError(f"{text} is not a JSON value")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise FrameError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _refuse_floats(value: object) -> None:
    if isinstance(value, float):
        raise FrameError("a float in an outgoing message: decimals travel as strings")
    if isinstance(value, Mapping):
        for item in value.values():
            _refuse_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_floats(item)
