"""The MetaTrader5 module's floats become exact decimals: prices to the symbol's digits, volumes
to its volume step, money to the cent; server times become UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.domain.accounts import MarginMode
from gateway.terminals.mt5 import constants as mt5
from gateway.terminals.mt5 import records
from gateway.terminals.mt5.emulator.records import SymbolInfo
from gateway.terminals.mt5.records import Rounding

D = Decimal
EURUSD = Rounding(D("0.00001"), D("0.01"))


def test_float_noise_never_reaches_a_volume_or_a_price() -> None:
    assert EURUSD.volume(0.1 + 0.2) == D("0.30")
    assert str(EURUSD.volume(0.1 + 0.2)) == "0.30"
    assert EURUSD.price(1.0845400000000001) == D("1.08454")
    assert EURUSD.optional_price(0.0) is None
    assert Rounding(D("0.01"), D("1")).volume(3.0000000001) == D(3)


@given(st.integers(min_value=1, max_value=10_000_000))
def test_every_volume_on_the_step_survives_the_trip_through_a_float(steps: int) -> None:
    volume = D(steps) * D("0.01")
    assert EURUSD.volume(float(volume)) == volume


@given(st.integers(min_value=1, max_value=500_000_000))
def test_every_price_on_the_point_survives_the_trip_through_a_float(points: int) -> None:
    price = D(points) * D("0.00001")
    assert EURUSD.price(float(price)) == price


def test_money_is_to_the_currency_digits() -> None:
    assert records.money(10_000.000000001) == D("10000.00")
    assert records.money(-0.8000000000000003) == D("-0.80")
    assert records.money(12.5, 0) == D(12)


def test_server_times_become_utc() -> None:
    utc = datetime(2026, 1, 5, 12, 0, 0, 250_000, tzinfo=UTC)
    server_ms = int((utc + timedelta(hours=3)).timestamp() * 1000)
    assert records.utc_time(server_ms, timedelta(hours=3)) == utc


def test_margin_modes() -> None:
    assert records.margin_mode(mt5.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING) is MarginMode.HEDGING
    assert records.margin_mode(mt5.ACCOUNT_MARGIN_MODE_RETAIL_NETTING) is MarginMode.NETTING
    assert records.margin_mode(mt5.ACCOUNT_MARGIN_MODE_EXCHANGE) is MarginMode.NETTING


def symbol_info(**fields: object) -> SymbolInfo:
    values: dict[str, object] = dict.fromkeys(SymbolInfo._fields, 0)
    values.update(
        name="XAUUSD",
        digits=2,
        trade_contract_size=100.0,
        volume_min=0.01,
        volume_step=0.01,
        volume_max=50.0,
        trade_tick_size=0.01,
        trade_tick_value=1.0,
        currency_base="XAU",
        currency_profit="USD",
        trade_stops_level=20,
    )
    values.update(fields)
    return SymbolInfo(**values)


def test_a_symbol_info_is_the_spec_orders_are_sized_by() -> None:
    spec = records.symbol_spec(symbol_info())
    assert (spec.digits, spec.contract_size, spec.volume_min, spec.volume_step) == (
        2,
        D(100),
        D("0.01"),
        D("0.01"),
    )
    assert (spec.volume_max, spec.tick_size, spec.tick_value, spec.stops_level) == (
        D(50),
        D("0.01"),
        D(1),
        20,
    )


def test_a_symbol_without_a_tick_value_has_no_usable_spec() -> None:
    with pytest.raises(ValueError, match="tick_value"):
        records.symbol_spec(symbol_info(trade_tick_value=0.0))
