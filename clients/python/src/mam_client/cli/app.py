"""mamctl: operate a mam-gateway from the shell (accounts, groups, orders, fills)."""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import grpc
import typer
from rich.console import Console
from rich.console import Group as RenderGroup
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mam_client import _convert
from mam_client._channel import TlsConfig
from mam_client._fills import RetryPolicy
from mam_client.cli import admin, render, statement
from mam_client.errors import MamError
from mam_client.sync_client import SyncMamClient
from mam_client.types import (
    AccountState,
    AllocationMethod,
    AllocationSettings,
    BelowMinPolicy,
    Fill,
    Group,
    GroupMember,
    Heartbeat,
    MarginMode,
    MasterOrder,
    NewAccount,
    NewGroup,
    OrderSpec,
    OrderType,
    Platform,
    Side,
    SymbolMapping,
)

app = typer.Typer(
    name="mamctl",
    help="Operate a mam-gateway: accounts, groups, allocation previews, master orders, fills.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
accounts_app = typer.Typer(help="Client accounts.", no_args_is_help=True)
groups_app = typer.Typer(
    help="Groups of accounts and their allocation settings.", no_args_is_help=True
)
orders_app = typer.Typer(help="Master orders.", no_args_is_help=True)
watch_app = typer.Typer(help="Follow live streams.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
app.add_typer(groups_app, name="groups")
app.add_typer(orders_app, name="orders")
app.add_typer(watch_app, name="watch")
source_app = typer.Typer(
    help="A group's source account: the account whose trades the group mirrors.",
    no_args_is_help=True,
)
groups_app.add_typer(source_app, name="source")
signals_app = typer.Typer(
    help="Signals: each change at a group's source account, and what the group did with it.",
    no_args_is_help=True,
)
app.add_typer(signals_app, name="signals")
app.add_typer(admin.keys_app, name="keys")
app.add_typer(admin.kill_switch_app, name="kill-switch")
app.command("audit")(admin.audit)
statement.register(app)


@dataclass
class Settings:
    target: str
    api_key: str | None
    json: bool
    tls: TlsConfig | None
    timeout_s: float
    out: Console = field(default_factory=Console)
    err: Console = field(default_factory=lambda: Console(stderr=True))
    _client: SyncMamClient | None = None

    def client(self) -> SyncMamClient:
        if self._client is None:
            self._client = SyncMamClient.connect(
                self.target,
                api_key=self.api_key,
                tls=self.tls,
                timeout_s=self.timeout_s,
                connect_timeout_s=min(self.timeout_s, 10.0),
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def emit_json(self, value: object) -> None:
        typer.echo(render.to_json(value))


@app.callback()
def main_options(
    ctx: typer.Context,
    target: Annotated[
        str, typer.Option(envvar="MAM_TARGET", help="The gateway's HOST:PORT.")
    ] = "127.0.0.1:50051",
    api_key: Annotated[
        str | None, typer.Option(envvar="MAM_API_KEY", help="Sent as a bearer token.")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="JSON output for scripts instead of tables.")
    ] = False,
    tls: Annotated[bool, typer.Option(help="TLS with the system's root certificates.")] = False,
    ca_cert: Annotated[
        Path | None, typer.Option(help="TLS: the CA certificate of the gateway (PEM).")
    ] = None,
    cert: Annotated[Path | None, typer.Option(help="Mutual TLS: the client certificate.")] = None,
    key: Annotated[Path | None, typer.Option(help="Mutual TLS: the client's private key.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds allowed per call.")] = 30.0,
) -> None:
    tls_config = None
    if tls or ca_cert or cert or key:
        try:
            tls_config = TlsConfig.from_files(ca=ca_cert, cert=cert, key=key)
        except (OSError, ValueError) as error:
            raise typer.BadParameter(str(error)) from None
    settings = Settings(target, api_key, json_output, tls_config, timeout)
    ctx.obj = settings
    ctx.call_on_close(settings.close)


@contextmanager
def gateway(ctx: typer.Context) -> Iterator[SyncMamClient]:
    """The connected client; a failure ends the command with one line on stderr, exit 1."""
    settings: Settings = ctx.obj
    try:
        yield settings.client()
    except MamError as error:
        settings.err.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except (ValueError, OSError) as error:
        settings.err.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def settings_of(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


def decimal_option(value: str | None, name: str) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return _convert.parse_decimal(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a decimal number", param_hint=name) from None


def account_names(client: SyncMamClient) -> dict[str, str]:
    return {a.account_id: a.name for a in client.list_accounts(page_size=1000)}


def find_group(client: SyncMamClient, key: str) -> Group:
    """The group whose id or name is key."""
    for group in client.list_groups(page_size=1000):
        if key in (group.group_id, group.name):
            return group
    raise MamError(
        grpc.StatusCode.NOT_FOUND, f"no group with id or name {key!r}", reason="GROUP_NOT_FOUND"
    )


def find_account_id(client: SyncMamClient, key: str) -> str:
    """The id of the account whose id or name is key (key itself when no listed account has
    that name: a manager's list holds its members only)."""
    for account in client.list_accounts(page_size=1000):
        if key in (account.account_id, account.name):
            return account.account_id
    return key


# accounts


@accounts_app.command("list")
def accounts_list(
    ctx: typer.Context,
    group: Annotated[
        str | None, typer.Option(help="Only this group's members (id or name).")
    ] = None,
) -> None:
    """List the accounts."""
    settings = settings_of(ctx)
    with gateway(ctx) as client:
        group_id = find_group(client, group).group_id if group else ""
        with settings.err.status("reading accounts"):
            accounts = list(client.list_accounts(group_id=group_id, page_size=1000))
    if settings.json:
        settings.emit_json(accounts)
    else:
        settings.out.print(render.accounts_table(accounts))


@accounts_app.command("show")
def accounts_show(ctx: typer.Context, account_id: str) -> None:
    """Show one account with its latest balance and equity."""
    settings = settings_of(ctx)
    with gateway(ctx) as client:
        account = client.get_account(account_id)
    if settings.json:
        settings.emit_json(account)
    else:
        settings.out.print(render.account_details(account))


@accounts_app.command("delete")
def accounts_delete(
    ctx: typer.Context,
    account_id: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Retire a flat account: out of the lists and its groups, never traded again; its history
    stays for statements. Refused while it holds positions or working orders."""
    settings = settings_of(ctx)
    with gateway(ctx) as client:
        if not yes and sys.stdin.isatty():
            account = client.get_account(account_id)
            typer.confirm(
                f"Delete account {account.name} ({account_id}) at {settings.target}?", abort=True
            )
        client.delete_account(account_id)
    if settings.json:
        settings.emit_json({"account_id": account_id, "deleted": True})
    else:
        settings.out.print(f"deleted account {account_id}", highlight=False)


@accounts_app.command("create")
def accounts_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Unique in the gateway.")],
    platform: Annotated[Platform, typer.Option(case_sensitive=False)] = Platform.SIMULATED,
    login: Annotated[int, typer.Option(help="The broker login.")] = 0,
    server: Annotated[str, typer.Option(help="The broker's trade server.")] = "",
    currency: Annotated[str, typer.Option()] = "USD",
    balance: Annotated[
        str | None, typer.Option(help="SIMULATED: the opening deposit (decimal).")
    ] = None,
    leverage: Annotated[int | None, typer.Option()] = None,
    margin_mode: Annotated[MarginMode | None, typer.Option(case_sensitive=False)] = None,
    state: Annotated[AccountState | None, typer.Option(case_sensitive=False)] = None,
    symbol_map: Annotated[
        list[str] | None, typer.Option("--map", help="SYMBOL=BROKER_SYMBOL, repeatable.")
    ] = None,
) -> None:
    """Register a client account."""
    settings = settings_of(ctx)
    mappings = []
    for item in symbol_map or []:
        symbol, sep, broker_symbol = item.partition("=")
        if not sep or not symbol or not broker_symbol:
            raise typer.BadParameter(f"{item!r} is not SYMBOL=BROKER_SYMBOL", param_hint="--map")
        mappings.append(SymbolMapping(symbol, broker_symbol))
    new = NewAccount(
        name=name,
        platform=platform,
        login=login,
        server=server,
        currency=currency,
        state=state,
        margin_mode=margin_mode,
        leverage=leverage,
        initial_balance=decimal_option(balance, "--balance"),
        symbol_mappings=tuple(mappings),
    )
    with gateway(ctx) as client:
        account = client.create_account(new)
    if settings.json:
        settings.emit_json(account)
    else:
        settings.out.print(render.account_details(account))


CSV_COLUMNS = ("name", "platform", "login", "server", "currency", "initial_balance", "leverage")


def account_from_row(row: dict[str, str]) -> NewAccount:
    def text(column: str) -> str:
        return (row.get(column) or "").strip()

    if not text("name"):
        raise ValueError("the name is missing")
    return NewAccount(
        name=text("name"),
        platform=Platform((text("platform") or "SIMULATED").upper()),
        login=int(text("login") or 0),
        server=text("server"),
        currency=text("currency") or "USD",
        initial_balance=_convert.parse_decimal(text("initial_balance"))
        if text("initial_balance")
        else None,
        leverage=int(text("leverage")) if text("leverage") else None,
        margin_mode=MarginMode(text("margin_mode").upper()) if text("margin_mode") else None,
        state=AccountState(text("state").upper()) if text("state") else None,
    )


@accounts_app.command("import")
def accounts_import(
    ctx: typer.Context,
    csv_file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            help=f"A header row, then one account a row: {', '.join(CSV_COLUMNS)}"
            " (margin_mode and state optional).",
        ),
    ],
) -> None:
    """Register every account of a CSV file, in order; stops at the first refused row."""
    settings = settings_of(ctx)
    with csv_file.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    accounts = []
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        try:
            accounts.append(account_from_row(row))
        except ValueError as error:
            settings.err.print(f"[red]error:[/red] {csv_file}:{number}: {error}", highlight=False)
            raise typer.Exit(1) from None
    created = []
    with gateway(ctx) as client, _progress(settings) as progress:
        task = progress.add_task("importing accounts", total=len(accounts))
        for number, account in enumerate(accounts, start=2):
            try:
                created.append(client.create_account(account))
            except MamError as error:
                progress.stop()
                settings.err.print(
                    f"[red]error:[/red] {csv_file}:{number} ({account.name}): {error}"
                    f" ({len(created)} of {len(accounts)} accounts created)",
                    highlight=False,
                    soft_wrap=True,
                )
                raise typer.Exit(1) from None
            progress.advance(task)
    if settings.json:
        settings.emit_json(created)
    else:
        settings.out.print(render.accounts_table(created))


def _progress(settings: Settings) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=settings.err,
        transient=True,
        disable=not settings.err.is_terminal,  # no bar in logs and pipes
    )


# groups


def parse_member(spec: str) -> GroupMember:
    """ACCOUNT_ID[:key=value,...] with keys percentage, multiplier, lots, risk, max, method."""
    account_id, _, options = spec.partition(":")
    values: dict[str, Decimal | None] = {}
    method: AllocationMethod | None = None
    aliases = {
        "percentage": "percentage",
        "pct": "percentage",
        "multiplier": "lot_multiplier",
        "lot_multiplier": "lot_multiplier",
        "lots": "fixed_lots",
        "fixed_lots": "fixed_lots",
        "risk": "risk_percent",
        "risk_percent": "risk_percent",
        "max": "max_lots",
        "max_lots": "max_lots",
    }
    for item in filter(None, options.split(",")):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep:
            raise typer.BadParameter(
                f"{item!r} in {spec!r} is not key=value", param_hint="--member"
            )
        if key == "method":
            try:
                method = AllocationMethod(value.strip().upper())
            except ValueError:
                raise typer.BadParameter(
                    f"unknown method {value!r}", param_hint="--member"
                ) from None
        elif key in aliases:
            values[aliases[key]] = decimal_option(value, "--member")
        else:
            raise typer.BadParameter(
                f"unknown member setting {key!r} (percentage, multiplier, lots, risk, max, method)",
                param_hint="--member",
            )
    if not account_id:
        raise typer.BadParameter(f"{spec!r} names no account", param_hint="--member")
    return GroupMember(account_id=account_id.strip(), method=method, **values)


MemberOption = Annotated[
    list[str] | None,
    typer.Option(
        "--member",
        help="ACCOUNT_ID[:key=value,...], repeatable; keys: percentage, multiplier, lots, risk,"
        " max, method.",
    ),
]
MethodOption = Annotated[AllocationMethod | None, typer.Option(case_sensitive=False)]
BelowMinOption = Annotated[BelowMinPolicy | None, typer.Option(case_sensitive=False)]


@groups_app.command("list")
def groups_list(ctx: typer.Context) -> None:
    """List the groups."""
    settings = settings_of(ctx)
    with gateway(ctx) as client:
        groups = list(client.list_groups(page_size=1000))
    if settings.json:
        settings.emit_json(groups)
    else:
        settings.out.print(render.groups_table(groups))


@groups_app.command("show")
def groups_show(
    ctx: typer.Context, group: Annotated[str, typer.Argument(help="Id or name.")]
) -> None:
    """Show a group: allocation settings and members."""
    settings = settings_of(ctx)
    with gateway(ctx) as client:
        found = find_group(client, group)
        names = {} if settings.json else account_names(client)
    if settings.json:
        settings.emit_json(found)
    else:
        for table in render.group_details(found, names):
            settings.out.print(table)


@groups_app.command("create")
def groups_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Unique in the gateway.")],
    member: MemberOption = None,
    method: MethodOption = None,
    below_min: BelowMinOption = None,
    reference_equity: Annotated[str | None, typer.Option(help="EQUITY_RATIO.")] = None,
    reference_account: Annotated[str, typer.Option(help="EQUITY_RATIO.")] = "",
    magic: Annotated[int | None, typer.Option(help="Assigned by the gateway when unset.")] = None,
) -> None:
    """Create a group of accounts."""
    settings = settings_of(ctx)
    new = NewGroup(
        name=name,
        members=tuple(parse_member(m) for m in member or []),
        allocation=AllocationSettings(
            method=method,
            below_min_policy=below_min,
            reference_equity=decimal_option(reference_equity, "--reference-equity"),
            reference_account_id=reference_account,
        ),
        magic=magic,
    )
    with gateway(ctx) as client:
        group = client.create_group(new)
        names = {} if settings.json else account_names(client)
    if settings.json:
        settings.emit_json(group)
    else:
        for table in render.group_details(group, names):
            settings.out.print(table)


@groups_app.command("set")
def groups_set(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(help="Id or name.")],
    name: Annotated[str | None, typer.Option(help="A new name.")] = None,
    method: MethodOption = None,
    below_min: BelowMinOption = None,
    reference_equity: Annotated[str | None, typer.Option(help="EQUITY_RATIO.")] = None,
    reference_account: Annotated[str | None, typer.Option(help="EQUITY_RATIO.")] = None,
    member: Annotated[
        list[str] | None,
        typer.Option("--member", help="Replaces all members: ACCOUNT_ID[:key=value,...]."),
    ] = None,
    add_member: Annotated[
        list[str] | None, typer.Option(help="Adds (or replaces) one member.")
    ] = None,
    remove_member: Annotated[list[str] | None, typer.Option(help="Removes an account.")] = None,
) -> None:
    """Change a group's name, allocation settings or members; the rest stays as it is."""
    settings = settings_of(ctx)
    with gateway(ctx) as client:
        current = find_group(client, group)
        allocation = None
        if any(v is not None for v in (method, below_min, reference_equity, reference_account)):
            a = current.allocation
            allocation = AllocationSettings(
                method=method or a.method,
                below_min_policy=below_min or a.below_min_policy,
                reference_equity=decimal_option(reference_equity, "--reference-equity")
                if reference_equity is not None
                else a.reference_equity,
                reference_account_id=a.reference_account_id
                if reference_account is None
                else reference_account,
            )
        members = None
        if member is not None or add_member or remove_member:
            base = (
                [parse_member(m) for m in member] if member is not None else list(current.members)
            )
            for spec in add_member or []:
                added = parse_member(spec)
                base = [m for m in base if m.account_id != added.account_id] + [added]
            removed = set(remove_member or [])
            members = [m for m in base if m.account_id not in removed]
        if name is None and allocation is None and members is None:
            raise typer.BadParameter(
                "nothing to change: give --name, allocation options or members"
            )
        updated = client.update_group(
            current.group_id, name=name, allocation=allocation, members=members
        )
        names = {} if settings.json else account_names(client)
    if settings.json:
        settings.emit_json(updated)
    else:
        for table in render.group_details(updated, names):
            settings.out.print(table)


# groups source (mirroring)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)?")
_UNIT_SECONDS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}


def duration_option(value: str, name: str) -> timedelta:
    """ "90", "60s", "500ms", "5m", "1h" as a timedelta."""
    found = _DURATION.fullmatch(value.strip().lower())
    if found is None:
        raise typer.BadParameter(
            f"{value!r} is not a duration like 60s, 500ms, 5m or 1h", param_hint=name
        )
    number, unit = found.groups()
    seconds = Decimal(number) * _UNIT_SECONDS[unit or "s"]
    return timedelta(seconds=float(seconds))


def _print_source(settings: Settings, client: SyncMamClient, group: Group) -> None:
    if settings.json:
        settings.emit_json(group)
        return
    names = account_names(client)
    settings.out.print(
        f"group [bold]{group.name}[/bold] source: {render.source_text(group, names)}",
        highlight=False,
    )


@source_app.command("set")
def source_set(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(help="The group (id or name).")],
    account: Annotated[
        str, typer.Argument(help="The source account (id or name); not a member of the group.")
    ],
    max_signal_age: Annotated[
        str | None,
        typer.Option(
            help="What the source opened longer ago than this when it is seen (after a restart "
            "or a pause) is not copied, e.g. 60s, 5m; default 60s."
        ),
    ] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Set it paused.")] = False,
) -> None:
    """Make ACCOUNT the group's source: its trades are copied onto the group from now on (what
    it holds already is not)."""
    settings = settings_of(ctx)
    age = None if max_signal_age is None else duration_option(max_signal_age, "--max-signal-age")
    with gateway(ctx) as client:
        found = find_group(client, group)
        updated = client.set_group_source(
            found.group_id,
            account_id=find_account_id(client, account),
            paused=paused,
            max_signal_age=age,
        )
        _print_source(settings, client, updated)


@source_app.command("pause")
def source_pause(
    ctx: typer.Context, group: Annotated[str, typer.Argument(help="Id or name.")]
) -> None:
    """Stop copying the group's source (resume catches up what changed meanwhile)."""
    settings = settings_of(ctx)
    with gateway(ctx) as client:
        updated = client.set_group_source(find_group(client, group).group_id, paused=True)
        _print_source(settings, client, updated)


@source_app.command("resume")
def source_resume(
    ctx: typer.Context, group: Annotated[str, typer.Argument(help="Id or name.")]
) -> None:
    """Copy the group's source again."""
    settings = settings_of(ctx)
    with gateway(ctx) as client:
        updated = client.set_group_source(find_group(client, group).group_id, paused=False)
        _print_source(settings, client, updated)


@source_app.command("remove")
def source_remove(
    ctx: typer.Context, group: Annotated[str, typer.Argument(help="Id or name.")]
) -> None:
    """End the group's mirroring; what was copied stays open."""
    settings = settings_of(ctx)
    with gateway(ctx) as client:
        updated = client.remove_group_source(find_group(client, group).group_id)
        _print_source(settings, client, updated)


# signals


def _group_names(client: SyncMamClient) -> dict[str, str]:
    return {g.group_id: g.name for g in client.list_groups(page_size=1000)}


@signals_app.command("list")
def signals_list(
    ctx: typer.Context,
    group: Annotated[str | None, typer.Option(help="Only this group's (id or name).")] = None,
    after: Annotated[int, typer.Option(help="Only those after this sequence.")] = 0,
    limit: Annotated[int, typer.Option(help="At most this many, oldest change first.")] = 100,
    json_output: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """List the stored signals, each in its latest state."""
    settings = settings_of(ctx)
    with gateway(ctx) as client:
        group_id = find_group(client, group).group_id if group else ""
        signals = []
        for signal in client.list_signals(
            group_id=group_id, after_sequence=after, page_size=min(limit, 1000)
        ):
            signals.append(signal)
            if len(signals) >= limit:
                break
        names = {} if settings.json or json_output else _group_names(client)
    if settings.json or json_output:
        settings.emit_json(signals)
    else:
        settings.out.print(render.signals_table(signals, names))


@signals_app.command("watch")
def signals_watch(
    ctx: typer.Context,
    group: Annotated[str | None, typer.Option(help="Only this group's (id or name).")] = None,
    after: Annotated[
        int | None, typer.Option(help="Replay the signals after this sequence first.")
    ] = None,
    count: Annotated[int | None, typer.Option(help="Stop after this many.")] = None,
) -> None:
    """Follow signals live, a line each as it is stored and again as it is settled
    (reconnecting and resuming on its own); Ctrl-C stops."""
    settings = settings_of(ctx)
    seen = 0
    with gateway(ctx) as client:
        group_id = find_group(client, group).group_id if group else ""
        names = {} if settings.json else _group_names(client)
        if after is None:
            # Live only: from the last signal stored now.
            after = 0
            for signal in client.list_signals(group_id=group_id, page_size=1000):
                after = signal.sequence
        signals = client.signals(
            group_id=group_id, after_sequence=after, retry=RetryPolicy(max_backoff_s=2.0)
        )
        try:
            for signal in signals:
                line = (
                    render.to_json_line(signal)
                    if settings.json
                    else render.signal_line(signal, names)
                )
                typer.echo(line)
                sys.stdout.flush()
                seen += 1
                if count is not None and seen >= count:
                    break
        except KeyboardInterrupt:
            pass
        finally:
            signals.close()


# preview, submit


@dataclass(frozen=True)
class OrderArgs:
    group: str
    symbol: str
    side: Side
    volume: str
    type: OrderType
    price: str | None
    stop_loss: str | None
    take_profit: str | None
    deviation: int
    comment: str

    def spec(self, group_id: str, client_order_id: str = "") -> OrderSpec:
        volume = decimal_option(self.volume, "--volume")
        assert volume is not None
        return OrderSpec(
            group_id=group_id,
            symbol=self.symbol,
            side=self.side,
            volume=volume,
            type=self.type,
            client_order_id=client_order_id,
            price=decimal_option(self.price, "--price"),
            stop_loss=decimal_option(self.stop_loss, "--stop-loss"),
            take_profit=decimal_option(self.take_profit, "--take-profit"),
            max_deviation_points=self.deviation,
            comment=self.comment,
        )


GroupOption = Annotated[str, typer.Option(help="The group (id or name).")]
SymbolOption = Annotated[str, typer.Option(help="A gateway symbol, e.g. EURUSD.")]
SideOption = Annotated[Side, typer.Option(case_sensitive=False)]
VolumeOption = Annotated[str, typer.Option(help="Total lots, e.g. 1.00.")]
TypeOption = Annotated[OrderType, typer.Option("--type", case_sensitive=False)]
PriceOption = Annotated[str | None, typer.Option(help="LIMIT/STOP price.")]
StopLossOption = Annotated[str | None, typer.Option()]
TakeProfitOption = Annotated[str | None, typer.Option()]
DeviationOption = Annotated[int, typer.Option(help="Maximum deviation in points.")]
CommentOption = Annotated[str, typer.Option()]


@app.command()
def preview(
    ctx: typer.Context,
    group: GroupOption,
    symbol: SymbolOption,
    side: SideOption,
    volume: VolumeOption,
    order_type: TypeOption = OrderType.MARKET,
    price: PriceOption = None,
    stop_loss: StopLossOption = None,
    take_profit: TakeProfitOption = None,
    deviation: DeviationOption = 0,
    comment: CommentOption = "",
) -> None:
    """Show what each account would get for an order, and why; sends nothing."""
    settings = settings_of(ctx)
    args = OrderArgs(
        group, symbol, side, volume, order_type, price, stop_loss, take_profit, deviation, comment
    )
    with gateway(ctx) as client:
        found = find_group(client, group)
        allocation = client.preview_allocation(args.spec(found.group_id))
        names = {} if settings.json else account_names(client)
    if settings.json:
        settings.emit_json(allocation)
    else:
        title = f"Preview: {side.value} {volume} {symbol} over {found.name}"
        settings.out.print(render.allocation_table(allocation, names, title))


@app.command()
def submit(
    ctx: typer.Context,
    group: GroupOption,
    symbol: SymbolOption,
    side: SideOption,
    volume: VolumeOption,
    order_type: TypeOption = OrderType.MARKET,
    price: PriceOption = None,
    stop_loss: StopLossOption = None,
    take_profit: TakeProfitOption = None,
    deviation: DeviationOption = 0,
    comment: CommentOption = "",
    client_order_id: Annotated[
        str, typer.Option(help="Idempotency key: a retry under the same id trades once.")
    ] = "",
    wait: Annotated[
        bool, typer.Option(help="Follow the fills until every child order has ended.")
    ] = False,
) -> None:
    """Submit a master order to a group."""
    settings = settings_of(ctx)
    args = OrderArgs(
        group, symbol, side, volume, order_type, price, stop_loss, take_profit, deviation, comment
    )
    with gateway(ctx) as client:
        found = find_group(client, group)
        submission = client.submit_master_order(args.spec(found.group_id, client_order_id))
        order = submission.master_order
        if wait:
            order = _wait_for_fills(settings, client, order)
        names = {} if settings.json else account_names(client)
    if settings.json:
        settings.emit_json({"master_order": order, "replayed": submission.replayed})
        return
    if submission.replayed:
        settings.out.print("[yellow]already submitted under this client order id:[/yellow]")
    settings.out.print(
        f"master order [bold]{order.master_order_id}[/bold] {order.state.value}: "
        f"{order.spec.side.value} {order.spec.volume} {order.spec.symbol} "
        f"over {order.child_count} child orders"
    )
    if wait:
        for table in render.order_details(order, names):
            settings.out.print(table)
    elif order.allocation is not None:
        settings.out.print(render.allocation_table(order.allocation, names, "Allocation"))


def _wait_for_fills(settings: Settings, client: SyncMamClient, order: MasterOrder) -> MasterOrder:
    """Follows order's fills with a progress bar until it is final; returns it then."""
    with _progress(settings) as progress:
        task = progress.add_task("filling child orders", total=order.child_count)
        filled = 0
        for event in client.fill_events(master_order_id=order.master_order_id):
            if isinstance(event, Fill):
                filled += 1
                progress.update(task, completed=filled)
            if filled >= order.child_count or isinstance(event, Heartbeat):
                order = client.get_master_order(order.master_order_id)
                if order.state.is_final:
                    break
    return client.get_master_order(order.master_order_id)


# orders


@orders_app.command("list")
def orders_list(
    ctx: typer.Context,
    group: Annotated[str | None, typer.Option(help="Only this group's orders.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 20,
) -> None:
    """List master orders, newest first."""
    settings = settings_of(ctx)
    with gateway(ctx) as client:
        group_id = find_group(client, group).group_id if group else ""
        orders = []
        for order in client.list_master_orders(group_id=group_id, page_size=min(limit, 500)):
            orders.append(order)
            if len(orders) >= limit:
                break
    if settings.json:
        settings.emit_json(orders)
    else:
        settings.out.print(render.orders_table(orders))


@orders_app.command("show")
def orders_show(ctx: typer.Context, master_order_id: str) -> None:
    """Show a master order with its child orders, fill prices and slippage."""
    settings = settings_of(ctx)
    with gateway(ctx) as client:
        order = client.get_master_order(master_order_id)
        names = {} if settings.json else account_names(client)
    if settings.json:
        settings.emit_json(order)
    else:
        for table in render.order_details(order, names):
            settings.out.print(table)


# watch


@watch_app.command("fills")
def watch_fills(
    ctx: typer.Context,
    after: Annotated[
        int | None, typer.Option(help="Replay the fills after this sequence first.")
    ] = None,
    account: Annotated[list[str] | None, typer.Option(help="Only this account's fills.")] = None,
    master_order: Annotated[
        str | None, typer.Option(help="Only this master order's fills; ends when it has ended.")
    ] = None,
    count: Annotated[int | None, typer.Option(help="Stop after this many fills.")] = None,
    rows: Annotated[int, typer.Option(help="Fills shown in the table.")] = 20,
) -> None:
    """Follow fills live (reconnecting and resuming on its own); Ctrl-C stops."""
    settings = settings_of(ctx)
    seen: list[Fill] = []
    heartbeat = 0
    with gateway(ctx) as client:
        names = {} if settings.json else account_names(client)
        events = client.fill_events(
            after_sequence=after or 0,
            live_only=after is None and master_order is None,
            account_ids=account or (),
            master_order_id=master_order or "",
            retry=RetryPolicy(max_backoff_s=2.0),
        )

        def table() -> RenderGroup:
            caption = f"{len(seen)} fills, stream at sequence {heartbeat} ({settings.target})"
            return RenderGroup(render.fills_table(seen[-rows:], names, caption))

        # A live table on a terminal; elsewhere the final table only.
        live = None
        if not settings.json and settings.out.is_terminal:
            live = Live(table(), console=settings.out, auto_refresh=False)
        try:
            if live is not None:
                live.start()
            for event in events:
                if isinstance(event, Heartbeat):
                    heartbeat = max(heartbeat, event.sequence)
                    if master_order and _all_seen(client.get_master_order(master_order), seen):
                        break
                else:
                    seen.append(event)
                    heartbeat = max(heartbeat, event.sequence)
                    if settings.json:
                        typer.echo(render.to_json_line(event))
                    if count is not None and len(seen) >= count:
                        break
                if live is not None:
                    live.update(table(), refresh=True)
        except KeyboardInterrupt:
            pass
        finally:
            events.close()
            if live is not None:
                live.update(table(), refresh=True)
                live.stop()
            elif not settings.json:
                settings.out.print(table())


# close


@app.command()
def close(
    ctx: typer.Context,
    master_order_id: str,
    fraction: Annotated[
        str | None, typer.Option(help="The part to close, in (0, 1]; 1 closes all.")
    ] = None,
    volume: Annotated[str | None, typer.Option(help="Lots to close.")] = None,
) -> None:
    """Close all or part of the positions a master order opened."""
    settings = settings_of(ctx)
    if fraction is None and volume is None:
        fraction = "1"
    with gateway(ctx) as client:
        order = client.close_master_position(
            master_order_id,
            fraction=decimal_option(fraction, "--fraction"),
            volume=decimal_option(volume, "--volume"),
        )
    if settings.json:
        settings.emit_json(order)
    else:
        settings.out.print(f"closing master order [bold]{order.master_order_id}[/bold] accepted")


def _all_seen(order: MasterOrder, seen: list[Fill]) -> bool:
    """The order is final and every fill of it has arrived. A heartbeat can predate the order's
    last fills (they were committed after it was sent): those still come on the stream."""
    if not order.state.is_final:
        return False
    return sum((f.volume for f in seen), Decimal(0)) >= order.filled_volume


def main() -> None:
    app(prog_name="mamctl")
