"""The one mapping from failures to gRPC statuses, applied by ErrorInterceptor to every RPC.

Every error carries google.rpc.ErrorInfo(reason, domain="mam-gateway"); bad input also carries
google.rpc.BadRequest with one field violation per bad field. An unexpected exception becomes
INTERNAL with an incident id that is also in the log, never a hung or silently dropped call.
docs/errors.md lists the reasons.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from gateway.domain.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger(__name__)

ERROR_DOMAIN = "mam-gateway"


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
    details = [
        _packed(
            error_details_pb2.ErrorInfo(
                reason=error.reason, domain=ERROR_DOMAIN, metadata=metadata or {}
            )
        )
    ]
    if isinstance(error, ResourceExhausted):
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after_s * 1e9))
        details.append(_packed(error_details_pb2.RetryInfo(retry_delay=delay)))
    if isinstance(error, InvalidArgument):
        details.append(
            _packed(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in error.violations
                    ]
                )
            )
        )
    proto = status_pb2.Status(code=code.value[0], message=error.message, details=details)
    return rpc_status.to_status(proto)


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


async def _abort_for(
    error: BaseException, context: grpc.aio.ServicerContext[Any, Any], method: str
) -> NoReturn:
    if isinstance(error, DomainError):
        await context.abort_with_status(status_of(error))  # type: ignore[attr-defined]
    incident = secrets.token_hex(6)
    log.error("incident %s in %s", incident, method, exc_info=error)
    await context.abort_with_status(internal_status(incident))  # type: ignore[attr-defined]
    raise AssertionError("abort_with_status always raises")


def _is_control_flow(error: BaseException) -> bool:
    # AbortError: a servicer already chose its status; let it through untouched.
    return isinstance(error, grpc.aio.AbortError)


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Maps every exception leaving a servicer to a status with details."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(handler.stream_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream(handler.stream_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def _wrap_unary(behaviour: Any, method: str) -> Any:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await behaviour(request, context)
        except Exception as error:
            if _is_control_flow(error):
                raise
            await _abort_for(error, context, method)

    return wrapper


def _wrap_stream(behaviour: Any, method: str) -> Any:
    async def wrapper(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            responses = behaviour(request, context)
            if hasattr(responses, "__aiter__"):
                async for response in responses:
                    yield response
            else:
                # A handler that writes with context.write (grpc's Health.Watch) returns a
                # coroutine, not an iterator.
                await responses
        except Exception as error:
            if _is_control_flow(error):
                raise
            await _abort_for(error, context, method)

    return wrapper
