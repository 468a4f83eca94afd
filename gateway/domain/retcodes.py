"""MT5 trade server return codes (TRADE_RETCODE_*) and how the engine treats each.

Values from the MetaTrader5 package; MT4 error codes are mapped onto these by the MT4 backend.
"""

from __future__ import annotations

import enum

REQUOTE = 10004
REJECT = 10006
CANCEL = 10007
PLACED = 10008
DONE = 10009
DONE_PARTIAL = 10010
ERROR = 10011
TIMEOUT = 10012
INVALID = 10013
INVALID_VOLUME = 10014
INVALID_PRICE = 10015
INVALID_STOPS = 10016
TRADE_DISABLED = 10017
MARKET_CLOSED = 10018
NO_MONEY = 10019
PRICE_CHANGED = 10020
PRICE_OFF = 10021
INVALID_EXPIRATION = 10022
ORDER_CHANGED = 10023
TOO_MANY_REQUESTS = 10024
NO_CHANGES = 10025
SERVER_DISABLES_AT = 10026
CLIENT_DISABLES_AT = 10027
LOCKED = 10028
FROZEN = 10029
INVALID_FILL = 10030
CONNECTION = 10031
ONLY_REAL = 10032
LIMIT_ORDERS = 10033
LIMIT_VOLUME = 10034
INVALID_ORDER = 10035
POSITION_CLOSED = 10036
INVALID_CLOSE_VOLUME = 10038
CLOSE_ORDER_EXIST = 10039
LIMIT_POSITIONS = 10040
REJECT_CANCEL = 10041
LONG_ONLY = 10042
SHORT_ONLY = 10043
CLOSE_ONLY = 10044
FIFO_CLOSE = 10045
HEDGE_PROHIBITED = 10046


class RetcodeClass(enum.Enum):
    # The request was executed (or placed) as asked.
    SUCCESS = "SUCCESS"
    # Refused before execution for a passing reason: safe to retry with a fresh price.
    TRANSIENT = "TRANSIENT"
    # Refused for a reason a retry does not change.
    PERMANENT = "PERMANENT"
    # The request may or may not have been executed: reconcile by tag before any resend.
    AMBIGUOUS = "AMBIGUOUS"


_SUCCESS = frozenset({PLACED, DONE, DONE_PARTIAL, NO_CHANGES})
_TRANSIENT = frozenset({REQUOTE, PRICE_CHANGED, PRICE_OFF, TOO_MANY_REQUESTS, CONNECTION, LOCKED})
_AMBIGUOUS = frozenset({TIMEOUT, ERROR})


def classify(retcode: int) -> RetcodeClass:
    if retcode in _SUCCESS:
        return RetcodeClass.SUCCESS
    if retcode in _TRANSIENT:
        return RetcodeClass.TRANSIENT
    if retcode in _AMBIGUOUS:
        return RetcodeClass.AMBIGUOUS
    return RetcodeClass.PERMANENT


_NAMES = {
    value: name for name, value in globals().items() if name.isupper() and isinstance(value, int)
}


def name_of(retcode: int) -> str:
    return _NAMES.get(retcode, f"RETCODE_{retcode}")
