"""mamctl as an operator meets it in the first hour, against a real gateway: groups and accounts
named by id or name everywhere, errors worded for people, enum choices without UNSPECIFIED,
submit's exit codes, follow commands that write each line at once and stop cleanly on SIGTERM,
and `groups set` keeping what it does not change."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from conftest import GatewayProcess
from mam_client import SyncMamClient
from mam_client._proto.mam.v1 import account_pb2, account_service_pb2
from mam_client.cli import app
from typer.testing import CliRunner

WIDE = {"COLUMNS": "250"}
MAMCTL = Path(sys.executable).parent / "mamctl"  # the installed entry point

Mamctl = Callable[..., tuple[int, str, str]]


@pytest.fixture
def mamctl(gateway: GatewayProcess) -> Mamctl:
    runner = CliRunner(env={**WIDE, "MAM_API_KEY": None, "MAM_TARGET": None})

    def run(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, ["--target", gateway.address, *args])
        return result.exit_code, result.stdout, result.stderr

    return run


def new_account(mamctl: Mamctl, prefix: str, balance: str = "10000") -> tuple[str, str]:
    """A fresh simulated account: (id, name)."""
    unique = uuid.uuid4()
    name = f"{prefix}-{unique.hex[:8]}"
    code, out, err = mamctl(
        "--json", "accounts", "create", "--name", name, "--server", "mam-sim",
        "--login", str(1_000_000 + unique.int % 1_000_000), "--balance", balance,
    )  # fmt: skip
    assert code == 0, err
    return json.loads(out)["account_id"], name


def ids_of(mamctl: Mamctl) -> dict[str, str]:
    """Every account's id by its name."""
    code, out, err = mamctl("--json", "accounts", "list")
    assert code == 0, err
    return {a["name"]: a["account_id"] for a in json.loads(out)}


# Names and ids


def test_keys_create_takes_a_group_and_an_account_by_name(mamctl: Mamctl) -> None:
    code, out, err = mamctl("--json", "groups", "show", "demo")
    assert code == 0, err
    demo_id = json.loads(out)["group_id"]

    code, out, err = mamctl(
        "--json", "keys", "create", "--name", "desk", "--role", "manager", "--group", "demo"
    )
    assert code == 0, err
    assert json.loads(out)["api_key"]["group_ids"] == [demo_id]

    code, out, err = mamctl(
        "--json", "keys", "create", "--name", "client", "--role", "investor", "--account", "demo-20"
    )
    assert code == 0, err
    assert json.loads(out)["api_key"]["account_ids"] == [ids_of(mamctl)["demo-20"]]


def test_statement_performance_and_accounts_show_take_an_account_by_name(
    mamctl: Mamctl, tmp_path: Path
) -> None:
    today = datetime.now(UTC).date().isoformat()
    out_file = tmp_path / "demo-20.csv"
    code, _, err = mamctl(
        "statement", "demo-20", "--start", today, "--end", today,
        "--format", "csv", "--out", str(out_file),
    )  # fmt: skip
    assert code == 0, err
    assert out_file.stat().st_size > 0

    code, out, err = mamctl("--json", "performance", "demo-20", "--start", today, "--end", today)
    assert code == 0, err
    assert json.loads(out)["account_id"] == ids_of(mamctl)["demo-20"]

    code, out, err = mamctl("--json", "accounts", "show", "demo-20")
    assert code == 0, err
    assert json.loads(out)["name"] == "demo-20"


def test_groups_create_and_set_take_members_and_the_reference_account_by_name(
    mamctl: Mamctl,
) -> None:
    (a_id, a), (b_id, b), (ref_id, ref) = (new_account(mamctl, "byname") for _ in range(3))
    group = f"names-{uuid.uuid4().hex[:6]}"
    code, out, err = mamctl(
        "--json", "groups", "create", "--name", group, "--method", "equity_ratio",
        "--reference-account", ref, "--member", f"{a}:max=2",
    )  # fmt: skip
    assert code == 0, err
    created = json.loads(out)
    assert created["allocation"]["reference_account_id"] == ref_id
    assert [(m["account_id"], m["max_lots"]) for m in created["members"]] == [(a_id, "2")]

    code, out, err = mamctl("--json", "groups", "set", group, "--add-member", b)
    assert code == 0, err
    assert [m["account_id"] for m in json.loads(out)["members"]] == [a_id, b_id]
    code, out, err = mamctl("--json", "groups", "set", group, "--remove-member", a)
    assert code == 0, err
    assert [m["account_id"] for m in json.loads(out)["members"]] == [b_id]


