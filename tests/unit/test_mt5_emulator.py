"""The MetaTrader5 emulator answers as the package does: None (or False) plus last_error() on
failure, results with retcodes for what the trade server refuses, the package's names."""

from __future__ import annotations

import inspect
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

import gateway.terminals.mt5.emulator as emulator_module
from gateway.domain.accounts import MarginMode
from gateway.terminals.mt5 import constants
from gateway.terminals.mt5.emulator import (
    EmptyAnswer,
    EmulatorAccount,
    EmulatorConfig,
    MetaTrader5Emulator,
    SymbolTradeModes,
    TerminalBehaviour,
)
from gateway.terminals.mt5.emulator import records as mt5_records
from gateway.terminals.mt5.emulator.config import (
    EXPIRATION_GTC,
    FILLING_IOC,
    ORDER_LIMIT,
    ORDER_MARKET,
)
from gateway.terminals.sim import Fault, SimSymbol
from tests.unit.sim_helpers import EURUSD, HEDGING, NETTING, QUOTES, Clock, make_broker

D = Decimal
NO_IPC = (-10004, "No IPC connection")
OK = (1, "Success")
OFFSET = timedelta(hours=3)


def attached(**options: Any) -> tuple[MetaTrader5Emulator, Clock]:
    clock = Clock()
    mt5 = MetaTrader5Emulator()
    options.setdefault("login", HEDGING)
    mt5.emulator_attach(
        make_broker(clock), password="pw", terminal_path="C:\\T1\\terminal64.exe", **options
    )
    return mt5, clock


def connected(**options: Any) -> tuple[MetaTrader5Emulator, Clock]:
    mt5, clock = attached(**options)
    assert mt5.initialize(login=options.get("login", HEDGING), password="pw")
    assert mt5.symbol_select("EURUSD", True)
    return mt5, clock


def buy(volume: float = 0.1, **fields: Any) -> dict[str, Any]:
    return {
        "action": constants.TRADE_ACTION_DEAL,
        "symbol": "EURUSD",
        "volume": volume,
        "type": constants.ORDER_TYPE_BUY,
        "magic": 7,
        "comment": "mam:T",
        **fields,
    }


# -- the package's names ---------------------------------------------------------------------


