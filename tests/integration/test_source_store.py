"""The signal store under a concurrent writer, on both databases: a look and a settlement are
never refused because another transaction committed meanwhile (on SQLite a transaction that read
first failed at once with "database is locked" instead of waiting its turn)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from gateway.domain.group_source import GroupSource, SignalState
from gateway.domain.ids import AccountId, GroupId, MasterOrderId
from gateway.domain.orders import Side
from gateway.domain.source_book import SignalKind, SourceBook, SourceSignal
from tests.conftest import client_of
from tests.integration.helpers import create_accounts, create_group
from tests.support import make_config, running


def _now() -> datetime:
    return datetime.now(UTC)


async def test_signals_are_stored_and_settled_while_another_writer_commits(
    tmp_path: Path, database_url: str
) -> None:
    async with running(make_config(tmp_path, database_url=database_url)) as gateway:
        async with client_of(gateway) as client:
            member, other, source = await create_accounts(
                client.accounts, ["10000", "10000", "10000"]
            )
            group_a = await create_group(client.accounts, [member], name="A")
            group_b = await create_group(client.accounts, [other], name="B")
        sources = gateway.store.sources
        a, b = GroupId(group_a.group_id), GroupId(group_b.group_id)
        source_id = AccountId(source.account_id)
        for group_id in (a, b):
            now = _now()
            await sources.set_group_source(
                GroupSource(group_id, source_id, False, timedelta(seconds=60), now, now)
            )
        stop = asyncio.Event()

        async def other_writer() -> int:
            """Group B's source changed over and over: a commit every few milliseconds."""
            commits = 0
            while not stop.is_set():
                now = _now()
                await sources.set_group_source(
                    GroupSource(b, source_id, commits % 2 == 1, timedelta(seconds=60), now, now)
                )
                commits += 1
                await asyncio.sleep(0)
            return commits

        writers = [asyncio.create_task(other_writer()) for _ in range(3)]
        try:
            for ticket in range(1, 41):
                signal = SourceSignal(
                    event_id=f"pos:{ticket}:open",
                    kind=SignalKind.POSITION_OPENED,
                    ticket=ticket,
                    symbol="EURUSD",
                    side=Side.BUY,
                    volume=Decimal("0.10"),
                    source_time=_now(),
                    copies=(f"pos:{ticket}:open",),
                )
                (stored,) = await sources.record_source_look(
                    a, source_id, SourceBook(started=True), [signal], observed_at=_now()
                )
                assert stored.state is SignalState.WAITING
                settled = await sources.settle_signal(
                    a,
                    signal.event_id,
                    state=SignalState.COPIED,
                    detail="done",
                    master_order_ids=[MasterOrderId(f"mo_{ticket}")],
                    at=_now(),
                )
                assert settled is not None and settled.sequence > stored.sequence
        finally:
            stop.set()
            commits = await asyncio.gather(*writers)
        assert all(commits)
        records = await sources.list_signals(group_id=a)
        assert len(records) == 40
        assert all(r.state is SignalState.COPIED for r in records)
        sequences = [r.sequence for r in records]
        assert sequences == sorted(set(sequences))
