"""mam.v1 requests -> validated domain values. Every bad field is reported, all at once."""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal
from typing import Any, TypeVar

from gateway._proto.mam.v1 import account_pb2, common_pb2, order_pb2
from gateway.domain.accounts import (
    MAX_MAGIC,
    AccountState,
    AllocationMethod,
    AllocationSettings,
    BelowMinPolicy,
    GroupMember,
    MarginMode,
    NewAccount,
    NewGroup,
    Platform,
)
from gateway.domain.decimals import parse_decimal
from gateway.domain.errors import FieldViolation, InvalidArgument, Violations
from gateway.domain.orders import FillingPolicy, MasterOrderSpec, OrderType, Side, TimeInForce

E = TypeVar("E", bound=enum.Enum)
T = TypeVar("T")

MAX_NAME = 200
MAX_ID = 100
MAX_COMMENT = 500


def enum_from_proto(domain: type[E], enum_type: Any, prefix: str, number: int) -> E | None:
    """SIDE_BUY -> Side.BUY; the _UNSPECIFIED value and unknown numbers -> None."""
    if number == 0:
        return None
    try:
        name = enum_type.Name(number)
    except ValueError:
        return None
    return domain[name.removeprefix(f"{prefix}_")]


def _decimal(
    violations: Violations,
    path: str,
    text: str,
    *,
    required: bool = False,
    positive: bool = False,
    non_negative: bool = False,
) -> Decimal | None:
    if text == "":
        if required:
            violations.add(path, "is required")
        return None
    try:
        value = parse_decimal(text)
    except ValueError:
        violations.add(path, f'must be a decimal number like "1.25", got {text[:40]!r}')
        return None
    if positive and value <= 0:
        violations.add(path, f"must be greater than 0, got {text}")
        return None
    if non_negative and value < 0:
        violations.add(path, f"must not be negative, got {text}")
        return None
    return value


def _text(violations: Violations, path: str, text: str, *, required: bool, limit: int) -> str:
    if required and not text.strip():
        violations.add(path, "is required")
    elif len(text) > limit:
        violations.add(path, f"is longer than {limit} characters")
    return text.strip()


def master_order_spec(
    message: order_pb2.MasterOrderSpec, path: str = "order", *, for_submission: bool = True
) -> MasterOrderSpec:
    """The validated spec; a preview (`for_submission=False`) needs no client_order_id."""
    v = Violations()
    group_id = _text(v, f"{path}.group_id", message.group_id, required=True, limit=MAX_ID)
    symbol = _text(v, f"{path}.symbol", message.symbol, required=True, limit=MAX_ID)
    side = enum_from_proto(Side, common_pb2.Side, "SIDE", message.side)
    if side is None:
        v.add(f"{path}.side", "must be SIDE_BUY or SIDE_SELL")
    order_type = enum_from_proto(OrderType, common_pb2.OrderType, "ORDER_TYPE", message.type)
    if order_type is None:
        v.add(f"{path}.type", "must be set, e.g. ORDER_TYPE_MARKET")
    volume = _decimal(v, f"{path}.volume", message.volume, required=True, positive=True)
    price = _decimal(v, f"{path}.price", message.price, positive=True)
    if order_type in (OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT) and not message.price:
        v.add(f"{path}.price", f"is required for {order_type.name if order_type else ''} orders")
    stop_limit = _decimal(v, f"{path}.stop_limit_price", message.stop_limit_price, positive=True)
    stop_loss = _decimal(v, f"{path}.stop_loss", message.stop_loss, positive=True)
    take_profit = _decimal(v, f"{path}.take_profit", message.take_profit, positive=True)
    if message.max_deviation_points < 0:
        v.add(f"{path}.max_deviation_points", "must not be negative")
    # Required: a retried submission (after a timeout, a reconnect, a restart of the caller)
    # must find the order it may already have placed instead of trading twice.
    client_order_id = _text(
        v,
        f"{path}.client_order_id",
        message.client_order_id,
        required=for_submission,
        limit=MAX_ID,
    )
    comment = _text(v, f"{path}.comment", message.comment, required=False, limit=MAX_COMMENT)
    tif = enum_from_proto(
        TimeInForce, common_pb2.TimeInForce, "TIME_IN_FORCE", message.time_in_force
    )
    filling = enum_from_proto(
        FillingPolicy, common_pb2.FillingPolicy, "FILLING_POLICY", message.filling_policy
    )
    expire_time = (
        message.expire_time.ToDatetime(tzinfo=UTC) if message.HasField("expire_time") else None
    )
    if tif is TimeInForce.SPECIFIED and expire_time is None:
        v.add(f"{path}.expire_time", "is required with TIME_IN_FORCE_SPECIFIED")
    v.raise_if_any()
    assert side is not None and order_type is not None and volume is not None
    return MasterOrderSpec(
        group_id=group_id,
        symbol=symbol,
        side=side,
        order_type=order_type,
        volume=volume,
        client_order_id=client_order_id,
        price=price,
        stop_limit_price=stop_limit,
        stop_loss=stop_loss,
        take_profit=take_profit,
        max_deviation_points=message.max_deviation_points,
        time_in_force=tif or TimeInForce.GTC,
        expire_time=expire_time,
        filling_policy=filling or FillingPolicy.FOK,
        comment=comment,
    )


