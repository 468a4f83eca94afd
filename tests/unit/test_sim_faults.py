"""A simulated terminal's faults and latency: every retcode path, reproducible from its seed."""

from __future__ import annotations

import asyncio
import statistics
from collections import Counter

import pytest

from gateway.domain import retcodes
from gateway.domain.orders import FillingPolicy, Side
from gateway.terminals.protocol import TerminalError
from gateway.terminals.sim import (
    Fault,
    FaultSettings,
    LatencyDistribution,
    LatencySettings,
    SimBroker,
    SimTerminal,
)
from gateway.terminals.sim.faults import FaultInjector
from gateway.terminals.sim.latency import LatencyModel
from tests.unit.sim_helpers import EURUSD, HEDGING, D, deal, make_broker


def terminal(sim: SimBroker | None = None, **options: object) -> SimTerminal:
    return SimTerminal("acc_1", HEDGING, sim or make_broker(), **options)  # type: ignore[arg-type]


async def executed(term: SimTerminal, tag: str = "mam:T") -> int:
    """How many deals the broker holds under the tag: what reconciliation would find."""
    term.reconnect()
    return len((await term.find_by_tag(tag)).deals)


# -- each fault ---------------------------------------------------------------------------


async def test_a_requote_carries_the_new_prices_and_executes_nothing() -> None:
    sim = make_broker()
    term = terminal(sim)
    term.faults.fail_next(Fault.REQUOTE)
    result = await term.send(deal(Side.BUY, "0.10"))
    bid, ask, _ = sim.feed.bid_ask("EURUSD")
    assert (result.retcode, result.bid, result.ask) == (retcodes.REQUOTE, bid, ask)
    assert await executed(term) == 0


@pytest.mark.parametrize(
    ("fault", "retcode"),
    [(Fault.PRICE_OFF, retcodes.PRICE_OFF), (Fault.TOO_MANY_REQUESTS, retcodes.TOO_MANY_REQUESTS)],
)
async def test_refusals_before_execution(fault: Fault, retcode: int) -> None:
    term = terminal()
    term.faults.fail_next(fault)
    assert (await term.send(deal(Side.BUY, "0.10"))).retcode == retcode
    assert await executed(term) == 0
    # The fault was for one request only.
    assert (await term.send(deal(Side.BUY, "0.10"))).retcode == retcodes.DONE


async def test_a_partial_fill_is_a_step_rounded_part_under_ioc() -> None:
    term = terminal()
    term.faults.fail_next(Fault.PARTIAL_FILL)
    result = await term.send(deal(Side.BUY, "1.00", filling=FillingPolicy.IOC))
    assert result.retcode == retcodes.DONE_PARTIAL
    assert D("0.10") <= result.volume <= D("0.90")
    assert result.volume % EURUSD.volume_step == 0
    assert [p.volume for p in await term.positions()] == [result.volume]
    assert await term.pending_orders() == []


async def test_a_partial_fill_leaves_the_rest_working_under_return() -> None:
    term = terminal()
    term.faults.fail_next(Fault.PARTIAL_FILL)
    result = await term.send(deal(Side.BUY, "1.00", filling=FillingPolicy.RETURN))
    assert result.retcode == retcodes.DONE_PARTIAL
    [rest] = await term.pending_orders()
    assert rest.volume + result.volume == D("1.00")


async def test_fill_or_kill_never_fills_partially() -> None:
    term = terminal()
    term.faults.fail_next(Fault.PARTIAL_FILL)
    result = await term.send(deal(Side.BUY, "1.00", filling=FillingPolicy.FOK))
    assert (result.retcode, result.volume) == (retcodes.REJECT, 0)
    assert await executed(term) == 0


async def test_the_smallest_volume_cannot_be_split() -> None:
    term = terminal()
    term.faults.fail_next(Fault.PARTIAL_FILL)
    result = await term.send(deal(Side.BUY, "0.01", filling=FillingPolicy.IOC))
    assert (result.retcode, result.volume) == (retcodes.DONE, D("0.01"))


async def test_a_disconnect_before_sending_executes_nothing() -> None:
    term = terminal()
    term.faults.fail_next(Fault.DISCONNECT_BEFORE)
    with pytest.raises(TerminalError, match="before sending"):
        await term.send(deal(Side.BUY, "0.10"))
    assert await executed(term) == 0


async def test_a_disconnect_after_execution_leaves_the_deal_at_the_broker() -> None:
    term = terminal()
    term.faults.fail_next(Fault.DISCONNECT_AFTER)
    with pytest.raises(TerminalError, match="awaiting the answer"):
        await term.send(deal(Side.BUY, "0.10"))
    assert await executed(term) == 1


@pytest.mark.parametrize(("fault", "deals"), [(Fault.HANG_BEFORE, 0), (Fault.HANG_AFTER, 1)])
async def test_a_hanging_call_outlasts_the_caller_timeout(fault: Fault, deals: int) -> None:
    term = terminal()
    term.faults.fail_next(fault)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await term.send(deal(Side.BUY, "0.10"))
    assert await executed(term) == deals


async def test_a_hang_probability_honours_the_executes_flag() -> None:
    settings = FaultSettings(hang=1.0, hang_executes=True)
    assert FaultInjector(settings, seed="x").draw() is Fault.HANG_AFTER
    assert FaultInjector(FaultSettings(hang=1.0), seed="x").draw() is Fault.HANG_BEFORE


