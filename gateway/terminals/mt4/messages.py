"""The messages of the MT4 bridge protocol (docs/mt4-bridge.md): builders for what the gateway
sends, strict parsers for what the EA sends.

On the wire: integers for tickets, magic numbers, MT4 operation codes, error codes, points and
times (UTC Unix seconds, 0 for "none"); decimal strings for prices, volumes and money ("0" for
"none" where MQL4 uses 0: no SL, no TP, no price). Messages to the EA are flat objects (no
nested objects or arrays) so the EA's parser stays small; messages from the EA may hold arrays
of order records.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

PROTOCOL_MIN = 1
PROTOCOL_MAX = 2
# From this version on, the EA pushes every change of its trade pool at once, whole and with a
# sequence number (orders_changed.seq), and gives that number with each orders and trade_result
# answer too; the gateway then reads positions and pending orders from what was pushed.
# Version 1: orders_changed without a sequence, at most every PushIntervalMs; always asked.
TRADE_EVENTS_PROTOCOL = 2

# Message types.
HELLO = "hello"
WELCOME = "welcome"
REFUSED = "refused"
HEARTBEAT = "heartbeat"
BYE = "bye"
ERROR = "error"
ACCOUNT = "account"
SYMBOL = "symbol"
QUOTE = "quote"
ORDERS = "orders"
HISTORY = "history"
FIND = "find"
FOUND = "found"
ORDER_SEND = "order_send"
ORDER_MODIFY = "order_modify"
ORDER_CLOSE = "order_close"
ORDER_DELETE = "order_delete"
ORDER_CLOSE_BY = "order_close_by"
TRADE_RESULT = "trade_result"
ORDERS_CHANGED = "orders_changed"
ACCOUNT_CHANGED = "account_changed"

TRADE_REQUESTS = frozenset({ORDER_SEND, ORDER_MODIFY, ORDER_CLOSE, ORDER_DELETE, ORDER_CLOSE_BY})

# MT4 trade operations (OrderType(), the cmd of OrderSend).
OP_BUY = 0
OP_SELL = 1
OP_BUYLIMIT = 2
OP_SELLLIMIT = 3
OP_BUYSTOP = 4
OP_SELLSTOP = 5
MARKET_OPERATIONS = frozenset({OP_BUY, OP_SELL})
PENDING_OPERATIONS = frozenset({OP_BUYLIMIT, OP_SELLLIMIT, OP_BUYSTOP, OP_SELLSTOP})

# MQL4 strings hold 31 characters of comment [KNOWN]; requests ids are ours and short.
MAX_COMMENT_LENGTH = 31
MAX_REQUEST_ID_LENGTH = 32
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")


class MessageError(Exception):
    """A message that breaks the protocol: missing or mistyped fields."""


class RefusalReason(enum.Enum):
    # No protocol version both ends speak.
    VERSION = "version"
    # Unknown login or wrong token (one reason for both: nothing to learn by probing).
    UNAUTHORIZED = "unauthorized"
    # The first frame was not a valid hello.
    MALFORMED = "malformed"


def negotiate(peer_min: int, peer_max: int) -> int | None:
    """The highest version both ends speak, or None."""
    version = min(peer_max, PROTOCOL_MAX)
    return version if version >= max(peer_min, PROTOCOL_MIN) else None


# -- field readers -------------------------------------------------------------------------


def _field(message: Mapping[str, Any], key: str) -> Any:
    if key not in message:
        raise MessageError(f"{message.get('type', 'message')}: missing field {key!r}")
    return message[key]


def read_int(message: Mapping[str, Any], key: str) -> int:
    value = _field(message, key)
    if type(value) is not int:  # bool is an int in Python, never on this wire
        raise MessageError(f"{key}: expected an integer, got {value!r}")
    return value


def read_str(message: Mapping[str, Any], key: str, *, max_length: int | None = None) -> str:
    value = _field(message, key)
    if not isinstance(value, str):
        raise MessageError(f"{key}: expected a string, got {value!r}")
    if max_length is not None and len(value) > max_length:
        raise MessageError(f"{key}: longer than {max_length} characters")
    return value


def read_bool(message: Mapping[str, Any], key: str) -> bool:
    value = _field(message, key)
    if not isinstance(value, bool):
        raise MessageError(f"{key}: expected true or false, got {value!r}")
    return value


def read_decimal(message: Mapping[str, Any], key: str) -> Decimal:
    value = _field(message, key)
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
        raise MessageError(f"{key}: expected a decimal string, got {value!r}")
    return Decimal(value)


def read_optional_price(message: Mapping[str, Any], key: str) -> Decimal | None:
    """MQL4's 0 for "none" (no SL, no TP) as None."""
    value = read_decimal(message, key)
    return None if value == 0 else value


