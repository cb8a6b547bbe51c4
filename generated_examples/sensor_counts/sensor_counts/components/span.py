"""Your logic for the 'span' component (window).

This file is yours: portwright created it once and never overwrites it. When the
blueprint changes what this component needs, ``portwright regenerate`` merges the
change in and keeps your code. The base class (``sensor_counts.bases``) knows the
ports and schemas; override the methods below.
They run inline, item by item: each a plain ``def`` (never ``async def``), quick.

Your class is the window's aggregate: ``initial()`` starts a window's
accumulator, ``add(acc, item)`` takes each item in, ``result(acc)`` makes
the window's ``value``. Each window has its own accumulator; pick its type
by changing the three ``int`` annotations of the placeholder (a count).

The accumulator must be JSON data that round-trips unchanged: dicts with
str keys, lists, str, int, float, bool, None (no tuple, set, datetime or
object). The window's state is stored as JSON (over Redis, in Redis), and
``tests/test_windows.py`` checks every accumulator your code makes.
"""

from ..bases import SpanBase
from ..schemas import Reading, TemperatureSpan


class Span(SpanBase):
    """Each sensor's temperature span per minute, by an aggregate of our own."""

    def initial(self) -> int:
        """The accumulator of a window that has no item yet: JSON data (see above)."""
        return 0

    def add(self, acc: int, item: Reading) -> int:
        """The accumulator once ``item`` is in the window: a new one, or ``acc`` changed in place (each window has its own)."""
        return acc + 1

    def result(self, acc: int) -> TemperatureSpan:
        """The window's value (``value`` of SpanWindow), from its accumulator."""
        return TemperatureSpan.model_validate(
            {"low": 1.5, "high": 1.5, "mean": 1.5, "readings": 1}
        )
