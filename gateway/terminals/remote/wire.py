"""mam.v1.WorkerService messages <-> the Terminal protocol's values, for both ends of the stream.

The gateway's servicer encodes commands and decodes answers; the worker decodes commands and
encodes answers. Decimals travel as exact strings ("" for None), times as Timestamps (unset for
None), enums by name. Anything that does not decode raises WireError: a peer's bug, never
guessed around.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from google.protobuf import timestamp_pb2

from gateway._proto.mam.v1 import common_pb2
from gateway._proto.mam.v1 import worker_service_pb2 as pb
from gateway.domain.account_history import DealEntry
from gateway.domain.accounts import MarginMode, Platform
from gateway.domain.decimals import format_decimal, parse_decimal
from gateway.domain.errors import FieldViolation, InvalidArgument
from gateway.domain.orders import FillingPolicy, OrderType, Side, TimeInForce
from gateway.domain.symbols import SymbolSpec
from gateway.terminals.protocol import (
    AccountInfo,
    Deal,
    OrderRequest,
    OrderResult,
    PendingOrder,
    Position,
    Quote,
    SymbolNotFound,
    TaggedRecords,
    TerminalError,
    TerminalHealth,
    TradeAction,
)
from gateway.terminals.remote.commands import (
    CommandAnswer,
    FindByTag,
    GetAccountInfo,
    GetDeals,
    GetHealth,
    GetPendingOrders,
    GetPositions,
    GetQuote,
    GetSymbolSpec,
    SendOrder,
    TerminalCommand,
)
from gateway.terminals.remote.worker_hub import BrokerLogin, HostedTerminal

MAX_WORKER_ID = 100
MAX_SERVER = 200

_E = TypeVar("_E", bound=enum.Enum)


class WireError(ValueError):
    """A message that does not decode into what it should carry."""


# -- scalars ---------------------------------------------------------------------------------


def _dec(value: Decimal | None) -> str:
    return "" if value is None else format_decimal(value)


def _decimal(text: str, name: str) -> Decimal:
    try:
        return parse_decimal(text)
    except ValueError:
        raise WireError(f"{name}: not a decimal: {text[:40]!r}") from None


def _optional_decimal(text: str, name: str) -> Decimal | None:
    return None if text == "" else _decimal(text, name)


def stamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _optional_time(message: Any, name: str) -> datetime | None:
    if not message.HasField(name):
        return None
    try:
        value: datetime = getattr(message, name).ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise WireError(f"{name}: not a valid time") from None
    return value


def _time(message: Any, name: str) -> datetime:
    value = _optional_time(message, name)
    if value is None:
        raise WireError(f"{name}: required")
    return value


def _to_enum(proto_enum: Any, prefix: str, value: enum.Enum | None) -> Any:
    return 0 if value is None else proto_enum.Value(f"{prefix}_{value.name}")


def _optional_enum(kind: type[_E], proto_enum: Any, prefix: str, number: int) -> _E | None:
    if number == 0:
        return None
    try:
        return kind[proto_enum.Name(number).removeprefix(f"{prefix}_")]
    except (ValueError, KeyError):
        raise WireError(f"{prefix.lower()}: unknown value {number}") from None


def _enum(kind: type[_E], proto_enum: Any, prefix: str, number: int) -> _E:
    value = _optional_enum(kind, proto_enum, prefix, number)
    if value is None:
        raise WireError(f"{prefix.lower()}: required")
    return value


def _side(number: int) -> Side:
    return _enum(Side, common_pb2.Side, "SIDE", number)


def _side_proto(side: Side) -> Any:
    return _to_enum(common_pb2.Side, "SIDE", side)


# -- the Terminal protocol's values ------------------------------------------------------------


def order_request_to_proto(request: OrderRequest) -> pb.TerminalOrderRequest:
    return pb.TerminalOrderRequest(
        action=_to_enum(pb.TradeAction, "TRADE_ACTION", request.action),
        symbol=request.symbol,
        side=_side_proto(request.side),
        volume=_dec(request.volume),
        tag=request.tag,
        magic=request.magic,
        price=_dec(request.price),
        deviation_points=request.deviation_points,
        stop_loss=_dec(request.stop_loss),
        take_profit=_dec(request.take_profit),
        position_ticket=request.position_ticket,
        order_type=_to_enum(common_pb2.OrderType, "ORDER_TYPE", request.order_type),
        stop_limit_price=_dec(request.stop_limit_price),
        time_in_force=_to_enum(common_pb2.TimeInForce, "TIME_IN_FORCE", request.time_in_force),
        expire_time=stamp(request.expires_at),
        filling=_to_enum(common_pb2.FillingPolicy, "FILLING_POLICY", request.filling),
        order_ticket=request.order_ticket,
        position_by=request.position_by,
        lowest_price=_dec(request.lowest_price),
        highest_price=_dec(request.highest_price),
    )


def order_request_from_proto(message: pb.TerminalOrderRequest) -> OrderRequest:
    return OrderRequest(
        action=_enum(TradeAction, pb.TradeAction, "TRADE_ACTION", message.action),
        symbol=message.symbol,
        side=_side(message.side),
        volume=_decimal(message.volume, "volume"),
        tag=message.tag,
        magic=message.magic,
        price=_optional_decimal(message.price, "price"),
        deviation_points=message.deviation_points,
        stop_loss=_optional_decimal(message.stop_loss, "stop_loss"),
        take_profit=_optional_decimal(message.take_profit, "take_profit"),
        position_ticket=message.position_ticket,
        order_type=_enum(OrderType, common_pb2.OrderType, "ORDER_TYPE", message.order_type),
        stop_limit_price=_optional_decimal(message.stop_limit_price, "stop_limit_price"),
        time_in_force=_enum(
            TimeInForce, common_pb2.TimeInForce, "TIME_IN_FORCE", message.time_in_force
        ),
        expires_at=_optional_time(message, "expire_time"),
        filling=_enum(FillingPolicy, common_pb2.FillingPolicy, "FILLING_POLICY", message.filling),
        order_ticket=message.order_ticket,
        position_by=message.position_by,
        lowest_price=_optional_decimal(message.lowest_price, "lowest_price"),
        highest_price=_optional_decimal(message.highest_price, "highest_price"),
    )


def order_result_to_proto(result: OrderResult) -> pb.TerminalOrderResult:
    return pb.TerminalOrderResult(
        retcode=result.retcode,
        text=result.text,
        order_ticket=result.order_ticket,
        deal_ticket=result.deal_ticket,
        position_ticket=result.position_ticket,
        volume=_dec(result.volume),
        price=_dec(result.price),
        bid=_dec(result.bid),
        ask=_dec(result.ask),
        execute_time=stamp(result.executed_at),
        request_price=_dec(result.request_price),
    )


def order_result_from_proto(message: pb.TerminalOrderResult) -> OrderResult:
    return OrderResult(
        retcode=message.retcode,
        text=message.text,
        order_ticket=message.order_ticket,
        deal_ticket=message.deal_ticket,
        position_ticket=message.position_ticket,
        volume=_optional_decimal(message.volume, "volume") or Decimal(0),
        price=_optional_decimal(message.price, "price"),
        bid=_optional_decimal(message.bid, "bid"),
        ask=_optional_decimal(message.ask, "ask"),
        executed_at=_optional_time(message, "execute_time"),
        request_price=_optional_decimal(message.request_price, "request_price"),
    )


def account_info_to_proto(info: AccountInfo) -> pb.TerminalAccountInfo:
    return pb.TerminalAccountInfo(
        login=info.login,
        currency=info.currency,
        leverage=info.leverage,
        margin_mode=_to_enum(common_pb2.MarginMode, "MARGIN_MODE", info.margin_mode),
        balance=_dec(info.balance),
        equity=_dec(info.equity),
        margin=_dec(info.margin),
        free_margin=_dec(info.free_margin),
        time=stamp(info.time),
    )


def account_info_from_proto(message: pb.TerminalAccountInfo) -> AccountInfo:
    return AccountInfo(
        login=message.login,
        currency=message.currency,
        leverage=message.leverage,
        margin_mode=_enum(MarginMode, common_pb2.MarginMode, "MARGIN_MODE", message.margin_mode),
        balance=_decimal(message.balance, "balance"),
        equity=_decimal(message.equity, "equity"),
        margin=_decimal(message.margin, "margin"),
        free_margin=_decimal(message.free_margin, "free_margin"),
        time=_time(message, "time"),
    )


def symbol_spec_to_proto(spec: SymbolSpec) -> pb.TerminalSymbolSpec:
    return pb.TerminalSymbolSpec(
        name=spec.name,
        digits=spec.digits,
        contract_size=_dec(spec.contract_size),
        volume_min=_dec(spec.volume_min),
        volume_step=_dec(spec.volume_step),
        volume_max=_dec(spec.volume_max),
        tick_size=_dec(spec.tick_size),
        tick_value=_dec(spec.tick_value),
        currency_base=spec.currency_base,
        currency_profit=spec.currency_profit,
        stops_level=spec.stops_level,
    )


def symbol_spec_from_proto(message: pb.TerminalSymbolSpec) -> SymbolSpec:
    try:
        return SymbolSpec(
            name=message.name,
            digits=message.digits,
            contract_size=_decimal(message.contract_size, "contract_size"),
            volume_min=_decimal(message.volume_min, "volume_min"),
            volume_step=_decimal(message.volume_step, "volume_step"),
            volume_max=_decimal(message.volume_max, "volume_max"),
            tick_size=_decimal(message.tick_size, "tick_size"),
            tick_value=_decimal(message.tick_value, "tick_value"),
            currency_base=message.currency_base,
            currency_profit=message.currency_profit,
            stops_level=message.stops_level,
        )
    except WireError:
        raise
    except ValueError as error:  # the spec's own checks (steps, sizes)
        raise WireError(f"symbol spec: {error}") from None


def quote_to_proto(quote: Quote) -> pb.TerminalQuote:
    return pb.TerminalQuote(
        symbol=quote.symbol, bid=_dec(quote.bid), ask=_dec(quote.ask), time=stamp(quote.time)
    )


def quote_from_proto(message: pb.TerminalQuote) -> Quote:
    return Quote(
        symbol=message.symbol,
        bid=_decimal(message.bid, "bid"),
        ask=_decimal(message.ask, "ask"),
        time=_time(message, "time"),
    )


def position_to_proto(position: Position) -> pb.TerminalPosition:
    return pb.TerminalPosition(
        ticket=position.ticket,
        symbol=position.symbol,
        side=_side_proto(position.side),
        volume=_dec(position.volume),
        price_open=_dec(position.price_open),
        magic=position.magic,
        comment=position.comment,
        open_time=stamp(position.opened_at),
        stop_loss=_dec(position.stop_loss),
        take_profit=_dec(position.take_profit),
    )


def position_from_proto(message: pb.TerminalPosition) -> Position:
    return Position(
        ticket=message.ticket,
        symbol=message.symbol,
        side=_side(message.side),
        volume=_decimal(message.volume, "volume"),
        price_open=_decimal(message.price_open, "price_open"),
        magic=message.magic,
        comment=message.comment,
        opened_at=_time(message, "open_time"),
        stop_loss=_optional_decimal(message.stop_loss, "stop_loss"),
        take_profit=_optional_decimal(message.take_profit, "take_profit"),
    )


def pending_order_to_proto(order: PendingOrder) -> pb.TerminalPendingOrder:
    return pb.TerminalPendingOrder(
        ticket=order.ticket,
        symbol=order.symbol,
        side=_side_proto(order.side),
        volume=_dec(order.volume),
        price=_dec(order.price),
        magic=order.magic,
        comment=order.comment,
        place_time=stamp(order.placed_at),
        order_type=_to_enum(common_pb2.OrderType, "ORDER_TYPE", order.order_type),
        stop_limit_price=_dec(order.stop_limit_price),
        stop_loss=_dec(order.stop_loss),
        take_profit=_dec(order.take_profit),
        time_in_force=_to_enum(common_pb2.TimeInForce, "TIME_IN_FORCE", order.time_in_force),
        expire_time=stamp(order.expires_at),
        filling=_to_enum(common_pb2.FillingPolicy, "FILLING_POLICY", order.filling),
        volume_initial=_dec(order.volume_initial),
    )


def pending_order_from_proto(message: pb.TerminalPendingOrder) -> PendingOrder:
    return PendingOrder(
        ticket=message.ticket,
        symbol=message.symbol,
        side=_side(message.side),
        volume=_decimal(message.volume, "volume"),
        price=_decimal(message.price, "price"),
        magic=message.magic,
        comment=message.comment,
        placed_at=_time(message, "place_time"),
        order_type=_enum(OrderType, common_pb2.OrderType, "ORDER_TYPE", message.order_type),
        stop_limit_price=_optional_decimal(message.stop_limit_price, "stop_limit_price"),
        stop_loss=_optional_decimal(message.stop_loss, "stop_loss"),
        take_profit=_optional_decimal(message.take_profit, "take_profit"),
        time_in_force=_enum(
            TimeInForce, common_pb2.TimeInForce, "TIME_IN_FORCE", message.time_in_force
        ),
        expires_at=_optional_time(message, "expire_time"),
        filling=_enum(FillingPolicy, common_pb2.FillingPolicy, "FILLING_POLICY", message.filling),
        volume_initial=_optional_decimal(message.volume_initial, "volume_initial"),
    )


def deal_to_proto(deal: Deal) -> pb.TerminalDeal:
    return pb.TerminalDeal(
        ticket=deal.ticket,
        order_ticket=deal.order_ticket,
        position_ticket=deal.position_ticket,
        symbol=deal.symbol,
        side=_side_proto(deal.side),
        volume=_dec(deal.volume),
        price=_dec(deal.price),
        magic=deal.magic,
        comment=deal.comment,
        execute_time=stamp(deal.executed_at),
        entry=_to_enum(pb.DealEntry, "DEAL_ENTRY", deal.entry),
        profit=_dec(deal.profit),
    )


def deal_from_proto(message: pb.TerminalDeal) -> Deal:
    return Deal(
        ticket=message.ticket,
        order_ticket=message.order_ticket,
        position_ticket=message.position_ticket,
        symbol=message.symbol,
        side=_side(message.side),
        volume=_decimal(message.volume, "volume"),
        price=_decimal(message.price, "price"),
        magic=message.magic,
        comment=message.comment,
        executed_at=_time(message, "execute_time"),
        entry=_enum(DealEntry, pb.DealEntry, "DEAL_ENTRY", message.entry),
        profit=_decimal(message.profit, "profit"),
    )


def tagged_records_to_proto(records: TaggedRecords) -> pb.TerminalTaggedRecords:
    return pb.TerminalTaggedRecords(
        orders=[pending_order_to_proto(o) for o in records.orders],
        positions=[position_to_proto(p) for p in records.positions],
        deals=[deal_to_proto(d) for d in records.deals],
    )


def tagged_records_from_proto(message: pb.TerminalTaggedRecords) -> TaggedRecords:
    return TaggedRecords(
        orders=tuple(pending_order_from_proto(o) for o in message.orders),
        positions=tuple(position_from_proto(p) for p in message.positions),
        deals=tuple(deal_from_proto(d) for d in message.deals),
    )


# -- commands and their answers ----------------------------------------------------------------


def command_to_proto(
    command_id: str,
    account_id: str,
    login: BrokerLogin,
    command: TerminalCommand,
    *,
    traceparent: str = "",
) -> pb.TerminalCommand:
    """`traceparent`: the W3C trace context of the span that made the command (empty: none)."""
    message = pb.TerminalCommand(
        command_id=command_id,
        account_id=account_id,
        login=login.login,
        server=login.server,
        traceparent=traceparent,
    )
    match command:
        case SendOrder(request):
            message.send.request.CopyFrom(order_request_to_proto(request))
        case FindByTag(tag):
            message.find_by_tag.tag = tag
        case GetPositions():
            message.positions.SetInParent()
        case GetPendingOrders():
            message.pending_orders.SetInParent()
        case GetDeals(since):
            message.deals.since.FromDatetime(since)
        case GetAccountInfo():
            message.account_info.SetInParent()
        case GetSymbolSpec(symbol):
            message.symbol_spec.symbol = symbol
        case GetQuote(symbol):
            message.quote.symbol = symbol
        case GetHealth():
            message.health.SetInParent()
    return message


def command_from_proto(message: pb.TerminalCommand) -> TerminalCommand:
    kind = message.WhichOneof("command")
    if kind == "send":
        return SendOrder(order_request_from_proto(message.send.request))
    if kind == "find_by_tag":
        return FindByTag(message.find_by_tag.tag)
    if kind == "positions":
        return GetPositions()
    if kind == "pending_orders":
        return GetPendingOrders()
    if kind == "deals":
        return GetDeals(_time(message.deals, "since"))
    if kind == "account_info":
        return GetAccountInfo()
    if kind == "symbol_spec":
        return GetSymbolSpec(message.symbol_spec.symbol)
    if kind == "quote":
        return GetQuote(message.quote.symbol)
    if kind == "health":
        return GetHealth()
    raise WireError(f"command {message.command_id!r}: no command set")


def answer_to_proto(
    command_id: str, command: TerminalCommand, answer: CommandAnswer
) -> pb.CommandResult:
    """The result message of a command's answer (its kind follows the command's)."""
    result = pb.CommandResult(command_id=command_id)
    match command:
        case SendOrder():
            assert isinstance(answer, OrderResult)
            result.send.CopyFrom(order_result_to_proto(answer))
        case FindByTag():
            assert isinstance(answer, TaggedRecords)
            result.find_by_tag.CopyFrom(tagged_records_to_proto(answer))
        case GetPositions():
            assert isinstance(answer, list)
            result.positions.positions.extend(position_to_proto(p) for p in answer)  # type: ignore[arg-type]
        case GetPendingOrders():
            assert isinstance(answer, list)
            result.pending_orders.orders.extend(pending_order_to_proto(o) for o in answer)  # type: ignore[arg-type]
        case GetDeals():
            assert isinstance(answer, list)
            result.deals.deals.extend(deal_to_proto(d) for d in answer)  # type: ignore[arg-type]
        case GetAccountInfo():
            assert isinstance(answer, AccountInfo)
            result.account_info.CopyFrom(account_info_to_proto(answer))
        case GetSymbolSpec():
            assert isinstance(answer, SymbolSpec)
            result.symbol_spec.CopyFrom(symbol_spec_to_proto(answer))
        case GetQuote():
            assert isinstance(answer, Quote)
            result.quote.CopyFrom(quote_to_proto(answer))
        case GetHealth():
            assert isinstance(answer, TerminalHealth)
            result.health.connected = answer.connected
            result.health.detail = answer.detail
    return result


class FailureKind(enum.Enum):
    TERMINAL_ERROR = pb.TERMINAL_FAILURE_KIND_TERMINAL_ERROR
    SYMBOL_NOT_FOUND = pb.TERMINAL_FAILURE_KIND_SYMBOL_NOT_FOUND
    NOT_HOSTED = pb.TERMINAL_FAILURE_KIND_NOT_HOSTED
    BAD_COMMAND = pb.TERMINAL_FAILURE_KIND_BAD_COMMAND


def failure_to_proto(command_id: str, kind: FailureKind, message: str) -> pb.CommandResult:
    return pb.CommandResult(
        command_id=command_id, failure=pb.TerminalFailure(kind=kind.value, message=message)
    )


def answer_from_proto(message: pb.CommandResult) -> CommandAnswer | Exception:
    """The answer a result carries, or the exception its caller gets: SymbolNotFound, or
    TerminalError for anything else that went wrong at the worker."""
    kind = message.WhichOneof("result")
    if kind == "send":
        return order_result_from_proto(message.send)
    if kind == "find_by_tag":
        return tagged_records_from_proto(message.find_by_tag)
    if kind == "positions":
        return [position_from_proto(p) for p in message.positions.positions]
    if kind == "pending_orders":
        return [pending_order_from_proto(o) for o in message.pending_orders.orders]
    if kind == "deals":
        return [deal_from_proto(d) for d in message.deals.deals]
    if kind == "account_info":
        return account_info_from_proto(message.account_info)
    if kind == "symbol_spec":
        return symbol_spec_from_proto(message.symbol_spec)
    if kind == "quote":
        return quote_from_proto(message.quote)
    if kind == "health":
        return TerminalHealth(connected=message.health.connected, detail=message.health.detail)
    if kind == "failure":
        if message.failure.kind == pb.TERMINAL_FAILURE_KIND_SYMBOL_NOT_FOUND:
            return SymbolNotFound(message.failure.message)
        return TerminalError(f"at the worker: {message.failure.message}")
    raise WireError(f"result {message.command_id!r}: no result set")


# -- hello -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    worker_id: str
    terminals: tuple[HostedTerminal, ...]
    version: str = ""
    # The worker reads several commands in one message (CommandBatch).
    accepts_command_batches: bool = False
    # The worker's terminals price deals sent at market themselves (gateway.terminals.market).
    prices_at_market: bool = False


def hello_to_proto(hello: Hello, token: str) -> pb.WorkerHello:
    return pb.WorkerHello(
        worker_id=hello.worker_id,
        token=token,
        version=hello.version,
        accepts_command_batches=hello.accepts_command_batches,
        prices_at_market=hello.prices_at_market,
        terminals=[
            pb.HostedTerminal(
                login=t.login.login,
                server=t.login.server,
                platform=_to_enum(common_pb2.Platform, "PLATFORM", t.platform),
                backend=t.backend,
            )
            for t in hello.terminals
        ],
    )


def hello_from_proto(message: pb.WorkerHello, path: str = "hello") -> Hello:
    """A validated hello (the token is checked apart); InvalidArgument names each bad field."""
    violations: list[FieldViolation] = []
    worker_id = message.worker_id.strip()
    if not worker_id:
        violations.append(FieldViolation(f"{path}.worker_id", "is required"))
    elif len(worker_id) > MAX_WORKER_ID or not worker_id.isprintable():
        violations.append(
            FieldViolation(
                f"{path}.worker_id", f"must be printable, at most {MAX_WORKER_ID} characters"
            )
        )
    terminals: list[HostedTerminal] = []
    seen: set[BrokerLogin] = set()
    for i, terminal in enumerate(message.terminals):
        at = f"{path}.terminals[{i}]"
        server = terminal.server.strip()
        if terminal.login <= 0:
            violations.append(FieldViolation(f"{at}.login", "must be a broker login above 0"))
        if not server or len(server) > MAX_SERVER:
            violations.append(
                FieldViolation(f"{at}.server", f"is required, at most {MAX_SERVER} characters")
            )
        platform = None
        try:
            platform = _optional_enum(Platform, common_pb2.Platform, "PLATFORM", terminal.platform)
        except WireError:
            violations.append(FieldViolation(f"{at}.platform", "unknown platform"))
        login = BrokerLogin(terminal.login, server)
        if login in seen:
            violations.append(FieldViolation(at, f"login {login} is listed twice"))
        seen.add(login)
        terminals.append(HostedTerminal(login, platform, terminal.backend[:40]))
    if violations:
        raise InvalidArgument(violations)
    return Hello(
        worker_id,
        tuple(terminals),
        message.version[:100],
        accepts_command_batches=message.accepts_command_batches,
        prices_at_market=message.prices_at_market,
    )