def test_the_module_has_the_packages_functions_and_constants() -> None:
    for name in (
        "initialize",
        "login",
        "shutdown",
        "version",
        "last_error",
        "account_info",
        "terminal_info",
        "symbol_info",
        "symbol_select",
        "symbol_info_tick",
        "symbols_get",
        "order_check",
        "order_send",
        "positions_get",
        "positions_total",
        "orders_get",
        "orders_total",
        "history_deals_get",
        "history_orders_get",
    ):
        assert callable(getattr(emulator_module, name)), name
    for name in constants.__all__:
        assert getattr(emulator_module, name) == getattr(constants, name)
    parameters = inspect.signature(emulator_module.initialize).parameters
    assert parameters["path"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    for keyword in ("login", "password", "server", "timeout", "portable"):
        assert parameters[keyword].kind is inspect.Parameter.KEYWORD_ONLY
    filters = inspect.signature(emulator_module.positions_get).parameters
    assert [p for p in filters if filters[p].kind is inspect.Parameter.KEYWORD_ONLY] == [
        "symbol",
        "group",
        "ticket",
    ]


def test_constants_have_the_packages_values() -> None:
    assert (
        constants.TRADE_ACTION_DEAL,
        constants.TRADE_ACTION_PENDING,
        constants.TRADE_ACTION_SLTP,
        constants.TRADE_ACTION_MODIFY,
        constants.TRADE_ACTION_REMOVE,
        constants.TRADE_ACTION_CLOSE_BY,
    ) == (1, 5, 6, 7, 8, 10)
    assert (constants.ORDER_TYPE_BUY_STOP_LIMIT, constants.ORDER_TYPE_CLOSE_BY) == (6, 8)
    assert (constants.ORDER_FILLING_RETURN, constants.ORDER_FILLING_BOC) == (2, 3)
    assert (constants.TRADE_RETCODE_DONE, constants.TRADE_RETCODE_FIFO_CLOSE) == (10009, 10045)
    assert constants.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING == 2
    assert (constants.RES_E_AUTH_FAILED, constants.RES_E_INTERNAL_FAIL_TIMEOUT) == (-6, -10005)
    assert (constants.TIMEFRAME_H1, constants.TIMEFRAME_MN1) == (16385, 49153)
    assert len(constants.__all__) == 223


def test_records_have_the_packages_fields() -> None:
    assert len(mt5_records.SymbolInfo._fields) == 96
    assert mt5_records.AccountInfo._fields[:3] == ("login", "trade_mode", "leverage")
    assert "margin_free" in mt5_records.AccountInfo._fields
    assert mt5_records.Tick._fields == (
        "time",
        "bid",
        "ask",
        "last",
        "volume",
        "time_msc",
        "flags",
        "volume_real",
    )
    assert mt5_records.OrderSendResult._fields[-3:] == (
        "request_id",
        "retcode_external",
        "request",
    )
    assert "position_by" in mt5_records.TradeRequest._fields
    assert len(mt5_records.TradeDeal._fields) == 18
    assert len(mt5_records.TradeOrder._fields) == 24
    assert len(mt5_records.TradePosition._fields) == 19


# -- connection -------------------------------------------------------------------------------


def test_every_call_before_initialize_fails_with_no_ipc_connection() -> None:
    mt5, _ = attached()
    assert mt5.account_info() is None
    assert mt5.last_error() == NO_IPC
    assert mt5.order_send(buy()) is None
    assert mt5.positions_get() is None
    assert mt5.version() is None
    assert mt5.symbol_select("EURUSD") is False
    assert mt5.last_error() == NO_IPC


def test_initialize_needs_an_installed_terminal() -> None:
    mt5 = MetaTrader5Emulator()
    assert mt5.initialize() is False
    assert mt5.last_error()[0] == constants.RES_E_INTERNAL_FAIL_INIT
    attached_mt5, _ = attached()
    assert attached_mt5.initialize("C:\\Other\\terminal64.exe") is False
    assert attached_mt5.last_error()[0] == constants.RES_E_INTERNAL_FAIL_INIT
    assert attached_mt5.initialize("C:\\T1\\terminal64.exe", portable=True) is True
    assert attached_mt5.last_error() == OK


@pytest.mark.parametrize(
    "credentials",
    [
        {"login": HEDGING + 5, "password": "pw"},
        {"login": HEDGING, "password": "wrong"},
        {"login": HEDGING, "server": "Elsewhere"},
    ],
)
def test_initialize_with_wrong_credentials_fails_authorization(credentials: Any) -> None:
    mt5, _ = attached()
    assert mt5.initialize(**credentials) is False
    assert mt5.last_error()[0] == constants.RES_E_AUTH_FAILED
    assert mt5.account_info() is None


def test_arguments_of_the_wrong_type_are_invalid_params() -> None:
    mt5, _ = attached()
    assert mt5.initialize(login="1") is False  # type: ignore[arg-type]
    assert mt5.last_error() == (constants.RES_E_INVALID_PARAMS, 'Invalid "login" argument')


def test_a_success_clears_the_last_error_and_shutdown_disconnects() -> None:
    mt5, _ = connected()
    assert mt5.symbol_info("NOSUCH") is None
    assert mt5.last_error()[0] == constants.RES_E_NOT_FOUND
    info = mt5.account_info()
    assert (info.login, info.balance, info.margin_mode) == (HEDGING, 10_000.0, 2)
    assert mt5.last_error() == OK
    assert mt5.version()[0] == 500
    mt5.shutdown()
    assert mt5.account_info() is None
    assert mt5.last_error() == NO_IPC


def test_the_account_reports_its_margin_mode() -> None:
    mt5, _ = connected(login=NETTING)
    assert mt5.account_info().margin_mode == constants.ACCOUNT_MARGIN_MODE_RETAIL_NETTING


# -- order_send ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "argument"),
    [
        (buy(volume="0.1"), "volume"),
        (buy(volume=D("0.1")), "volume"),
        (buy(comment="x" * 32), "comment"),
        (buy(comment="café"), "comment"),
        (buy(magic=-1), "magic"),
        (buy(typo=1), "typo"),
    ],
)
def test_a_request_the_package_cannot_read_is_none_with_invalid_params(
    request_: dict[str, Any], argument: str
) -> None:
    mt5, _ = connected()
    assert mt5.order_send(request_) is None
    assert mt5.last_error() == (constants.RES_E_INVALID_PARAMS, f'Invalid "{argument}" argument')
    assert mt5.positions_get() == ()


