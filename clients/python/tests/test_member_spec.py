"""mamctl's --member spec (ACCOUNT_ID[:key=value,...]) with a member's copy options: parsed
exactly, refused with the key at fault, shown in a few words, and written to a real gateway."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
import typer
from conftest import GatewayProcess
from mam_client import CopyDirection, CopyOptions, GroupMember, MinVolumePolicy
from mam_client._convert import member_from_wire, member_to_wire
from mam_client.cli import app
from mam_client.cli.app import parse_member
from mam_client.cli.render import copy_text, group_details
from mam_client.types import AllocationMethod, AllocationSettings, Group
from rich.console import Console
from typer.testing import CliRunner


def test_a_spec_without_copy_options_leaves_them_unset() -> None:
    assert parse_member("acc_1:multiplier=0.5,max=2") == GroupMember(
        account_id="acc_1", lot_multiplier=Decimal("0.5"), max_lots=Decimal("2")
    )
    assert parse_member("acc_1").copy_options is None


def test_every_copy_option_is_parsed_beside_the_sizing_settings() -> None:
    member = parse_member(
        "acc_1:lots=0.10,method=fixed_lots,reverse,direction=buy,no_stops,no_pending,"
        "min_volume=0.05,min_policy=raise,max_slippage=30,max_age=5s"
    )
    assert member == GroupMember(
        account_id="acc_1",
        fixed_lots=Decimal("0.10"),
        method=AllocationMethod.FIXED_LOTS,
        copy_options=CopyOptions(
            reverse=True,
            direction=CopyDirection.BUY_ONLY,
            skip_stops=True,
            skip_pending_orders=True,
            min_volume=Decimal("0.05"),
            min_volume_policy=MinVolumePolicy.RAISE,
            max_slippage_points=30,
            max_signal_age=timedelta(seconds=5),
        ),
    )


@pytest.mark.parametrize(
    ("spec", "options"),
    [
        ("a:close_only", CopyOptions(close_only=True)),
        ("a:reverse=true", CopyOptions(reverse=True)),
        ("a:reverse=false", CopyOptions(reverse=False)),
        ("a: reverse , no-stops ", CopyOptions(reverse=True, skip_stops=True)),
        ("a:direction=sell", CopyOptions(direction=CopyDirection.SELL_ONLY)),
        ("a:direction=BOTH", CopyOptions(direction=CopyDirection.BOTH)),
        ("a:direction=buy_only", CopyOptions(direction=CopyDirection.BUY_ONLY)),
        ("a:min_volume=0.10", CopyOptions(min_volume=Decimal("0.10"))),
        ("a:min_policy=skip", CopyOptions(min_volume_policy=MinVolumePolicy.SKIP)),
        ("a:max_slippage=0", CopyOptions(max_slippage_points=0)),
        ("a:max_age=90", CopyOptions(max_signal_age=timedelta(seconds=90))),
        ("a:max_age=500ms", CopyOptions(max_signal_age=timedelta(milliseconds=500))),
        ("a:max_age=2m", CopyOptions(max_signal_age=timedelta(minutes=2))),
    ],
)
def test_each_copy_option_key(spec: str, options: CopyOptions) -> None:
    assert parse_member(spec) == GroupMember(account_id="a", copy_options=options)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("a:reverse=maybe", "reverse is a flag"),
        ("a:direction=up", "direction must be buy, sell or both"),
        ("a:min_policy=round", "min_policy must be skip or raise"),
        ("a:min_policy=unspecified", "min_policy must be skip or raise"),
        ("a:min_volume=lots", "is not a decimal number"),
        ("a:max_slippage=1.5", "whole number of points"),
        ("a:max_slippage=-1", "whole number of points"),
        ("a:max_age=soon", "is not a duration"),
        ("a:mirror", "is not key=value"),
        ("a:colour=red", "unknown member setting 'colour'"),
        (":reverse", "names no account"),
    ],
)
def test_a_bad_key_or_value_is_refused_naming_it(spec: str, message: str) -> None:
    with pytest.raises(typer.BadParameter, match=message):
        parse_member(spec)


def test_copy_options_cross_the_wire_and_back_unchanged() -> None:
    members = [
        parse_member("a:reverse,direction=sell,no_stops,no_pending,min_volume=0.050"),
        parse_member("b:min_volume=1,min_policy=raise,max_slippage=0,max_age=0.25s,close_only"),
        parse_member("c:multiplier=2"),
    ]
    wire = [member_to_wire(m) for m in members]
    assert wire[1].copy_options.HasField("max_slippage_points")
    assert not wire[0].copy_options.HasField("max_slippage_points")
    assert not wire[2].HasField("copy_options")
    assert [member_from_wire(w) for w in wire] == members


@pytest.mark.parametrize(
    ("options", "text"),
    [
        (None, ""),
        (CopyOptions(), ""),
        (
            CopyOptions(
                reverse=True,
                direction=CopyDirection.BUY_ONLY,
                min_volume=Decimal("0.05"),
                min_volume_policy=MinVolumePolicy.RAISE,
            ),
            "reverse, buy only, min 0.05 raise",
        ),
        (
            CopyOptions(
                direction=CopyDirection.BOTH,
                skip_stops=True,
                skip_pending_orders=True,
                min_volume=Decimal("0.1"),
                max_slippage_points=30,
                max_signal_age=timedelta(milliseconds=2500),
            ),
            "no SL/TP, no pending, min 0.1 skip, slippage 30 pt, age 2.5s",
        ),
        (CopyOptions(close_only=True), "close only"),
    ],
)
def test_copy_options_are_shown_in_a_few_words(options: CopyOptions | None, text: str) -> None:
    assert copy_text(options) == text


def test_the_member_table_with_every_copy_option_fits_100_columns() -> None:
    everything = parse_member(
        "acc_00000000000000000001:multiplier=0.5,max=2,reverse,direction=sell,no_stops,"
        "no_pending,min_volume=0.05,min_policy=raise,max_slippage=30,max_age=5s"
    )
    group = Group(
        group_id="grp_00000000000000000001",
        name="copiers",
        allocation=AllocationSettings(),
        members=(everything, GroupMember(account_id="acc_00000000000000000002")),
        magic=700_001,
        create_time=None,
        update_time=None,
    )
    console = Console(width=100, record=True)
    for table in group_details(group, {"acc_00000000000000000001": "client-001"}):
        console.print(table)
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 100
    # Folded, but all there.
    shown = " ".join(line.strip(" │┃") for line in lines)
    assert "COPY" in shown and "reverse" in shown


def test_mamctl_writes_copy_options_and_shows_them(gateway: GatewayProcess) -> None:
    runner = CliRunner(env={"COLUMNS": "250"})

    def mamctl(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, ["--target", gateway.address, *args])
        return result.exit_code, result.stdout, result.stderr

    ids = []
    for i in range(2):
        code, out, err = mamctl(
            "--json", "accounts", "create", "--name", f"copy-{uuid.uuid4().hex[:8]}",
            "--login", str(96001 + i), "--server", "mam-sim", "--balance", "10000",
        )  # fmt: skip
        assert code == 0, err
        ids.append(json.loads(out)["account_id"])
    name = f"copiers-{uuid.uuid4().hex[:6]}"
    code, out, err = mamctl(
        "--json", "groups", "create", "--name", name,
        "--member", f"{ids[0]}:reverse,direction=buy,min_volume=0.05,min_policy=raise,max_age=5s",
        "--member", ids[1],
    )  # fmt: skip
    assert code == 0, err
    created = json.loads(out)
    assert created["members"][0]["copy_options"] == {
        "reverse": True,
        "direction": "BUY_ONLY",
        "skip_stops": False,
        "skip_pending_orders": False,
        "min_volume": "0.05",
        "min_volume_policy": "RAISE",
        "max_slippage_points": None,
        "max_signal_age": "5.0",
        "close_only": False,
    }
    assert created["members"][1]["copy_options"] is None

    # Adding a member keeps the others' options (they are sent back with the members).
    code, out, err = mamctl("groups", "set", name, "--add-member", f"{ids[1]}:close_only")
    assert code == 0, err
    assert "reverse, buy only, min 0.05 raise, age 5s" in out
    assert "close only" in out

    # The gateway's checks name the field.
    code, _, err = mamctl("groups", "set", name, "--add-member", f"{ids[1]}:min_policy=raise")
    assert code == 1
    assert "members[1].copy_options.min_volume_policy" in err
