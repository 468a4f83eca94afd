"""A symbol of the simulated broker: its MT5 spec, its quote walk and its trading rules."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from gateway.domain.symbols import SymbolSpec
from gateway.terminals.sim.quotes import QuoteSettings
from gateway.terminals.sim.sessions import ALWAYS_OPEN, TradingSessions


class SymbolTradeMode(enum.Enum):
    """What the broker allows on a symbol (MT5 SYMBOL_TRADE_MODE_*)."""

    DISABLED = 0
    LONGONLY = 1
    SHORTONLY = 2
    CLOSEONLY = 3
    FULL = 4


@dataclass(frozen=True, slots=True)
class SymbolRules:
    trade_mode: SymbolTradeMode = SymbolTradeMode.FULL
    sessions: TradingSessions = ALWAYS_OPEN


@dataclass(frozen=True, slots=True)
class SimSymbol:
    spec: SymbolSpec
    quotes: QuoteSettings
    rules: SymbolRules = field(default_factory=SymbolRules)