def test_kill_switches_and_watch_fills_take_groups_and_accounts_by_name(mamctl: Mamctl) -> None:
    account_id, account = new_account(mamctl, "ks-name")
    group = f"ks-{uuid.uuid4().hex[:6]}"
    code, out, err = mamctl("--json", "groups", "create", "--name", group, "--member", account)
    assert code == 0, err
    group_id = json.loads(out)["group_id"]

    for option, name, target_id in (
        ("--account", account, account_id),
        ("--group", group, group_id),
    ):
        code, out, err = mamctl(
            "--json", "kill-switch", "on", option, name, "--reason", "by name", "--yes"
        )
        assert code == 0, err
        switch = json.loads(out)
        assert switch["target_id"] == target_id
        code, _, err = mamctl("kill-switch", "off", switch["kill_switch_id"])
        assert code == 0, err

    code, out, err = mamctl(
        "--json", "submit", "--group", "demo", "--symbol", "EURUSD", "--side", "buy",
        "--volume", "1.00", "--wait",
    )  # fmt: skip
    assert code == 0, err
    code, out, err = mamctl(
        "--json", "watch", "fills", "--account", "demo-20", "--after", "0", "--count", "1"
    )
    assert code == 0, err
    assert json.loads(out)["account_id"] == ids_of(mamctl)["demo-20"]


# Errors and choices


