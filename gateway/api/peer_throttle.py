"""How much authentication work a caller can make the gateway do.

A key the gateway has verified once is answered from memory (a SHA-256 digest compared in
constant time, gateway/api/authenticator.py), and so is a secret already found wrong. Only a key
not seen before costs something: a read of its key id from the store (about 2 ms) and, for a
key id that exists, one scrypt verification (30 to 60 ms of a core and 16 MiB). That is what an
attacker can spend, and what these limits bound:

- per connection (a gRPC peer, "ipv4:10.0.0.7:53211"): `failures_per_connection` failed
  authentications (an unknown key id, a wrong secret) in a row, then one more every
  `connection_failure_refill_s`;
- per address, over all its connections: `failures_per_address`, then one every
  `address_failure_refill_s`; a new connection is cheap to open, an address is not;
- for the whole gateway: `verifications_per_second` scrypt verifications, bursts up to
  `verification_burst`, run `VERIFICATION_WORKERS` at a time.

A throttled connection or address is refused (AUTHENTICATION_THROTTLED, with RetryInfo) before
the store is read; a key already verified is never refused by any of this. So an attacker
guessing secrets for a key id cannot lock its holder out: the key id names nothing to throttle,
and the holder's calls are answered from memory. The throttles are counted by the caller, never
by the key id (key ids are not secret: they are listed, audited and named in error messages).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.api.token_bucket import TokenBucket
from gateway.domain.errors import ResourceExhausted
from gateway.domain.peer_authentication import FailedAuthentications, FailurePolicy

# scrypt verifications running at once, each in a thread of its own (hashlib releases the GIL):
# the event loop keeps a core on a 2-core host, whatever arrives.
VERIFICATION_WORKERS = 2


@dataclass(frozen=True, slots=True)
class AuthenticationLimits:
    failures_per_connection: int = 5
    connection_failure_refill_s: float = 2.0
    failures_per_address: int = 40
    address_failure_refill_s: float = 0.2
    verifications_per_second: float = 8.0
    verification_burst: int = 32

    def __post_init__(self) -> None:
        for name in ("failures_per_connection", "failures_per_address", "verification_burst"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        for name in (
            "connection_failure_refill_s",
            "address_failure_refill_s",
            "verifications_per_second",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, not {getattr(self, name)}")


def address_of(peer: str) -> str:
    """The address of a gRPC peer ("ipv4:10.0.0.7:53211" -> "ipv4:10.0.0.7"): the port
    changes with every connection, the address does not."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        return f"{kind}:{rest.rpartition(':')[0]}"
    return peer


class AuthenticationThrottle:
    """The limits above, as state; `clock` is monotonic seconds."""

    def __init__(
        self,
        limits: AuthenticationLimits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits = limits or AuthenticationLimits()
        self._connections = FailedAuthentications(
            FailurePolicy(
                burst=limits.failures_per_connection, refill_s=limits.connection_failure_refill_s
            ),
            clock=clock,
        )
        self._addresses = FailedAuthentications(
            FailurePolicy(
                burst=limits.failures_per_address, refill_s=limits.address_failure_refill_s
            ),
            clock=clock,
        )
        self._verifications = TokenBucket(
            limits.verifications_per_second, limits.verification_burst, clock=clock
        )

    def admit(self, peer: str) -> None:
        """Raises AUTHENTICATION_THROTTLED when `peer`'s connection or address has spent its
        failures; else returns, and the key may be looked up."""
        for table, who, whose in (
            (self._connections, peer, "connection"),
            (self._addresses, address_of(peer), "address"),
        ):
            wait_s = table.retry_after_s(who)
            if wait_s > 0:
                raise ResourceExhausted(
                    f"too many failed authentications from this {whose}; try again in "
                    f"{wait_s:.1f} s",
                    reason="AUTHENTICATION_THROTTLED",
                    retry_after_s=wait_s,
                )

    def failed(self, peer: str) -> bool:
        """Counts a failed authentication of `peer`. True when its connection or address has
        just spent its allowance (worth a line in the log)."""
        connection_spent = self._connections.record_failure(peer)
        address_spent = self._addresses.record_failure(address_of(peer))
        return connection_spent or address_spent

    def spend_verification(self) -> None:
        """Takes one scrypt verification of the gateway's budget, or raises
        AUTHENTICATION_THROTTLED when there is none left now."""
        if not self._verifications.take():
            raise ResourceExhausted(
                "the gateway is verifying as many new keys as it allows a second "
                f"({self.limits.verifications_per_second:g}); try again shortly",
                reason="AUTHENTICATION_THROTTLED",
                retry_after_s=self._verifications.wait_s(),
            )
