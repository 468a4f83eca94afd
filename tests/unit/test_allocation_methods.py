"""Every allocation method, by hand-computed cases and by properties."""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain.accounts import AllocationMethod, AllocationSettings, BelowMinPolicy
from gateway.domain.accounts import GroupMember as Member
from gateway.domain.allocation import AllocationReason
from gateway.domain.errors import FailedPrecondition
from gateway.domain.group_rules import group_violations
from gateway.domain.symbols import SymbolSpec
from tests.unit.test_allocation import EURUSD, US500, member, run, volumes

D = Decimal
M = AllocationMethod
XAUUSD = SymbolSpec("XAUUSD", 2, D(100), D("0.01"), D("0.01"), D(50), D("0.01"), D(1))
# The same instrument as EURUSD at a broker that trades mini lots of 10,000.
EURUSD_MINI = SymbolSpec(
    "EURUSD.m", 5, D(10000), D("0.1"), D("0.1"), D(500), D("0.00001"), D("0.1")
)


def test_balance_and_free_margin_use_their_own_values() -> None:
    a = member("acc_a", 1000)
    b = member("acc_b", 1000)
    # Same equity, but b has margin in use: free margin 1000 vs 3000.
    a = a._replace(snapshot=replace(a.snapshot, balance=D(1000), free_margin=D(3000)))
    b = b._replace(snapshot=replace(b.snapshot, balance=D(3000), free_margin=D(1000)))
    assert volumes(run("0.04", [a, b], method=M.BALANCE)) == ["0.01", "0.03"]
    assert volumes(run("0.04", [a, b], method=M.FREE_MARGIN)) == ["0.03", "0.01"]


def test_percentage_gives_each_its_percent_of_the_master_volume() -> None:
    inputs = [
        member("acc_a", 1, percentage=D(50)),
        member("acc_b", 1, percentage=D(30)),
        member("acc_c", 1, percentage=D(20)),
    ]
    assert volumes(run("1.00", inputs, method=M.PERCENTAGE)) == ["0.50", "0.30", "0.20"]
    # 0.07 x 50/30/20 = 0.035/0.021/0.014: the sum stays 0.07 by largest remainder.
    assert volumes(run("0.07", inputs, method=M.PERCENTAGE)) == ["0.04", "0.02", "0.01"]


def test_lot_multiplier_rounds_down_and_may_be_below_one() -> None:
    inputs = [member("acc_a", 1, lot_multiplier=D("0.5")), member("acc_b", 1, lot_multiplier=D(3))]
    allocation = run("0.07", inputs, method=M.LOT_MULTIPLIER)
    assert volumes(allocation) == ["0.03", "0.21"]  # 0.035 -> 0.03, 0.21 exact
    assert allocation.lines[0].reasons == (AllocationReason.ROUNDED_DOWN,)
    assert allocation.lines[0].target_volume == D("0.035")
    assert allocation.allocated_volume == D("0.24")
    assert allocation.unallocated_volume == D("-0.17")  # more than the master trades


def test_fixed_lots_ignore_the_master_volume() -> None:
    inputs = [member("acc_a", 1, fixed_lots=D("0.25")), member("acc_b", 1, fixed_lots=D("1.7"))]
    assert volumes(run("5.00", inputs, method=M.FIXED_LOTS)) == ["0.25", "1.70"]
    assert volumes(run("0.01", inputs, method=M.FIXED_LOTS)) == ["0.25", "1.70"]


def test_equity_ratio_mirrors_the_reference_account() -> None:
    inputs = [member("acc_a", 25_000), member("acc_b", 250_000), member("acc_c", 1_000)]
    allocation = run("2.00", inputs, method=M.EQUITY_RATIO, reference_equity="100000")
    # 2.00 x 25k/100k = 0.50; x 250k/100k = 5.00; x 1k/100k = 0.02.
    assert volumes(allocation) == ["0.50", "5.00", "0.02"]
    assert allocation.reference_equity == D(100000)


def test_equity_ratio_without_a_reference_is_refused() -> None:
    with pytest.raises(FailedPrecondition) as caught:
        run("1.00", [member("acc_a", 1000)], method=M.EQUITY_RATIO)
    assert caught.value.reason == "REFERENCE_EQUITY_UNAVAILABLE"


