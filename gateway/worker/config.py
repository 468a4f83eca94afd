"""The worker's configuration: one TOML file, validated at start; the token from a file or the
environment, never from the TOML and never logged.

    worker_id = "win-ldn-01"
    gateway = "gateway.example.com:50051"
    tls_ca_file = "C:/mam/ca.pem"        # empty: plaintext, loopback gateways only
    tls_cert_file = ""                   # a client certificate, when the gateway asks for one
    tls_key_file = ""
    tls_server_name = ""                 # the name in the gateway's certificate, if not the host
    token_file = ""                      # else the environment variable token_env
    token_env = "MAM_WORKER_TOKEN"
    reconnect_min_seconds = 0.5          # backoff after a dropped stream, doubling up to max
    reconnect_max_seconds = 30
    log_level = "INFO"

    [backends.sim]                       # settings of each backend, by its name
    config = "sim-broker.toml"

    [[terminals]]                        # one per hosted account
    login = 70001
    server = "Broker-Live"
    platform = "MT5"
    backend = "sim"                      # a name in gateway/worker/backends.py BACKENDS
    balance = "10000"                    # other keys: the backend's options for this terminal

Relative paths are relative to the configuration file's directory.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.domain.accounts import Platform
from gateway.terminals.remote.worker_hub import BrokerLogin


class WorkerConfigError(Exception):
    """A configuration the worker cannot run with; the message names the key."""


@dataclass(frozen=True, slots=True)
class TerminalEntry:
    """One hosted terminal: its login, the backend that drives it, and that backend's options."""

    login: BrokerLogin
    platform: Platform
    backend: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    worker_id: str
    gateway: str
    token: str = field(repr=False)
    terminals: tuple[TerminalEntry, ...]
    backends: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_server_name: str = ""
    reconnect_min_seconds: float = 0.5
    reconnect_max_seconds: float = 30.0
    log_level: str = "INFO"
    # Where relative paths in backend settings are resolved.
    base_dir: Path = Path()

    @property
    def uses_tls(self) -> bool:
        return self.tls_ca_file is not None


_TOP_KEYS = {
    "worker_id", "gateway", "tls_ca_file", "tls_cert_file", "tls_key_file", "tls_server_name",
    "token_file", "token_env", "reconnect_min_seconds", "reconnect_max_seconds", "log_level",
    "backends", "terminals",
}  # fmt: skip
_TERMINAL_KEYS = {"login", "server", "platform", "backend"}


def load_worker_config(path: Path, environ: Mapping[str, str] | None = None) -> WorkerConfig:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as error:
        raise WorkerConfigError(f"{path}: cannot read: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise WorkerConfigError(f"{path}: not valid TOML: {error}") from None
    try:
        return parse_worker_config(
            data, os.environ if environ is None else environ, base_dir=path.parent
        )
    except WorkerConfigError as error:
        raise WorkerConfigError(f"{path}: {error}") from None


def parse_worker_config(
    data: Mapping[str, Any], environ: Mapping[str, str], *, base_dir: Path = Path()
) -> WorkerConfig:
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise WorkerConfigError(f"{unknown[0]}: unknown key")
    worker_id = _get(data, "worker_id", str, "").strip()
    if not worker_id or len(worker_id) > 100 or not worker_id.isprintable():
        raise WorkerConfigError("worker_id: required, printable, at most 100 characters")
    gateway = _get(data, "gateway", str, "")
    host, sep, port = gateway.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise WorkerConfigError(f"gateway: expected HOST:PORT, got {gateway!r}")

    def path_of(key: str) -> Path | None:
        value: str = _get(data, key, str, "")
        if not value:
            return None
        resolved = base_dir / value
        if not resolved.is_file():
            raise WorkerConfigError(f"{key}: no such file: {resolved}")
        return resolved

    ca, cert, key = path_of("tls_ca_file"), path_of("tls_cert_file"), path_of("tls_key_file")
    if (cert is None) != (key is None):
        raise WorkerConfigError("tls_cert_file and tls_key_file: set both or neither")
    if cert is not None and ca is None:
        raise WorkerConfigError("tls_cert_file: a client certificate needs tls_ca_file (TLS)")
    if ca is None and not _is_loopback(host.strip("[]")):
        raise WorkerConfigError(
            f"gateway: {host} is not a loopback address: set tls_ca_file to connect over TLS"
        )
    minimum = _get(data, "reconnect_min_seconds", float, 0.5)
    maximum = _get(data, "reconnect_max_seconds", float, 30.0)
    if not 0 < minimum <= maximum:
        raise WorkerConfigError("reconnect_min_seconds, reconnect_max_seconds: need 0 < min <= max")
    log_level = _get(data, "log_level", str, "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise WorkerConfigError("log_level: expected DEBUG, INFO, WARNING or ERROR")
    backends = _get(data, "backends", dict, {})
    for name, settings in backends.items():
        if not isinstance(settings, dict):
            raise WorkerConfigError(f"backends.{name}: expected a table")
    terminals = tuple(
        _terminal(entry, i) for i, entry in enumerate(_get(data, "terminals", list, []))
    )
    if not terminals:
        raise WorkerConfigError("terminals: at least one [[terminals]] entry is required")
    logins = [t.login for t in terminals]
    if len(set(logins)) != len(logins):
        raise WorkerConfigError("terminals: a login and server is listed twice")
    return WorkerConfig(
        worker_id=worker_id,
        gateway=gateway,
        token=_token(data, environ, base_dir),
        terminals=terminals,
        backends=backends,
        tls_ca_file=ca,
        tls_cert_file=cert,
        tls_key_file=key,
        tls_server_name=_get(data, "tls_server_name", str, ""),
        reconnect_min_seconds=minimum,
        reconnect_max_seconds=maximum,
        log_level=log_level,
        base_dir=base_dir,
    )


def _get(data: Mapping[str, Any], key: str, kind: type, default: Any, where: str = "") -> Any:
    value = data.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise WorkerConfigError(f"{where}{key}: expected {kind.__name__}, got {value!r}")
    return value


def _terminal(entry: Any, index: int) -> TerminalEntry:
    where = f"terminals[{index}]."
    if not isinstance(entry, dict):
        raise WorkerConfigError(f"terminals[{index}]: expected a table")
    login = _get(entry, "login", int, 0, where)
    server = _get(entry, "server", str, "", where).strip()
    if login <= 0 or not server:
        raise WorkerConfigError(f"{where}login, server: a login above 0 and a server are required")
    platform_name = _get(entry, "platform", str, "MT5", where)
    if platform_name not in ("MT4", "MT5"):
        raise WorkerConfigError(f'{where}platform: expected "MT4" or "MT5"')
    backend = _get(entry, "backend", str, "", where)
    if not backend:
        raise WorkerConfigError(f"{where}backend: required")
    options = {k: v for k, v in entry.items() if k not in _TERMINAL_KEYS}
    return TerminalEntry(BrokerLogin(login, server), Platform[platform_name], backend, options)


def _token(data: Mapping[str, Any], environ: Mapping[str, str], base_dir: Path) -> str:
    token_file: str = _get(data, "token_file", str, "")
    token_env: str = _get(data, "token_env", str, "MAM_WORKER_TOKEN")
    if token_file:
        path = base_dir / token_file
        try:
            token = path.read_text().strip()
        except OSError as error:
            raise WorkerConfigError(f"token_file: cannot read {path}: {error}") from None
        source = "token_file"
    else:
        token = environ.get(token_env, "").strip()
        source = f"${token_env}"
    if not token:
        raise WorkerConfigError(f"{source}: no worker token (set token_file or ${token_env})")
    return token


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
