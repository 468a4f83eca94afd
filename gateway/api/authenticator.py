"""Bearer API keys to principals, without paying scrypt on every call.

A key is verified against its stored scrypt hash once (in a worker thread, a few at a time, so
that a flood of wrong secrets cannot take the event loop's CPU); after that, the SHA-256 digest
of the exact key is kept in memory and compared in constant time. A cached key is read again
from the store after CACHE_TTL_S (a revocation made by another tool on the same database is
seen within that time; one made through this gateway is seen at once).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from dataclasses import dataclass

from gateway.domain.access import ApiKey, Principal, parse_key, verify_secret
from gateway.domain.errors import ResourceExhausted, Unauthenticated
from gateway.store.access import AccessStore

CACHE_TTL_S = 60.0
# Wrong secrets for one key id: this many at once, refilled at FAILURE_RATE per second.
FAILURE_BURST = 10
FAILURE_RATE = 1.0
_VERIFICATIONS_AT_ONCE = 2


@dataclass(slots=True)
class _Cached:
    digest: bytes
    key: ApiKey
    read_at: float


class Authenticator:
    def __init__(self, access: AccessStore) -> None:
        self._access = access
        self._cache: dict[str, _Cached] = {}
        self._verifying = asyncio.Semaphore(_VERIFICATIONS_AT_ONCE)
        self._failures: dict[str, TokenBucket] = {}

    async def principal_of(self, authorization: str | None) -> Principal:
        """The principal of an `authorization` metadata value ("Bearer <key>")."""
        if not authorization:
            raise Unauthenticated(
                "no API key: send it as `authorization: Bearer <key>` metadata",
                reason="API_KEY_MISSING",
            )
        scheme, _, key = authorization.partition(" ")
        parsed = parse_key(key.strip()) if scheme.lower() == "bearer" else None
        if parsed is None:
            raise Unauthenticated(
                "malformed authorization: expected `Bearer mam_<key id>_<secret>`",
                reason="API_KEY_INVALID",
            )
        key_id, secret = parsed
        digest = hashlib.sha256(key.strip().encode()).digest()
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached is not None and now - cached.read_at > CACHE_TTL_S:
            stored = await self._access.get_api_key(key_id)
            if stored is None or stored.secret_hash != cached.key.secret_hash:
                self._cache.pop(key_id, None)
                cached = None
            else:
                cached.key, cached.read_at = stored, now
        if cached is not None and hmac.compare_digest(cached.digest, digest):
            return self._usable(cached.key)
        return await self._verify(key_id, secret, digest, now)

    def forget(self, key_id: str) -> None:
        """Drops a key from the cache (after a revocation)."""
        self._cache.pop(key_id, None)

    async def _verify(self, key_id: str, secret: str, digest: bytes, now: float) -> Principal:
        failures = self._failures.get(key_id)
        if failures is not None and not failures.has_token():
            raise ResourceExhausted(
                f"too many wrong secrets for key {key_id}; try again later",
                reason="AUTHENTICATION_THROTTLED",
                retry_after_s=failures.wait_s(),
            )
        stored = await self._access.get_api_key(key_id)
        if stored is None:
            raise Unauthenticated(f"unknown API key {key_id}", reason="API_KEY_INVALID")
        async with self._verifying:
            good = await asyncio.to_thread(verify_secret, secret, stored.secret_hash)
        if not good:
            if failures is None:
                failures = self._failures[key_id] = TokenBucket(FAILURE_RATE, FAILURE_BURST)
            failures.take()
            raise Unauthenticated(f"wrong secret for API key {key_id}", reason="API_KEY_INVALID")
        self._cache[key_id] = _Cached(digest, stored, now)
        return self._usable(stored)

    @staticmethod
    def _usable(key: ApiKey) -> Principal:
        if key.is_revoked:
            raise Unauthenticated(f"API key {key.key_id} is revoked", reason="API_KEY_REVOKED")
        return key.principal


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; monotonic time."""

    __slots__ = ("_at", "_burst", "_rate", "_tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._at = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now

    def has_token(self) -> bool:
        self._refill()
        return self._tokens >= 1

    def take(self) -> bool:
        """Takes a token if there is one."""
        self._refill()
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def wait_s(self) -> float:
        """How long until the next token."""
        self._refill()
        return max(0.0, (1 - self._tokens) / self._rate)
