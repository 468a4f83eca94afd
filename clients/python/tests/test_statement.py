"""`mamctl statement` and `mamctl performance` against a real gateway whose monitor stores each
account's history every 0.3 s, so that a trade shows up in the statement."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import GatewayProcess
from mam_client import OrderSpec, OrderType, Side, SyncMamClient
from mam_client._proto.mam.v1 import reporting_service_pb2 as rpt
from mam_client.cli import app
from mam_client.reporting import StatementFormat
from pypdf import PdfReader
from typer.testing import CliRunner

WAIT_S = 30.0


@pytest.fixture(scope="module")
def recording_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MAM__ENGINE__HISTORY_INTERVAL_SECONDS", "0.3")
        process = GatewayProcess(tmp_path_factory.mktemp("reporting"))
        process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def traded_account(recording_gateway: GatewayProcess) -> tuple[str, str]:
    """(account id, name) of a demo account that bought, once its deal is stored."""
    with SyncMamClient.connect(recording_gateway.address) as client:
        group = next(g for g in client.list_groups() if g.name == "demo")
        account_id = group.members[-1].account_id
        order = client.submit_master_order(
            OrderSpec(
                group_id=group.group_id,
                symbol="EURUSD",
                side=Side.BUY,
                volume=Decimal("1.00"),
                type=OrderType.MARKET,
            )
        ).master_order
        stored = rpt.ListAccountDealsRequest(account_id=account_id)
        deadline = time.monotonic() + WAIT_S
        while not client.reporting_stub.ListAccountDeals(stored).deals:
            assert time.monotonic() < deadline, f"no deal of {order.master_order_id} stored"
            time.sleep(0.1)
        return account_id, client.get_account(account_id).name


def mamctl(gateway: GatewayProcess, *args: str) -> tuple[int, str, str]:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["--target", gateway.address, *args])
    return result.exit_code, result.stdout, result.stderr


def days() -> tuple[str, str]:
    today = datetime.now(UTC).date()
    return (today - timedelta(days=1)).isoformat(), (today + timedelta(days=1)).isoformat()


def test_a_csv_statement_lists_the_accounts_deal(
    recording_gateway: GatewayProcess, traded_account: tuple[str, str], tmp_path: Path
) -> None:
    account_id, _ = traded_account
    start, end = days()
    out = tmp_path / "deals.csv"
    code, stdout, stderr = mamctl(
        recording_gateway, "statement", account_id, "--start", start, "--end", end,
        "--format", "csv", "--out", str(out),
    )  # fmt: skip
    assert code == 0, stderr
    assert f"wrote {out}" in stdout
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [(r["side"], r["entry"], r["symbol"]) for r in rows] == [("BUY", "IN", "EURUSD")]
    assert list(tmp_path.iterdir()) == [out]


def test_a_pdf_statement_is_written_under_the_gateways_name(
    recording_gateway: GatewayProcess,
    traded_account: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account_id, name = traded_account
    start, end = days()
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = mamctl(
        recording_gateway, "--json", "statement", account_id, "--start", start, "--end", end
    )
    assert code == 0, stderr
    written = json.loads(stdout)
    path = Path(written["file"])
    assert path.parent == tmp_path and path.name == written["file_name"]
    assert path.name == f"statement-{account_id}-{start}-{end}.pdf"
    assert written["content_type"] == "application/pdf"
    assert written["size"] == path.stat().st_size
    text = "".join(page.extract_text() for page in PdfReader(path).pages)
    assert name in text


def test_the_client_streams_an_html_statement_into_a_file(
    recording_gateway: GatewayProcess, traded_account: tuple[str, str]
) -> None:
    account_id, name = traded_account
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    out = io.BytesIO()
    with SyncMamClient.connect(recording_gateway.address) as client:
        received = client.download_account_statement(
            account_id,
            out,
            start=today,
            end=today + timedelta(days=1),
            format=StatementFormat.HTML,
        )
    assert received.content_type.startswith("text/html")
    assert received.size == len(out.getvalue()) > 0
    assert name in out.getvalue().decode()


def test_performance_shows_the_accounts_equity(
    recording_gateway: GatewayProcess, traded_account: tuple[str, str]
) -> None:
    account_id, _ = traded_account
    start, end = days()
    code, stdout, stderr = mamctl(
        recording_gateway, "--json", "performance", account_id, "--start", start, "--end", end
    )
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["account_id"] == account_id
    assert report["closing_equity"] is not None and report["opening_equity"] is not None
    assert report["trades"] == 0  # one opening deal: no closed trade yet
    assert report["equity_curve"][-1]["day"] == datetime.now(UTC).date().isoformat()
    code, stdout, _ = mamctl(
        recording_gateway, "performance", account_id, "--start", start, "--end", end
    )
    assert code == 0 and "time-weighted return" in stdout and "closing equity" in stdout


def test_a_statement_of_an_unknown_account_fails_and_leaves_no_file(
    recording_gateway: GatewayProcess, tmp_path: Path
) -> None:
    start, end = days()
    out = tmp_path / "nothing.pdf"
    code, _, stderr = mamctl(
        recording_gateway, "statement", "ac_nobody", "--start", start, "--end", end,
        "--out", str(out),
    )  # fmt: skip
    assert code == 1
    assert "ACCOUNT_NOT_FOUND" in stderr
    assert list(tmp_path.iterdir()) == []
    code, _, stderr = mamctl(
        recording_gateway, "statement", "ac_nobody", "--start", end, "--end", start
    )
    assert code != 0 and "--end" in stderr
