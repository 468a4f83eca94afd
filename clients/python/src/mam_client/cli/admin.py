"""mamctl's admin commands: API keys, the audit log and kill switches (an admin key's RPCs)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypeVar

import grpc
import typer
from google.protobuf.json_format import MessageToDict
from rich.table import Table

from mam_client._proto.mam.v1 import admin_service_pb2 as pb
from mam_client._proto.mam.v1 import admin_service_pb2_grpc as pb_grpc
from mam_client.cli.failure import fail
from mam_client.cli.lookup import AccountIds, find_account_id, find_group
from mam_client.errors import MamError

T = TypeVar("T")

keys_app = typer.Typer(help="API keys (admin).", no_args_is_help=True)
# The roles a key may have (Role without ROLE_UNSPECIFIED).
_ROLES = ("admin", "manager", "investor")
kill_switch_app = typer.Typer(
    help="Kill switches: stop opening orders at once (admin).", no_args_is_help=True
)


def _admin(ctx: typer.Context) -> tuple[Any, Any, Callable[[Callable[..., Any], Any], Any]]:
    """The settings, the AdminService stub, and a caller of its RPCs that ends the command
    with one line on stderr on failure."""
    settings = ctx.obj
    try:
        client = settings.client()
    except (MamError, ValueError, OSError) as error:
        fail(settings.err, error)
    stub = pb_grpc.AdminServiceStub(client.channel)

    def call(method: Callable[..., Any], request: Any) -> Any:
        try:
            return method(request, metadata=client.metadata, timeout=settings.timeout_s)
        except grpc.RpcError as error:
            fail(settings.err, MamError.from_rpc_error(error))

    return settings, stub, call


def _resolved(settings: Any, resolve: Callable[[Any], T]) -> T:
    """resolve(client): groups' or accounts' ids; a failure ends the command."""
    try:
        return resolve(settings.client())
    except (MamError, ValueError, OSError) as error:
        fail(settings.err, error)


def _dict(message: Any) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


def _pages(call: Callable[[Any], Any], make: Callable[[str], Any], field: str) -> Iterator[Any]:
    token = ""
    while True:
        page = call(make(token))
        yield from getattr(page, field)
        token = page.next_page_token
        if not token:
            return


# -- keys -------------------------------------------------------------------------------------


@keys_app.command("create")
def create_key(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    role: Annotated[str, typer.Option(metavar="admin|manager|investor")],
    group: Annotated[
        list[str] | None, typer.Option(help="A manager's group, by id or name (repeat).")
    ] = None,
    account: Annotated[
        list[str] | None, typer.Option(help="An investor's account, by id or name (repeat).")
    ] = None,
) -> None:
    """Create a key; it is printed once and cannot be read again."""
    if role.strip().lower() not in _ROLES:
        raise typer.BadParameter(f"{role!r} is not one of {', '.join(_ROLES)}", param_hint="--role")
    role_value = pb.Role.Value(f"ROLE_{role.strip().upper()}")
    settings, stub, call = _admin(ctx)
    group_ids = _resolved(settings, lambda c: [find_group(c, g).group_id for g in group or []])
    account_ids = _resolved(settings, lambda c: [AccountIds(c)(a) for a in account or []])
    created = call(
        stub.CreateApiKey,
        pb.CreateApiKeyRequest(
            api_key=pb.ApiKey(
                name=name, role=role_value, group_ids=group_ids, account_ids=account_ids
            )
        ),
    )
    if settings.json:
        settings.emit_json({"api_key": _dict(created.api_key), "key": created.key})
    else:
        settings.out.print(f"key {created.api_key.key_id} ({role.lower()}); keep it secret:")
        typer.echo(created.key)


@keys_app.command("list")
def list_keys(
    ctx: typer.Context,
    revoked: Annotated[bool, typer.Option("--revoked", help="Revoked keys too.")] = False,
) -> None:
    """The keys, without their secrets."""
    settings, stub, call = _admin(ctx)
    keys = list(
        _pages(
            lambda r: call(stub.ListApiKeys, r),
            lambda t: pb.ListApiKeysRequest(page_token=t, include_revoked=revoked),
            "api_keys",
        )
    )
    if settings.json:
        settings.emit_json([_dict(k) for k in keys])
        return
    table = Table("key id", "name", "role", "scope", "revoked")
    for key in keys:
        table.add_row(
            key.key_id,
            key.name,
            pb.Role.Name(key.role).removeprefix("ROLE_").lower(),
            ", ".join([*key.group_ids, *key.account_ids]),
            "yes" if key.HasField("revoke_time") else "",
        )
    settings.out.print(table)


@keys_app.command("revoke")
def revoke_key(ctx: typer.Context, key_id: str) -> None:
    """Revoke a key at once."""
    settings, stub, call = _admin(ctx)
    revoked = call(stub.RevokeApiKey, pb.RevokeApiKeyRequest(key_id=key_id))
    if settings.json:
        settings.emit_json(_dict(revoked.api_key))
    else:
        settings.out.print(f"revoked {revoked.api_key.key_id}")


# -- audit log --------------------------------------------------------------------------------


def audit(
    ctx: typer.Context,
    actor: Annotated[str, typer.Option(help="Only this actor's calls.")] = "",
    method: Annotated[str, typer.Option(help="Only this RPC (its full name).")] = "",
    limit: Annotated[int, typer.Option(help="At most this many records.")] = 100,
) -> None:
    """The audit log: every state-changing call, oldest first."""
    settings, stub, call = _admin(ctx)
    records = []
    for record in _pages(
        lambda r: call(stub.ListAuditRecords, r),
        lambda t: pb.ListAuditRecordsRequest(page_token=t, actor=actor, method=method),
        "records",
    ):
        records.append(record)
        if len(records) >= limit:
            break
    if settings.json:
        settings.emit_json([_dict(r) for r in records])
        return
    table = Table("seq", "time", "actor", "method", "status", "result")
    for r in records:
        table.add_row(
            str(r.sequence),
            r.time.ToDatetime().isoformat(timespec="seconds"),
            r.actor,
            r.method.rsplit("/", 1)[-1],
            r.status if not r.reason or r.reason == r.status else f"{r.status} {r.reason}",
            r.result,
        )
    settings.out.print(table)


# -- kill switches ----------------------------------------------------------------------------


@kill_switch_app.command("on")
def kill_switch_on(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option(help="Why, for the record.")],
    group: Annotated[str, typer.Option(help="Only this group's orders (id or name).")] = "",
    account: Annotated[str, typer.Option(help="Only this account (id or name).")] = "",
    flatten: Annotated[bool, typer.Option(help="Also close what the scope holds.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Stop every opening order (of a group, or for an account) at once."""
    if group and account:
        raise typer.BadParameter("name a group or an account, not both")
    scope = (
        pb.KILL_SWITCH_SCOPE_GROUP
        if group
        else pb.KILL_SWITCH_SCOPE_ACCOUNT
        if account
        else pb.KILL_SWITCH_SCOPE_GLOBAL
    )
    settings, stub, call = _admin(ctx)
    target_id = ""
    if group:
        target_id = _resolved(settings, lambda c: find_group(c, group).group_id)
    elif account:
        target_id = _resolved(settings, lambda c: find_account_id(c, account))
    named = group or account
    where = f"{'group' if group else 'account'} {named}" if named else "every account"
    if named and named != target_id:
        where += f" ({target_id})"
    if not yes and sys.stdin.isatty():
        typer.confirm(f"Stop trading on {where} at {settings.target}?", abort=True)
    started = time.monotonic()
    switch = call(
        stub.ActivateKillSwitch,
        pb.ActivateKillSwitchRequest(
            kill_switch=pb.KillSwitch(
                scope=scope, target_id=target_id, flatten=flatten, reason=reason
            )
        ),
    ).kill_switch
    elapsed_ms = (time.monotonic() - started) * 1000
    if settings.json:
        settings.emit_json(_dict(switch))
        return
    settings.out.print(
        f"kill switch {switch.kill_switch_id} on for {where} ({elapsed_ms:.0f} ms)"
        + (f"; closing orders: {', '.join(switch.closing_master_order_ids)}" if flatten else "")
    )


