"""Mt4Terminal over a real TCP connection to a fake EA backed by the simulated broker."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from gateway.domain import retcodes
from gateway.domain.account_history import DealEntry
from gateway.domain.orders import OrderType, Side, TimeInForce
from gateway.domain.retcodes import RetcodeClass
from gateway.terminals.mt4 import Mt4TerminalSettings, SessionSettings
from gateway.terminals.mt4.bridge_server import LoginState
from gateway.terminals.protocol import (
    OrderRequest,
    OrderResult,
    SymbolNotFound,
    TaggedRecords,
    Terminal,
    TerminalError,
    TradeAction,
)
from tests.fakes.fake_mt4_ea import FakeMt4Ea
from tests.fakes.mt4_bridge import (
    LOGIN,
    TOKEN,
    Mt4Bridge,
    connected_mt4_terminal,
    mt4_bridge,
)

D = Decimal
pytestmark = pytest.mark.timeout(30)

OPEN_TAG = "mam:0000000000OPENBUY001"
CLOSE_TAG = "mam:0000000000CLOSE00001"
MAGIC = 700_001


@pytest.fixture
async def bridge() -> AsyncIterator[Mt4Bridge]:
    async with mt4_bridge() as connected:
        yield connected


def market(side: Side, volume: str, tag: str = OPEN_TAG, **fields: object) -> OrderRequest:
    return OrderRequest(TradeAction.DEAL, "EURUSD", side, D(volume), tag, MAGIC, **fields)  # type: ignore[arg-type]


def close_of(position: int, side: Side, volume: str, tag: str = CLOSE_TAG) -> OrderRequest:
    return market(side, volume, tag, position_ticket=position)


async def opened(bridge: Mt4Bridge, side: Side, volume: str, tag: str = OPEN_TAG) -> OrderResult:
    result = await bridge.terminal.send(market(side, volume, tag))
    assert result.retcode == retcodes.DONE, result
    return result


def trade_requests(ea: FakeMt4Ea) -> list[str]:
    return [m["type"] for m in ea.received if m["type"].startswith("order_")]


# -- handshake -------------------------------------------------------------------------------


async def test_the_factory_gives_a_connected_terminal_of_a_funded_hedging_account() -> None:
    async with connected_mt4_terminal() as terminal:
        assert isinstance(terminal, Terminal)
        assert (await terminal.health()).connected
        info = await terminal.account_info()
        assert info.balance == D(10_000) and info.margin_mode.value == "HEDGING"
        result = await terminal.send(market(Side.BUY, "0.10"))
        assert result.retcode == retcodes.DONE


async def test_a_wrong_token_is_refused_and_no_session_starts() -> None:
    async with mt4_bridge(connect=False) as bridge:
        host, port = bridge.server.address
        intruder = FakeMt4Ea(bridge.broker, LOGIN, host=host, port=port, token=TOKEN + "x")
        answer = await intruder.connect()
        assert (answer["type"], answer["reason"]) == ("refused", "unauthorized")
        assert bridge.server.session(LOGIN) is None
        health = await bridge.terminal.health()
        assert not health.connected and "not connected" in health.detail


async def test_an_unknown_login_gets_the_same_refusal_as_a_wrong_token() -> None:
    async with mt4_bridge(connect=False) as bridge:
        host, port = bridge.server.address
        bridge.broker.open_account(999, balance=D(1))
        stranger = FakeMt4Ea(bridge.broker, 999, host=host, port=port, token=TOKEN)
        answer = await stranger.connect()
        assert (answer["type"], answer["reason"]) == ("refused", "unauthorized")


async def test_an_ea_of_another_protocol_version_is_refused_with_the_versions_spoken() -> None:
    async with mt4_bridge(connect=False) as bridge:
        host, port = bridge.server.address
        future_ea = FakeMt4Ea(
            bridge.broker, LOGIN, host=host, port=port, token=TOKEN, protocol_min=3, protocol_max=4
        )
        answer = await future_ea.connect()
        assert (answer["type"], answer["reason"]) == ("refused", "version")
        assert (answer["protocol_min"], answer["protocol_max"]) == (1, 2)


async def test_a_first_frame_that_is_not_a_hello_is_refused() -> None:
    async with mt4_bridge(connect=False) as bridge:
        reader, writer = await asyncio.open_connection(*bridge.server.address)
        payload = b'{"type":"heartbeat"}'
        writer.write(struct.pack(">I", len(payload)) + payload)
        (length,) = struct.unpack(">I", await reader.readexactly(4))
        answer = json.loads(await reader.readexactly(length))
        assert (answer["type"], answer["reason"]) == ("refused", "malformed")
        assert await reader.read() == b""  # and the connection is closed
        writer.close()


async def test_an_oversize_frame_ends_the_session(bridge: Mt4Bridge) -> None:
    await bridge.ea.send_bytes(struct.pack(">I", 64 << 20))
    reason = await bridge.server.wait_disconnected(LOGIN)
    assert "above the limit" in reason
    health = await bridge.terminal.health()
    assert not health.connected and "above the limit" in health.detail


# -- account, symbols, quotes ----------------------------------------------------------------


async def test_account_symbol_and_quote_come_from_the_ea(bridge: Mt4Bridge) -> None:
    info = await bridge.terminal.account_info()
    assert (info.login, info.currency, info.leverage) == (LOGIN, "USD", 100)
    assert info.equity == D("10000.00")
    spec = await bridge.terminal.symbol_spec("EURUSD")
    assert (spec.digits, spec.volume_step, spec.contract_size) == (5, D("0.01"), D(100000))
    assert spec.stops_level == 10
    quote = await bridge.terminal.quote("EURUSD")
    bid, ask, _ = bridge.broker.feed.bid_ask("EURUSD")
    assert (quote.bid, quote.ask) == (bid, ask)


async def test_a_symbol_the_broker_lacks_is_not_found(bridge: Mt4Bridge) -> None:
    with pytest.raises(SymbolNotFound):
        await bridge.terminal.symbol_spec("XAUEUR")
    with pytest.raises(SymbolNotFound):
        await bridge.terminal.quote("XAUEUR")


# -- market orders and partial closes ---------------------------------------------------------


async def test_market_buy_and_sell_open_positions_of_their_own(bridge: Mt4Bridge) -> None:
    buy = await opened(bridge, Side.BUY, "0.30")
    sell = await opened(bridge, Side.SELL, "0.20", "mam:0000000000OPENSELL01")
    bid, ask, _ = bridge.broker.feed.bid_ask("EURUSD")
    assert (buy.price, sell.price) == (ask, bid)
    assert buy.deal_ticket == buy.position_ticket == buy.order_ticket
    positions = {p.ticket: p for p in await bridge.terminal.positions()}
    assert positions.keys() == {buy.position_ticket, sell.position_ticket}
    assert positions[buy.position_ticket].side is Side.BUY
    assert positions[sell.position_ticket].volume == D("0.20")


async def test_partial_closes_follow_the_new_ticket_mt4_gives_the_rest(
    bridge: Mt4Bridge,
) -> None:
    root = (await opened(bridge, Side.BUY, "1.00")).position_ticket
    first = await bridge.terminal.send(close_of(root, Side.SELL, "0.40"))
    assert (first.retcode, first.volume, first.position_ticket) == (
        retcodes.DONE,
        D("0.40"),
        root,
    )
    [rest] = bridge.ea.open_records()
    assert rest["ticket"] != root and rest["comment"] == f"from #{root}"

    # The engine still names the position by its first ticket; the EA closes the new one.
    second = await bridge.terminal.send(
        close_of(root, Side.SELL, "0.25", "mam:0000000000CLOSE00002")
    )
    assert (second.retcode, second.volume, second.order_ticket) == (
        retcodes.DONE,
        D("0.25"),
        rest["ticket"],
    )
    [position] = await bridge.terminal.positions()
    assert (position.ticket, position.volume, position.comment) == (root, D("0.35"), OPEN_TAG)

    opening = await bridge.terminal.find_by_tag(OPEN_TAG)
    assert [(d.ticket, d.volume, d.entry) for d in opening.deals] == [
        (root, D("1.00"), DealEntry.IN)
    ]
    assert [p.ticket for p in opening.positions] == [root]
    closing = await bridge.terminal.find_by_tag(CLOSE_TAG)
    assert [(d.ticket, d.volume, d.entry) for d in closing.deals] == [
        (first.deal_ticket, D("0.40"), DealEntry.OUT)
    ]


async def test_the_ea_pushes_the_open_orders_with_the_new_ticket_and_its_root(
    bridge: Mt4Bridge,
) -> None:
    root = (await opened(bridge, Side.BUY, "1.00")).position_ticket
    await bridge.terminal.send(close_of(root, Side.SELL, "0.40"))

    def remainder_pushed(state: LoginState) -> bool:
        orders = state.open_orders or ()
        return any(o.root == root and o.ticket != root for o in orders)

    await bridge.server.wait_for_update(LOGIN, remainder_pushed)
    [rest] = bridge.terminal.updates.open_orders or ()
    assert rest.lots == D("0.60") and rest.comment == f"from #{root}"
    assert bridge.terminal.updates.account is not None


async def test_deals_since_include_opening_and_closing_deals(bridge: Mt4Bridge) -> None:
    start = bridge.broker.feed.now()
    root = (await opened(bridge, Side.BUY, "0.50")).position_ticket
    await bridge.terminal.send(close_of(root, Side.SELL, "0.50"))
    deals = await bridge.terminal.deals(start)
    assert [(d.ticket, d.entry, d.volume) for d in deals] == [
        (root, DealEntry.IN, D("0.50")),
        (2**32 + root, DealEntry.OUT, D("0.50")),
    ]
    assert deals[1].profit == D("-4.00")  # the spread of 8 points on 0.5 lot
    assert await bridge.terminal.positions() == []
    info = await bridge.terminal.account_info()
    assert info.balance == D(10_000) + deals[1].profit


# -- pending orders, SL/TP, close-by ----------------------------------------------------------


async def test_pending_orders_are_placed_modified_and_deleted(bridge: Mt4Bridge) -> None:
    _, ask, _ = bridge.broker.feed.bid_ask("EURUSD")
    tag = "mam:0000000000PENDING001"
    placed = await bridge.terminal.send(
        OrderRequest(
            TradeAction.PENDING,
            "EURUSD",
            Side.BUY,
            D("0.20"),
            tag,
            MAGIC,
            price=ask - D("0.00100"),
            order_type=OrderType.LIMIT,
            time_in_force=TimeInForce.SPECIFIED,
            expires_at=datetime(2026, 1, 9, tzinfo=UTC),
        )
    )
    assert placed.retcode == retcodes.PLACED
    [order] = await bridge.terminal.pending_orders()
    assert (order.ticket, order.order_type, order.side) == (
        placed.order_ticket,
        OrderType.LIMIT,
        Side.BUY,
    )
    assert order.expires_at == datetime(2026, 1, 9, tzinfo=UTC)

    moved = await bridge.terminal.send(
        OrderRequest(
            TradeAction.MODIFY,
            "EURUSD",
            Side.BUY,
            D("0.20"),
            tag,
            MAGIC,
            price=ask - D("0.00200"),
            take_profit=ask,
            order_ticket=placed.order_ticket,
        )
    )
    assert (moved.retcode, moved.price) == (retcodes.DONE, ask - D("0.00200"))
    [order] = (await bridge.terminal.find_by_tag(tag)).orders
    assert (order.price, order.take_profit) == (ask - D("0.00200"), ask)

    removed = await bridge.terminal.send(
        OrderRequest(
            TradeAction.REMOVE,
            "EURUSD",
            Side.BUY,
            D(0),
            tag,
            MAGIC,
            order_ticket=placed.order_ticket,
        )
    )
    assert removed.retcode == retcodes.DONE
    assert await bridge.terminal.pending_orders() == []
    again = await bridge.terminal.send(
        OrderRequest(
            TradeAction.REMOVE,
            "EURUSD",
            Side.BUY,
            D(0),
            tag,
            MAGIC,
            order_ticket=placed.order_ticket,
        )
    )
    assert retcodes.classify(again.retcode) is RetcodeClass.PERMANENT


async def test_a_stop_limit_order_is_refused_without_asking_the_ea(bridge: Mt4Bridge) -> None:
    result = await bridge.terminal.send(
        OrderRequest(
            TradeAction.PENDING,
            "EURUSD",
            Side.BUY,
            D("0.10"),
            "mam:0000000000STOPLIMIT1",
            MAGIC,
            price=D("1.09000"),
            stop_limit_price=D("1.08900"),
            order_type=OrderType.STOP_LIMIT,
        )
    )
    assert result.retcode == retcodes.INVALID and "stop limit" in result.text
    assert trade_requests(bridge.ea) == []


async def test_stops_are_set_on_the_position_after_a_partial_close(bridge: Mt4Bridge) -> None:
    root = (await opened(bridge, Side.BUY, "1.00")).position_ticket
    await bridge.terminal.send(close_of(root, Side.SELL, "0.50"))
    bid, _, _ = bridge.broker.feed.bid_ask("EURUSD")
    stops = OrderRequest(
        TradeAction.SLTP,
        "EURUSD",
        Side.BUY,
        D("0.50"),
        "mam:0000000000STOPS00001",
        MAGIC,
        position_ticket=root,
        stop_loss=bid - D("0.00500"),
        take_profit=bid + D("0.00500"),
    )
    result = await bridge.terminal.send(stops)
    assert (result.retcode, result.position_ticket) == (retcodes.DONE, root)
    [position] = await bridge.terminal.positions()
    assert (position.stop_loss, position.take_profit) == (bid - D("0.00500"), bid + D("0.00500"))
    unchanged = await bridge.terminal.send(stops)
    assert unchanged.retcode == retcodes.NO_CHANGES


async def test_close_by_closes_the_overlap_and_the_rest_keeps_its_root(bridge: Mt4Bridge) -> None:
    buy = (await opened(bridge, Side.BUY, "1.00")).position_ticket
    sell = (await opened(bridge, Side.SELL, "0.40", "mam:0000000000OPENSELL01")).position_ticket
    tag = "mam:0000000000CLOSEBY001"
    result = await bridge.terminal.send(
        OrderRequest(
            TradeAction.CLOSE_BY,
            "EURUSD",
            Side.BUY,
            D("1.00"),
            tag,
            MAGIC,
            position_ticket=buy,
            position_by=sell,
        )
    )
    assert (result.retcode, result.volume, result.position_ticket) == (
        retcodes.DONE,
        D("0.40"),
        buy,
    )
    [rest] = await bridge.terminal.positions()
    assert (rest.ticket, rest.volume, rest.side) == (buy, D("0.60"), Side.BUY)
    found = await bridge.terminal.find_by_tag(tag)
    assert sorted((d.position_ticket, d.entry, d.volume) for d in found.deals) == [
        (buy, DealEntry.OUT_BY, D("0.40")),
        (sell, DealEntry.OUT_BY, D("0.40")),
    ]


# -- refusals and their engine classes --------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "retcode", "kind"),
    [
        (146, retcodes.LOCKED, RetcodeClass.TRANSIENT),
        (138, retcodes.REQUOTE, RetcodeClass.TRANSIENT),
        (136, retcodes.PRICE_OFF, RetcodeClass.TRANSIENT),
        (135, retcodes.PRICE_CHANGED, RetcodeClass.TRANSIENT),
        (137, retcodes.TOO_MANY_REQUESTS, RetcodeClass.TRANSIENT),
        (141, retcodes.TOO_MANY_REQUESTS, RetcodeClass.TRANSIENT),
        (6, retcodes.CONNECTION, RetcodeClass.TRANSIENT),
        (128, retcodes.TIMEOUT, RetcodeClass.AMBIGUOUS),
        (2, retcodes.ERROR, RetcodeClass.AMBIGUOUS),
        (133, retcodes.TRADE_DISABLED, RetcodeClass.PERMANENT),
        (132, retcodes.MARKET_CLOSED, RetcodeClass.PERMANENT),
        (148, retcodes.LIMIT_ORDERS, RetcodeClass.PERMANENT),
        (4109, retcodes.CLIENT_DISABLES_AT, RetcodeClass.PERMANENT),
    ],
)
async def test_an_injected_mt4_error_reaches_the_engine_in_its_class(
    bridge: Mt4Bridge, code: int, retcode: int, kind: RetcodeClass
) -> None:
    bridge.ea.fail_next(code)
    result = await bridge.terminal.send(market(Side.BUY, "0.10"))
    assert (result.retcode, retcodes.classify(result.retcode)) == (retcode, kind)
    assert f"MT4 error {code}" in result.text
    assert await bridge.terminal.positions() == []
    # Nothing sticks: the next request goes through.
    assert (await bridge.terminal.send(market(Side.BUY, "0.10"))).retcode == retcodes.DONE


async def test_a_requote_carries_the_current_prices(bridge: Mt4Bridge) -> None:
    bid, ask, _ = bridge.broker.feed.bid_ask("EURUSD")
    stale = market(Side.BUY, "0.10", price=ask - D("0.00050"), deviation_points=5)
    result = await bridge.terminal.send(stale)
    assert (result.retcode, result.bid, result.ask) == (retcodes.REQUOTE, bid, ask)


@pytest.mark.parametrize(
    ("request_fields", "retcode"),
    [
        ({"volume": D("0.005")}, retcodes.INVALID_VOLUME),
        ({"volume": D("500")}, retcodes.INVALID_VOLUME),
        ({"volume": D("50")}, retcodes.NO_MONEY),
        ({"stop_loss": D("2.00000")}, retcodes.INVALID_STOPS),
    ],
)
async def test_refusals_of_the_trade_server_are_permanent(
    bridge: Mt4Bridge, request_fields: dict[str, object], retcode: int
) -> None:
    result = await bridge.terminal.send(
        OrderRequest(
            **{  # type: ignore[arg-type]
                "action": TradeAction.DEAL,
                "symbol": "EURUSD",
                "side": Side.BUY,
                "volume": D("0.10"),
                "tag": OPEN_TAG,
                "magic": MAGIC,
                **request_fields,
            }
        )
    )
    assert result.retcode == retcode
    assert retcodes.classify(result.retcode) is RetcodeClass.PERMANENT


async def test_closing_a_closed_position_is_refused_as_closed(bridge: Mt4Bridge) -> None:
    root = (await opened(bridge, Side.BUY, "0.10")).position_ticket
    assert (await bridge.terminal.send(close_of(root, Side.SELL, "0.10"))).retcode == retcodes.DONE
    again = await bridge.terminal.send(close_of(root, Side.SELL, "0.10"))
    assert again.retcode == retcodes.POSITION_CLOSED


async def test_a_tag_mt4_cannot_carry_is_refused_before_the_ea(bridge: Mt4Bridge) -> None:
    result = await bridge.terminal.send(market(Side.BUY, "0.10", "mam:" + "X" * 40))
    assert result.retcode == retcodes.INVALID
    assert trade_requests(bridge.ea) == []


# -- reconciliation by tag ---------------------------------------------------------------------


async def test_tags_are_found_despite_a_broker_rewriting_comments(bridge: Mt4Bridge) -> None:
    bridge.ea.comment_rewrite = lambda comment: comment[:20] + "[x]"
    root = (await opened(bridge, Side.BUY, "0.10")).position_ticket
    [position] = (await bridge.terminal.find_by_tag(OPEN_TAG)).positions
    assert position.ticket == root
    # Without the EA's journal (file lost), only the comment is left: still found.
    bridge.ea.forget_journal()
    found = await bridge.terminal.find_by_tag(OPEN_TAG)
    assert [p.ticket for p in found.positions] == [root]
    assert [d.ticket for d in found.deals] == [root]
    # A tag that differs within what the broker kept is not confused with it.
    assert (await bridge.terminal.find_by_tag("mam:0000000001OPENBUY001")).positions == ()


async def test_disconnect_mid_request_is_unknown_then_reconciled_by_tag(
    bridge: Mt4Bridge,
) -> None:
    bridge.ea.disconnect_after_next_trade()
    with pytest.raises(TerminalError, match="outcome is unknown"):
        await bridge.terminal.send(market(Side.BUY, "0.30"))
    await bridge.server.wait_disconnected(LOGIN)
    assert not (await bridge.terminal.health()).connected
    with pytest.raises(TerminalError, match="not connected"):
        await bridge.terminal.find_by_tag(OPEN_TAG)

    await bridge.ea.connect()
    await bridge.server.wait_for_session(LOGIN)
    assert (await bridge.terminal.health()).connected
    found = await bridge.terminal.find_by_tag(OPEN_TAG)
    [deal] = found.deals
    assert (deal.volume, deal.entry, deal.comment) == (D("0.30"), DealEntry.IN, OPEN_TAG)
    # The same terminal trades on over the new session.
    assert (
        await bridge.terminal.send(close_of(deal.position_ticket, Side.SELL, "0.30"))
    ).retcode == (retcodes.DONE)


async def test_a_request_never_answered_is_unknown_and_provably_absent_after() -> None:
    async with mt4_bridge(terminal_settings=Mt4TerminalSettings(trade_timeout_s=0.3)) as bridge:
        bridge.ea.hang_next()
        with pytest.raises(TerminalError, match="no answer"):
            await bridge.terminal.send(market(Side.BUY, "0.30"))
        assert await bridge.terminal.find_by_tag(OPEN_TAG) == TaggedRecords()
        assert (await bridge.terminal.health()).connected
        assert (await bridge.terminal.send(market(Side.BUY, "0.30"))).retcode == retcodes.DONE


async def test_a_silent_ea_is_disconnected_by_the_heartbeat_timeout() -> None:
    quick = SessionSettings(heartbeat_s=0.02, timeout_s=0.2, trade_timeout_s=0.4)
    async with mt4_bridge(session=quick) as bridge:
        bridge.ea.go_silent()
        reason = await bridge.server.wait_disconnected(LOGIN)
        assert "heartbeat timeout" in reason
        health = await bridge.terminal.health()
        assert not health.connected and "heartbeat timeout" in health.detail
        await bridge.ea.bye_received.wait()
        assert bridge.ea.bye is not None and "heartbeat timeout" in bridge.ea.bye["reason"]


async def test_a_new_connection_of_the_same_login_replaces_the_old(bridge: Mt4Bridge) -> None:
    first = bridge.server.session(LOGIN)
    host, port = bridge.server.address
    second_ea = FakeMt4Ea(bridge.broker, LOGIN, host=host, port=port, token=TOKEN)
    try:
        assert (await second_ea.connect())["type"] == "welcome"
        await bridge.ea.bye_received.wait()
        assert bridge.ea.bye is not None and "replaced" in bridge.ea.bye["reason"]
        assert bridge.server.session(LOGIN) not in (None, first)
        assert (await bridge.terminal.send(market(Side.BUY, "0.10"))).retcode == retcodes.DONE
        assert trade_requests(second_ea) == ["order_send"]
    finally:
        await second_ea.disconnect()


async def test_a_closed_terminal_refuses_every_call(bridge: Mt4Bridge) -> None:
    await bridge.terminal.close()
    with pytest.raises(TerminalError, match="closed"):
        await bridge.terminal.account_info()
    assert not (await bridge.terminal.health()).connected


# -- trade events: an EA of protocol 2 pushes its trade pool ----------------------------------


async def pool_current(bridge: Mt4Bridge) -> None:
    """Waits until the pool the EA pushed stands in for asking it."""

    def current(state: LoginState) -> bool:
        return (
            state.session is not None and state.book.current(state.session.session_id) is not None
        )

    async with asyncio.timeout(5):
        await bridge.server.wait_for_update(bridge.login, current)


def by_hand(bridge: Mt4Bridge, request: OrderRequest) -> OrderResult:
    """A trade made in the MT4 terminal itself (by hand, or by another EA): the bridge is not
    asked; only the EA's polling of its pool sees it."""
    result = bridge.broker.execute(bridge.login, request)
    assert result.retcode in (retcodes.DONE, retcodes.PLACED), result
    return result


