"""What a failed call of the MetaTrader5 module means: its last_error() codes (RES_*).

A module function that fails answers None and leaves (code, text) in last_error(). For
order_send that is either a request the module refused to read (nothing reached the trade
server: a refusal with a retcode) or a broken link to the terminal (the request may have been
executed: the outcome is unknown).
"""

from __future__ import annotations

from gateway.domain import retcodes
from gateway.terminals.mt5 import constants as mt5

# Codes after which the terminal must be connected again (initialize()).
_LINK_FAILURES = frozenset(
    {
        mt5.RES_E_INTERNAL_FAIL,
        mt5.RES_E_INTERNAL_FAIL_SEND,
        mt5.RES_E_INTERNAL_FAIL_RECEIVE,
        mt5.RES_E_INTERNAL_FAIL_INIT,
        mt5.RES_E_INTERNAL_FAIL_CONNECT,
        mt5.RES_E_INTERNAL_FAIL_TIMEOUT,
        mt5.RES_E_AUTH_FAILED,
    }
)

# order_send answered None without sending: the retcode the gateway records instead.
_NOT_SENT = {
    mt5.RES_E_INVALID_PARAMS: retcodes.INVALID,
    mt5.RES_E_UNSUPPORTED: retcodes.INVALID,
    mt5.RES_E_AUTO_TRADING_DISABLED: retcodes.CLIENT_DISABLES_AT,
}

# A query for records (positions, orders, history) that answered None with one of these found
# none: some builds say "none" so, with RES_S_OK or RES_E_NOT_FOUND, instead of ().
_NONE_FOUND = frozenset({mt5.RES_S_OK, mt5.RES_E_NOT_FOUND})


def breaks_link(code: int) -> bool:
    """Whether the connection to the terminal is gone (connect again before the next call)."""
    return code in _LINK_FAILURES or code <= mt5.RES_E_INTERNAL_FAIL


def refusal_retcode(code: int) -> int | None:
    """The retcode of an order_send that answered None without sending, or None when the
    request may have reached the trade server."""
    return _NOT_SENT.get(code)


def means_not_found(code: int) -> bool:
    """Whether the terminal said it has no such thing. A generic failure (RES_E_FAIL, "Call
    failed") says nothing about existence: the terminal may not be ready."""
    return code == mt5.RES_E_NOT_FOUND


def means_none_found(code: int) -> bool:
    """Whether a records query that answered None found no records (rather than failed)."""
    return code in _NONE_FOUND


def describe(code: int, text: str) -> str:
    return f"{text} ({code})"
