"""The MT5 adapter (Mt5Session) over the emulator: how module failures become refusals,
unknown outcomes and reconnections, and how the module's floats become exact values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from gateway.domain import retcodes
from gateway.domain.ids import new_id, tag_for_child
from gateway.domain.orders import Side
from gateway.terminals.mt5 import Mt5Settings
from gateway.terminals.mt5.emulator import MetaTrader5Emulator
from gateway.terminals.mt5.session import Mt5Session, tag_created_at
from gateway.terminals.protocol import OrderRequest, TerminalError, TradeAction
from gateway.terminals.sim import Fault
from tests.unit.sim_helpers import HEDGING, NETTING, Clock, make_broker

D = Decimal
OFFSET = timedelta(hours=2)


def terminal_path(login: int) -> str:
    """A terminal of the account's own, as a Windows host names it (no lock is taken here)."""
    return f"C:\\MT5\\{login}\\terminal64.exe"


def session_over(
    mt5: Any, login: int = HEDGING, password: str = "pw", **settings: Any
) -> Mt5Session:
    settings.setdefault("terminal_path", terminal_path(login))
    return Mt5Session(Mt5Settings(login=login, password=password, **settings), module=mt5)


def emulated(
    login: int = HEDGING, *, days_ago: int = 0, **options: Any
) -> tuple[MetaTrader5Emulator, Clock]:
    """An emulated terminal whose broker's clock stands `days_ago` before the wall clock (the
    adapter asks for history up to now)."""
    clock = Clock(datetime.now(UTC) - timedelta(days=days_ago))
    mt5 = MetaTrader5Emulator()
    mt5.emulator_attach(make_broker(clock), login=login, password="pw", **options)
    return mt5, clock


def buy(volume: str = "0.10", tag: str = "mam:T") -> OrderRequest:
    return OrderRequest(TradeAction.DEAL, "EURUSD", Side.BUY, D(volume), tag, 7)


# -- connection -------------------------------------------------------------------------------


def test_the_session_connects_on_first_use_and_checks_the_account() -> None:
    mt5, _ = emulated()
    session = session_over(mt5)
    assert mt5.account_info() is None  # nothing connected before the first call
    assert session.account_info().login == HEDGING


def test_a_terminal_logged_in_elsewhere_is_refused() -> None:
    mt5, _ = emulated()
    with pytest.raises(TerminalError, match="Authorization failed"):
        session_over(mt5, password="wrong").connect()
    with pytest.raises(TerminalError, match="Authorization failed"):
        session_over(mt5, login=NETTING).connect()


def test_a_terminal_that_went_away_is_initialized_again() -> None:
    mt5, _ = emulated()
    session = session_over(mt5)
    session.connect()
    mt5.emulator_close_terminal()
    with pytest.raises(TerminalError, match="No IPC connection"):
        session.positions()
    assert session.positions() == []


def test_a_query_the_terminal_does_not_answer_raises_terminal_error() -> None:
    mt5, _ = emulated()
    session = session_over(mt5)
    session.connect()
    mt5.emulator_ipc_error_next()
    with pytest.raises(TerminalError, match="IPC timeout"):
        session.account_info()
    assert session.account_info().balance == D(10_000)


def test_health_tells_a_lost_trade_server_and_disabled_algo_trading() -> None:
    mt5, _ = emulated()
    session = session_over(mt5)
    session.connect()
    assert session.health().connected
    mt5.emulator_set_algo_trading(False)
    health = session.health()
    assert health.connected and "Algo Trading" in health.detail
    mt5.emulator_set_trade_server_connected(False)
    assert not session.health().connected
    unreachable = session_over(MetaTrader5Emulator())
    with pytest.raises(TerminalError):
        unreachable.connect()
    health = unreachable.health()
    assert not health.connected and "initialize failed" in health.detail


# -- sending ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [Fault.DISCONNECT_BEFORE, Fault.DISCONNECT_AFTER])
def test_an_order_send_without_an_answer_is_an_unknown_outcome(fault: Fault) -> None:
    mt5, _ = emulated()
    session = session_over(mt5)
    session.connect()
    mt5.emulator_fail_next(fault)
    with pytest.raises(TerminalError, match="outcome unknown"):
        session.send(buy(tag="mam:U"))
    executed = fault is Fault.DISCONNECT_AFTER
    assert len(session.find_by_tag("mam:U").deals) == int(executed)


def test_a_request_the_module_cannot_read_is_refused_not_unknown() -> None:
    mt5, _ = emulated()
    result = session_over(mt5).send(buy(tag="x" * 40))
    assert result.retcode == retcodes.INVALID
    assert "comment" in result.text


def test_a_pending_order_without_a_price_is_refused_before_sending() -> None:
    mt5, _ = emulated()
    request = OrderRequest(TradeAction.PENDING, "EURUSD", Side.BUY, D("0.1"), "mam:P", 7)
    assert session_over(mt5).send(request).retcode == retcodes.INVALID