def limit_below_market(bridge: Mt4Bridge, tag: str = "") -> OrderRequest:
    _, ask, _ = bridge.broker.feed.bid_ask("EURUSD")
    return OrderRequest(
        TradeAction.PENDING,
        "EURUSD",
        Side.BUY,
        D("0.20"),
        tag,
        MAGIC,
        price=ask - D("0.00100"),
        order_type=OrderType.LIMIT,
    )


async def test_positions_and_pending_orders_are_read_from_the_pushed_pool_without_asking(
    bridge: Mt4Bridge,
) -> None:
    assert (await bridge.terminal.health()).detail.endswith("protocol 2")
    seen = bridge.terminal.trade_events
    position = by_hand(bridge, market(Side.BUY, "0.30", ""))
    order = by_hand(bridge, limit_below_market(bridge))
    async with asyncio.timeout(5):
        await bridge.terminal.wait_for_trade_event(after=seen)
    await pool_current(bridge)
    for _ in range(100):
        [held] = await bridge.terminal.positions()
        [resting] = await bridge.terminal.pending_orders()
    assert (held.ticket, held.volume) == (position.position_ticket, D("0.30"))
    assert (resting.ticket, resting.order_type) == (order.order_ticket, OrderType.LIMIT)
    assert bridge.ea.orders_requests == 0
    # What the EA would have answered.
    assert {r["ticket"] for r in bridge.ea.open_records()} == {held.ticket, resting.ticket}


