"""mamctl: operate a mam-gateway from the shell (accounts, groups, orders, fills)."""

from __future__ import annotations

import csv
import functools
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.console import Group as RenderGroup
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mam_client import _convert
from mam_client._channel import TlsConfig
from mam_client._fills import RetryPolicy
from mam_client.cli import admin, cluster, render, statement
from mam_client.cli.failure import error_text, fail
from mam_client.cli.lookup import AccountIds, find_account_id, find_group
from mam_client.cli.symbol_book import SymbolBook
from mam_client.errors import MamError
from mam_client.sync_client import SyncMamClient
from mam_client.types import (
    AccountState,
    AllocationMethod,
    AllocationSettings,
    BelowMinPolicy,
    CopyDirection,
    CopyOptions,
    Fill,
    Group,
    GroupMember,
    Heartbeat,
    MarginMode,
    MasterOrder,
    MasterOrderState,
    MinVolumePolicy,
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
app.add_typer(cluster.cluster_app, name="cluster")
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
    _symbols: SymbolBook | None = None

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

    def symbols(self) -> SymbolBook:
        """The symbols' volume steps and digits, read from the gateway when a figure first
        needs them."""
        if self._symbols is None:
            self._symbols = SymbolBook(
                symbols=lambda: self.client().list_symbols(page_size=1000),
                accounts=lambda: self.client().list_accounts(page_size=1000),
            )
        return self._symbols

    def emit_json(self, value: object, *, symbol: str = "") -> None:
        """`symbol`: the gateway symbol of a value that does not name its own."""
        typer.echo(render.to_json(value, self.symbols(), symbol=symbol))


@app.callback()
def main_options(
    ctx: typer.Context,
    target: Annotated[
        str, typer.Option(envvar="MAM_TARGET", help="The gateway's HOST:PORT.")
    ] = "127.0.0.1:50051",
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="MAM_API_KEY",
            help="Your API key, sent as a bearer token (make run writes an admin key to"
            " var/admin.key).",
        ),
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
    except (MamError, ValueError, OSError) as error:
        fail(settings.err, error)


_E = TypeVar("_E", bound=StrEnum)


def choice(enum_type: type[_E], *names: str, help: str | None = None) -> Any:
    """A typer.Option taking one of enum_type's values, in any case, but UNSPECIFIED: the API's
    "not set", which is what leaving the option out means, never a choice to show."""
    values = [m.value.lower() for m in enum_type if m.value != "UNSPECIFIED"]

    def parse(value: str | _E) -> _E:
        if isinstance(value, enum_type):  # the default
            return value
        member = enum_type.__members__.get(str(value).strip().upper())
        if member is None or member.value == "UNSPECIFIED":
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(values)}")
        return member

    return typer.Option(
        *names,
        parser=parse,
        metavar="|".join(values),
        help=help,
        autocompletion=lambda: values,
    )


_P = ParamSpec("_P")


def _follow_command(command: Callable[_P, None]) -> Callable[_P, None]:
    """A command that follows a stream until stopped: Ctrl-C or SIGTERM ends it with exit 0
    whenever it comes, while it connects as well as while it follows."""

    @functools.wraps(command)
    def follow(*args: _P.args, **kwargs: _P.kwargs) -> None:
        try:
            with _sigterm_interrupts():
                command(*args, **kwargs)
        except KeyboardInterrupt:
            pass

    return follow


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


AccountArgument = Annotated[str, typer.Argument(metavar="ACCOUNT", help="Id or name.")]


@accounts_app.command("show")
def accounts_show(ctx: typer.Context, account: AccountArgument) -> None:
    """Show one account with its latest balance and equity."""
    settings = settings_of(ctx)
    with gateway(ctx) as client:
        found = client.get_account(find_account_id(client, account))
    if settings.json:
        settings.emit_json(found)
    else:
        settings.out.print(render.account_details(found))


