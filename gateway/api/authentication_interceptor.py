"""The key is checked before the request is read: a refused call costs its metadata, not its body.

grpc.aio receives and parses a unary request before it calls any handler (interceptors see only
the method and the metadata, not the peer the throttles count by). A caller without a valid key
could so make the gateway receive, copy and parse up to `server.max_request_bytes` per call.
So, with authentication on, every mam.v1 method is served as a request-streaming one: the handler
authenticates the caller first (gateway/api/authenticator.py, throttled per connection and
address), and only then reads the one request message, which the error interceptor then checks
(parse, times, repeated fields) before access control and the servicer see it. The wire is the
same for the client: a unary request is one message followed by the end of the stream.

Access control (gateway/api/access_interceptor.py) authenticates again; the key is then in the
authenticator's cache, a digest comparison.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from gateway.api.access_interceptor import AccessControl
from gateway.api.access_rules import RULES
from gateway.domain.errors import FieldViolation, InvalidArgument

_MAM_PREFIX = "/mam.v1."


class AuthenticationInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Sits between the error interceptor (outside: it maps the refusals and checks the
    messages read) and access control (inside)."""

    def __init__(self, access: AccessControl) -> None:
        self._access = access

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(_MAM_PREFIX) or not self._access.required:
            return handler
        rule = RULES.get(method)
        if rule is not None and rule.own_authentication:
            return handler
        access = self._access
        if handler.unary_unary:
            return grpc.stream_unary_rpc_method_handler(
                _unary_unary(access, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.stream_stream_rpc_method_handler(
                _unary_stream(access, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _stream_unary(access, handler.stream_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            _stream_stream(access, handler.stream_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


async def _the_request(requests: AsyncIterator[Any]) -> Any:
    """The one message of a unary request, read now; the reader is closed after it, so that
    nothing of it keeps the message once the call is done."""
    messages = aiter(requests)
    try:
        return await anext(messages)
    except StopAsyncIteration:
        problem = "no request message: the stream ended before it"
        raise InvalidArgument(
            [FieldViolation("", problem)], reason="MALFORMED_REQUEST", message=problem
        ) from None
    finally:
        aclose = getattr(messages, "aclose", None)
        if aclose is not None:
            await aclose()


def _unary_unary(access: AccessControl, behaviour: Any) -> Any:
    async def authenticated_first(
        requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        await access.principal_of(context)
        return await behaviour(await _the_request(requests), context)

    return authenticated_first


def _unary_stream(access: AccessControl, behaviour: Any) -> Any:
    async def authenticated_first(
        requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        await access.principal_of(context)
        async for response in behaviour(await _the_request(requests), context):
            yield response

    return authenticated_first


def _stream_unary(access: AccessControl, behaviour: Any) -> Any:
    async def authenticated_first(
        requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        await access.principal_of(context)
        return await behaviour(requests, context)

    return authenticated_first


def _stream_stream(access: AccessControl, behaviour: Any) -> Any:
    async def authenticated_first(
        requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        await access.principal_of(context)
        async for response in behaviour(requests, context):
            yield response

    return authenticated_first
