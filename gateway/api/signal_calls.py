"""TradingService.ListSignals and StreamSignals: the signals of groups' source accounts
(mirroring), as the caller may see them.

An admin sees every group's signals, a manager those of its groups (a group outside them is
refused by the access rule before this is reached), an investor none (its role is refused).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Any

from gateway._proto.mam.v1 import trading_service_pb2 as pb
from gateway.api import requests
from gateway.api.access_interceptor import current_principal
from gateway.api.errors import NotYetAvailable
from gateway.api.mapping import signal_to_proto
from gateway.domain.errors import FieldViolation, InvalidArgument, Unavailable
from gateway.domain.group_source import SignalRecord
from gateway.domain.ids import GroupId
from gateway.engine.account_manager import AccountManager
from gateway.engine.source_watcher import SourceWatchers, signal_stream
from gateway.store import Store

# Sequences are stored as signed 64-bit integers.
MAX_SEQUENCE = 2**63 - 1


async def list_signals(
    request: pb.ListSignalsRequest, *, store: Store, accounts: AccountManager
) -> pb.ListSignalsResponse:
    limit = requests.page_size(request.page_size, default=100, maximum=1000)
    after = _after_sequence(request.after_sequence)
    if request.page_token:
        after = max(after, _sequence_of_token(request.page_token))
    group_id, within = await _scope(request.group_id, accounts)
    rows = await store.sources.list_signals(
        group_id=group_id, after_sequence=after, limit=limit + 1, within_groups=within
    )
    page, token = requests.split_page(rows, limit, lambda r: str(r.sequence))
    return pb.ListSignalsResponse(signals=[signal_to_proto(r) for r in page], next_page_token=token)


async def stream_signals(
    request: pb.StreamSignalsRequest,
    *,
    store: Store,
    accounts: AccountManager,
    sources: SourceWatchers | None,
    heartbeat_s: float,
) -> AsyncGenerator[pb.StreamSignalsResponse, None]:
    """The stored signals after after_sequence, a heartbeat, then each signal as it is stored
    or settled, with a heartbeat on a quiet stream; ended (UNAVAILABLE) when the gateway stops
    or the reader falls too far behind."""
    if sources is None:
        raise NotYetAvailable("mirroring is not served by this gateway")
    after = _after_sequence(request.after_sequence)
    group_id, within = await _scope(request.group_id, accounts)
    batches = signal_stream(sources, store, group_id, after, within_groups=within)
    # The batches are read in a task of their own, so that a heartbeat's timeout does not
    # cancel (and so end) the generator while it waits for the next batch.
    stopping = asyncio.ensure_future(sources.wait_stopping())
    next_batch: asyncio.Future[list[SignalRecord]] = asyncio.ensure_future(anext(batches))
    try:
        while True:
            waited: set[asyncio.Future[Any]] = {next_batch, stopping}
            done, _ = await asyncio.wait(
                waited,
                timeout=heartbeat_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if stopping in done:
                raise Unavailable(
                    "the gateway is stopping; resume with after_sequence = the last sequence "
                    "received",
                    reason="GATEWAY_STOPPING",
                )
            if next_batch not in done:
                yield _heartbeat()
                continue
            batch = next_batch.result()  # SUBSCRIBER_TOO_SLOW is raised from here
            next_batch = asyncio.ensure_future(anext(batches))
            # An empty batch: the stored signals are all sent, live from here.
            yield (
                pb.StreamSignalsResponse(signals=[signal_to_proto(r) for r in batch])
                if batch
                else _heartbeat()
            )
    finally:
        for task in (next_batch, stopping):
            task.cancel()
        await asyncio.gather(next_batch, stopping, return_exceptions=True)
        with contextlib.suppress(RuntimeError):
            await batches.aclose()


def _heartbeat() -> pb.StreamSignalsResponse:
    response = pb.StreamSignalsResponse()
    response.heartbeat_time.GetCurrentTime()
    return response


async def _scope(
    group_id: str, accounts: AccountManager
) -> tuple[GroupId | None, frozenset[GroupId] | None]:
    """The group asked for (checked to exist), and the groups the caller may see (None: all)."""
    wanted = None
    if group_id:
        wanted = GroupId(requests.required_id(group_id, "group_id"))
        await accounts.get_group(wanted)
    principal = current_principal()
    return wanted, None if principal.is_admin else frozenset(principal.group_ids)


def _after_sequence(value: int) -> int:
    if value > MAX_SEQUENCE:
        raise InvalidArgument(
            [
                FieldViolation(
                    "after_sequence",
                    f"must be at most {MAX_SEQUENCE} (sequences are signed 64-bit)",
                )
            ]
        )
    return value


def _sequence_of_token(token: str) -> int:
    key = requests.decode_page_token(token)
    if not key.isdigit() or int(key) > MAX_SEQUENCE:
        raise InvalidArgument(
            [FieldViolation("page_token", "is not a token from a previous response")]
        )
    return int(key)
