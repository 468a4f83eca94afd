"""mamctl's tables and JSON without a gateway: figures as a trader reads them (volumes to the
symbol's step, prices to its digits, no negative zero), tables that fit 80 columns without
splitting a number, names beside ids, and a partial close that explains itself."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from mam_client import types as t
from mam_client.cli import render
from mam_client.cli.statement import performance_json
from mam_client.cli.symbol_book import SymbolBook
from mam_client.reporting import AccountPerformance
from mam_client.symbols import Symbol
from rich.console import Console, Group, RenderableType

D = Decimal
AT = datetime(2026, 3, 2, 14, 30, 5, tzinfo=UTC)
EURUSD = Symbol(
    name="EURUSD", digits=5, volume_min=D("0.01"), volume_step=D("0.01"), volume_max=D("100"),
    contract_size=D("100000"), tick_size=D("0.00001"), tick_value=D("1"),
    currency_base="EUR", currency_profit="USD",
)  # fmt: skip
US500 = dataclasses.replace(EURUSD, name="US500", digits=2, volume_step=D("0.1"))
ACCOUNT_IDS = [f"acc_06H56D6D{n:02d}WSX72HGX55J" for n in range(1, 21)]
NAMES = {account_id: f"demo-{n:02d}" for n, account_id in enumerate(ACCOUNT_IDS, start=1)}
# demo-03 trades EURUSD as EURUSD.m at its broker.
MAPPED = t.Account(
    ACCOUNT_IDS[2], "demo-03", t.Platform.SIMULATED, 1, "", "USD", t.AccountState.ACTIVE,
    t.MarginMode.HEDGING, 100, None, None, (t.SymbolMapping("EURUSD", "EURUSD.m"),), None, None,
)  # fmt: skip
BOOK = SymbolBook([EURUSD, US500], [MAPPED])


def make(cls: type, **values: Any) -> Any:
    """An instance of one of the client's dataclasses: `values`, the rest empty (0, "", None,
    (), UNSPECIFIED), whatever fields the class gains."""
    for f in dataclasses.fields(cls):
        if f.name in values or f.default is not dataclasses.MISSING:
            continue
        kind = str(f.type)
        if "None" in kind:
            values[f.name] = None
        elif kind.startswith("tuple"):
            values[f.name] = ()
        elif kind == "Decimal":
            values[f.name] = D(0)
        elif kind == "str":
            values[f.name] = ""
        elif kind in ("int", "bool"):
            values[f.name] = 0
        else:
            values[f.name] = getattr(t, kind).UNSPECIFIED
    return cls(**values)


def preview() -> t.Allocation:
    """The demo group's preview of BUY 1 EURUSD, as the gateway answers it."""
    equities = [500, 1000, 2500, 5000, 7500, 10000, 15000, 20000, 25000, 30000, 40000, 50000,
                60000, 75000, 100000, 120000, 150000, 180000, 200000, 250000]  # fmt: skip
    total = sum(equities)
    lines = []
    for account_id, equity in zip(ACCOUNT_IDS, equities, strict=True):
        target = (D(equity) / D(total)).quantize(D("0.0000000001"))
        volume = target.quantize(D("0.01"))
        reasons = (
            (t.AllocationReason.SKIPPED_BELOW_MIN,)
            if volume < D("0.01")
            else (t.AllocationReason.ROUNDED_UP,)
            if volume > target
            else (t.AllocationReason.ROUNDED_DOWN,)
        )
        lines.append(
            make(
                t.AllocationLine,
                account_id=account_id,
                symbol="EURUSD.m" if account_id == MAPPED.account_id else "EURUSD",
                method=t.AllocationMethod.EQUITY,
                basis=D(f"{equity}.00"),
                target_volume=target,
                volume=D(0) if volume < D("0.01") else volume.normalize(),
                child_volumes=() if volume < D("0.01") else (volume,),
                reasons=reasons,
            )
        )
    return make(
        t.Allocation,
        method=t.AllocationMethod.EQUITY,
        requested_volume=D("1"),
        allocated_volume=D("1.0"),
        unallocated_volume=D("0"),
        lines=tuple(lines),
    )


def shown(renderable: RenderableType, width: int = 80) -> str:
    console = Console(width=width, record=True, color_system=None, legacy_windows=False)
    console.print(renderable)
    return console.export_text()


def assert_fits(text: str, width: int, figures: list[str]) -> None:
    """No line wider than the console, and every figure on one line, whole."""
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines), max(len(line) for line in lines)
    words = {w for line in lines for w in re.split(r"[\s│┃]+", line)}
    for figure in figures:
        assert figure in words, f"{figure} is split or missing"


# -- figures ------------------------------------------------------------------------------------