def test_percent_risk_with_xauusd_tick_values() -> None:
    # XAUUSD: tick 0.01 worth 1 USD per lot (100 oz). Buying at 2650.00 with the stop at
    # 2640.00 risks 1,000 ticks = 1,000 USD per lot.
    inputs = [
        member("acc_a", 10_000, spec=XAUUSD, entry="2650.00", risk_percent=D(1)),
        member("acc_b", 25_000, spec=XAUUSD, entry="2650.00", risk_percent=D("2.5")),
        member("acc_c", 3_000, spec=XAUUSD, entry="2650.00", risk_percent=D("0.2")),
    ]
    allocation = run("1.00", inputs, symbol=XAUUSD, method=M.PERCENT_RISK, stop_loss="2640.00")
    # a: 100 USD / 1000 = 0.10; b: 625 / 1000 = 0.625 -> 0.62; c: 6 / 1000 = 0.006 -> skipped.
    assert volumes(allocation) == ["0.10", "0.62", "0.00"]
    reasons = [line.reasons for line in allocation.lines]
    assert reasons == [(), (AllocationReason.ROUNDED_DOWN,), (AllocationReason.SKIPPED_BELOW_MIN,)]
    assert allocation.lines[1].entry_price == D("2650.00")


def test_percent_risk_never_risks_more_than_asked() -> None:
    rng = random.Random(7)
    for _ in range(200):
        equity = D(rng.randint(1_000, 1_000_000))
        risk = D(rng.randint(1, 500)) / 100
        distance = D(rng.randint(50, 5_000)) / 100
        inputs = [member("acc_a", equity, spec=XAUUSD, entry="2650.00", risk_percent=risk)]
        [line] = run(
            "1.00",
            inputs,
            symbol=XAUUSD,
            method=M.PERCENT_RISK,
            stop_loss=str(D("2650.00") - distance),
        ).lines
        loss = line.volume * distance / XAUUSD.tick_size * XAUUSD.tick_value
        assert loss <= equity * risk / 100


def test_percent_risk_without_a_stop_loss_names_the_members_and_falls_back_to_nothing() -> None:
    inputs = [
        member("acc_b", 1000, entry="1.1", risk_percent=D(1)),
        member("acc_a", 1000, entry="1.1", risk_percent=D(1)),
    ]
    with pytest.raises(FailedPrecondition) as caught:
        run("1.00", inputs, method=M.PERCENT_RISK)
    assert caught.value.reason == "NO_STOP_LOSS"
    assert "acc_a, acc_b" in caught.value.message


def test_a_member_with_its_own_independent_method_trades_besides_the_split() -> None:
    inputs = [
        member("acc_a", 10_000),
        member("acc_b", 30_000),
        member("acc_c", 1_000_000, method=M.FIXED_LOTS, fixed_lots=D("0.33")),
    ]
    allocation = run("0.40", inputs)
    assert volumes(allocation) == ["0.10", "0.30", "0.33"]
    assert [line.method for line in allocation.lines] == [M.EQUITY, M.EQUITY, M.FIXED_LOTS]


def test_mapped_symbol_with_another_contract_size_gets_the_same_exposure() -> None:
    inputs = [
        member("acc_a", 50_000),
        member("acc_b", 50_000, spec=EURUSD_MINI),
    ]
    allocation = run("1.00", inputs)
    # Each gets 50,000 EUR of exposure: 0.50 standard lots, 5.0 mini lots.
    assert volumes(allocation) == ["0.50", "5.0"]
    assert allocation.lines[1].symbol == "EURUSD.m"
    assert allocation.lines[1].contract_size == D(10000)
    assert allocation.allocated_volume == D("1.00")


def test_mapped_lot_multiplier_scales_by_contract_size() -> None:
    inputs = [member("acc_a", 1, spec=EURUSD_MINI, lot_multiplier=D("0.5"))]
    assert volumes(run("0.30", inputs, method=M.LOT_MULTIPLIER)) == ["1.5"]


def test_symbol_not_at_the_broker_is_reported_not_guessed() -> None:
    missing = member("acc_b", 1000)._replace(spec=None, symbol="EURUSD.x")
    allocation = run("0.02", [member("acc_a", 1000), missing])
    assert volumes(allocation) == ["0.02", "0"]
    assert allocation.lines[1].reasons == (AllocationReason.SYMBOL_UNAVAILABLE,)


# -- group rules ---------------------------------------------------------------------------


def test_percentages_must_sum_to_exactly_100() -> None:
    settings_ = AllocationSettings(method=M.PERCENTAGE)
    members = (Member("a", percentage=D("33.33")), Member("b", percentage=D("66.66")))
    [violation] = group_violations(settings_, members)
    assert violation.field == "group.members"
    assert "sum to 99.99" in violation.description
    fine = (Member("a", percentage=D("33.34")), Member("b", percentage=D("66.66")))
    assert group_violations(settings_, fine) == []


def test_member_parameters_are_required_by_their_method() -> None:
    settings_ = AllocationSettings(method=M.EQUITY)
    members = (
        Member("a", method=M.LOT_MULTIPLIER),
        Member("b", method=M.FIXED_LOTS),
        Member("c", method=M.PERCENT_RISK, risk_percent=D(150)),
        Member("d", method=M.BALANCE),
        Member("e", method=M.EQUITY_RATIO),
    )
    fields = [v.field for v in group_violations(settings_, members)]
    assert fields == [
        "group.members[0].lot_multiplier",
        "group.members[1].fixed_lots",
        "group.members[2].risk_percent",
        "group.members[3].method",
        "group.allocation.reference_equity",
    ]


