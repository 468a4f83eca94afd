"""One interceptor for who may call what: authentication, the rule table, rate limits, audit.

For every mam.v1 call: the bearer key becomes a Principal (UNAUTHENTICATED without a valid
one), the key's allowance is spent (RESOURCE_EXHAUSTED beyond it), the method's rule is applied
(PERMISSION_DENIED for a wrong role or resource), and a state-changing call is answered only
after its audit record is committed. Servicers read the caller with `current_principal()`.

With authentication off (loopback only: the demo and tests) every caller is an admin and no
allowance applies; calls are still audited, as "admin:loopback".
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
from opentelemetry import trace

from gateway.api.access_rules import RULES, AccessScope, Rule
from gateway.api.audit_trail import AuditTrail, request_summary, result_summary
from gateway.api.authenticator import Authenticator, TokenBucket
from gateway.api.errors import code_of
from gateway.api.stream_registry import StreamRegistry
from gateway.domain.access import LOOPBACK_ADMIN, Principal
from gateway.domain.audit import AuditRecord
from gateway.domain.errors import (
    DomainError,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from gateway.observability.log_context import set_caller
from gateway.observability.trace_context import KEY_ID

log = logging.getLogger(__name__)

_PRINCIPAL: contextvars.ContextVar[Principal] = contextvars.ContextVar("mam_principal")
# Set by a servicer whose call's audit record was stored with the call's own write.
_AUDITED: contextvars.ContextVar[bool] = contextvars.ContextVar("mam_audited", default=False)
_MAM_PREFIX = "/mam.v1."


def current_principal() -> Principal:
    """The caller of the RPC being served."""
    return _PRINCIPAL.get(LOOPBACK_ADMIN)


def mark_audited() -> None:
    """The call's audit record is already stored (in the transaction of what it did): the
    interceptor appends none."""
    _AUDITED.set(True)


@dataclass(frozen=True, slots=True)
class Allowance:
    rate_per_second: float = 200.0
    burst: int = 400
    max_streams: int = 32


class AccessControl:
    """What the interceptor and the servicers share: keys, scope, allowances, the audit trail."""

    def __init__(
        self,
        *,
        authenticator: Authenticator | None,
        scope: AccessScope,
        audit: AuditTrail,
        allowance: Allowance,
        clock: Callable[[], datetime],
        streams: StreamRegistry | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.scope = scope
        self.audit = audit
        # The open streams, ended or narrowed when their key is revoked or its reach shrinks
        # (None with authentication off: no key to revoke).
        self.streams = streams
        self._allowance = allowance
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._streams: dict[str, int] = {}

    @property
    def required(self) -> bool:
        return self.authenticator is not None

    async def principal_of(self, context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
        if self.authenticator is None:
            return LOOPBACK_ADMIN
        authorizations = [
            value if isinstance(value, str) else value.decode()
            for key, value in context.invocation_metadata() or ()
            if key.lower() == "authorization"
        ]
        if len(authorizations) > 1:
            # Proxies and servers disagree on which of two keys counts: none does.
            raise Unauthenticated(
                f"{len(authorizations)} authorization headers: send exactly one",
                reason="API_KEY_AMBIGUOUS",
            )
        return await self.authenticator.principal_of(
            authorizations[0] if authorizations else None, peer=context.peer()
        )

    def spend(self, principal: Principal) -> None:
        """One call or stream message of the principal's allowance."""
        if not self.required:
            return
        bucket = self._buckets.get(principal.key_id)
        if bucket is None:
            bucket = self._buckets[principal.key_id] = TokenBucket(
                self._allowance.rate_per_second, self._allowance.burst
            )
        if not bucket.take():
            raise ResourceExhausted(
                f"API key {principal.key_id} is above {self._allowance.rate_per_second:g} calls "
                "a second; slow down",
                reason="RATE_LIMITED",
                retry_after_s=bucket.wait_s(),
            )

    def open_stream(self, principal: Principal) -> None:
        if not self.required:
            return
        count = self._streams.get(principal.key_id, 0)
        if count >= self._allowance.max_streams:
            raise ResourceExhausted(
                f"API key {principal.key_id} already has {count} streams open",
                reason="TOO_MANY_STREAMS",
                retry_after_s=5.0,
            )
        self._streams[principal.key_id] = count + 1

    def close_stream(self, principal: Principal) -> None:
        if not self.required:
            return
        left = self._streams.get(principal.key_id, 1) - 1
        if left > 0:
            self._streams[principal.key_id] = left
        else:
            self._streams.pop(principal.key_id, None)

    def audit_record(
        self, principal: Principal, method: str, request: Any, *, peer: str
    ) -> AuditRecord:
        """The record of a call that succeeds, to store with what the call writes."""
        return AuditRecord(
            at=self._clock(),
            actor=principal.actor,
            method=method,
            request=request_summary(request),
            status="OK",
            peer=peer,
        )

    async def record(
        self,
        principal: Principal,
        method: str,
        request: Any,
        *,
        peer: str,
        error: BaseException | None = None,
        response: Any = None,
        result: str = "",
    ) -> None:
        """Appends the audit record of one state-changing call or stream submission."""
        status = "OK"
        reason = ""
        if isinstance(error, DomainError):
            status, reason = code_of(error).name, error.reason
        elif error is not None:
            status, reason = "INTERNAL", "INTERNAL"
        await self.audit.append(
            AuditRecord(
                at=self._clock(),
                actor=principal.actor,
                method=method,
                request=request_summary(request),
                status=status,
                reason=reason,
                result=result or result_summary(response),
                peer=peer,
            )
        )


class AccessInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self, access: AccessControl) -> None:
        self._access = access

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(_MAM_PREFIX):
            return handler  # health, reflection: open, and they reveal no account
        rule = RULES.get(method)
        if rule is not None and rule.own_authentication:
            return handler
        access = self._access
        if handler.unary_unary or handler.stream_unary:
            behaviour = handler.unary_unary or handler.stream_unary
            wrapped = _unary(access, method, rule, behaviour, streaming=bool(handler.stream_unary))
            factory = (
                grpc.unary_unary_rpc_method_handler
                if handler.unary_unary
                else grpc.stream_unary_rpc_method_handler
            )
        else:
            behaviour = handler.unary_stream or handler.stream_stream
            wrapped = _stream(
                access, method, rule, behaviour, streaming=bool(handler.stream_stream)
            )
            factory = (
                grpc.unary_stream_rpc_method_handler
                if handler.unary_stream
                else grpc.stream_stream_rpc_method_handler
            )
        return factory(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


async def _admit(
    access: AccessControl,
    method: str,
    rule: Rule | None,
    request: Any,
    context: grpc.aio.ServicerContext[Any, Any],
    *,
    streaming: bool,
) -> Principal:
    """Authenticates, spends, and applies the rule (its resource check on a unary request)."""
    principal = await access.principal_of(context)
    _PRINCIPAL.set(principal)
    # Every log line of the call, and of what it starts (a master order's dispatch), names it.
    set_caller(principal.key_id)
    if principal.key_id:
        trace.get_current_span().set_attribute(KEY_ID, principal.key_id)
    access.spend(principal)
    if rule is None:
        raise PermissionDenied(f"{method} has no access rule; refused", reason="PERMISSION_DENIED")
    try:
        if principal.role not in rule.roles:
            raise PermissionDenied(
                f"the {principal.role.name.lower()} role may not call {method.rsplit('/', 1)[1]}",
                reason="PERMISSION_DENIED",
            )
        if rule.check is not None and not streaming and not principal.is_admin:
            await rule.check(access.scope, principal, request)
    except PermissionDenied as denied:
        if rule.changes_state and not streaming:
            await access.record(principal, method, request, peer=context.peer(), error=denied)
        raise
    return principal


async def _metered(
    access: AccessControl, principal: Principal, requests: AsyncIterator[Any]
) -> AsyncIterator[Any]:
    async for request in requests:
        access.spend(principal)
        yield request


def _unary(
    access: AccessControl, method: str, rule: Rule | None, behaviour: Any, *, streaming: bool
) -> Any:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        principal = await _admit(access, method, rule, request, context, streaming=streaming)
        if streaming:
            request = _metered(access, principal, request)
        if rule is None or not rule.changes_state or streaming:
            return await behaviour(request, context)
        _AUDITED.set(False)
        try:
            response = await behaviour(request, context)
        except Exception as error:
            await access.record(principal, method, request, peer=context.peer(), error=error)
            raise
        if not _AUDITED.get():
            await access.record(principal, method, request, peer=context.peer(), response=response)
        return response

    return wrapper


def _stream(
    access: AccessControl, method: str, rule: Rule | None, behaviour: Any, *, streaming: bool
) -> Any:
    async def wrapper(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        principal = await _admit(access, method, rule, request, context, streaming=streaming)
        access.open_stream(principal)
        try:
            if streaming:
                request = _metered(access, principal, request)
            responses = behaviour(request, context)
            if access.streams is not None:
                responses = access.streams.guarded(principal, responses)
            async for response in responses:
                yield response
        finally:
            access.close_stream(principal)

    return wrapper
