"""observe(): what a look at a source account gives, and that each change gives one signal with
an id no other change ever gets."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain.orders import OrderType, Side, TimeInForce
from gateway.domain.source_book import (
    SignalKind,
    SkipReason,
    SourceBook,
    SourceSignal,
    book_from_json,
    book_to_json,
    observe,
)

D = Decimal
T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
AGE = timedelta(seconds=30)


@dataclass(frozen=True)
class Pos:
    ticket: int
    volume: Decimal
    side: Side = Side.BUY
    symbol: str = "EURUSD"
    comment: str = ""
    opened_at: datetime = T0
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    price_open: Decimal = Decimal("1.10000")


@dataclass(frozen=True)
class Order:
    ticket: int
    price: Decimal
    volume: Decimal = Decimal("1.00")
    side: Side = Side.BUY
    symbol: str = "EURUSD"
    placed_at: datetime = T0
    order_type: OrderType = OrderType.LIMIT
    stop_limit_price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    expires_at: datetime | None = None


def started(*positions: Pos, orders: tuple[Order, ...] = ()) -> SourceBook:
    book, _ = observe(SourceBook(), positions, orders, now=T0, max_signal_age=AGE)
    return book


def look(
    book: SourceBook, *positions: Pos, orders: tuple[Order, ...] = (), at: datetime = T0
) -> tuple[SourceBook, list[SourceSignal]]:
    return observe(book, positions, orders, now=at, max_signal_age=AGE)


def kinds(signals: list[SourceSignal]) -> list[tuple[str, SignalKind]]:
    return [(s.event_id, s.kind) for s in signals]


def test_what_is_open_at_the_first_look_is_recorded_not_copied() -> None:
    book, signals = look(SourceBook(), Pos(1, D("0.50")), orders=(Order(7, D("1.05")),))
    assert [(s.event_id, s.skip) for s in signals] == [
        ("pos:1:open", SkipReason.OPEN_BEFORE_SOURCE),
        ("order:7:placed", SkipReason.OPEN_BEFORE_SOURCE),
    ]
    assert not any(s.acts for s in signals)
    # Closing it later does nothing on the group either.
    _, later = look(book)
    assert [(s.kind, s.skip) for s in later] == [
        (SignalKind.ORDER_REMOVED, SkipReason.NOT_COPIED),
        (SignalKind.POSITION_CLOSED, SkipReason.NOT_COPIED),
    ]


def test_open_partial_close_stops_and_close_each_give_one_signal() -> None:
    book = started()
    book, signals = look(book, Pos(5, D("1.00"), stop_loss=D("1.0800")))
    assert kinds(signals) == [("pos:5:open", SignalKind.POSITION_OPENED)]
    opened = signals[0]
    assert opened.acts and opened.copies == ("pos:5:open",) and opened.volume == D("1.00")
    assert opened.stop_loss == D("1.0800")
    # Looking again at the same state gives nothing.
    assert look(book, Pos(5, D("1.00"), stop_loss=D("1.0800")))[1] == []

    book, signals = look(book, Pos(5, D("0.40"), stop_loss=D("1.0800")))
    assert kinds(signals) == [("pos:5:1", SignalKind.POSITION_REDUCED)]
    assert signals[0].fraction == D("0.6") and signals[0].volume == D("0.60")
    assert signals[0].copies == ("pos:5:open",)

    book, signals = look(book, Pos(5, D("0.40"), stop_loss=D("1.0850"), take_profit=D("1.1")))
    assert kinds(signals) == [("pos:5:2", SignalKind.STOPS_CHANGED)]
    assert (signals[0].stop_loss, signals[0].take_profit) == (D("1.0850"), D("1.1"))

    book, signals = look(book)
    assert kinds(signals) == [("pos:5:3", SignalKind.POSITION_CLOSED)]
    assert signals[0].fraction == 1 and signals[0].volume == D("0.40")
    assert book.positions == {}


def test_an_increase_is_one_more_copy_that_later_closes_share() -> None:
    book = started()
    book, _ = look(book, Pos(5, D("1.00")))
    book, signals = look(book, Pos(5, D("1.50")))
    assert kinds(signals) == [("pos:5:1", SignalKind.POSITION_INCREASED)]
    assert signals[0].volume == D("0.50") and signals[0].copies == ("pos:5:1",)
    _, signals = look(book, Pos(5, D("0.75")))
    assert signals[0].fraction == D("0.5")
    assert signals[0].copies == ("pos:5:open", "pos:5:1")


def test_a_netting_reversal_closes_the_side_and_opens_the_other() -> None:
    book = started()
    book, _ = look(book, Pos(5, D("1.00")))
    book, signals = look(book, Pos(5, D("0.30"), side=Side.SELL))
    assert kinds(signals) == [
        ("pos:5:1", SignalKind.POSITION_CLOSED),
        ("pos:5:2", SignalKind.POSITION_OPENED),
    ]
    assert signals[1].side is Side.SELL and signals[1].volume == D("0.30") and signals[1].acts
    _, signals = look(book)
    assert kinds(signals) == [("pos:5:3", SignalKind.POSITION_CLOSED)]
    assert signals[0].copies == ("pos:5:2",)


def test_a_close_by_closes_each_position_by_its_own_fraction() -> None:
    book = started()
    book, _ = look(book, Pos(5, D("1.00")), Pos(6, D("0.40"), side=Side.SELL))
    _, signals = look(book, Pos(5, D("0.60")))
    assert kinds(signals) == [
        ("pos:5:1", SignalKind.POSITION_REDUCED),
        ("pos:6:1", SignalKind.POSITION_CLOSED),
    ]
    assert [s.fraction for s in signals] == [D("0.4"), D(1)]


def test_an_mt4_partial_close_continues_under_the_new_ticket() -> None:
    book = started()
    book, _ = look(book, Pos(5, D("1.00")))
    book, signals = look(book, Pos(9, D("0.30"), comment="from #5"))
    assert kinds(signals) == [("pos:5:1", SignalKind.POSITION_REDUCED)]
    assert signals[0].fraction == D("0.7")
    assert set(book.positions) == {9} and book.positions[9].copies == ("pos:5:open",)
    _, signals = look(book)
    assert kinds(signals) == [("pos:9:2", SignalKind.POSITION_CLOSED)]
    assert signals[0].copies == ("pos:5:open",)


def test_a_pending_order_placed_moved_and_cancelled() -> None:
    book = started()
    book, signals = look(book, orders=(Order(7, D("1.0500")),))
    assert kinds(signals) == [("order:7:placed", SignalKind.ORDER_PLACED)]
    assert signals[0].acts and signals[0].price == D("1.0500")
    assert signals[0].order_type is OrderType.LIMIT
    book, signals = look(book, orders=(Order(7, D("1.0450"), stop_loss=D("1.04")),))
    assert kinds(signals) == [("order:7:1", SignalKind.ORDER_MODIFIED)]
    assert signals[0].copies == ("order:7:placed",) and signals[0].price == D("1.0450")
    book, signals = look(book)
    assert kinds(signals) == [("order:7:removed", SignalKind.ORDER_REMOVED)]
    assert signals[0].copies == ("order:7:placed",) and signals[0].acts


def test_a_triggered_pending_order_becomes_the_position_its_copy_holds() -> None:
    book = started()
    book, _ = look(book, orders=(Order(7, D("1.0500")),))
    book, signals = look(book, Pos(7, D("1.00")))
    assert kinds(signals) == [("order:7:triggered", SignalKind.ORDER_TRIGGERED)]
    assert not signals[0].acts
    assert book.positions[7].copies == ("order:7:placed",)
    _, signals = look(book, Pos(7, D("0.50")))
    assert kinds(signals) == [("pos:7:1", SignalKind.POSITION_REDUCED)]
    assert signals[0].copies == ("order:7:placed",)


def test_what_opened_longer_ago_than_the_signal_age_is_skipped() -> None:
    book = started()
    late = T0 + timedelta(minutes=5)
    book, signals = look(
        book, Pos(5, D("1.00")), Pos(6, D("1.00"), opened_at=late - timedelta(seconds=5)), at=late
    )
    assert [(s.event_id, s.skip) for s in signals] == [
        ("pos:5:open", SkipReason.SIGNAL_TOO_OLD),
        ("pos:6:open", None),
    ]
    # A position never copied stays uncopied through its changes.
    _, signals = look(book, Pos(5, D("0.50")), Pos(6, D("1.00")), at=late)
    assert [(s.event_id, s.skip) for s in signals] == [("pos:5:1", SkipReason.NOT_COPIED)]


def test_closes_come_before_changes_and_changes_before_openings() -> None:
    book = started()
    book, _ = look(book, Pos(5, D("1.00")), Pos(6, D("1.00")), orders=(Order(8, D("1.05")),))
    _, signals = look(
        book, Pos(6, D("1.00"), stop_loss=D("1.0")), Pos(7, D("1.00")),
        orders=(Order(8, D("1.04")),),
    )  # fmt: skip
    assert [s.kind for s in signals] == [
        SignalKind.POSITION_CLOSED,
        SignalKind.STOPS_CHANGED,
        SignalKind.ORDER_MODIFIED,
        SignalKind.POSITION_OPENED,
    ]


# -- properties over random walks --------------------------------------------------------------

_volumes = st.sampled_from([D("0.10"), D("0.20"), D("0.50"), D("1.00"), D("1.30")])
_stops = st.sampled_from([None, D("1.05"), D("1.06")])
_position = st.builds(
    Pos,
    ticket=st.integers(1, 6),
    volume=_volumes,
    side=st.sampled_from(Side),
    stop_loss=_stops,
)
_order = st.builds(Order, ticket=st.integers(4, 9), price=st.sampled_from([D("1.04"), D("1.05")]))


def _unique_by_ticket(items: list[Pos] | list[Order]) -> list[Pos] | list[Order]:
    return list({item.ticket: item for item in items}.values())  # type: ignore[return-value]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.lists(_position, max_size=4), st.lists(_order, max_size=2)), max_size=8)
)
def test_every_change_gets_an_id_no_other_ever_gets_and_the_stored_book_is_the_book(
    walk: list[tuple[list[Pos], list[Order]]],
) -> None:
    book = started()
    ids: set[str] = set()
    at = T0
    # As at a broker: a ticket once gone never comes back, a position never becomes an order,
    # and an order becomes a position (it triggered) only as it goes.
    gone: set[int] = set()
    were_positions: set[int] = set()
    orders_held: set[int] = set()
    for positions, orders in walk:
        at += timedelta(seconds=1)
        seen_orders = [
            replace(o, placed_at=at)
            for o in _unique_by_ticket(orders)
            if o.ticket not in gone and o.ticket not in were_positions
        ]
        order_tickets = {o.ticket for o in seen_orders}
        seen_positions = [
            replace(p, opened_at=at)
            for p in _unique_by_ticket(positions)
            if p.ticket not in gone and p.ticket not in order_tickets
        ]
        position_tickets = {p.ticket for p in seen_positions}
        gone |= (were_positions - position_tickets) | (
            orders_held - order_tickets - position_tickets
        )
        were_positions |= position_tickets
        orders_held = order_tickets
        book, signals = observe(book, seen_positions, seen_orders, now=at, max_signal_age=AGE)
        for signal in signals:
            assert signal.event_id not in ids
            ids.add(signal.event_id)
            # What acts on copies names only copies made before it or by it.
            assert all(copy in ids for copy in signal.copies)
        # Seeing the same again gives nothing; the stored book gives the same as the book.
        assert book_from_json(book_to_json(book)) == book
        again, none = observe(book, seen_positions, seen_orders, now=at, max_signal_age=AGE)
        assert none == [] and again == book
