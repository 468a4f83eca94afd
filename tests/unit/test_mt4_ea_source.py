"""The MQL4 EA cannot be compiled here; what can drift silently from the gateway is checked in
its source instead: protocol versions, the messages it handles, the fields it sends, and that
its brackets balance outside comments and literals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.domain.peer_authentication import MIN_TOKEN_LENGTH
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
    assert f'\\"{field}\\":' in function_body("SayHello")


def test_the_ea_matches_truncated_comments_from_the_same_length_as_the_gateway() -> None:
    assert f"kept >= {records.MIN_TRUNCATED_MATCH}" in function_body("CommentMatches")


def test_the_ea_source_brackets_balance() -> None:
    code = code_only(SOURCE)
    for opening, closing in ("()", "{}", "[]"):
        assert code.count(opening) == code.count(closing), opening + closing


# -- issue 28: what the EA does at a start, a reconnection and a slow trade ------------------
# The EA cannot run here: these read its source for the behaviour each fix stands on.


def test_the_ea_starts_afresh_at_every_oninit_since_its_globals_survive_an_input_change() -> None:
    reset = function_body("ResetState")
    for variable in (
        "g_giveUp = false",
        "g_retryMs = 0",
        "g_lastAttempt = 0",
        "g_connecting = false",
    ):
        assert variable in reset, variable
    on_init = function_body("OnInit")
    assert on_init.index("ResetState();") < on_init.index("WSAStartup")


def test_the_ea_measures_the_utc_offset_only_from_a_server_time_seen_to_move() -> None:
    seed = function_body("SeedUtcOffset")
    assert "g_lastServerTime = TimeCurrent();" in seed and "g_serverTimeMovedAt = 0;" in seed
    on_init = function_body("OnInit")
    assert "SeedUtcOffset();" in on_init and "UpdateUtcOffset" not in on_init
    update = function_body("UpdateUtcOffset")
    # No offset from a TimeCurrent() that has not moved since OnInit (a weekend's last tick),
    # nor from one that moved from 0 or faster than the local clock (old quotes arriving).
    assert "g_serverTimeMovedAt == 0" in update
    assert update.index("g_serverTimeMovedAt == 0") < update.index("TimeGMT()")
    moved = update.index("g_serverTimeMovedAt = TimeLocal();")
    condition = "g_lastServerTime != 0 && serverStep > 0 && serverStep <= localStep + 2"
    assert 0 < update.index(condition) < moved


def test_the_ea_keeps_the_last_good_utc_offset_in_a_terminal_global_variable() -> None:
    assert "GlobalVariableSet(UtcOffsetVariable(), offset)" in function_body("UpdateUtcOffset")
    assert "GlobalVariableGet(UtcOffsetVariable(), saved)" in function_body("LoadSavedUtcOffset")
    assert "LoadSavedUtcOffset();" in function_body("SeedUtcOffset")


def test_the_ea_bounds_the_utc_offset_to_fourteen_hours() -> None:
    assert f"#define MAX_UTC_OFFSET_SECONDS {14 * 3600}" in SOURCE
    update = function_body("UpdateUtcOffset")
    bound = update.index("MathAbs(offset) > MAX_UTC_OFFSET_SECONDS")
    assert bound < update.index("GlobalVariableSet")
    assert "MAX_UTC_OFFSET_SECONDS" in function_body("LoadSavedUtcOffset")


def test_the_ea_counts_the_gateways_silence_from_after_a_request_is_handled() -> None:
    receive = function_body("ReceiveAndHandle")
    assert receive.count("g_lastReceived = GetTickCount();") == 1
    assert receive.index("HandleMessage(payload);") < receive.index(
        "g_lastReceived = GetTickCount();"
    )


def test_the_ea_connects_without_blocking_and_polls_the_attempt() -> None:
    connect = function_body("Connect")
    assert connect.index("ioctlsocket(s, (uint)FIONBIO") < connect.index("connect(s, target")
    assert "error != WSAEWOULDBLOCK" in connect and "g_connecting = true;" in connect
    poll = function_body("PollConnect")
    assert "select(0, readable, writable, failed, noWait)" in poll
    assert "CONNECT_TIMEOUT_MS" in poll and "SayHello();" in poll
    assert "PollConnect();" in function_body("OnTimer")
    assert "int    select(int nfds, FdSet &readable" in SOURCE


def test_the_ea_reports_trade_permission_not_a_busy_trade_context() -> None:
    assert "IsTradeAllowed" not in code_only(SOURCE)
    permitted = function_body("TradePermitted")
    assert "TerminalInfoInteger(TERMINAL_TRADE_ALLOWED)" in permitted
    assert "MQLInfoInteger(MQL_TRADE_ALLOWED)" in permitted
    assert "TradePermitted()" in function_body("AccountFields")


def test_the_ea_cleans_winsock_up_once_it_started_it() -> None:
    deinit = function_body("OnDeinit")
    assert "WSACleanup();" in deinit and "if(g_wsaStarted)" in deinit
    assert "g_wsaStarted = true;" in function_body("OnInit")


def test_the_ea_refuses_a_token_shorter_than_the_gateway_accepts() -> None:
    assert f"#define MIN_TOKEN_LENGTH    {MIN_TOKEN_LENGTH}" in SOURCE
    assert "StringLen(BridgeToken) < MIN_TOKEN_LENGTH" in function_body("OnInit")


# -- protocol 2: the EA pushes its trade pool at every change ------------------------------


def test_the_ea_advertises_trade_events_unless_told_not_to() -> None:
    assert "IntegerToString(PushTradeEvents ? PROTOCOL_MAX : 1)" in function_body("SayHello")
    assert f"#define TRADE_EVENTS_PROTOCOL {messages.TRADE_EVENTS_PROTOCOL}" in SOURCE


def test_the_ea_pushes_its_pool_at_every_tick_of_a_protocol_2_session() -> None:
    on_timer = function_body("OnTimer")
    guarded = "if(g_protocol >= TRADE_EVENTS_PROTOCOL)\n      PushBook();"
    assert guarded in on_timer
    # Before the PushIntervalMs pushes (account values; the pool itself in protocol 1 only).
    assert on_timer.index(guarded) < on_timer.index("PushChanges();")
    assert "if(g_protocol < TRADE_EVENTS_PROTOCOL)\n      PushBook();" in function_body(
        "PushChanges"
    )


def test_a_new_session_pushes_the_pool_at_once() -> None:
    handshake = function_body("HandleHandshake")
    assert 'g_protocol = (int)StringToInteger(Field(keys, values, "protocol"));' in handshake
    assert "g_bookUnsent = true;" in handshake
    reset = function_body("ResetState")
    for variable in ("g_protocol = 0", "g_bookSeq = 0", "g_bookUnsent = false", "g_bookCount = -1"):
        assert variable in reset, variable


def test_the_ea_detects_a_change_of_its_pool_by_comparing_numbers_not_strings() -> None:
    changed = function_body("BookChanged")
    assert "OrderSelect(i, SELECT_BY_POS, MODE_TRADES)" in changed
    for reader in (
        "OrderTicket()",
        "OrderType()",
        "OrderLots()",
        "OrderOpenPrice()",
        "OrderStopLoss()",
        "OrderTakeProfit()",
        "OrderExpiration()",
    ):
        assert reader in changed, reader
    assert "OrderProfit" not in changed and "ToString" not in changed
    assert "if(count != g_bookCount)" in changed
    seq = function_body("BookSeq")
    assert "g_bookSeq++;" in seq and "g_bookUnsent = true;" in seq


def test_a_push_holds_the_whole_pool_under_its_number_or_says_it_is_too_large() -> None:
    push = function_body("PushBook")
    assert '\\"type\\":\\"orders_changed\\",\\"seq\\":' in push
    assert 'OpenOrdersJson("")' in push and '\\"too_large\\":true' in push
    assert push.index("JournalRemainders();") < push.index("OpenOrdersJson")


def test_answers_name_the_number_of_the_pool_they_saw() -> None:
    orders = function_body("OrdersAnswer")
    # Numbered before it is read: the pool answered is never older than its number.
    assert orders.index("SeqField()") < orders.index("OpenOrdersJson")
    assert "answer = OrdersAnswer(id);" in function_body("HandleMessage")
    assert "SeqField()" in function_body("TradeDone")
    assert "SeqField()" in function_body("TradeFailed")
    assert '",\\"seq\\":" + IntegerToString(BookSeq())' in function_body("SeqField")