def test_the_preview_shows_volumes_to_the_lot_step_and_money_to_two_places() -> None:
    text = shown(render.allocation_table(preview(), NAMES, "Preview", BOOK, symbol="EURUSD"))
    assert "requested 1.00, allocated 1.00, unallocated 0.00" in text
    assert "250,000.00" in text
    # A broker's name for the symbol (EURUSD.m) is shown to the same step.
    row = next(line for line in text.splitlines() if "demo-03" in line)
    assert " 0.00 " in row
    # 0.15, not 0.150; 0.07, not the 0.0745434215 target.
    assert " 0.15 " in text and "0.0745434215" not in text


def test_json_volumes_keep_the_step_prices_the_digits_and_no_negative_zero() -> None:
    child = make(
        t.ChildOrder,
        account_id=ACCOUNT_IDS[0],
        symbol="EURUSD",
        side=t.Side.SELL,
        volume=D("0.5"),
        filled_volume=D("0.5"),
        requested_price=D("1.08441000"),
        fill_price=D("1.08441000"),
        slippage_points=D("-0.0"),
    )
    order = make(
        t.MasterOrder,
        spec=t.OrderSpec(group_id="g", symbol="EURUSD", side=t.Side.SELL, volume=D("2")),
        children=(child,),
        filled_volume=D("2.0"),
        average_fill_price=D("1.084413333333"),
    )
    data = json.loads(render.to_json(order, BOOK))
    assert data["spec"]["volume"] == "2.00"
    assert data["filled_volume"] == "2.00"
    assert data["average_fill_price"] == "1.08441"
    shown_child = data["children"][0]
    assert (shown_child["volume"], shown_child["fill_price"]) == ("0.50", "1.08441")
    assert shown_child["slippage_points"] == "0.0"
    # A symbol the gateway does not know keeps its figures exactly as they came.
    other = dataclasses.replace(child, symbol="GBPJPY")
    assert json.loads(render.to_json(other, BOOK))["volume"] == "0.5"


def test_performance_json_rounds_returns_and_ratios() -> None:
    report = make(
        AccountPerformance,
        account_id="acc",
        start=AT,
        end=AT,
        opening_equity=D("10000.005"),
        time_weighted_return=D("-0.0002903200000000000000000000000004"),
        sharpe_ratio=D("1.234567891"),
        daily_returns=(),
        equity_curve=(),
    )
    data = performance_json(report)
    assert data["time_weighted_return"] == D("-0.000290")
    assert data["sharpe_ratio"] == D("1.2346")
    assert data["opening_equity"] == D("10000.01")
    assert json.loads(render.to_json(data))["time_weighted_return"] == "-0.000290"


# -- tables at 80 columns -----------------------------------------------------------------------


def test_the_preview_fits_80_columns_without_splitting_a_number() -> None:
    allocation = preview()
    text = shown(render.allocation_table(allocation, NAMES, "Preview", BOOK, symbol="EURUSD"))
    assert_fits(text, 80, ["250,000.00", "0.0004", "0.19", "SKIPPED_BELOW_MIN", "demo-20"])
    # Each account on one line: 20 rows, no number continued below.
    assert sum(1 for line in text.splitlines() if "demo-" in line) == 20


def test_a_wide_console_shows_each_accounts_name_and_id() -> None:
    text = shown(render.allocation_table(preview(), NAMES, "Preview", BOOK), width=160)
    assert_fits(text, 160, ["demo-01", ACCOUNT_IDS[0]])


