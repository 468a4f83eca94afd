"""The API's TLS certificate, replaced while the gateway runs.

Certificates are short-lived (90 days from an ACME CA, hours from a mesh's), and a restart to
take a new one would end every stream. So the port is bound with
`grpc.dynamic_ssl_server_credentials`: before every new connection's handshake gRPC asks
`_next_configuration` (on a gRPC thread) whether to use another certificate from then on.
The files are read again when they change (their stat stamps differ) and when the operator says
so (`reload`, on SIGHUP). Connections already open keep the certificate they were made with.

Files that are not usable now (junk, a key that is not the certificate's, an expired
certificate: gateway/tls_files.py) leave the certificate in use in place, logged as an error
once per change, so a half-written rotation (the certificate copied, its key not yet) never
takes the endpoint down. A certificate in use that nears its end is warned about once a day.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import grpc

from gateway.config import TlsConfig
from gateway.tls_files import EXPIRY_WARNING, ServerTls, TlsFileError, read_server_tls

log = logging.getLogger(__name__)

EXPIRY_WARNING_INTERVAL = timedelta(days=1)

# What identifies a file's contents without reading it: a replaced file (a new inode, as a
# rename or a Kubernetes secret's symlink swap makes) or a rewritten one (times, size).
FileStamp = tuple[int, int, int, int, int] | None


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ServerCertificates:
    def __init__(self, tls: TlsConfig, *, clock: Callable[[], datetime] = _utc_now) -> None:
        """Reads the files; TlsFileError (naming the configuration key) if they are not usable."""
        self._tls = tls
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp = self._stamps()
        self._in_use = self._read()
        self._initial = self._configuration(self._in_use)
        # A certificate read and checked that gRPC has not been handed yet.
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self._warn_at = self._clock()
        self._log_warnings(self._in_use)

    @property
    def expires_at(self) -> datetime:
        """The earliest end of validity among the certificates in use."""
        return self._in_use.expires_at

    def credentials(self) -> grpc.ServerCredentials:
        # gRPC takes None from the fetcher as "no change" (its docstring); the stubs leave that
        # out of the callable's type.
        fetcher = cast(Callable[[], grpc.ServerCertificateConfiguration], self._next_configuration)
        return grpc.dynamic_ssl_server_credentials(
            self._initial,
            fetcher,
            require_client_authentication=self._tls.client_ca_file is not None,
        )

    def reload(self) -> bool:
        """Reads the files now, changed or not; True when what they hold is used from the next
        connection on, False when they are not usable (logged; the certificate in use stays)."""
        with self._lock:
            self._stamp = self._stamps()
            return self._take_new()

    def _next_configuration(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's question before each handshake: None keeps the certificate in use. Never
        raises: an exception here would be gRPC's to log, with the handshake's outcome unclear."""
        try:
            with self._lock:
                stamp = self._stamps()
                if stamp != self._stamp:
                    self._stamp = stamp
                    self._take_new()
                pending, self._pending = self._pending, None
                self._warn_if_expiring()
                return pending
        except Exception:
            log.exception("TLS: checking the certificate files failed; the one in use stays")
            return None

    def _take_new(self) -> bool:
        try:
            files = self._read()
            configuration = self._configuration(files)
        except (TlsFileError, ValueError) as error:
            log.error("TLS: the certificate in use stays: %s", error)
            return False
        self._in_use, self._pending = files, configuration
        self._warn_at = self._clock()
        log.info(
            "TLS: certificate read from %s, used from the next connection on (valid until %s)",
            self._tls.cert_file,
            files.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
        )
        self._log_warnings(files)
        return True

    def _read(self) -> ServerTls:
        tls = self._tls
        return read_server_tls(tls.cert_file, tls.key_file, tls.client_ca_file, now=self._clock())

    def _configuration(self, files: ServerTls) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(files.key_pem, files.chain_pem)], root_certificates=files.client_ca_pem
        )

    def _log_warnings(self, files: ServerTls) -> None:
        for warning in files.warnings:
            log.warning("TLS: %s", warning)
        if files.warnings:
            self._warn_at = self._clock() + EXPIRY_WARNING_INTERVAL

    def _warn_if_expiring(self) -> None:
        now = self._clock()
        left = self._in_use.expires_at - now
        if now < self._warn_at or left >= EXPIRY_WARNING:
            return
        self._warn_at = now + EXPIRY_WARNING_INTERVAL
        log.warning(
            "TLS: the certificate in use expires on %s, in %.1f days: replace %s and %s "
            "(read again when they change, or on SIGHUP)",
            self._in_use.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
            left.total_seconds() / 86_400,
            self._tls.cert_file,
            self._tls.key_file,
        )

    def _stamps(self) -> tuple[FileStamp, ...]:
        tls = self._tls
        paths = [tls.cert_file, tls.key_file]
        if tls.client_ca_file is not None:
            paths.append(tls.client_ca_file)
        return tuple(_stamp(path) for path in paths)


def _stamp(path: Path) -> FileStamp:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (
        status.st_dev,
        status.st_ino,
        status.st_mtime_ns,
        status.st_ctime_ns,
        status.st_size,
    )
