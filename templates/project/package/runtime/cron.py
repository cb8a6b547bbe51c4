"""A small cron parser: five fields, in UTC, and the next time they match.

A leaf. ``minute hour day-of-month month day-of-week``, each ``*``, a number, a
range ``a-b``, a step ``*/n`` or ``a-b/n``, or a comma list of those; day of week
0-7 (0 and 7 are Sunday). As in Vixie cron, when both day fields are restricted a
day matching either one matches. No names (``MON``, ``JAN``) and no seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["Cron", "CronError"]

# (name, lowest, highest) of each field, in order
_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
# no schedule is more than this far from a match (29 February, on a given weekday)
_HORIZON = timedelta(days=366 * 28)


class CronError(ValueError):
    """A schedule that is not five valid cron fields."""


@dataclass(frozen=True)
class Cron:
    """A parsed schedule: the values each field matches."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Monday (Python's), 6 = Sunday
    any_day: bool  # day of month was '*'
    any_weekday: bool  # day of week was '*'

    @classmethod
    def parse(cls, text: str) -> Cron:
        """Parse ``text``; raises ``CronError`` saying which field is wrong."""
        parts = text.split()
        if len(parts) != len(_FIELDS):
            raise CronError(
                f"schedule {text!r} has {len(parts)} fields, not 5 "
                "(minute hour day-of-month month day-of-week)"
            )
        values = [
            _field(part, name, low, high)
            for part, (name, low, high) in zip(parts, _FIELDS, strict=True)
        ]
        # cron counts Sunday as 0 (or 7); Python's weekday() counts Monday as 0
        weekdays = frozenset((day - 1) % 7 for day in values[4])
        minutes, hours, days, months = map(frozenset, values[:4])
        return cls(
            text,
            minutes,
            hours,
            days,
            months,
            weekdays=weekdays,
            any_day=parts[2] == "*",
            any_weekday=parts[4] == "*",
        )

    def matches_day(self, day: datetime) -> bool:
        """Whether ``day``'s date matches the day fields (and the month)."""
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = day.weekday() in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def next_after(self, wall: float) -> float:
        """The first matching minute strictly after Unix time ``wall``."""
        start = datetime.fromtimestamp(wall, UTC).replace(second=0, microsecond=0)
        moment = start + timedelta(minutes=1)
        limit = start + _HORIZON
        while moment < limit:
            if not self.matches_day(moment):
                moment = (moment + timedelta(days=1)).replace(hour=0, minute=0)
            elif moment.hour not in self.hours:
                moment = (moment + timedelta(hours=1)).replace(minute=0)
            elif moment.minute not in self.minutes:
                moment += timedelta(minutes=1)
            else:
                return moment.timestamp()
        raise CronError(f"schedule {self.text!r} never matches a date")


def _field(part: str, name: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for piece in part.split(","):
        values |= _piece(piece, name, low, high)
    return values


def _piece(piece: str, name: str, low: int, high: int) -> set[int]:
    span, _, step_text = piece.partition("/")
    step = _number(step_text, name, 1, high) if step_text else 1
    if span == "*":
        first, last = low, high
    elif "-" in span:
        first_text, _, last_text = span.partition("-")
        first = _number(first_text, name, low, high)
        last = _number(last_text, name, low, high)
        if first > last:
            raise CronError(f"{name} range {span!r} runs backwards")
    else:
        first = _number(span, name, low, high)
        last = high if step_text else first
    return set(range(first, last + 1, step))


def _number(text: str, name: str, low: int, high: int) -> int:
    if not text.isdigit():
        raise CronError(f"{name} {text!r} is not a number, '*', a range or a step")
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"{name} {value} is out of range {low}-{high}")
    return value