# -- properties ----------------------------------------------------------------------------

equity = st.decimals(min_value=D("100"), max_value=D("5000000"), places=2)
positive = st.decimals(min_value=D("0.01"), max_value=D("20"), places=2)


@st.composite
def independent_scenarios(draw: st.DrawFn):
    method = draw(st.sampled_from([M.LOT_MULTIPLIER, M.FIXED_LOTS, M.EQUITY_RATIO, M.PERCENT_RISK]))
    spec = draw(st.sampled_from([EURUSD, US500, XAUUSD, EURUSD_MINI]))
    count = draw(st.integers(min_value=1, max_value=15))
    inputs = []
    for i in range(count):
        inputs.append(
            member(
                f"acc_{i:03d}", draw(equity), spec=spec, entry="100.00",
                lot_multiplier=draw(positive), fixed_lots=draw(positive),
                risk_percent=draw(st.decimals(min_value=D("0.1"), max_value=D(5), places=1)),
                max_lots=draw(st.none() | positive),
            )
        )  # fmt: skip
    volume = (EURUSD.volume_step * draw(st.integers(1, 5000))).quantize(EURUSD.volume_step)
    return method, spec, inputs, volume


@settings(max_examples=300, deadline=None)
@given(independent_scenarios(), st.sampled_from(list(BelowMinPolicy)))
def test_independent_methods_stay_on_step_within_limits_and_never_exceed_their_rule(
    scenario, policy
) -> None:
    method, spec, inputs, volume = scenario
    allocation = run(
        str(volume), inputs, method=method, policy=policy, stop_loss="99.00",
        reference_equity="100000",
    )  # fmt: skip
    for m, line in zip(inputs, allocation.lines, strict=True):
        assert line.volume % spec.volume_step == 0
        assert line.volume == 0 or line.volume >= spec.volume_min
        if m.settings.max_lots is not None:
            assert line.volume <= max(m.settings.max_lots, spec.volume_min)
        if AllocationReason.RAISED_TO_MIN not in line.reasons:
            assert line.volume <= line.target_volume + D("1E-10")
        assert sum(line.child_volumes, D(0)) == line.volume
        assert all(spec.volume_min <= c <= spec.volume_max for c in line.child_volumes)


@settings(max_examples=200, deadline=None)
@given(independent_scenarios(), st.randoms(use_true_random=False))
def test_independent_methods_ignore_listing_order(scenario, rng) -> None:
    method, _, inputs, volume = scenario
    shuffled = list(inputs)
    rng.shuffle(shuffled)
    kwargs = {"method": method, "stop_loss": "99.00", "reference_equity": "100000"}
    assert run(str(volume), inputs, **kwargs) == run(str(volume), shuffled, **kwargs)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 10_000), min_size=1, max_size=30), st.integers(1, 3000))
def test_percentage_preserves_the_total(weights, units) -> None:
    total = sum(weights)
    # Percentages that sum to exactly 100 (the last takes the rounding).
    percentages = [D(w * 100) / total for w in weights]
    percentages = [p.quantize(D("0.0001")) for p in percentages[:-1]]
    percentages.append(D(100) - sum(percentages, D(0)))
    if percentages[-1] <= 0:
        return
    inputs = [member(f"acc_{i:03d}", 1, percentage=p) for i, p in enumerate(percentages)]
    volume = str((D("0.01") * units).quantize(D("0.01")))
    allocation = run(volume, inputs, method=M.PERCENTAGE)
    assert allocation.allocated_volume == D(volume)


@settings(max_examples=200, deadline=None)
@given(st.lists(equity, min_size=2, max_size=20), st.integers(1, 2000), st.data())
def test_mixed_contract_sizes_keep_exposure_on_steps(equities, units, data) -> None:
    specs = [data.draw(st.sampled_from([EURUSD, EURUSD_MINI])) for _ in equities]
    pairs = enumerate(zip(equities, specs, strict=True))
    inputs = [member(f"acc_{i:03d}", e, spec=s) for i, (e, s) in pairs]
    volume = (D("0.01") * units).quantize(D("0.01"))
    allocation = run(str(volume), inputs)
    exposure = sum(
        (line.volume * line.contract_size for line in allocation.lines if line.contract_size),
        D(0),
    )
    assert exposure <= volume * EURUSD.contract_size
    if EURUSD_MINI not in specs:
        assert exposure == volume * EURUSD.contract_size  # one spec: the split is exact
    for m, line in zip(inputs, allocation.lines, strict=True):
        assert line.volume % m.spec.volume_step == 0
        assert line.volume == 0 or line.volume >= m.spec.volume_min
