"""Bearer API keys to principals, without paying scrypt on every call.

A key is verified against its stored scrypt hash once; after that, the SHA-256 digest of the
exact key is kept in memory and compared in constant time. A cached key is read again from the
store after CACHE_TTL_S (a revocation made by another tool on the same database is seen within
that time; one made through this gateway is seen at once).

What a key the gateway has not verified yet may cost is bounded by gateway/api/peer_throttle.py:
per connection and per address of the caller, never per key id, so that guessing secrets for a
key id cannot lock its holder out. Refusals that memory can answer cost nothing and are not
throttled: a secret other than the one verified for its key id (a key id has one secret), and
a secret already found wrong (the last KNOWN_WRONG_DIGESTS of them). Concurrent calls with the
same unverified key share one verification.

Key ids are not secret (ListApiKeys lists them, the audit log and error messages name them), so
answers are not padded to one duration: an unknown key id is answered after a store read, a
wrong secret for a key verified before at once, a new key after its scrypt verification.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from gateway.api.peer_throttle import VERIFICATION_WORKERS, AuthenticationThrottle
from gateway.api.token_bucket import TokenBucket
from gateway.domain.access import ApiKey, Principal, parse_key, verify_secret
from gateway.domain.errors import Unauthenticated
from gateway.store.access import AccessStore

log = logging.getLogger(__name__)

# TokenBucket: where access control has always imported it from.
__all__ = ["CACHE_TTL_S", "KNOWN_WRONG_DIGESTS", "Authenticator", "TokenBucket"]

CACHE_TTL_S = 60.0
# Wrong secrets remembered (by digest, 32 bytes each), so that repeating one costs nothing.
KNOWN_WRONG_DIGESTS = 4_096


@functools.cache
def _verification_pool() -> concurrent.futures.ThreadPoolExecutor:
    """One pool for the process (made on the event loop's thread, at the first verification):
    however many gateways a test process starts, scrypt runs VERIFICATION_WORKERS at a time."""
    return concurrent.futures.ThreadPoolExecutor(
        max_workers=VERIFICATION_WORKERS, thread_name_prefix="scrypt"
    )


@dataclass(slots=True)
class _Cached:
    digest: bytes
    key: ApiKey
    read_at: float


class Authenticator:
    def __init__(self, access: AccessStore, *, throttle: AuthenticationThrottle | None = None):
        self._access = access
        self._throttle = throttle or AuthenticationThrottle()
        self._cache: dict[str, _Cached] = {}
        self._known_wrong: OrderedDict[bytes, None] = OrderedDict()
        self._running: dict[bytes, asyncio.Future[bool]] = {}

    async def principal_of(self, authorization: str | None, *, peer: str = "") -> Principal:
        """The principal of an `authorization` metadata value ("Bearer <key>"); `peer` is the
        caller's gRPC peer (context.peer()), what failures are counted against."""
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
        if cached is not None:
            if hmac.compare_digest(cached.digest, digest):
                return self._usable(cached.key)
            # The key id's one right secret is known here, and this is not it.
            raise _wrong_secret(key_id)
        if digest in self._known_wrong:
            self._known_wrong.move_to_end(digest)
            raise _wrong_secret(key_id)
        return await self._verify(key_id, secret, digest, now, peer)

    def forget(self, key_id: str) -> None:
        """Drops a key from the cache (after a revocation)."""
        self._cache.pop(key_id, None)

    async def _verify(
        self, key_id: str, secret: str, digest: bytes, now: float, peer: str
    ) -> Principal:
        self._throttle.admit(peer)
        stored = await self._access.get_api_key(key_id)
        if stored is None:
            self._failed(peer)
            raise Unauthenticated(f"unknown API key {key_id}", reason="API_KEY_INVALID")
        if not await self._verified(secret, digest, stored.secret_hash):
            self._known_wrong[digest] = None
            if len(self._known_wrong) > KNOWN_WRONG_DIGESTS:
                self._known_wrong.popitem(last=False)
            self._failed(peer)
            raise _wrong_secret(key_id)
        self._cache[key_id] = _Cached(digest, stored, now)
        return self._usable(stored)

    async def _verified(self, secret: str, digest: bytes, secret_hash: str) -> bool:
        running = self._running.get(digest)
        if running is None:
            self._throttle.spend_verification()
            running = asyncio.get_running_loop().run_in_executor(
                _verification_pool(), verify_secret, secret, secret_hash
            )
            self._running[digest] = running
            running.add_done_callback(lambda _: self._running.pop(digest, None))
        # Shared by every call waiting for it: one caller giving up cancels nothing of it.
        return await asyncio.shield(running)

    def _failed(self, peer: str) -> None:
        if self._throttle.failed(peer):
            log.warning("repeated failed authentications from %s: throttled", peer or "?")

    @staticmethod
    def _usable(key: ApiKey) -> Principal:
        if key.is_revoked:
            raise Unauthenticated(f"API key {key.key_id} is revoked", reason="API_KEY_REVOKED")
        return key.principal


def _wrong_secret(key_id: str) -> Unauthenticated:
    return Unauthenticated(f"wrong secret for API key {key_id}", reason="API_KEY_INVALID")