def test_what_the_server_refuses_is_a_result_with_its_retcode() -> None:
    mt5, _ = connected()
    result = mt5.order_send(buy(volume=0.015))
    assert (result.retcode, result.deal, result.order) == (
        constants.TRADE_RETCODE_INVALID_VOLUME,
        0,
        0,
    )
    assert mt5.last_error() == OK
    assert mt5.order_send(buy(type_filling=constants.ORDER_FILLING_BOC)).retcode == (
        constants.TRADE_RETCODE_INVALID_FILL
    )
    assert mt5.order_send(buy(type=constants.ORDER_TYPE_BUY_LIMIT)).retcode == (
        constants.TRADE_RETCODE_INVALID
    )


def test_an_executed_deal_answers_in_floats_with_the_request_echoed() -> None:
    mt5, _ = connected()
    tick = mt5.symbol_info_tick("EURUSD")
    result = mt5.order_send(buy(volume=0.30000000000000004, price=tick.ask, deviation=10))
    assert result.retcode == constants.TRADE_RETCODE_DONE
    assert (result.volume, result.price, result.bid, result.ask) == (
        0.3,
        tick.ask,
        tick.bid,
        tick.ask,
    )
    assert isinstance(result.request, mt5_records.TradeRequest)
    assert (result.request.comment, result.request.type_filling) == ("mam:T", 0)
    [position] = mt5.positions_get(symbol="EURUSD")
    assert (position.ticket, position.identifier, position.volume) == (
        result.order,
        result.order,
        0.3,
    )
    [deal] = mt5.history_deals_get(ticket=result.order)
    assert (deal.ticket, deal.position_id, deal.entry) == (result.deal, result.order, 0)


@pytest.mark.parametrize(
    ("control", "retcode"),
    [
        ("emulator_set_algo_trading", constants.TRADE_RETCODE_CLIENT_DISABLES_AT),
        ("emulator_set_trade_server_connected", constants.TRADE_RETCODE_CONNECTION),
    ],
)
def test_a_terminal_that_cannot_trade_answers_with_a_retcode(control: str, retcode: int) -> None:
    mt5, _ = connected()
    getattr(mt5, control)(False)
    assert mt5.order_send(buy()).retcode == retcode
    info = mt5.terminal_info()
    assert (info.trade_allowed, info.connected) == (
        control != "emulator_set_algo_trading",
        control != "emulator_set_trade_server_connected",
    )
    assert mt5.positions_get() == ()


def test_a_broken_ipc_link_after_execution_is_none_though_the_deal_happened() -> None:
    mt5, _ = connected()
    mt5.emulator_fail_next(Fault.DISCONNECT_AFTER)
    assert mt5.order_send(buy()) is None
    assert mt5.last_error() == (constants.RES_E_INTERNAL_FAIL_RECEIVE, "IPC recv failed")
    assert len(mt5.positions_get()) == 1
    mt5.emulator_fail_next(Fault.DISCONNECT_BEFORE)
    assert mt5.order_send(buy()) is None
    assert len(mt5.positions_get()) == 1


def test_an_ipc_timeout_fails_one_call() -> None:
    mt5, _ = connected()
    mt5.emulator_ipc_error_next()
    assert mt5.account_info() is None
    assert mt5.last_error() == (-10005, "IPC timeout")
    assert mt5.account_info() is not None


def test_a_closed_terminal_answers_nothing_until_initialized_again() -> None:
    mt5, _ = connected()
    mt5.emulator_close_terminal()
    assert mt5.positions_total() is None
    assert mt5.last_error() == NO_IPC
    assert mt5.initialize()
    assert mt5.positions_total() == 0


