"""The one mapping from failures to gRPC statuses, applied by ErrorInterceptor to every RPC.

Every error carries google.rpc.ErrorInfo(reason, domain="mam-gateway"); bad input also carries
google.rpc.BadRequest with one field violation per bad field. An unexpected exception becomes
INTERNAL with an incident id that is also in the log, never a hung or silently dropped call.
docs/errors.md lists the reasons.

Before any servicer sees a request (each message of a request stream as it is read), bytes that
do not parse as the request message and Timestamps or Durations outside their documented ranges
are refused with INVALID_ARGUMENT: otherwise gRPC answers the first UNKNOWN and a servicer's
conversion turns the second into INTERNAL. So are repeated fields holding more items than
`server.max_repeated_items` (gateway/api/repeated_fields.py), before anything looks them up.

A status travels in the call's trailers, which a gRPC client refuses beyond its metadata limit
(8 KiB soft, 16 KiB hard, by default) with RESOURCE_EXHAUSTED instead of the gateway's answer:
so the message and the listed field violations are cut to a budget, saying how much was left
out.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from gateway.api.aborted_calls import release_when_call_ends
from gateway.api.repeated_fields import RepeatedFieldLimit
from gateway.api.well_known_checks import time_violations
from gateway.domain.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from gateway.engine.metrics import NO_METRICS, GatewayMetrics
from gateway.engine.store_health import STORE_UNAVAILABLE, WRITER_LOCK_LOST
from gateway.observability.tracing import call_failed
from gateway.store.faults import is_transient
from gateway.store.writer_lock import WriterFenced

log = logging.getLogger(__name__)

ERROR_DOMAIN = "mam-gateway"

# What one status may carry. Clients count the grpc-message trailer percent-encoded (3 bytes
# for each byte of non-ASCII text) and grpc-status-details-bin decoded, which repeats the
# message: at worst about 5.5 KiB, under the 8 KiB from which clients begin to refuse trailers.
MAX_MESSAGE_BYTES = 768
MAX_LISTED_VIOLATIONS = 50
MAX_VIOLATIONS_BYTES = 2_048
MAX_FIELD_PATH_BYTES = 128
MAX_DESCRIPTION_BYTES = 256
# A violation's share of the budget besides its text: tags and lengths of BadRequest.
_VIOLATION_OVERHEAD_BYTES = 8


class NotYetAvailable(DomainError):
    """An RPC of the declared v1 surface that this version does not serve yet."""

    reason = "NOT_IMPLEMENTED"


_CODES: list[tuple[type[DomainError], grpc.StatusCode]] = [
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (NotYetAvailable, grpc.StatusCode.UNIMPLEMENTED),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
]


def code_of(error: DomainError) -> grpc.StatusCode:
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.FAILED_PRECONDITION


def status_of(error: DomainError, *, metadata: dict[str, str] | None = None) -> grpc.Status:
    code = code_of(error)
    info_metadata = {**error.details, **(metadata or {})}
    text = error.message
    extra: list[any_pb2.Any] = []
    retry_after_s = (
        error.retry_after_s if isinstance(error, ResourceExhausted | Unavailable) else None
    )
    if retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after_s * 1e9))
        extra.append(_packed(error_details_pb2.RetryInfo(retry_delay=delay)))
    if isinstance(error, InvalidArgument):
        listed, omitted = _listed_violations(error.violations)
        if omitted:
            info_metadata["omitted_violations"] = str(omitted)
            listed.append(
                error_details_pb2.BadRequest.FieldViolation(
                    field="", description=f"{omitted:,} more field violations not listed"
                )
            )
        if len(text.encode()) > MAX_MESSAGE_BYTES and text == _joined(error.violations):
            text = _listed_text(error.violations)  # the default text, cut between violations
        extra.append(_packed(error_details_pb2.BadRequest(field_violations=listed)))
    info = error_details_pb2.ErrorInfo(
        reason=error.reason, domain=ERROR_DOMAIN, metadata=info_metadata
    )
    proto = status_pb2.Status(
        code=code.value[0],
        message=capped_text(text, MAX_MESSAGE_BYTES),
        details=[_packed(info), *extra],
    )
    return rpc_status.to_status(proto)


def _joined(violations: Sequence[FieldViolation]) -> str:
    return "; ".join(f"{v.field}: {v.description}" for v in violations)


def _listed_violations(
    violations: Sequence[FieldViolation],
) -> tuple[list[error_details_pb2.BadRequest.FieldViolation], int]:
    """The violations that fit the budget, each cut to its own, and how many were left out."""
    listed = []
    spent = 0
    for violation in violations[:MAX_LISTED_VIOLATIONS]:
        field = capped_text(violation.field, MAX_FIELD_PATH_BYTES)
        description = capped_text(violation.description, MAX_DESCRIPTION_BYTES)
        spent += len(field.encode()) + len(description.encode()) + _VIOLATION_OVERHEAD_BYTES
        if spent > MAX_VIOLATIONS_BYTES:
            break
        listed.append(
            error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
        )
    return listed, len(violations) - len(listed)


def _listed_text(violations: Sequence[FieldViolation]) -> str:
    """The default text of many violations: those that fit, then how many more there are."""
    parts: list[str] = []
    spent = 0
    for violation in violations:
        part = f"{violation.field}: {violation.description}"
        spent += len(part.encode()) + 2
        if spent > MAX_MESSAGE_BYTES - 48:
            break
        parts.append(part)
    if not parts:
        return _joined(violations)
    return "; ".join(parts) + f"; and {len(violations) - len(parts):,} more field violations"


def capped_text(text: str, limit_bytes: int) -> str:
    """`text` if its UTF-8 fits `limit_bytes`; else its beginning, ending with how much was cut:
    the number of items left out of a list ("a, b, … and 940 more"), or of characters."""
    encoded = text.encode()
    if len(encoded) <= limit_bytes:
        return text
    # Room for the ending; a character cut in two is dropped whole.
    head = encoded[: max(limit_bytes - 40, 0)].decode(errors="ignore")
    for separator in ("; ", ", "):
        at = head.rfind(separator)
        if at > len(head) // 2:
            more = text[at:].count(separator)
            return f"{head[:at]}{separator}… and {more:,} more"
    return f"{head}… ({len(text) - len(head):,} more characters)"


def internal_status(incident: str) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(
        reason="INTERNAL", domain=ERROR_DOMAIN, metadata={"incident_id": incident}
    )
    proto = status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=f"internal error; incident {incident} is in the gateway log",
        details=[_packed(info)],
    )
    return rpc_status.to_status(proto)


def _packed(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


async def _abort(context: grpc.aio.ServicerContext[Any, Any], status: grpc.Status) -> NoReturn:
    call_failed(status.code, status.details)
    try:
        await context.abort_with_status(status)  # type: ignore[attr-defined]
    except grpc.aio.AbortError as abort:
        release_when_call_ends(abort)
        raise
    raise AssertionError("abort_with_status always raises")


async def _abort_for(
    error: BaseException, context: grpc.aio.ServicerContext[Any, Any], method: str
) -> NoReturn:
    release_when_call_ends(error)
    if isinstance(error, DomainError):
        await _abort(context, status_of(error))
    if (unavailable := _database_fault(error)) is not None:
        log.warning("%s: %s", method, unavailable.message)
        await _abort(context, status_of(unavailable))
    incident = secrets.token_hex(6)
    log.error("incident %s in %s", incident, method, exc_info=error)
    await _abort(context, internal_status(incident))


def _database_fault(error: BaseException) -> Unavailable | None:
    """A call that failed on the database, not on its request: the caller may try again
    (elsewhere, after WRITER_LOCK_LOST)."""
    if isinstance(error, WriterFenced):
        return Unavailable(
            "another gateway process took this one's database: it is stopping; send to the "
            "gateway that holds the database now",
            reason=WRITER_LOCK_LOST,
        )
    if is_transient(error):
        first_line = f"{type(error).__name__}: {error}".splitlines()[0]
        return Unavailable(
            f"the gateway's database is unreachable ({capped_text(first_line, 200)}): try again",
            reason=STORE_UNAVAILABLE,
            retry_after_s=1.0,
        )
    return None


def _is_control_flow(error: BaseException) -> bool:
    # AbortError: a servicer already chose its status; let it through untouched.
    return isinstance(error, grpc.aio.AbortError)


@dataclass(frozen=True, slots=True)
class UndecodableRequest:
    """What a request's deserializer gives for bytes that do not parse as the request message,
    in place of raising: gRPC would answer that UNKNOWN before any interceptor could map it."""

    message_type: str
    size: int
    problem: str


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None
    owner = getattr(deserializer, "__self__", None)  # Message.FromString is a bound classmethod
    message_type = getattr(getattr(owner, "DESCRIPTOR", None), "full_name", "the request message")

    def deserialize(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except DecodeError as error:
            return UndecodableRequest(message_type, len(raw), str(error))

    return deserialize


# Requests whose servicer decodes their times itself: a worker's results go through
# gateway/terminals/remote/wire.py, which fails the one command whose answer carries a time that
# does not read, where a refusal of the message would end the worker's stream (and the worker,
# which takes INVALID_ARGUMENT for a configuration error) with every terminal it hosts.
_TIMES_DECODED_BY_SERVICER = frozenset({"/mam.v1.WorkerService/Connect"})
_DEFAULT_REPEATED_LIMIT = RepeatedFieldLimit()


def refusal_of(
    request: Any,
    *,
    check_times: bool = True,
    repeated: RepeatedFieldLimit = _DEFAULT_REPEATED_LIMIT,
) -> InvalidArgument | None:
    """Why a request cannot go to its servicer, or None when it can."""
    if type(request) is UndecodableRequest:
        problem = (
            f"{request.size:,} bytes do not parse as {request.message_type}: {request.problem}"
        )
        return InvalidArgument(
            [FieldViolation("", problem)], reason="MALFORMED_REQUEST", message=problem
        )
    if check_times:
        violations = time_violations(request)
        if violations:
            return InvalidArgument(violations, reason="INVALID_TIME")
    too_many = repeated.violations(request)
    if too_many:
        return InvalidArgument(too_many, reason="TOO_MANY_ITEMS")
    return None


@dataclass(frozen=True, slots=True)
class _Checks:
    """What refusal_of checks of one method's requests (and where refusals are counted)."""

    check_times: bool
    repeated: RepeatedFieldLimit
    metrics: GatewayMetrics = NO_METRICS

    def refusal(self, request: Any) -> InvalidArgument | None:
        return refusal_of(request, check_times=self.check_times, repeated=self.repeated)


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Refuses requests that do not parse, carry impossible times or too many items in a
    repeated field, and maps every exception leaving a servicer to a status with details."""

    def __init__(
        self,
        *,
        repeated: RepeatedFieldLimit = _DEFAULT_REPEATED_LIMIT,
        metrics: GatewayMetrics = NO_METRICS,
    ) -> None:
        """`metrics`: where refusals (by reason) and open streams are counted."""
        self._repeated = repeated
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        checks = _Checks(method not in _TIMES_DECODED_BY_SERVICER, self._repeated, self._metrics)
        deserializer = _tolerant(handler.request_deserializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method, checks, streaming=False),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream, method, checks, streaming=False),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(handler.stream_unary, method, checks, streaming=True),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream(handler.stream_stream, method, checks, streaming=True),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


async def _refuse(
    context: grpc.aio.ServicerContext[Any, Any], refusal: InvalidArgument, metrics: GatewayMetrics
) -> None:
    release_when_call_ends(refusal)
    metrics.refused(refusal)
    await _abort(context, status_of(refusal))


def _count_refusal(metrics: GatewayMetrics, error: BaseException) -> None:
    """Counts a call's error answer by its reason; a database fault also as a store error."""
    if not isinstance(error, DomainError) and (fault := _database_fault(error)) is not None:
        metrics.store_error("request", "fenced" if isinstance(error, WriterFenced) else "transient")
        error = fault
    metrics.refused(error)


