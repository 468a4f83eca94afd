"""Certificates for the tests, made by the openssl command line (the `cryptography` package is no
dependency of the project): a CA, and certificates it signs valid between the dates asked for
(`openssl ca` takes any dates, in the past too, where `openssl x509 -days` takes only days ahead).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

SERVER_NAMES = "subjectAltName=IP:127.0.0.1,DNS:localhost"

_SIGNER_CONFIG = """\
[ca]
default_ca = signer
[signer]
database = index.txt
new_certs_dir = .
serial = serial.txt
default_md = sha256
policy = any
copy_extensions = none
unique_subject = no
[any]
commonName = supplied
"""


def openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


def new_key(directory: Path, name: str) -> Path:
    openssl(directory, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", f"{name}.key")  # fmt: skip
    return directory / f"{name}.key"


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")


@dataclass(frozen=True)
class CertificateAuthority:
    directory: Path
    cert: Path
    key: Path

    @classmethod
    def create(cls, directory: Path, name: str = "test-ca") -> CertificateAuthority:
        directory.mkdir(parents=True, exist_ok=True)
        key = new_key(directory, name)
        openssl(directory, "req", "-x509", "-key", key.name, "-subj", f"/CN={name}",
                "-days", "30", "-out", f"{name}.pem")  # fmt: skip
        (directory / "signer.cnf").write_text(_SIGNER_CONFIG)
        (directory / "index.txt").write_text("")
        (directory / "serial.txt").write_text("1000\n")
        return cls(directory, directory / f"{name}.pem", key)

    def issue(
        self,
        name: str,
        *,
        valid_for: timedelta = timedelta(days=30),
        not_before: datetime | None = None,
        extensions: str = SERVER_NAMES,
        key: Path | None = None,
    ) -> tuple[Path, Path]:
        """A certificate for CN=name valid from `not_before` (an hour ago) for `valid_for`,
        and its key (a new one unless `key` is given): (certificate, key)."""
        start = not_before or datetime.now(UTC) - timedelta(hours=1)
        key = key or new_key(self.directory, name)
        openssl(self.directory, "req", "-new", "-key", str(key), "-subj", f"/CN={name}",
                "-out", f"{name}.csr")  # fmt: skip
        (self.directory / f"{name}.ext").write_text(extensions + "\n")
        openssl(self.directory, "ca", "-batch", "-config", "signer.cnf",
                "-cert", self.cert.name, "-keyfile", self.key.name, "-in", f"{name}.csr",
                "-extfile", f"{name}.ext", "-notext", "-startdate", _stamp(start),
                "-enddate", _stamp(start + valid_for), "-out", f"{name}.pem")  # fmt: skip
        return self.directory / f"{name}.pem", key
