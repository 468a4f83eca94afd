"""MT4 error codes become the MT5 retcodes whose engine class (transient, permanent,
ambiguous) says what the engine must do next."""

from __future__ import annotations

import pytest

from gateway.domain import retcodes
from gateway.domain.retcodes import RetcodeClass
from gateway.terminals.mt4 import errors
from gateway.terminals.mt4.errors import Mt4Operation

OPEN = Mt4Operation.OPEN_MARKET
SUCCESS, TRANSIENT, PERMANENT, AMBIGUOUS = (
    RetcodeClass.SUCCESS,
    RetcodeClass.TRANSIENT,
    RetcodeClass.PERMANENT,
    RetcodeClass.AMBIGUOUS,
)


@pytest.mark.parametrize(
    ("code", "operation", "retcode", "kind"),
    [
        (0, OPEN, retcodes.DONE, SUCCESS),
        (0, Mt4Operation.PLACE_PENDING, retcodes.PLACED, SUCCESS),
        (1, Mt4Operation.MODIFY_POSITION, retcodes.NO_CHANGES, SUCCESS),
        (2, OPEN, retcodes.ERROR, AMBIGUOUS),
        (3, OPEN, retcodes.INVALID, PERMANENT),
        (4, OPEN, retcodes.TOO_MANY_REQUESTS, TRANSIENT),
        (6, OPEN, retcodes.CONNECTION, TRANSIENT),
        (8, OPEN, retcodes.TOO_MANY_REQUESTS, TRANSIENT),
        (64, OPEN, retcodes.TRADE_DISABLED, PERMANENT),
        (128, OPEN, retcodes.TIMEOUT, AMBIGUOUS),
        (129, OPEN, retcodes.PRICE_CHANGED, TRANSIENT),
        (129, Mt4Operation.CLOSE, retcodes.PRICE_CHANGED, TRANSIENT),
        (129, Mt4Operation.PLACE_PENDING, retcodes.INVALID_PRICE, PERMANENT),
        (130, OPEN, retcodes.INVALID_STOPS, PERMANENT),
        (131, OPEN, retcodes.INVALID_VOLUME, PERMANENT),
        (132, OPEN, retcodes.MARKET_CLOSED, PERMANENT),
        (133, OPEN, retcodes.TRADE_DISABLED, PERMANENT),
        (134, OPEN, retcodes.NO_MONEY, PERMANENT),
        (135, OPEN, retcodes.PRICE_CHANGED, TRANSIENT),
        (136, OPEN, retcodes.PRICE_OFF, TRANSIENT),
        (137, OPEN, retcodes.TOO_MANY_REQUESTS, TRANSIENT),
        (138, OPEN, retcodes.REQUOTE, TRANSIENT),
        (139, Mt4Operation.CLOSE, retcodes.LOCKED, TRANSIENT),
        (140, OPEN, retcodes.LONG_ONLY, PERMANENT),
        (141, OPEN, retcodes.TOO_MANY_REQUESTS, TRANSIENT),
        (145, Mt4Operation.MODIFY_PENDING, retcodes.FROZEN, PERMANENT),
        (146, OPEN, retcodes.LOCKED, TRANSIENT),
        (147, Mt4Operation.PLACE_PENDING, retcodes.INVALID_EXPIRATION, PERMANENT),
        (148, Mt4Operation.PLACE_PENDING, retcodes.LIMIT_ORDERS, PERMANENT),
        (149, OPEN, retcodes.HEDGE_PROHIBITED, PERMANENT),
        (150, Mt4Operation.CLOSE, retcodes.FIFO_CLOSE, PERMANENT),
        (4108, Mt4Operation.CLOSE, retcodes.POSITION_CLOSED, PERMANENT),
        (4108, Mt4Operation.CLOSE_BY, retcodes.POSITION_CLOSED, PERMANENT),
        (4108, Mt4Operation.MODIFY_POSITION, retcodes.POSITION_CLOSED, PERMANENT),
        (4108, Mt4Operation.DELETE_PENDING, retcodes.INVALID, PERMANENT),
        (4109, OPEN, retcodes.CLIENT_DISABLES_AT, PERMANENT),
    ],
)
def test_each_mt4_code_takes_the_engine_class_of_its_meaning(
    code: int, operation: Mt4Operation, retcode: int, kind: RetcodeClass
) -> None:
    assert errors.retcode_for(code, operation) == retcode
    assert retcodes.classify(retcode) is kind


def test_an_unknown_code_is_ambiguous_so_the_engine_reconciles_before_resending() -> None:
    retcode = errors.retcode_for(9999, OPEN)
    assert retcodes.classify(retcode) is AMBIGUOUS
    assert errors.name_of(9999) == "ERR_9999"


def test_every_named_code_but_the_ambiguous_ones_has_a_mapping_of_its_own() -> None:
    meant_ambiguous = {errors.COMMON_ERROR, errors.TRADE_TIMEOUT}
    for code in errors.known_codes():
        for operation in Mt4Operation:
            kind = retcodes.classify(errors.retcode_for(code, operation))
            assert (kind is AMBIGUOUS) == (code in meant_ambiguous), (code, operation)


def test_codes_have_their_mql4_names() -> None:
    assert errors.name_of(146) == "TRADE_CONTEXT_BUSY"
    assert errors.name_of(4108) == "INVALID_TICKET"