def test_margin_and_profit_are_calculated_as_the_server_does() -> None:
    mt5, _ = connected()
    buy_type = constants.ORDER_TYPE_BUY
    # 1 lot of 100 000 EUR at 1.08454, at 1:100.
    assert mt5.order_calc_margin(buy_type, "EURUSD", 1.0, 1.08454) == 1084.54
    assert mt5.order_calc_profit(buy_type, "EURUSD", 0.1, 1.08454, 1.08554) == 10.0
    assert mt5.order_calc_profit(constants.ORDER_TYPE_SELL, "EURUSD", 0.1, 1.08454, 1.08554) == (
        -10.0
    )
    assert mt5.order_calc_margin(constants.ORDER_TYPE_BUY_LIMIT, "EURUSD", 1.0, 1.0) is None
    assert mt5.last_error()[0] == constants.RES_E_INVALID_PARAMS


def test_order_check_answers_done_or_the_reason() -> None:
    mt5, _ = connected()
    assert (mt5.order_check(buy()).retcode, mt5.order_check(buy()).comment) == (0, "Done")
    assert mt5.order_check(buy(volume=100.0)).retcode == constants.TRADE_RETCODE_NO_MONEY
    assert mt5.order_check({"volume": "x"}) is None


# -- queries ------------------------------------------------------------------------------------


def test_ticks_come_only_for_symbols_in_market_watch() -> None:
    mt5, _ = attached()
    mt5.initialize()
    assert mt5.symbol_info("EURUSD").visible is False
    assert mt5.symbol_info_tick("EURUSD") is None
    assert mt5.symbol_select("EURUSD")
    assert mt5.symbol_info("EURUSD").visible is True
    tick = mt5.symbol_info_tick("EURUSD")
    assert (tick.bid, tick.ask) == (1.08446, 1.08454)
    assert mt5.symbol_select("NOSUCH") is False


def test_times_are_the_trade_servers() -> None:
    mt5, clock = connected(server_utc_offset=OFFSET)
    utc_ms = clock.ns // 1_000_000
    tick = mt5.symbol_info_tick("EURUSD")
    assert tick.time_msc == utc_ms + OFFSET // timedelta(milliseconds=1)
    assert tick.time == tick.time_msc // 1000


def test_queries_answer_empty_tuples_and_filter_by_group_and_ticket() -> None:
    mt5, _ = connected()
    assert (mt5.positions_get(), mt5.orders_get(), mt5.positions_total()) == ((), (), 0)
    opened = mt5.order_send(buy())
    assert [p.ticket for p in mt5.positions_get(group="*USD*")] == [opened.order]
    assert mt5.positions_get(group="*USD*,!EUR*") == ()
    assert mt5.positions_get(ticket=opened.order + 1) == ()
    assert [s.name for s in mt5.symbols_get("EUR*")] == ["EURUSD"]
    assert mt5.positions_get(symbol=5) is None  # type: ignore[arg-type]
    assert mt5.last_error()[0] == constants.RES_E_INVALID_PARAMS


def test_history_by_period_ticket_and_position() -> None:
    mt5, clock = connected()
    opened = mt5.order_send(buy())
    clock.advance(5)
    mt5.order_send(buy(type=constants.ORDER_TYPE_SELL, position=opened.order, comment="mam:C"))
    everything = mt5.history_deals_get(datetime(2020, 1, 1, tzinfo=UTC), 2_000_000_000)
    assert [d.type for d in everything] == [constants.DEAL_TYPE_BALANCE, 0, 1]
    assert everything[0].profit == 10_000.0
    assert [d.entry for d in mt5.history_deals_get(position=opened.order)] == [0, 1]
    later = mt5.history_deals_get(everything[2].time, everything[2].time + 1)
    assert [d.comment for d in later] == ["mam:C"]
    assert mt5.history_deals_get() is None
    assert mt5.last_error()[0] == constants.RES_E_INVALID_PARAMS
    orders = mt5.history_orders_get(0, everything[2].time + 1)
    assert [(o.ticket, o.state) for o in orders] == [
        (opened.order, constants.ORDER_STATE_FILLED),
        (everything[2].order, constants.ORDER_STATE_FILLED),
    ]


