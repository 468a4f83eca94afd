"""mam.v1 requests -> validated domain values. Every bad field is reported, all at once."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
from gateway.domain.copy_options import (
    DEFAULT_COPY_OPTIONS,
    CopyDirection,
    CopyOptions,
    MinVolumePolicy,
)
from gateway.domain.decimals import parse_decimal
from gateway.domain.drawdown_monitor import (
    LossLimit,
    LossLimits,
    LossRule,
    LossUnit,
    StopOutAction,
    loss_limits_violations,
)
from gateway.domain.errors import FieldViolation, InvalidArgument, Violations
from gateway.domain.group_source import DEFAULT_MAX_SIGNAL_AGE
from gateway.domain.ids import AccountId, GroupId, MasterOrderId
from gateway.domain.orders import FillingPolicy, MasterOrderSpec, OrderType, Side, TimeInForce
from gateway.domain.risk_limits import (
    NO_LIMITS,
    RiskLimits,
    TradingWindow,
    ViolationPolicy,
    Weekday,
    risk_limits_violations,
)
from gateway.domain.risk_settings import GroupRisk, watched

E = TypeVar("E", bound=enum.Enum)
T = TypeVar("T")

MAX_NAME = 200
MAX_ID = 100
MAX_COMMENT = 500
# Per RiskLimits: more than this many symbols or windows is not a limit, it is a mistake.
MAX_SYMBOLS = 1000
MAX_WINDOWS = 100
_TIME_OF_DAY = re.compile(r"([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?")
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+)*")


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
        group_id=GroupId(group_id),
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


class MasterOrderView(enum.Enum):
    """How much of a master order an answer carries (mam.v1.MasterOrderView)."""

    # Everything but the allocation's lines.
    BASIC = "BASIC"
    FULL = "FULL"

    @property
    def allocation_lines(self) -> bool:
        return self is MasterOrderView.FULL


def _view(violations: Violations, number: int, path: str = "view") -> MasterOrderView:
    """The view asked for: unset is FULL (what answers carried before views); a number the
    enum does not have is a violation, not a guess."""
    if number == order_pb2.MASTER_ORDER_VIEW_UNSPECIFIED:
        return MasterOrderView.FULL
    view = enum_from_proto(MasterOrderView, order_pb2.MasterOrderView, "MASTER_ORDER_VIEW", number)
    if view is None:
        violations.add(
            path, f"must be MASTER_ORDER_VIEW_BASIC or MASTER_ORDER_VIEW_FULL, got {number}"
        )
        return MasterOrderView.FULL
    return view


def master_order_view(number: int, path: str = "view") -> MasterOrderView:
    """A request's view on its own (INVALID_ARGUMENT for a number the enum does not have)."""
    v = Violations()
    view = _view(v, number, path)
    v.raise_if_any()
    return view


def submission(message: Any) -> tuple[MasterOrderSpec, MasterOrderView]:
    """A SubmitMasterOrderRequest's or StreamMasterOrdersRequest's order and view, every bad
    field of both reported at once."""
    v = Violations()
    spec = None
    try:
        spec = master_order_spec(message.order)
    except InvalidArgument as error:
        v.items.extend(error.violations)
    view = _view(v, message.view)
    v.raise_if_any()
    assert spec is not None
    return spec, view


def master_order_lookup(message: Any) -> tuple[MasterOrderId, MasterOrderView]:
    """A GetMasterOrderRequest: the id and the view."""
    v = Violations()
    master_order_id = _text(
        v, "master_order_id", message.master_order_id, required=True, limit=MAX_ID
    )
    view = _view(v, message.view)
    v.raise_if_any()
    return MasterOrderId(master_order_id), view


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
                account_id=AccountId(member.account_id),
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
                copy=(
                    copy_options(v, member.copy_options, f"{at}.copy_options")
                    if member.HasField("copy_options")
                    else DEFAULT_COPY_OPTIONS
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
            reference_account_id=AccountId(settings.reference_account_id) or None,
        ),
        members=tuple(members),
        magic=message.magic or None,
    )


