"""When a symbol can be traded: trading sessions per weekday, in UTC, as MT5 brokers set them.

Outside every session the trade server refuses requests with MARKET_CLOSED (10018).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MINUTES_PER_DAY = 24 * 60
_ENTRY = re.compile(
    r"(?P<first>[A-Z][a-z]{2})(?:-(?P<last>[A-Z][a-z]{2}))?\s+"
    r"(?P<start>\d{2}:\d{2})-(?P<end>\d{2}:\d{2})"
)

# Half-open minute ranges [start, end) of one UTC day.
DaySessions = tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class TradingSessions:
    # Monday first, like datetime.weekday().
    by_weekday: tuple[DaySessions, ...]

    @classmethod
    def always_open(cls) -> TradingSessions:
        return cls(tuple(((0, _MINUTES_PER_DAY),) for _ in WEEKDAYS))

    @classmethod
    def parse(cls, entries: Iterable[str]) -> TradingSessions:
        """Sessions from entries like "Mon-Fri 00:05-23:55" or "Sun 22:00-24:00" (UTC).

        A session ends on the day it starts (write a night session as two entries). Raises
        ValueError, naming the entry, on anything else.
        """
        days: list[list[tuple[int, int]]] = [[] for _ in WEEKDAYS]
        for entry in entries:
            match = _ENTRY.fullmatch(entry.strip())
            if match is None:
                raise ValueError(f'session {entry!r}: expected e.g. "Mon-Fri 00:00-24:00"')
            first, last = match["first"], match["last"] or match["first"]
            if first not in WEEKDAYS or last not in WEEKDAYS:
                raise ValueError(f"session {entry!r}: weekdays are {', '.join(WEEKDAYS)}")
            start, end = _minute(match["start"], entry), _minute(match["end"], entry)
            if start >= end:
                raise ValueError(f"session {entry!r}: the end must come after the start")
            for day in range(WEEKDAYS.index(first), WEEKDAYS.index(last) + 1):
                days[day].append((start, end))
        return cls(tuple(tuple(sorted(day)) for day in days))

    def is_open(self, at: datetime) -> bool:
        """Whether `at` (an aware UTC datetime) falls in a session."""
        minute = at.hour * 60 + at.minute
        return any(start <= minute < end for start, end in self.by_weekday[at.weekday()])


def _minute(text: str, entry: str) -> int:
    hours, minutes = int(text[:2]), int(text[3:])
    if minutes >= 60 or hours * 60 + minutes > _MINUTES_PER_DAY:
        raise ValueError(f"session {entry!r}: {text} is not a time of day")
    return hours * 60 + minutes


ALWAYS_OPEN = TradingSessions.always_open()
