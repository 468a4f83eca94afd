"""The filling a request is sent with is one its symbol accepts (SymbolInfo.trade_exemode and
filling_mode), the nearest to the master order's policy: a symbol that refuses FOK never gets
FOK and answers INVALID_FILL for every child at that broker."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.domain import retcodes
from gateway.domain.orders import FillingPolicy, OrderType, Side
from gateway.terminals.mt5 import constants
from gateway.terminals.mt5.emulator import SymbolTradeModes, TerminalBehaviour
from gateway.terminals.mt5.emulator.config import FILLING_FOK, FILLING_IOC
from gateway.terminals.mt5.records import Rounding, SymbolTerms
from gateway.terminals.mt5.requests import filling_for
from gateway.terminals.protocol import OrderRequest, TradeAction
from gateway.terminals.sim import Fault
from tests.unit.test_mt5_adapter import emulated, session_over

D = Decimal
FOK, IOC, RETURN = FillingPolicy.FOK, FillingPolicy.IOC, FillingPolicy.RETURN
INSTANT = constants.SYMBOL_TRADE_EXECUTION_INSTANT
REQUEST = constants.SYMBOL_TRADE_EXECUTION_REQUEST
MARKET = constants.SYMBOL_TRADE_EXECUTION_MARKET
EXCHANGE = constants.SYMBOL_TRADE_EXECUTION_EXCHANGE
BOTH = FILLING_FOK | FILLING_IOC


def buy(volume: str = "0.10", tag: str = "mam:T", filling: FillingPolicy = FOK) -> OrderRequest:
    """A market buy, FOK unless the master order asks otherwise."""
    return OrderRequest(TradeAction.DEAL, "EURUSD", Side.BUY, D(volume), tag, 7, filling=filling)


def terms(execution_mode: int, filling_flags: int) -> SymbolTerms:
    return SymbolTerms(Rounding(D("0.00001"), D("0.01")), execution_mode, filling_flags)


@pytest.mark.parametrize(
    ("execution_mode", "flags", "wanted", "sent"),
    [
        (MARKET, BOTH, FOK, FOK),
        (MARKET, BOTH, IOC, IOC),
        (MARKET, FILLING_IOC, FOK, IOC),
        (MARKET, FILLING_FOK, IOC, FOK),
        # Market execution has no RETURN for market orders: the nearest is IOC, then FOK.
        (MARKET, BOTH, RETURN, IOC),
        (MARKET, FILLING_FOK, RETURN, FOK),
        # The dealer quotes: a market order is FOK whatever the flags say.
        (INSTANT, FILLING_IOC, IOC, FOK),
        (REQUEST, 0, RETURN, FOK),
        (EXCHANGE, 0, FOK, RETURN),
        (EXCHANGE, FILLING_IOC, FOK, IOC),
        (EXCHANGE, BOTH, RETURN, RETURN),
    ],
)
def test_a_deal_takes_the_nearest_filling_its_symbol_accepts(
    execution_mode: int, flags: int, wanted: FillingPolicy, sent: FillingPolicy
) -> None:
    request = buy(filling=wanted)
    assert filling_for(request, terms(execution_mode, flags)) is sent


@pytest.mark.parametrize(("flags", "wanted", "sent"), [(0, FOK, RETURN), (BOTH, IOC, IOC)])
def test_a_pending_order_may_always_return(
    flags: int, wanted: FillingPolicy, sent: FillingPolicy
) -> None:
    request = OrderRequest(
        TradeAction.PENDING,
        "EURUSD",
        Side.BUY,
        D("0.10"),
        "mam:P",
        7,
        price=D("1.08"),
        order_type=OrderType.LIMIT,
        filling=wanted,
    )
    assert filling_for(request, terms(MARKET, flags)) is sent


def modes(**fields: int) -> TerminalBehaviour:
    return TerminalBehaviour(
        enforces_symbol_modes=True, symbol_modes=(("EURUSD", SymbolTradeModes(**fields)),)
    )


def test_a_symbol_without_fok_fills_a_fok_master_order_with_ioc() -> None:
    mt5, _ = emulated(behaviour=modes(filling_mode=FILLING_IOC))
    session = session_over(mt5)
    result = session.send(buy("0.10"))
    assert (result.retcode, result.volume) == (retcodes.DONE, D("0.10"))
    [order] = mt5.history_orders_get(ticket=result.order_ticket)
    assert order.type_filling == constants.ORDER_FILLING_IOC


def test_an_instant_execution_symbol_gets_fok_whatever_the_master_order_asks() -> None:
    mt5, _ = emulated(behaviour=modes(execution_mode=INSTANT, filling_mode=0))
    result = session_over(mt5).send(buy("0.10", filling=IOC))
    assert result.retcode == retcodes.DONE


def test_a_return_only_symbol_leaves_no_rest_working_after_a_partial_fill() -> None:
    # Exchange execution without FOK or IOC: RETURN is all it takes. A partial fill's rest would
    # keep working where the engine, which sends the rest again itself, does not look.
    mt5, _ = emulated(behaviour=modes(execution_mode=EXCHANGE, filling_mode=0))
    session = session_over(mt5)
    mt5.emulator_fail_next(Fault.PARTIAL_FILL)
    result = session.send(buy("1.00", tag="mam:R1"))
    assert result.retcode == retcodes.DONE_PARTIAL
    assert D(0) < result.volume < D("1.00")
    assert session.pending_orders() == []
    [position] = session.positions()
    assert position.volume == result.volume


def test_a_pending_order_on_a_symbol_without_fok_rests_as_return() -> None:
    mt5, _ = emulated(behaviour=modes(filling_mode=0))
    session = session_over(mt5)
    ask = session.quote("EURUSD").ask
    request = OrderRequest(
        TradeAction.PENDING,
        "EURUSD",
        Side.BUY,
        D("0.10"),
        "mam:P1",
        7,
        price=ask - D("0.00100"),
        order_type=OrderType.LIMIT,
    )
    assert session.send(request).retcode == retcodes.PLACED
    [order] = session.pending_orders()
    assert order.filling is RETURN