@accounts_app.command("delete")
def accounts_delete(
    ctx: typer.Context,
    account: AccountArgument,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Retire a flat account: out of the lists and its groups, never traded again; its history
    stays for statements. Refused while it holds positions or working orders."""
    settings = settings_of(ctx)
    with gateway(ctx) as client:
        account_id = find_account_id(client, account)
        if not yes and sys.stdin.isatty():
            name = client.get_account(account_id).name
            typer.confirm(f"Delete account {name} ({account_id}) at {settings.target}?", abort=True)
        client.delete_account(account_id)
    if settings.json:
        settings.emit_json({"account_id": account_id, "deleted": True})
    else:
        settings.out.print(f"deleted account {account_id}", highlight=False)


@accounts_app.command("create")
def accounts_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Unique in the gateway.")],
    platform: Annotated[Platform, choice(Platform)] = Platform.SIMULATED,
    login: Annotated[int, typer.Option(help="The broker login.")] = 0,
    server: Annotated[str, typer.Option(help="The broker's trade server.")] = "",
    currency: Annotated[str, typer.Option()] = "USD",
    balance: Annotated[
        str | None, typer.Option(help="SIMULATED: the opening deposit (decimal).")
    ] = None,
    leverage: Annotated[int | None, typer.Option()] = None,
    margin_mode: Annotated[MarginMode | None, choice(MarginMode)] = None,
    state: Annotated[AccountState | None, choice(AccountState)] = None,
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
                    f"[red]error:[/red] {csv_file}:{number} ({account.name}): "
                    f"{escape(error_text(error))}"
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


# A member spec's sizing keys (decimal values) and the GroupMember field of each.
_SIZING_KEYS = {
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
# Its copy option keys that are flags: the key alone means true (or key=true|false).
_FLAG_KEYS = {
    "reverse": "reverse",
    "no_stops": "skip_stops",
    "no_pending": "skip_pending_orders",
    "close_only": "close_only",
}
_DIRECTIONS = {
    "both": CopyDirection.BOTH,
    "buy": CopyDirection.BUY_ONLY,
    "buy_only": CopyDirection.BUY_ONLY,
    "sell": CopyDirection.SELL_ONLY,
    "sell_only": CopyDirection.SELL_ONLY,
}
_TRUE, _FALSE = frozenset({"true", "yes", "1", "on"}), frozenset({"false", "no", "0", "off"})
_MEMBER_KEYS = (
    "percentage, multiplier, lots, risk, max, method; copy options: reverse, "
    "direction=buy|sell|both, no_stops, no_pending, min_volume=LOTS, min_policy=skip|raise, "
    "max_slippage=POINTS, max_age=SECONDS (5s, 500ms, 2m), close_only"
)


def parse_member(spec: str) -> GroupMember:
    """ACCOUNT_ID[:key=value,...]: the member's sizing settings (percentage, multiplier, lots,
    risk, max, method) and copy options (reverse, direction, no_stops, no_pending, min_volume,
    min_policy, max_slippage, max_age, close_only). A flag (reverse, no_stops, no_pending,
    close_only) given without "=" is true. Every key is checked here; whether the values make
    sense together is the gateway's to say."""
    account_id, _, options = spec.partition(":")
    values: dict[str, Decimal | None] = {}
    method: AllocationMethod | None = None
    copy: dict[str, Any] = {}

    def bad(message: str) -> typer.BadParameter:
        return typer.BadParameter(f"{message} in {spec!r}", param_hint="--member")

    for item in filter(None, (i.strip() for i in options.split(","))):
        key, sep, value = item.partition("=")
        key, value = key.strip().lower().replace("-", "_"), value.strip()
        if key in _FLAG_KEYS:
            flag = value.lower()
            if sep and flag not in _TRUE | _FALSE:
                raise bad(f"{key} is a flag: {key}, {key}=true or {key}=false, not {value!r}")
            copy[_FLAG_KEYS[key]] = not sep or flag in _TRUE
            continue
        if not sep:
            raise bad(f"{item!r} is not key=value")
        if key == "method":
            try:
                method = AllocationMethod(value.upper())
            except ValueError:
                raise bad(f"unknown method {value!r}") from None
        elif key in _SIZING_KEYS:
            values[_SIZING_KEYS[key]] = decimal_option(value, "--member")
        elif key == "direction":
            if value.lower() not in _DIRECTIONS:
                raise bad(f"direction must be buy, sell or both, not {value!r}")
            copy["direction"] = _DIRECTIONS[value.lower()]
        elif key in ("min_volume", "min"):
            copy["min_volume"] = decimal_option(value, "--member")
        elif key in ("min_policy", "min_volume_policy"):
            try:
                copy["min_volume_policy"] = MinVolumePolicy(value.upper())
            except ValueError:
                raise bad(f"min_policy must be skip or raise, not {value!r}") from None
            if copy["min_volume_policy"] is MinVolumePolicy.UNSPECIFIED:
                raise bad(f"min_policy must be skip or raise, not {value!r}")
        elif key in ("max_slippage", "max_slippage_points"):
            if not re.fullmatch(r"\d+", value):
                raise bad(f"max_slippage must be a whole number of points, not {value!r}")
            copy["max_slippage_points"] = int(value)
        elif key in ("max_age", "max_signal_age"):
            copy["max_signal_age"] = duration_option(value, "--member")
        else:
            raise bad(f"unknown member setting {key!r} ({_MEMBER_KEYS})")
    if not account_id.strip():
        raise typer.BadParameter(f"{spec!r} names no account", param_hint="--member")
    return GroupMember(
        account_id=account_id.strip(),
        method=method,
        copy_options=CopyOptions(**copy) if copy else None,
        risk_limits=None,  # not given on the command line: **values holds the sizing only
        **values,
    )


