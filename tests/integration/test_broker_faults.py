"""The engine against a misbehaving broker: partial fills, lost answers, hangs, refusals.

Faults are forced on chosen terminals of the simulated broker (`faults.fail_next`). Each test
proves what the brokers hold afterwards, not only what the gateway says: nothing doubled,
nothing lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from gateway._proto.mam.v1 import common_pb2, order_pb2, trading_service_pb2
from gateway.api.server import RunningGateway, start_gateway
from gateway.terminals.sim import SimTerminal
from gateway.terminals.sim.faults import Fault
from tests.conftest import Client, client_of
from tests.integration.helpers import create_accounts, create_group, market_order, open_volume
from tests.support import make_config


@pytest.fixture
async def gateway(tmp_path: Path, database_url: str) -> AsyncIterator[RunningGateway]:
    """Requests time out after 0.5 s, so a hanging broker costs a test little."""
    config = make_config(tmp_path, database_url=database_url)
    config = dataclasses.replace(
        config,
        engine=dataclasses.replace(
            config.engine, request_timeout_seconds=0.5, unknown_retry_seconds=0.2
        ),
    )
    running = await start_gateway(config)
    try:
        yield running
    finally:
        await running.stop(0.5)


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[Client]:
    async with client_of(gateway) as connected:
        yield connected


def terminal_of(gateway: RunningGateway, account_id: str) -> SimTerminal:
    terminal = gateway.registry.get(account_id)
    assert isinstance(terminal, SimTerminal)
    return terminal


async def run(client: Client, gateway: RunningGateway, group_id: str, volume: str, **fields):
    response = await client.trading.SubmitMasterOrder(market_order(group_id, volume, **fields))
    await gateway.engine.wait_idle()
    got = await client.trading.GetMasterOrder(
        trading_service_pb2.GetMasterOrderRequest(
            master_order_id=response.master_order.master_order_id
        )
    )
    fills = await gateway.store.fills_of(response.master_order.master_order_id)
    return got.master_order, fills


@pytest.mark.parametrize(
    "filling", [common_pb2.FILLING_POLICY_IOC, common_pb2.FILLING_POLICY_RETURN]
)
async def test_a_partial_fill_is_stored_and_the_rest_sent_again(
    client: Client, gateway: RunningGateway, filling: int
) -> None:
    accounts = await create_accounts(client.accounts, ["10000", "10000"])
    group = await create_group(client.accounts, accounts)
    partial = terminal_of(gateway, accounts[0].account_id)
    partial.faults.fail_next(Fault.PARTIAL_FILL)
    master, fills = await run(client, gateway, group.group_id, "2.00", filling_policy=filling)

    assert master.state == order_pb2.MASTER_ORDER_STATE_FILLED
    (child,) = [c for c in master.children if c.account_id == accounts[0].account_id]
    assert child.state == order_pb2.CHILD_ORDER_STATE_FILLED
    mine = [f for f in fills if f.child_order_id == child.child_order_id]
    assert len(mine) == 2 and mine[0].volume < Decimal("1.00")
    assert sum(f.volume for f in mine) == Decimal(child.filled_volume) == Decimal("1.00")
    assert len({f.deal_ticket for f in mine}) == 2
    # The broker holds exactly the child's volume, and no remainder rests there.
    assert await open_volume(gateway, [accounts[0].account_id]) == Decimal("1.00")
    assert await partial.pending_orders() == []
    average = sum(f.volume * f.price for f in mine) / Decimal("1.00")
    assert Decimal(child.fill_price) == average.quantize(Decimal("1E-8"))


async def test_a_partial_fill_whose_rest_keeps_failing_ends_partially_filled(
    client: Client, gateway: RunningGateway
) -> None:
    accounts = await create_accounts(client.accounts, ["10000"])
    group = await create_group(client.accounts, accounts)
    terminal = terminal_of(gateway, accounts[0].account_id)
    terminal.faults.fail_next(Fault.PARTIAL_FILL, *[Fault.PRICE_OFF] * 5)
    master, fills = await run(
        client, gateway, group.group_id, "1.00", filling_policy=common_pb2.FILLING_POLICY_IOC
    )
    (child,) = master.children
    assert child.state == order_pb2.CHILD_ORDER_STATE_PARTIALLY_FILLED
    assert master.state == order_pb2.MASTER_ORDER_STATE_PARTIALLY_FILLED
    assert Decimal(child.filled_volume) == fills[0].volume < Decimal("1.00")
    assert "PRICE_OFF" in child.status_text
    assert await open_volume(gateway, [accounts[0].account_id]) == fills[0].volume


async def test_fill_or_kill_never_fills_part(client: Client, gateway: RunningGateway) -> None:
    accounts = await create_accounts(client.accounts, ["10000"])
    group = await create_group(client.accounts, accounts)
    terminal_of(gateway, accounts[0].account_id).faults.fail_next(Fault.PARTIAL_FILL)
    master, fills = await run(client, gateway, group.group_id, "1.00")  # FOK by default
    (child,) = master.children
    assert (child.state, child.retcode) == (order_pb2.CHILD_ORDER_STATE_REJECTED, 10006)
    assert fills == []
    assert await open_volume(gateway, [accounts[0].account_id]) == 0


@pytest.mark.parametrize(
    ("fault", "executed"),
    [
        (Fault.DISCONNECT_AFTER, True),
        (Fault.HANG_AFTER, True),
        (Fault.DISCONNECT_BEFORE, False),
        (Fault.HANG_BEFORE, False),
    ],
)
async def test_a_lost_answer_is_settled_by_tag_and_never_doubles_the_order(
    client: Client, gateway: RunningGateway, fault: Fault, executed: bool
) -> None:
    accounts = await create_accounts(client.accounts, ["10000", "20000", "30000"])
    group = await create_group(client.accounts, accounts)
    lost = terminal_of(gateway, accounts[1].account_id)
    lost.faults.fail_next(fault)
    master, fills = await run(client, gateway, group.group_id, "0.60")

    assert master.state == order_pb2.MASTER_ORDER_STATE_FILLED
    (child,) = [c for c in master.children if c.account_id == accounts[1].account_id]
    assert child.state == order_pb2.CHILD_ORDER_STATE_FILLED
    # Executed before the answer was lost: found by tag, not sent again (one request).
    # Not executed: provably absent, so sent once more (two requests).
    assert child.status_text.startswith("found by tag") is executed
    assert lost.requests_sent == (1 if executed else 2)
    assert len([f for f in fills if f.child_order_id == child.child_order_id]) == 1
    assert await open_volume(gateway, [accounts[1].account_id]) == Decimal("0.20")
    assert await open_volume(gateway, [a.account_id for a in accounts]) == Decimal("0.60")


async def test_a_hanging_terminal_does_not_hold_back_the_others(
    client: Client, gateway: RunningGateway
) -> None:
    accounts = await create_accounts(client.accounts, [str(10_000 + i) for i in range(12)])
    group = await create_group(client.accounts, accounts)
    terminal_of(gateway, accounts[5].account_id).faults.fail_next(Fault.HANG_BEFORE)
    master, fills = await run(client, gateway, group.group_id, "1.20")
    assert master.state == order_pb2.MASTER_ORDER_STATE_FILLED
    # Every other account's fill was committed before the hung one's retry filled.
    assert fills[-1].account_id == accounts[5].account_id
    assert [f.sequence for f in fills] == sorted(f.sequence for f in fills)


@pytest.mark.parametrize("fault", [Fault.REQUOTE, Fault.PRICE_OFF, Fault.TOO_MANY_REQUESTS])
async def test_transient_refusals_are_retried_with_a_fresh_price(
    client: Client, gateway: RunningGateway, fault: Fault
) -> None:
    accounts = await create_accounts(client.accounts, ["10000"])
    group = await create_group(client.accounts, accounts)
    terminal = terminal_of(gateway, accounts[0].account_id)
    terminal.faults.fail_next(fault, fault)
    master, fills = await run(client, gateway, group.group_id, "0.10")
    (child,) = master.children
    assert child.state == order_pb2.CHILD_ORDER_STATE_FILLED and child.attempts == 3
    assert terminal.requests_sent == 3 and len(fills) == 1


async def test_refusals_beyond_the_attempts_reject_the_child_with_the_last_retcode(
    client: Client, gateway: RunningGateway
) -> None:
    accounts = await create_accounts(client.accounts, ["10000"])
    group = await create_group(client.accounts, accounts)
    terminal_of(gateway, accounts[0].account_id).faults.fail_next(*[Fault.REQUOTE] * 10)
    master, fills = await run(client, gateway, group.group_id, "0.10")
    (child,) = master.children
    assert (child.state, child.retcode) == (order_pb2.CHILD_ORDER_STATE_REJECTED, 10004)
    assert child.attempts == gateway.config.engine.max_attempts
    assert master.state == order_pb2.MASTER_ORDER_STATE_REJECTED and fills == []


@pytest.mark.parametrize(("moved_points", "filled"), [(5, True), (50, False)])
async def test_a_requote_is_retried_only_within_the_deviation_of_the_first_price(
    client: Client, gateway: RunningGateway, moved_points: int, filled: bool
) -> None:
    accounts = await create_accounts(client.accounts, ["10000"])
    group = await create_group(client.accounts, accounts)
    terminal = terminal_of(gateway, accounts[0].account_id)
    terminal.faults.fail_next(Fault.REQUOTE)
    send = terminal.send

    async def send_and_move(request):  # type: ignore[no-untyped-def]
        result = await send(request)
        # The market runs away while the requote is answered.
        gateway.broker.feed.move("EURUSD", moved_points)
        return result

    terminal.send = send_and_move  # type: ignore[method-assign]
    master, fills = await run(client, gateway, group.group_id, "0.10", max_deviation_points=20)
    [child] = master.children
    if filled:
        assert child.state == order_pb2.CHILD_ORDER_STATE_FILLED and len(fills) == 1
        assert child.attempts == 2
    else:
        assert child.state == order_pb2.CHILD_ORDER_STATE_REJECTED and fills == []
        assert "beyond the maximum deviation of 20" in child.status_text
        assert child.attempts == 1  # nothing sent at the runaway price
        assert await open_volume(gateway, [accounts[0].account_id]) == 0


async def test_an_unknown_child_is_settled_once_its_terminal_is_back(
    client: Client, gateway: RunningGateway
) -> None:
    accounts = await create_accounts(client.accounts, ["10000", "10000"])
    group = await create_group(client.accounts, accounts)
    lost = terminal_of(gateway, accounts[0].account_id)
    lost.faults.fail_next(Fault.DISCONNECT_AFTER)
    send = lost.send

    async def send_then_stay_away(request):  # type: ignore[no-untyped-def]
        try:
            return await send(request)
        except Exception:
            lost.disconnect("the terminal's host went away")
            raise

    lost.send = send_then_stay_away  # type: ignore[method-assign]
    response = await client.trading.SubmitMasterOrder(market_order(group.group_id, "0.20"))
    master_order_id = response.master_order.master_order_id
    await gateway.engine.wait_idle()
    got = await client.trading.GetMasterOrder(
        trading_service_pb2.GetMasterOrderRequest(master_order_id=master_order_id)
    )
    states = {c.account_id: c.state for c in got.master_order.children}
    assert states[accounts[0].account_id] == order_pb2.CHILD_ORDER_STATE_UNKNOWN
    # The host comes back: the child is found by its tag (it executed), never sent again.
    lost.reconnect()
    async with asyncio.timeout(20):
        while True:
            got = await client.trading.GetMasterOrder(
                trading_service_pb2.GetMasterOrderRequest(master_order_id=master_order_id)
            )
            if got.master_order.state == order_pb2.MASTER_ORDER_STATE_FILLED:
                break
            await asyncio.sleep(0.1)
    assert await open_volume(gateway, [accounts[0].account_id]) == Decimal("0.10")
    fills = await gateway.store.fills_of(master_order_id)
    assert len(fills) == 2 and len({f.deal_ticket for f in fills}) == 2
