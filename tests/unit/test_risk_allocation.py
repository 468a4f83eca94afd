"""Pre-trade risk applied to an allocation (what the engine sends), the trading gate's
stop-outs, and the stored form of risk settings and loss watch states."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from gateway.domain.account_exposure import AccountExposure
from gateway.domain.accounts import AccountSnapshot, AllocationMethod, BelowMinPolicy, MarginMode
from gateway.domain.allocation import Allocation, AllocationLine, AllocationReason
from gateway.domain.drawdown_monitor import (
    LossLimit,
    LossLimits,
    LossRule,
    LossUnit,
    StopOutAction,
    observe_equity,
)
from gateway.domain.orders import Side
from gateway.domain.pre_trade_risk import RiskAction, RiskRule
from gateway.domain.risk_allocation import AccountRiskInput, check_allocation
from gateway.domain.risk_limits import RiskLimits, TradingWindow, ViolationPolicy, Weekday
from gateway.domain.stop_outs import RecordedStopOut, WatchKind
from gateway.domain.symbols import SymbolSpec
from gateway.engine.trading_gate import TradingGate
from gateway.store import records

D = Decimal
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
EURUSD = SymbolSpec("EURUSD", 5, D(100000), D("0.01"), D("0.01"), D(100), D("0.00001"), D(1))
SNAPSHOT = AccountSnapshot(D(10000), D(10000), D(0), D(10000), T0)


def line(account_id: str, *children: str) -> AllocationLine:
    volumes = tuple(D(v) for v in children)
    return AllocationLine(
        account_id, "EURUSD", AllocationMethod.EQUITY, D(10000), sum(volumes, D("0.00")),
        sum(volumes, D("0.00")), volumes, (), SNAPSHOT, None, EURUSD.contract_size,
    )  # fmt: skip


def allocation(*lines: AllocationLine) -> Allocation:
    total = sum((x.volume for x in lines), D("0.00"))
    return Allocation(
        AllocationMethod.EQUITY, BelowMinPolicy.SKIP, total, total, D("0.00"), T0, lines
    )


def given(limits: RiskLimits, **changes: object) -> AccountRiskInput:
    exposure = AccountExposure("acc", D(10000), D(0), 100, MarginMode.HEDGING)
    values: dict[str, object] = {
        "limits": limits,
        "exposure": exposure,
        "spec": EURUSD,
        "price": D("1.10000"),
    }
    values.update(changes)
    return AccountRiskInput(**values)  # type: ignore[arg-type]


def checked(shared: Allocation, inputs: dict[str, AccountRiskInput]) -> Allocation:
    return check_allocation(
        shared,
        inputs,
        side=Side.BUY,
        master_symbol=EURUSD,
        policy=ViolationPolicy.CLIP,
        at=T0,
    )


def test_a_clipped_child_keeps_its_place_a_skipped_one_leaves_and_totals_follow() -> None:
    shared = allocation(line("acc", "0.60", "0.60"), line("free", "0.50"))
    result = checked(shared, {"acc": given(RiskLimits(max_symbol_volume=D("1.00")))})
    limited, free = result.lines
    # The second child is checked after the first: 0.60 + 0.40 reaches the 1.00 limit.
    assert limited.child_volumes == (D("0.60"), D("0.40"))
    assert limited.volume == D("1.00")
    assert limited.reasons == (AllocationReason.RISK_CLIPPED,)
    assert [d.action for d in limited.risk_checks] == [RiskAction.ALLOW, RiskAction.CLIP]
    assert free == shared.lines[1]  # not checked: left exactly as allocated
    assert (result.allocated_volume, result.unallocated_volume) == (D("1.50"), D("0.20"))


def test_a_line_skipped_whole_keeps_its_zero_with_the_steps_decimals() -> None:
    result = checked(
        allocation(line("acc", "0.50")), {"acc": given(RiskLimits(denied_symbols={"EURUSD"}))}
    )
    (skipped,) = result.lines
    assert skipped.child_volumes == () and str(skipped.volume) == "0.00"
    assert skipped.reasons == (AllocationReason.RISK_SKIPPED,)
    assert skipped.risk_checks[0].rules == (RiskRule.SYMBOL_DENIED,)
    assert str(result.allocated_volume) == "0.00"


def test_an_account_that_cannot_be_read_or_priced_is_skipped_unchecked() -> None:
    money = RiskLimits(max_symbol_notional=D(100000))
    result = checked(
        allocation(line("gone", "0.10"), line("unpriced", "0.10")),
        {
            "gone": given(RiskLimits(), exposure=None, unreadable="no positions"),
            "unpriced": given(money, rate=None),
        },
    )
    gone, unpriced = result.lines
    assert gone.child_volumes == unpriced.child_volumes == ()
    assert gone.risk_checks[0].summary == "skipped unchecked: no positions"
    assert "no quote converts" in unpriced.risk_checks[0].summary
    assert gone.risk_checks[0].violations == ()


def test_a_stop_out_without_limits_still_holds_back_an_entry() -> None:
    result = checked(
        allocation(line("acc", "0.10")),
        {"acc": given(RiskLimits(), stop_out=StopOutAction.BLOCK_NEW_ENTRIES)},
    )
    assert result.lines[0].risk_checks[0].rules == (RiskRule.STOPPED_OUT,)
    assert result.lines[0].child_volumes == ()


def stop_out(kind: WatchKind, subject_id: str, action: StopOutAction) -> RecordedStopOut:
    limits = LossLimits(max_drawdown=LossLimit(D(100), LossUnit.MONEY, action))
    first = observe_equity(None, SNAPSHOT, limits).state
    later = AccountSnapshot(D(10000), D(9800), D(0), D(9800), T0 + timedelta(minutes=1))
    (breach,) = observe_equity(first, later, limits).triggered
    return RecordedStopOut(f"so_{subject_id}", kind, subject_id, breach, recorded_at=T0)


def test_the_gate_stops_a_stopped_out_accounts_children_unless_planned_after() -> None:
    gate = TradingGate()
    assert gate.stopping("acc", "grp") is None
    account_stop = stop_out(WatchKind.ACCOUNT, "acc", StopOutAction.BLOCK_NEW_ENTRIES)
    gate.stop_out(account_stop, known_at=T0)
    assert gate.account_stop_out("acc") is StopOutAction.BLOCK_NEW_ENTRIES
    assert gate.stopping("acc", "grp") is account_stop
    # Planned after the gate knew: the pre-trade check has applied it already.
    assert gate.stopping("acc", "grp", planned_at=T0 + timedelta(seconds=1)) is None
    assert gate.stopping("acc", "grp", planned_at=T0) is account_stop
    assert gate.stopping("other", "grp") is None
    group_stop = stop_out(WatchKind.GROUP, "grp", StopOutAction.FLATTEN)
    gate.stop_out(group_stop, known_at=T0)
    assert gate.stopped_group("grp") is group_stop
    assert gate.stopping("other", "grp", planned_at=T0 + timedelta(days=1)) is group_stop
    gate.lift(group_stop)
    gate.lift(account_stop)
    assert gate.stopping("acc", "grp") is None and not gate.has_account_stop_outs


def test_risk_settings_and_watch_states_are_stored_exactly() -> None:
    limits = RiskLimits(
        max_order_volume=D("2.50"),
        max_symbol_notional=D("300000.00"),
        max_open_positions=0,
        allowed_symbols=frozenset({"EURUSD", "EURUSD.m"}),
        trading_windows=TradingWindow.daily([Weekday.MONDAY], time(22), time(2, 30)),
    )
    assert records.risk_limits_of_json(records.risk_limits_json(limits)) == limits
    for zone in (UTC, ZoneInfo("Europe/Athens"), timezone(timedelta(hours=-3, minutes=-30))):
        losses = LossLimits(
            daily_loss=LossLimit(D("2.5"), LossUnit.PERCENT, StopOutAction.CLOSE_ONLY),
            day_zone=zone,
            daily_breach_ends_next_day=False,
        )
        assert records.loss_limits_of_json(records.loss_limits_json(losses)) == losses
    assert records.loss_limits_of_json(records.loss_limits_json(None)) is None
    limits_ = LossLimits(max_drawdown=LossLimit(D(100), LossUnit.MONEY, StopOutAction.FLATTEN))
    watched = observe_equity(None, SNAPSHOT, limits_).state
    watched = observe_equity(
        watched,
        AccountSnapshot(D(10000), D("9899.99"), D(0), D("9899.99"), T0 + timedelta(hours=1)),
        limits_,
    ).state
    assert [b.rule for b in watched.breaches] == [LossRule.MAX_DRAWDOWN]
    assert records.drawdown_state_of_json(records.drawdown_state_json(watched)) == watched