async def test_disconnect_fails_every_call_until_reconnect() -> None:
    term = terminal()
    term.disconnect("cable pulled")
    assert not (await term.health()).connected
    with pytest.raises(TerminalError, match="cable pulled"):
        await term.send(deal(Side.BUY, "0.10"))
    with pytest.raises(TerminalError):
        await term.find_by_tag("mam:T")
    with pytest.raises(TerminalError):
        await term.quote("EURUSD")
    term.reconnect()
    assert (await term.health()).connected
    assert (await term.send(deal(Side.BUY, "0.10"))).retcode == retcodes.DONE


async def test_faults_set_at_runtime_apply_to_the_next_requests() -> None:
    term = terminal()
    term.faults.settings = FaultSettings(too_many_requests=1.0)
    assert (await term.send(deal(Side.BUY, "0.10"))).retcode == retcodes.TOO_MANY_REQUESTS
    term.faults.settings = FaultSettings()
    assert (await term.send(deal(Side.BUY, "0.10"))).retcode == retcodes.DONE


# -- probabilities --------------------------------------------------------------------------

MIXED = FaultSettings(
    requote=0.1, price_off=0.05, too_many_requests=0.05, partial_fill=0.1, disconnect_after=0.02
)


def draws(seed: str, count: int = 10_000) -> list[Fault | None]:
    injector = FaultInjector(MIXED, seed=seed)
    return [injector.draw() for _ in range(count)]


def test_faults_are_a_function_of_the_seed() -> None:
    assert draws("7:50001") == draws("7:50001")
    assert draws("7:50001") != draws("7:50002")


def test_fault_frequencies_follow_their_probabilities() -> None:
    counts = Counter(draws("7:50001"))
    for fault, chance in MIXED.chances():
        assert abs(counts[fault] / 10_000 - chance) < 0.015, fault
    assert abs(counts[None] / 10_000 - 0.68) < 0.02


async def test_terminals_of_different_logins_draw_different_faults() -> None:
    sim = make_broker()
    first = SimTerminal("a", 1, sim, faults=MIXED, seed=7)
    replay = SimTerminal("a", 1, sim, faults=MIXED, seed=7)
    other = SimTerminal("b", 2, sim, faults=MIXED, seed=7)
    sequence = [first.faults.draw() for _ in range(200)]
    assert sequence == [replay.faults.draw() for _ in range(200)]
    assert sequence != [other.faults.draw() for _ in range(200)]


def test_fault_probabilities_must_add_up_to_at_most_one() -> None:
    FaultSettings(requote=0.5, price_off=0.5)
    with pytest.raises(ValueError, match="at most 1"):
        FaultSettings(requote=0.6, price_off=0.5)


def test_a_probability_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        FaultSettings(requote=-0.1)


# -- latency --------------------------------------------------------------------------------


def samples(settings: LatencySettings, seed: str = "1:1", count: int = 5_000) -> list[float]:
    model = LatencyModel(settings, seed=seed)
    return [model.sample_ms() for _ in range(count)]


def test_fixed_latency_is_always_the_same() -> None:
    assert set(samples(LatencySettings(ms=20), count=100)) == {20.0}


def test_normal_latency_has_its_mean_as_median_and_is_never_negative() -> None:
    values = samples(LatencySettings(LatencyDistribution.NORMAL, ms=60, sd_ms=15))
    assert abs(statistics.median(values) - 60) < 2
    assert 13 < statistics.stdev(values) < 17
    wide = samples(LatencySettings(LatencyDistribution.NORMAL, ms=5, sd_ms=20))
    assert min(wide) == 0.0 and all(v >= 0 for v in wide)


def test_lognormal_latency_has_its_median_and_a_long_tail() -> None:
    values = sorted(samples(LatencySettings(LatencyDistribution.LOGNORMAL, ms=80, sigma=0.5)))
    assert abs(statistics.median(values) - 80) < 4
    p99 = values[int(len(values) * 0.99)]
    # exp(2.326 x 0.5) = 3.2: the 99th percentile is about 3.2 x the median.
    assert 2.8 < p99 / 80 < 3.6
    assert values[0] > 0


def test_latency_draws_are_a_function_of_the_seed() -> None:
    settings = LatencySettings(LatencyDistribution.LOGNORMAL, ms=80, sigma=0.5)
    assert samples(settings, "7:1", 50) == samples(settings, "7:1", 50)
    assert samples(settings, "7:1", 50) != samples(settings, "7:2", 50)


def test_a_terminal_keeps_latency_ms_as_a_fixed_delay() -> None:
    term = terminal(latency_ms=25)
    assert term.latency.settings == LatencySettings(ms=25.0)
    assert term.latency.sample_ms() == 25.0


async def test_a_terminal_waits_its_sampled_latency(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", recording_sleep)
    settings = LatencySettings(LatencyDistribution.NORMAL, ms=60, sd_ms=15)
    term = terminal(latency=settings, seed=7)
    for _ in range(5):
        await term.send(deal(Side.BUY, "0.01"))
    expected = LatencyModel(settings, seed=f"7:{HEDGING}:latency")
    assert slept == [expected.sample_ms() / 1000 for _ in range(5)]
    assert len(set(slept)) == 5
