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
    log_format = "human"                 # or "json": one JSON object a line

    [tracing]                            # as the gateway's [tracing] (docs/operations.md)
    enabled = false
    otlp_endpoint = "127.0.0.1:4317"     # a command is traced as its gateway call was sampled

    [metrics]                            # GET /metrics for Prometheus (docs/operations.md)
    enabled = false                      # off by default: several workers may share a host
    listen = "127.0.0.1:9465"            # port 0: a free one, printed at start
    plaintext_off_loopback = false       # plain HTTP: off loopback only on a private network

    [backends.sim]                       # settings of each backend, by its name
    config = "sim-broker.toml"

    [[terminals]]                        # one per hosted account
    login = 70001
    server = "Broker-Live"
    platform = "MT5"
    backend = "sim"                      # a name in gateway/worker/backends.py BACKENDS
    balance = "10000"                    # other keys: the backend's options for this terminal

Relative paths are relative to the configuration file's directory. Each key is declared once
below, with its type, constraint and default (read by gateway/config/tables.py).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import msgspec

from gateway.config.models import LogFormat, TracingConfig
from gateway.config.tables import (
    HostPort,
    LogLevel,
    PositiveFloat,
    TableError,
    field_names,
    read_table,
)
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
class WorkerMetricsConfig:
    """[metrics]: the worker's Prometheus endpoint (gateway/worker/metrics.py)."""

    # Off by default, unlike the gateway's: several workers often run on one host.
    enabled: bool = False
    listen: HostPort = "127.0.0.1:9465"
    # Plain HTTP without authentication: off loopback only on a private network.
    plaintext_off_loopback: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class _WorkerKeys:
    """The keys the worker uses as the file has them."""

    # The name in the gateway's certificate, if not the gateway's host.
    tls_server_name: str = ""
    # Backoff after a dropped stream, doubling from min up to max.
    reconnect_min_seconds: PositiveFloat = 0.5
    reconnect_max_seconds: PositiveFloat = 30.0
    log_level: LogLevel = "INFO"
    log_format: LogFormat = "human"
    # Spans of the commands that carry their gateway call's trace (its terminal calls).
    tracing: TracingConfig = field(default_factory=TracingConfig)
    metrics: WorkerMetricsConfig = field(default_factory=WorkerMetricsConfig)
    # Settings of each backend, a table by its name (gateway/worker/backends.py).
    backends: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.reconnect_min_seconds <= self.reconnect_max_seconds:
            raise ValueError("reconnect_min_seconds, reconnect_max_seconds: need 0 < min <= max")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig(_WorkerKeys):
    worker_id: str
    gateway: str
    token: str = field(repr=False)
    terminals: tuple[TerminalEntry, ...]
    # None: plaintext (loopback gateways only).
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Where relative paths in backend settings are resolved.
    base_dir: Path = Path()

    @property
    def uses_tls(self) -> bool:
        return self.tls_ca_file is not None


@dataclass(frozen=True, slots=True)
class TerminalFile:
    """A [[terminals]] entry's own keys; its other keys are the backend's options."""

    login: int = 0
    server: str = ""
    platform: Annotated[str, msgspec.Meta(pattern=r"^MT[45]$", description='"MT4" or "MT5"')] = (
        "MT5"
    )
    # A name in gateway/worker/backends.py BACKENDS.
    backend: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerFile(_WorkerKeys):
    worker_id: str = ""
    gateway: HostPort
    # The CA of the gateway's certificate; none: plaintext, to a loopback gateway only.
    tls_ca_file: Path | None = None
    # A client certificate and its key, when the gateway asks for one.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # The token: read from token_file, else from the environment variable token_env.
    token_file: Path | None = None
    token_env: str = "MAM_WORKER_TOKEN"
    terminals: tuple[dict[str, Any], ...] = ()


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
    try:
        file = read_table(WorkerFile, dict(data))
        terminals = tuple(_terminal(entry, i) for i, entry in enumerate(file.terminals))
    except TableError as error:
        raise WorkerConfigError(str(error)) from None
    worker_id = file.worker_id.strip()
    if not worker_id or len(worker_id) > 100 or not worker_id.isprintable():
        raise WorkerConfigError("worker_id: required, printable, at most 100 characters")
    ca, cert, key = (
        _existing(name, base_dir, getattr(file, name))
        for name in ("tls_ca_file", "tls_cert_file", "tls_key_file")
    )
    if (cert is None) != (key is None):
        raise WorkerConfigError("tls_cert_file and tls_key_file: set both or neither")
    if cert is not None and ca is None:
        raise WorkerConfigError("tls_cert_file: a client certificate needs tls_ca_file (TLS)")
    host = file.gateway.rpartition(":")[0]
    if ca is None and not _is_loopback(host.strip("[]")):
        raise WorkerConfigError(
            f"gateway: {host} is not a loopback address: set tls_ca_file to connect over TLS"
        )
    metrics = file.metrics
    metrics_host = metrics.listen.rpartition(":")[0].strip("[]")
    if metrics.enabled and not metrics.plaintext_off_loopback and not _is_loopback(metrics_host):
        raise WorkerConfigError(
            f"metrics.listen: {metrics_host} is not a loopback address and metrics are plain "
            "HTTP; serve them on a private network only and set "
            "metrics.plaintext_off_loopback = true"
        )
    for name, settings in file.backends.items():
        if not isinstance(settings, dict):
            raise WorkerConfigError(f"backends.{name}: expected a table")
    if not terminals:
        raise WorkerConfigError("terminals: at least one [[terminals]] entry is required")
    logins = [t.login for t in terminals]
    if len(set(logins)) != len(logins):
        raise WorkerConfigError("terminals: a login and server is listed twice")
    shared = {f.name: getattr(file, f.name) for f in dataclasses.fields(_WorkerKeys)}
    return WorkerConfig(
        **shared | {"log_level": file.log_level.upper()},
        worker_id=worker_id,
        gateway=file.gateway,
        token=_token(file, environ, base_dir),
        terminals=terminals,
        tls_ca_file=ca,
        tls_cert_file=cert,
        tls_key_file=key,
        base_dir=base_dir,
    )


_TERMINAL_KEYS = field_names(TerminalFile)


def _terminal(entry: dict[str, Any], index: int) -> TerminalEntry:
    where = f"terminals[{index}]"
    own = read_table(TerminalFile, {k: v for k, v in entry.items() if k in _TERMINAL_KEYS}, where)
    server = own.server.strip()
    if own.login <= 0 or not server:
        raise WorkerConfigError(f"{where}.login, server: a login above 0 and a server are required")
    if not own.backend:
        raise WorkerConfigError(f"{where}.backend: required")
    options = {k: v for k, v in entry.items() if k not in _TERMINAL_KEYS}
    return TerminalEntry(
        BrokerLogin(own.login, server), Platform[own.platform], own.backend, options
    )


def _existing(key: str, base_dir: Path, value: Path | None) -> Path | None:
    if value is None:
        return None
    resolved = base_dir / value
    if not resolved.is_file():
        raise WorkerConfigError(f"{key}: no such file: {resolved}")
    return resolved


def _token(file: WorkerFile, environ: Mapping[str, str], base_dir: Path) -> str:
    if file.token_file is not None:
        path = base_dir / file.token_file
        try:
            token = path.read_text().strip()
        except OSError as error:
            raise WorkerConfigError(f"token_file: cannot read {path}: {error}") from None
        source = "token_file"
    else:
        token = environ.get(file.token_env, "").strip()
        source = f"${file.token_env}"
    if not token:
        raise WorkerConfigError(f"{source}: no worker token (set token_file or ${file.token_env})")
    return token


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