def copy_options(v: Violations, message: account_pb2.CopyOptions, path: str) -> CopyOptions:
    """A member's copy options as given; what does not parse goes to `v`. Their ranges and how
    they fit the member (min_volume against max_lots) are the domain's checks, made with the
    group's (gateway/domain/group_rules.py)."""
    direction = CopyDirection.BOTH
    if message.direction:
        given = enum_from_proto(
            CopyDirection, account_pb2.CopyDirection, "COPY_DIRECTION", message.direction
        )
        if given is None:
            v.add(f"{path}.direction", f"unknown copy direction {message.direction}")
        else:
            direction = given
    policy = MinVolumePolicy.SKIP
    if message.min_volume_policy:
        chosen = enum_from_proto(
            MinVolumePolicy,
            account_pb2.MinVolumePolicy,
            "MIN_VOLUME_POLICY",
            message.min_volume_policy,
        )
        if chosen is None:
            v.add(
                f"{path}.min_volume_policy",
                f"unknown minimum volume policy {message.min_volume_policy}",
            )
        else:
            policy = chosen
    return CopyOptions(
        reverse=message.reverse,
        direction=direction,
        copy_stops=not message.skip_stops,
        copy_pending=not message.skip_pending_orders,
        min_volume=_decimal(v, f"{path}.min_volume", message.min_volume),
        min_volume_policy=policy,
        max_slippage_points=(
            message.max_slippage_points if message.HasField("max_slippage_points") else None
        ),
        # The Duration's range was checked with the request's (well_known_checks.py).
        max_signal_age=(
            message.max_signal_age.ToTimedelta() if message.HasField("max_signal_age") else None
        ),
        close_only=message.close_only,
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


SOURCE_UPDATABLE = frozenset({"account_id", "paused", "max_signal_age"})
# A position seen a day after it was opened is history, not a signal to copy.
MAX_SIGNAL_AGE = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class SourceUpdate:
    """A SetGroupSourceRequest: the group, and each field of its source to set (None: kept
    as the group's current source has it)."""

    group_id: GroupId
    account_id: AccountId | None
    paused: bool | None
    max_signal_age: timedelta | None


def source_update(message: Any) -> SourceUpdate:
    """The fields the mask names (every field without one), each checked; an unset
    max_signal_age among them is the default."""
    v = Violations()
    group_id = _text(v, "group_id", message.group_id, required=True, limit=MAX_ID)
    paths = list(message.update_mask.paths)
    wrong = [p for p in paths if p not in SOURCE_UPDATABLE]
    if wrong:
        v.add(
            "update_mask.paths",
            f"cannot update {', '.join(wrong)}; updatable: {', '.join(sorted(SOURCE_UPDATABLE))}",
        )
    named = set(paths) if paths else set(SOURCE_UPDATABLE)
    source = message.source
    account_id = None
    if "account_id" in named:
        account_id = AccountId(
            _text(v, "source.account_id", source.account_id, required=True, limit=MAX_ID)
        )
    max_signal_age = None
    if "max_signal_age" in named:
        max_signal_age = DEFAULT_MAX_SIGNAL_AGE
        if source.HasField("max_signal_age"):
            max_signal_age = source.max_signal_age.ToTimedelta()
            if max_signal_age < timedelta(milliseconds=1):
                v.add("source.max_signal_age", "must be at least 1 millisecond")
            elif max_signal_age > MAX_SIGNAL_AGE:
                v.add("source.max_signal_age", "must be at most 1 day (86400s)")
    v.raise_if_any()
    return SourceUpdate(
        group_id=GroupId(group_id),
        account_id=account_id,
        paused=source.paused if "paused" in named else None,
        max_signal_age=max_signal_age,
    )


@dataclass(frozen=True, slots=True)
class CloseRequest:
    master_order_id: MasterOrderId
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
    return CloseRequest(MasterOrderId(master_order_id), client_order_id, fraction, volume)


@dataclass(frozen=True, slots=True)
class StopsRequest:
    master_order_id: MasterOrderId
    # None: leave as it is; 0: remove.
    stop_loss: Decimal | None
    take_profit: Decimal | None
    # A WORKING pending order's new price (the stop price of a STOP_LIMIT); None: kept.
    price: Decimal | None = None


def stops_request(message: Any) -> StopsRequest:
    v = Violations()
    master_order_id = _text(
        v, "master_order_id", message.master_order_id, required=True, limit=MAX_ID
    )
    stop_loss = _decimal(v, "stop_loss", message.stop_loss, non_negative=True)
    take_profit = _decimal(v, "take_profit", message.take_profit, non_negative=True)
    price = _decimal(v, "price", message.price, positive=True)
    if not (message.stop_loss or message.take_profit or message.price):
        v.add(
            "stop_loss",
            'nothing to change: set stop_loss, take_profit ("0" removes) and/or price',
        )
    v.raise_if_any()
    return StopsRequest(MasterOrderId(master_order_id), stop_loss, take_profit, price)


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


# -- risk settings --------------------------------------------------------------------------


def account_with_risk(
    message: account_pb2.Account, path: str = "account"
) -> tuple[NewAccount, LossLimits | None]:
    """An account to create and its loss limits, every bad field of both reported at once."""
    v = Violations()
    new = None
    try:
        new = new_account(message, path)
    except InvalidArgument as error:
        v.items.extend(error.violations)
    losses = None
    if message.HasField("loss_limits"):
        losses = loss_limits(v, message.loss_limits, f"{path}.loss_limits")
    v.raise_if_any()
    assert new is not None
    return new, losses


@dataclass(frozen=True, slots=True)
class AccountUpdate:
    name: str
    state: AccountState
    loss_limits: LossLimits | None


def account_update(message: account_pb2.Account, path: str = "account") -> AccountUpdate:
    """What UpdateAccount may change, from the stored account merged with the masked fields."""
    v = Violations()
    name = _text(v, f"{path}.name", message.name, required=True, limit=MAX_NAME)
    state = enum_from_proto(AccountState, account_pb2.AccountState, "ACCOUNT_STATE", message.state)
    if state is None:
        v.add(f"{path}.state", "must be ACCOUNT_STATE_ACTIVE or ACCOUNT_STATE_DISABLED")
    losses = None
    if message.HasField("loss_limits"):
        losses = loss_limits(v, message.loss_limits, f"{path}.loss_limits")
    v.raise_if_any()
    assert state is not None
    return AccountUpdate(name, state, losses)


def group_with_risk(message: account_pb2.Group, path: str = "group") -> tuple[NewGroup, GroupRisk]:
    """A group and its risk settings, every bad field of both reported at once."""
    v = Violations()
    new = None
    try:
        new = new_group(message, path)
    except InvalidArgument as error:
        v.items.extend(error.violations)
    risk = group_risk(v, message, path)
    v.raise_if_any()
    assert new is not None
    return new, risk


def group_risk(v: Violations, message: account_pb2.Group, path: str = "group") -> GroupRisk:
    limits = NO_LIMITS
    if message.HasField("risk_limits"):
        limits = risk_limits(v, message.risk_limits, f"{path}.risk_limits")
    members = {}
    for i, member in enumerate(message.members):
        if member.HasField("risk_limits"):
            at = f"{path}.members[{i}].risk_limits"
            members[member.account_id] = risk_limits(v, member.risk_limits, at)
    policy = enum_from_proto(
        ViolationPolicy, account_pb2.ViolationPolicy, "VIOLATION_POLICY", message.violation_policy
    )
    losses = None
    if message.HasField("loss_limits"):
        losses = loss_limits(v, message.loss_limits, f"{path}.loss_limits")
    return GroupRisk(limits, policy or ViolationPolicy.SKIP, members, losses)


def risk_limits(v: Violations, message: account_pb2.RiskLimits, path: str) -> RiskLimits:
    """The limits as given; errors of syntax and of the domain's checks go to `v`."""
    allowed = _symbols(v, f"{path}.allowed_symbols", message.allowed_symbols)
    denied = _symbols(v, f"{path}.denied_symbols", message.denied_symbols)
    windows = []
    if len(message.trading_windows) > MAX_WINDOWS:
        v.add(f"{path}.trading_windows", f"at most {MAX_WINDOWS} windows")
    for i, given in enumerate(message.trading_windows[:MAX_WINDOWS]):
        at = f"{path}.trading_windows[{i}]"
        start_day = _weekday(v, f"{at}.start_day", given.start_day)
        end_day = _weekday(v, f"{at}.end_day", given.end_day)
        start = _time_of_day(v, f"{at}.start_time", given.start_time)
        end = _time_of_day(v, f"{at}.end_time", given.end_time)
        if start_day is not None and end_day is not None and start and end:
            windows.append(TradingWindow(start_day, start, end_day, end))
    limits = RiskLimits(
        max_order_volume=_decimal(v, f"{path}.max_order_volume", message.max_order_volume),
        max_symbol_volume=_decimal(v, f"{path}.max_symbol_volume", message.max_symbol_volume),
        max_symbol_notional=_decimal(v, f"{path}.max_symbol_notional", message.max_symbol_notional),
        max_open_positions=(
            message.max_open_positions if message.HasField("max_open_positions") else None
        ),
        min_margin_level=_decimal(v, f"{path}.min_margin_level", message.min_margin_level),
        allowed_symbols=allowed,
        denied_symbols=denied,
        trading_windows=tuple(windows),
    )
    # Windows are checked only when each one parsed: the domain names them by position.
    checked = limits
    if len(windows) != len(message.trading_windows):
        checked = dataclasses.replace(limits, trading_windows=())
    v.items.extend(risk_limits_violations(checked, path))
    return limits


def loss_limits(v: Violations, message: account_pb2.LossLimits, path: str) -> LossLimits | None:
    """The loss limits as given (None when they hold no rule); errors go to `v`."""
    zone = _time_zone(v, f"{path}.day_time_zone", message.day_time_zone)
    limits = LossLimits(
        daily_loss=(
            _loss_limit(v, message.daily_loss, f"{path}.daily_loss")
            if message.HasField("daily_loss")
            else None
        ),
        max_drawdown=(
            _loss_limit(v, message.max_drawdown, f"{path}.max_drawdown")
            if message.HasField("max_drawdown")
            else None
        ),
        day_zone=zone,
        daily_breach_ends_next_day=not message.daily_stop_out_needs_reset,
    )
    v.items.extend(loss_limits_violations(limits, path))
    return watched(limits)


def loss_rules(message: Any) -> frozenset[LossRule] | None:
    """ResetStopOutRequest.rules: None (every rule) when empty."""
    v = Violations()
    rules = set()
    for i, number in enumerate(message.rules):
        rule = enum_from_proto(LossRule, account_pb2.LossRule, "LOSS_RULE", number)
        if rule is None:
            v.add(f"rules[{i}]", "must be LOSS_RULE_DAILY_LOSS or LOSS_RULE_MAX_DRAWDOWN")
        else:
            rules.add(rule)
    v.raise_if_any()
    return frozenset(rules) if rules else None


def _loss_limit(v: Violations, message: account_pb2.LossLimit, path: str) -> LossLimit:
    amount = _decimal(v, f"{path}.amount", message.amount, required=True)
    unit = enum_from_proto(LossUnit, account_pb2.LossUnit, "LOSS_UNIT", message.unit)
    if unit is None:
        v.add(f"{path}.unit", "must be LOSS_UNIT_MONEY or LOSS_UNIT_PERCENT")
    action = enum_from_proto(
        StopOutAction, account_pb2.StopOutAction, "STOP_OUT_ACTION", message.action
    )
    if action is None and message.action:
        v.add(f"{path}.action", f"unknown stop-out action {message.action}")
    return LossLimit(
        amount if amount is not None else Decimal(1),
        unit or LossUnit.MONEY,
        action or StopOutAction.BLOCK_NEW_ENTRIES,
    )


def _symbols(v: Violations, path: str, given: Any) -> frozenset[str]:
    if len(given) > MAX_SYMBOLS:
        v.add(path, f"at most {MAX_SYMBOLS} symbols")
        return frozenset()
    for symbol in given:
        if len(symbol) > MAX_ID:
            v.add(path, f"a symbol name is longer than {MAX_ID} characters")
            return frozenset()
    return frozenset(given)


def _weekday(v: Violations, path: str, number: int) -> Weekday | None:
    if not 1 <= number <= 7:
        v.add(path, "must be a day, WEEKDAY_MONDAY to WEEKDAY_SUNDAY")
        return None
    # WEEKDAY_MONDAY = 1 on the wire; MONDAY = 0 as Python counts.
    return Weekday(number - 1)


def _time_of_day(v: Violations, path: str, text: str) -> time | None:
    found = _TIME_OF_DAY.fullmatch(text)
    if found is None:
        v.add(path, f'must be a UTC time of day, "HH:MM" or "HH:MM:SS", got {text[:20]!r}')
        return None
    hours, minutes, seconds = found.groups()
    return time(int(hours), int(minutes), int(seconds or 0))


def _time_zone(v: Violations, path: str, name: str) -> tzinfo:
    if not name:
        return UTC
    if len(name) <= 64 and _ZONE_NAME.fullmatch(name):
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    v.add(path, f'must be an IANA time zone name such as "Europe/Athens", got {name[:40]!r}')
    return UTC
