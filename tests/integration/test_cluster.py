"""Cluster mode on one real PostgreSQL database, nodes in this process: groups spread over the
nodes by lease, each group traded by its owner only, one gap-free fill sequence across nodes,
a commit of a group taken over refused (fenced), the numbers of every series from the
database's counters, and a process of the default mode kept out (and the other way round)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from mam_client.cli import app as mamctl
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner

from gateway._proto.mam.v1 import (
    account_pb2,
    account_service_pb2,
    admin_service_pb2,
    admin_service_pb2_grpc,
    trading_service_pb2,
)
from gateway.api.server import RunningGateway
from gateway.config import ConfigError
from gateway.config.models import ClusterConfig, GatewayConfig
from gateway.domain.allocation import AllocationReason
from gateway.domain.drawdown_monitor import (
    LossLimit,
    LossRule,
    LossUnit,
    StopOut,
    StopOutAction,
)
from gateway.domain.ids import GroupId
from gateway.domain.orders import MasterOrderSpec, OrderType, Side
from gateway.domain.stop_outs import RecordedStopOut, WatchKind
from gateway.store import Store, tables
from gateway.store.cluster import ClusterLockHeld, ClusterNode, GroupFenced, NodeIdentity
from gateway.store.writer_lock import WriterLockHeld
from tests.conftest import Client, client_of
from tests.integration.helpers import create_accounts, create_group, market_order
from tests.integration.test_risk_checks import group_update
from tests.postgres import PostgresServer
from tests.scrape import scrape
from tests.support import KeyedStub, error_details, make_config, running, until

D = Decimal
LEASE_S = 2.0
RENEW_S = 0.25


def node_config(tmp_path: Path, url: str, name: str, **cluster: object):  # type: ignore[no-untyped-def]
    config = make_config(tmp_path / name, database_url=url)
    settings = ClusterConfig(
        enabled=True,
        node_name=name,
        lease_seconds=float(cluster.get("lease_seconds", LEASE_S)),  # type: ignore[arg-type]
        renew_interval_seconds=float(cluster.get("renew", RENEW_S)),  # type: ignore[arg-type]
    )
    return dataclasses.replace(config, cluster=settings)


def admin_of(client: Client) -> admin_service_pb2_grpc.AdminServiceStub:
    return admin_service_pb2_grpc.AdminServiceStub(client.channel)


async def owned(node: RunningGateway) -> list[GroupId]:
    assert node.ownership is not None
    return node.ownership.owned()


async def make_groups(node: RunningGateway, count: int) -> list[GroupId]:
    groups = []
    async with client_of(node) as client:
        for i in range(count):
            members = await create_accounts(
                client.accounts, ["10000", "30000"], prefix=f"g{i}", first_login=71000 + 10 * i
            )
            group = await create_group(client.accounts, members, name=f"group-{i}")
            groups.append(GroupId(group.group_id))
    return groups


async def test_groups_spread_over_the_nodes_and_each_is_traded_by_its_owner_only(
    tmp_path: Path, pg_url: str
) -> None:
    async with running(node_config(tmp_path, pg_url, "node-a")) as a:
        groups = await make_groups(a, 4)

        async def a_owns_all() -> bool:
            return len(await owned(a)) == 4

        await until(a_owns_all, timeout_s=10)
        async with running(node_config(tmp_path, pg_url, "node-b")) as b:
            # Node b joins: node a hands idle groups over down to its share.
            async def spread() -> bool:
                return len(await owned(a)) == 2 and len(await owned(b)) == 2

            await until(spread, timeout_s=15)
            assert set(await owned(a)) | set(await owned(b)) == set(groups)
            async with client_of(b) as client:
                status = await admin_of(client).GetClusterStatus(
                    admin_service_pb2.GetClusterStatusRequest()
                )
            nodes = {n.node_id: n for n in status.nodes}
            assert set(nodes) == {"node-a", "node-b"} and all(n.live for n in nodes.values())
            assert nodes["node-b"].answering and not nodes["node-a"].answering
            # Each node's address is the one it really listens on (server.listen says :0).
            assert (nodes["node-a"].address, nodes["node-b"].address) == (a.address, b.address)
            assert nodes["node-a"].groups_owned == nodes["node-b"].groups_owned == 2
            assert sorted(x.group_id for x in status.leases) == sorted(groups)
            assert not status.unowned_group_ids
            # mamctl cluster status: the same, as a table and as JSON.
            runner = CliRunner(env={"COLUMNS": "200"})
            shown = await asyncio.to_thread(
                runner.invoke, mamctl, ["--target", b.address, "cluster", "status"]
            )
            assert shown.exit_code == 0, shown.output
            assert "node-a" in shown.stdout and "node-b *" in shown.stdout
            assert all(group_id in shown.stdout for group_id in groups)
            as_json = await asyncio.to_thread(
                runner.invoke, mamctl, ["--target", b.address, "--json", "cluster", "status"]
            )
            assert as_json.exit_code == 0, as_json.output
            assert len(json.loads(as_json.stdout)["leases"]) == 4
            metrics = await scrape(a.metrics_port)
            assert metrics.value("mam_cluster_groups_owned") == 2
            assert metrics.value("mam_cluster_groups_taken_total") == 4
            assert metrics.value("mam_cluster_groups_lost_total") == 2
            on_a, on_b = (await owned(a))[0], (await owned(b))[0]

            # Each node attaches only its groups' terminals (as it sets each group up).
            async def attached() -> bool:
                return len(a.registry.attached()) == len(b.registry.attached()) == 4

            await until(attached, timeout_s=5)

            async with client_of(a) as client_a, client_of(b) as client_b:
                # A submission to the owner executes there.
                first = await client_a.trading.SubmitMasterOrder(
                    market_order(on_a, "0.40", client_order_id="c-a")
                )
                second = await client_b.trading.SubmitMasterOrder(
                    market_order(on_b, "0.40", client_order_id="c-b")
                )
                # To a node that does not own the group: its owner does it, and the answer
                # (after the owner's commit) is the owner's; sent again, the same order.
                forwarded = await client_a.trading.SubmitMasterOrder(
                    market_order(on_b, "0.40", client_order_id="c-x")
                )
                again = await client_a.trading.SubmitMasterOrder(
                    market_order(on_b, "0.40", client_order_id="c-x")
                )
                assert forwarded.master_order.spec.group_id == on_b
                assert forwarded.master_order.child_count == 2
                assert again.master_order.master_order_id == forwarded.master_order.master_order_id
                # A stops change is the owner's to do: refused elsewhere, naming the owner.
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await client_a.trading.ModifyMasterOrder(
                        trading_service_pb2.ModifyMasterOrderRequest(
                            master_order_id=forwarded.master_order.master_order_id,
                            stop_loss="1.00000",
                        )
                    )
                details = error_details(refused.value)
                assert details.code is grpc.StatusCode.FAILED_PRECONDITION
                assert details.reason == "GROUP_OWNED_ELSEWHERE"
                assert details.metadata["owner_node"] == "node-b"
            for node, master_id in ((a, first.master_order.master_order_id),
                                    (b, second.master_order.master_order_id),
                                    (b, forwarded.master_order.master_order_id)):  # fmt: skip

                async def final(node: RunningGateway = node, master_id: str = master_id) -> bool:
                    master, _ = await node.engine.get(master_id)  # type: ignore[arg-type]
                    return master.state.is_final

                await until(final, timeout_s=10)
            async with client_of(a) as client_a, client_of(b) as client_b:
                # A cancel is forwarded too, and the owner's refusal comes back as it is.
                with pytest.raises(grpc.aio.AioRpcError) as final_already:
                    await client_a.trading.CancelMasterOrder(
                        trading_service_pb2.CancelMasterOrderRequest(
                            master_order_id=forwarded.master_order.master_order_id
                        )
                    )
                assert error_details(final_already.value).reason == "MASTER_ORDER_FINAL"
                # A kill switch turned on at one node stops the other node's group.
                await admin_of(client_a).ActivateKillSwitch(
                    admin_service_pb2.ActivateKillSwitchRequest(
                        kill_switch=admin_service_pb2.KillSwitch(
                            scope=admin_service_pb2.KILL_SWITCH_SCOPE_GROUP,
                            target_id=on_b,
                            reason="test",
                        )
                    )
                )

                async def b_stopped() -> bool:
                    try:
                        await client_b.trading.SubmitMasterOrder(market_order(on_b, "0.40"))
                    except grpc.aio.AioRpcError as error:
                        return error_details(error).reason == "KILL_SWITCH_ACTIVE"
                    return False

                await until(b_stopped, timeout_s=5)
            # One sequence across both nodes: 1..N, no gap, no repeat.
            sequences = await fill_sequences(pg_url)
            # (6 fills, and those of the orders node b took before its kill switch was on.)
            assert sequences == list(range(1, len(sequences) + 1)) and len(sequences) >= 6


async def test_a_subscriber_on_any_node_gets_every_nodes_fills_in_one_sequence(
    tmp_path: Path, pg_url: str
) -> None:
    async with running(node_config(tmp_path, pg_url, "node-a")) as a:
        await make_groups(a, 2)
        async with running(node_config(tmp_path, pg_url, "node-b")) as b:

            async def spread() -> bool:
                return len(await owned(a)) == 1 and len(await owned(b)) == 1

            await until(spread, timeout_s=15)
            (on_a,), (on_b,) = await owned(a), await owned(b)
            async with client_of(a) as client_a, client_of(b) as client_b:
                stream = client_a.trading.SubscribeFills(
                    trading_service_pb2.SubscribeFillsRequest(after_sequence=0)
                )
                for _ in range(3):
                    await client_a.trading.SubmitMasterOrder(market_order(on_a, "0.40"))
                    await client_b.trading.SubmitMasterOrder(market_order(on_b, "0.40"))
                seen: list[int] = []
                async with asyncio.timeout(20):
                    while len(seen) < 12:
                        message = await stream.read()
                        assert message is not grpc.aio.EOF
                        seen += [f.sequence for f in message.batch.fills]
                stream.cancel()
            # Node b's fills too, in one gap-free sequence, each once.
            assert seen == list(range(1, 13))
            assert seen == await fill_sequences(pg_url)


async def terminate_sessions_of(url: str, application_name: str) -> None:
    """Ends the sessions of that name, as the server does when their process dies."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :name"
                ),
                {"name": application_name},
            )
    finally:
        await engine.dispose()


