"""How mamctl shows things: rich tables for people, JSON for scripts."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from rich.table import Table
from rich.text import Text

from mam_client.types import (
    Account,
    Allocation,
    ChildOrder,
    Fill,
    Group,
    GroupMember,
    MasterOrder,
    Side,
    Signal,
    SignalState,
)


def to_json(value: Any) -> str:
    """value (dataclasses, tuples of them, mappings) as JSON: decimals and times as strings."""
    return json.dumps(jsonable(value), indent=2)


def to_json_line(value: Any) -> str:
    """value as one line of JSON (JSON Lines, for streams)."""
    return json.dumps(jsonable(value), separators=(",", ":"))


def jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(Decimal(str(value.total_seconds())))
    return value


def dec(value: Decimal | None) -> str:
    return "" if value is None else str(value)


def when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def millis(value: timedelta | None) -> str:
    return "" if value is None else f"{value.total_seconds() * 1000:.0f} ms"


def side(value: Side) -> Text:
    return Text(value.value, style="green" if value is Side.BUY else "red")


def new_table(title: str | None, *columns: str, right: Sequence[str] = ()) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left", overflow="fold")
    return table


def details(title: str, rows: Iterable[tuple[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value if isinstance(value, Text) else str(value))
    return table


def accounts_table(accounts: Iterable[Account]) -> Table:
    table = new_table(
        "Accounts",
        "ID", "NAME", "PLATFORM", "LOGIN", "SERVER", "STATE", "BALANCE", "EQUITY",
        right=("LOGIN", "BALANCE", "EQUITY"),
    )  # fmt: skip
    for a in accounts:
        snapshot = a.snapshot
        table.add_row(
            a.account_id,
            a.name,
            a.platform.value,
            str(a.login),
            a.server,
            a.state.value,
            dec(snapshot.balance if snapshot else a.initial_balance),
            dec(snapshot.equity if snapshot else None),
        )
    return table


def account_details(a: Account) -> Table:
    s = a.snapshot
    rows: list[tuple[str, Any]] = [
        ("id", a.account_id),
        ("name", a.name),
        ("platform", a.platform.value),
        ("login", a.login),
        ("server", a.server),
        ("currency", a.currency),
        ("state", a.state.value),
        ("margin mode", a.margin_mode.value),
        ("leverage", f"1:{a.leverage}"),
        ("initial balance", dec(a.initial_balance)),
    ]
    if s is not None:
        rows += [
            ("balance", dec(s.balance)),
            ("equity", dec(s.equity)),
            ("margin", dec(s.margin)),
            ("free margin", dec(s.free_margin)),
            ("margin level", dec(s.margin_level)),
            ("snapshot time", when(s.time)),
        ]
    rows += [(f"symbol {m.symbol}", m.broker_symbol) for m in a.symbol_mappings]
    rows += [("created", when(a.create_time)), ("updated", when(a.update_time))]
    return details(f"Account {a.name}", rows)


def groups_table(groups: Iterable[Group]) -> Table:
    table = new_table("Groups", "ID", "NAME", "METHOD", "MEMBERS", "MAGIC", right=("MEMBERS",))
    for g in groups:
        method = g.allocation.method.value if g.allocation.method else "EQUITY (default)"
        table.add_row(g.group_id, g.name, method, str(len(g.members)), str(g.magic))
    return table


def member_settings(m: GroupMember) -> str:
    parts = [
        f"{name}={value}"
        for name, value in (
            ("percentage", m.percentage),
            ("multiplier", m.lot_multiplier),
            ("lots", m.fixed_lots),
            ("risk", m.risk_percent),
            ("max", m.max_lots),
        )
        if value is not None
    ]
    if m.method is not None:
        parts.append(f"method={m.method.value}")
    return ", ".join(parts)


def group_details(g: Group, names: Mapping[str, str]) -> list[Table]:
    a = g.allocation
    header = details(
        f"Group {g.name}",
        [
            ("id", g.group_id),
            ("method", a.method.value if a.method else "EQUITY (default)"),
            ("below minimum", a.below_min_policy.value if a.below_min_policy else "SKIP (default)"),
            ("reference equity", dec(a.reference_equity)),
            ("reference account", a.reference_account_id),
            ("magic", g.magic),
            ("source", source_text(g, names)),
            ("created", when(g.create_time)),
            ("updated", when(g.update_time)),
        ],
    )
    members = new_table("Members", "ACCOUNT", "NAME", "SETTINGS")
    for m in g.members:
        members.add_row(m.account_id, names.get(m.account_id, ""), member_settings(m))
    return [header, members]


def allocation_table(allocation: Allocation, names: Mapping[str, str], title: str) -> Table:
    table = new_table(
        title,
        "ACCOUNT", "SYMBOL", "METHOD", "BASIS", "TARGET", "VOLUME", "CHILDREN", "REASONS",
        right=("BASIS", "TARGET", "VOLUME"),
    )  # fmt: skip
    for line in allocation.lines:
        volume = Text(str(line.volume), style="bold" if line.volume else "dim")
        table.add_row(
            names.get(line.account_id, line.account_id),
            line.symbol,
            line.method.value,
            dec(line.basis),
            _trim(line.target_volume),
            volume,
            " + ".join(str(v) for v in line.child_volumes) if len(line.child_volumes) > 1 else "",
            ", ".join(r.value for r in line.reasons),
        )
    table.caption = (
        f"requested {allocation.requested_volume}, allocated {allocation.allocated_volume}, "
        f"unallocated {allocation.unallocated_volume} ({allocation.method.value})"
    )
    table.caption_justify = "left"
    return table


def _trim(value: Decimal) -> str:
    """A 10-decimal target without its trailing zeros."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def orders_table(orders: Iterable[MasterOrder]) -> Table:
    table = new_table(
        "Master orders",
        "ID", "CREATED", "SYMBOL", "SIDE", "VOLUME", "STATE", "FILLED", "AVG PRICE", "CHILDREN",
        right=("VOLUME", "FILLED", "AVG PRICE"),
    )  # fmt: skip
    for o in orders:
        table.add_row(
            o.master_order_id,
            when(o.create_time),
            o.spec.symbol,
            side(o.spec.side),
            str(o.spec.volume),
            o.state.value,
            str(o.filled_volume),
            dec(o.average_fill_price),
            f"{o.filled_child_count} filled, {o.rejected_child_count} rejected of {o.child_count}",
        )
    return table