def test_a_removed_pending_order_is_a_cancelled_history_order() -> None:
    mt5, _ = connected()
    tick = mt5.symbol_info_tick("EURUSD")
    placed = mt5.order_send(
        buy(
            action=constants.TRADE_ACTION_PENDING,
            type=constants.ORDER_TYPE_BUY_LIMIT,
            price=round(tick.ask - 0.001, 5),
        )
    )
    assert placed.retcode == constants.TRADE_RETCODE_PLACED
    [order] = mt5.orders_get()
    assert (order.state, order.type) == (constants.ORDER_STATE_PLACED, 2)
    removed = mt5.order_send({"action": constants.TRADE_ACTION_REMOVE, "order": placed.order})
    assert removed.retcode == constants.TRADE_RETCODE_DONE
    [history] = mt5.history_orders_get(ticket=placed.order)
    assert (history.state, history.volume_initial, history.volume_current) == (
        constants.ORDER_STATE_CANCELED,
        0.1,
        0.0,
    )


def test_the_module_level_terminal_is_installed_from_a_config() -> None:
    config = EmulatorConfig(
        symbols=(SimSymbol(EURUSD, QUOTES),),
        account=EmulatorAccount(login=77, balance=D(500), margin_mode=MarginMode.NETTING),
    )
    module = emulator_module.emulator_from_config(config)
    assert module is emulator_module
    assert module.initialize(login=77)
    assert module.account_info().balance == 500.0
    module.shutdown()


# -- where real terminals answer otherwise (TerminalBehaviour, switched on per test) ------------


def behaving(**behaviour: Any) -> MetaTrader5Emulator:
    mt5, _ = connected(behaviour=TerminalBehaviour(**behaviour))
    return mt5


def test_initialize_and_login_switch_the_terminal_to_another_known_account() -> None:
    mt5, _ = connected()
    mt5.emulator_add_login(NETTING, password="pw2")
    assert mt5.initialize(login=NETTING, password="pw2")
    assert mt5.account_info().login == NETTING
    assert mt5.login(HEDGING, password="pw")
    assert mt5.account_info().login == HEDGING
    assert mt5.login(NETTING)  # the terminal remembers the password
    assert mt5.account_info().login == NETTING
    assert mt5.login(NETTING, password="wrong") is False
    assert mt5.last_error()[0] == constants.RES_E_AUTH_FAILED
    assert mt5.login(HEDGING + 5) is False
    assert mt5.account_info().login == NETTING


def test_the_same_login_on_another_server_is_another_account() -> None:
    mt5, _ = connected()
    mt5.emulator_add_login(HEDGING, password="pw", server="Broker-Demo")
    assert mt5.login(HEDGING, server="Broker-Demo")
    assert mt5.account_info().server == "Broker-Demo"


def test_fillings_trade_modes_and_stops_are_enforced_per_symbol() -> None:
    modes = SymbolTradeModes(
        filling_mode=FILLING_IOC,
        expiration_mode=EXPIRATION_GTC,
        order_mode=ORDER_MARKET | ORDER_LIMIT,
    )
    mt5 = behaving(enforces_symbol_modes=True, symbol_modes=(("EURUSD", modes),))
    info = mt5.symbol_info("EURUSD")
    assert (info.filling_mode, info.expiration_mode, info.order_mode) == (
        FILLING_IOC,
        EXPIRATION_GTC,
        ORDER_MARKET | ORDER_LIMIT,
    )
    refused = constants.TRADE_RETCODE_INVALID_FILL
    assert mt5.order_send(buy(type_filling=constants.ORDER_FILLING_FOK)).retcode == refused
    # Market execution: no RETURN for market orders.
    assert mt5.order_send(buy(type_filling=constants.ORDER_FILLING_RETURN)).retcode == refused
    no_stops = buy(sl=1.0, type_filling=constants.ORDER_FILLING_IOC)
    assert mt5.order_send(no_stops).retcode == constants.TRADE_RETCODE_INVALID_STOPS
    assert mt5.order_send(buy(type_filling=constants.ORDER_FILLING_IOC)).retcode == (
        constants.TRADE_RETCODE_DONE
    )
    ask = mt5.symbol_info_tick("EURUSD").ask
    limit = buy(
        action=constants.TRADE_ACTION_PENDING,
        type=constants.ORDER_TYPE_BUY_LIMIT,
        price=round(ask - 0.001, 5),
        type_filling=constants.ORDER_FILLING_RETURN,
    )
    day = {**limit, "type_time": constants.ORDER_TIME_DAY}
    stop = {**limit, "type": constants.ORDER_TYPE_BUY_STOP, "price": round(ask + 0.001, 5)}
    assert mt5.order_send(day).retcode == constants.TRADE_RETCODE_INVALID_EXPIRATION
    assert mt5.order_send(stop).retcode == constants.TRADE_RETCODE_INVALID_ORDER
    assert mt5.order_send(limit).retcode == constants.TRADE_RETCODE_PLACED