async def fill_sequences(url: str) -> list[int]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            query = select(tables.fills.c.sequence).order_by(tables.fills.c.sequence)
            return [int(r) for r in (await conn.execute(query)).scalars()]
    finally:
        await engine.dispose()


async def test_a_node_that_stops_hands_its_groups_to_the_others(
    tmp_path: Path, pg_url: str
) -> None:
    async with running(node_config(tmp_path, pg_url, "node-a")) as a:
        groups = await make_groups(a, 2)
        async with running(node_config(tmp_path, pg_url, "node-b")) as b:

            async def spread() -> bool:
                return len(await owned(a)) == 1 and len(await owned(b)) == 1

            await until(spread, timeout_s=15)
            await b.stop()

            async def a_owns_all() -> bool:
                return set(await owned(a)) == set(groups)

            # Released in order: taken at the next round, not after the lease time.
            await until(a_owns_all, timeout_s=3 * RENEW_S + 2)


async def test_a_commit_of_a_group_taken_over_is_refused(tmp_path: Path, pg_url: str) -> None:
    """Two nodes as bare stores: the first takes a group; its session is ended (as a node
    taking over a stale lease does); the second takes the group; the first's commit of the
    group's progress is fenced, the second's goes through."""
    async with running(make_config(tmp_path / "setup", database_url=pg_url)) as setup:
        (group_id,) = await make_groups(setup, 1)
    first = ClusterNode(pg_url, NodeIdentity("n1", "h", 1, ""), lease_seconds=0.5)
    second = ClusterNode(pg_url, NodeIdentity("n2", "h", 2, ""), lease_seconds=0.5)
    store_1 = await Store.open(pg_url, cluster=first)
    store_2 = await Store.open(pg_url, cluster=second)
    try:
        assert await first.try_acquire(group_id) == 1
        assert await second.try_acquire(group_id) is None  # held: its lock is taken
        master = await store_1.list_master_orders(before="", limit=1)
        assert master == []
        await asyncio.sleep(0.6)  # the first node stops renewing: its lease goes stale
        # The second ends the first's session, then takes the group with a new epoch.
        assert await second.try_acquire(group_id) is None

        async def taken() -> bool:
            return await second.try_acquire(group_id) is not None

        await until(taken, timeout_s=5)
        assert second.held[group_id] == 2
        with pytest.raises(GroupFenced) as fenced:
            await store_1.save_progress(groups=[group_id], fills=[])
        assert fenced.value.groups == {group_id}
        await store_2.save_progress(groups=[group_id], fills=[])
    finally:
        await store_2.close()
        await store_1.close()


