"""Mt5Terminal: the Terminal protocol over one MetaTrader 5 terminal.

The work is done by a session (session.py) whose blocking module calls run in a worker process
(the default, one per terminal) or in a thread of this process (tests, a single terminal):

    terminal = await Mt5Terminal.connect("acc-1", Mt5Settings(login=1001, ...))
    terminal = Mt5Terminal.in_worker_process("acc-1", settings)   # connects on the first call
    terminal = Mt5Terminal.in_thread("acc-1", settings, module=MetaTrader5)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from gateway.domain.symbols import SymbolSpec
from gateway.terminals.mt5.runners import SessionRunner, ThreadRunner
from gateway.terminals.mt5.session import Mt5Session
from gateway.terminals.mt5.settings import Mt5Settings
from gateway.terminals.mt5.worker import WorkerRunner
from gateway.terminals.protocol import (
    AccountInfo,
    Deal,
    OrderRequest,
    OrderResult,
    PendingOrder,
    Position,
    Quote,
    TaggedRecords,
    TerminalError,
    TerminalHealth,
)

Isolation = Literal["process", "thread"]


class Mt5Terminal:
    def __init__(self, account_id: str, runner: SessionRunner) -> None:
        """Does no I/O: the terminal connects on the first call (or `ensure_connected`)."""
        self._account_id = account_id
        self._runner = runner
        self._closed = False

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def in_worker_process(
        cls,
        account_id: str,
        settings: Mt5Settings,
        *,
        start_method: str = "spawn",
    ) -> Mt5Terminal:
        """The module loaded and called in a worker process of this terminal's own, restarted
        when it dies or hangs beyond settings.call_timeout_s (see worker.py)."""
        runner = WorkerRunner(
            settings,
            name=f"mt5-{settings.login}",
            call_timeout_s=settings.call_timeout_s,
            start_method=start_method,
        )
        return cls(account_id, runner)

    @classmethod
    def in_thread(
        cls, account_id: str, settings: Mt5Settings, *, module: Any | None = None
    ) -> Mt5Terminal:
        """The module called in a thread of this process: `module` (e.g. the imported
        MetaTrader5 package or the emulator), or settings.module loaded on the first call.
        One such terminal per process, as the package allows."""
        session = Mt5Session(settings, module=module)
        return cls(account_id, ThreadRunner(session, name=f"mt5-{settings.login}"))

    @classmethod
    async def connect(
        cls,
        account_id: str,
        settings: Mt5Settings,
        *,
        isolation: Isolation = "process",
        module: Any | None = None,
    ) -> Mt5Terminal:
        """A terminal connected to its account now. Raises TerminalError if it cannot be."""
        if isolation == "thread":
            terminal = cls.in_thread(account_id, settings, module=module)
        else:
            terminal = cls.in_worker_process(account_id, settings)
        try:
            await terminal.ensure_connected()
        except BaseException:
            await terminal.close()
            raise
        return terminal

    async def ensure_connected(self) -> None:
        """Initializes the terminal and checks its account, unless connected already."""
        await self._call("connect")

    # -- the Terminal protocol --------------------------------------------------------------

    @property
    def account_id(self) -> str:
        return self._account_id

    @property
    def runner(self) -> SessionRunner:
        return self._runner

    async def account_info(self) -> AccountInfo:
        info: AccountInfo = await self._call("account_info")
        return info

    async def symbol_spec(self, symbol: str) -> SymbolSpec:
        spec: SymbolSpec = await self._call("symbol_spec", symbol)
        return spec

    async def quote(self, symbol: str) -> Quote:
        quote: Quote = await self._call("quote", symbol)
        return quote

    async def send(self, request: OrderRequest) -> OrderResult:
        result: OrderResult = await self._call("send", request)
        return result

    async def find_by_tag(self, tag: str) -> TaggedRecords:
        found: TaggedRecords = await self._call("find_by_tag", tag)
        return found

    async def positions(self) -> list[Position]:
        positions: list[Position] = await self._call("positions")
        return positions

    async def pending_orders(self) -> list[PendingOrder]:
        orders: list[PendingOrder] = await self._call("pending_orders")
        return orders

    async def deals(self, since: datetime) -> list[Deal]:
        deals: list[Deal] = await self._call("deals", since)
        return deals

    async def health(self) -> TerminalHealth:
        if self._closed:
            return TerminalHealth(connected=False, detail="closed")
        try:
            health: TerminalHealth = await self._runner.call("health")
        except TerminalError as error:
            return TerminalHealth(connected=False, detail=str(error))
        return health

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._runner.close()

    async def call_module(self, function: str, *args: Any, **kwargs: Any) -> Any:
        """Calls any function of the terminal's module where the module lives (its worker
        process), answered as plain tuples and dicts: for diagnostics (terminal_info,
        last_error) and for the emulator's emulator_* controls in tests."""
        return await self._call("module_call", function, args, kwargs)

    async def _call(self, method: str, *args: Any) -> Any:
        if self._closed:
            raise TerminalError(f"terminal of account {self._account_id} is closed")
        return await self._runner.call(method, *args)
