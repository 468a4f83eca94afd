"""Fills on the wire for SubscribeFills: each fill's mam.v1 Fill encoded once, when it is stored,
and every FillBatch assembled from those bytes.

Why: building and serializing a Fill message costs about 10 µs, and a replay or a live fan-out
did it for every fill, for every subscriber. The store keeps each fill's serialized message
(`encode`, given to `Store.open(fill_encoder=...)`), and the live bus carries it: a subscriber's
batch is then the stored bytes joined, because protobuf encodes a repeated message field as each
element's (tag, length, bytes) in turn. Joining 1,000 of them and parsing the result into the
response costs about 0.5 ms. A fill stored without a message (before revision 0010) is encoded
here when it is sent, from the Fill the store read instead.

A replay (`stored_batches`) reads several messages' worth of fills per query, and reads the next
page while the one before is being sent: with the encoding gone, the store read is most of what
is left.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence

from gateway._proto.mam.v1 import order_pb2
from gateway._proto.mam.v1 import trading_service_pb2 as pb
from gateway.api.mapping import fill_to_proto
from gateway.domain.fills import Fill
from gateway.store import CommittedFill, FillFilter, Store

# Messages' worth of stored fills read per query of a replay: fewer, larger reads cost less per
# fill (SQLite, pages of 1,000 against 5,000: about 380,000 against 490,000 rows/s).
REPLAY_PAGE_BATCHES = 5

# Protobuf wire types: a varint, and length-delimited bytes (strings, messages).
_VARINT, _LEN = 0, 2


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(message: type[object], field: str, wire_type: int) -> bytes:
    number = message.DESCRIPTOR.fields_by_name[field].number  # type: ignore[attr-defined]
    return _varint(number << 3 | wire_type)


_FILL_TAG = _tag(order_pb2.FillBatch, "fills", _LEN)
_LAST_SEQUENCE_TAG = _tag(order_pb2.FillBatch, "last_sequence", _VARINT)
_BATCH_TAG = _tag(pb.SubscribeFillsResponse, "batch", _LEN)
# Each fill's header (its tag and length), made ahead for every length up to two bytes of
# varint; a fill message is about 170 bytes.
_FILL_HEADERS = [_FILL_TAG + _varint(n) for n in range(1 << 14)]


def encode(fill: Fill) -> bytes:
    """A numbered fill's message as every subscriber receives it: the Store's fill encoder."""
    return fill_to_proto(fill).SerializeToString()


def batch(messages: Sequence[bytes], last_sequence: int) -> pb.SubscribeFillsResponse:
    """The response carrying a FillBatch of `messages` (encoded Fills, in sequence order)."""
    headers = _FILL_HEADERS
    try:
        parts = [part for message in messages for part in (headers[len(message)], message)]
    except IndexError:  # a message of 16 KiB or more: never seen, but not refused
        parts = [part for m in messages for part in (_FILL_TAG + _varint(len(m)), m)]
    if last_sequence:
        parts.append(_LAST_SEQUENCE_TAG + _varint(last_sequence))
    body = b"".join(parts)
    return pb.SubscribeFillsResponse.FromString(_BATCH_TAG + _varint(len(body)) + body)


def stored_batch(page: Sequence[tuple[int, bytes | Fill]]) -> pb.SubscribeFillsResponse:
    """A batch of what Store.encoded_fills_after read (not nothing): the stored messages as
    they are, the fills stored without one encoded now."""
    messages = [m if isinstance(m, bytes) else encode(m) for _, m in page]
    return batch(messages, page[-1][0])


def committed_batch(fills: Sequence[CommittedFill]) -> pb.SubscribeFillsResponse:
    """A batch of live fills (FillBus), with the messages they were stored with."""
    return batch(
        [encode(f.fill) if f.wire is None else f.wire for f in fills], fills[-1].fill.sequence
    )


async def stored_batches(
    store: Store, after: int, fill_filter: FillFilter, *, batch_size: int
) -> AsyncGenerator[pb.SubscribeFillsResponse]:
    """The stored fills after `after` that the filter matches, `batch_size` a response, until
    the store has no more. Each page of the store is read while the one before is sent.

    A read that is no longer wanted (the call ended, or the caller closed this generator) is
    left to finish on its own rather than cancelled half way through its query: it is one page.
    At most two pages are held per replay, the one being sent and the next.
    """
    page_size = batch_size * REPLAY_PAGE_BATCHES

    def read(sequence: int) -> asyncio.Task[list[tuple[int, bytes | Fill]]]:
        task = asyncio.create_task(
            store.encoded_fills_after(sequence, limit=page_size, fill_filter=fill_filter)
        )
        task.add_done_callback(_retrieve)
        return task

    reading = read(after)
    while True:
        page = await asyncio.shield(reading)
        if len(page) == page_size:
            reading = read(page[-1][0])
        for start in range(0, len(page), batch_size):
            yield stored_batch(page[start : start + batch_size])
        if len(page) < page_size:
            return


def _retrieve(task: asyncio.Task[list[tuple[int, bytes | Fill]]]) -> None:
    """Marks a read ahead's failure as seen: the reader that still wants it gets it by
    awaiting; one that went away must not leave 'exception never retrieved' in the log."""
    if not task.cancelled():
        task.exception()