MemberOption = Annotated[
    list[str] | None,
    typer.Option(
        "--member",
        help=f"ACCOUNT[:key=value,...] (the account by id or name), repeatable; keys: "
        f"{_MEMBER_KEYS}. "
        "Example: acc_1:multiplier=0.5,reverse,direction=buy,min_volume=0.05,min_policy=raise",
    ),
]
MethodOption = Annotated[AllocationMethod | None, choice(AllocationMethod)]
BelowMinOption = Annotated[BelowMinPolicy | None, choice(BelowMinPolicy)]
ReferenceAccountOption = Annotated[
    str | None,
    typer.Option(help="EQUITY_RATIO: the account (id or name) whose equity is the reference."),
]


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
    reference_account: ReferenceAccountOption = None,
    magic: Annotated[int | None, typer.Option(help="Assigned by the gateway when unset.")] = None,
) -> None:
    """Create a group of accounts."""
    settings = settings_of(ctx)
    members = [parse_member(m) for m in member or []]
    equity = decimal_option(reference_equity, "--reference-equity")
    with gateway(ctx) as client:
        account_id = AccountIds(client)
        new = NewGroup(
            name=name,
            members=tuple(replace(m, account_id=account_id(m.account_id)) for m in members),
            allocation=AllocationSettings(
                method=method,
                below_min_policy=below_min,
                reference_equity=equity,
                reference_account_id=account_id(reference_account) if reference_account else "",
            ),
            magic=magic,
        )
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
    reference_account: ReferenceAccountOption = None,
    member: Annotated[
        list[str] | None,
        typer.Option(
            "--member", help="Replaces all members: ACCOUNT[:key=value,...] (id or name)."
        ),
    ] = None,
    add_member: Annotated[
        list[str] | None,
        typer.Option(help="Adds (or replaces) one member: ACCOUNT[:key=value,...]."),
    ] = None,
    remove_member: Annotated[
        list[str] | None, typer.Option(help="Removes an account (id or name).")
    ] = None,
) -> None:
    """Change a group's name, allocation settings or members; the rest stays as it is."""
    settings = settings_of(ctx)
    with gateway(ctx) as client:
        current = find_group(client, group)
        account_id = AccountIds(client)
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
                else account_id(reference_account)
                if reference_account
                else "",
            )
        members = None
        if member is not None or add_member or remove_member:
            # Members already in the group are sent back as they are (their own risk limits
            # and copy options with them): the gateway replaces the whole list.
            def given(spec: str) -> GroupMember:
                parsed = parse_member(spec)
                return replace(parsed, account_id=account_id(parsed.account_id))

            base = [given(m) for m in member] if member is not None else list(current.members)
            for spec in add_member or []:
                added = given(spec)
                base = [m for m in base if m.account_id != added.account_id] + [added]
            removed = {account_id(a) for a in remove_member or []}
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
        for listed in client.list_signals(
            group_id=group_id, after_sequence=after, page_size=min(limit, 1000)
        ):
            signals.append(listed)
            if len(signals) >= limit:
                break
        names = {} if settings.json or json_output else _group_names(client)
    if settings.json or json_output:
        settings.emit_json(signals)
    else:
        settings.out.print(render.signals_table(signals, names, settings.symbols()))


