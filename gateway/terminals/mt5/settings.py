"""How to reach one MetaTrader 5 terminal: which MetaTrader5-like module, which account."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.terminals.mt5.emulator.config import EmulatorConfig

EMULATOR_FACTORY = "gateway.terminals.mt5.emulator:emulator_from_config"


@dataclass(frozen=True, slots=True)
class ModuleSpec:
    """Where the MetaTrader5 API object comes from, as picklable data a worker process can load:
    a module ("MetaTrader5"), or "module:callable" called with `options` (mt5linux's client
    class, the emulator's factory)."""

    target: str = "MetaTrader5"
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def metatrader5(cls) -> ModuleSpec:
        """The MetaQuotes package (Windows; the `mt5` extra)."""
        return cls("MetaTrader5")

    @classmethod
    def mt5linux(cls, host: str = "localhost", port: int = 18812, **options: Any) -> ModuleSpec:
        """mt5linux's RPyC client of a MetaTrader5 package running under Wine (one server, one
        port per terminal). Only imported by the process that loads it."""
        return cls("mt5linux:MetaTrader5", (("host", host), ("port", port), *options.items()))

    @classmethod
    def emulator(cls, config: EmulatorConfig) -> ModuleSpec:
        """The emulated package over a simulated broker account built from `config`."""
        return cls(EMULATOR_FACTORY, (("config", config),))

    def load(self) -> Any:
        """The API object. Raises ImportError / AttributeError / what the factory raises."""
        module_name, _, attribute = self.target.partition(":")
        module = importlib.import_module(module_name)
        if not attribute:
            return module
        return getattr(module, attribute)(**dict(self.options))

    @property
    def is_factory(self) -> bool:
        """Whether each load makes a new object (a client whose connection can break)."""
        return ":" in self.target


@dataclass(frozen=True, slots=True)
class Mt5Settings:
    """One terminal, logged in to one account (one terminal per account and process)."""

    login: int
    # This account's own terminal64.exe (absolute). Required: without it the package attaches to
    # whichever terminal it finds, and `login=` switches that terminal's account, under any
    # other session using it. No two terminals may share it (see terminal_lock.py).
    terminal_path: str
    # The trade server exactly as the terminal names it (AccountInfo.server); checked on every
    # connection and before every send. "" checks the login only (the gateway fills it in from
    # the account).
    server: str = ""
    # "" logs in with the password the terminal has saved. A master (trading) password: an
    # investor password connects but cannot trade.
    password: str = field(default="", repr=False)
    # Portable mode: the terminal keeps its data beside terminal64.exe (one install per account).
    portable: bool = False
    # How long initialize() may take to reach the terminal, in milliseconds.
    timeout_ms: int = 60_000
    module: ModuleSpec = field(default_factory=ModuleSpec)
    # The trade server's clock runs this far ahead of UTC (MT5 reports server times). Brokers
    # that follow daylight saving change it twice a year.
    server_utc_offset: timedelta = timedelta(0)
    # How far back find_by_tag searches the history for a tag that carries no creation time.
    history_lookback: timedelta = timedelta(days=30)
    # How long one call may take before the worker process counts as hung and is killed: above
    # the engine's request timeout and timeout_ms.
    call_timeout_s: float = 90.0
    # How long a market order the server accepted without its deal (no deal ticket or price in
    # the answer, or PLACED: executed asynchronously) waits for the deal in the terminal's
    # history before its outcome counts as unknown (reconciled by tag). Well below call_timeout_s
    # and the engine's request timeout, which the wait is part of.
    deal_wait_s: float = 2.0

    def __post_init__(self) -> None:
        if self.login <= 0:
            raise ValueError("login must be a positive account number")
        if not is_absolute_terminal_path(self.terminal_path):
            raise ValueError(
                "terminal_path: required, the absolute path of this account's own "
                f"terminal64.exe (got {self.terminal_path!r})"
            )
        if self.timeout_ms <= 0:
            raise ValueError("timeout_ms must be greater than 0")
        if self.history_lookback <= timedelta(0):
            raise ValueError("history_lookback must be greater than 0")
        if self.call_timeout_s <= 0:
            raise ValueError("call_timeout_s must be greater than 0")
        if self.deal_wait_s < 0:
            raise ValueError("deal_wait_s must be 0 or more")

    @classmethod
    def from_table(
        cls,
        table: Mapping[str, Any],
        *,
        login: int,
        server: str,
        environ: Mapping[str, str] | None = None,
        base_dir: Path = Path(),
    ) -> Mt5Settings:
        """Settings from a configuration table (TOML) of the keys in TABLE_KEYS; the password
        only from the environment (`password_env`) or a file (`password_file`, relative to
        `base_dir`). Raises ValueError naming the key at fault."""
        unknown = sorted(set(table) - TABLE_KEYS)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown key")
        environ = os.environ if environ is None else environ
        if "password_env" in table and "password_file" in table:
            raise ValueError("password_env, password_file: give one of them")
        password = ""
        if "password_env" in table:
            name = _typed(table, "password_env", str, "")
            if name not in environ:
                raise ValueError(f"password_env: the environment has no {name}")
            password = environ[name]
        elif "password_file" in table:
            path = base_dir / _typed(table, "password_file", str, "")
            try:
                password = path.read_text(encoding="utf-8").strip()
            except OSError as error:
                raise ValueError(f"password_file: {error}") from None
        module_name = _typed(table, "module", str, "MetaTrader5")
        if module_name == "MetaTrader5":
            module = ModuleSpec.metatrader5()
        elif module_name == "mt5linux":
            module = ModuleSpec.mt5linux(
                _typed(table, "mt5linux_host", str, "localhost"),
                _typed(table, "mt5linux_port", int, 18812),
            )
        else:
            raise ValueError(f'module: expected "MetaTrader5" or "mt5linux", got {module_name!r}')
        if "terminal_path" not in table:
            raise ValueError("terminal_path: required, this account's own terminal64.exe")
        return cls(
            login=login,
            server=server,
            password=password,
            terminal_path=_typed(table, "terminal_path", str, ""),
            portable=_typed(table, "portable", bool, False),
            timeout_ms=_typed(table, "timeout_ms", int, 60_000),
            module=module,
            server_utc_offset=timedelta(minutes=_typed(table, "server_utc_offset_minutes", int, 0)),
            history_lookback=timedelta(days=_typed(table, "history_lookback_days", int, 30)),
            call_timeout_s=float(_typed(table, "call_timeout_seconds", int | float, 90.0)),
            deal_wait_s=float(_typed(table, "deal_wait_seconds", int | float, 2.0)),
        )


# The keys of a terminal's configuration table (Mt5Settings.from_table).
TABLE_KEYS = frozenset(
    {
        "terminal_path",
        "portable",
        "password_env",
        "password_file",
        "timeout_ms",
        "server_utc_offset_minutes",
        "history_lookback_days",
        "call_timeout_seconds",
        "deal_wait_seconds",
        "module",
        "mt5linux_host",
        "mt5linux_port",
    }
)


def is_absolute_terminal_path(path: str) -> bool:
    """Whether `path` names a file absolutely, as Windows (or Wine: C:\\...) or POSIX reads it."""
    return bool(path) and (PureWindowsPath(path).is_absolute() or PurePosixPath(path).is_absolute())


def _typed(table: Mapping[str, Any], key: str, kind: Any, default: Any) -> Any:
    value = table.get(key, default)
    # bool is an int in Python, never a number here.
    if isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind):
        raise ValueError(f"{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
    return value