@pytest.fixture(scope="module")
def keyed_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway that wants an API key, as `make run`'s does."""
    directory = tmp_path_factory.mktemp("keyed")
    process = GatewayProcess(
        directory,
        env={
            "MAM__AUTH__REQUIRED": "true",
            "MAM__AUTH__BOOTSTRAP_ADMIN_KEY_FILE": str(directory / "admin.key"),
        },
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def test_a_missing_api_key_names_mam_api_key_and_the_option(
    keyed_gateway: GatewayProcess,
) -> None:
    runner = CliRunner(env={"MAM_API_KEY": None, "MAM_TARGET": None})
    for args in (["groups", "list"], ["keys", "list"], ["performance", "demo-20",
                 "--start", "2026-01-01", "--end", "2026-01-02"]):  # fmt: skip
        result = runner.invoke(app, ["--target", keyed_gateway.address, *args])
        assert result.exit_code == 1
        assert result.stderr.startswith("error: UNAUTHENTICATED API_KEY_MISSING: ")
        assert "MAM_API_KEY" in result.stderr and "--api-key" in result.stderr
        assert "metadata" not in result.stderr and result.stderr.count("\n") == 1

    # The CSV import names the row it stopped at, and then the same.
    example = Path(__file__).resolve().parents[1] / "examples" / "accounts.csv"
    result = runner.invoke(
        app, ["--target", keyed_gateway.address, "accounts", "import", str(example)]
    )
    assert result.exit_code == 1
    assert "accounts.csv:2" in result.stderr and "API_KEY_MISSING" in result.stderr
    assert "MAM_API_KEY" in result.stderr and "metadata" not in result.stderr


def _command_paths(
    command: typer.core.TyperGroup, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    for name, sub in command.commands.items():
        yield (*prefix, name)
        if isinstance(sub, typer.core.TyperGroup):
            yield from _command_paths(sub, (*prefix, name))


def test_no_help_offers_unspecified_as_a_choice() -> None:
    runner = CliRunner(env=WIDE)
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    paths = list(_command_paths(root))
    assert ("submit",) in paths and ("groups", "source", "set") in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, path
        assert "unspecified" not in result.stdout.lower(), path


def test_an_unknown_or_unspecified_side_lists_only_real_choices(mamctl: Mamctl) -> None:
    for side in ("long", "unspecified"):
        code, out, err = mamctl(
            "preview", "--group", "demo", "--symbol", "EURUSD", "--side", side, "--volume", "1"
        )
        assert code == 2 and out == ""
        assert "buy, sell" in err and "unspecified" not in err.replace(f"'{side}'", "")
    code, _, err = mamctl("keys", "create", "--name", "x", "--role", "unspecified")
    assert code == 2 and "admin, manager, investor" in err
    # Each value still in any case.
    code, _, err = mamctl(
        "preview", "--group", "demo", "--symbol", "EURUSD", "--side", "SeLl", "--volume", "1",
        "--type", "MARKET",
    )  # fmt: skip
    assert code == 0, err


# submit's exit codes


def test_submit_wait_exit_code_tells_filled_partial_and_rejected(mamctl: Mamctl) -> None:
    rich, _ = new_account(mamctl, "rich", "100000")
    poor, _ = new_account(mamctl, "poor", "1")  # NO_MONEY for a lot of anything
    partial, rejected = (f"exit-{uuid.uuid4().hex[:6]}" for _ in range(2))
    code, _, err = mamctl(
        "groups", "create", "--name", partial, "--method", "fixed_lots",
        "--member", f"{rich}:lots=0.10", "--member", f"{poor}:lots=1",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = mamctl(
        "groups", "create", "--name", rejected, "--method", "fixed_lots",
        "--member", f"{poor}:lots=1",
    )  # fmt: skip
    assert code == 0, err

    def submit(group: str, *more: str) -> tuple[int, str]:
        code, out, err = mamctl(
            "--json", "submit", "--group", group, "--symbol", "EURUSD", "--side", "buy",
            "--volume", "1", "--wait", *more,
        )  # fmt: skip
        assert code in (0, 3, 4), err
        return code, json.loads(out)["master_order"]["state"]

    assert submit(partial) == (3, "PARTIALLY_FILLED")
    assert submit(partial, "--accept-partial") == (0, "PARTIALLY_FILLED")
    assert submit(rejected) == (4, "REJECTED")
    assert submit(rejected, "--accept-partial") == (4, "REJECTED")
    code, out, _ = mamctl(
        "submit", "--group", "demo", "--symbol", "EURUSD", "--side", "buy", "--volume", "0.5",
        "--wait",
    )  # fmt: skip
    assert code == 0 and "FILLED" in out

    code, out, _ = mamctl("submit", "--help")
    assert "--accept-partial" in out and "PARTIALLY_FILLED" in out


# Follow commands into a file


def _follow(
    gateway: GatewayProcess, tmp_path: Path, *args: str
) -> tuple[subprocess.Popen[bytes], Path]:
    """mamctl ARGS with its stdout redirected into a file, as `mamctl watch fills > fills.log`."""
    out = tmp_path / f"out-{uuid.uuid4().hex[:6]}.log"
    env = {k: v for k, v in os.environ.items() if k not in ("MAM_API_KEY", "MAM_TARGET")}
    with out.open("wb") as handle:
        process = subprocess.Popen(
            [str(MAMCTL), "--target", gateway.address, *args],
            stdout=handle,
            stderr=subprocess.PIPE,
            env=env,
        )
    return process, out


def _lines_within(path: Path, count: int, timeout_s: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while ((lines := path.read_text().splitlines()) and len(lines) < count) or not lines:
        assert time.monotonic() < deadline, f"{path.name}: {len(lines)} of {count} lines"
        time.sleep(0.05)
    return lines


@pytest.mark.parametrize("json_output", [False, True], ids=["lines", "json"])
def test_watch_fills_into_a_file_writes_each_fill_at_once_and_stops_on_sigterm(
    gateway: GatewayProcess, mamctl: Mamctl, tmp_path: Path, json_output: bool
) -> None:
    code, out, err = mamctl(
        "--json", "submit", "--group", "demo", "--symbol", "EURUSD", "--side", "sell",
        "--volume", "1.00", "--wait",
    )  # fmt: skip
    assert code == 0, err
    order = json.loads(out)["master_order"]
    filled = order["child_count"]
    args = ("--json",) if json_output else ()
    demo_20 = ids_of(mamctl)["demo-20"]
    process, path = _follow(
        gateway, tmp_path, *args, "watch", "fills", "--after", "0", "--account", demo_20
    )
    try:
        lines = _lines_within(path, 1)  # written while mamctl still runs
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    lines = path.read_text().splitlines()
    assert process.stderr is not None and process.stderr.read() == b""
    if json_output:
        assert all(json.loads(line)["sequence"] for line in lines)
    else:
        assert lines[0].startswith("#") and "demo-20" in lines[0]
        assert lines[-1].startswith(f"{len(lines) - 1} fills, stream at sequence ")
    assert filled > 0


def test_signals_watch_stops_on_sigterm_with_exit_0(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    process, _ = _follow(gateway, tmp_path, "signals", "watch", "--group", "demo")
    try:
        time.sleep(2.5)  # connected and waiting: nothing is mirrored on this gateway
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# groups set keeps what it does not change


def test_groups_set_add_member_keeps_the_other_members_own_risk_limits(
    mamctl: Mamctl, sync_client: SyncMamClient
) -> None:
    (a_id, _), (b_id, _) = new_account(mamctl, "limited"), new_account(mamctl, "added")
    name = f"limits-{uuid.uuid4().hex[:6]}"
    code, out, err = mamctl("--json", "groups", "create", "--name", name, "--member", a_id)
    assert code == 0, err
    group_id = json.loads(out)["group_id"]
    limits = account_pb2.RiskLimits(
        max_order_volume="1.50",
        max_open_positions=3,
        min_margin_level="150",
        denied_symbols=["XAUUSD"],
        trading_windows=[
            account_pb2.TradingWindow(
                start_day=account_pb2.WEEKDAY_MONDAY,
                start_time="06:00",
                end_day=account_pb2.WEEKDAY_FRIDAY,
                end_time="20:00",
            )
        ],
    )
    # Set with the API itself: mamctl has no option for a member's limits.
    sync_client.accounts_stub.UpdateGroup(
        account_service_pb2.UpdateGroupRequest(
            group=account_pb2.Group(
                group_id=group_id,
                members=[account_pb2.GroupMember(account_id=a_id, risk_limits=limits)],
            ),
            update_mask={"paths": ["members"]},
        )
    )

    code, _, err = mamctl("groups", "set", name, "--add-member", b_id)
    assert code == 0, err

    stored = sync_client.accounts_stub.GetGroup(
        account_service_pb2.GetGroupRequest(group_id=group_id)
    ).group
    members = {m.account_id: m for m in stored.members}
    assert set(members) == {a_id, b_id}
    assert members[a_id].risk_limits == limits
    assert not members[b_id].HasField("risk_limits")
    # The typed client reads them too.
    group = next(g for g in sync_client.list_groups() if g.group_id == group_id)
    limited = next(m for m in group.members if m.account_id == a_id)
    assert limited.risk_limits is not None
    assert str(limited.risk_limits.max_order_volume) == "1.50"
    assert limited.risk_limits.denied_symbols == ("XAUUSD",)
