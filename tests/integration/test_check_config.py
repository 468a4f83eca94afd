"""Files the configuration names are checked before anything is written.

`mam-gateway --check-config` passed a junk or mismatched certificate and key, and a missing MT4
token file; a start then migrated the database, seeded the demo, wrote the admin key and died
with "Failed to bind". Both now read these files as the gateway will use them and exit 2 naming
the key, with no database and no key file created.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.certificates import CertificateAuthority, new_key
from tests.support import DEMO_CONFIG


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def tls_files(authority: CertificateAuthority) -> dict[str, Path]:
    """Usable and unusable certificate files, by what is wrong with them."""
    directory = authority.directory
    cert, key = authority.issue("server")
    expired, expired_key = authority.issue(
        "expired", not_before=datetime(2020, 1, 1, tzinfo=UTC), valid_for=timedelta(days=1)
    )
    expiring, expiring_key = authority.issue("expiring", valid_for=timedelta(days=3))
    (directory / "junk.pem").write_text("not a certificate\n")
    return {
        "cert": cert,
        "key": key,
        "other_key": new_key(directory, "other"),
        "expired": expired,
        "expired_key": expired_key,
        "expiring": expiring,
        "expiring_key": expiring_key,
        "junk": directory / "junk.pem",
        "ca": authority.cert,
    }


def run_gateway(
    work: Path, environ: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """`mam-gateway` with the demo configuration, its database and admin key under `work`."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MAM")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(DEMO_CONFIG), *args],
        cwd=work,
        env={
            **inherited,
            "MAM__SERVER__LISTEN": "127.0.0.1:0",
            "MAM__METRICS__LISTEN": "127.0.0.1:0",
            "MAM__DATABASE__URL": f"sqlite+aiosqlite:///{work / 'gateway.db'}",
            "MAM__AUTH__BOOTSTRAP_ADMIN_KEY_FILE": str(work / "admin.key"),
            **environ,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def tls(cert: Path, key: Path, client_ca: Path | None = None) -> dict[str, str]:
    environ = {"MAM__SERVER__TLS_CERT_FILE": str(cert), "MAM__SERVER__TLS_KEY_FILE": str(key)}
    if client_ca is not None:
        environ["MAM__SERVER__TLS_CLIENT_CA_FILE"] = str(client_ca)
    return environ


CASES = {
    "junk certificate": (
        lambda f: tls(f["junk"], f["key"]),
        "server.tls_cert_file: ",
        "holds no PEM certificate",
    ),
    "another certificate's key": (
        lambda f: tls(f["cert"], f["other_key"]),
        "server.tls_key_file: ",
        "is not the key of the certificate",
    ),
    "expired certificate": (
        lambda f: tls(f["expired"], f["expired_key"]),
        "server.tls_cert_file: ",
        "expired on 2020-01-02 00:00 UTC",
    ),
    "junk client CA": (
        lambda f: tls(f["cert"], f["key"], f["junk"]),
        "server.tls_client_ca_file: ",
        "holds no PEM certificate",
    ),
    "missing MT4 token file": (
        lambda f: {
            "MAM__MT4_BRIDGE__LISTEN": "127.0.0.1:0",
            "MAM__MT4_BRIDGE__TOKENS_FILE": str(f["junk"].with_name("absent-tokens")),
        },
        "mt4_bridge.tokens_file: ",
        "No such file or directory",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_config_refuses_unusable_files_naming_the_key(
    tmp_path: Path, tls_files: dict[str, Path], case: str
) -> None:
    environ, key, problem = CASES[case]
    result = run_gateway(tmp_path, environ(tls_files), "--check-config")
    assert result.returncode == 2, result.stdout + result.stderr
    assert key in result.stderr and problem in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["junk certificate", "missing MT4 token file"])
def test_a_start_with_unusable_files_writes_nothing(
    tmp_path: Path, tls_files: dict[str, Path], case: str
) -> None:
    environ, key, _ = CASES[case]
    result = run_gateway(tmp_path, environ(tls_files))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"configuration error: {DEMO_CONFIG}: {key}" in result.stderr
    assert "Traceback" not in result.stderr
    # No database migrated, no demo seeded, no admin key written.
    assert list(tmp_path.iterdir()) == []


def test_a_certificate_near_its_end_is_warned_about_naming_the_key(
    tmp_path: Path, tls_files: dict[str, Path]
) -> None:
    result = run_gateway(
        tmp_path, tls(tls_files["expiring"], tls_files["expiring_key"]), "--check-config"
    )
    assert result.returncode == 0, result.stderr
    assert "warning: server.tls_cert_file: the certificate 1 of 1 in" in result.stderr
    assert "expires on" in result.stderr and "renew it" in result.stderr


def test_usable_files_pass_without_a_warning(tmp_path: Path, tls_files: dict[str, Path]) -> None:
    result = run_gateway(
        tmp_path, tls(tls_files["cert"], tls_files["key"], tls_files["ca"]), "--check-config"
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