def test_exchange_execution_takes_return_and_quoted_execution_only_fok() -> None:
    exchange = SymbolTradeModes(execution_mode=constants.SYMBOL_TRADE_EXECUTION_EXCHANGE)
    mt5 = behaving(enforces_symbol_modes=True, symbol_modes=(("EURUSD", exchange),))
    assert mt5.order_send(buy(type_filling=constants.ORDER_FILLING_RETURN)).retcode == (
        constants.TRADE_RETCODE_DONE
    )
    instant = SymbolTradeModes(execution_mode=constants.SYMBOL_TRADE_EXECUTION_INSTANT)
    mt5 = behaving(enforces_symbol_modes=True, symbol_modes=(("EURUSD", instant),))
    assert mt5.order_send(buy(type_filling=constants.ORDER_FILLING_IOC)).retcode == (
        constants.TRADE_RETCODE_INVALID_FILL
    )


def test_a_deal_can_be_missing_from_the_answer_and_late_in_the_history() -> None:
    mt5 = behaving(deal_in_answer=False, history_delay_ms=100)
    result = mt5.order_send(buy())
    assert (result.retcode, result.deal, result.price, result.volume) == (
        constants.TRADE_RETCODE_DONE,
        0,
        0.0,
        0.1,
    )
    assert mt5.history_deals_get(ticket=result.order) == ()
    assert mt5.history_orders_get(ticket=result.order) == ()
    time.sleep(0.15)
    [deal] = mt5.history_deals_get(ticket=result.order)
    assert deal.volume == 0.1


def test_an_asynchronous_market_order_works_until_its_deal_appears() -> None:
    mt5 = behaving(asynchronous_execution=True, history_delay_ms=100)
    result = mt5.order_send(buy())
    assert (result.retcode, result.deal, result.price) == (constants.TRADE_RETCODE_PLACED, 0, 0.0)
    [working] = mt5.orders_get(ticket=result.order)
    assert (working.type, working.state) == (constants.ORDER_TYPE_BUY, constants.ORDER_STATE_PLACED)
    assert mt5.orders_total() == 1
    time.sleep(0.15)
    assert mt5.orders_get() == ()
    [deal] = mt5.history_deals_get(ticket=result.order)
    [order] = mt5.history_orders_get(ticket=result.order)
    assert (deal.order, order.state) == (result.order, constants.ORDER_STATE_FILLED)


def test_history_dates_can_be_positional_only() -> None:
    plain = behaving()
    assert plain.history_deals_get(date_from=0, date_to=2_000_000_000) is not None
    mt5 = behaving(positional_history_dates=True)
    assert mt5.history_deals_get(date_from=0, date_to=2_000_000_000) is None
    assert mt5.last_error()[0] == constants.RES_E_INVALID_PARAMS
    assert mt5.history_orders_get(0, date_to=2_000_000_000) is None
    assert mt5.history_deals_get(0, 2_000_000_000) is not None


@pytest.mark.parametrize(
    ("empty", "error"),
    [
        (EmptyAnswer.NONE_WITH_SUCCESS, OK),
        (EmptyAnswer.NONE_NOT_FOUND, (-4, "Terminal: Not found")),
    ],
)
def test_none_can_stand_for_none(empty: EmptyAnswer, error: tuple[int, str]) -> None:
    mt5 = behaving(empty_answer=empty)
    for answer in (
        mt5.positions_get(),
        mt5.orders_get(),
        mt5.history_orders_get(0, 2_000_000_000),
    ):
        assert answer is None
        assert mt5.last_error() == error
    assert len(mt5.history_deals_get(0, 2_000_000_000)) == 1  # the deposit


