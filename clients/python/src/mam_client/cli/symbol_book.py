"""Which volume step and digits each symbol mamctl shows is shown with.

Messages name a symbol two ways: the gateway's name (an order's spec), or the broker's name an
account trades it under (allocation lines, child orders, fills: EURUSD.m). The gateway's symbols
come from ListSymbols, an account's broker names for them from its symbol mappings. Both are
read from the gateway once, and only when a figure first needs them. A symbol found neither way
has its figures shown exactly as the gateway sent them (figures.UNKNOWN): never guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from mam_client.errors import MamError
from mam_client.figures import UNKNOWN, SymbolPrecision
from mam_client.symbols import Symbol
from mam_client.types import Account

T = TypeVar("T")


class SymbolBook:
    def __init__(
        self,
        symbols: Iterable[Symbol] | Callable[[], Iterable[Symbol]] = (),
        accounts: Iterable[Account] | Callable[[], Iterable[Account]] = (),
    ) -> None:
        """`symbols` and `accounts`, or functions reading them (called once, when needed)."""
        self._read_symbols = symbols if callable(symbols) else _constant(symbols)
        self._read_accounts = accounts if callable(accounts) else _constant(accounts)
        self._symbols: dict[str, SymbolPrecision] | None = None
        # (account id, broker symbol) -> the gateway's symbol.
        self._mappings: dict[tuple[str, str], str] | None = None

    def of(self, symbol: str, account_id: str = "") -> SymbolPrecision:
        """The precision of `symbol`: a gateway symbol, or account_id's broker name for one."""
        symbols = self._gateway_symbols()
        found = symbols.get(symbol)
        if found is not None or not account_id:
            return found or UNKNOWN
        name = self._broker_names().get((account_id, symbol))
        return symbols.get(name, UNKNOWN) if name else UNKNOWN

    def _gateway_symbols(self) -> dict[str, SymbolPrecision]:
        if self._symbols is None:
            self._symbols = {s.name: s.precision for s in _read(self._read_symbols)}
        return self._symbols

    def _broker_names(self) -> dict[tuple[str, str], str]:
        if self._mappings is None:
            self._mappings = {
                (a.account_id, m.broker_symbol): m.symbol
                for a in _read(self._read_accounts)
                for m in a.symbol_mappings
            }
        return self._mappings


def _constant(values: Iterable[T]) -> Callable[[], Iterable[T]]:
    kept = tuple(values)
    return lambda: kept


def _read(source: Callable[[], Iterable[T]]) -> list[T]:
    """What `source` reads; nothing when the gateway cannot say (an older one without
    ListSymbols, a key that may not list accounts): the figures are then shown as sent."""
    try:
        return list(source())
    except MamError:
        return []


NO_SYMBOLS = SymbolBook()
