"""What an account holds when a child order is checked against its limits: the volume and
positions open per symbol, its equity and margin, and what one more trade makes of them.

Open volume per symbol is long + short: on a netting account one side is always zero (one
position per symbol), on a hedging account a long and a short both count, as both tie up margin
and both are open volume the account carries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Protocol

from gateway.domain.accounts import AccountSnapshot, MarginMode
from gateway.domain.side import Side

ZERO = Decimal(0)


class HeldPosition(Protocol):
    """An open position as a terminal reports it (terminals' Position, AccountPosition)."""

    @property
    def symbol(self) -> str: ...

    @property
    def side(self) -> Side: ...

    @property
    def volume(self) -> Decimal: ...


@dataclass(frozen=True, slots=True)
class SymbolExposure:
    """What is open in one symbol: volume in lots and position count, per side."""

    long_volume: Decimal = ZERO
    short_volume: Decimal = ZERO
    long_positions: int = 0
    short_positions: int = 0

    def __post_init__(self) -> None:
        if min(self.long_volume, self.short_volume) < 0:
            raise ValueError(f"open volume cannot be negative: {self}")
        if min(self.long_positions, self.short_positions) < 0:
            raise ValueError(f"a position count cannot be negative: {self}")

    @property
    def volume(self) -> Decimal:
        return self.long_volume + self.short_volume

    @property
    def positions(self) -> int:
        return self.long_positions + self.short_positions

    @property
    def is_flat(self) -> bool:
        return self.volume == 0 and self.positions == 0

    def after(self, side: Side, volume: Decimal, *, netting: bool, closing: bool) -> SymbolExposure:
        """What is open once an order of `volume` lots on `side` has filled.

        `closing`: the order closes (part of) a position of the other side (a SELL closes a
        long); on a hedging account a partial close keeps the count, as which of several
        positions it closes is not known here: an overestimate only makes later checks stricter.
        On a netting account an opposite order reduces the one position, closes it exactly, or
        reverses it.
        """
        if volume < 0:
            raise ValueError(f"an order volume cannot be negative: {volume}")
        buying = side is Side.BUY
        same_volume, same_count = (
            (self.long_volume, self.long_positions)
            if buying
            else (self.short_volume, self.short_positions)
        )
        other_volume, other_count = (
            (self.short_volume, self.short_positions)
            if buying
            else (self.long_volume, self.long_positions)
        )
        if closing:
            other_volume = max(ZERO, other_volume - volume)
            if other_volume == 0:
                other_count = 0
        elif not netting:
            same_volume, same_count = same_volume + volume, same_count + 1
        elif other_volume == 0:
            same_volume, same_count = same_volume + volume, max(same_count, 1)
        elif volume < other_volume:
            other_volume -= volume
        else:
            # Closed exactly, or reversed into a position of the order's side.
            same_volume += volume - other_volume
            other_volume, other_count = ZERO, 0
            same_count = max(same_count, 1) if same_volume > 0 else 0
        if buying:
            return SymbolExposure(same_volume, other_volume, same_count, other_count)
        return SymbolExposure(other_volume, same_volume, other_count, same_count)


@dataclass(frozen=True, slots=True)
class AccountExposure:
    """An account's money and open positions at one moment, as the risk checks see them."""

    account_id: str
    equity: Decimal
    # Margin in use, in the account currency.
    margin: Decimal
    leverage: int
    margin_mode: MarginMode
    # Symbol (as the account trades it) -> what is open there; flat symbols may be left out.
    symbols: Mapping[str, SymbolExposure] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.leverage < 1:
            raise ValueError(f"account {self.account_id}: leverage {self.leverage} is below 1")
        if self.margin < 0:
            raise ValueError(f"account {self.account_id}: margin {self.margin} is negative")
        # A private copy: the caller's dict changing later must not change this value.
        object.__setattr__(self, "symbols", MappingProxyType(dict(self.symbols)))

    @classmethod
    def of_positions(
        cls,
        account_id: str,
        snapshot: AccountSnapshot,
        positions: Iterable[HeldPosition],
        *,
        leverage: int,
        margin_mode: MarginMode,
    ) -> AccountExposure:
        """From one reading of the account's terminal: its money and every open position."""
        volumes: dict[str, list[Decimal]] = {}
        counts: dict[str, list[int]] = {}
        for position in positions:
            side = 0 if position.side is Side.BUY else 1
            volumes.setdefault(position.symbol, [ZERO, ZERO])[side] += position.volume
            counts.setdefault(position.symbol, [0, 0])[side] += 1
        symbols = {
            symbol: SymbolExposure(v[0], v[1], counts[symbol][0], counts[symbol][1])
            for symbol, v in volumes.items()
        }
        return cls(account_id, snapshot.equity, snapshot.margin, leverage, margin_mode, symbols)

    @property
    def netting(self) -> bool:
        return self.margin_mode is MarginMode.NETTING

    @property
    def open_positions(self) -> int:
        return sum(s.positions for s in self.symbols.values())

    def in_symbol(self, symbol: str) -> SymbolExposure:
        return self.symbols.get(symbol) or SymbolExposure()

    def with_symbol(
        self, symbol: str, exposure: SymbolExposure, *, margin: Decimal
    ) -> AccountExposure:
        """The same account with `symbol` now holding `exposure` and `margin` in use."""
        symbols = dict(self.symbols)
        if exposure.is_flat:
            symbols.pop(symbol, None)
        else:
            symbols[symbol] = exposure
        return AccountExposure(
            self.account_id, self.equity, margin, self.leverage, self.margin_mode, symbols
        )