async def test_numbers_come_from_the_databases_counters(tmp_path: Path, pg_url: str) -> None:
    """Two nodes audit at once: one gap-free audit sequence, and the counter says its end."""
    node_1 = ClusterNode(pg_url, NodeIdentity("n1", "h", 1, ""), lease_seconds=5)
    node_2 = ClusterNode(pg_url, NodeIdentity("n2", "h", 2, ""), lease_seconds=5)
    store_1 = await Store.open(pg_url, cluster=node_1)
    store_2 = await Store.open(pg_url, cluster=node_2)
    try:
        from gateway.domain.audit import AuditRecord  # noqa: PLC0415

        def record(i: int) -> AuditRecord:
            from datetime import UTC, datetime  # noqa: PLC0415

            return AuditRecord(datetime.now(UTC), "admin", f"/m/{i}", "{}", "OK")

        await asyncio.gather(
            *(store_1.access.append_audit([record(i), record(i)]) for i in range(10)),
            *(store_2.access.append_audit([record(i)]) for i in range(10)),
        )
        engine = create_async_engine(pg_url)
        async with engine.connect() as conn:
            numbers = list(
                (await conn.execute(text("SELECT sequence FROM audit_records ORDER BY 1")))
                .scalars()
                .all()
            )
            counter = (
                await conn.execute(
                    text("SELECT value FROM sequence_counters WHERE name = 'audit_records'")
                )
            ).scalar_one()
        await engine.dispose()
        assert numbers == list(range(1, 31)) and counter == 30
    finally:
        await store_2.close()
        await store_1.close()


