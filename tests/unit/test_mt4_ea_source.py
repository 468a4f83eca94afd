"""The MQL4 EA cannot be compiled here; what can drift silently from the gateway is checked in
its source instead: protocol versions, the messages it handles, the fields it sends, and that
its brackets balance outside comments and literals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.terminals.mt4 import messages, records

EA = Path(__file__).resolve().parents[2] / "deploy" / "mt4" / "MamBridge.mq4"
SOURCE = EA.read_text()

REQUESTS = sorted(
    {
        messages.ACCOUNT,
        messages.SYMBOL,
        messages.QUOTE,
        messages.ORDERS,
        messages.HISTORY,
        messages.FIND,
        *messages.TRADE_REQUESTS,
    }
)
RECORD_FIELDS = [
    "ticket", "root", "tag", "symbol", "cmd", "lots", "open_price", "open_time", "close_price",
    "close_time", "sl", "tp", "expiration", "magic", "comment", "profit", "swap", "commission",
    "close_tag", "closed_by",
]  # fmt: skip
HELLO_FIELDS = [
    "protocol_min", "protocol_max", "login", "server", "token", "ea_version", "terminal_build",
    "company",
]  # fmt: skip


def function_body(name: str) -> str:
    start = re.search(rf"^\w[\w ]*\b{name}\(", SOURCE, re.M)
    assert start is not None, f"{name} not defined"
    end = SOURCE.find("\n  }\n", start.end())
    return SOURCE[start.start() : end]


def code_only(text: str) -> str:
    """The source without comments, string and character literals."""
    pattern = r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\''
    return re.sub(pattern, "", text, flags=re.S)


def test_the_ea_speaks_the_gateways_protocol_versions() -> None:
    assert f"#define PROTOCOL_MIN        {messages.PROTOCOL_MIN}" in SOURCE
    assert f"#define PROTOCOL_MAX        {messages.PROTOCOL_MAX}" in SOURCE


@pytest.mark.parametrize("request_type", REQUESTS)
def test_the_ea_answers_every_request_the_gateway_sends(request_type: str) -> None:
    assert f'type == "{request_type}"' in function_body("HandleMessage")


@pytest.mark.parametrize("field", RECORD_FIELDS)
def test_the_ea_sends_every_field_of_an_order_record(field: str) -> None:
    assert f'\\"{field}\\":' in function_body("SelectedOrderJson")


@pytest.mark.parametrize("field", HELLO_FIELDS)
def test_the_ea_says_hello_with_every_field(field: str) -> None:
    assert f'\\"{field}\\":' in function_body("Connect")


def test_the_ea_matches_truncated_comments_from_the_same_length_as_the_gateway() -> None:
    assert f"kept >= {records.MIN_TRUNCATED_MATCH}" in function_body("CommentMatches")


def test_the_ea_source_brackets_balance() -> None:
    code = code_only(SOURCE)
    for opening, closing in ("()", "{}", "[]"):
        assert code.count(opening) == code.count(closing), opening + closing
