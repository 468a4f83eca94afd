"""The trade pool an EA of protocol 2 pushes: when it stands in for asking, and that it never
goes back."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from gateway.terminals.mt4.book import PushedBook
from gateway.terminals.mt4.messages import OP_BUY, BookReport, OrderRecord

SESSION = "session-a"
OTHER = "session-b"


def record(ticket: int) -> OrderRecord:
    return OrderRecord(
        ticket=ticket,
        root=ticket,
        tag="",
        symbol="EURUSD",
        cmd=OP_BUY,
        lots=Decimal("0.10"),
        open_price=Decimal("1.08454"),
        open_time=datetime(2026, 1, 5, 12, tzinfo=UTC),
        close_price=Decimal("1.08446"),
        close_time=None,
        stop_loss=None,
        take_profit=None,
        expiration=None,
        magic=0,
        comment="",
        profit=Decimal(0),
        swap=Decimal(0),
        commission=Decimal(0),
        close_tag="",
        closed_by=0,
    )


def pool(*tickets: int) -> tuple[OrderRecord, ...]:
    return tuple(record(t) for t in tickets)


def started(*, pushes: bool = True) -> PushedBook:
    book = PushedBook()
    book.begin(SESSION, pushes=pushes)
    return book


def test_nothing_stands_in_before_the_session_pushes_or_answers() -> None:
    book = started()
    assert book.current(SESSION) is None
    assert book.pushed(SESSION, BookReport(1, pool(7)))
    assert book.current(SESSION) == pool(7)
    assert book.current(OTHER) is None


def test_a_new_session_forgets_what_the_last_one_pushed() -> None:
    book = started()
    book.pushed(SESSION, BookReport(5, pool(7)))
    book.begin(OTHER, pushes=True)
    assert book.current(OTHER) is None and book.seq == -1
    # A push of the replaced session, read late, is not taken.
    assert not book.pushed(SESSION, BookReport(6, pool(8)))
    assert book.current(OTHER) is None
    assert book.pushed(OTHER, BookReport(1, pool(8)))
    assert book.current(OTHER) == pool(8)


def test_a_session_of_protocol_1_never_stands_in() -> None:
    book = started(pushes=False)
    assert not book.pushed(SESSION, BookReport(1, pool(7)))
    assert book.answered(SESSION, 1, pool(7)) == pool(7)
    assert book.current(SESSION) is None


def test_an_answer_older_than_the_pool_pushed_does_not_take_it_back() -> None:
    book = started()
    book.pushed(SESSION, BookReport(4, pool(7, 8)))
    # The EA answered at 3, then pushed 4; the gateway read the push first.
    assert book.answered(SESSION, 3, pool(7)) == pool(7, 8)
    assert (book.seq, book.current(SESSION)) == (4, pool(7, 8))
    assert book.answered(SESSION, 5, pool(9)) == pool(9)
    assert (book.seq, book.current(SESSION)) == (5, pool(9))


def test_a_push_older_than_the_pool_held_is_not_taken_and_the_same_is_no_change() -> None:
    book = started()
    book.answered(SESSION, 6, pool(7))
    assert not book.pushed(SESSION, BookReport(5, pool()))
    assert not book.pushed(SESSION, BookReport(6, pool(7)))
    assert book.current(SESSION) == pool(7)


def test_after_a_trade_the_pool_is_asked_for_until_one_as_new_as_the_trade_is_pushed() -> None:
    book = started()
    book.pushed(SESSION, BookReport(2, pool(7)))
    book.trading(SESSION)
    assert book.current(SESSION) is None  # under way: its outcome is not in the pool yet
    book.traded(SESSION, 3)
    assert book.current(SESSION) is None  # the pool held (2) is older than the trade (3)
    book.pushed(SESSION, BookReport(3, pool(7, 8)))
    assert book.current(SESSION) == pool(7, 8)


def test_a_trade_read_after_its_push_leaves_the_pool_current() -> None:
    book = started()
    book.pushed(SESSION, BookReport(2, pool(7)))
    book.trading(SESSION)
    book.pushed(SESSION, BookReport(3, pool(7, 8)))  # the push came in before the caller woke
    book.traded(SESSION, 3)
    assert book.current(SESSION) == pool(7, 8)


def test_a_trade_of_unknown_outcome_leaves_only_an_answer_to_make_the_pool_current() -> None:
    book = started()
    book.pushed(SESSION, BookReport(2, pool(7)))
    book.trading(SESSION)  # ...and no answer came (timeout), or one without a number
    book.traded(SESSION, None)
    book.pushed(SESSION, BookReport(3, pool(7, 8)))
    assert book.current(SESSION) is None
    book.answered(SESSION, 3, pool(7, 8))
    assert book.current(SESSION) == pool(7, 8)


def test_a_pool_too_large_to_push_is_asked_for_until_one_is_pushed_whole() -> None:
    book = started()
    book.pushed(SESSION, BookReport(2, pool(7)))
    assert book.pushed(SESSION, BookReport(3, None))
    assert book.current(SESSION) is None
    # An answer from before the too-large push is still the newest pool known.
    assert book.answered(SESSION, 2, pool(7)) == pool(7)
    assert book.current(SESSION) is None
    book.pushed(SESSION, BookReport(4, pool(7, 8)))
    assert book.current(SESSION) == pool(7, 8)


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 50)), max_size=40))
def test_the_pool_held_is_always_the_newest_told(events: list[tuple[bool, int]]) -> None:
    book = started()
    for is_push, seq in events:
        told = pool(seq)
        if is_push:
            book.pushed(SESSION, BookReport(seq, told))
        else:
            assert book.answered(SESSION, seq, told) == pool(max(seq, book.seq))
    newest = max((seq for _, seq in events), default=-1)
    assert book.seq == newest
    assert book.current(SESSION) == (pool(newest) if events else None)
