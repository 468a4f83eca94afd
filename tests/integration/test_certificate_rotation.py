"""The API's certificate is replaced without a restart: read again when its files change and on
SIGHUP (which used to end the process, exit 129, without a graceful stop). A new connection gets
the new certificate; files that are not usable leave the one in use in place, logged."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.api.server import RunningGateway, start_gateway
from gateway.config import TlsConfig
from tests.certificates import CertificateAuthority
from tests.support import DEMO_CONFIG, make_config


@pytest.fixture
def authority(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "ca")


def der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def served_certificate(port: int) -> bytes:
    """The certificate a new TLS connection to 127.0.0.1:port is shown (DER)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # what is shown is the question, not whether to trust
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as connection,
    ):
        certificate = connection.getpeercert(binary_form=True)
    assert certificate is not None
    return certificate


def install(source: tuple[Path, Path], target: tuple[Path, Path]) -> None:
    """Puts a certificate and key in place the way a rotation does: a new file renamed over
    each (the certificate first)."""
    for new, path in zip(source, target, strict=True):
        staged = path.with_name(path.name + ".new")
        shutil.copyfile(new, staged)
        os.replace(staged, path)


@pytest.fixture
async def tls_gateway(
    tmp_path: Path, authority: CertificateAuthority
) -> AsyncIterator[tuple[RunningGateway, tuple[Path, Path]]]:
    live = (tmp_path / "server.pem", tmp_path / "server.key")
    install(authority.issue("first"), live)
    config = make_config(tmp_path)
    server = dataclasses.replace(config.server, tls=TlsConfig(*live))
    running = await start_gateway(dataclasses.replace(config, server=server))
    try:
        yield running, live
    finally:
        await running.stop(0.5)


async def test_a_rotated_certificate_is_served_to_new_connections_without_a_signal(
    tls_gateway: tuple[RunningGateway, tuple[Path, Path]], authority: CertificateAuthority
) -> None:
    running, live = tls_gateway
    first = await asyncio.to_thread(served_certificate, running.port)
    assert first == der(live[0])
    second = authority.issue("second")
    install(second, live)
    assert await asyncio.to_thread(served_certificate, running.port) == der(second[0])


async def test_files_that_are_not_usable_leave_the_certificate_in_use(
    tls_gateway: tuple[RunningGateway, tuple[Path, Path]],
    authority: CertificateAuthority,
    caplog: pytest.LogCaptureFixture,
) -> None:
    running, live = tls_gateway
    in_use = der(live[0])
    # Half a rotation: the new certificate in place, its key not yet.
    certificate, _ = authority.issue("half")
    install((certificate, live[1]), live)
    with caplog.at_level(logging.ERROR, logger="gateway.api.tls_credentials"):
        assert running.certificates is not None
        assert not running.certificates.reload()
        assert await asyncio.to_thread(served_certificate, running.port) == in_use
    assert "the certificate in use stays: server.tls_key_file: " in caplog.text
    assert "is not the key of the certificate" in caplog.text


@contextlib.contextmanager
def gateway_process(environ: dict[str, str], work: Path) -> Iterator[subprocess.Popen[str]]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MAM")}
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--config", str(DEMO_CONFIG)],
        cwd=work,
        env={**inherited, **environ},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def read_until(process: subprocess.Popen[str], marker: str) -> str:
    """The process's output up to the first line holding `marker` (fails at its end)."""
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            return line
    pytest.fail(f"no {marker!r} in the output:\n{''.join(seen)}")


def test_sighup_reads_the_rotated_certificate_and_the_gateway_stays_up(
    tmp_path: Path, authority: CertificateAuthority
) -> None:
    live = (tmp_path / "server.pem", tmp_path / "server.key")
    install(authority.issue("first"), live)
    environ = {
        "MAM__SERVER__LISTEN": "127.0.0.1:0",
        "MAM__METRICS__LISTEN": "127.0.0.1:0",
        "MAM__SERVER__TLS_CERT_FILE": str(live[0]),
        "MAM__SERVER__TLS_KEY_FILE": str(live[1]),
        "MAM__DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}",
        "MAM__AUTH__BOOTSTRAP_ADMIN_KEY_FILE": str(tmp_path / "admin.key"),
    }
    with gateway_process(environ, tmp_path) as process:
        port = int(read_until(process, "mam-gateway listening on").rsplit(":", 1)[1])
        assert served_certificate(port) == der(live[0])
        second = authority.issue("second")
        install(second, live)
        process.send_signal(signal.SIGHUP)
        read_until(process, "TLS: certificate read from")
        assert process.poll() is None
        assert served_certificate(port) == der(second[0])
        # Still the same process, stopping gracefully when asked.
        process.send_signal(signal.SIGTERM)
        read_until(process, "stopped")
        assert process.wait(timeout=30) == 0