async def test_a_default_gateway_and_a_cluster_node_never_share_a_database(
    tmp_path: Path, pg_url: str
) -> None:
    async with running(make_config(tmp_path / "single", database_url=pg_url)):
        with pytest.raises(ConfigError, match="default"):
            async with running(node_config(tmp_path, pg_url, "node-a")):
                pass
    async with running(node_config(tmp_path, pg_url, "node-a")):
        with pytest.raises(WriterLockHeld):
            async with running(make_config(tmp_path / "single-2", database_url=pg_url)):
                pass


async def test_cluster_mode_needs_postgresql() -> None:
    from gateway.config import load_config  # noqa: PLC0415
    from tests.support import DEMO_CONFIG  # noqa: PLC0415

    with pytest.raises(ConfigError, match="PostgreSQL"):
        load_config(DEMO_CONFIG, environ={"MAM__CLUSTER__ENABLED": "true"})


async def test_the_cluster_status_of_a_gateway_of_the_default_mode_says_so(
    tmp_path: Path,
) -> None:
    async with running(make_config(tmp_path)) as gateway, client_of(gateway) as client:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await admin_of(client).GetClusterStatus(admin_service_pb2.GetClusterStatusRequest())
    details = error_details(refused.value)
    assert (details.code, details.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CLUSTER_MODE_OFF",
    )


