"""mamctl's cluster commands (docs/cluster.md): the gateway processes sharing the database and
who owns each group (an admin key's RPC)."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp
from rich.table import Table

from mam_client._proto.mam.v1 import admin_service_pb2 as pb
from mam_client.cli.admin import _admin

cluster_app = typer.Typer(
    help="Cluster mode: nodes and group leases (admin).", no_args_is_help=True
)


def _time(value: Timestamp) -> str:
    if not value.seconds and not value.nanos:
        return ""
    return value.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _age(value: Timestamp, now: datetime) -> str:
    if not value.seconds:
        return ""
    seconds = (now - value.ToDatetime(tzinfo=UTC)).total_seconds()
    return f"{max(seconds, 0):.1f} s ago"


@cluster_app.command("status")
def cluster_status(ctx: typer.Context) -> None:
    """The nodes (live or not, groups owned, last heartbeat) and each group's owner, epoch and
    takeovers, as the database has them."""
    settings, stub, call = _admin(ctx)
    status = call(stub.GetClusterStatus, pb.GetClusterStatusRequest())
    if settings.json:
        settings.emit_json(MessageToDict(status, preserving_proto_field_name=True))
        return
    now = datetime.now(UTC)
    nodes = Table("node", "address", "live", "groups", "heartbeat", "started", title="Nodes",
                  title_justify="left")  # fmt: skip
    for n in status.nodes:
        nodes.add_row(
            n.node_id + (" *" if n.answering else ""),
            n.address,
            "yes" if n.live else ("stopped" if n.HasField("stop_time") else "no"),
            str(n.groups_owned),
            _age(n.heartbeat_time, now),
            _time(n.start_time),
        )
    settings.out.print(nodes)
    leases = Table("group", "owner", "epoch", "takeovers", "renewed", title="Group leases",
                   title_justify="left")  # fmt: skip
    for x in status.leases:
        leases.add_row(
            x.group_id, x.node_id or "(released)", str(x.epoch), str(x.takeovers),
            _age(x.renew_time, now),
        )  # fmt: skip
    for group_id in status.unowned_group_ids:
        leases.add_row(group_id, "(none yet)", "", "", "")
    settings.out.print(leases)
    settings.out.print("* the node that answered")
