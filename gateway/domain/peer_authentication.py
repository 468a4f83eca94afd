"""What the doors that programs knock on (WorkerService.Connect for remote workers, the MT4
bridge for Expert Advisors) ask of a shared secret, and how they slow down a peer guessing one.

A token is a long random string an operator generates; a short one can be guessed (a one-character
MT4 token was found by 504 guesses in 0.4 s). Failed authentications are counted per peer (an
address): each may fail `burst` times, and its allowance comes back at one failure per
`refill_s`. A peer that has spent it is refused without its secret being looked at, so a right
guess gains it nothing either, until it has an allowance again. Every peer behind one address
(a NAT, an SSH tunnel) shares that address's allowance.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# As `python -c "import secrets; print(secrets.token_urlsafe(32))"` gives 43.
MIN_TOKEN_LENGTH = 16


def token_problem(token: str) -> str | None:
    """Why `token` cannot be a configured secret ("has ..."), or None when it can: at least
    MIN_TOKEN_LENGTH printable ASCII characters, none of them white space (which separates
    the fields of token files)."""
    if len(token) < MIN_TOKEN_LENGTH:
        return f"has fewer than {MIN_TOKEN_LENGTH} characters"
    if not token.isascii() or not token.isprintable():
        return "has characters that are not printable ASCII"
    if any(character.isspace() for character in token):
        return "has white space in it"
    return None


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    # Failures a peer may make in a row before it is throttled.
    burst: int = 10
    # One more failure is allowed every `refill_s` seconds (a throttled peer waits this long).
    refill_s: float = 6.0
    # Peers remembered at most; the oldest are forgotten first.
    max_peers: int = 10_000

    def __post_init__(self) -> None:
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1, not {self.burst}")
        if not self.refill_s > 0:
            raise ValueError(f"refill_s must be > 0, not {self.refill_s}")
        if self.max_peers < 1:
            raise ValueError(f"max_peers must be >= 1, not {self.max_peers}")


@dataclass(slots=True)
class _Allowance:
    failures_left: float
    at: float


class FailedAuthentications:
    """Failed authentications per peer; `clock` is monotonic seconds."""

    def __init__(
        self, policy: FailurePolicy | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._policy = policy or FailurePolicy()
        self._clock = clock
        # Only peers that failed; a dict keeps insertion order, the oldest first.
        self._peers: dict[str, _Allowance] = {}

    @property
    def policy(self) -> FailurePolicy:
        return self._policy

    def retry_after_s(self, peer: str) -> float:
        """0 while the peer may be checked; else how long until it may."""
        allowance = self._refilled(peer)
        if allowance is None or allowance.failures_left >= 1:
            return 0.0
        return (1 - allowance.failures_left) * self._policy.refill_s

    def record_failure(self, peer: str) -> bool:
        """Counts a failed authentication of `peer`. True when it has now spent its allowance:
        the moment to tell the operator that it is being throttled."""
        allowance = self._refilled(peer)
        if allowance is None:
            self._forget_some()
            allowance = self._peers[peer] = _Allowance(float(self._policy.burst), self._clock())
        allowance.failures_left = max(0.0, allowance.failures_left - 1)
        return allowance.failures_left < 1

    def _refilled(self, peer: str) -> _Allowance | None:
        allowance = self._peers.get(peer)
        if allowance is None:
            return None
        now = self._clock()
        allowance.failures_left = min(
            float(self._policy.burst),
            allowance.failures_left + (now - allowance.at) / self._policy.refill_s,
        )
        allowance.at = now
        return allowance

    def _forget_some(self) -> None:
        """Keeps the table below max_peers: peers whose allowance is whole again go first,
        then the oldest (a flood from many addresses cannot grow it without bound)."""
        if len(self._peers) < self._policy.max_peers:
            return
        for peer in list(self._peers):
            allowance = self._refilled(peer)
            if allowance is not None and allowance.failures_left >= self._policy.burst:
                del self._peers[peer]
        while len(self._peers) >= self._policy.max_peers:
            del self._peers[next(iter(self._peers))]