async def test_the_database_restarted_under_load_every_node_takes_its_groups_back(
    tmp_path: Path, pg_url: str, postgres: PostgresServer
) -> None:
    """The nodes lose their sessions (and with them every lease) while orders fan out; once
    the database is back each joins again, groups are taken again with new epochs, and every
    order ends with each child filled once, in one gap-free sequence."""
    configs = [node_config(tmp_path, pg_url, name) for name in ("node-a", "node-b")]
    configs = [
        dataclasses.replace(c, simulator=dataclasses.replace(c.simulator, latency_ms=400))
        for c in configs
    ]
    async with running(configs[0]) as a, running(configs[1]) as b:
        groups = await make_groups(a, 2)

        async def spread() -> bool:
            return len(await owned(a)) == 1 and len(await owned(b)) == 1

        await until(spread, timeout_s=15)
        masters = []
        for node in (a, b):
            (group_id,) = await owned(node)
            async with client_of(node) as client:
                answer = await client.trading.SubmitMasterOrder(market_order(group_id, "0.40"))
                masters.append((node, answer.master_order.master_order_id))
        await asyncio.sleep(0.1)
        await asyncio.to_thread(postgres.stop_fast)
        try:
            await asyncio.sleep(0.5)
        finally:
            await asyncio.to_thread(postgres.start_again)

        async def owned_again() -> bool:
            return len(await owned(a)) + len(await owned(b)) == 2

        await until(owned_again, timeout_s=30)
        for node in (a, b):
            for group_id in await owned(node):
                assert node.ownership is not None
                assert node.ownership.node.held[group_id] >= 2  # a new epoch

        async def all_final() -> bool:
            for _, master_id in masters:
                for node in (a, b):
                    try:
                        master, _ = await node.engine.get(master_id)
                    except Exception:
                        return False
                    if not master.state.is_final:
                        return False
            return True

        await until(all_final, timeout_s=40)
        sequences = await fill_sequences(pg_url)
        assert sequences == list(range(1, len(sequences) + 1)) and len(sequences) == 4
        assert set(groups) == set(await owned(a)) | set(await owned(b))


async def test_a_stop_out_recorded_anywhere_stops_the_owner_and_its_end_lets_it_go(
    tmp_path: Path, pg_url: str
) -> None:
    """A group's stop-out stored by another node (the database is shared) reaches the group's
    owner within a round: its orders are refused STOPPED_OUT; ended, they go again."""
    async with running(node_config(tmp_path, pg_url, "node-a")) as a:
        (group_id,) = await make_groups(a, 1)

        async def a_owns() -> bool:
            return await owned(a) == [group_id]

        await until(a_owns, timeout_s=10)
        now = datetime.now(UTC)
        breach = StopOut(
            LossRule.DAILY_LOSS, StopOutAction.BLOCK_NEW_ENTRIES, now, D(900), D(1000),
            D(1000), D(100), D(10), LossLimit(D(50), LossUnit.MONEY),
        )  # fmt: skip
        stop_out = RecordedStopOut("so-1", WatchKind.GROUP, group_id, breach, now)
        other = await Store.open(pg_url, writer=False)
        try:
            await other.risk.save_watch_round([], triggered=[stop_out], at=now)

            async def refused() -> bool:
                async with client_of(a) as client:
                    try:
                        await client.trading.SubmitMasterOrder(market_order(group_id, "0.40"))
                    except grpc.aio.AioRpcError as error:
                        return error_details(error).reason == "STOPPED_OUT"
                return False

            await until(refused, timeout_s=5)
            ended = dataclasses.replace(stop_out, ended_at=datetime.now(UTC), ended_by="test")
            await other.risk.save_watch_round([], ended=[ended], at=datetime.now(UTC))

            async def accepted() -> bool:
                async with client_of(a) as client:
                    try:
                        await client.trading.SubmitMasterOrder(market_order(group_id, "0.40"))
                    except grpc.aio.AioRpcError:
                        return False
                return True

            await until(accepted, timeout_s=5)
        finally:
            await other.close()


