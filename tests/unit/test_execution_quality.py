"""Execution quality: volume drift, slippage against the master price, dispatch skew."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from gateway.domain.execution_quality import (
    AccountExecution,
    SlippageSummary,
    dispatch_skews,
    execution_quality,
    slippage_points,
)
from gateway.domain.orders import Side

D = Decimal
POINT = D("0.00001")


def at(minute: int, micros: int = 0) -> datetime:
    return datetime(2026, 3, 2, 10, minute, tzinfo=UTC) + timedelta(microseconds=micros)


def execution(
    master: str,
    account: str,
    minute: int,
    *,
    target: str,
    allocated: str,
    filled: str,
    side: Side = Side.BUY,
    master_price: str | None = "1.10000",
    fill_price: str | None = None,
    sent_us: int | None = None,
    filled_us: int | None = None,
    symbol: str = "EURUSD",
) -> AccountExecution:
    return AccountExecution(
        master_order_id=master,
        account_id=account,
        symbol=symbol,
        point=POINT,
        side=side,
        submitted_at=at(minute),
        target_volume=D(target),
        allocated_volume=D(allocated),
        filled_volume=D(filled),
        master_price=D(master_price) if master_price else None,
        fill_price=D(fill_price) if fill_price else None,
        sent_at=at(minute, sent_us) if sent_us is not None else None,
        filled_at=at(minute, filled_us) if filled_us is not None else None,
    )


def three_orders() -> list[AccountExecution]:
    return [
        # Listed out of order: the history follows the submission times.
        execution(
            "m3", "a", 3, target="1.255", allocated="1.25", filled="1.20",
            fill_price="1.09990", sent_us=1_000, filled_us=9_000,
        ),
        execution(
            "m1", "a", 1, target="0.3333333333", allocated="0.33", filled="0.33",
            fill_price="1.10012", sent_us=5_000, filled_us=20_000,
        ),
        execution(
            "m2", "a", 2, target="0.6666666667", allocated="0.67", filled="0.67",
            side=Side.SELL, fill_price="1.09995", sent_us=1_000, filled_us=8_000,
        ),
        execution(
            "m1", "b", 1, target="0.6666666667", allocated="0.67", filled="0.67",
            fill_price="1.10000", sent_us=1_000, filled_us=12_000,
        ),
        execution(
            "m2", "b", 2, target="1.3333333333", allocated="1.33", filled="1.33",
            side=Side.SELL, fill_price="1.10000", sent_us=3_500, filled_us=7_000,
        ),
    ]  # fmt: skip


def test_rounding_drift_accumulates_over_orders() -> None:
    a, _b = execution_quality(three_orders())
    (eurusd,) = a.volumes
    history = [
        (h.master_order_id, h.rounding, h.cumulative_rounding, h.cumulative_unfilled)
        for h in eurusd.history
    ]
    assert history == [
        # 0.33 - 0.3333333333 = -0.0033333333
        ("m1", D("-0.0033333333"), D("-0.0033333333"), D("0")),
        # 0.67 - 0.6666666667 = +0.0033333333: the two roundings cancel out.
        ("m2", D("0.0033333333"), D("0"), D("0")),
        # 1.25 - 1.255 = -0.005; filled 0.05 short of the 1.25 sent.
        ("m3", D("-0.005"), D("-0.005"), D("0.05")),
    ]
    # Intended 0.3333333333 + 0.6666666667 + 1.255 = 2.255; achieved 0.33 + 0.67 + 1.20 = 2.20.
    assert (eurusd.target_volume, eurusd.filled_volume) == (D("2.255"), D("2.20"))
    assert eurusd.drift == D("-0.055")
    assert eurusd.drift == eurusd.rounding_drift - eurusd.unfilled_volume
    assert eurusd.history[-1].cumulative_drift == eurusd.drift


def test_slippage_is_counted_in_points_and_positive_when_adverse() -> None:
    # Bought 12 points above the master: adverse.
    assert slippage_points(Side.BUY, D("1.10000"), D("1.10012"), POINT) == D("12")
    # Sold 5 points below the master: adverse too.
    assert slippage_points(Side.SELL, D("1.10000"), D("1.09995"), POINT) == D("5")
    # Bought 10 points below: favourable.
    assert slippage_points(Side.BUY, D("1.10000"), D("1.09990"), POINT) == D("-10")
    with pytest.raises(ValueError):
        slippage_points(Side.BUY, D("1"), D("1"), D("0"))


def test_average_slippage_is_weighted_by_filled_volume() -> None:
    a, b = execution_quality(three_orders())
    # (12 x 0.33 + 5 x 0.67 - 10 x 1.20) / (0.33 + 0.67 + 1.20) = (3.96 + 3.35 - 12) / 2.20
    # = -4.69 / 2.20 = -2.1318181818...
    assert a.slippage.fills == 3
    assert a.slippage.average_points is not None
    assert a.slippage.average_points.quantize(D("0.0001")) == D("-2.1318")
    assert (a.slippage.worst_points, a.slippage.best_points) == (D("12"), D("-10"))
    assert b.slippage.average_points == 0


def test_dispatch_skew_and_each_accounts_delay() -> None:
    skews = {s.master_order_id: s for s in dispatch_skews(three_orders())}
    # m1: a sent at +5000 us, b at +1000 us: 4000 us apart; first fills +12000 and +20000.
    assert (skews["m1"].accounts_sent, skews["m1"].dispatch_skew_us) == (2, 4_000)
    assert skews["m1"].fill_skew_us == 8_000
    # m2: a at +1000, b at +3500.
    assert skews["m2"].dispatch_skew_us == 2_500
    # m3: one account: no spread.
    assert (skews["m3"].dispatch_skew_us, skews["m3"].fill_skew_us) == (0, 0)
    a, b = execution_quality(three_orders())
    # a's delays after the first send of each order: m1 4000, m2 0, m3 0: mean 1333.33 -> 1333.
    assert (a.average_dispatch_delay_us, a.max_dispatch_delay_us) == (1_333, 4_000)
    # b: m1 0, m2 2500: mean 1250.
    assert (b.average_dispatch_delay_us, b.max_dispatch_delay_us) == (1_250, 2_500)
    # a's sends after their masters' acceptance: 5000, 1000, 1000: mean 2333.33 -> 2333.
    assert a.average_send_latency_us == 2_333


def test_orders_without_a_send_or_a_price_have_defined_results() -> None:
    rejected = execution("m1", "a", 1, target="0.5", allocated="0.5", filled="0", master_price=None)
    (quality,) = execution_quality([rejected])
    assert quality.slippage == SlippageSummary()
    assert (quality.average_dispatch_delay_us, quality.max_dispatch_delay_us) == (None, None)
    assert quality.volumes[0].unfilled_volume == D("0.5")
    (skew,) = dispatch_skews([rejected])
    assert (skew.accounts_sent, skew.dispatch_skew_us, skew.fill_skew_us) == (0, None, None)
    assert execution_quality([]) == ()


def test_drift_is_kept_apart_per_symbol() -> None:
    records = [
        execution("m1", "a", 1, target="0.125", allocated="0.12", filled="0.12"),
        execution("m2", "a", 2, target="1.5", allocated="1", filled="1", symbol="US30"),
    ]
    (quality,) = execution_quality(records)
    assert [(v.symbol, v.rounding_drift) for v in quality.volumes] == [
        ("EURUSD", D("-0.005")),
        ("US30", D("-0.5")),
    ]