@signals_app.command("watch")
@_follow_command
def signals_watch(
    ctx: typer.Context,
    group: Annotated[str | None, typer.Option(help="Only this group's (id or name).")] = None,
    after: Annotated[
        int | None, typer.Option(help="Replay the signals after this sequence first.")
    ] = None,
    count: Annotated[int | None, typer.Option(help="Stop after this many.")] = None,
) -> None:
    """Follow signals live, a line each as it is stored and again as it is settled
    (reconnecting and resuming on its own); Ctrl-C or SIGTERM stops it (exit 0)."""
    settings = settings_of(ctx)
    seen = 0
    with gateway(ctx) as client:
        group_id = find_group(client, group).group_id if group else ""
        names = {} if settings.json else _group_names(client)
        if after is None:
            # Live only: from the last signal stored now.
            after = 0
            for listed in client.list_signals(group_id=group_id, page_size=1000):
                after = listed.sequence
        signals = client.signals(
            group_id=group_id, after_sequence=after, retry=RetryPolicy(max_backoff_s=2.0)
        )
        try:
            for stored in signals:
                _echo_line(
                    render.to_json_line(stored, settings.symbols())
                    if settings.json
                    else render.signal_line(stored, names, settings.symbols())
                )
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
SideOption = Annotated[Side, choice(Side)]
VolumeOption = Annotated[str, typer.Option(help="Total lots, e.g. 1.00.")]
TypeOption = Annotated[OrderType, choice(OrderType, "--type")]
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
        settings.emit_json(allocation, symbol=symbol)
    else:
        asked = render.volume(allocation.requested_volume, settings.symbols().of(symbol))
        title = f"Preview: {side.value} {asked} {symbol} over {found.name}"
        settings.out.print(
            render.allocation_table(allocation, names, title, settings.symbols(), symbol=symbol)
        )


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
    accept_partial: Annotated[
        bool,
        typer.Option(
            "--accept-partial", help="Exit 0 when the order ends PARTIALLY_FILLED (not 3)."
        ),
    ] = False,
) -> None:
    """Submit a master order to a group.

    Exit codes, by the state the order is in at the end (with --wait, its final state): 0
    FILLED or still executing; 3 PARTIALLY_FILLED (some children filled, others rejected, e.g.
    NO_MONEY; 0 with --accept-partial); 4 REJECTED, CANCELLED or FAILED (nothing filled);
    1 the gateway refused the order or could not be reached; 2 a usage error.
    """
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
    groups = {found.group_id: found.name}
    code = order_exit_code(order, accept_partial=accept_partial)
    if settings.json:
        settings.emit_json({"master_order": order, "replayed": submission.replayed})
        raise typer.Exit(code)
    if submission.replayed:
        settings.out.print("[yellow]already submitted under this client order id:[/yellow]")
    settings.out.print(
        f"master order [bold]{order.master_order_id}[/bold] {order.state.value}: "
        f"{order.spec.side.value} "
        f"{render.volume(order.spec.volume, settings.symbols().of(order.spec.symbol))} "
        f"{order.spec.symbol} "
        f"over {order.child_count} child orders"
    )
    if wait:
        for table in render.order_details(order, names, settings.symbols(), groups):
            settings.out.print(table)
    elif order.allocation is not None:
        settings.out.print(
            render.allocation_table(
                order.allocation, names, "Allocation", settings.symbols(), symbol=order.spec.symbol
            )
        )
    raise typer.Exit(code)


# submit's exit codes for how its order ended (its help, clients/python/README.md).
EXIT_PARTIALLY_FILLED = 3
EXIT_NOT_FILLED = 4
_NOT_FILLED = frozenset(
    {MasterOrderState.REJECTED, MasterOrderState.CANCELLED, MasterOrderState.FAILED}
)


