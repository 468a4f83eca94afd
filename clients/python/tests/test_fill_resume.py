"""fills() resumes a broken stream from the last fill delivered: no duplicate, no gap."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal

from conftest import GatewayProcess
from mam_client import (
    Fill,
    Group,
    Heartbeat,
    MamClient,
    MasterOrder,
    OrderSpec,
    RetryPolicy,
    Side,
)

QUICK_RETRY = RetryPolicy(initial_backoff_s=0.05, max_backoff_s=0.3)


class CuttableProxy:
    """A TCP relay to the gateway that the test can cut (every connection reset at once) and
    hold down (new connections closed on arrival) to break a client's streams for real."""

    def __init__(self, upstream: str) -> None:
        self.upstream_host, port = upstream.rsplit(":", 1)
        self.upstream_port = int(port)
        self.address = ""
        self.connections = 0
        self.down = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        return self.address

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self, *, hold: bool = False) -> None:
        self.down = hold
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.down = False

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.transport.abort()
            return
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        self._writers |= {writer, up_writer}

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._writers -= {writer, up_writer}


async def wait_final(client: MamClient, master_order_id: str) -> MasterOrder:
    async with asyncio.timeout(30):
        while True:
            order = await client.get_master_order(master_order_id)
            if order.state.is_final:
                return order
            await asyncio.sleep(0.05)


def market(group_id: str, volume: str, side: Side = Side.BUY) -> OrderSpec:
    return OrderSpec(group_id=group_id, symbol="EURUSD", side=side, volume=Decimal(volume))


def assert_gap_free(fills: list[Fill]) -> None:
    sequences = [f.sequence for f in fills]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences))), sequences
    assert len({f.fill_id for f in fills}) == len(fills)


async def test_a_stream_cut_mid_order_resumes_without_duplicate_or_gap(
    gateway: GatewayProcess, client: MamClient, demo_group: Group
) -> None:
    proxy = CuttableProxy(gateway.address)
    await proxy.start()
    received: list[Fill] = []
    try:
        async with await MamClient.connect(proxy.address) as watcher:
            events = watcher.fill_events(live_only=True, retry=QUICK_RETRY)
            assert isinstance(await anext(events), Heartbeat)
            first = (
                await client.submit_master_order(market(demo_group.group_id, "1.00"))
            ).master_order
            second: MasterOrder | None = None
            async with asyncio.timeout(60):
                async for event in events:
                    if isinstance(event, Fill):
                        received.append(event)
                    if len(received) == 3 and second is None:
                        # Break the stream mid-order and keep it down while another order fills.
                        proxy.cut(hold=True)
                        submitted = await client.submit_master_order(
                            market(demo_group.group_id, "0.70", Side.SELL)
                        )
                        second = await wait_final(client, submitted.master_order.master_order_id)
                        proxy.restore()
                    mine = [f for f in received if f.master_order_id in _ids(first, second)]
                    if second is not None and len(mine) == first.child_count + second.child_count:
                        break
            await events.aclose()
    finally:
        await proxy.stop()

    assert second is not None
    assert proxy.connections >= 2  # it did reconnect
    assert_gap_free(received)
    for order in (first, second):
        final = await client.get_master_order(order.master_order_id)
        mine = [f for f in received if f.master_order_id == order.master_order_id]
        assert {f.child_order_id for f in mine} == {c.child_order_id for c in final.children}
        assert sum(f.volume for f in mine) == final.filled_volume


async def demo_group_id(client: MamClient) -> str:
    async for group in client.list_groups():
        if group.name == "demo":
            return group.group_id
    raise AssertionError("no demo group")


def _ids(*orders: MasterOrder | None) -> set[str]:
    return {o.master_order_id for o in orders if o is not None}


async def test_fills_resume_across_a_gateway_restart(own_gateway: GatewayProcess) -> None:
    async with await MamClient.connect(own_gateway.address) as client:
        group = await client.get_group(await demo_group_id(client))
        fills = client.fills(retry=QUICK_RETRY)  # everything from the first fill on
        before = (await client.submit_master_order(market(group.group_id, "1.00"))).master_order
        received: list[Fill] = []
        async with asyncio.timeout(60):
            while len(received) < before.child_count:
                received.append(await anext(fills))

            own_gateway.stop()  # SIGTERM: the stream breaks; the client keeps trying
            pending = asyncio.ensure_future(anext(fills))
            await asyncio.sleep(0.5)
            assert not pending.done()
            own_gateway.start()  # the same port and database

            async with await MamClient.connect(own_gateway.address) as submitter:
                after = (
                    await submitter.submit_master_order(market(group.group_id, "0.50", Side.SELL))
                ).master_order
            received.append(await pending)
            while len(received) < before.child_count + after.child_count:
                received.append(await anext(fills))
        await fills.aclose()

    assert [f.sequence for f in received] == list(range(1, len(received) + 1))
    assert [f.master_order_id for f in received] == [before.master_order_id] * (
        before.child_count
    ) + [after.master_order_id] * after.child_count