def new_account(message: account_pb2.Account, path: str = "account") -> NewAccount:
    v = Violations()
    name = _text(v, f"{path}.name", message.name, required=True, limit=MAX_NAME)
    platform = enum_from_proto(Platform, common_pb2.Platform, "PLATFORM", message.platform)
    if platform is None:
        v.add(f"{path}.platform", "must be PLATFORM_MT4, PLATFORM_MT5 or PLATFORM_SIMULATED")
    if message.login <= 0:
        v.add(f"{path}.login", "must be a broker login greater than 0")
    if platform in (Platform.MT4, Platform.MT5) and not message.server.strip():
        v.add(f"{path}.server", f"is required for {platform.name if platform else ''} accounts")
    server = _text(v, f"{path}.server", message.server, required=False, limit=MAX_NAME)
    currency = message.currency.strip() or "USD"
    if not (len(currency) == 3 and currency.isalpha() and currency.isupper()):
        v.add(f"{path}.currency", "must be a 3-letter ISO 4217 code like USD")
    leverage = message.leverage or 100
    if not 1 <= leverage <= 5000:
        v.add(f"{path}.leverage", "must be between 1 and 5000")
    initial_balance = None
    if platform is Platform.SIMULATED:
        initial_balance = _decimal(
            v,
            f"{path}.simulated.initial_balance",
            message.simulated.initial_balance,
            required=True,
            positive=True,
        )
    mappings: list[tuple[str, str]] = []
    for i, mapping in enumerate(message.symbol_mappings):
        if not mapping.symbol or not mapping.broker_symbol:
            v.add(f"{path}.symbol_mappings[{i}]", "symbol and broker_symbol are both required")
        mappings.append((mapping.symbol, mapping.broker_symbol))
    v.raise_if_any()
    assert platform is not None
    return NewAccount(
        name=name,
        platform=platform,
        login=message.login,
        server=server,
        currency=currency,
        state=enum_from_proto(
            AccountState, account_pb2.AccountState, "ACCOUNT_STATE", message.state
        )
        or AccountState.ACTIVE,
        margin_mode=enum_from_proto(
            MarginMode, common_pb2.MarginMode, "MARGIN_MODE", message.margin_mode
        )
        or MarginMode.HEDGING,
        leverage=leverage,
        initial_balance=initial_balance,
        symbol_mappings=tuple(mappings),
    )


def new_group(message: account_pb2.Group, path: str = "group") -> NewGroup:
    v = Violations()
    name = _text(v, f"{path}.name", message.name, required=True, limit=MAX_NAME)
    settings = message.allocation
    method = enum_from_proto(
        AllocationMethod, account_pb2.AllocationMethod, "ALLOCATION_METHOD", settings.method
    )
    policy = enum_from_proto(
        BelowMinPolicy, account_pb2.BelowMinPolicy, "BELOW_MIN_POLICY", settings.below_min_policy
    )
    reference = _decimal(
        v, f"{path}.allocation.reference_equity", settings.reference_equity, positive=True
    )
    members = []
    for i, member in enumerate(message.members):
        at = f"{path}.members[{i}]"
        if not member.account_id:
            v.add(f"{at}.account_id", "is required")
        members.append(
            GroupMember(
                account_id=member.account_id,
                percentage=_decimal(v, f"{at}.percentage", member.percentage, non_negative=True),
                lot_multiplier=_decimal(
                    v, f"{at}.lot_multiplier", member.lot_multiplier, non_negative=True
                ),
                fixed_lots=_decimal(v, f"{at}.fixed_lots", member.fixed_lots, non_negative=True),
                risk_percent=_decimal(v, f"{at}.risk_percent", member.risk_percent, positive=True),
                max_lots=_decimal(v, f"{at}.max_lots", member.max_lots, positive=True),
                method=enum_from_proto(
                    AllocationMethod,
                    account_pb2.AllocationMethod,
                    "ALLOCATION_METHOD",
                    member.method,
                ),
            )
        )
    if not 0 <= message.magic <= MAX_MAGIC:
        v.add(f"{path}.magic", f"must be between 1 and {MAX_MAGIC} (MT4 magic numbers are int)")
    v.raise_if_any()
    return NewGroup(
        name=name,
        allocation=AllocationSettings(
            method=method or AllocationMethod.EQUITY,
            below_min_policy=policy or BelowMinPolicy.SKIP,
            reference_equity=reference,
            reference_account_id=settings.reference_account_id or None,
        ),
        members=tuple(members),
        magic=message.magic or None,
    )