def test_disabled_algo_trading_refuses_orders() -> None:
    mt5, _ = emulated()
    mt5.emulator_set_algo_trading(False)
    assert session_over(mt5).send(buy()).retcode == retcodes.CLIENT_DISABLES_AT


def test_a_deal_reports_its_position_and_time_in_utc() -> None:
    mt5, clock = emulated(server_utc_offset=OFFSET)
    session = session_over(mt5, server_utc_offset=OFFSET)
    result = session.send(buy())
    executed_at = datetime.fromtimestamp(clock.ns // 1_000_000 / 1000, UTC)
    assert (result.position_ticket, result.executed_at) == (result.order_ticket, executed_at)
    [position] = session.positions()
    assert position.opened_at == executed_at
    assert session.deals(executed_at) != []
    assert session.deals(executed_at + timedelta(milliseconds=1)) == []


def test_netting_deals_report_the_symbols_position() -> None:
    mt5, _ = emulated(login=NETTING)
    session = session_over(mt5, login=NETTING)
    first = session.send(buy("0.30"))
    second = session.send(buy("0.10"))
    assert second.position_ticket == first.position_ticket != second.order_ticket


# -- exact values -----------------------------------------------------------------------------


class NoisyFloats:
    """The emulator with the float noise a real terminal's doubles carry."""

    def __init__(self, mt5: MetaTrader5Emulator) -> None:
        self._mt5 = mt5

    def __getattr__(self, name: str) -> Any:
        return getattr(self._mt5, name)

    def positions_get(self, **filters: Any) -> Any:
        return tuple(
            p._replace(volume=p.volume + 4e-17, price_open=p.price_open + 1e-12)
            for p in self._mt5.positions_get(**filters)
        )


def test_volumes_and_prices_are_rounded_to_the_symbol_never_left_as_floats() -> None:
    mt5, _ = emulated()
    session = session_over(NoisyFloats(mt5))
    opened = session.send(buy("0.30"))
    [position] = session.positions()
    assert position.volume == D("0.30") and str(position.volume) == "0.30"
    assert position.price_open == opened.price
    assert opened.price is not None and opened.price.as_tuple().exponent == -5


class RewrittenDealComments:
    """A server that rewrites deal comments (orders keep theirs)."""

    def __init__(self, mt5: MetaTrader5Emulator) -> None:
        self._mt5 = mt5

    def __getattr__(self, name: str) -> Any:
        return getattr(self._mt5, name)

    def history_deals_get(self, *args: Any, **kwargs: Any) -> Any:
        deals = self._mt5.history_deals_get(*args, **kwargs)
        return None if deals is None else tuple(d._replace(comment="[x]") for d in deals)


def test_find_by_tag_finds_deals_by_their_orders_comment() -> None:
    mt5, _ = emulated()
    session = session_over(RewrittenDealComments(mt5))
    opened = session.send(buy(tag="mam:R"))
    [deal] = session.find_by_tag("mam:R").deals
    assert deal.ticket == opened.deal_ticket


class EmptyAsNone:
    """Terminal builds that answer "none" with None and RES_S_OK."""

    def __init__(self, mt5: MetaTrader5Emulator) -> None:
        self._mt5 = mt5

    def __getattr__(self, name: str) -> Any:
        return getattr(self._mt5, name)

    def positions_get(self, **filters: Any) -> Any:
        return self._mt5.positions_get(**filters) or None


def test_none_with_success_is_an_empty_answer() -> None:
    mt5, _ = emulated()
    assert session_over(EmptyAsNone(mt5)).positions() == []


# -- tags -------------------------------------------------------------------------------------


def test_a_gateway_tag_tells_when_its_child_was_created() -> None:
    created = datetime(2026, 3, 1, 9, 30, 15, 123000, tzinfo=UTC)
    tag = tag_for_child(new_id("ch", now_ms=int(created.timestamp() * 1000)))
    assert tag_created_at(tag) == created
    assert tag_created_at("mam:T") is None
    assert tag_created_at("other:" + "0" * 20) is None


def test_reconciliation_searches_history_from_the_tags_creation() -> None:
    mt5, clock = emulated(days_ago=10)
    sending = session_over(mt5, history_lookback=timedelta(days=1))
    dated_tag = tag_for_child(new_id("ch", now_ms=clock.ns // 1_000_000))
    sending.send(buy(tag=dated_tag))
    sending.send(buy(tag="mam:undated"))
    # After a restart (a session that sent nothing): ten days ago is beyond the lookback, but
    # not before the dated tag's creation.
    session = session_over(mt5, history_lookback=timedelta(days=1))
    assert len(session.find_by_tag(dated_tag).deals) == 1
    assert session.find_by_tag("mam:undated").deals == ()
    # The session that sent it knows its order, wherever the window ends.
    assert len(sending.find_by_tag("mam:undated").deals) == 1