def read_time(message: Mapping[str, Any], key: str) -> datetime | None:
    seconds = read_int(message, key)
    if seconds < 0:
        raise MessageError(f"{key}: negative time {seconds}")
    return None if seconds == 0 else from_wire_time(seconds)


def read_list(message: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = _field(message, key)
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise MessageError(f"{key}: expected an array of objects")
    return value


def from_wire_time(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def to_wire_time(moment: datetime | None) -> int:
    """UTC Unix seconds, rounded down (MT4 times have whole seconds); 0 for None."""
    if moment is None:
        return 0
    return int(moment.timestamp() // 1)


def wire_decimal(value: Decimal | None) -> str:
    """A decimal in plain notation ("0" for None, as MQL4 means "none" by 0)."""
    if value is None:
        return "0"
    return format(value, "f")


# -- handshake -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    protocol_min: int
    protocol_max: int
    login: int
    server: str
    token: str
    ea_version: str
    terminal_build: int
    company: str

    def __repr__(self) -> str:  # the token never reaches a log
        return f"Hello(login={self.login}, server={self.server!r}, ea_version={self.ea_version!r})"


def parse_hello(message: Mapping[str, Any]) -> Hello:
    if message.get("type") != HELLO:
        raise MessageError(f"expected a hello, got {message.get('type')!r}")
    hello = Hello(
        protocol_min=read_int(message, "protocol_min"),
        protocol_max=read_int(message, "protocol_max"),
        login=read_int(message, "login"),
        server=read_str(message, "server", max_length=128),
        token=read_str(message, "token", max_length=512),
        ea_version=read_str(message, "ea_version", max_length=32),
        terminal_build=read_int(message, "terminal_build"),
        company=read_str(message, "company", max_length=128),
    )
    if hello.login <= 0:
        raise MessageError(f"login: expected a positive account number, got {hello.login}")
    if hello.protocol_min > hello.protocol_max:
        raise MessageError("protocol_min above protocol_max")
    return hello


def welcome_message(
    *, protocol: int, session_id: str, heartbeat_ms: int, timeout_ms: int, max_frame_bytes: int
) -> dict[str, Any]:
    return {
        "type": WELCOME,
        "protocol": protocol,
        "session": session_id,
        "heartbeat_ms": heartbeat_ms,
        "timeout_ms": timeout_ms,
        "max_frame": max_frame_bytes,
    }


def refused_message(reason: RefusalReason, detail: str) -> dict[str, Any]:
    return {
        "type": REFUSED,
        "reason": reason.value,
        "detail": detail,
        "protocol_min": PROTOCOL_MIN,
        "protocol_max": PROTOCOL_MAX,
    }


def heartbeat_message() -> dict[str, Any]:
    return {"type": HEARTBEAT}


def bye_message(reason: str) -> dict[str, Any]:
    return {"type": BYE, "reason": reason}


# -- requests (gateway -> EA); the session adds the "id" ------------------------------------


def account_request() -> dict[str, Any]:
    return {"type": ACCOUNT}


def symbol_request(symbol: str) -> dict[str, Any]:
    return {"type": SYMBOL, "symbol": symbol}


def quote_request(symbol: str) -> dict[str, Any]:
    return {"type": QUOTE, "symbol": symbol}


def orders_request() -> dict[str, Any]:
    return {"type": ORDERS}


def history_request(since: datetime) -> dict[str, Any]:
    return {"type": HISTORY, "since": to_wire_time(since)}


def find_request(tag: str) -> dict[str, Any]:
    return {"type": FIND, "tag": tag}


def order_send_request(
    *,
    symbol: str,
    cmd: int,
    volume: Decimal,
    price: Decimal | None,
    slippage: int,
    stop_loss: Decimal | None,
    take_profit: Decimal | None,
    comment: str,
    magic: int,
    expiration: datetime | None,
) -> dict[str, Any]:
    return {
        "type": ORDER_SEND,
        "symbol": symbol,
        "cmd": cmd,
        "volume": wire_decimal(volume),
        # "0" at market: the EA takes the current Bid/Ask after RefreshRates().
        "price": wire_decimal(price),
        "slippage": slippage,
        "sl": wire_decimal(stop_loss),
        "tp": wire_decimal(take_profit),
        "comment": comment,
        "magic": magic,
        "expiration": to_wire_time(expiration),
    }


def order_modify_request(
    *,
    ticket: int,
    price: Decimal | None,
    stop_loss: Decimal | None,
    take_profit: Decimal | None,
    expiration: datetime | None,
    tag: str,
) -> dict[str, Any]:
    return {
        "type": ORDER_MODIFY,
        "ticket": ticket,
        # "0": keep the order's price (always so for an open position).
        "price": wire_decimal(price),
        "sl": wire_decimal(stop_loss),
        "tp": wire_decimal(take_profit),
        "expiration": to_wire_time(expiration),
        "tag": tag,
    }


def order_close_request(
    *, ticket: int, volume: Decimal, price: Decimal | None, slippage: int, tag: str
) -> dict[str, Any]:
    return {
        "type": ORDER_CLOSE,
        "ticket": ticket,
        "volume": wire_decimal(volume),
        "price": wire_decimal(price),
        "slippage": slippage,
        "tag": tag,
    }


def order_delete_request(*, ticket: int, tag: str) -> dict[str, Any]:
    return {"type": ORDER_DELETE, "ticket": ticket, "tag": tag}


def order_close_by_request(*, ticket: int, opposite: int, tag: str) -> dict[str, Any]:
    return {"type": ORDER_CLOSE_BY, "ticket": ticket, "opposite": opposite, "tag": tag}


# -- answers and events (EA -> gateway) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """One MT4 order as the EA sees it in the trade pool or the history pool."""

    ticket: int
    # The ticket this one continues through partial closes (itself if none): the position's
    # identity, as MT5's POSITION_IDENTIFIER.
    root: int
    # The tag the root was opened with, from the EA's journal ("" if the EA never knew it).
    tag: str
    symbol: str
    cmd: int
    lots: Decimal
    open_price: Decimal
    open_time: datetime
    close_price: Decimal
    close_time: datetime | None
    stop_loss: Decimal | None
    take_profit: Decimal | None
    expiration: datetime | None
    magic: int
    comment: str
    profit: Decimal
    swap: Decimal
    commission: Decimal
    # History only: the tag of the gateway request that closed or deleted it ("" if unknown).
    close_tag: str
    # History only: the opposite ticket of a close-by (0 otherwise).
    closed_by: int

    @property
    def is_market(self) -> bool:
        return self.cmd in MARKET_OPERATIONS

    @property
    def is_pending(self) -> bool:
        return self.cmd in PENDING_OPERATIONS

    @property
    def is_open(self) -> bool:
        return self.close_time is None


def parse_record(message: Mapping[str, Any]) -> OrderRecord:
    cmd = read_int(message, "cmd")
    if cmd not in MARKET_OPERATIONS | PENDING_OPERATIONS:
        raise MessageError(f"cmd: unknown MT4 operation {cmd}")
    open_time = read_time(message, "open_time")
    if open_time is None:
        raise MessageError("open_time: an order always has one")
    return OrderRecord(
        ticket=read_int(message, "ticket"),
        root=read_int(message, "root"),
        tag=read_str(message, "tag", max_length=MAX_COMMENT_LENGTH),
        symbol=read_str(message, "symbol", max_length=64),
        cmd=cmd,
        lots=read_decimal(message, "lots"),
        open_price=read_decimal(message, "open_price"),
        open_time=open_time,
        close_price=read_decimal(message, "close_price"),
        close_time=read_time(message, "close_time"),
        stop_loss=read_optional_price(message, "sl"),
        take_profit=read_optional_price(message, "tp"),
        expiration=read_time(message, "expiration"),
        magic=read_int(message, "magic"),
        comment=read_str(message, "comment", max_length=64),
        profit=read_decimal(message, "profit"),
        swap=read_decimal(message, "swap"),
        commission=read_decimal(message, "commission"),
        close_tag=read_str(message, "close_tag", max_length=MAX_COMMENT_LENGTH),
        closed_by=read_int(message, "closed_by"),
    )


def parse_records(message: Mapping[str, Any], key: str) -> list[OrderRecord]:
    return [parse_record(item) for item in read_list(message, key)]


def read_seq(message: Mapping[str, Any]) -> int:
    seq = read_int(message, "seq")
    if seq < 0:
        raise MessageError(f"seq: negative sequence number {seq}")
    return seq


@dataclass(frozen=True, slots=True)
class BookReport:
    """The EA's trade pool (open market and pending orders) at one sequence number: an
    orders_changed event or an orders answer of protocol 2."""

    seq: int
    # None: the pool changed but would not fit in a frame ("too_large"): it has to be asked.
    records: tuple[OrderRecord, ...] | None


def parse_book(message: Mapping[str, Any]) -> BookReport:
    seq = read_seq(message)
    if message.get("too_large") is True:
        return BookReport(seq, None)
    return BookReport(seq, tuple(parse_records(message, "orders")))


def _optional_record(message: Mapping[str, Any], key: str) -> OrderRecord | None:
    value = message.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise MessageError(f"{key}: expected an order record")
    return parse_record(value)


@dataclass(frozen=True, slots=True)
class TradeReply:
    # The MT4 error code: 0 on success.
    error: int
    message: str
    bid: Decimal | None
    ask: Decimal | None
    # The order as it stands after the request: opened, placed or modified (trade pool), or
    # the part closed or the order deleted (history pool). None on failure.
    order: OrderRecord | None
    # What is left open after a partial close or an uneven close-by: a new ticket in MT4.
    remainder: OrderRecord | None
    # Close-by: the opposite order's closed record.
    opposite: OrderRecord | None
    # Protocol 2: the sequence number of the EA's trade pool right after the request (None
    # in protocol 1).
    seq: int | None = None


def parse_trade_reply(message: Mapping[str, Any]) -> TradeReply:
    error = read_int(message, "error")
    reply = TradeReply(
        error=error,
        message=read_str(message, "message", max_length=512),
        bid=read_optional_price(message, "bid"),
        ask=read_optional_price(message, "ask"),
        order=_optional_record(message, "order"),
        remainder=_optional_record(message, "remainder"),
        opposite=_optional_record(message, "opposite"),
        seq=read_seq(message) if "seq" in message else None,
    )
    if error == 0 and reply.order is None:
        raise MessageError("trade_result: a success without the order")
    return reply


@dataclass(frozen=True, slots=True)
class AccountReport:
    login: int
    server: str
    company: str
    currency: str
    leverage: int
    balance: Decimal
    equity: Decimal
    margin: Decimal
    free_margin: Decimal
    trade_allowed: bool
    time: datetime


def parse_account(message: Mapping[str, Any]) -> AccountReport:
    time = read_time(message, "time")
    if time is None:
        raise MessageError("time: missing")
    return AccountReport(
        login=read_int(message, "login"),
        server=read_str(message, "server"),
        company=read_str(message, "company"),
        currency=read_str(message, "currency", max_length=16),
        leverage=read_int(message, "leverage"),
        balance=read_decimal(message, "balance"),
        equity=read_decimal(message, "equity"),
        margin=read_decimal(message, "margin"),
        free_margin=read_decimal(message, "free_margin"),
        trade_allowed=read_bool(message, "trade_allowed"),
        time=time,
    )


@dataclass(frozen=True, slots=True)
class SymbolReport:
    symbol: str
    digits: int
    contract_size: Decimal
    volume_min: Decimal
    volume_step: Decimal
    volume_max: Decimal
    tick_size: Decimal
    tick_value: Decimal
    stops_level: int
    freeze_level: int
    currency_base: str
    currency_profit: str


def parse_symbol(message: Mapping[str, Any]) -> SymbolReport | None:
    """The symbol's rules, or None when the broker has no such symbol."""
    if not read_bool(message, "found"):
        return None
    return SymbolReport(
        symbol=read_str(message, "symbol"),
        digits=read_int(message, "digits"),
        contract_size=read_decimal(message, "contract_size"),
        volume_min=read_decimal(message, "volume_min"),
        volume_step=read_decimal(message, "volume_step"),
        volume_max=read_decimal(message, "volume_max"),
        tick_size=read_decimal(message, "tick_size"),
        tick_value=read_decimal(message, "tick_value"),
        stops_level=read_int(message, "stops_level"),
        freeze_level=read_int(message, "freeze_level"),
        currency_base=read_str(message, "currency_base"),
        currency_profit=read_str(message, "currency_profit"),
    )


@dataclass(frozen=True, slots=True)
class QuoteReport:
    symbol: str
    bid: Decimal
    ask: Decimal
    time: datetime


def parse_quote(message: Mapping[str, Any]) -> QuoteReport | None:
    """The quote, or None when the broker has no such symbol."""
    if not read_bool(message, "found"):
        return None
    time = read_time(message, "time")
    if time is None:
        raise MessageError("time: missing")
    return QuoteReport(
        symbol=read_str(message, "symbol"),
        bid=read_decimal(message, "bid"),
        ask=read_decimal(message, "ask"),
        time=time,
    )