def test_the_orders_fills_children_and_signals_tables_fit_80_columns() -> None:
    child = make(
        t.ChildOrder,
        account_id=ACCOUNT_IDS[19],
        symbol="EURUSD",
        side=t.Side.BUY,
        volume=D("0.19"),
        state=t.ChildOrderState.FILLED,
        filled_volume=D("0.19"),
        requested_price=D("1.08441000"),
        fill_price=D("1.08443000"),
        slippage_points=D("2.0"),
        retcode=10009,
        status_text="Request executed",
    )
    order = make(
        t.MasterOrder,
        master_order_id="mo_06H56C44R1DPAZVAMAN3",
        spec=t.OrderSpec(group_id="grp_1", symbol="EURUSD", side=t.Side.BUY, volume=D("1")),
        state=t.MasterOrderState.PARTIALLY_FILLED,
        children=(child,),
        child_count=16,
        filled_child_count=15,
        rejected_child_count=1,
        filled_volume=D("0.99"),
        average_fill_price=D("1.08443000"),
        create_time=AT,
    )
    fill = make(
        t.Fill,
        sequence=123456,
        master_order_id=order.master_order_id,
        account_id=ACCOUNT_IDS[19],
        symbol="EURUSD",
        side=t.Side.BUY,
        volume=D("0.19"),
        price=D("1.08443000"),
        slippage_points=D("2.0"),
        time=AT,
    )
    signal = make(
        t.Signal,
        sequence=77,
        group_id="grp_06H56C2BG2FTXR2GZZP4",
        source_account_id=ACCOUNT_IDS[0],
        event_id="pos-123456-opened",
        kind=t.SignalKind.POSITION_OPENED,
        symbol="EURUSD",
        side=t.Side.SELL,
        volume=D("0.3"),
        source_time=AT,
        state=t.SignalState.COPIED,
        detail="copied by 20 accounts",
    )
    groups = {"grp_1": "demo", "grp_06H56C2BG2FTXR2GZZP4": "demo"}
    tables = [
        (render.orders_table([order] * 3, BOOK, groups), ["1.00", "0.99", "1.08443"]),
        (render.children_table([child] * 3, NAMES, BOOK), ["0.19", "1.08443", "demo-20"]),
        (render.fills_table([fill] * 3, NAMES, "3 fills", BOOK), ["0.19", "1.08443", "2.0"]),
        (render.signals_table([signal] * 3, groups, BOOK), ["0.30", "POSITION_OPENED"]),
    ]
    for table, numbers in tables:
        assert_fits(shown(table), 80, numbers)
    # Wide, the orders table has room for the time and the group's name.
    wide = shown(render.orders_table([order], BOOK, groups), width=200)
    assert "2026-03-02" in wide and " demo " in wide


# -- a partial close ----------------------------------------------------------------------------


def closing_order() -> t.MasterOrder:
    """Close 0.5 of a 1.00-lot order over three accounts of 0.50, 0.45 and 0.05 lots."""
    lines = (
        make(
            t.AllocationLine,
            account_id=ACCOUNT_IDS[0],
            symbol="EURUSD",
            method=t.AllocationMethod.EQUITY,
            basis=D("0.50"),
            target_volume=D("0.25"),
            volume=D("0.25"),
            child_volumes=(D("0.25"),),
        ),
        make(
            t.AllocationLine,
            account_id=ACCOUNT_IDS[1],
            symbol="EURUSD",
            method=t.AllocationMethod.EQUITY,
            basis=D("0.45"),
            target_volume=D("0.225"),
            volume=D("0.22"),
            child_volumes=(D("0.22"),),
            reasons=(t.AllocationReason.ROUNDED_DOWN,),
        ),
        make(
            t.AllocationLine,
            account_id=ACCOUNT_IDS[2],
            symbol="EURUSD",
            method=t.AllocationMethod.EQUITY,
            basis=D("0.05"),
            target_volume=D("0.025"),
            volume=D("0"),
            reasons=(t.AllocationReason.SKIPPED_BELOW_MIN,),
        ),
    )
    return make(
        t.MasterOrder,
        master_order_id="mo_close",
        spec=t.OrderSpec(group_id="grp_1", symbol="EURUSD", side=t.Side.SELL, volume=D("0.5")),
        state=t.MasterOrderState.FILLED,
        allocation=make(
            t.Allocation,
            method=t.AllocationMethod.EQUITY,
            requested_volume=D("0.5"),
            allocated_volume=D("0.47"),
            unallocated_volume=D("0.03"),
            lines=lines,
        ),
        child_count=2,
        filled_child_count=2,
        filled_volume=D("0.47"),
        closes_master_order_id="mo_open",
        close_fraction=D("0.5"),
    )


def test_a_partial_close_shows_what_was_asked_what_the_lot_steps_allowed_and_why() -> None:
    order = closing_order()
    text = shown(Group(*render.close_summary(order, NAMES, BOOK)), width=100)
    assert "fraction 0.5 of the 1.00 lots open = 0.50" in text
    assert "lot steps allow  0.47 (2 of 3 accounts)" in text
    assert "left open        0.03" in text
    assert "ROUNDED_DOWN: demo-02" in text and "SKIPPED_BELOW_MIN: demo-03" in text
    # The orders list: VOLUME is what the steps allowed, so FILLED 0.47 is no shortfall, and
    # the close says what was asked.
    listed = shown(render.orders_table([order], BOOK, {"grp_1": "demo"}))
    row = next(line for line in listed.splitlines() if "mo_close" in line)
    assert re.search(r"0\.47\s+│\s+0\.47", row), row
    assert "0.50 asked, 0.47 at lot steps" in listed.replace("\n", " ")


@pytest.mark.parametrize("width", [60, 80, 120])
def test_the_close_summary_fits_its_console(width: int) -> None:
    text = shown(Group(*render.close_summary(closing_order(), NAMES, BOOK)), width)
    assert all(len(line) <= width for line in text.splitlines())
