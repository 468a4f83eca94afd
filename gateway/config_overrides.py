"""MAM__<SECTION>__<KEY> environment variables laid over a configuration file's TOML tables.

Apart from gateway.config (which validates the result) so that the container's health probe
(gateway/probe.py) finds `server.health_listen` exactly as the gateway does without importing
the gateway.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

ENV_PREFIX = "MAM__"


class OverrideError(ValueError):
    """An environment variable that names a key inside something that is not a table."""


def apply_environment(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    """MAM__SERVER__LISTEN=0.0.0.0:50051 sets `listen` of `[server]` in `data`. Keys are
    lowercased; values are parsed as TOML when they can be (numbers, booleans), else taken as
    strings."""
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__") if k]
        if not keys:
            continue
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        target = data
        for key in keys[:-1]:
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                raise OverrideError(f"environment {name}: {key} is not a section")
        target[keys[-1]] = value
