"""MT4 error codes (GetLastError() after a trade function) and the MT5 retcodes they stand for.

The engine decides what to do with an answer by its MT5 retcode class (gateway.domain.retcodes):
success, transient (retry with a fresh price), permanent (reject), ambiguous (reconcile by tag
before anything is sent again). Each MT4 code is mapped onto the MT5 retcode of the same
meaning, so the same classes apply; where MT4 reuses one code for different situations, the
operation decides (see `retcode_for`).

Values: the standard MQL4 list (docs/mt4-bridge.md, "Error codes").
"""

from __future__ import annotations

import enum

from gateway.domain import retcodes

NO_ERROR = 0
NO_RESULT = 1
COMMON_ERROR = 2
INVALID_TRADE_PARAMETERS = 3
SERVER_BUSY = 4
OLD_VERSION = 5
NO_CONNECTION = 6
NOT_ENOUGH_RIGHTS = 7
TOO_FREQUENT_REQUESTS = 8
MALFUNCTIONAL_TRADE = 9
ACCOUNT_DISABLED = 64
INVALID_ACCOUNT = 65
TRADE_TIMEOUT = 128
INVALID_PRICE = 129
INVALID_STOPS = 130
INVALID_TRADE_VOLUME = 131
MARKET_CLOSED = 132
TRADE_DISABLED = 133
NOT_ENOUGH_MONEY = 134
PRICE_CHANGED = 135
OFF_QUOTES = 136
BROKER_BUSY = 137
REQUOTE = 138
ORDER_LOCKED = 139
LONG_POSITIONS_ONLY_ALLOWED = 140
TOO_MANY_REQUESTS = 141
TRADE_MODIFY_DENIED = 145
TRADE_CONTEXT_BUSY = 146
TRADE_EXPIRATION_DENIED = 147
TRADE_TOO_MANY_ORDERS = 148
TRADE_HEDGE_PROHIBITED = 149
TRADE_PROHIBITED_BY_FIFO = 150
INVALID_FUNCTION_PARAMETER_VALUE = 4051
UNKNOWN_SYMBOL = 4106
INVALID_PRICE_PARAM = 4107
INVALID_TICKET = 4108
TRADE_NOT_ALLOWED = 4109
LONGS_NOT_ALLOWED = 4110
SHORTS_NOT_ALLOWED = 4111


class Mt4Operation(enum.Enum):
    """What the EA was asked to do: some MT4 codes mean different things for each."""

    OPEN_MARKET = "OPEN_MARKET"
    PLACE_PENDING = "PLACE_PENDING"
    MODIFY_PENDING = "MODIFY_PENDING"
    MODIFY_POSITION = "MODIFY_POSITION"
    DELETE_PENDING = "DELETE_PENDING"
    CLOSE = "CLOSE"
    CLOSE_BY = "CLOSE_BY"


_AT_MARKET = frozenset({Mt4Operation.OPEN_MARKET, Mt4Operation.CLOSE})
_ON_PENDING = frozenset(
    {Mt4Operation.PLACE_PENDING, Mt4Operation.MODIFY_PENDING, Mt4Operation.DELETE_PENDING}
)

