"""Numbers as a trader reads them, the same in the gateway's statements and reports
(gateway/domain/figures.py) and in mamctl's tables and JSON (mam_client/figures.py): the two
distributions install neither one the other, so the module is kept twice, held here to one text
and to the same cases."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mam_client import figures as client_figures

from gateway.domain import figures as gateway_figures

D = Decimal
ROOT = Path(__file__).resolve().parents[2]
BOTH = pytest.mark.parametrize(
    "figures", [gateway_figures, client_figures], ids=["gateway", "client"]
)


def test_the_gateway_and_the_client_keep_one_text_of_the_module() -> None:
    gateway_text = (ROOT / "gateway" / "domain" / "figures.py").read_text()
    client_text = (ROOT / "clients" / "python" / "src" / "mam_client" / "figures.py").read_text()
    assert gateway_text == client_text


@BOTH
@pytest.mark.parametrize(
    ("value", "step", "shown"),
    [
        ("0.5", "0.01", "0.50"),
        ("2", "0.01", "2.00"),
        ("2.0", "0.01", "2.00"),
        ("0.45", "0.01", "0.45"),
        ("0.500", "0.01", "0.50"),
        ("2", "0.1", "2.0"),
        ("3", "1", "3"),
        ("0", "0.01", "0.00"),
        # A volume finer than the step keeps its digits: exact, never rounded away.
        ("0.0003727171", "0.01", "0.0003727171"),
        # Step unknown: as it came, not guessed by trimming zeros.
        ("0.5", None, "0.5"),
        ("1.00", None, "1.00"),
    ],
)
def test_volumes_are_shown_to_the_symbols_volume_step(
    figures: ModuleType, value: str, step: str | None, shown: str
) -> None:
    assert figures.volume_text(D(value), None if step is None else D(step)) == shown
    assert str(figures.volume(D(value), None if step is None else D(step))) == shown


@BOTH
@pytest.mark.parametrize(
    ("value", "digits", "shown"),
    [
        ("1.08441000", 5, "1.08441"),
        ("1.0844", 5, "1.08440"),
        # An average of fills has more digits than a price: half to even.
        ("1.084413333333", 5, "1.08441"),
        ("1.084415", 5, "1.08442"),
        ("2650.5", 2, "2650.50"),
        ("1.08441000", None, "1.08441000"),
    ],
)
def test_prices_are_shown_to_the_symbols_digits(
    figures: ModuleType, value: str, digits: int | None, shown: str
) -> None:
    assert figures.price_text(D(value), digits) == shown


@BOTH
def test_money_has_two_places_half_up_and_thousands_in_text(figures: ModuleType) -> None:
    assert str(figures.money(D("12500.255"))) == "12500.26"
    assert str(figures.money(D("100000"))) == "100000.00"
    assert figures.money_text(D("1234567.5")) == "1,234,567.50"
    assert figures.money_text(D("-0.004")) == "0.00"


@BOTH
def test_returns_and_ratios_are_rounded(figures: ModuleType) -> None:
    # The time-weighted return mamctl printed in JSON with 34 digits.
    twr = D("-0.0002903200000000000000000000000004")
    assert str(figures.fraction(twr)) == "-0.000290"
    assert figures.percent_text(twr) == "-0.03%"
    assert figures.percent_text(D("0.5")) == "50.00%"
    assert str(figures.ratio(D("1.234567"))) == "1.2346"
    assert figures.ratio_text(D("1.234567")) == "1.23"


@BOTH
@pytest.mark.parametrize(
    "shown",
    [
        lambda f: f.points_text(D("-0.0")),
        lambda f: f.plain(D("-0.00")),
        lambda f: f.volume_text(D("-0"), D("0.01")),
        lambda f: f.price_text(D("-0.000001"), 5),
        lambda f: f.percent_text(D("-0.000001")),
        lambda f: f.money_text(D("-0.001")),
    ],
)
def test_no_figure_is_a_negative_zero(figures: ModuleType, shown: object) -> None:
    assert callable(shown)
    text = shown(figures)
    assert not text.startswith("-"), text


@BOTH
def test_a_symbols_precision_shows_its_volumes_and_prices(figures: ModuleType) -> None:
    eurusd = figures.SymbolPrecision(volume_step=D("0.01"), digits=5)
    assert eurusd.volume_text(D("0.5")) == "0.50"
    assert eurusd.price_text(D("1.08438000")) == "1.08438"
    assert figures.UNKNOWN.volume_text(D("0.5")) == "0.5"


@BOTH
@given(
    st.decimals(min_value=-(10**9), max_value=10**9, allow_nan=False, places=6),
    st.sampled_from(["0.01", "0.1", "1", "0.001"]),
)
def test_a_shown_volume_is_the_same_number(figures: ModuleType, value: Decimal, step: str) -> None:
    shown = figures.volume(value, D(step))
    assert shown == value