async def test_a_trade_through_the_bridge_is_read_back_at_once_even_before_its_push(
    bridge: Mt4Bridge,
) -> None:
    await pool_current(bridge)
    bridge.ea.hold_pushes()
    opened_now = await opened(bridge, Side.BUY, "0.10")
    # The pool held is older than the trade's answer says: it is asked, not read.
    [position] = await bridge.terminal.positions()
    assert position.ticket == opened_now.position_ticket
    assert bridge.ea.orders_requests == 1
    # A refused trade leaves the pool as it was: it still stands in.
    bridge.ea.fail_next(134)
    assert (await bridge.terminal.send(market(Side.BUY, "0.10"))).retcode == retcodes.NO_MONEY
    assert [p.ticket for p in await bridge.terminal.positions()] == [opened_now.position_ticket]
    assert bridge.ea.orders_requests == 1
    await bridge.ea.release_pushes()
    await bridge.terminal.positions()
    assert bridge.ea.orders_requests == 1


async def test_an_answer_older_than_a_push_read_first_does_not_take_the_pool_back(
    bridge: Mt4Bridge,
) -> None:
    # The EA answers `orders`, then at once sees a trade made by hand and pushes the new pool:
    # both arrive together and the push is taken before the caller reads the answer.
    await pool_current(bridge)
    hand: list[OrderResult] = []
    bridge.ea.overtake_next_orders_answer(
        lambda: hand.append(by_hand(bridge, market(Side.SELL, "0.20", "")))
    )
    await bridge.terminal.deals(bridge.broker.feed.now())  # asks for the pool
    assert bridge.terminal.updates.book.seq == bridge.ea.pushed[-1]
    asked = bridge.ea.orders_requests
    [position] = await bridge.terminal.positions()
    assert position.ticket == hand[0].position_ticket
    assert bridge.ea.orders_requests == asked


