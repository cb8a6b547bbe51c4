"""Your logic for the 'poller' component (source).

This file is yours: portwright created it once and never overwrites it. When the
blueprint changes what this component needs, ``portwright regenerate`` merges the
change in and keeps your code. The base class (``sensor_alerts.bases``) knows the
ports and schemas; override the method below. It may also be ``async def``.
"""

from collections.abc import AsyncIterator

from ..bases import PollerBase
from ..schemas import Reading


class Poller(PollerBase):
    """Polls sensors that cannot push."""

    async def generate(self) -> AsyncIterator[Reading]:
        """Yield the items to send; ``await self.emit(port, item)`` picks another output."""
        items: list[Reading] = []
        for item in items:
            yield item
