"""Who may do what: API keys, their roles and the resources each role reaches.

A key is shown once, when it is created: `mam_<key id>_<secret>`. The key id is public (it
names the key in lists and in the audit log); only a salted scrypt hash of the secret is
stored, with its parameters, so that they can be raised later without invalidating old keys.

Roles:
- ADMIN: everything, including keys, terminals and the kill switch.
- MANAGER: trading and account management for the groups the key names.
- INVESTOR: read-only, and only the accounts the key names.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from gateway.domain.ids import AccountId, GroupId

KEY_PREFIX = "mam"
# scrypt's cost: about 30 ms and 16 MiB per verification on one core. Slow on purpose: a
# stolen hash table is expensive to search. The gateway verifies a key once, then keeps a
# fast digest of it in memory (gateway/api/authenticator.py).
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_KEY_ID_BYTES = 8
_SECRET_BYTES = 32
_SALT_BYTES = 16
_KEY_PATTERN = re.compile(r"^mam_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


class Role(enum.Enum):
    ADMIN = 1
    MANAGER = 2
    INVESTOR = 3


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one RPC, as its key says."""

    key_id: str
    name: str
    role: Role
    # MANAGER: the groups it trades and manages. INVESTOR: the accounts it may read.
    group_ids: frozenset[GroupId] = frozenset()
    account_ids: frozenset[AccountId] = frozenset()

    @property
    def actor(self) -> str:
        """How the audit log names the caller."""
        return f"{self.role.name.lower()}:{self.key_id or self.name}"

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


# The caller when authentication is off (allowed only on loopback: the demo and tests).
LOOPBACK_ADMIN = Principal(key_id="", name="loopback", role=Role.ADMIN)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key: everything but the secret."""

    key_id: str
    name: str
    role: Role
    secret_hash: str
    created_at: datetime
    created_by: str
    group_ids: frozenset[GroupId] = frozenset()
    account_ids: frozenset[AccountId] = frozenset()
    revoked_at: datetime | None = None
    revoked_by: str = ""

    @property
    def principal(self) -> Principal:
        return Principal(
            key_id=self.key_id,
            name=self.name,
            role=self.role,
            group_ids=self.group_ids,
            account_ids=self.account_ids,
        )

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new key: the full key is known only here, once."""

    key_id: str
    key: str
    secret_hash: str = field(repr=False)

    def __repr__(self) -> str:  # never print the secret by accident
        return f"IssuedKey(key_id={self.key_id!r})"


def issue_key() -> IssuedKey:
    key_id = secrets.token_hex(_KEY_ID_BYTES)
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    return IssuedKey(key_id, f"{KEY_PREFIX}_{key_id}_{secret}", hash_secret(secret))


def parse_key(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    match = _KEY_PATTERN.match(key)
    return (match.group(1), match.group(2)) if match else None


def hash_secret(secret: str, *, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.scrypt(
        secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    return "$".join(
        ("scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest))
    )


def verify_secret(secret: str, secret_hash: str) -> bool:
    """Constant-time comparison against a stored hash (with the parameters it was made with)."""
    try:
        scheme, n, r, p, salt, expected = secret_hash.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            secret.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(_unb64(expected)),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, _unb64(expected))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
