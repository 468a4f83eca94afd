"""A market order counts as filled by its deal, never by its answer alone: when order_send names
no deal or price (PLACED: executed asynchronously, as on an exchange; DONE from some bridged
servers), the deal is read from the history by the order's ticket, and an order still working
(or filled in several deals) is an unknown outcome reconciled by tag."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest

from gateway.domain import retcodes
from gateway.terminals.mt5.emulator import MetaTrader5Emulator, TerminalBehaviour
from gateway.terminals.protocol import TerminalError
from tests.unit.test_mt5_adapter import buy, emulated, session_over

D = Decimal
EPOCH_START = 0  # history windows below ask for everything


def test_a_deal_missing_from_the_answer_is_read_from_the_history() -> None:
    # DONE with deal 0 and price 0; the deal reaches the history 50 ms later.
    mt5, _ = emulated(behaviour=TerminalBehaviour(deal_in_answer=False, history_delay_ms=50))
    session = session_over(mt5)
    ask = session.quote("EURUSD").ask
    result = session.send(buy("0.10", tag="mam:N1"))
    assert (result.retcode, result.volume, result.price) == (retcodes.DONE, D("0.10"), ask)
    [deal] = mt5.history_deals_get(ticket=result.order_ticket)
    assert (result.deal_ticket, result.position_ticket) == (deal.ticket, deal.position_id)
    assert result.executed_at is not None
    [position] = session.positions()
    assert position.opened_at == result.executed_at


def test_an_asynchronously_executed_market_order_is_filled_by_its_deal() -> None:
    # PLACED; the order works for 50 ms, then its deal is in the history.
    behaviour = TerminalBehaviour(asynchronous_execution=True, history_delay_ms=50)
    mt5, _ = emulated(behaviour=behaviour)
    session = session_over(mt5)
    ask = session.quote("EURUSD").ask
    result = session.send(buy("0.20", tag="mam:N2"))
    assert (result.retcode, result.volume, result.price) == (retcodes.DONE, D("0.20"), ask)
    assert result.deal_ticket and result.position_ticket == result.order_ticket
    assert mt5.orders_get() == ()


def test_a_market_order_still_executing_is_an_unknown_outcome_then_found_by_tag() -> None:
    behaviour = TerminalBehaviour(asynchronous_execution=True, history_delay_ms=400)
    mt5, _ = emulated(behaviour=behaviour)
    session = session_over(mt5, deal_wait_s=0.05)
    with pytest.raises(TerminalError, match="outcome unknown"):
        session.send(buy("0.10", tag="mam:N3"))
    # Still working at the broker: reconciliation may not call it absent (that would send it
    # again while it fills).
    with pytest.raises(TerminalError, match="still executing"):
        session.find_by_tag("mam:N3")
    time.sleep(0.45)
    [deal] = session.find_by_tag("mam:N3").deals
    assert deal.volume == D("0.10")


class SplitDeals:
    """A server that fills a market order in two deals at two prices and names neither in its
    answer."""

    def __init__(self, mt5: MetaTrader5Emulator) -> None:
        self._mt5 = mt5

    def __getattr__(self, name: str) -> Any:
        return getattr(self._mt5, name)

    def history_deals_get(self, *args: Any, **kwargs: Any) -> Any:
        deals = self._mt5.history_deals_get(*args, **kwargs)
        if deals is None:
            return None
        split: list[Any] = []
        for deal in deals:
            if deal.volume <= 0:
                split.append(deal)
                continue
            half = round(deal.volume / 2, 2)
            split.append(deal._replace(volume=half))
            split.append(
                deal._replace(
                    ticket=deal.ticket + 500_000,
                    volume=round(deal.volume - half, 2),
                    price=round(deal.price + 0.00002, 5),
                )
            )
        return tuple(split)


def test_an_order_filled_in_several_deals_is_taken_in_deal_by_deal() -> None:
    mt5, _ = emulated(behaviour=TerminalBehaviour(deal_in_answer=False))
    session = session_over(SplitDeals(mt5))
    # No single price stands for two deals: the engine reconciles, one fill per deal.
    with pytest.raises(TerminalError, match="2 deals"):
        session.send(buy("0.20", tag="mam:N4"))
    deals = session.find_by_tag("mam:N4").deals
    assert sorted(d.volume for d in deals) == [D("0.10"), D("0.10")]
    assert len({d.price for d in deals}) == 2
