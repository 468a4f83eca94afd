"""Errors the core raises; the api layer maps each to one gRPC status with details."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field of a request, named by its path in the request message."""

    field: str
    description: str


class DomainError(Exception):
    """Base of every expected failure. `reason` is stable and documented in docs/errors.md."""

    reason: str = "ERROR"
    # Said with the reason (google.rpc.ErrorInfo metadata): what a caller acts on, e.g. the
    # node that owns a group.
    details: Mapping[str, str] = MappingProxyType({})

    def __init__(
        self, message: str, *, reason: str | None = None, details: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        if details:
            self.details = dict(details)


class InvalidArgument(DomainError):
    reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        violations: list[FieldViolation],
        *,
        reason: str | None = None,
        message: str | None = None,
    ) -> None:
        text = message or "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(text, reason=reason)
        self.violations = violations


class NotFound(DomainError):
    reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    reason = "FAILED_PRECONDITION"


class Unavailable(DomainError):
    """Cannot be done now, for a passing reason; `retry_after_s`, when known, says when to try
    again (sent as google.rpc.RetryInfo)."""

    reason = "UNAVAILABLE"

    def __init__(
        self, message: str, *, reason: str | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.retry_after_s = retry_after_s


class Unauthenticated(DomainError):
    """No API key, or one that is malformed, unknown or revoked."""

    reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    """The caller's role or resources do not cover the request, whether or not the resource
    exists (so that errors reveal nothing of what the caller may not see)."""

    reason = "PERMISSION_DENIED"


class ResourceExhausted(DomainError):
    """The caller has spent its allowance; `retry_after_s` says when to try again."""

    reason = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, reason: str | None = None, retry_after_s: float = 1.0):
        super().__init__(message, reason=reason)
        self.retry_after_s = retry_after_s


@dataclass(slots=True)
class Violations:
    """Collects field violations so a request reports all its bad fields at once."""

    items: list[FieldViolation] = field(default_factory=list)

    def add(self, field_path: str, description: str) -> None:
        self.items.append(FieldViolation(field_path, description))

    def raise_if_any(self, *, reason: str = "INVALID_ARGUMENT") -> None:
        if self.items:
            raise InvalidArgument(list(self.items), reason=reason)
