"""Performance metrics against hand-computed fixtures (the arithmetic is in the comments;
docs/reporting.md shows the same examples)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from gateway.domain.account_history import DealEntry
from gateway.domain.balance_operations import BalanceOperation, BalanceOperationKind
from gateway.domain.orders import Side
from gateway.domain.performance import (
    AccountActivity,
    EquityPoint,
    TradeDeal,
    TradeStatistics,
    annualized_volatility,
    combine_accounts,
    measure_performance,
    sharpe_ratio,
    sortino_ratio,
    trade_statistics,
)
from gateway.domain.reporting_period import Period

D = Decimal
DEPOSIT = BalanceOperationKind.DEPOSIT
WITHDRAWAL = BalanceOperationKind.WITHDRAWAL
TRANSFER = BalanceOperationKind.TRANSFER


def at(month: int, day: int, hour: int = 21, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def point(time: datetime, equity: str, balance: str | None = None) -> EquityPoint:
    return EquityPoint(time=time, balance=D(balance or equity), equity=D(equity))


def flow(time: datetime, kind: BalanceOperationKind, amount: str) -> BalanceOperation:
    return BalanceOperation(time=time, kind=kind, amount=D(amount))


def closing(
    ticket: int,
    profit: str,
    *,
    commission: str = "0",
    swap: str = "0",
    symbol: str = "EURUSD",
    side: Side = Side.SELL,
    volume: str = "0.10",
    price: str = "1.1000",
    entry: DealEntry = DealEntry.OUT,
) -> TradeDeal:
    return TradeDeal(
        ticket=ticket,
        symbol=symbol,
        side=side,
        entry=entry,
        volume=D(volume),
        price=D(price),
        profit=D(profit),
        commission=D(commission),
        swap=D(swap),
        executed_at=at(1, 2, 12) + timedelta(minutes=ticket),
    )


JANUARY = Period.of_days(date(2026, 1, 1), date(2026, 1, 31))


def places(value: Decimal | None, digits: int = 12) -> Decimal:
    assert value is not None
    return value.quantize(Decimal(1).scaleb(-digits))


# -- time-weighted return ----------------------------------------------------------------------


def deposit_and_withdrawal() -> AccountActivity:
    return AccountActivity(
        account_id="acc-1",
        points=(
            point(at(1, 1), "10000"),
            point(at(1, 2), "11000"),
            point(at(1, 3), "17600"),
            point(at(1, 4), "7920"),
        ),
        operations=(
            # Before the first snapshot: already in it, so not a flow of the measured window.
            flow(at(1, 1, 8), DEPOSIT, "10000"),
            flow(at(1, 2, 22), DEPOSIT, "5000"),
            flow(at(1, 3, 23), WITHDRAWAL, "-8800"),
        ),
    )


def test_time_weighted_return_chains_sub_periods_across_each_flow() -> None:
    report = measure_performance(deposit_and_withdrawal(), JANUARY)
    # Interval growths, each flow applied to the equity of the snapshot before it:
    #   Jan 1 -> Jan 2: 11000 / 10000            = 1.1
    #   Jan 2 -> Jan 3: 17600 / (11000 + 5000)   = 1.1
    #   Jan 3 -> Jan 4:  7920 / (17600 - 8800)   = 0.9
    # TWR = 1.1 x 1.1 x 0.9 - 1 = 0.089, while the naive 7920 / 10000 - 1 = -0.208 counts the
    # withdrawal as a loss.
    assert report.time_weighted_return == D("0.089")
    naive = report.closing.equity / report.opening.equity - 1  # type: ignore[union-attr]
    assert naive == D("-0.208")
    # Net P&L = 7920 - 10000 - (5000 - 8800) = 1720 = +1000 + 1600 - 880.
    assert report.net_pnl == D("1720")
    assert report.measured_net_flow == D("-3800")
    # The period's cash flows, the one before the first snapshot included.
    assert report.cash_flows.deposits == D("15000")
    assert report.cash_flows.withdrawals == D("-8800")
    assert report.cash_flows.net == D("6200")
    # Jan 1 holds only the first snapshot: no return that day.
    assert [(r.day.day, r.value) for r in report.daily_returns] == [
        (2, D("0.1")),
        (3, D("0.1")),
        (4, D("-0.1")),
    ]


def test_a_flow_at_the_time_of_a_snapshot_is_in_that_snapshot() -> None:
    activity = AccountActivity(
        "acc-1",
        points=(point(at(1, 1), "1000"), point(at(1, 2), "2100")),
        operations=(flow(at(1, 2), DEPOSIT, "1000"),),
    )
    # The Jan 2 snapshot holds the deposit made at the same instant: 2100 / (1000 + 1000).
    report = measure_performance(activity, JANUARY)
    assert report.time_weighted_return == D("0.05")
    assert report.net_pnl == D("100")


def test_an_account_funded_from_zero_earns_from_its_first_deposit() -> None:
    activity = AccountActivity(
        "acc-1",
        points=(point(at(1, 1), "0"), point(at(1, 2), "1050")),
        operations=(flow(at(1, 1, 22), DEPOSIT, "1000"),),
    )
    # Capital at work 0 + 1000: growth 1050 / 1000; no division by the zero equity.
    assert measure_performance(activity, JANUARY).time_weighted_return == D("0.05")


def test_an_interval_with_no_capital_at_work_has_no_return() -> None:
    activity = AccountActivity(
        "acc-1",
        points=(point(at(1, 1), "1000"), point(at(1, 2), "0"), point(at(1, 3), "0")),
        operations=(flow(at(1, 1, 22), WITHDRAWAL, "-1000"),),
    )
    report = measure_performance(activity, JANUARY)
    # 0 / (1000 - 1000): nothing at work, growth counted as 1, not a division by zero.
    assert report.time_weighted_return == 0
    assert report.net_pnl == 0


# -- drawdown ----------------------------------------------------------------------------------


def test_drawdown_spanning_a_month_end_reports_its_peak_trough_and_recovery() -> None:
    equities = [
        (at(1, 28), "100"),
        (at(1, 29), "110"),
        (at(1, 30), "120"),  # the peak
        (at(1, 31), "108"),
        (at(2, 1), "90"),  # the trough: 1 - 90 / 120 = 0.25
        (at(2, 2), "100"),
        (at(2, 3), "120"),  # back at the peak: recovered
        (at(2, 4), "115"),  # a smaller fall from the new high: 1 - 115 / 120 = 0.0416...
    ]
    activity = AccountActivity("acc-1", points=tuple(point(t, e) for t, e in equities))
    period = Period.of_days(date(2026, 1, 28), date(2026, 2, 4))
    drawdown = measure_performance(activity, period).max_drawdown
    assert drawdown is not None
    assert drawdown.depth == D("0.25")
    assert (drawdown.peak_at, drawdown.trough_at, drawdown.recovered_at) == (
        at(1, 30),
        at(2, 1),
        at(2, 3),
    )
    assert (drawdown.peak_equity, drawdown.trough_equity) == (D("120"), D("90"))


def test_a_drawdown_not_recovered_has_no_recovery_date() -> None:
    activity = AccountActivity(
        "acc-1", points=(point(at(1, 1), "100"), point(at(1, 2), "80"), point(at(1, 3), "95"))
    )
    drawdown = measure_performance(activity, JANUARY).max_drawdown
    assert drawdown is not None
    assert drawdown.depth == D("0.2")
    assert drawdown.recovered_at is None


def test_a_withdrawal_is_not_a_drawdown() -> None:
    activity = AccountActivity(
        "acc-1",
        points=(point(at(1, 1), "1000"), point(at(1, 2), "500"), point(at(1, 3), "550")),
        operations=(flow(at(1, 1, 22), WITHDRAWAL, "-500"),),
    )
    report = measure_performance(activity, JANUARY)
    # 500 / (1000 - 500) = 1, then 550 / 500 = 1.1: the unit value never fell.
    assert report.max_drawdown is None
    assert report.time_weighted_return == D("0.1")


# -- volatility, Sharpe, Sortino ---------------------------------------------------------------

SERIES = [D("0.02"), D("-0.01"), D("0.03"), D("-0.02")]


def test_sharpe_and_sortino_of_a_short_return_series() -> None:
    # mean = (0.02 - 0.01 + 0.03 - 0.02) / 4 = 0.005
    # deviations 0.015, -0.015, 0.025, -0.025; squares sum to 0.0017
    # sample variance = 0.0017 / 3 = 0.000566...; deviation = 0.0238047614284761...
    # sqrt(252) = 15.8745078663875435...
    # volatility = 0.0238047614 x 15.8745078664 = 0.3778888725538236...
    assert places(annualized_volatility(SERIES)) == D("0.377888872554")
    # Sharpe = 0.005 / 0.0238047614 x 15.8745078664 = 3.3343135813572678...
    assert places(sharpe_ratio(SERIES)) == D("3.334313581357")
    # Sortino: downside = sqrt((0.01^2 + 0.02^2) / 4) = sqrt(0.000125) = 0.0111803398874989...
    # 0.005 / 0.0111803399 x 15.8745078664 = 7.0992957397195392...
    assert places(sortino_ratio(SERIES)) == D("7.099295739720")


def test_a_risk_free_rate_is_taken_per_period_of_the_annualization() -> None:
    rate = D("0.0252")  # a year: 0.0252 / 252 = 0.0001 a day
    # Sharpe = (0.005 - 0.0001) / 0.0238047614 x 15.8745078664 = 3.2676273097301224...
    assert places(sharpe_ratio(SERIES, risk_free_rate=rate)) == D("3.267627309730")
    # Sortino target 0.0001: shortfalls -0.0101 and -0.0201;
    # downside = sqrt((0.00010201 + 0.00040401) / 4) = 0.0112474441541178...
    # (0.005 - 0.0001) / 0.0112474442 x 15.8745078664 = 6.9158012682215158...
    assert places(sortino_ratio(SERIES, risk_free_rate=rate)) == D("6.915801268222")


def test_the_annualization_factor_is_a_parameter() -> None:
    # sqrt(0.0017 / 3 x 365) = sqrt(0.206833...) = 0.4547893...
    assert places(annualized_volatility(SERIES, annualization=365), 7) == D("0.4547893")


def test_daily_returns_come_from_the_snapshots_and_feed_the_ratios() -> None:
    # 100 x 1.02 = 102; x 0.99 = 100.98; x 1.03 = 104.0094; x 0.98 = 101.929212
    equities = ["100", "102", "100.98", "104.0094", "101.929212"]
    activity = AccountActivity(
        "acc-1", points=tuple(point(at(1, 1 + n), e) for n, e in enumerate(equities))
    )
    report = measure_performance(activity, JANUARY)
    assert [r.value for r in report.daily_returns] == SERIES
    assert report.sharpe_ratio == sharpe_ratio(SERIES)
    assert report.sortino_ratio == sortino_ratio(SERIES)
    assert report.volatility == annualized_volatility(SERIES)


def test_ratios_are_undefined_rather_than_divided_by_zero() -> None:
    assert sharpe_ratio([D("0.01")]) is None
    assert annualized_volatility([D("0.01")]) is None
    # No variation: the deviation is 0.
    assert sharpe_ratio([D("0.01"), D("0.01")]) is None
    # No return under the target: no downside.
    assert sortino_ratio([D("0.01"), D("0.02")]) is None


# -- trades and exposure -----------------------------------------------------------------------


def small_deal_list() -> tuple[TradeDeal, ...]:
    return (
        closing(1, "0", commission="-2", entry=DealEntry.IN, side=Side.BUY),  # not a trade
        closing(2, "100", commission="-2", swap="-3", price="1.1100"),  # net 95: a win
        closing(3, "-50", commission="-2"),  # net -52: a loss
        closing(4, "30", commission="-2", swap="2", symbol="XAUUSD", volume="0.02", price="2000"),
        closing(5, "2", commission="-2", symbol="XAUUSD", volume="0.02", price="2010"),  # net 0
    )


def test_win_rate_profit_factor_and_averages_of_a_small_deal_list() -> None:
    stats = trade_statistics(small_deal_list())
    # Trades: the 4 closing deals, results 95, -52, 30, 0.
    assert (stats.trades, stats.wins, stats.losses) == (4, 2, 1)
    # The break-even trade counts as a trade, neither won nor lost: 2 / 4.
    assert stats.win_rate == D("0.5")
    assert (stats.gross_profit, stats.gross_loss) == (D("125"), D("-52"))
    # 125 / 52 = 2.403846153846...
    assert places(stats.profit_factor) == D("2.403846153846")
    assert stats.average_win == D("62.5")
    assert stats.average_loss == D("-52")


def test_realized_pnl_costs_and_exposure_count_every_deal() -> None:
    activity = AccountActivity("acc-1", deals=small_deal_list())
    report = measure_performance(activity, JANUARY, contract_sizes={"EURUSD": D("100000")})
    # 95 - 52 + 30 + 0, and the opening deal's commission -2.
    assert report.realized_pnl == D("71")
    assert (report.commission, report.swap) == (D("-10"), D("-1"))
    eurusd, xauusd = report.exposure
    # EURUSD: 3 deals of 0.10, one bought; notional
    # 0.10 x 100000 x (1.1000 + 1.1100 + 1.1000) = 33100.
    assert (eurusd.symbol, eurusd.deals, eurusd.volume) == ("EURUSD", 3, D("0.30"))
    assert (eurusd.buy_volume, eurusd.sell_volume) == (D("0.10"), D("0.20"))
    assert eurusd.notional == D("33100")
    # No contract size given for XAUUSD: its notional is unknown, not guessed.
    assert (xauusd.symbol, xauusd.volume, xauusd.notional) == ("XAUUSD", D("0.04"), None)


def test_profit_factor_without_a_loss_is_undefined_and_without_a_win_zero() -> None:
    assert trade_statistics([closing(1, "10")]).profit_factor is None
    only_loss = trade_statistics([closing(1, "-10")])
    assert only_loss.profit_factor == 0
    assert (only_loss.win_rate, only_loss.average_win) == (D(0), None)


# -- the equity curve and days -----------------------------------------------------------------


def test_equity_curve_keeps_the_last_snapshot_of_each_utc_day() -> None:
    new_york = timezone(timedelta(hours=-5))
    activity = AccountActivity(
        "acc-1",
        points=(
            point(at(1, 1, 9), "100"),
            point(at(1, 1, 17), "105"),
            # 21:30 in New York is 02:30 UTC on Jan 2: a Jan 2 value.
            point(datetime(2026, 1, 1, 21, 30, tzinfo=new_york), "104"),
            point(at(1, 4, 10), "110"),
        ),
    )
    report = measure_performance(activity, JANUARY)
    assert [(p.day, p.equity) for p in report.equity_curve] == [
        (date(2026, 1, 1), D("105")),
        (date(2026, 1, 2), D("104")),
        (date(2026, 1, 4), D("110")),
    ]
    # Jan 1: 105 / 100 - 1; Jan 2: 104 / 105 - 1; Jan 4: 110 / 104 - 1 (Jan 3 has no snapshot).
    assert [places(r.value, 6) for r in report.daily_returns] == [
        D("0.050000"),
        D("-0.009524"),
        D("0.057692"),
    ]


def test_only_what_happened_in_the_period_counts() -> None:
    activity = AccountActivity(
        "acc-1",
        points=(point(at(1, 31), "100"), point(at(2, 1, 0), "200"), point(at(2, 2), "220")),
        operations=(flow(at(1, 31, 22), DEPOSIT, "100"),),
        deals=(closing(1, "5"),),
    )
    february = Period.of_days(date(2026, 2, 1), date(2026, 2, 28))
    report = measure_performance(activity, february)
    # The snapshot at exactly 1 Feb 00:00 opens February; January's deposit and deal are out.
    assert report.opening == point(at(2, 1, 0), "200")
    assert report.time_weighted_return == D("0.1")
    assert report.cash_flows.net == 0
    assert report.trades.trades == 0


# -- empty periods -----------------------------------------------------------------------------


def test_an_empty_period_has_defined_results() -> None:
    report = measure_performance(AccountActivity("acc-1"), JANUARY)
    assert (report.opening, report.closing, report.net_pnl) == (None, None, None)
    assert report.time_weighted_return is None
    assert report.max_drawdown is None
    assert report.daily_returns == ()
    assert (report.volatility, report.sharpe_ratio, report.sortino_ratio) == (None, None, None)
    assert report.trades == TradeStatistics()
    assert report.trades.win_rate is None
    assert report.trades.profit_factor is None
    assert (report.realized_pnl, report.exposure, report.equity_curve) == (D(0), (), ())


def test_a_single_snapshot_earns_nothing_and_has_no_daily_return() -> None:
    report = measure_performance(
        AccountActivity("acc-1", points=(point(at(1, 5), "100"),)), JANUARY
    )
    assert (report.time_weighted_return, report.net_pnl) == (D(0), D(0))
    assert report.daily_returns == ()
    assert report.max_drawdown is None
    assert len(report.equity_curve) == 1


def test_flows_without_snapshots_are_listed_but_not_measured() -> None:
    activity = AccountActivity("acc-1", operations=(flow(at(1, 3), DEPOSIT, "100"),))
    report = measure_performance(activity, JANUARY)
    assert report.cash_flows.deposits == D("100")
    assert (report.measured_net_flow, report.net_pnl) == (D(0), None)


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        Period(at(1, 2), at(1, 1))
    with pytest.raises(ValueError):
        Period(datetime(2026, 1, 1), datetime(2026, 1, 2))  # no time zone
    with pytest.raises(ValueError):
        flow(at(1, 1), DEPOSIT, "-5")
    with pytest.raises(ValueError):
        flow(at(1, 1), WITHDRAWAL, "5")
    with pytest.raises(ValueError):
        measure_performance(AccountActivity("acc-1"), JANUARY, annualization=0)


# -- groups ------------------------------------------------------------------------------------


def three_members() -> list[AccountActivity]:
    return [
        AccountActivity(
            "a",
            points=(point(at(1, 1), "1000"), point(at(1, 2), "1100"), point(at(1, 3), "1210")),
            deals=(closing(1, "110"),),
        ),
        AccountActivity(
            "b",
            points=(point(at(1, 1), "3000"), point(at(1, 2), "2900"), point(at(1, 3), "4060")),
            operations=(flow(at(1, 2, 22), DEPOSIT, "1000"),),
            deals=(closing(2, "-100"),),
        ),
        # Valued from Jan 2 only; its deposit that morning is in that first snapshot.
        AccountActivity(
            "c",
            points=(point(at(1, 2), "500"), point(at(1, 3), "550")),
            operations=(flow(at(1, 2, 10), DEPOSIT, "500"),),
        ),
    ]


def test_a_group_sums_its_members_curves_and_flows() -> None:
    group = combine_accounts("g-1", three_members())
    # Jan 1: 1000 + 3000; Jan 2: 1100 + 2900 + 500; Jan 3: 1210 + 4060 + 550.
    assert [p.equity for p in group.points] == [D("4000"), D("4500"), D("5820")]
    # c enters with a transfer of its equity at its first snapshot; its earlier deposit is out.
    assert [(op.time, op.kind, op.amount) for op in group.operations] == [
        (at(1, 2), TRANSFER, D("500")),
        (at(1, 2, 22), DEPOSIT, D("1000")),
    ]
    report = measure_performance(group, JANUARY)
    # Jan 1 -> 2: 4500 / (4000 + 500 transfer) = 1 (a gains 100, b loses 100).
    # Jan 2 -> 3: 5820 / (4500 + 1000 deposit) = 1.0581818181...
    assert places(report.time_weighted_return) == D("0.058181818182")
    # 5820 - 4000 - 1500 = 320 = a 210 + b (-100 + 160) + c 50.
    assert report.net_pnl == D("320")
    assert report.trades.trades == 2
    assert report.realized_pnl == D("10")


def test_a_group_values_members_as_of_each_time() -> None:
    a = AccountActivity("a", points=(point(at(1, 1, 10), "100"), point(at(1, 1, 14), "120")))
    b = AccountActivity("b", points=(point(at(1, 1, 10), "200"), point(at(1, 1, 12), "210")))
    group = combine_accounts("g-1", [a, b])
    # 10:00 both; 12:00 a's 10:00 value + b; 14:00 a + b's last value carried.
    assert [(p.time.hour, p.equity) for p in group.points] == [
        (10, D("300")),
        (12, D("310")),
        (14, D("330")),
    ]
    assert group.operations == ()


def test_an_empty_group_has_defined_results() -> None:
    group = combine_accounts("g-1", [AccountActivity("a"), AccountActivity("b")])
    report = measure_performance(group, JANUARY)
    assert (report.time_weighted_return, report.net_pnl) == (None, None)