def update_paths(mask: Any, allowed: frozenset[str]) -> list[str]:
    """The paths of an update mask, each one that may be changed; at least one."""
    paths = list(mask.paths)
    if not paths:
        raise InvalidArgument(
            [FieldViolation("update_mask", "is required: name the fields to change")]
        )
    wrong = [p for p in paths if p not in allowed]
    if wrong:
        raise InvalidArgument(
            [
                FieldViolation(
                    "update_mask.paths",
                    f"cannot update {', '.join(wrong)}; updatable: {', '.join(sorted(allowed))}",
                )
            ]
        )
    return paths


@dataclass(frozen=True, slots=True)
class CloseRequest:
    master_order_id: str
    client_order_id: str
    fraction: Decimal | None
    volume: Decimal | None


def close_request(message: Any) -> CloseRequest:
    """A CloseMasterPositionRequest: the order, an idempotency key, and exactly one amount."""
    v = Violations()
    master_order_id = _text(
        v, "master_order_id", message.master_order_id, required=True, limit=MAX_ID
    )
    client_order_id = _text(
        v, "client_order_id", message.client_order_id, required=True, limit=MAX_ID
    )
    amount = message.WhichOneof("amount")
    fraction = volume = None
    if amount is None:
        v.add("fraction", 'one of fraction (e.g. "0.5", "1" for all) or volume is required')
    elif amount == "fraction":
        fraction = _decimal(v, "fraction", message.fraction, required=True, positive=True)
        if fraction is not None and fraction > 1:
            v.add("fraction", f"must be at most 1 (all of the open position), got {fraction}")
            fraction = None
    else:
        volume = _decimal(v, "volume", message.volume, required=True, positive=True)
    v.raise_if_any()
    return CloseRequest(master_order_id, client_order_id, fraction, volume)


@dataclass(frozen=True, slots=True)
class StopsRequest:
    master_order_id: str
    # None: leave as it is; 0: remove.
    stop_loss: Decimal | None
    take_profit: Decimal | None


def stops_request(message: Any) -> StopsRequest:
    v = Violations()
    master_order_id = _text(
        v, "master_order_id", message.master_order_id, required=True, limit=MAX_ID
    )
    stop_loss = _decimal(v, "stop_loss", message.stop_loss, non_negative=True)
    take_profit = _decimal(v, "take_profit", message.take_profit, non_negative=True)
    if message.price:
        v.add("price", "is for pending orders, which this version does not execute")
    elif not (message.stop_loss or message.take_profit):
        v.add("stop_loss", 'nothing to change: set stop_loss and/or take_profit ("0" removes)')
    v.raise_if_any()
    return StopsRequest(master_order_id, stop_loss, take_profit)


def required_id(text: str, path: str) -> str:
    if not text.strip():
        raise InvalidArgument([FieldViolation(path, "is required")])
    if len(text) > MAX_ID:
        raise InvalidArgument([FieldViolation(path, f"is longer than {MAX_ID} characters")])
    return text.strip()


def page_size(requested: int, *, default: int, maximum: int) -> int:
    if requested < 0:
        raise InvalidArgument([FieldViolation("page_size", "must not be negative")])
    return min(requested or default, maximum)


def split_page(rows: list[T], limit: int, key: Callable[[T], str]) -> tuple[list[T], str]:
    """A page fetched with limit + 1 rows: the page, and the token of the next one ('' if
    this is the last)."""
    if len(rows) > limit:
        return rows[:limit], encode_page_token(key(rows[limit - 1]))
    return rows, ""


def encode_page_token(key: str) -> str:
    return base64.urlsafe_b64encode(f"k:{key}".encode()).decode().rstrip("=")


def decode_page_token(token: str) -> str:
    """The key a page continues from; '' for the first page."""
    if not token:
        return ""
    try:
        padded = token + "=" * (-len(token) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    if not text.startswith("k:") or len(text) > MAX_ID + 2:
        raise InvalidArgument(
            [FieldViolation("page_token", "is not a token from a previous response")]
        )
    return text[2:]
