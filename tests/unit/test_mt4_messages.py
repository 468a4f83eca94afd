"""Messages of the MT4 bridge: what the gateway sends is flat and exact, what the EA sends is
checked field by field."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from gateway.terminals.mt4 import messages
from gateway.terminals.mt4.framing import DEFAULT_MAX_FRAME_BYTES, encode_frame, read_message
from gateway.terminals.mt4.messages import MessageError

HELLO: dict[str, Any] = {
    "type": "hello",
    "protocol_min": 1,
    "protocol_max": 1,
    "login": 5001,
    "server": "Broker-Demo",
    "token": "t0ken",
    "ea_version": "1.00",
    "terminal_build": 1420,
    "company": "Broker Ltd",
}

RECORD: dict[str, Any] = {
    "ticket": 1002,
    "root": 1001,
    "tag": "mam:0123456789ABCDEFGHJK",
    "symbol": "EURUSD",
    "cmd": 0,
    "lots": "0.60",
    "open_price": "1.08454",
    "open_time": 1767614400,
    "close_price": "1.08446",
    "close_time": 0,
    "sl": "0",
    "tp": "1.09000",
    "expiration": 0,
    "magic": 700001,
    "comment": "from #1001",
    "profit": "-4.80",
    "swap": "0",
    "commission": "-0.42",
    "close_tag": "",
    "closed_by": 0,
}


@pytest.mark.parametrize(
    ("peer_min", "peer_max", "agreed"),
    [(1, 1, 1), (1, 2, 2), (1, 3, 2), (0, 1, 1), (2, 3, 2), (3, 4, None), (0, 0, None)],
)
def test_the_highest_version_both_ends_speak_is_agreed(
    peer_min: int, peer_max: int, agreed: int | None
) -> None:
    assert messages.negotiate(peer_min, peer_max) == agreed


def test_a_hello_is_read_and_its_token_never_shows_in_its_repr() -> None:
    hello = messages.parse_hello(HELLO)
    assert (hello.login, hello.server, hello.token) == (5001, "Broker-Demo", "t0ken")
    assert "t0ken" not in repr(hello)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"type": "heartbeat"}, "expected a hello"),
        ({"token": None}, "token: expected a string"),
        ({"login": True}, "login: expected an integer"),
        ({"login": "5001"}, "login: expected an integer"),
        ({"login": 0}, "positive account number"),
        ({"protocol_min": 2, "protocol_max": 1}, "protocol_min above protocol_max"),
        ({"token": "x" * 600}, "longer than"),
    ],
)
def test_a_bad_hello_is_refused(change: dict[str, Any], why: str) -> None:
    with pytest.raises(MessageError, match=why):
        messages.parse_hello({**HELLO, **change})


def test_a_hello_without_a_field_is_refused() -> None:
    incomplete = {k: v for k, v in HELLO.items() if k != "terminal_build"}
    with pytest.raises(MessageError, match="missing field 'terminal_build'"):
        messages.parse_hello(incomplete)


@pytest.mark.parametrize("text", ["1.5", "-12.25", "0", "100"])
def test_decimal_strings_are_read_exactly(text: str) -> None:
    assert messages.read_decimal({"v": text}, "v") == Decimal(text)


@pytest.mark.parametrize("value", ["1e5", "", " 1", "1.", ".5", "NaN", "Infinity", 1, "1,5"])
def test_anything_but_a_plain_decimal_string_is_refused(value: object) -> None:
    with pytest.raises(MessageError, match="decimal string"):
        messages.read_decimal({"v": value}, "v")


def test_an_order_record_is_read_with_none_for_mql4_zeros() -> None:
    record = messages.parse_record(RECORD)
    assert record.root == 1001 and record.lots == Decimal("0.60")
    assert record.stop_loss is None and record.take_profit == Decimal("1.09000")
    assert record.close_time is None and record.is_open and record.is_market
    assert record.open_time == datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    assert record.commission == Decimal("-0.42")


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"cmd": 6}, "unknown MT4 operation"),
        ({"open_time": 0}, "always has one"),
        ({"close_time": -1}, "negative time"),
        ({"lots": 0.6}, "decimal string"),
    ],
)
def test_a_bad_order_record_is_refused(change: dict[str, Any], why: str) -> None:
    with pytest.raises(MessageError, match=why):
        messages.parse_record({**RECORD, **change})


def test_a_trade_success_must_carry_its_order() -> None:
    reply = {"type": "trade_result", "error": 0, "message": "", "bid": "0", "ask": "0"}
    with pytest.raises(MessageError, match="without the order"):
        messages.parse_trade_reply(reply)
    failed = messages.parse_trade_reply({**reply, "error": 138, "bid": "1.1", "ask": "1.2"})
    assert failed.order is None and failed.bid == Decimal("1.1")
    done = messages.parse_trade_reply({**reply, "order": RECORD, "remainder": RECORD})
    assert done.order is not None and done.remainder is not None and done.opposite is None


def test_a_missing_symbol_is_not_a_spec() -> None:
    assert messages.parse_symbol({"type": "symbol", "symbol": "XAUEUR", "found": False}) is None
    assert messages.parse_quote({"type": "quote", "symbol": "XAUEUR", "found": False}) is None


REQUESTS = [
    messages.account_request(),
    messages.symbol_request("EURUSD"),
    messages.quote_request("EURUSD"),
    messages.orders_request(),
    messages.history_request(datetime(2026, 1, 5, 12, 0, 0, 900_000, tzinfo=UTC)),
    messages.find_request("mam:0123456789ABCDEFGHJK"),
    messages.order_send_request(
        symbol="EURUSD",
        cmd=messages.OP_BUYLIMIT,
        volume=Decimal("0.10"),
        price=Decimal("1.08000"),
        slippage=20,
        stop_loss=None,
        take_profit=Decimal("1.09000"),
        comment="mam:0123456789ABCDEFGHJK",
        magic=700001,
        expiration=datetime(2026, 1, 6, tzinfo=UTC),
    ),
    messages.order_modify_request(
        ticket=7, price=None, stop_loss=Decimal("1.07"), take_profit=None, expiration=None, tag="t"
    ),
    messages.order_close_request(ticket=7, volume=Decimal("1E+1"), price=None, slippage=0, tag="t"),
    messages.order_delete_request(ticket=7, tag="t"),
    messages.order_close_by_request(ticket=7, opposite=8, tag="t"),
]


@pytest.mark.parametrize("request_message", REQUESTS, ids=lambda r: r["type"])
def test_requests_to_the_ea_are_flat_with_no_float(request_message: dict[str, Any]) -> None:
    for value in request_message.values():
        assert isinstance(value, str | int) and not isinstance(value, bool | float)


def test_request_fields_are_plain_decimals_and_whole_utc_seconds() -> None:
    send = REQUESTS[6]
    assert (send["volume"], send["price"], send["sl"], send["tp"]) == (
        "0.10",
        "1.08000",
        "0",
        "1.09000",
    )
    assert send["expiration"] == 1767657600
    assert REQUESTS[4]["since"] == 1767614400  # rounded down to the second
    assert REQUESTS[8]["volume"] == "10"  # never "1E+1"
    assert REQUESTS[7]["price"] == "0"  # keep the price


# -- protocol 2: the pushed trade pool and its number ----------------------------------------


def test_a_pushed_pool_is_read_whole_under_its_number() -> None:
    report = messages.parse_book({"type": "orders_changed", "seq": 17, "orders": [RECORD, RECORD]})
    assert report.seq == 17 and report.records is not None
    assert [r.ticket for r in report.records] == [1002, 1002]
    empty = messages.parse_book({"type": "orders", "id": "g-1", "seq": 0, "orders": []})
    assert (empty.seq, empty.records) == (0, ())


def test_a_pool_too_large_to_push_comes_as_its_number_alone() -> None:
    report = messages.parse_book({"type": "orders_changed", "seq": 18, "too_large": True})
    assert (report.seq, report.records) == (18, None)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"seq": -1}, "negative sequence"),
        ({"seq": "17"}, "seq: expected an integer"),
        ({"seq": True}, "seq: expected an integer"),
        ({"orders": None}, "expected an array of objects"),
        ({"too_large": "yes"}, "missing field 'orders'"),
    ],
)
def test_a_bad_pushed_pool_is_refused(change: dict[str, Any], why: str) -> None:
    message = {"type": "orders_changed", "seq": 1, "orders": [RECORD], **change}
    if "too_large" in change:
        del message["orders"]
    with pytest.raises(MessageError, match=why):
        messages.parse_book(message)


def test_a_pool_without_its_number_is_refused() -> None:
    with pytest.raises(MessageError, match="missing field 'seq'"):
        messages.parse_book({"type": "orders_changed", "orders": [RECORD]})


def test_a_trade_result_names_the_number_of_the_pool_it_left_from_protocol_2() -> None:
    reply = {"type": "trade_result", "error": 0, "message": "", "bid": "0", "ask": "0"}
    assert messages.parse_trade_reply({**reply, "order": RECORD}).seq is None
    assert messages.parse_trade_reply({**reply, "order": RECORD, "seq": 9}).seq == 9
    assert messages.parse_trade_reply({**reply, "error": 146, "seq": 9}).seq == 9
    with pytest.raises(MessageError, match="negative sequence"):
        messages.parse_trade_reply({**reply, "order": RECORD, "seq": -2})


async def test_a_pushed_pool_crosses_the_framing_intact() -> None:
    event = {"type": "orders_changed", "seq": 41, "orders": [RECORD] * 50}
    reader = asyncio.StreamReader()
    reader.feed_data(encode_frame(event))
    reader.feed_eof()
    received = await read_message(reader, max_bytes=DEFAULT_MAX_FRAME_BYTES)
    assert received == event
    report = messages.parse_book(received)
    assert report.seq == 41 and report.records is not None and len(report.records) == 50
