"""The dispatcher's one attempt loop against a scripted terminal: market deals and pending
placements are tried again as the OrderRetryPolicy says (waits that grow, each drawn with its
jitter; a bounded number of attempts; a deal's band around its first price, the master order's
own deviation overriding the policy's)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

from gateway.domain import retcodes
from gateway.domain.fills import Fill
from gateway.domain.orders import (
    ChildOrder,
    ChildOrderState,
    MasterOrder,
    MasterOrderSpec,
    MasterOrderState,
    OrderType,
    Side,
    TimeInForce,
)
from gateway.domain.retry_policy import OrderRetryPolicy
from gateway.engine.dispatcher import Dispatcher, DispatchSettings
from gateway.terminals.protocol import (
    OrderRequest,
    OrderResult,
    TaggedRecords,
    TerminalError,
    TradeAction,
)

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
POINT = Decimal("0.00001")
FIRST_PRICE = Decimal("1.10000")
# Short waits, so that a test of four attempts takes tens of milliseconds.
QUICK = OrderRetryPolicy(initial_interval_s=0.01, maximum_attempts=4, jitter=0.2)


class ScriptedTerminal:
    """Answers each request with the next scripted answer (an exception is raised), and
    remembers when each request arrived."""

    def __init__(self, *answers: OrderResult | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[OrderRequest] = []
        self.arrived_at: list[float] = []
        self.found = TaggedRecords()

    async def send(self, request: OrderRequest) -> OrderResult:
        self.requests.append(request)
        self.arrived_at.append(asyncio.get_running_loop().time())
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def find_by_tag(self, tag: str) -> TaggedRecords:
        return self.found


class OneTerminal:
    """A registry with one terminal for every account."""

    def __init__(self, terminal: ScriptedTerminal) -> None:
        self.terminal = terminal
        self._lock = asyncio.Lock()

    def get(self, account_id: str) -> ScriptedTerminal:
        return self.terminal

    def lock(self, account_id: str) -> asyncio.Lock:
        return self._lock


class Recorded:
    def __init__(self) -> None:
        self.outcomes: list[tuple[ChildOrder, Fill | None]] = []

    async def record(self, child: ChildOrder, fill: Fill | None = None) -> None:
        self.outcomes.append((child, fill))


class CountedDraws:
    """The jitter's draw, pinned to the middle of its range (no spread), and counted."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> float:
        self.count += 1
        return 0.5


def refused(retcode: int) -> OrderResult:
    return OrderResult(retcode, retcodes.name_of(retcode), request_price=FIRST_PRICE)


def dealt(volume: str = "0.10") -> OrderResult:
    return OrderResult(
        retcodes.DONE,
        "done",
        order_ticket=11,
        deal_ticket=12,
        position_ticket=13,
        volume=Decimal(volume),
        price=FIRST_PRICE,
        executed_at=NOW,
        request_price=FIRST_PRICE,
    )


def master_order(**spec: object) -> MasterOrder:
    fields: dict[str, object] = {
        "group_id": "g",
        "symbol": "EURUSD",
        "side": Side.BUY,
        "order_type": OrderType.MARKET,
        "volume": Decimal("0.10"),
        **spec,
    }
    return MasterOrder(
        master_order_id="mo1",
        spec=MasterOrderSpec(**fields),  # type: ignore[arg-type]
        state=MasterOrderState.DISPATCHING,
        magic=7,
        # Only the snapshot time is read (kill switches stop what was planned before them).
        allocation=SimpleNamespace(snapshot_time=NOW),  # type: ignore[arg-type]
        created_at=NOW,
        updated_at=NOW,
    )


def child_of(master: MasterOrder) -> ChildOrder:
    return ChildOrder(
        child_order_id="co1",
        master_order_id=master.master_order_id,
        account_id="a1",
        symbol="EURUSD",
        side=Side.BUY,
        volume=Decimal("0.10"),
        state=ChildOrderState.SENT,
        tag="t-co1",
        magic=master.magic,
        created_at=NOW,
        updated_at=NOW,
    )


