"""The Terminal protocol as data: one command per method, so that a call can cross a stream.

The gateway's RemoteTerminal turns each call into a command; the worker hosting the terminal
runs it on its local backend with `run_command` and sends back the answer (or the failure).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.domain.symbols import SymbolSpec
from gateway.terminals.protocol import (
    AccountInfo,
    Deal,
    OrderRequest,
    OrderResult,
    PendingOrder,
    Position,
    Quote,
    TaggedRecords,
    Terminal,
    TerminalHealth,
)


@dataclass(frozen=True, slots=True)
class SendOrder:
    request: OrderRequest


@dataclass(frozen=True, slots=True)
class FindByTag:
    tag: str


@dataclass(frozen=True, slots=True)
class GetPositions:
    pass


@dataclass(frozen=True, slots=True)
class GetPendingOrders:
    pass


@dataclass(frozen=True, slots=True)
class GetDeals:
    since: datetime


@dataclass(frozen=True, slots=True)
class GetAccountInfo:
    pass


@dataclass(frozen=True, slots=True)
class GetSymbolSpec:
    symbol: str


@dataclass(frozen=True, slots=True)
class GetQuote:
    symbol: str


@dataclass(frozen=True, slots=True)
class GetHealth:
    pass


TerminalCommand = (
    SendOrder
    | FindByTag
    | GetPositions
    | GetPendingOrders
    | GetDeals
    | GetAccountInfo
    | GetSymbolSpec
    | GetQuote
    | GetHealth
)

CommandAnswer = (
    OrderResult
    | TaggedRecords
    | list[Position]
    | list[PendingOrder]
    | list[Deal]
    | AccountInfo
    | SymbolSpec
    | Quote
    | TerminalHealth
)


async def run_command(terminal: Terminal, command: TerminalCommand) -> CommandAnswer:
    """Calls the terminal method the command stands for. Its exceptions (TerminalError,
    SymbolNotFound) pass through to the caller, which reports them as failures."""
    match command:
        case SendOrder(request):
            return await terminal.send(request)
        case FindByTag(tag):
            return await terminal.find_by_tag(tag)
        case GetPositions():
            return await terminal.positions()
        case GetPendingOrders():
            return await terminal.pending_orders()
        case GetDeals(since):
            return await terminal.deals(since)
        case GetAccountInfo():
            return await terminal.account_info()
        case GetSymbolSpec(symbol):
            return await terminal.symbol_spec(symbol)
        case GetQuote(symbol):
            return await terminal.quote(symbol)
        case GetHealth():
            return await terminal.health()