def test_a_symbol_outside_market_watch_can_lack_its_data() -> None:
    mt5, _ = attached(behaviour=TerminalBehaviour(unselected_symbols_lack_data=True))
    assert mt5.initialize(login=HEDGING, password="pw")
    info = mt5.symbol_info("EURUSD")
    assert (info.trade_tick_value, info.bid, info.ask, info.digits) == (0.0, 0.0, 0.0, 5)
    assert mt5.symbol_select("EURUSD")
    info = mt5.symbol_info("EURUSD")
    assert (info.trade_tick_value, info.bid) == (1.0, 1.08446)


def test_an_unknown_symbol_can_fail_with_a_generic_code() -> None:
    mt5 = behaving(unknown_symbol_code=constants.RES_E_FAIL)
    assert mt5.symbol_info("NOSUCH") is None
    assert mt5.last_error() == (constants.RES_E_FAIL, "Terminal: Call failed")


def test_comments_can_be_cut_or_rewritten() -> None:
    mt5 = behaving(truncates_long_comments=True)
    assert mt5.order_send(buy(comment="x" * 40)).retcode == constants.TRADE_RETCODE_DONE
    assert [p.comment for p in mt5.positions_get()] == ["x" * 31]
    mt5 = behaving(server_comment_length=6)
    result = mt5.order_send(buy(comment="mam:0123456789"))
    [deal] = mt5.history_deals_get(ticket=result.order)
    [order] = mt5.history_orders_get(ticket=result.order)
    assert (deal.comment, order.comment, result.request.comment) == (
        "mam:01",
        "mam:01",
        "mam:0123456789",
    )
    mt5 = behaving(server_comment="bridge")
    mt5.order_send(buy())
    assert [p.comment for p in mt5.positions_get()] == ["bridge"]


def test_a_symbol_filter_can_ignore_a_ticket_as_documented() -> None:
    plain = behaving()
    opened = plain.order_send(buy())
    assert plain.positions_get(symbol="EURUSD", ticket=opened.order + 1) == ()
    mt5 = behaving(symbol_filter_ignores_ticket=True)
    opened = mt5.order_send(buy())
    [position] = mt5.positions_get(symbol="EURUSD", ticket=opened.order + 1)
    assert position.ticket == opened.order


def test_group_masks_can_apply_in_their_order_as_documented() -> None:
    plain = behaving()
    plain.order_send(buy())
    assert plain.positions_get(group="!EUR*,*") == ()
    mt5 = behaving(group_masks_in_order=True)
    mt5.order_send(buy())
    assert len(mt5.positions_get(group="!EUR*,*")) == 1
    assert mt5.positions_get(group="*,!EUR*") == ()
    assert mt5.positions_get(group="!EUR*") == ()
    assert [s.name for s in mt5.symbols_get("*,!EUR*,EURUSD")] == ["EURUSD"]


def test_trading_through_the_python_api_can_be_disabled() -> None:
    mt5, _ = connected()
    mt5.emulator_set_trade_api_disabled(True)
    assert mt5.terminal_info().tradeapi_disabled is True
    assert mt5.order_send(buy()) is None
    assert mt5.last_error()[0] == constants.RES_E_AUTO_TRADING_DISABLED
    mt5.emulator_set_trade_api_disabled(False)
    mt5.emulator_set_expert_trading(False)
    assert mt5.account_info().trade_expert is False
    assert mt5.order_send(buy()).retcode == constants.TRADE_RETCODE_SERVER_DISABLES_AT
    assert mt5.positions_get() == ()


def test_a_hang_can_wait_for_one_function() -> None:
    mt5, _ = connected()
    mt5.emulator_hang_next_call(seconds=0.0, function_name="order_send")
    assert mt5.account_info() is not None
    assert mt5.order_send(buy()) is None
    assert mt5.last_error()[0] == constants.RES_E_INTERNAL_FAIL_TIMEOUT
    assert mt5.order_send(buy()).retcode == constants.TRADE_RETCODE_DONE