async def dispatch(
    terminal: ScriptedTerminal,
    master: MasterOrder,
    *,
    policy: OrderRetryPolicy = QUICK,
    uniform: Callable[[], float] = lambda: 0.5,
) -> ChildOrder:
    """The child's outcome as recorded last."""
    recorder = Recorded()
    dispatcher = Dispatcher(
        OneTerminal(terminal),  # type: ignore[arg-type]
        recorder,  # type: ignore[arg-type]
        DispatchSettings(request_timeout_s=5.0, retry=policy),
        lambda: NOW,
        uniform=uniform,
    )
    await dispatcher.dispatch(master, [child_of(master)], points={"a1": POINT})
    return recorder.outcomes[-1][0]


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


async def test_transient_refusals_wait_longer_each_time_each_wait_drawn_with_its_jitter() -> None:
    terminal = ScriptedTerminal(*[refused(retcodes.REQUOTE)] * 3, dealt())
    draws = CountedDraws()
    child = await dispatch(terminal, master_order(), uniform=draws)

    assert (child.state, child.attempts) == (ChildOrderState.FILLED, 4)
    assert draws.count == 3  # one draw per wait
    # The waits double (10, 20, 40 ms at the middle of the jitter), not grow by a step: a
    # lower bound only (a wait never ends early; how much later it ends is not asserted).
    waited = gaps(terminal.arrived_at)
    assert all(gap >= wait - 0.001 for gap, wait in zip(waited, [0.01, 0.02, 0.04], strict=True))


async def test_a_deal_retry_stays_within_the_policys_band_of_the_first_price() -> None:
    terminal = ScriptedTerminal(refused(retcodes.REQUOTE), dealt())
    policy = OrderRetryPolicy(initial_interval_s=0.01, default_deviation_points=7)
    await dispatch(terminal, master_order(), policy=policy)

    first, retry = terminal.requests
    assert (first.lowest_price, first.highest_price) == (None, None)
    assert (retry.lowest_price, retry.highest_price) == (
        FIRST_PRICE - 7 * POINT,
        FIRST_PRICE + 7 * POINT,
    )
    assert retry.deviation_points == 7


async def test_the_master_orders_own_deviation_overrides_the_policys() -> None:
    terminal = ScriptedTerminal(refused(retcodes.REQUOTE), dealt())
    policy = OrderRetryPolicy(initial_interval_s=0.01, default_deviation_points=7)
    await dispatch(terminal, master_order(max_deviation_points=3), policy=policy)

    retry = terminal.requests[1]
    assert (retry.lowest_price, retry.highest_price, retry.deviation_points) == (
        FIRST_PRICE - 3 * POINT,
        FIRST_PRICE + 3 * POINT,
        3,
    )


LIMIT = {
    "order_type": OrderType.LIMIT,
    "price": Decimal("1.09000"),
    "time_in_force": TimeInForce.GTC,
}


async def test_a_placement_refused_for_a_passing_reason_is_tried_again_after_a_wait() -> None:
    placed = OrderResult(retcodes.PLACED, "placed", order_ticket=21)
    terminal = ScriptedTerminal(refused(retcodes.TOO_MANY_REQUESTS), placed)
    draws = CountedDraws()
    child = await dispatch(terminal, master_order(**LIMIT), uniform=draws)

    assert (child.state, child.attempts, child.broker_order_ticket) == (
        ChildOrderState.PLACED,
        2,
        21,
    )
    assert [r.action for r in terminal.requests] == [TradeAction.PENDING] * 2
    assert draws.count == 1
    assert gaps(terminal.arrived_at)[0] >= 0.01 - 0.001


async def test_a_placement_still_refused_after_its_last_attempt_is_rejected() -> None:
    terminal = ScriptedTerminal(*[refused(retcodes.TOO_MANY_REQUESTS)] * 10)
    child = await dispatch(terminal, master_order(**LIMIT))

    assert (child.state, child.attempts, child.retcode) == (
        ChildOrderState.REJECTED,
        QUICK.maximum_attempts,
        retcodes.TOO_MANY_REQUESTS,
    )
    assert len(terminal.requests) == QUICK.maximum_attempts


async def test_a_placement_lost_on_the_way_and_provably_absent_is_placed_again() -> None:
    placed = OrderResult(retcodes.PLACED, "placed", order_ticket=21)
    terminal = ScriptedTerminal(TerminalError("connection lost"), placed)
    child = await dispatch(terminal, master_order(**LIMIT))

    assert (child.state, child.attempts) == (ChildOrderState.PLACED, 2)
    assert len(terminal.requests) == 2
