"""An account's terminal on a remote worker, behind the same Terminal protocol as any backend.

Every call becomes a command on the stream of the worker hosting the account's login and waits
for its answer. A call fails with TerminalError (outcome unknown) when no worker hosts the login,
when the worker does not come back within the hub's grace after a drop, or when the stream drops
while the call waits: the engine then reconciles the child by its tag, through the same worker
once it is back, before anything is sent again.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar, cast

from gateway.domain.symbols import SymbolSpec
from gateway.terminals.market import needs_pricing, priced_at_market, sent_at
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
from gateway.terminals.remote.commands import (
    CommandAnswer,
    FindByTag,
    GetAccountInfo,
    GetDeals,
    GetHealth,
    GetPendingOrders,
    GetPositions,
    GetQuote,
    GetSymbolSpec,
    SendOrder,
    TerminalCommand,
)
from gateway.terminals.remote.worker_hub import BrokerLogin, WorkerHub

_T = TypeVar("_T")


class RemoteTerminal:
    def __init__(self, account_id: str, login: BrokerLogin, hub: WorkerHub) -> None:
        self._account_id = account_id
        self._login = login
        self._hub = hub
        self._closed = False
        hub.attach(account_id, login)

    @property
    def account_id(self) -> str:
        return self._account_id

    @property
    def login(self) -> BrokerLogin:
        return self._login

    async def _call(self, command: TerminalCommand) -> CommandAnswer:
        if self._closed:
            raise TerminalError(f"the terminal of {self._account_id} is closed")
        session = await self._hub.session_for(self._login)
        return await session.call(self._account_id, self._login, command)

    async def account_info(self) -> AccountInfo:
        return _one(await self._call(GetAccountInfo()), AccountInfo)

    async def symbol_spec(self, symbol: str) -> SymbolSpec:
        return _one(await self._call(GetSymbolSpec(symbol)), SymbolSpec)

    async def quote(self, symbol: str) -> Quote:
        return _one(await self._call(GetQuote(symbol)), Quote)

    async def send(self, request: OrderRequest) -> OrderResult:
        if self._closed:
            raise TerminalError(f"the terminal of {self._account_id} is closed")
        session = await self._hub.session_for(self._login)
        if not needs_pricing(request) or session.prices_at_market:
            # The worker's terminal prices a deal at market itself: one round trip.
            answer = await session.call(self._account_id, self._login, SendOrder(request))
            return _one(answer, OrderResult)
        # A worker from before: its quote first, then the deal priced by it.
        quote = await self.quote(request.symbol)
        pricing = priced_at_market(request, quote.bid, quote.ask)
        if isinstance(pricing, OrderResult):
            return pricing
        return sent_at(_one(await self._call(SendOrder(pricing)), OrderResult), pricing)

    async def find_by_tag(self, tag: str) -> TaggedRecords:
        return _one(await self._call(FindByTag(tag)), TaggedRecords)

    async def positions(self) -> list[Position]:
        return _items(await self._call(GetPositions()), Position)

    async def pending_orders(self) -> list[PendingOrder]:
        return _items(await self._call(GetPendingOrders()), PendingOrder)

    async def deals(self, since: datetime) -> list[Deal]:
        return _items(await self._call(GetDeals(since)), Deal)

    async def health(self) -> TerminalHealth:
        """Never waits for an absent worker: health is a question about now."""
        if self._closed:
            return TerminalHealth(connected=False, detail="closed")
        session = self._hub.connected_session(self._login)
        if session is None:
            return TerminalHealth(connected=False, detail=self._hub.view(self._login).detail)
        try:
            answer = await session.call(self._account_id, self._login, GetHealth())
            return _one(answer, TerminalHealth)
        except TerminalError as error:
            return TerminalHealth(connected=False, detail=str(error))

    async def close(self) -> None:
        """Forgets the account; the worker's terminal stays as it is. Closing twice is
        harmless; a closed terminal answers nothing more."""
        if not self._closed:
            self._closed = True
            self._hub.detach(self._account_id)


def _one(answer: CommandAnswer, kind: type[_T]) -> _T:
    if isinstance(answer, kind):
        return answer
    raise TerminalError(f"the worker answered {type(answer).__name__}, not {kind.__name__}")


def _items(answer: CommandAnswer, kind: type[_T]) -> list[_T]:
    if isinstance(answer, list) and all(isinstance(item, kind) for item in answer):
        return cast(list[_T], answer)
    raise TerminalError(
        f"the worker answered {type(answer).__name__}, not a list of {kind.__name__}"
    )