def order_details(o: MasterOrder, names: Mapping[str, str]) -> list[Table]:
    e = o.execution
    rows: list[tuple[str, Any]] = [
        ("id", o.master_order_id),
        ("client order id", o.spec.client_order_id),
        ("group", o.spec.group_id),
        ("order", Text.assemble(side(o.spec.side), f" {o.spec.volume} {o.spec.symbol} ")),
        ("type", o.spec.type.value),
        ("state", o.state.value + (f" ({o.state_reason})" if o.state_reason else "")),
        ("filled", f"{o.filled_volume} at {dec(o.average_fill_price) or '-'}"),
        ("children", f"{o.filled_child_count} filled, {o.rejected_child_count} rejected"),
        ("magic", o.magic),
        ("created", when(o.create_time)),
    ]
    if o.spec.stop_loss is not None:
        rows.append(("stop loss", o.spec.stop_loss))
    if o.spec.take_profit is not None:
        rows.append(("take profit", o.spec.take_profit))
    if e is not None:
        rows += [
            ("dispatch skew", millis(e.dispatch_skew)),
            ("submit to last fill", millis(e.submit_to_last_fill)),
            ("avg slippage", f"{dec(e.average_slippage_points)} points"),
            ("max slippage", f"{dec(e.max_slippage_points)} points"),
        ]
    return [details(f"Master order {o.master_order_id}", rows), children_table(o.children, names)]


