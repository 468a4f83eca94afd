"""The API's TLS files, checked the way a TLS server loads them, before anything uses them.

gRPC reads the PEM files only when the port is bound, and reports a junk certificate, a key that
belongs to another certificate or an encrypted key as "Failed to bind" with no word of which
file is wrong; by then the gateway has migrated its database and written its first admin key.
So the files are read here first, with the standard library's OpenSSL (the same checks: the
certificates parse, the key parses unencrypted and is the certificate's), and each problem is
told with the configuration key of the file at fault.

The validity dates are read from the certificates' DER (RFC 5280, 4.1: the fifth field of the
TBSCertificate), which `ssl` does not expose for a certificate that is not a peer's.
"""

from __future__ import annotations

import base64
import re
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

CERT_KEY = "server.tls_cert_file"
KEY_KEY = "server.tls_key_file"
CLIENT_CA_KEY = "server.tls_client_ca_file"

# A certificate expiring sooner than this is warned about at every check. ACME clients renew at
# 30 days left; a certificate still this close to its end was not renewed.
EXPIRY_WARNING = timedelta(days=14)

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.S
)


class TlsFileError(ValueError):
    """A TLS file that cannot be used; the message starts with the configuration key."""


@dataclass(frozen=True, slots=True)
class Validity:
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True, slots=True)
class ServerTls:
    """The contents of the API's TLS files, checked: what gRPC is given."""

    key_pem: bytes
    chain_pem: bytes
    client_ca_pem: bytes | None
    # The earliest end of validity of the chain's certificates and the client CA's.
    expires_at: datetime
    # What is usable but needs the operator soon (an end of validity near, a start ahead).
    warnings: tuple[str, ...]


def read_server_tls(
    cert_file: Path, key_file: Path, client_ca_file: Path | None, *, now: datetime
) -> ServerTls:
    """Reads and checks the files; TlsFileError names the key of the first file at fault."""
    chain_pem = _read(CERT_KEY, cert_file)
    key_pem = _read(KEY_KEY, key_file)
    client_ca_pem = None if client_ca_file is None else _read(CLIENT_CA_KEY, client_ca_file)
    warnings: list[str] = []
    ends = [_check_certificates(CERT_KEY, cert_file, chain_pem, now, warnings)]
    if client_ca_file is not None and client_ca_pem is not None:
        ends.append(
            _check_certificates(CLIENT_CA_KEY, client_ca_file, client_ca_pem, now, warnings)
        )
    _check_key(cert_file, key_file)
    return ServerTls(
        key_pem=key_pem,
        chain_pem=chain_pem,
        client_ca_pem=client_ca_pem,
        expires_at=min(ends),
        warnings=tuple(warnings),
    )


def _read(key: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise TlsFileError(f"{key}: cannot read {path}: {error.strerror or error}") from None


def _check_certificates(
    key: str, path: Path, pem: bytes, now: datetime, warnings: list[str]
) -> datetime:
    """Every certificate of the file parses and is valid now; returns the earliest end."""
    blocks = _PEM_CERTIFICATE.findall(pem)
    if not blocks:
        raise TlsFileError(f"{key}: {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=pem.decode("ascii", errors="replace"))
        validities = [_validity(base64.b64decode(block)) for block in blocks]
    except (ssl.SSLError, ValueError) as error:
        raise TlsFileError(f"{key}: {path} holds no valid PEM certificate: {_why(error)}") from None
    for number, validity in enumerate(validities, 1):
        which = f"certificate {number} of {len(validities)} in {path}"
        if validity.not_after <= now:
            raise TlsFileError(f"{key}: the {which} expired on {_when(validity.not_after)}")
        left = validity.not_after - now
        if left < EXPIRY_WARNING:
            warnings.append(
                f"{key}: the {which} expires on {_when(validity.not_after)}, "
                f"in {_duration(left)}: renew it"
            )
        if validity.not_before > now:
            warnings.append(
                f"{key}: the {which} is not valid before {_when(validity.not_before)}; "
                "clients refuse it until then (is this host's clock right?)"
            )
    return min(validity.not_after for validity in validities)


def _check_key(cert_file: Path, key_file: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # An empty password: an encrypted key fails here instead of prompting on the terminal
        # (gRPC takes unencrypted keys only).
        context.load_cert_chain(cert_file, key_file, password=b"")
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            raise TlsFileError(
                f"{KEY_KEY}: the key in {key_file} is not the key of the certificate in "
                f"{cert_file} ({CERT_KEY})"
            ) from None
        raise TlsFileError(
            f"{KEY_KEY}: {key_file} holds no usable PEM private key (an encrypted key is not "
            f"accepted): {_why(error)}"
        ) from None
    except OSError as error:
        raise TlsFileError(f"{KEY_KEY}: cannot read {key_file}: {error}") from None


def _why(error: Exception) -> str:
    # OpenSSL's reason ("KEY_VALUES_MISMATCH", "NO_START_LINE") says more than its message.
    reason = getattr(error, "reason", None)
    return str(reason) if reason else str(error)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _duration(left: timedelta) -> str:
    hours = left.total_seconds() / 3600
    return f"{hours:.0f} hours" if hours < 48 else f"{left.days} days"


# -- DER: just enough to reach a certificate's validity -----------------------------------------

_SEQUENCE = 0x30
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18
_EXPLICIT_VERSION = 0xA0


def _validity(der: bytes) -> Validity:
    """Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
    serialNumber, signature, issuer, validity SEQUENCE { notBefore, notAfter }, ... }, ... }"""
    tag, start, _ = _element(der, 0)
    _expect(tag, _SEQUENCE)
    tag, offset, _ = _element(der, start)
    _expect(tag, _SEQUENCE)
    tag, _, end = _element(der, offset)
    if tag == _EXPLICIT_VERSION:
        offset = end
    for _field in ("serialNumber", "signature", "issuer"):
        offset = _element(der, offset)[2]
    tag, start, _ = _element(der, offset)
    _expect(tag, _SEQUENCE)
    not_before, after_start = _time(der, start)
    not_after, _ = _time(der, after_start)
    return Validity(not_before, not_after)


def _element(der: bytes, offset: int) -> tuple[int, int, int]:
    """The tag, content start and content end of the DER element at `offset`."""
    if offset + 2 > len(der):
        raise ValueError("truncated DER")
    tag, length = der[offset], der[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or start + count > len(der):
            raise ValueError("bad DER length")
        length = int.from_bytes(der[start : start + count], "big")
        start += count
    end = start + length
    if end > len(der):
        raise ValueError("truncated DER")
    return tag, start, end


def _expect(tag: int, wanted: int) -> None:
    if tag != wanted:
        raise ValueError(f"unexpected DER tag {tag:#x}")


def _time(der: bytes, offset: int) -> tuple[datetime, int]:
    tag, start, end = _element(der, offset)
    text = der[start:end].decode("ascii")
    if tag == _UTC_TIME:
        # RFC 5280, 4.1.2.5.1: YY >= 50 is 19YY, else 20YY.
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != _GENERALIZED_TIME:
        raise ValueError(f"unexpected DER time tag {tag:#x}")
    moment = datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
    return moment, end
