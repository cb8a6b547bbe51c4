"""Durations, a scalar of the blueprint format: ``500ms``, ``30s``, ``5m``, ``1h``.

One parser for every key that takes a span of time (a timer's ``every``; windows
later), so that they all read and refuse the same spellings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Duration", "DurationError", "parse_duration"]

#: seconds per unit, as the format spells them
UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^([0-9]{1,9})(ms|s|m|h)$")
#: the longest duration the format takes: a week
MAX_SECONDS = 7 * 24 * 3600.0


class DurationError(ValueError):
    """Text that is not a duration of the format; the message says why."""


@dataclass(frozen=True)
class Duration:
    """A parsed duration: the text as written, and what it means in seconds."""

    text: str
    seconds: float

    @property
    def milliseconds(self) -> int:
        """The duration in whole milliseconds (every unit is a whole number of them)."""
        return round(self.seconds * 1000)


def parse_duration(text: object) -> Duration:
    """Parse ``500ms``, ``30s``, ``5m`` or ``1h``: a whole number and one unit.

    Raises ``DurationError`` for anything else, for zero, and for more than a week.
    """
    if not isinstance(text, str):
        raise DurationError(
            f"{text!r} is not a duration: write a whole number and a unit, "
            "e.g. '500ms', '30s', '5m' or '1h'"
        )
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise DurationError(
            f"{text!r} is not a duration: write a whole number and one unit of "
            f"{', '.join(UNITS)} (e.g. '500ms', '30s', '5m', '1h')"
        )
    number, unit = match.groups()
    seconds = int(number) * UNITS[unit]
    if seconds <= 0:
        raise DurationError(f"duration {text!r} must be more than zero")
    if seconds > MAX_SECONDS:
        raise DurationError(f"duration {text!r} is longer than a week (168h)")
    return Duration(text.strip(), seconds)
