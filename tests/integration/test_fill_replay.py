"""SubscribeFills sends each fill as the message it was stored with (gateway/api/fill_wire.py):
the same Fill that fill_to_proto makes of the stored fill, replayed or live, on both databases,
whether the fill was stored with its message or without one (before revision 0010)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import grpc

from gateway._proto.mam.v1 import order_pb2, trading_service_pb2
from gateway.api import fill_wire
from gateway.api.mapping import fill_to_proto
from gateway.api.server import RunningGateway, start_gateway
from gateway.api.trading_servicer import MAX_FILLS_PER_BATCH
from gateway.domain.fills import Fill
from gateway.store import FillFilter, Store
from tests.conftest import Client, client_of
from tests.integration.helpers import create_accounts, create_group, market_order
from tests.support import make_config


async def read_until(
    stream: grpc.aio.UnaryStreamCall, count: int, timeout_s: float = 60
) -> list[trading_service_pb2.SubscribeFillsResponse]:
    """The batches of the stream until `count` fills arrived."""
    batches: list[trading_service_pb2.SubscribeFillsResponse] = []
    received = 0
    async with asyncio.timeout(timeout_s):
        while received < count:
            message = await stream.read()
            assert message is not grpc.aio.EOF
            if message.HasField("batch"):
                batches.append(message)
                received += len(message.batch.fills)
    return batches


def fills_of(batches: list[trading_service_pb2.SubscribeFillsResponse]) -> list[order_pb2.Fill]:
    return [f for b in batches for f in b.batch.fills]


async def stored(store: Store) -> list[Fill]:
    return await store.fills_after(0, limit=1_000_000)


async def test_replayed_and_live_fills_are_the_stored_fills_field_for_field(
    client: Client, gateway: RunningGateway
) -> None:
    accounts = await create_accounts(client.accounts, ["10000", "20000", "30000", "45000"])
    group = await create_group(client.accounts, accounts)
    for _ in range(3):
        await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.37"))
    await gateway.engine.wait_idle()
    stream = client.trading.SubscribeFills(trading_service_pb2.SubscribeFillsRequest())
    replayed = fills_of(await read_until(stream, 12))
    await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.37"))
    live = fills_of(await read_until(stream, 4))
    stream.cancel()

    history = await stored(gateway.store)
    assert [f.sequence for f in history] == list(range(1, 17))
    assert replayed + live == [fill_to_proto(f) for f in history]
    for message in replayed + live:  # every field set as the mapping sets it
        assert message.ListFields() == fill_to_proto(history[message.sequence - 1]).ListFields()
    # What was stored is exactly the encoding of the fill as it reads back.
    assert await gateway.store.encoded_fills_after(0, limit=100) == [
        (f.sequence, fill_wire.encode(f)) for f in history
    ]


async def test_the_stored_message_is_the_message_of_the_fill_as_read_back(
    client: Client, gateway: RunningGateway
) -> None:
    accounts = await create_accounts(client.accounts, ["10000"])
    group = await create_group(client.accounts, accounts)
    await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.01"))
    await gateway.engine.wait_idle()
    [first] = await stored(gateway.store)
    # Values whose text or zone could differ between the fill in memory and the stored one.
    odd = [
        dataclasses.replace(
            first,
            fill_id=f"fl_odd_{n}",
            volume=volume,
            price=Decimal("123456789012345678901234567.890123456789"),
            requested_price=None,
            slippage_points=Decimal("-0"),
            executed_at=datetime(2026, 11, 25, 14, 0, 0, 1, tzinfo=timezone(timedelta(hours=2))),
        )
        for n, volume in enumerate([Decimal("1E-9"), Decimal("1E+2"), Decimal("0.10")])
    ]
    committed = await gateway.store.save_progress(fills=odd)
    read_back = (await stored(gateway.store))[1:]
    assert [wire for _, wire in committed] == [fill_wire.encode(f) for f in read_back]


async def test_a_history_stored_partly_without_messages_replays_whole_and_in_order(
    tmp_path: Path, database_url: str
) -> None:
    """Encoded and bare rows in turn, over several pages of the replay's reads."""
    config = make_config(tmp_path, database_url=database_url)
    gateway = await start_gateway(config)
    try:
        async with client_of(gateway) as client:
            accounts = await create_accounts(
                client.accounts, [str(5000 + 100 * i) for i in range(30)]
            )
            group = await create_group(client.accounts, accounts)
            first = await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.60"))
            await gateway.engine.wait_idle()
    finally:
        await gateway.stop(0.5)
    through_api = first.master_order.child_count

    # More history written straight to the store, with messages and without.
    bare: set[int] = set()
    store = await Store.open(database_url)
    template = (await stored(store))[0]
    children = await store.children_of(template.master_order_id)
    await store.close()
    chunks = [(None, 3_100), (fill_wire.encode, 2_900), (None, 50), (fill_wire.encode, 1)]
    chunks += [(None, 2_600)]
    number = 0
    for encoder, count in chunks:
        store = await Store.open(database_url, fill_encoder=encoder)
        try:
            for start in range(0, count, 1_000):
                fills = []
                for _ in range(min(1_000, count - start)):
                    number += 1
                    child = children[number % len(children)]
                    fills.append(
                        dataclasses.replace(
                            template,
                            fill_id=f"fl_{number:020d}",
                            child_order_id=child.child_order_id,
                            account_id=child.account_id,
                            deal_ticket=number,
                        )
                    )
                committed = await store.save_progress(fills=fills)
                if encoder is None:
                    bare.update(f.sequence for f, _ in committed)
        finally:
            await store.close()
    total = through_api + number

    gateway = await start_gateway(config)
    try:
        async with client_of(gateway) as client:
            last = await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.60"))
            await gateway.engine.wait_idle()
            total += last.master_order.child_count
            history = await stored(gateway.store)
            assert [f.sequence for f in history] == list(range(1, total + 1))
            messages = await gateway.store.encoded_fills_after(0, limit=total)
            assert {s for s, m in messages if isinstance(m, Fill)} == bare

            stream = client.trading.SubscribeFills(trading_service_pb2.SubscribeFillsRequest())
            batches = await read_until(stream, total)
            stream.cancel()
            assert fills_of(batches) == [fill_to_proto(f) for f in history]
            assert all(len(b.batch.fills) <= MAX_FILLS_PER_BATCH for b in batches)
            assert [b.batch.last_sequence for b in batches] == [
                b.batch.fills[-1].sequence for b in batches
            ]
            # A full batch is a small part of what a message may hold.
            largest = max(b.ByteSize() for b in batches)
            assert largest < config.server.max_message_bytes // 16

            # Resuming in the middle of a page, and with filters, over both kinds of rows.
            one_account = accounts[7].account_id
            requests = [
                (trading_service_pb2.SubscribeFillsRequest(after_sequence=4_321), 4_321, None),
                (
                    trading_service_pb2.SubscribeFillsRequest(account_ids=[one_account]),
                    0,
                    FillFilter(account_ids=frozenset({one_account})),
                ),
                (
                    trading_service_pb2.SubscribeFillsRequest(
                        master_order_id=template.master_order_id, after_sequence=10
                    ),
                    10,
                    FillFilter(master_order_id=template.master_order_id),
                ),
            ]
            for request, after, fill_filter in requests:
                expected = [
                    fill_to_proto(f)
                    for f in history
                    if f.sequence > after and (fill_filter is None or fill_filter.matches(f))
                ]
                stream = client.trading.SubscribeFills(request)
                got = fills_of(await read_until(stream, len(expected)))
                heartbeat = await stream.read()
                stream.cancel()
                assert got == expected
                assert heartbeat.heartbeat_sequence == total and not heartbeat.HasField("batch")
    finally:
        await gateway.stop(0.5)
