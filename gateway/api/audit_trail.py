"""Appends audit records, many calls per transaction (group commit).

A state-changing call is answered only once its record is committed: the record of what was
done can never be missing after a crash. Calls that finish together share one commit, so the
audit log costs a commit per batch of calls, not per call. A commit that fails for a passing
fault of the database is tried again for a few seconds (AUDIT_RETRY) before the calls fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from gateway.domain.audit import AuditRecord
from gateway.domain.retry_policy import RetryPolicy
from gateway.store.access import AccessStore
from gateway.store.faults import is_transient

log = logging.getLogger(__name__)

# Request fields never written to the log, whatever message they are in.
SECRET_FIELDS = frozenset({"password", "token", "secret", "key", "api_key_secret"})
# A request summary longer than this is cut (a group of thousands of members, say).
MAX_REQUEST_CHARS = 8_000
_MAX_BATCH = 500
# About 5 s of tries: a database restart or failover, not an outage.
AUDIT_RETRY = RetryPolicy(initial_interval_s=0.05, maximum_interval_s=1.0, maximum_attempts=10)


class AuditTrail:
    def __init__(self, access: AccessStore) -> None:
        self._access = access
        self._pending: list[tuple[AuditRecord, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_batches(), name="audit-trail")

    async def stop(self) -> None:
        """Writes what is queued, then stops."""
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        self._wake.set()
        while self._pending:
            await self._write_once()
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer

    async def append(self, record: AuditRecord) -> None:
        """Returns once the record is committed; raises if it could not be."""
        if self._writer is None:
            await self._access.append_audit([record])
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((record, done))
        self._wake.set()
        await done

    async def _write_batches(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await self._write_once()

    async def _write_once(self) -> None:
        batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
        tries = 0
        attempt = object()  # the same on every try: one stored in doubt is not stored twice
        while True:
            try:
                await self._access.append_audit([record for record, _ in batch], attempt=attempt)
                break
            except Exception as error:
                tries += 1
                if is_transient(error) and AUDIT_RETRY.allows(tries):
                    await asyncio.sleep(AUDIT_RETRY.delay_s(tries))
                    continue
                log.exception("audit records not stored")
                for _, done in batch:
                    if not done.done():
                        done.set_exception(error)
                return
        for _, done in batch:
            if not done.done():
                done.set_result(None)


def request_summary(request: Message) -> str:
    """The request as compact JSON, secrets left out, cut at MAX_REQUEST_CHARS."""
    try:
        data = _without_secrets(MessageToDict(request, preserving_proto_field_name=True))
    except Exception:
        # Input JSON cannot show (a malformed field mask, say): recorded as what it is.
        data = {"unprintable_request": type(request).__name__}
    text = json.dumps(data, separators=(",", ":"), sort_keys=True)
    if len(text) > MAX_REQUEST_CHARS:
        text = text[:MAX_REQUEST_CHARS] + "...(cut)"
    return text


def result_summary(response: Any) -> str:
    """The ids a response names (what the call created or changed), e.g.
    "master_order_id=mo_1". Looks two levels deep."""
    if not isinstance(response, Message):
        return ""
    found: list[str] = []
    for descriptor, value in response.ListFields():
        if descriptor.name.endswith("_id") and isinstance(value, str):
            found.append(f"{descriptor.name}={value}")
        elif isinstance(value, Message):
            found.extend(
                f"{inner.name}={inner_value}"
                for inner, inner_value in value.ListFields()
                if inner.name.endswith("_id") and isinstance(inner_value, str) and inner_value
            )
    return " ".join(dict.fromkeys(found))


def _without_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: ("<redacted>" if k in SECRET_FIELDS else _without_secrets(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_without_secrets(v) for v in value]
    return value