async def _checked_messages(
    requests: AsyncIterator[Any], refused: list[InvalidArgument], checks: _Checks
) -> AsyncIterator[Any]:
    """The request stream, ending at the first message that cannot go to the servicer.

    The refusal is raised to the servicer and also kept in `refused`: a servicer may read its
    stream in a task of its own and take any exception for a broken stream (WorkerService), so
    the call's own task sends the status, when the servicer returns or next yields. Aborting
    here instead could race the call's task writing a response, and the status would be lost.

    Closed, it closes grpc's reader too: that reader and its generator refer to each other, and
    a generator left waiting after a message keeps the message until the collector finds the
    cycle (gateway/api/aborted_calls.py says why that can be a long time).
    """
    messages = aiter(requests)
    try:
        async for request in messages:
            refusal = checks.refusal(request)
            if refusal is not None:
                refused.append(refusal)
                raise refusal
            yield request
    finally:
        aclose = getattr(messages, "aclose", None)
        if aclose is not None:
            await aclose()


def _wrap_unary(behaviour: Any, method: str, checks: _Checks, *, streaming: bool) -> Any:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        refused: list[InvalidArgument] = []
        try:
            if streaming:
                request = _checked_messages(request, refused, checks)
            elif (refusal := checks.refusal(request)) is not None:
                await _refuse(context, refusal, checks.metrics)
            response = await behaviour(request, context)
        except Exception as error:
            if _is_control_flow(error):
                release_when_call_ends(error)  # a servicer's own abort
                raise
            _count_refusal(checks.metrics, refused[0] if refused else error)
            await _abort_for(refused[0] if refused else error, context, method)
        if refused:
            await _refuse(context, refused[0], checks.metrics)
        return response

    return wrapper


def _wrap_stream(behaviour: Any, method: str, checks: _Checks, *, streaming: bool) -> Any:
    name = method.rsplit("/", 1)[-1]

    async def wrapper(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        refused: list[InvalidArgument] = []
        checks.metrics.stream_opened(name)
        try:
            if streaming:
                request = _checked_messages(request, refused, checks)
            elif (refusal := checks.refusal(request)) is not None:
                await _refuse(context, refusal, checks.metrics)
            responses = behaviour(request, context)
            if hasattr(responses, "__aiter__"):
                async for response in responses:
                    if refused:
                        if hasattr(responses, "aclose"):
                            await responses.aclose()
                        break
                    yield response
            else:
                # A handler that writes with context.write (grpc's Health.Watch) returns a
                # coroutine, not an iterator.
                await responses
        except Exception as error:
            if _is_control_flow(error):
                release_when_call_ends(error)  # a servicer's own abort
                raise
            _count_refusal(checks.metrics, refused[0] if refused else error)
            await _abort_for(refused[0] if refused else error, context, method)
        finally:
            checks.metrics.stream_closed(name)
        if refused:
            await _refuse(context, refused[0], checks.metrics)

    return wrapper
