"""The gateway's configuration: one TOML file plus environment overrides, validated at start.

An environment variable MAM__<SECTION>__<KEY> overrides `<key>` of `[<section>]`, e.g.
MAM__SERVER__LISTEN=0.0.0.0:50051 or MAM__DATABASE__URL=postgresql+asyncpg://... Values are
parsed as TOML when they can be (numbers, booleans), else taken as strings.

models.py declares every key once (type, constraint, default), tables.py reads a TOML table into
its model with errors naming the key, load.py reads the whole file.
"""

from gateway.config.load import load_config
from gateway.config.models import (
    MIN_HELLO_FRAME_BYTES,
    AuthConfig,
    ConfigError,
    DatabaseFile,
    DemoAccount,
    DemoConfig,
    EngineConfig,
    GatewayConfig,
    GatewayFile,
    HostableLogin,
    MetricsConfig,
    Mt4BridgeConfig,
    Mt5Config,
    Mt5File,
    ServerConfig,
    ServerFile,
    SimulatedSymbol,
    SimulatorConfig,
    SimulatorFile,
    SourcesConfig,
    SymbolFile,
    SymbolRulesFile,
    TlsConfig,
    TracingConfig,
    WorkersConfig,
    WorkersFile,
    WorkerToken,
)
from gateway.config.worker_tokens import (
    check_worker_tokens,
    parse_worker_token,
    read_worker_tokens_file,
)

__all__ = [
    "MIN_HELLO_FRAME_BYTES",
    "AuthConfig",
    "ConfigError",
    "DatabaseFile",
    "DemoAccount",
    "DemoConfig",
    "EngineConfig",
    "GatewayConfig",
    "GatewayFile",
    "HostableLogin",
    "MetricsConfig",
    "Mt4BridgeConfig",
    "Mt5Config",
    "Mt5File",
    "ServerConfig",
    "ServerFile",
    "SimulatedSymbol",
    "SimulatorConfig",
    "SimulatorFile",
    "SourcesConfig",
    "SymbolFile",
    "SymbolRulesFile",
    "TlsConfig",
    "TracingConfig",
    "WorkerToken",
    "WorkersConfig",
    "WorkersFile",
    "check_worker_tokens",
    "load_config",
    "parse_worker_token",
    "read_worker_tokens_file",
]