async def test_after_a_reconnection_the_old_pool_stands_in_for_nothing(bridge: Mt4Bridge) -> None:
    await pool_current(bridge)
    assert await bridge.terminal.positions() == []
    await bridge.ea.disconnect()
    await bridge.server.wait_disconnected(LOGIN)
    with pytest.raises(TerminalError, match="not connected"):
        await bridge.terminal.positions()
    # Traded meanwhile, and the new session has pushed nothing yet.
    made = by_hand(bridge, market(Side.BUY, "0.40", ""))
    bridge.ea.hold_pushes()
    await bridge.ea.connect()
    await bridge.server.wait_for_session(LOGIN)
    [position] = await bridge.terminal.positions()
    assert position.ticket == made.position_ticket
    assert bridge.ea.orders_requests == 1
    # The answer counts as the new session's pool until it pushes.
    await bridge.terminal.pending_orders()
    assert bridge.ea.orders_requests == 1
    await bridge.ea.release_pushes()
    seen = bridge.terminal.trade_events
    order = by_hand(bridge, limit_below_market(bridge))
    async with asyncio.timeout(5):
        await bridge.terminal.wait_for_trade_event(after=seen)
    [resting] = await bridge.terminal.pending_orders()
    assert resting.ticket == order.order_ticket
    assert bridge.ea.orders_requests == 1


