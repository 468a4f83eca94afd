"""Risk on a running gateway: pre-trade limits set through the API clip or skip child orders
(shown in the preview and the stored allocation, never sent), loss limits watched at each
account history round stop accounts and groups out until ResetStopOut, and a restart keeps
them. Every test runs on SQLite and PostgreSQL (the `database_url` fixture)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2

from gateway._proto.mam.v1 import (
    account_pb2,
    account_service_pb2,
    order_pb2,
    reporting_service_pb2,
    reporting_service_pb2_grpc,
    trading_service_pb2,
)
from gateway.api.server import RunningGateway, start_gateway
from gateway.domain.allocation import AllocationReason
from gateway.domain.pre_trade_risk import RiskAction, RiskRule
from tests.conftest import Client, client_of
from tests.integration.helpers import create_accounts, create_group, market_order, open_volume
from tests.support import error_details, make_config

FILLED = order_pb2.CHILD_ORDER_STATE_FILLED


def group_update(group_id: str, *paths: str, **fields: object) -> object:
    return account_service_pb2.UpdateGroupRequest(
        group=account_pb2.Group(group_id=group_id, **fields),  # type: ignore[arg-type]
        update_mask=field_mask_pb2.FieldMask(paths=list(paths)),
    )


def loss_limits_update(account_id: str, limits: account_pb2.LossLimits) -> object:
    return account_service_pb2.UpdateAccountRequest(
        account=account_pb2.Account(account_id=account_id, loss_limits=limits),
        update_mask=field_mask_pb2.FieldMask(paths=["loss_limits"]),
    )


def money_limit(amount: str, action: int) -> account_pb2.LossLimit:
    return account_pb2.LossLimit(amount=amount, unit=account_pb2.LOSS_UNIT_MONEY, action=action)


async def refused(call: object) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call  # type: ignore[misc]
    details = error_details(error.value)
    return details.code, details.reason, details.field_violations


async def submit(client: Client, gateway: RunningGateway, group_id: str, volume: str) -> str:
    submitted = await client.trading.SubmitMasterOrder(market_order(group_id, volume))
    await gateway.engine.wait_idle()
    return submitted.master_order.master_order_id


async def children(client: Client, master_order_id: str) -> dict[str, order_pb2.ChildOrder]:
    got = await client.trading.GetMasterOrder(
        trading_service_pb2.GetMasterOrderRequest(master_order_id=master_order_id)
    )
    return {c.account_id: c for c in got.master_order.children}


async def test_a_child_above_its_limit_is_clipped_and_a_denied_one_skipped_never_sent(
    client: Client, gateway: RunningGateway
) -> None:
    a, b = await create_accounts(client.accounts, ["10000", "10000"])
    created = await client.accounts.CreateGroup(
        account_service_pb2.CreateGroupRequest(
            group=account_pb2.Group(
                name="limited",
                members=[
                    account_pb2.GroupMember(account_id=a.account_id),
                    # b's own limits replace the group's.
                    account_pb2.GroupMember(
                        account_id=b.account_id,
                        risk_limits=account_pb2.RiskLimits(denied_symbols=["EURUSD"]),
                    ),
                ],
                risk_limits=account_pb2.RiskLimits(max_order_volume="0.30"),
                violation_policy=account_pb2.VIOLATION_POLICY_CLIP,
            )
        )
    )
    group = created.group
    got = (
        await client.accounts.GetGroup(account_service_pb2.GetGroupRequest(group_id=group.group_id))
    ).group
    assert got.risk_limits.max_order_volume == "0.30"
    assert got.violation_policy == account_pb2.VIOLATION_POLICY_CLIP
    assert list(got.members[1].risk_limits.denied_symbols) == ["EURUSD"]
    assert not got.members[0].HasField("risk_limits")

    order = market_order(group.group_id, "1.00").order
    preview = await client.trading.PreviewAllocation(
        trading_service_pb2.PreviewAllocationRequest(order=order)
    )
    lines = {line.account_id: line for line in preview.allocation.lines}
    assert list(lines[a.account_id].child_volumes) == ["0.30"]
    assert lines[a.account_id].volume == "0.30"
    assert list(lines[b.account_id].child_volumes) == []
    assert preview.allocation.allocated_volume == "0.30"

    master_order_id = await submit(client, gateway, group.group_id, "1.00")
    sent = await children(client, master_order_id)
    assert set(sent) == {a.account_id}
    assert sent[a.account_id].state == FILLED and sent[a.account_id].volume == "0.30"
    assert await open_volume(gateway, [a.account_id]) == Decimal("0.30")
    assert await open_volume(gateway, [b.account_id]) == 0
    # The stored allocation says why, rule by rule.
    stored = await gateway.store.get_master_order(master_order_id)
    assert stored is not None
    by_account = {line.account_id: line for line in stored.allocation.lines}
    clipped = by_account[a.account_id]
    assert AllocationReason.RISK_CLIPPED in clipped.reasons
    (decision,) = clipped.risk_checks
    assert (decision.action, decision.requested_volume, decision.volume) == (
        RiskAction.CLIP,
        Decimal("0.50"),
        Decimal("0.30"),
    )
    assert decision.rules == (RiskRule.MAX_ORDER_VOLUME,)
    assert decision.violations[0].limit == Decimal("0.30")
    skipped = by_account[b.account_id]
    assert AllocationReason.RISK_SKIPPED in skipped.reasons
    assert skipped.child_volumes == ()
    assert skipped.risk_checks[0].rules == (RiskRule.SYMBOL_DENIED,)
    assert "EURUSD is denied" in skipped.risk_checks[0].violations[0].message


async def test_positions_count_margin_level_and_trading_hours(
    client: Client, gateway: RunningGateway
) -> None:
    a, b = await create_accounts(client.accounts, ["10000", "10000"])
    group = await create_group(client.accounts, [a, b])
    # One position per account: the first order opens it, the second would open another.
    await client.accounts.UpdateGroup(
        group_update(
            group.group_id, "risk_limits", risk_limits=account_pb2.RiskLimits(max_open_positions=1)
        )
    )
    await submit(client, gateway, group.group_id, "0.10")
    code, reason, _ = await refused(
        client.trading.SubmitMasterOrder(market_order(group.group_id, "0.10"))
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NOTHING_ALLOCATED")
    assert await open_volume(gateway, [a.account_id, b.account_id]) == Decimal("0.10")

    # 500% at 1:100 on 10,000: margin up to 2,000, i.e. 1.84 lots of EURUSD at 1.0815-1.0869
    # (the simulated mid starts at 1.0845 and moves a few points a second) on top of the
    # 0.05 lots already open (54 of margin): 1.79 lots more.
    await client.accounts.UpdateGroup(
        group_update(
            group.group_id,
            "risk_limits",
            "violation_policy",
            risk_limits=account_pb2.RiskLimits(min_margin_level="500"),
            violation_policy=account_pb2.VIOLATION_POLICY_CLIP,
        )
    )
    master_order_id = await submit(client, gateway, group.group_id, "6.00")
    sent = await children(client, master_order_id)
    assert {c.volume for c in sent.values()} == {"1.79"}
    stored = await gateway.store.get_master_order(master_order_id)
    assert stored is not None
    decision = stored.allocation.lines[0].risk_checks[0]
    assert decision.action is RiskAction.CLIP
    assert decision.rules == (RiskRule.MIN_MARGIN_LEVEL,)

    # A window that is not now: nothing is sent (no smaller volume helps).
    soon = datetime.now(UTC) + timedelta(hours=2)
    window = account_pb2.TradingWindow(
        start_day=soon.weekday() + 1,  # type: ignore[arg-type]
        start_time=f"{soon.hour:02d}:00",
        end_day=soon.weekday() + 1,  # type: ignore[arg-type]
        end_time=f"{soon.hour:02d}:30",
    )
    await client.accounts.UpdateGroup(
        group_update(
            group.group_id,
            "risk_limits",
            risk_limits=account_pb2.RiskLimits(trading_windows=[window]),
        )
    )
    preview = await client.trading.PreviewAllocation(
        trading_service_pb2.PreviewAllocationRequest(
            order=market_order(group.group_id, "0.10").order
        )
    )
    assert preview.allocation.allocated_volume == "0.00"
    code, reason, _ = await refused(
        client.trading.SubmitMasterOrder(market_order(group.group_id, "0.10"))
    )
    assert reason == "NOTHING_ALLOCATED"


async def test_bad_limits_are_refused_field_by_field_and_nothing_is_stored(
    client: Client,
) -> None:
    (a,) = await create_accounts(client.accounts, ["10000"])
    bad_group = account_pb2.Group(
        name="bad",
        members=[
            account_pb2.GroupMember(
                account_id=a.account_id,
                risk_limits=account_pb2.RiskLimits(max_open_positions=-1),
            )
        ],
        risk_limits=account_pb2.RiskLimits(
            max_order_volume="-1",
            max_symbol_notional="lots",
            allowed_symbols=["EURUSD"],
            denied_symbols=["EURUSD"],
            trading_windows=[
                account_pb2.TradingWindow(
                    start_day=account_pb2.WEEKDAY_MONDAY,
                    start_time="25:00",
                    end_day=account_pb2.WEEKDAY_UNSPECIFIED,
                    end_time="10:00",
                )
            ],
        ),
        loss_limits=account_pb2.LossLimits(
            max_drawdown=account_pb2.LossLimit(amount="150", unit=account_pb2.LOSS_UNIT_PERCENT),
            day_time_zone="Mars/Olympus",
        ),
    )
    code, _, violations = await refused(
        client.accounts.CreateGroup(account_service_pb2.CreateGroupRequest(group=bad_group))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations) == {
        "group.risk_limits.max_order_volume",
        "group.risk_limits.max_symbol_notional",
        "group.risk_limits.denied_symbols",
        "group.risk_limits.trading_windows[0].start_time",
        "group.risk_limits.trading_windows[0].end_day",
        "group.members[0].risk_limits.max_open_positions",
        "group.loss_limits.max_drawdown.amount",
        "group.loss_limits.day_time_zone",
    }
    listed = await client.accounts.ListGroups(account_service_pb2.ListGroupsRequest())
    assert not listed.groups

    code, _, violations = await refused(
        client.accounts.UpdateAccount(
            loss_limits_update(
                a.account_id,
                account_pb2.LossLimits(daily_loss=account_pb2.LossLimit(amount="0")),
            )
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations) == {
        "account.loss_limits.daily_loss.amount",
        "account.loss_limits.daily_loss.unit",
    }
    got = await client.accounts.GetAccount(
        account_service_pb2.GetAccountRequest(account_id=a.account_id)
    )
    assert not got.account.HasField("loss_limits")

    # What UpdateAccount may change, it changes.
    renamed = await client.accounts.UpdateAccount(
        account_service_pb2.UpdateAccountRequest(
            account=account_pb2.Account(
                account_id=a.account_id,
                name="renamed",
                state=account_pb2.ACCOUNT_STATE_DISABLED,
                login=1,
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["name", "state"]),
        )
    )
    assert (renamed.account.name, renamed.account.state, renamed.account.login) == (
        "renamed",
        account_pb2.ACCOUNT_STATE_DISABLED,
        a.login,
    )
    code, _, violations = await refused(
        client.accounts.UpdateAccount(
            account_service_pb2.UpdateAccountRequest(
                account=account_pb2.Account(account_id=a.account_id, login=1),
                update_mask=field_mask_pb2.FieldMask(paths=["login"]),
            )
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "update_mask.paths" in violations


async def test_a_drawdown_blocks_new_entries_until_reset(
    client: Client, gateway: RunningGateway
) -> None:
    a, b = await create_accounts(client.accounts, ["10000", "10000"])
    group = await create_group(client.accounts, [a, b])
    limits = account_pb2.LossLimits(
        max_drawdown=account_pb2.LossLimit(
            amount="5",
            unit=account_pb2.LOSS_UNIT_PERCENT,
            action=account_pb2.STOP_OUT_ACTION_BLOCK_NEW_ENTRIES,
        )
    )
    await client.accounts.UpdateAccount(loss_limits_update(a.account_id, limits))
    await submit(client, gateway, group.group_id, "1.00")
    await gateway.monitor.run_once()  # the watch starts: the high-water mark
    watched = await client.accounts.GetAccount(
        account_service_pb2.GetAccountRequest(account_id=a.account_id)
    )
    assert watched.account.loss_watch.high_water_mark and not watched.account.stop_outs
    # 1,500 points against 0.50 lots: 750 of 10,000, beyond 5%.
    gateway.broker.feed.move("EURUSD", -1500)
    await gateway.monitor.run_once()
    got = await client.accounts.GetAccount(
        account_service_pb2.GetAccountRequest(account_id=a.account_id)
    )
    (stop_out,) = got.account.stop_outs
    assert stop_out.rule == account_pb2.LOSS_RULE_MAX_DRAWDOWN
    assert stop_out.action == account_pb2.STOP_OUT_ACTION_BLOCK_NEW_ENTRIES
    assert stop_out.account_id == a.account_id and stop_out.HasField("time")
    assert Decimal(stop_out.loss_percent) > 5 and not stop_out.HasField("end_time")

    held = await open_volume(gateway, [a.account_id])
    master_order_id = await submit(client, gateway, group.group_id, "1.00")
    assert set(await children(client, master_order_id)) == {b.account_id}
    assert await open_volume(gateway, [a.account_id]) == held
    stored = await gateway.store.get_master_order(master_order_id)
    assert stored is not None
    line = next(x for x in stored.allocation.lines if x.account_id == a.account_id)
    assert line.risk_checks[0].rules == (RiskRule.STOPPED_OUT,)

    lifted = await client.accounts.ResetStopOut(
        account_service_pb2.ResetStopOutRequest(account_id=a.account_id)
    )
    assert [s.stop_out_id for s in lifted.stop_outs] == [stop_out.stop_out_id]
    assert lifted.stop_outs[0].HasField("end_time")
    got = await client.accounts.GetAccount(
        account_service_pb2.GetAccountRequest(account_id=a.account_id)
    )
    assert not got.account.stop_outs
    # The reset rule starts from the latest equity: the next round does not stop it again.
    await gateway.monitor.run_once()
    master_order_id = await submit(client, gateway, group.group_id, "1.00")
    sent = await children(client, master_order_id)
    assert set(sent) == {a.account_id, b.account_id}
    assert {c.state for c in sent.values()} == {FILLED}
    assert await open_volume(gateway, [a.account_id]) == held + Decimal(sent[a.account_id].volume)


async def test_flatten_closes_a_stopped_out_account_and_a_restart_keeps_the_stop_outs(
    tmp_path: Path, database_url: str
) -> None:
    config = make_config(tmp_path, database_url=database_url)
    gateway = await start_gateway(config)
    try:
        async with client_of(gateway) as client:
            a, b = await create_accounts(client.accounts, ["10000", "10000"])
            group = await create_group(client.accounts, [a, b])
            await client.accounts.UpdateAccount(
                loss_limits_update(
                    a.account_id,
                    account_pb2.LossLimits(
                        daily_loss=money_limit("300", account_pb2.STOP_OUT_ACTION_FLATTEN)
                    ),
                )
            )
            await client.accounts.UpdateGroup(
                group_update(
                    group.group_id,
                    "loss_limits",
                    loss_limits=account_pb2.LossLimits(
                        max_drawdown=money_limit(
                            "1000", account_pb2.STOP_OUT_ACTION_BLOCK_NEW_ENTRIES
                        )
                    ),
                )
            )
            await submit(client, gateway, group.group_id, "1.00")
            await gateway.monitor.run_once()
            # 750 lost by each account: a's 300 a day and the group's 1,000 both pass.
            gateway.broker.feed.move("EURUSD", -1500)
            await gateway.monitor.run_once()
            assert gateway.stop_outs is not None
            await gateway.stop_outs.flattened()
            await gateway.engine.wait_idle()
            assert await open_volume(gateway, [a.account_id]) == 0
            assert await open_volume(gateway, [b.account_id]) == Decimal("0.50")
            code, reason, _ = await refused(
                client.trading.SubmitMasterOrder(market_order(group.group_id))
            )
            assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "STOPPED_OUT")
            got = await client.accounts.GetAccount(
                account_service_pb2.GetAccountRequest(account_id=a.account_id)
            )
            (flattened,) = got.account.stop_outs
            assert flattened.action == account_pb2.STOP_OUT_ACTION_FLATTEN
            assert len(flattened.closing_master_order_ids) == 1
    finally:
        await gateway.stop(0.5)

    gateway = await start_gateway(config)
    try:
        async with client_of(gateway) as client:
            got = await client.accounts.GetAccount(
                account_service_pb2.GetAccountRequest(account_id=a.account_id)
            )
            assert [s.stop_out_id for s in got.account.stop_outs] == [flattened.stop_out_id]
            assert list(got.account.stop_outs[0].closing_master_order_ids) == list(
                flattened.closing_master_order_ids
            )
            grouped = await client.accounts.GetGroup(
                account_service_pb2.GetGroupRequest(group_id=group.group_id)
            )
            (group_stop,) = grouped.group.stop_outs
            assert group_stop.group_id == group.group_id
            code, reason, _ = await refused(
                client.trading.SubmitMasterOrder(market_order(group.group_id))
            )
            assert reason == "STOPPED_OUT"
            history = await client.accounts.ListStopOuts(account_service_pb2.ListStopOutsRequest())
            assert {s.stop_out_id for s in history.stop_outs} == {
                flattened.stop_out_id,
                group_stop.stop_out_id,
            }
            # The group's stop-out lifted, a (CLOSE_ONLY after its flatten) still gets nothing.
            await client.accounts.ResetStopOut(
                account_service_pb2.ResetStopOutRequest(group_id=group.group_id)
            )
            master_order_id = await submit(client, gateway, group.group_id, "1.00")
            assert set(await children(client, master_order_id)) == {b.account_id}
            await client.accounts.ResetStopOut(
                account_service_pb2.ResetStopOutRequest(
                    account_id=a.account_id, rules=[account_pb2.LOSS_RULE_DAILY_LOSS]
                )
            )
            master_order_id = await submit(client, gateway, group.group_id, "1.00")
            assert set(await children(client, master_order_id)) == {a.account_id, b.account_id}
            active = await client.accounts.ListStopOuts(
                account_service_pb2.ListStopOutsRequest(active_only=True)
            )
            assert not active.stop_outs
    finally:
        await gateway.stop(0.5)


async def test_a_withdrawal_is_not_a_drawdown(client: Client, gateway: RunningGateway) -> None:
    (a,) = await create_accounts(client.accounts, ["10000"], first_login=71_501)
    limits = account_pb2.LossLimits(
        max_drawdown=account_pb2.LossLimit(
            amount="5",
            unit=account_pb2.LOSS_UNIT_PERCENT,
            action=account_pb2.STOP_OUT_ACTION_BLOCK_NEW_ENTRIES,
        )
    )
    await client.accounts.UpdateAccount(loss_limits_update(a.account_id, limits))
    await gateway.monitor.run_once()  # the watch starts at 10,000
    # The client takes 3,000 out at its broker (30% of the equity), and it is recorded.
    gateway.broker.transfer(71_501, Decimal(-3_000))
    withdrawal = reporting_service_pb2.BalanceOperation(
        account_id=a.account_id,
        operation_id="wd-1",
        kind=reporting_service_pb2.BALANCE_OPERATION_KIND_WITHDRAWAL,
        amount="-3000",
    )
    withdrawal.time.FromDatetime(datetime.now(UTC))
    await reporting_service_pb2_grpc.ReportingServiceStub(client.channel).RecordBalanceOperation(
        reporting_service_pb2.RecordBalanceOperationRequest(balance_operation=withdrawal)
    )
    await gateway.monitor.run_once()
    got = await client.accounts.GetAccount(
        account_service_pb2.GetAccountRequest(account_id=a.account_id)
    )
    assert not got.account.stop_outs
    assert Decimal(got.account.loss_watch.high_water_mark) == Decimal(7_000)
    # A real loss after it still counts, from the new mark: 400 of 7,000 is 5.7%.
    gateway.broker.transfer(71_501, Decimal(-400))
    await gateway.monitor.run_once()
    got = await client.accounts.GetAccount(
        account_service_pb2.GetAccountRequest(account_id=a.account_id)
    )
    (stop_out,) = got.account.stop_outs
    assert stop_out.rule == account_pb2.LOSS_RULE_MAX_DRAWDOWN


async def test_stop_outs_are_streamed_as_they_begin_and_end(
    client: Client, gateway: RunningGateway
) -> None:
    (a,) = await create_accounts(client.accounts, ["10000"], first_login=71_601)
    limits = account_pb2.LossLimits(
        max_drawdown=account_pb2.LossLimit(
            amount="5",
            unit=account_pb2.LOSS_UNIT_PERCENT,
            action=account_pb2.STOP_OUT_ACTION_BLOCK_NEW_ENTRIES,
        )
    )
    await client.accounts.UpdateAccount(loss_limits_update(a.account_id, limits))
    await gateway.monitor.run_once()
    watch = client.accounts.WatchStopOuts(
        account_service_pb2.WatchStopOutsRequest(account_id=a.account_id)
    )
    first = await watch.read()  # nothing active yet: a heartbeat
    assert first.HasField("heartbeat_time") and not first.HasField("stop_out")
    gateway.broker.transfer(71_601, Decimal(-600))  # a loss, as far as anyone can tell
    await gateway.monitor.run_once()
    began = await _next_stop_out(watch)
    assert began.account_id == a.account_id and not began.HasField("end_time")
    await client.accounts.ResetStopOut(
        account_service_pb2.ResetStopOutRequest(account_id=a.account_id)
    )
    ended = await _next_stop_out(watch)
    assert ended.stop_out_id == began.stop_out_id and ended.HasField("end_time")
    watch.cancel()
    # A new watcher of the account's group gets nothing old: no stop-out is active now.
    again = client.accounts.WatchStopOuts(account_service_pb2.WatchStopOutsRequest())
    assert not (await again.read()).HasField("stop_out")
    again.cancel()


async def _next_stop_out(watch: object) -> account_pb2.StopOut:
    async with asyncio.timeout(10):
        while True:
            message = await watch.read()  # type: ignore[attr-defined]
            if message.HasField("stop_out"):
                return message.stop_out