async def test_a_node_name_is_taken_again_once_its_holder_is_gone_not_while_it_lives(
    pg_url: str,
) -> None:
    live = ClusterNode(pg_url, NodeIdentity("n1", "host-a", 1, ""), lease_seconds=30)
    await live.join()
    twin = ClusterNode(pg_url, NodeIdentity("n1", "host-b", 2, ""), lease_seconds=30)
    with pytest.raises(ClusterLockHeld, match="node names are unique"):
        await twin.join()
    # The holder dies (its session ends without an orderly leave), long before its lease
    # time: a restarted process of the same name joins at once.
    await terminate_sessions_of(pg_url, "mam-gateway node n1")
    await twin.join()
    await twin.leave()
    await live.leave()  # its session is gone already: only its engine is disposed


async def test_a_key_revoked_at_one_node_is_refused_at_the_others_at_once(
    tmp_path: Path, pg_url: str
) -> None:
    def keyed(name: str) -> GatewayConfig:
        config = node_config(tmp_path, pg_url, name)
        auth = dataclasses.replace(
            config.auth, required=True, bootstrap_admin_key_file=tmp_path / "admin.key"
        )
        return dataclasses.replace(config, auth=auth)

    async with running(keyed("node-a")) as a, running(keyed("node-b")) as b:
        admin = (("authorization", f"Bearer {(tmp_path / 'admin.key').read_text().strip()}"),)
        async with client_of(a) as client_a, client_of(b) as client_b:
            created = await KeyedStub(admin_of(client_a), admin).CreateApiKey(
                admin_service_pb2.CreateApiKeyRequest(
                    api_key=admin_service_pb2.ApiKey(name="desk", role=admin_service_pb2.ROLE_ADMIN)
                )
            )
            key = (("authorization", f"Bearer {created.key}"),)
            on_b = KeyedStub(client_b.accounts, key)
            await on_b.ListAccounts(account_service_pb2.ListAccountsRequest())  # cached at b
            await KeyedStub(admin_of(client_a), admin).RevokeApiKey(
                admin_service_pb2.RevokeApiKeyRequest(key_id=created.api_key.key_id)
            )

            async def refused_at_b() -> bool:
                try:
                    await on_b.ListAccounts(account_service_pb2.ListAccountsRequest())
                except grpc.aio.AioRpcError as error:
                    return error_details(error).reason == "API_KEY_REVOKED"
                return False

            # Well within the cache's 60 s: the revocation's notification drops it.
            await until(refused_at_b, timeout_s=3)


async def test_group_risk_limits_set_at_one_node_are_checked_by_the_owner_within_a_round(
    tmp_path: Path, pg_url: str
) -> None:
    async with running(node_config(tmp_path, pg_url, "node-a")) as a:
        await make_groups(a, 2)
        async with running(node_config(tmp_path, pg_url, "node-b")) as b:

            async def spread() -> bool:
                return len(await owned(a)) == 1 and len(await owned(b)) == 1

            await until(spread, timeout_s=15)
            (on_b,) = await owned(b)
            async with client_of(a) as client_a:
                await client_a.accounts.UpdateGroup(
                    group_update(
                        on_b,
                        "risk_limits",
                        risk_limits=account_pb2.RiskLimits(max_order_volume="0.01"),
                    )
                )
            spec = MasterOrderSpec(on_b, "EURUSD", Side.BUY, OrderType.MARKET, D("0.40"))

            async def checked_at_b() -> bool:
                allocation = await b.engine.preview(spec)
                # Each child of 0.20 is above the new 0.01 limit: skipped (the group's policy).
                return all(
                    AllocationReason.RISK_SKIPPED in line.reasons for line in allocation.lines
                )

            await until(checked_at_b, timeout_s=5)
