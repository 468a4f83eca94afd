"""How mamctl shows things: rich tables for people, JSON for scripts.

Every figure goes through mam_client.figures, in the tables and in the JSON alike: volumes to
their symbol's volume step, prices to its digits, money to 2 places, points to 1, no negative
zero. The symbol's step and digits come from a SymbolBook (the gateway's ListSymbols); a
figure of a symbol it does not know is shown as the gateway sent it.

Tables fit the console (fitted_table.py): figures, ids and times are never split across
lines; on a narrow console an id column beside its name, or a time's date, goes first.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from mam_client import figures
from mam_client.cli.fitted_table import Cell, Column, FittedTable
from mam_client.cli.symbol_book import NO_SYMBOLS, SymbolBook
from mam_client.figures import UNKNOWN, SymbolPrecision
from mam_client.types import (
    Account,
    AccountSnapshot,
    Allocation,
    AllocationLine,
    AllocationMethod,
    AllocationReason,
    ChildOrder,
    CopyDirection,
    CopyOptions,
    ExecutionStats,
    Fill,
    Group,
    GroupMember,
    MasterOrder,
    MinVolumePolicy,
    OrderSpec,
    Side,
    Signal,
    SignalState,
)

# -- JSON ---------------------------------------------------------------------------------------


def to_json(value: Any, book: SymbolBook = NO_SYMBOLS, *, symbol: str = "") -> str:
    """value (dataclasses, tuples of them, mappings) as JSON: decimals and times as strings,
    figures as figures.py shows them. `symbol`: the gateway symbol of a value that does not
    name its own (an allocation preview)."""
    return json.dumps(jsonable(value, book, symbol=symbol), indent=2)


def to_json_line(value: Any, book: SymbolBook = NO_SYMBOLS, *, symbol: str = "") -> str:
    """value as one line of JSON (JSON Lines, for streams)."""
    return json.dumps(jsonable(value, book, symbol=symbol), separators=(",", ":"))


# What each decimal field of the client's values is, for its figure. A field not named here
# is shown exactly as the gateway sent it (a multiplier, a percentage, an unrounded target).
_VOLUME, _PRICE, _MONEY, _POINTS = "volume", "price", "money", "points"
_FIELD_KINDS: dict[type, dict[str, str]] = {
    Account: {"initial_balance": _MONEY},
    AccountSnapshot: {
        "balance": _MONEY,
        "equity": _MONEY,
        "margin": _MONEY,
        "free_margin": _MONEY,
        "margin_level": _MONEY,
    },
    OrderSpec: {
        "volume": _VOLUME,
        "price": _PRICE,
        "stop_limit_price": _PRICE,
        "stop_loss": _PRICE,
        "take_profit": _PRICE,
    },
    Allocation: {
        "requested_volume": _VOLUME,
        "allocated_volume": _VOLUME,
        "unallocated_volume": _VOLUME,
        "reference_equity": _MONEY,
    },
    AllocationLine: {"volume": _VOLUME, "child_volumes": _VOLUME, "entry_price": _PRICE},
    ChildOrder: {
        "volume": _VOLUME,
        "filled_volume": _VOLUME,
        "requested_price": _PRICE,
        "fill_price": _PRICE,
        "slippage_points": _POINTS,
    },
    ExecutionStats: {"average_slippage_points": _POINTS, "max_slippage_points": _POINTS},
    MasterOrder: {"filled_volume": _VOLUME, "average_fill_price": _PRICE},
    Fill: {
        "volume": _VOLUME,
        "price": _PRICE,
        "requested_price": _PRICE,
        "slippage_points": _POINTS,
    },
    Signal: {
        "volume": _VOLUME,
        "price": _PRICE,
        "stop_limit_price": _PRICE,
        "stop_loss": _PRICE,
        "take_profit": _PRICE,
    },
}
# Allocation methods whose basis is money (the account's equity, balance or free margin).
_MONEY_BASES = frozenset(
    {
        AllocationMethod.EQUITY,
        AllocationMethod.BALANCE,
        AllocationMethod.FREE_MARGIN,
        AllocationMethod.EQUITY_RATIO,
        AllocationMethod.PERCENT_RISK,
    }
)


def jsonable(value: Any, book: SymbolBook = NO_SYMBOLS, *, symbol: str = "") -> Any:
    return _jsonable(value, book, (symbol, ""))


def _jsonable(value: Any, book: SymbolBook, where: tuple[str, str]) -> Any:
    """`where`: the (symbol, account id) the figures inside value are of."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        where = _where(value, where)
        kinds = _FIELD_KINDS.get(type(value), {})
        result = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            kind = kinds.get(f.name)
            result[f.name] = (
                _jsonable(item, book, where)
                if kind is None
                else _figure_json(item, kind, book, where)
            )
        return result
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, book, where) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, book, where) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return figures.plain(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(Decimal(str(value.total_seconds())))
    return value


def _where(value: Any, outer: tuple[str, str]) -> tuple[str, str]:
    """The symbol (and the account trading it) a value's figures are of."""
    if isinstance(value, MasterOrder):
        return value.spec.symbol, ""
    symbol = getattr(value, "symbol", None)
    if isinstance(symbol, str) and symbol:
        account = getattr(value, "account_id", None) or getattr(value, "source_account_id", "")
        return symbol, account if isinstance(account, str) else ""
    return outer


def _figure_json(value: Any, kind: str, book: SymbolBook, where: tuple[str, str]) -> Any:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return [_figure_json(v, kind, book, where) for v in value]
    return figures.plain(_figure(value, kind, book.of(*where)))


def _figure(value: Decimal, kind: str, precision: SymbolPrecision) -> Decimal:
    if kind == _VOLUME:
        return precision.volume(value)
    if kind == _PRICE:
        return precision.price(value)
    if kind == _MONEY:
        return figures.money(value)
    return figures.points(value)


# -- figures as text ----------------------------------------------------------------------------


def dec(value: Decimal | None) -> str:
    """A decimal as it came (no exponent, no negative zero); "" for None."""
    return "" if value is None else figures.plain(value)


def money(value: Decimal | None) -> str:
    return "" if value is None else figures.money_text(value)


def volume(value: Decimal | None, precision: SymbolPrecision = UNKNOWN) -> str:
    return "" if value is None else precision.volume_text(value)


def price(value: Decimal | None, precision: SymbolPrecision = UNKNOWN) -> str:
    return "" if value is None else precision.price_text(value)


def points(value: Decimal | None) -> str:
    return "" if value is None else figures.points_text(value)


def when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def clock(value: datetime | None) -> str:
    """A time of day only: `when` abbreviated for a narrow console."""
    return "" if value is None else value.astimezone().strftime("%H:%M:%S")


def millis(value: timedelta | None) -> str:
    return "" if value is None else f"{value.total_seconds() * 1000:.0f} ms"


def side(value: Side) -> Text:
    return Text(value.value, style="green" if value is Side.BUY else "red")


def named(key: str, names: Mapping[str, str]) -> str:
    """An account's or group's name, or its id when the name is not known."""
    return names.get(key) or key


def new_table(title: str | None, *columns: str, right: Sequence[str] = ()) -> Table:
    """A plain rich table (for tables with no figures, such as admin.py's)."""
    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left", overflow="fold")
    return table


def details(title: str, rows: Iterable[tuple[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value if isinstance(value, Text) else str(value))
    return table


def _column(header: str, cells: Sequence[Cell], **options: Any) -> Column:
    return Column(header, list(cells), **options)


def _figures(header: str, cells: Sequence[Cell], **options: Any) -> Column:
    return Column(header, list(cells), numeric=True, **options)


def _times(header: str, values: Sequence[datetime | None]) -> Column:
    """Times, abbreviated to the time of day on a narrow console."""
    return Column(header, [when(v) for v in values], short=(header, [clock(v) for v in values]))


# -- accounts and groups ------------------------------------------------------------------------


def accounts_table(accounts: Iterable[Account]) -> FittedTable:
    rows = list(accounts)
    return FittedTable(
        "Accounts",
        [
            _column("ID", [a.account_id for a in rows]),
            _column("NAME", [a.name for a in rows]),
            _column("PLATFORM", [a.platform.value for a in rows]),
            _figures("LOGIN", [str(a.login) for a in rows]),
            _column("SERVER", [a.server for a in rows]),
            _column("STATE", [a.state.value for a in rows]),
            _column("CCY", [a.currency for a in rows]),
            _figures("BALANCE", [money(_balance(a)) for a in rows]),
            _figures("EQUITY", [money(a.snapshot.equity if a.snapshot else None) for a in rows]),
        ],
        shrink=[("drop", "SERVER"), ("drop", "PLATFORM"), ("drop", "STATE"), ("drop", "ID")],
    )


def _balance(a: Account) -> Decimal | None:
    return a.snapshot.balance if a.snapshot else a.initial_balance


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
        ("initial balance", money(a.initial_balance)),
    ]
    if s is not None:
        rows += [
            ("balance", money(s.balance)),
            ("equity", money(s.equity)),
            ("margin", money(s.margin)),
            ("free margin", money(s.free_margin)),
            ("margin level", f"{money(s.margin_level)}%" if s.margin_level is not None else ""),
            ("snapshot time", when(s.time)),
        ]
    rows += [(f"symbol {m.symbol}", m.broker_symbol) for m in a.symbol_mappings]
    rows += [("created", when(a.create_time)), ("updated", when(a.update_time))]
    return details(f"Account {a.name}", rows)


def groups_table(groups: Iterable[Group]) -> FittedTable:
    rows = list(groups)
    return FittedTable(
        "Groups",
        [
            _column("ID", [g.group_id for g in rows]),
            _column("NAME", [g.name for g in rows]),
            _column(
                "METHOD",
                [g.allocation.method.value if g.allocation.method else "EQUITY" for g in rows],
            ),
            _figures("MEMBERS", [str(len(g.members)) for g in rows]),
            _figures("MAGIC", [str(g.magic) for g in rows]),
        ],
        shrink=[("drop", "MAGIC"), ("drop", "ID")],
    )


def member_settings(m: GroupMember) -> str:
    parts = [
        f"{name}={dec(value)}"
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


_DIRECTIONS = {CopyDirection.BUY_ONLY: "buy only", CopyDirection.SELL_ONLY: "sell only"}


def copy_text(options: CopyOptions | None) -> str:
    """A member's copy options in a few words ("reverse, buy only, min 0.05 raise"); empty
    when it copies every order as it is."""
    if options is None:
        return ""
    parts = []
    if options.close_only:
        parts.append("close only")
    if options.reverse:
        parts.append("reverse")
    if options.direction in _DIRECTIONS:
        parts.append(_DIRECTIONS[options.direction])
    if options.skip_stops:
        parts.append("no SL/TP")
    if options.skip_pending_orders:
        parts.append("no pending")
    if options.min_volume is not None:
        policy = options.min_volume_policy
        parts.append(
            f"min {dec(options.min_volume)} "
            f"{'raise' if policy is MinVolumePolicy.RAISE else 'skip'}"
        )
    if options.max_slippage_points is not None:
        parts.append(f"slippage {options.max_slippage_points} pt")
    if options.max_signal_age is not None:
        parts.append(f"age {_seconds(options.max_signal_age)}")
    return ", ".join(parts)


def _seconds(value: timedelta) -> str:
    """5s, 0.25s, 90s: for people, so a float's digits are enough."""
    return f"{value.total_seconds():g}s"


def group_details(g: Group, names: Mapping[str, str]) -> list[RenderableType]:
    a = g.allocation
    header = details(
        f"Group {g.name}",
        [
            ("id", g.group_id),
            ("method", a.method.value if a.method else "EQUITY (default)"),
            ("below minimum", a.below_min_policy.value if a.below_min_policy else "SKIP (default)"),
            ("reference equity", money(a.reference_equity)),
            ("reference account", a.reference_account_id),
            ("magic", g.magic),
            ("source", source_text(g, names)),
            ("created", when(g.create_time)),
            ("updated", when(g.update_time)),
        ],
    )
    members = list(g.members)
    table = FittedTable(
        "Members",
        [
            _column("ACCOUNT", [named(m.account_id, names) for m in members]),
            _column("ID", [m.account_id for m in members]),
            _column("SETTINGS", [member_settings(m) for m in members], wrap=True),
            _column("COPY", [copy_text(m.copy_options) for m in members], wrap=True),
        ],
        shrink=[("drop", "ID")],
    )
    return [header, table]


# -- allocations and orders ---------------------------------------------------------------------


def allocation_table(
    allocation: Allocation,
    names: Mapping[str, str],
    title: str,
    book: SymbolBook = NO_SYMBOLS,
    *,
    symbol: str = "",
    closing: bool = False,
) -> FittedTable:
    """Each account's share. `symbol`: the order's gateway symbol (the totals' precision);
    `closing`: a close's, whose basis is each account's open volume, not its money."""
    lines = list(allocation.lines)
    precisions = [book.of(line.symbol, line.account_id) for line in lines]
    order = book.of(symbol) if symbol else _common(precisions)
    money_basis = [not closing and line.method in _MONEY_BASES for line in lines]
    table = FittedTable(
        title,
        [
            _column("ACCOUNT", [named(line.account_id, names) for line in lines]),
            _column("ID", [line.account_id for line in lines]),
            _column("SYMBOL", [line.symbol for line in lines]),
            _column("METHOD", [line.method.value for line in lines]),
            _figures(
                "BASIS",
                [
                    _basis(line.basis, is_money)
                    for line, is_money in zip(lines, money_basis, strict=True)
                ],
            ),
            _figures("TARGET", [_target(line.target_volume) for line in lines]),
            _figures(
                "VOLUME",
                [
                    Text(volume(line.volume, p), style="bold" if line.volume else "dim")
                    for line, p in zip(lines, precisions, strict=True)
                ],
            ),
            _figures(
                "CHILDREN",
                [
                    " + ".join(volume(v, p) for v in line.child_volumes)
                    if len(line.child_volumes) > 1
                    else ""
                    for line, p in zip(lines, precisions, strict=True)
                ],
            ),
            _column("REASONS", [reasons_text(line.reasons) for line in lines], wrap=True),
        ],
        shrink=[
            ("drop", "ID"),
            ("drop", "CHILDREN"),
            ("drop", "METHOD"),
            ("drop", "SYMBOL"),
            ("drop", "BASIS"),
        ],
        caption=(
            f"requested {volume(allocation.requested_volume, order)}, "
            f"allocated {volume(allocation.allocated_volume, order)}, "
            f"unallocated {volume(allocation.unallocated_volume, order)} "
            f"({allocation.method.value})"
        ),
    )
    if not any(len(line.child_volumes) > 1 for line in lines):
        table.columns = [c for c in table.columns if c.header != "CHILDREN"]
    return table


def reasons_text(reasons: Iterable[AllocationReason]) -> str:
    return ", ".join(r.value for r in reasons)


def _common(precisions: Sequence[SymbolPrecision]) -> SymbolPrecision:
    """The one precision every line shares, else unknown."""
    distinct = set(precisions)
    return distinct.pop() if len(distinct) == 1 else UNKNOWN


def _basis(value: Decimal | None, is_money: bool) -> str:
    if value is None:
        return ""
    return money(value) if is_money else dec(value)


def _target(value: Decimal) -> str:
    """The exact share, to 4 places: enough to see how far rounding moved it."""
    return figures.plain(value.quantize(Decimal("0.0001")))


def orders_table(
    orders: Iterable[MasterOrder],
    book: SymbolBook = NO_SYMBOLS,
    group_names: Mapping[str, str] | None = None,
) -> FittedTable:
    rows = list(orders)
    groups = group_names or {}
    precisions = [book.of(o.spec.symbol) for o in rows]
    return FittedTable(
        "Master orders",
        [
            _column("ID", [o.master_order_id for o in rows]),
            _times("CREATED", [o.create_time for o in rows]),
            _column("GROUP", [named(o.spec.group_id, groups) for o in rows]),
            _column("SYMBOL", [o.spec.symbol for o in rows]),
            _column("SIDE", [side(o.spec.side) for o in rows]),
            _figures(
                "VOLUME",
                [_order_volume(o, p) for o, p in zip(rows, precisions, strict=True)],
            ),
            _figures(
                "FILLED",
                [volume(o.filled_volume, p) for o, p in zip(rows, precisions, strict=True)],
            ),
            _figures(
                "AVG PRICE",
                prices := [
                    price(o.average_fill_price, p) for o, p in zip(rows, precisions, strict=True)
                ],
                short=("PRICE", prices),
            ),
            _column("STATE", [o.state.value for o in rows]),
            _column("CHILDREN", [_children_count(o) for o in rows], wrap=True),
        ],
        shrink=[
            ("short", "CREATED"),
            ("drop", "GROUP"),
            ("drop", "CHILDREN"),
            ("drop", "CREATED"),
            ("short", "AVG PRICE"),
            ("drop", "SYMBOL"),
        ],
        # Closes in words, under the table whatever its width: what was asked beside what the
        # lot steps allowed (VOLUME), so that FILLED is not read as a shortfall.
        caption="\n".join(
            f"{o.master_order_id}: {note}"
            for o, p in zip(rows, precisions, strict=True)
            if (note := closing_note(o, p))
        )
        or None,
    )


def _children_count(o: MasterOrder) -> str:
    text = f"{o.filled_child_count}/{o.child_count} filled"
    return text + (f", {o.rejected_child_count} rejected" if o.rejected_child_count else "")


def _order_volume(o: MasterOrder, precision: SymbolPrecision) -> str:
    """What the order trades: a close's volume is what the lot steps allowed of what was asked
    (the rest is in its note), so that FILLED is never read as a shortfall against it."""
    if _is_close(o) and o.allocation is not None:
        return volume(o.allocation.allocated_volume, precision)
    return volume(o.spec.volume, precision)


def _is_close(o: MasterOrder) -> bool:
    return bool(o.closes_master_order_id)


def closing_note(o: MasterOrder, precision: SymbolPrecision = UNKNOWN) -> str:
    """A close in a few words: "close 50% of mo_1: 0.50 asked, 0.45 at lot steps"."""
    if not _is_close(o):
        return ""
    fraction = o.close_fraction
    asked = f"fraction {dec(fraction)} " if fraction is not None else ""
    text = f"closes {asked}of {o.closes_master_order_id}"
    allocation = o.allocation
    if allocation is not None and allocation.allocated_volume != o.spec.volume:
        text += (
            f": {volume(o.spec.volume, precision)} asked, "
            f"{volume(allocation.allocated_volume, precision)} at lot steps"
        )
    return text


def order_details(
    o: MasterOrder,
    names: Mapping[str, str],
    book: SymbolBook = NO_SYMBOLS,
    group_names: Mapping[str, str] | None = None,
) -> list[RenderableType]:
    e = o.execution
    precision = book.of(o.spec.symbol)
    group = o.spec.group_id
    group_name = (group_names or {}).get(group)
    rows: list[tuple[str, Any]] = [
        ("id", o.master_order_id),
        ("client order id", o.spec.client_order_id),
        ("group", f"{group_name} ({group})" if group_name else group),
        (
            "order",
            Text.assemble(side(o.spec.side), f" {_order_volume(o, precision)} {o.spec.symbol} "),
        ),
        ("type", o.spec.type.value),
        ("state", o.state.value + (f" ({o.state_reason})" if o.state_reason else "")),
        (
            "filled",
            f"{volume(o.filled_volume, precision)} at "
            f"{price(o.average_fill_price, precision) or '-'}",
        ),
        ("children", _children_count(o)),
        ("magic", o.magic),
        ("created", when(o.create_time)),
    ]
    if o.spec.stop_loss is not None:
        rows.append(("stop loss", price(o.spec.stop_loss, precision)))
    if o.spec.take_profit is not None:
        rows.append(("take profit", price(o.spec.take_profit, precision)))
    rows += close_rows(o, book, names)
    if e is not None:
        rows += [
            ("dispatch skew", millis(e.dispatch_skew)),
            ("submit to last fill", millis(e.submit_to_last_fill)),
            ("avg slippage", f"{points(e.average_slippage_points) or '-'} points"),
            ("max slippage", f"{points(e.max_slippage_points) or '-'} points"),
        ]
    return [
        details(f"Master order {o.master_order_id}", rows),
        children_table(o.children, names, book),
    ]


def close_rows(
    o: MasterOrder, book: SymbolBook = NO_SYMBOLS, names: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """A close: what was asked, what the accounts' lot steps allowed, and why the two differ
    (its allocation lines' reasons); nothing for an opening order."""
    if not _is_close(o):
        return []
    precision = book.of(o.spec.symbol)
    fraction = o.close_fraction
    rows = [("closes", o.closes_master_order_id)]
    if fraction is not None:
        whole = o.spec.volume / fraction if fraction else None
        of_what = f" of the {volume(whole, precision)} lots open" if whole is not None else ""
        rows.append(
            ("asked", f"fraction {dec(fraction)}{of_what} = {volume(o.spec.volume, precision)}")
        )
    else:
        rows.append(("asked", f"{volume(o.spec.volume, precision)} lots"))
    allocation = o.allocation
    if allocation is None:
        return rows
    lines = list(allocation.lines)
    closing = [line for line in lines if line.volume > 0]
    rows.append(
        (
            "lot steps allow",
            f"{volume(allocation.allocated_volume, precision)} "
            f"({len(closing)} of {len(lines)} accounts)"
            if lines
            else volume(allocation.allocated_volume, precision),
        )
    )
    why = _close_reasons(lines, names or {}, book)
    if allocation.unallocated_volume > 0 or why:
        rows.append(
            (
                "left open",
                f"{volume(allocation.unallocated_volume, precision)}" + (f": {why}" if why else ""),
            )
        )
    return rows


def _close_reasons(
    lines: Sequence[AllocationLine], names: Mapping[str, str], book: SymbolBook
) -> str:
    """Why accounts close less than their exact share: each reason with its accounts."""
    by_reason: dict[AllocationReason, list[AllocationLine]] = {}
    for line in lines:
        for reason in line.reasons:
            by_reason.setdefault(reason, []).append(line)
    parts = []
    for reason, affected in by_reason.items():
        words = {
            AllocationReason.ROUNDED_DOWN: "rounded down to their lot step",
            AllocationReason.SKIPPED_BELOW_MIN: "close nothing: their share is below the "
            "minimum volume",
        }.get(reason, reason.value.lower().replace("_", " "))
        accounts = ", ".join(named(line.account_id, names) for line in affected[:3])
        more = f" and {len(affected) - 3} more" if len(affected) > 3 else ""
        parts.append(f"{len(affected)} {words} ({reason.value}: {accounts}{more})")
    return "; ".join(parts)


def close_summary(
    o: MasterOrder, names: Mapping[str, str], book: SymbolBook = NO_SYMBOLS
) -> list[RenderableType]:
    """What `mamctl close` shows: the close asked, what the lot steps allow and why, and each
    account's share."""
    shown: list[RenderableType] = [
        details(f"Close {o.master_order_id} ({o.state.value})", close_rows(o, book, names))
    ]
    if o.allocation is not None and o.allocation.lines:
        shown.append(
            allocation_table(
                o.allocation, names, "Accounts", book, symbol=o.spec.symbol, closing=True
            )
        )
    return shown


def children_table(
    children: Iterable[ChildOrder], names: Mapping[str, str], book: SymbolBook = NO_SYMBOLS
) -> FittedTable:
    rows = list(children)
    precisions = [book.of(c.symbol, c.account_id) for c in rows]
    pairs = list(zip(rows, precisions, strict=True))
    return FittedTable(
        "Child orders",
        [
            _column("ACCOUNT", [named(c.account_id, names) for c in rows]),
            _column("ID", [c.account_id for c in rows]),
            _column("SYMBOL", [c.symbol for c in rows]),
            _figures("VOLUME", [volume(c.volume, p) for c, p in pairs]),
            _column("STATE", [c.state.value for c in rows]),
            _figures("FILLED", [volume(c.filled_volume, p) for c, p in pairs]),
            _figures("REQUESTED", [price(c.requested_price, p) for c, p in pairs]),
            _figures("FILL PRICE", [price(c.fill_price, p) for c, p in pairs]),
            _figures("SLIPPAGE", [points(c.slippage_points) for c in rows]),
            _figures("RETCODE", [str(c.retcode or "") for c in rows]),
            _column("STATUS", [c.status_text for c in rows], wrap=True),
        ],
        shrink=[
            ("drop", "ID"),
            ("drop", "RETCODE"),
            ("drop", "SYMBOL"),
            ("drop", "REQUESTED"),
            ("drop", "STATUS"),
        ],
    )


def fills_table(
    fills: Sequence[Fill], names: Mapping[str, str], caption: str, book: SymbolBook = NO_SYMBOLS
) -> FittedTable:
    rows = list(fills)
    pairs = [(f, book.of(f.symbol, f.account_id)) for f in rows]
    return FittedTable(
        "Fills",
        [
            _figures("SEQ", [str(f.sequence) for f in rows]),
            _times("TIME", [f.time for f in rows]),
            _column("ACCOUNT", [named(f.account_id, names) for f in rows]),
            _column("ID", [f.account_id for f in rows]),
            _column("SYMBOL", [f.symbol for f in rows]),
            _column("SIDE", [side(f.side) for f in rows]),
            _figures("VOLUME", [volume(f.volume, p) for f, p in pairs]),
            _figures("PRICE", [price(f.price, p) for f, p in pairs]),
            _figures("SLIPPAGE", [points(f.slippage_points) for f in rows]),
            _column("MASTER ORDER", [f.master_order_id for f in rows]),
        ],
        shrink=[("drop", "ID"), ("short", "TIME"), ("drop", "MASTER ORDER"), ("drop", "SEQ")],
        caption=caption,
    )


def fill_line(f: Fill, names: Mapping[str, str], book: SymbolBook = NO_SYMBOLS) -> str:
    """One fill as one line of text (`watch fills` piped or redirected)."""
    precision = book.of(f.symbol, f.account_id)
    slippage = "" if f.slippage_points is None else f"slippage {points(f.slippage_points)}"
    parts = [
        f"#{f.sequence}",
        when(f.time),
        named(f.account_id, names),
        f.symbol,
        f.side.value,
        f"{volume(f.volume, precision)} @ {price(f.price, precision)}",
        slippage,
        f.master_order_id,
    ]
    return "  ".join(p for p in parts if p)


# -- mirroring ----------------------------------------------------------------------------------


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


def signals_table(
    signals: Iterable[Signal], names: Mapping[str, str], book: SymbolBook = NO_SYMBOLS
) -> FittedTable:
    rows = list(signals)
    pairs = [(s, book.of(s.symbol, s.source_account_id)) for s in rows]
    return FittedTable(
        "Signals",
        [
            _figures("SEQ", [str(s.sequence) for s in rows]),
            _times("SOURCE TIME", [s.source_time for s in rows]),
            _column("GROUP", [named(s.group_id, names) for s in rows]),
            _column("GROUP ID", [s.group_id for s in rows]),
            _column("KIND", [s.kind.value for s in rows]),
            _column("EVENT", [s.event_id for s in rows]),
            _column("SIDE", [side(s.side) for s in rows]),
            _figures("VOLUME", [volume(s.volume, p) for s, p in pairs]),
            _column("SYMBOL", [s.symbol for s in rows]),
            _column(
                "STATE",
                [Text(s.state.value, style=_SIGNAL_STATE_STYLES.get(s.state, "")) for s in rows],
            ),
            _column("DETAIL", [s.detail for s in rows], wrap=True),
        ],
        shrink=[
            ("drop", "GROUP ID"),
            ("short", "SOURCE TIME"),
            ("drop", "EVENT"),
            ("drop", "DETAIL"),
            ("drop", "SEQ"),
        ],
    )


def signal_line(s: Signal, names: Mapping[str, str], book: SymbolBook = NO_SYMBOLS) -> str:
    """One signal as one line of text (`mamctl signals watch`)."""
    precision = book.of(s.symbol, s.source_account_id)
    parts = [
        f"#{s.sequence}",
        when(s.observe_time),
        named(s.group_id, names),
        s.kind.value,
        s.event_id,
        f"{s.side.value} {volume(s.volume, precision)} {s.symbol}",
    ]
    if s.fraction is not None:
        parts.append(f"fraction {dec(s.fraction)}")
    if s.price is not None:
        parts.append(f"@ {price(s.price, precision)}")
    if s.stop_loss is not None or s.take_profit is not None:
        parts.append(
            f"sl {price(s.stop_loss, precision) or '-'} tp {price(s.take_profit, precision) or '-'}"
        )
    parts.append(s.state.value)
    if s.detail:
        parts.append(s.detail)
    return "  ".join(parts)
