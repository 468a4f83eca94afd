"""The state of a resumable fill subscription, shared by the async and the sync client.

A subscription remembers the sequence of the last fill it delivered. After a broken stream it
asks again with `after_sequence` = that sequence: the gateway replays what was stored since, then
goes live, so nothing is lost; a fill at or below that sequence is never delivered twice.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

import grpc

from mam_client import _convert
from mam_client._proto.mam.v1 import trading_service_pb2
from mam_client.errors import MamError
from mam_client.types import Fill, FillEvent, Heartbeat

# Failures after which a subscription resumes: the gateway or the network went away, or the
# gateway (or a proxy in front of it) refused for a while (RESOURCE_EXHAUSTED).
RESUMABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How a fill subscription reconnects: exponential backoff with jitter.

    `max_attempts` bounds the consecutive failed attempts (None: forever); any message received
    resets the count and the backoff.
    """

    initial_backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2
    max_attempts: int | None = None

    def backoff_s(self, attempt: int) -> float:
        """The pause before reconnect attempt `attempt` (1 for the first)."""
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        return base * (1 + self.jitter * (2 * random.random() - 1))


class FillCursor:
    """Where a subscription stands, the request that continues it and which fills are new.

    `last_sequence` is the sequence of the last fill delivered. A live-only subscription that
    has delivered nothing yet resumes from the sequence of its first heartbeat, which is where
    the gateway started it.
    """

    def __init__(
        self,
        *,
        after_sequence: int,
        account_ids: Iterable[str],
        master_order_id: str,
        live_only: bool,
        retry: RetryPolicy,
    ) -> None:
        self.last_sequence = after_sequence
        self.reconnects = 0
        self._account_ids = tuple(account_ids)
        self._master_order_id = master_order_id
        self._live_only = live_only
        self._live_start: int | None = None
        self._retry = retry
        self._failures = 0

    def request(self) -> trading_service_pb2.SubscribeFillsRequest:
        if self._live_only and self._live_start is None:
            return trading_service_pb2.SubscribeFillsRequest(
                account_ids=self._account_ids,
                master_order_id=self._master_order_id,
                live_only=True,
            )
        after = self.last_sequence
        if self._live_start is not None:
            after = max(after, self._live_start)
        return trading_service_pb2.SubscribeFillsRequest(
            after_sequence=after,
            account_ids=self._account_ids,
            master_order_id=self._master_order_id,
        )

    def accept(self, response: trading_service_pb2.SubscribeFillsResponse) -> list[FillEvent]:
        """The new fills (or the heartbeat) of one stream message."""
        self._failures = 0
        if not response.HasField("batch"):
            if self._live_only and self._live_start is None:
                self._live_start = response.heartbeat_sequence
            return [Heartbeat(response.heartbeat_sequence)]
        events: list[FillEvent] = []
        for message in response.batch.fills:
            if message.sequence <= self.last_sequence:
                continue  # delivered before the stream broke
            fill: Fill = _convert.fill_from_wire(message)
            self.last_sequence = fill.sequence
            events.append(fill)
        return events

    def backoff_after(self, error: MamError | None) -> float:
        """The pause before resuming after error (None: the stream ended); raises error when
        the subscription cannot resume."""
        if error is not None and error.code not in RESUMABLE_CODES:
            raise error
        self._failures += 1
        limit = self._retry.max_attempts
        if limit is not None and self._failures > limit:
            if error is not None:
                raise error
            raise MamError(grpc.StatusCode.UNAVAILABLE, "the fill stream keeps ending")
        self.reconnects += 1
        return self._retry.backoff_s(self._failures)