def order_exit_code(order: MasterOrder, *, accept_partial: bool) -> int:
    """0 for an order FILLED or not ended yet; EXIT_PARTIALLY_FILLED (unless accept_partial) or
    EXIT_NOT_FILLED for one that ended with less than it asked for."""
    if order.state is MasterOrderState.PARTIALLY_FILLED and not accept_partial:
        return EXIT_PARTIALLY_FILLED
    if order.state in _NOT_FILLED:
        return EXIT_NOT_FILLED
    return 0


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
    group: Annotated[
        str | None, typer.Option(help="Only this group's orders (id or name).")
    ] = None,
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
        groups = {} if settings.json else _group_names(client)
    if settings.json:
        settings.emit_json(orders)
    else:
        settings.out.print(render.orders_table(orders, settings.symbols(), groups))


@orders_app.command("show")
def orders_show(ctx: typer.Context, master_order_id: str) -> None:
    """Show a master order with its child orders, fill prices and slippage."""
    settings = settings_of(ctx)
    with gateway(ctx) as client:
        order = client.get_master_order(master_order_id)
        names = {} if settings.json else account_names(client)
        groups = {} if settings.json else _group_names(client)
    if settings.json:
        settings.emit_json(order)
    else:
        for table in render.order_details(order, names, settings.symbols(), groups):
            settings.out.print(table)


# watch


@watch_app.command("fills")
@_follow_command
def watch_fills(
    ctx: typer.Context,
    after: Annotated[
        int | None, typer.Option(help="Replay the fills after this sequence first.")
    ] = None,
    account: Annotated[
        list[str] | None, typer.Option(help="Only this account's fills (id or name; repeat).")
    ] = None,
    master_order: Annotated[
        str | None, typer.Option(help="Only this master order's fills; ends when it has ended.")
    ] = None,
    count: Annotated[int | None, typer.Option(help="Stop after this many fills.")] = None,
    rows: Annotated[int, typer.Option(help="Fills shown in the table.")] = 20,
) -> None:
    """Follow fills live (reconnecting and resuming on its own). On a terminal a live table;
    piped or redirected, a line per fill as it arrives, then a summary line; with --json, a
    JSON line per fill. Ctrl-C or SIGTERM stops it (exit 0)."""
    settings = settings_of(ctx)
    seen: list[Fill] = []
    heartbeat = 0
    with gateway(ctx) as client:
        names = {} if settings.json else account_names(client)
        account_id = AccountIds(client)
        events = client.fill_events(
            after_sequence=after or 0,
            live_only=after is None and master_order is None,
            account_ids=[account_id(a) for a in account or ()],
            master_order_id=master_order or "",
            retry=RetryPolicy(max_backoff_s=2.0),
        )

        def summary() -> str:
            return f"{len(seen)} fills, stream at sequence {heartbeat} ({settings.target})"

        def table() -> RenderGroup:
            return RenderGroup(
                render.fills_table(seen[-rows:], names, summary(), settings.symbols())
            )

        # A live table on a terminal; elsewhere lines, each written out as it comes: a file
        # or a pipe holds every fill received, however the command ends.
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
                        _echo_line(render.to_json_line(event, settings.symbols()))
                    elif live is None:
                        _echo_line(render.fill_line(event, names, settings.symbols()))
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
                _echo_line(summary())


def _echo_line(line: str) -> None:
    """A line on stdout, written out at once (stdout is block-buffered into files and pipes)."""
    typer.echo(line)
    sys.stdout.flush()


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (kill, a service manager, a closing terminal) stops a follow command as Ctrl-C
    does: the stream is closed and what was received is written out. Only the main thread
    can take signals; elsewhere (an embedding program) SIGTERM stays as it was."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        # None: a handler set outside Python, which cannot be put back; the default then.
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


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
        names = {} if settings.json else account_names(client)
    if settings.json:
        settings.emit_json(order)
    else:
        # What was asked, what the accounts' lot steps allow and why: a close of 0.50 that
        # trades 0.45 is not a shortfall.
        for part in render.close_summary(order, names, settings.symbols()):
            settings.out.print(part)


def _all_seen(order: MasterOrder, seen: list[Fill]) -> bool:
    """The order is final and every fill of it has arrived. A heartbeat can predate the order's
    last fills (they were committed after it was sent): those still come on the stream."""
    if not order.state.is_final:
        return False
    return sum((f.volume for f in seen), Decimal(0)) >= order.filled_volume


def main() -> None:
    # From the start: a SIGTERM while a command connects ends it as Ctrl-C would, not silently.
    with _sigterm_interrupts():
        app(prog_name="mamctl")
