"""mamctl against a real gateway, through typer's CliRunner: tables, --json and errors."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import GatewayProcess
from mam_client.cli import app
from typer.testing import CliRunner

WIDE = {"COLUMNS": "250"}  # room for whole ids in the tables

# Runs mamctl against the test gateway: (exit code, stdout, stderr).
Mamctl = Callable[..., tuple[int, str, str]]


@pytest.fixture
def mamctl(gateway: GatewayProcess) -> Mamctl:
    runner = CliRunner(env=WIDE)

    def run(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, ["--target", gateway.address, *args])
        return result.exit_code, result.stdout, result.stderr

    return run


def test_groups_list_shows_the_demo_group(mamctl: Mamctl) -> None:
    code, out, _ = mamctl("groups", "list")
    assert code == 0
    assert "demo" in out and "EQUITY" in out and "20" in out


def test_accounts_create_show_and_list_in_json(mamctl: Mamctl) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    code, out, err = mamctl(
        "--json", "accounts", "create", "--name", name, "--login", "93001", "--server", "mam-sim",
        "--balance", "12500.25", "--map", "EURUSD=EURUSD.m",
    )  # fmt: skip
    assert code == 0, err
    created = json.loads(out)
    assert created["name"] == name
    assert created["initial_balance"] == "12500.25"
    assert created["symbol_mappings"] == [{"symbol": "EURUSD", "broker_symbol": "EURUSD.m"}]

    code, out, _ = mamctl("accounts", "show", created["account_id"])
    assert code == 0 and name in out and "EURUSD.m" in out

    code, out, _ = mamctl("--json", "accounts", "list")
    assert code == 0
    assert created["account_id"] in [a["account_id"] for a in json.loads(out)]
    code, out, _ = mamctl("accounts", "list")
    assert code == 0 and name in out


def test_accounts_import_registers_every_row(mamctl: Mamctl, tmp_path: Path) -> None:
    prefix = f"csv-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "accounts.csv"
    path.write_text(
        "name,platform,login,server,currency,initial_balance,leverage\n"
        f"{prefix}-a,simulated,94001,mam-sim,USD,5000,100\n"
        f"{prefix}-b,SIMULATED,94002,mam-sim,USD,7000.50,200\n"
    )
    code, out, err = mamctl("--json", "accounts", "import", str(path))
    assert code == 0, err
    imported = json.loads(out)
    assert [a["name"] for a in imported] == [f"{prefix}-a", f"{prefix}-b"]
    assert imported[1]["leverage"] == 200

    code, _, err = mamctl("accounts", "import", str(path))  # the names are taken now
    assert code == 1
    assert err.count("\n") == 1
    assert "accounts.csv:2" in err and "ACCOUNT_NAME_TAKEN" in err


def test_accounts_delete_retires_an_account_once(mamctl: Mamctl) -> None:
    code, out, err = mamctl(
        "--json", "accounts", "create", "--name", f"del-{uuid.uuid4().hex[:8]}",
        "--login", "93003", "--server", "mam-sim", "--balance", "1000",
    )  # fmt: skip
    assert code == 0, err
    account_id = json.loads(out)["account_id"]

    code, out, err = mamctl("--json", "accounts", "delete", account_id, "--yes")
    assert code == 0, err
    assert json.loads(out) == {"account_id": account_id, "deleted": True}
    code, out, _ = mamctl("--json", "accounts", "list")
    assert code == 0
    assert account_id not in [a["account_id"] for a in json.loads(out)]

    code, _, err = mamctl("accounts", "delete", account_id, "--yes")
    assert code == 1
    assert err.count("\n") == 1 and "ACCOUNT_NOT_FOUND" in err


def test_groups_create_and_set_members_and_settings(mamctl: Mamctl) -> None:
    ids = []
    for i in range(2):
        code, out, err = mamctl(
            "--json", "accounts", "create", "--name", f"grp-{uuid.uuid4().hex[:8]}",
            "--login", str(95001 + i), "--server", "mam-sim", "--balance", "10000",
        )  # fmt: skip
        assert code == 0, err
        ids.append(json.loads(out)["account_id"])
    name = f"cli-group-{uuid.uuid4().hex[:6]}"
    code, out, err = mamctl(
        "--json", "groups", "create", "--name", name, "--method", "lot_multiplier",
        "--member", f"{ids[0]}:multiplier=0.5", "--member", f"{ids[1]}:multiplier=2,max=1.5",
    )  # fmt: skip
    assert code == 0, err
    group = json.loads(out)
    assert group["allocation"]["method"] == "LOT_MULTIPLIER"
    assert [m["lot_multiplier"] for m in group["members"]] == ["0.5", "2"]
    assert group["members"][1]["max_lots"] == "1.5"

    code, out, err = mamctl(
        "--json", "groups", "set", name, "--method", "equal", "--remove-member", ids[1]
    )
    assert code == 0, err
    updated = json.loads(out)
    assert updated["allocation"]["method"] == "EQUAL"
    assert [m["account_id"] for m in updated["members"]] == [ids[0]]

    code, out, _ = mamctl("groups", "show", name)
    assert code == 0 and "EQUAL" in out and ids[0] in out


def test_preview_shows_each_accounts_share_and_reason(mamctl: Mamctl) -> None:
    args = ("preview", "--group", "demo", "--symbol", "EURUSD", "--side", "buy", "--volume", "1")
    code, out, _ = mamctl(*args)
    assert code == 0
    assert "demo-20" in out and "SKIPPED_BELOW_MIN" in out and "ROUNDED_UP" in out
    # Volumes to EURUSD's lot step of 0.01, as the gateway's ListSymbols gives it.
    assert "Preview: BUY 1.00 EURUSD" in out
    assert "requested 1.00, allocated 1.00" in out

    code, out, _ = mamctl("--json", *args)
    allocation = json.loads(out)
    assert sum(Decimal(line["volume"]) for line in allocation["lines"]) == Decimal(1)


def test_submit_wait_then_orders_list_and_show(mamctl: Mamctl) -> None:
    code, out, err = mamctl(
        "--json", "submit", "--group", "demo", "--symbol", "EURUSD", "--side", "sell",
        "--volume", "0.80", "--wait",
    )  # fmt: skip
    assert code == 0, err
    submitted = json.loads(out)
    order = submitted["master_order"]
    assert order["state"] == "FILLED" and order["filled_volume"] == "0.80"
    assert len(order["children"]) == order["child_count"]
    assert submitted["replayed"] is False

    code, out, _ = mamctl("orders", "list", "--limit", "5")
    assert code == 0 and order["master_order_id"] in out

    code, out, _ = mamctl("orders", "show", order["master_order_id"])
    assert code == 0
    assert "Child orders" in out and "FILL PRICE" in out and "SLIPPAGE" in out
    assert "demo-20" in out and "FILLED" in out

    code, out, _ = mamctl("--json", "orders", "show", order["master_order_id"])
    shown = json.loads(out)
    assert all(c["fill_price"] for c in shown["children"])


def test_watch_fills_follows_the_stream(mamctl: Mamctl) -> None:
    code, out, err = mamctl(
        "--json", "submit", "--group", "demo", "--symbol", "XAUUSD", "--side", "buy",
        "--volume", "0.30",
    )  # fmt: skip
    assert code == 0, err
    order = json.loads(out)["master_order"]
    code, out, err = mamctl("--json", "watch", "fills", "--master-order", order["master_order_id"])
    assert code == 0, err
    fills = [json.loads(line) for line in out.splitlines()]
    assert sum(Decimal(f["volume"]) for f in fills) == Decimal("0.30")
    assert {f["master_order_id"] for f in fills} == {order["master_order_id"]}

    # Not a terminal: a line per fill, then a summary line.
    code, out, _ = mamctl("watch", "fills", "--after", "0", "--count", "2")
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[:2]] == ["#1", "#2"]
    assert lines[2].startswith("2 fills, stream at sequence ")


def test_a_bad_volume_is_one_line_naming_the_field(mamctl: Mamctl) -> None:
    code, out, err = mamctl(
        "submit", "--group", "demo", "--symbol", "EURUSD", "--side", "buy", "--volume", "0.001"
    )
    assert code == 1
    assert out == ""
    assert err.startswith("error: INVALID_ARGUMENT INVALID_VOLUME: ")
    assert "order.volume" in err
    assert err.count("\n") == 1


def test_a_partial_close_shows_what_was_asked_and_what_the_lot_steps_allowed(
    mamctl: Mamctl,
) -> None:
    code, out, err = mamctl(
        "--json", "submit", "--group", "demo", "--symbol", "EURUSD", "--side", "buy",
        "--volume", "1.00", "--wait",
    )  # fmt: skip
    assert code == 0, err
    opened = json.loads(out)["master_order"]["master_order_id"]
    code, out, err = mamctl("close", opened, "--fraction", "0.5")
    assert code == 0, err
    shown = " ".join(out.split())
    assert "asked fraction 0.5 of the 1.00 lots open = 0.50" in shown
    # The demo's smallest accounts hold 0.01 lot: half of it is below the minimum volume.
    assert "SKIPPED_BELOW_MIN: demo-" in shown
    allowed = re.search(r"lot steps allow (\d+\.\d\d) \((\d+) of (\d+) accounts\)", shown)
    assert allowed is not None, shown
    closed = Decimal(allowed.group(1))
    assert Decimal("0.40") <= closed < Decimal("0.50")

    closing = re.search(r"Close (mo_\w+)", shown)
    assert closing is not None
    code, out, err = mamctl("--json", "orders", "show", closing.group(1))
    assert code == 0, err
    close_order = json.loads(out)
    assert close_order["closes_master_order_id"] == opened
    assert close_order["close_fraction"] == "0.5"
    assert close_order["spec"]["volume"] == "0.50"
    assert close_order["allocation"]["allocated_volume"] == f"{closed}"


def test_close_of_an_unknown_order_prints_one_line(mamctl: Mamctl) -> None:
    code, _, err = mamctl("close", "mo_anything", "--fraction", "1")
    assert code == 1
    assert err.startswith("error: NOT_FOUND MASTER_ORDER_NOT_FOUND: ")
    assert err.count("\n") == 1


def test_kill_switch_on_list_and_off(mamctl: Mamctl) -> None:
    # An account of its own: the gateway is shared with the other tests.
    code, out, err = mamctl(
        "--json", "accounts", "create", "--name", f"ks-{uuid.uuid4().hex[:8]}",
        "--login", "93002", "--server", "mam-sim", "--balance", "1000",
    )  # fmt: skip
    assert code == 0, err
    account_id = json.loads(out)["account_id"]
    code, out, err = mamctl(
        "--json", "kill-switch", "on", "--account", account_id, "--reason", "desk test", "--yes"
    )
    assert code == 0, err
    switch = json.loads(out)
    assert switch["scope"] == "KILL_SWITCH_SCOPE_ACCOUNT" and switch["target_id"] == account_id
    code, out, _ = mamctl("--json", "kill-switch", "list", "--active")
    assert code == 0
    assert switch["kill_switch_id"] in [s["kill_switch_id"] for s in json.loads(out)]
    code, out, _ = mamctl("kill-switch", "off", switch["kill_switch_id"])
    assert code == 0 and "lifted" in out
    code, out, _ = mamctl("--json", "kill-switch", "list", "--active")
    assert switch["kill_switch_id"] not in [s["kill_switch_id"] for s in json.loads(out)]
    code, _, err = mamctl("kill-switch", "on", "--group", "g", "--account", "a", "--reason", "x")
    assert code != 0


def test_keys_and_the_audit_log(mamctl: Mamctl) -> None:
    code, out, err = mamctl("--json", "groups", "list")
    assert code == 0, err
    group_id = json.loads(out)[0]["group_id"]
    code, out, err = mamctl(
        "--json", "keys", "create", "--name", "desk", "--role", "manager", "--group", group_id
    )
    assert code == 0, err
    created = json.loads(out)
    assert created["key"].startswith("mam_") and created["api_key"]["role"] == "ROLE_MANAGER"
    code, out, _ = mamctl("keys", "list")
    assert code == 0 and created["api_key"]["key_id"] in out
    code, out, _ = mamctl("keys", "revoke", created["api_key"]["key_id"])
    assert code == 0 and "revoked" in out
    code, out, _ = mamctl("--json", "audit", "--method", "/mam.v1.AdminService/CreateApiKey")
    assert code == 0
    records = json.loads(out)
    assert records and all(r["method"].endswith("CreateApiKey") for r in records)
    assert created["key"] not in out  # the secret is never in the log
    code, _, err = mamctl("keys", "create", "--name", "x", "--role", "pilot")
    assert code != 0


def test_an_unknown_group_and_an_unreachable_gateway_fail_cleanly(mamctl: Mamctl) -> None:
    code, _, err = mamctl("groups", "show", "no-such-group")
    assert code == 1 and "GROUP_NOT_FOUND" in err

    result = CliRunner().invoke(app, ["--target", "127.0.0.1:1", "groups", "list"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: UNAVAILABLE: cannot reach the gateway")


def test_a_malformed_decimal_is_a_usage_error(mamctl: Mamctl) -> None:
    code, _, err = mamctl(
        "preview", "--group", "demo", "--symbol", "EURUSD", "--side", "buy", "--volume", "1,5"
    )
    assert code == 2
    assert "--volume" in err


def test_groups_source_set_pause_resume_and_remove(mamctl: Mamctl) -> None:
    ids = []
    for i in range(2):
        code, out, err = mamctl(
            "--json", "accounts", "create", "--name", f"src-{uuid.uuid4().hex[:8]}",
            "--login", str(96001 + i), "--server", "mam-sim", "--balance", "20000",
        )  # fmt: skip
        assert code == 0, err
        ids.append(json.loads(out)["account_id"])
    member, source = ids
    name = f"mirror-{uuid.uuid4().hex[:6]}"
    code, _, err = mamctl("groups", "create", "--name", name, "--member", member)
    assert code == 0, err

    code, out, err = mamctl(
        "groups", "source", "set", name, source, "--max-signal-age", "30s", "--paused"
    )
    assert code == 0, err
    assert name in out and source in out and "PAUSED" in out and "30s" in out
    code, out, err = mamctl("--json", "groups", "show", name)
    assert code == 0, err
    shown = json.loads(out)["source"]
    assert (shown["account_id"], shown["paused"], shown["max_signal_age"]) == (source, True, "30.0")

    code, out, err = mamctl("groups", "source", "resume", name)
    assert code == 0 and "copying" in out and "30s" in out, err
    code, out, err = mamctl("--json", "groups", "source", "pause", name)
    assert code == 0, err
    assert json.loads(out)["source"]["paused"] is True
    code, out, _ = mamctl("groups", "show", name)
    assert "PAUSED" in out

    # A member cannot be the group's source; an unknown duration is refused before any call.
    code, _, err = mamctl("groups", "source", "set", name, member)
    assert code == 1 and "SOURCE_IS_MEMBER" in err
    code, _, err = mamctl("groups", "source", "set", name, source, "--max-signal-age", "soon")
    assert code == 2 and "--max-signal-age" in err

    code, out, err = mamctl("groups", "source", "remove", name)
    assert code == 0 and "source: none" in out, err
    code, out, _ = mamctl("--json", "groups", "show", name)
    assert json.loads(out)["source"] is None


@pytest.fixture(scope="module")
def mirroring_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway running the demo strategy: group demo mirrors demo-source, which trades a step
    every half second."""
    process = GatewayProcess(
        tmp_path_factory.mktemp("mirroring"),
        env={
            "MAM__DEMO__STRATEGY": "true",
            "MAM__DEMO__STRATEGY_INTERVAL_SECONDS": "0.5",
            "MAM__SOURCES__LOOK_INTERVAL_SECONDS": "0.1",
        },
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def test_signals_watch_and_list_follow_the_demo_source(mirroring_gateway: GatewayProcess) -> None:
    runner = CliRunner(env=WIDE)

    def run(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, ["--target", mirroring_gateway.address, *args])
        return result.exit_code, result.stdout, result.stderr

    code, out, err = run("groups", "show", "demo")
    assert code == 0 and "demo-source" in out and "copying" in out, err

    # Live: a line per signal as it is stored and again as it is settled.
    code, out, err = run("signals", "watch", "--group", "demo", "--count", "4")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 4
    assert all(line.startswith("#") and "  demo  " in line for line in lines)
    kinds = ("POSITION_", "STOPS_CHANGED", "ORDER_")
    assert all(any(kind in line for kind in kinds) for line in lines)

    # --json: a JSON line each; --after replays the stored ones first.
    code, out, err = run("--json", "signals", "watch", "--after", "0", "--count", "3")
    assert code == 0, err
    streamed = [json.loads(line) for line in out.splitlines()]
    assert [s["sequence"] for s in streamed] == sorted(s["sequence"] for s in streamed)
    assert len(streamed) == 3 and streamed[0]["sequence"] >= 1

    code, out, err = run("signals", "list", "--group", "demo", "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert listed and all(s["source_account_id"] == listed[0]["source_account_id"] for s in listed)
    copied = [s for s in listed if s["state"] == "COPIED" and s["kind"] == "POSITION_OPENED"]
    assert copied and copied[0]["master_order_ids"]
    code, out, err = run("signals", "list", "--group", "demo")
    assert code == 0 and "POSITION_OPENED" in out and "COPIED" in out, err
    after = listed[0]["sequence"]
    code, out, err = run("--json", "signals", "list", "--after", str(after), "--limit", "2")
    assert code == 0, err
    later = json.loads(out)
    assert len(later) <= 2 and all(s["sequence"] > after for s in later)
