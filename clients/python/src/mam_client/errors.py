"""MamError: every failed call, with the gateway's reason and field violations.

The gateway puts a google.rpc.Status in the call's trailers (grpc-status-details-bin) with an
ErrorInfo (a stable `reason`, see docs/errors.md) and, for bad input, a BadRequest listing each
offending field. Branch on `reason` (or `code`), never on the message text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "mam-gateway"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """A request field at fault, named by its path in the request: `order.volume`."""

    field: str
    description: str


class MamError(Exception):
    """A call the gateway (or the connection to it) failed."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        field_violations: tuple[FieldViolation, ...] = (),
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        # The ErrorInfo reason; empty when the failure did not come from the gateway's logic
        # (an unreachable gateway, a deadline, an RPC it does not know).
        self.reason = reason
        self.domain = domain
        self.metadata: Mapping[str, str] = MappingProxyType(dict(metadata or {}))
        self.field_violations = field_violations

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> MamError:
        """Reads code, message and the google.rpc.Status details of a failed call."""
        call: grpc.Call = error  # type: ignore[assignment]  # every RpcError raised is a Call
        code = call.code()
        message = call.details() or ""
        reason, domain, metadata = "", "", {}
        violations: list[FieldViolation] = []
        try:
            status = rpc_status.from_call(call)
        except ValueError:  # the details disagree with the status: keep the status
            status = None
        for detail in status.details if status is not None else ():
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
        return cls(
            code,
            message,
            reason=reason,
            domain=domain,
            metadata=metadata,
            field_violations=tuple(violations),
        )

    @property
    def fields(self) -> tuple[str, ...]:
        """The paths of the fields at fault."""
        return tuple(v.field for v in self.field_violations)

    def __str__(self) -> str:
        """One line: `CODE [REASON]: message (field: description; ...)`."""
        head = (
            self.code.name
            if not self.reason or self.reason == self.code.name
            else (f"{self.code.name} {self.reason}")
        )
        text = f"{head}: {self.message}" if self.message else head
        # Each field at fault, unless the message already says it.
        extra = [
            f"{v.field}: {v.description}" if v.description else v.field
            for v in self.field_violations
            if f"{v.field}: {v.description}" not in self.message
        ]
        if extra:
            text += f" ({'; '.join(extra)})"
        return text

    def __repr__(self) -> str:
        return (
            f"MamError(code={self.code.name}, reason={self.reason!r}, message={self.message!r},"
            f" fields={list(self.fields)!r})"
        )