async def test_a_pool_too_large_to_push_is_asked_for_until_one_is_pushed_whole(
    bridge: Mt4Bridge,
) -> None:
    await pool_current(bridge)
    bridge.ea.too_large = True
    seen = bridge.terminal.trade_events
    by_hand(bridge, market(Side.BUY, "0.10", ""))
    async with asyncio.timeout(5):
        await bridge.terminal.wait_for_trade_event(after=seen)
    assert len(await bridge.terminal.positions()) == 1
    assert bridge.ea.orders_requests == 1
    # The answer stands in (its pool is as new as the number pushed) until the next push.
    assert len(await bridge.terminal.positions()) == 1
    assert bridge.ea.orders_requests == 1
    bridge.ea.too_large = False
    seen = bridge.terminal.trade_events
    by_hand(bridge, market(Side.BUY, "0.20", ""))
    async with asyncio.timeout(5):
        await bridge.terminal.wait_for_trade_event(after=seen)
    assert len(await bridge.terminal.positions()) == 2
    assert bridge.ea.orders_requests == 1


async def test_an_ea_from_before_trade_events_is_asked_at_every_read() -> None:
    async with mt4_bridge(protocol_max=1) as bridge:
        assert (await bridge.terminal.health()).detail.endswith("protocol 1")
        result = await opened(bridge, Side.BUY, "0.10")
        for _ in range(3):
            [position] = await bridge.terminal.positions()
            assert position.ticket == result.position_ticket
        assert await bridge.terminal.pending_orders() == []
        assert bridge.ea.orders_requests == 4
        assert bridge.ea.pushed == []
        # Its pushes after its own trades are still news of a trade (without a number).
        async with asyncio.timeout(5):
            await bridge.terminal.wait_for_trade_event(after=0)
