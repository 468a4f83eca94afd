"""Every Terminal protocol value and command crosses the worker stream unchanged: exact decimals,
optional fields left unset, times in UTC; malformed messages are refused, not guessed at."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway._proto.mam.v1 import common_pb2
from gateway._proto.mam.v1 import worker_service_pb2 as pb
from gateway.domain.account_history import DealEntry
from gateway.domain.accounts import MarginMode, Platform
from gateway.domain.errors import InvalidArgument
from gateway.domain.orders import FillingPolicy, OrderType, Side, TimeInForce
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
from gateway.terminals.remote import BrokerLogin, HostedTerminal, wire
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
from tests.unit.sim_helpers import EURUSD

D = Decimal
T = datetime(2026, 3, 2, 14, 30, 5, 123456, tzinfo=UTC)
LOGIN = BrokerLogin(5001, "Broker-Live")

POSITION = Position(7, "EURUSD", Side.SELL, D("0.30"), D("1.08412"), 700_001, "mam:P", T)
ORDER = PendingOrder(
    8, "EURUSD", Side.BUY, D("0.10"), D("1.07000"), 700_001, "mam:O", T,
    order_type=OrderType.STOP_LIMIT, stop_limit_price=D("1.06990"), stop_loss=D("1.06000"),
    time_in_force=TimeInForce.SPECIFIED, expires_at=T, filling=FillingPolicy.IOC,
    volume_initial=D("0.20"),
)  # fmt: skip
DEAL = Deal(
    9, 8, 7, "EURUSD", Side.SELL, D("0.30"), D("1.08412"), 700_001, "mam:P", T,
    entry=DealEntry.OUT_BY, profit=D("-12.50"),
)  # fmt: skip

COMMANDS_AND_ANSWERS: list[tuple[TerminalCommand, CommandAnswer]] = [
    (
        SendOrder(OrderRequest(TradeAction.DEAL, "EURUSD", Side.BUY, D("0.01"), "mam:A", 1)),
        OrderResult(10009, "Request executed", 1, 2, 3, D("0.01"), D("1.08456"), executed_at=T),
    ),
    (FindByTag("mam:P"), TaggedRecords((ORDER,), (POSITION,), (DEAL,))),
    (GetPositions(), [POSITION, POSITION]),
    (GetPendingOrders(), [ORDER]),
    (GetDeals(T), [DEAL]),
    (GetDeals(T), []),
    (
        GetAccountInfo(),
        AccountInfo(
            5001,
            "EUR",
            500,
            MarginMode.NETTING,
            D("10000.00"),
            D("9990.10"),
            D("108.45"),
            D("9881.65"),
            T,
        ),
    ),
    (GetSymbolSpec("EURUSD"), EURUSD),
    (GetQuote("EURUSD"), Quote("EURUSD", D("1.08450"), D("1.08458"), T)),
    (GetHealth(), TerminalHealth(False, "no connection to the trade server")),
]


@pytest.mark.parametrize(("command", "answer"), COMMANDS_AND_ANSWERS)
def test_a_command_and_its_answer_cross_the_stream_unchanged(
    command: TerminalCommand, answer: CommandAnswer
) -> None:
    sent = pb.TerminalCommand.FromString(
        wire.command_to_proto("cmd_1", "acc_1", LOGIN, command).SerializeToString()
    )
    assert (sent.command_id, sent.account_id, sent.login, sent.server) == (
        "cmd_1", "acc_1", 5001, "Broker-Live",
    )  # fmt: skip
    assert wire.command_from_proto(sent) == command
    result = pb.CommandResult.FromString(
        wire.answer_to_proto("cmd_1", command, answer).SerializeToString()
    )
    assert result.command_id == "cmd_1"
    assert wire.answer_from_proto(result) == answer


decimals = st.decimals(min_value=D("0.00001"), max_value=D(100_000), places=5)


@given(
    action=st.sampled_from(TradeAction),
    side=st.sampled_from(Side),
    volume=decimals,
    price=st.none() | decimals,
    stop_loss=st.none() | decimals,
    order_type=st.sampled_from(OrderType),
    filling=st.sampled_from(FillingPolicy),
    expires_at=st.none() | st.just(T),
    tickets=st.tuples(*[st.integers(0, 2**62)] * 3),
)
def test_any_trade_request_crosses_the_stream_unchanged(
    action: TradeAction,
    side: Side,
    volume: Decimal,
    price: Decimal | None,
    stop_loss: Decimal | None,
    order_type: OrderType,
    filling: FillingPolicy,
    expires_at: datetime | None,
    tickets: tuple[int, int, int],
) -> None:
    request = OrderRequest(
        action, "XAUUSD", side, volume, "mam:06H18KJ4ENC6SVADQAGV", 2**31 - 1,
        price=price, deviation_points=20, stop_loss=stop_loss, order_type=order_type,
        expires_at=expires_at, filling=filling, position_ticket=tickets[0],
        order_ticket=tickets[1], position_by=tickets[2],
    )  # fmt: skip
    message = wire.order_request_to_proto(request)
    assert wire.order_request_from_proto(message) == request
    assert str(wire.order_request_from_proto(message).volume) == str(volume)  # same exponent


def test_failures_come_back_as_the_exceptions_the_engine_knows() -> None:
    missing = wire.failure_to_proto("c", wire.FailureKind.SYMBOL_NOT_FOUND, "NOSUCH")
    assert isinstance(wire.answer_from_proto(missing), SymbolNotFound)
    for kind in (
        wire.FailureKind.TERMINAL_ERROR,
        wire.FailureKind.NOT_HOSTED,
        wire.FailureKind.BAD_COMMAND,
    ):
        failure = wire.answer_from_proto(wire.failure_to_proto("c", kind, "lost"))
        assert isinstance(failure, TerminalError) and "lost" in str(failure)


@pytest.mark.parametrize(
    "broken",
    [
        pb.CommandResult(command_id="c"),  # no result at all
        pb.CommandResult(command_id="c", quote=pb.TerminalQuote(symbol="X", bid="1e3", ask="2")),
        pb.CommandResult(command_id="c", quote=pb.TerminalQuote(symbol="X", bid="1", ask="2")),
        pb.CommandResult(
            command_id="c", positions=pb.TerminalPositions(positions=[pb.TerminalPosition()])
        ),
    ],
)
def test_an_answer_that_does_not_read_is_refused(broken: pb.CommandResult) -> None:
    with pytest.raises(wire.WireError):
        wire.answer_from_proto(broken)


def test_a_command_without_a_call_is_refused() -> None:
    with pytest.raises(wire.WireError):
        wire.command_from_proto(pb.TerminalCommand(command_id="c", login=1, server="s"))


def test_a_hello_round_trips_and_each_bad_field_is_named() -> None:
    hello = wire.Hello(
        "win-1", (HostedTerminal(LOGIN, Platform.MT5, "mt5"), HostedTerminal(BrokerLogin(2, "B"))),
        "1.0",
    )  # fmt: skip
    assert wire.hello_from_proto(wire.hello_to_proto(hello, "secret")) == hello
    bad = pb.WorkerHello(
        worker_id=" ",
        terminals=[
            pb.HostedTerminal(login=0, server="S"),
            pb.HostedTerminal(login=5, server=""),
            pb.HostedTerminal(
                login=6, server="S", platform=common_pb2.Platform.Value("PLATFORM_MT4")
            ),
            pb.HostedTerminal(login=6, server="S", platform=99),  # type: ignore[arg-type]
        ],
    )
    with pytest.raises(InvalidArgument) as refused:
        wire.hello_from_proto(bad)
    assert [v.field for v in refused.value.violations] == [
        "hello.worker_id",
        "hello.terminals[0].login",
        "hello.terminals[1].server",
        "hello.terminals[3].platform",
        "hello.terminals[3]",
    ]
