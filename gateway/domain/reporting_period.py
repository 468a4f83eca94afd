"""The period a report covers, and the calendar it is cut along: UTC days, months, quarters."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta


class Frequency(enum.Enum):
    """How often a period is cut: the calendar boundaries fees crystallise at."""

    MONTHLY = "MONTHLY"
    QUARTERLY = "QUARTERLY"
    YEARLY = "YEARLY"


@dataclass(frozen=True, slots=True)
class Period:
    """The half-open interval [start, end) of aware datetimes; its days are UTC days."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a period's start and end must carry a time zone (UTC)")
        if self.end <= self.start:
            raise ValueError(f"a period must end after it starts: {self.start} .. {self.end}")

    @classmethod
    def of_days(cls, first: date, last: date) -> Period:
        """The UTC days first..last, both included."""
        return cls(midnight(first), midnight(last + timedelta(days=1)))

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    @property
    def first_day(self) -> date:
        return utc_day(self.start)

    @property
    def last_day(self) -> date:
        """The UTC day of the period's last instant (end itself is outside)."""
        return utc_day(self.end - timedelta(microseconds=1))

    def days(self) -> list[date]:
        """Every UTC day the period touches, a partly covered first or last day included."""
        count = (self.last_day - self.first_day).days + 1
        return [self.first_day + timedelta(days=n) for n in range(count)]

    def split(self, frequency: Frequency) -> list[Period]:
        """The period cut at each calendar boundary of `frequency` inside it (the first and last
        pieces may be partial)."""
        pieces: list[Period] = []
        start = self.start
        boundary = next_boundary(start, frequency)
        while boundary < self.end:
            pieces.append(Period(start, boundary))
            start = boundary
            boundary = next_boundary(start, frequency)
        pieces.append(Period(start, self.end))
        return pieces


def utc_day(moment: datetime) -> date:
    """The UTC calendar day of an aware datetime; every report cuts its days here."""
    return moment.astimezone(UTC).date()


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def is_boundary(moment: datetime, frequency: Frequency) -> bool:
    """Whether `moment` is exactly a boundary of `frequency` (e.g. 1 April 00:00 UTC)."""
    utc = moment.astimezone(UTC)
    if utc != midnight(utc.date()) or utc.day != 1:
        return False
    if frequency is Frequency.MONTHLY:
        return True
    if frequency is Frequency.QUARTERLY:
        return utc.month in (1, 4, 7, 10)
    return utc.month == 1


def next_boundary(moment: datetime, frequency: Frequency) -> datetime:
    """The first boundary of `frequency` strictly after `moment`."""
    utc = moment.astimezone(UTC)
    step = {Frequency.MONTHLY: 1, Frequency.QUARTERLY: 3, Frequency.YEARLY: 12}[frequency]
    # Months counted from year 0 make "the next multiple of 3 (or 12)" plain integer arithmetic.
    month_index = utc.year * 12 + (utc.month - 1)
    next_index = (month_index // step + 1) * step
    return datetime(next_index // 12, next_index % 12 + 1, 1, tzinfo=UTC)