def children_table(children: Iterable[ChildOrder], names: Mapping[str, str]) -> Table:
    table = new_table(
        "Child orders",
        "ACCOUNT", "SYMBOL", "VOLUME", "STATE", "FILLED", "REQUESTED", "FILL PRICE", "SLIPPAGE",
        "RETCODE", "STATUS",
        right=("VOLUME", "FILLED", "REQUESTED", "FILL PRICE", "SLIPPAGE", "RETCODE"),
    )  # fmt: skip
    for c in children:
        table.add_row(
            names.get(c.account_id, c.account_id),
            c.symbol,
            str(c.volume),
            c.state.value,
            str(c.filled_volume),
            dec(c.requested_price),
            dec(c.fill_price),
            dec(c.slippage_points),
            str(c.retcode or ""),
            c.status_text,
        )
    return table


def fills_table(fills: Sequence[Fill], names: Mapping[str, str], caption: str) -> Table:
    table = new_table(
        "Fills",
        "SEQ", "TIME", "ACCOUNT", "SYMBOL", "SIDE", "VOLUME", "PRICE", "SLIPPAGE", "MASTER ORDER",
        right=("SEQ", "VOLUME", "PRICE", "SLIPPAGE"),
    )  # fmt: skip
    for f in fills:
        table.add_row(
            str(f.sequence),
            when(f.time),
            names.get(f.account_id, f.account_id),
            f.symbol,
            side(f.side),
            str(f.volume),
            dec(f.price),
            dec(f.slippage_points),
            f.master_order_id,
        )
    table.caption = caption
    table.caption_justify = "left"
    return table


def source_text(g: Group, names: Mapping[str, str]) -> str:
    """The group's source account (mirroring): who it copies, and how."""
    s = g.source
    if s is None:
        return "none"
    name = names.get(s.account_id)
    who = f"{s.account_id} ({name})" if name else s.account_id
    age = "" if s.max_signal_age is None else f", max signal age {age_text(s.max_signal_age)}"
    return f"{who}, {'PAUSED' if s.paused else 'copying'}{age}"


def age_text(value: timedelta) -> str:
    seconds = Decimal(str(value.total_seconds()))
    return f"{seconds.normalize():f}s"


_SIGNAL_STATE_STYLES = {
    SignalState.COPIED: "green",
    SignalState.FAILED: "red",
    SignalState.SKIPPED: "yellow",
}


def signals_table(signals: Iterable[Signal], names: Mapping[str, str]) -> Table:
    table = new_table(
        "Signals",
        "SEQ", "SOURCE TIME", "GROUP", "KIND", "EVENT", "SIDE", "VOLUME", "SYMBOL", "STATE",
        "DETAIL",
        right=("SEQ", "VOLUME"),
    )  # fmt: skip
    for s in signals:
        table.add_row(
            str(s.sequence),
            when(s.source_time),
            names.get(s.group_id, s.group_id),
            s.kind.value,
            s.event_id,
            side(s.side),
            dec(s.volume),
            s.symbol,
            Text(s.state.value, style=_SIGNAL_STATE_STYLES.get(s.state, "")),
            s.detail,
        )
    return table


def signal_line(s: Signal, names: Mapping[str, str]) -> str:
    """One signal as one line of text (`mamctl signals watch`)."""
    parts = [
        f"#{s.sequence}",
        when(s.observe_time),
        names.get(s.group_id, s.group_id),
        s.kind.value,
        s.event_id,
        f"{s.side.value} {dec(s.volume)} {s.symbol}",
    ]
    if s.fraction is not None:
        parts.append(f"fraction {dec(s.fraction)}")
    if s.price is not None:
        parts.append(f"@ {dec(s.price)}")
    if s.stop_loss is not None or s.take_profit is not None:
        parts.append(f"sl {dec(s.stop_loss) or '-'} tp {dec(s.take_profit) or '-'}")
    parts.append(s.state.value)
    if s.detail:
        parts.append(s.detail)
    return "  ".join(parts)
