"""The audit log: one record per state-changing call, appended and never changed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class AuditRecord:
    at: datetime
    # Principal.actor: "<role>:<key id>".
    actor: str
    # The full RPC name.
    method: str
    # The request as JSON, secrets left out.
    request: str
    # The gRPC status code name, "OK" on success.
    status: str
    # The ErrorInfo reason of a failure; empty on success.
    reason: str = ""
    # What the call created or changed (ids).
    result: str = ""
    peer: str = ""
    # Assigned when stored.
    sequence: int = 0