@kill_switch_app.command("off")
def kill_switch_off(ctx: typer.Context, kill_switch_id: str) -> None:
    """Lift a kill switch."""
    settings, stub, call = _admin(ctx)
    switch = call(
        stub.DeactivateKillSwitch, pb.DeactivateKillSwitchRequest(kill_switch_id=kill_switch_id)
    ).kill_switch
    if settings.json:
        settings.emit_json(_dict(switch))
    else:
        settings.out.print(f"kill switch {switch.kill_switch_id} lifted")


@kill_switch_app.command("list")
def kill_switch_list(
    ctx: typer.Context,
    active: Annotated[bool, typer.Option("--active", help="Only those that are on.")] = False,
) -> None:
    """Kill switches, newest first."""
    settings, stub, call = _admin(ctx)
    switches = list(
        _pages(
            lambda r: call(stub.ListKillSwitches, r),
            lambda t: pb.ListKillSwitchesRequest(page_token=t, active_only=active),
            "kill_switches",
        )
    )
    if settings.json:
        settings.emit_json([_dict(s) for s in switches])
        return
    table = Table("id", "scope", "target", "flatten", "on", "reason")
    for s in switches:
        table.add_row(
            s.kill_switch_id,
            pb.KillSwitchScope.Name(s.scope).removeprefix("KILL_SWITCH_SCOPE_").lower(),
            s.target_id,
            "yes" if s.flatten else "",
            "" if s.HasField("deactivate_time") else "yes",
            s.reason,
        )
    settings.out.print(table)
