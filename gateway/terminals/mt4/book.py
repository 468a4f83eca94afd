"""The trade pool an EA of protocol 2 keeps the gateway told of, and when it may stand in for
asking the EA (docs/mt4-bridge.md, section 5).

An EA of protocol 2 pushes its whole trade pool (`orders_changed`) as soon as it sees it change,
numbered by a sequence that grows within a session, and names the number the pool has in each
`orders` and `trade_result` answer. Mt4Terminal reads positions and pending orders from the
last pool pushed, without a round trip, while that pool is *current*:

- it came over the login's live session: numbers of one session mean nothing in another, so
  after a reconnection nothing counts until the new session pushes or answers;
- it is not behind what the gateway itself did: a trade's answer names the number the pool had
  right after the trade, and the pool is behind until it reaches that number; while a trade is
  under way, or after one whose answer never came or carried no number, only an answer to
  `orders` (which the EA gives after everything asked before it) makes it current again;
- it was pushed whole (a pool too large for a frame is pushed as its number alone).

A pool never goes back: an answer or a push numbered below the pool held is older than it (an
answer the EA sent just before a push that the gateway happened to take first) and is not kept.
"""

from __future__ import annotations

from gateway.terminals.mt4.messages import BookReport, OrderRecord


class PushedBook:
    """One login's latest trade pool, across its sessions."""

    def __init__(self) -> None:
        # The session whose pushes count; None: none does (no session yet, or protocol 1).
        self._session_id: str | None = None
        # -1: nothing pushed or answered in this session yet.
        self._seq = -1
        self._records: tuple[OrderRecord, ...] | None = None
        # The pool is behind a trade of the gateway's until its number reaches this.
        self._behind_until = 0
        # A trade is under way, or its outcome unknown: only an answer to `orders` will do.
        self._in_doubt = False

    @property
    def seq(self) -> int:
        """The number of the pool held (-1: none in this session)."""
        return self._seq

    def begin(self, session_id: str, *, pushes: bool) -> None:
        """A new session of the login: what earlier sessions told no longer counts. One whose EA
        does not push (`pushes` False: protocol 1) never makes the pool current."""
        self._session_id = session_id if pushes else None
        self._seq = -1
        self._records = None
        self._behind_until = 0
        self._in_doubt = False

    def pushed(self, session_id: str, report: BookReport) -> bool:
        """An `orders_changed` of the session; True if it was newer than the pool held (a
        change of the account's trades)."""
        if session_id != self._session_id or report.seq < self._seq:
            return False
        newer = report.seq > self._seq
        self._seq, self._records = report.seq, report.records
        return newer

    def answered(
        self, session_id: str, seq: int, records: tuple[OrderRecord, ...]
    ) -> tuple[OrderRecord, ...]:
        """The answer to an `orders` request of the session, numbered `seq`; returns the pool
        as it now stands: the answer, or a newer pool pushed after it but taken first."""
        if session_id != self._session_id:
            return records
        self._in_doubt = False
        if seq >= self._seq:
            self._seq, self._records = seq, records
            return records
        return self._records if self._records is not None else records

    def trading(self, session_id: str) -> None:
        """A trade request goes out over the session: the pool is in doubt until its answer."""
        if session_id == self._session_id:
            self._in_doubt = True

    def traded(self, session_id: str, seq: int | None) -> None:
        """The trade's answer came, naming the number of the pool after it (None: it named
        none, the pool stays in doubt until an `orders` answer)."""
        if session_id != self._session_id or seq is None:
            return
        self._in_doubt = False
        self._behind_until = max(self._behind_until, seq)

    def current(self, session_id: str) -> tuple[OrderRecord, ...] | None:
        """The pool, if it can answer for the EA of the (live) session; else None: ask."""
        if session_id != self._session_id or self._in_doubt or self._seq < self._behind_until:
            return None
        return self._records