_RETCODES: dict[int, int] = {
    # MT4 answers 1 to an OrderModify that changes nothing: MT5's NO_CHANGES, a success.
    NO_RESULT: retcodes.NO_CHANGES,
    # "Common error": nothing says whether the server acted; reconcile before resending.
    COMMON_ERROR: retcodes.ERROR,
    INVALID_TRADE_PARAMETERS: retcodes.INVALID,
    # Busy and throttled: the server did not take the request; a later try may pass.
    SERVER_BUSY: retcodes.TOO_MANY_REQUESTS,
    OLD_VERSION: retcodes.REJECT,
    # The terminal had no connection to the trade server: the request never left it.
    NO_CONNECTION: retcodes.CONNECTION,
    NOT_ENOUGH_RIGHTS: retcodes.REJECT,
    TOO_FREQUENT_REQUESTS: retcodes.TOO_MANY_REQUESTS,
    MALFUNCTIONAL_TRADE: retcodes.REJECT,
    ACCOUNT_DISABLED: retcodes.TRADE_DISABLED,
    INVALID_ACCOUNT: retcodes.REJECT,
    # The server did not answer in time: it may have executed the request.
    TRADE_TIMEOUT: retcodes.TIMEOUT,
    INVALID_PRICE: retcodes.INVALID_PRICE,
    INVALID_STOPS: retcodes.INVALID_STOPS,
    INVALID_TRADE_VOLUME: retcodes.INVALID_VOLUME,
    MARKET_CLOSED: retcodes.MARKET_CLOSED,
    TRADE_DISABLED: retcodes.TRADE_DISABLED,
    NOT_ENOUGH_MONEY: retcodes.NO_MONEY,
    PRICE_CHANGED: retcodes.PRICE_CHANGED,
    OFF_QUOTES: retcodes.PRICE_OFF,
    BROKER_BUSY: retcodes.TOO_MANY_REQUESTS,
    REQUOTE: retcodes.REQUOTE,
    ORDER_LOCKED: retcodes.LOCKED,
    LONG_POSITIONS_ONLY_ALLOWED: retcodes.LONG_ONLY,
    TOO_MANY_REQUESTS: retcodes.TOO_MANY_REQUESTS,
    # Within the freeze level: MT5's FROZEN.
    TRADE_MODIFY_DENIED: retcodes.FROZEN,
    # MT4 has one trade context per terminal, shared by every EA on it; MT5 has no such code.
    # LOCKED ("locked for processing") is the transient code closest to "busy elsewhere".
    TRADE_CONTEXT_BUSY: retcodes.LOCKED,
    TRADE_EXPIRATION_DENIED: retcodes.INVALID_EXPIRATION,
    TRADE_TOO_MANY_ORDERS: retcodes.LIMIT_ORDERS,
    TRADE_HEDGE_PROHIBITED: retcodes.HEDGE_PROHIBITED,
    TRADE_PROHIBITED_BY_FIFO: retcodes.FIFO_CLOSE,
    INVALID_FUNCTION_PARAMETER_VALUE: retcodes.INVALID,
    UNKNOWN_SYMBOL: retcodes.INVALID,
    INVALID_PRICE_PARAM: retcodes.INVALID_PRICE,
    # AutoTrading off or "Allow live trading" unchecked: MT5's client-side switch.
    TRADE_NOT_ALLOWED: retcodes.CLIENT_DISABLES_AT,
    LONGS_NOT_ALLOWED: retcodes.SHORT_ONLY,
    SHORTS_NOT_ALLOWED: retcodes.LONG_ONLY,
}

_NAMES = {
    value: name
    for name, value in globals().items()
    if name.isupper() and isinstance(value, int) and not name.startswith("_")
}


def name_of(code: int) -> str:
    return _NAMES.get(code, f"ERR_{code}")


def retcode_for(code: int, operation: Mt4Operation) -> int:
    """The MT5 retcode of an MT4 error code answered to `operation` (0 is a success)."""
    if code == NO_ERROR:
        return retcodes.PLACED if operation is Mt4Operation.PLACE_PENDING else retcodes.DONE
    if code == INVALID_PRICE and operation in _AT_MARKET:
        # At market, 129 means the price sent is no longer the current one: a fresh quote
        # fixes it, as for a requote. For a pending order the price itself is wrong.
        return retcodes.PRICE_CHANGED
    if code == INVALID_TRADE_VOLUME and operation is Mt4Operation.CLOSE:
        # OrderClose with more lots than the position holds: MT5's own code for it.
        return retcodes.INVALID_CLOSE_VOLUME
    if code == INVALID_TICKET:
        # The order or position named no longer exists (closed, filled, deleted). The
        # simulated broker answers the same cases with these two codes.
        return retcodes.INVALID if operation in _ON_PENDING else retcodes.POSITION_CLOSED
    # An unknown code may hide an executed request: ambiguous, so the engine reconciles.
    return _RETCODES.get(code, retcodes.ERROR)


def known_codes() -> list[int]:
    """Every MT4 code with a name here (for documentation and tests)."""
    return sorted(_NAMES)
