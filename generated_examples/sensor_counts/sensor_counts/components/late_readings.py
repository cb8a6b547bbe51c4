"""Your logic for the 'late_readings' component (sink).

This file is yours: portwright created it once and never overwrites it. When the
blueprint changes what this component needs, ``portwright regenerate`` merges the
change in and keeps your code. The base class (``sensor_counts.bases``) knows the
ports and schemas; override the method below. It may also be ``async def``.

``self.state`` in the method is the state of the current item's key:
a dict of JSON values, empty for a new key. What you change in it (or assign) is
kept when the method returns, and dropped when it raises.
"""

from ..bases import LateReadingsBase
from ..schemas import Reading


class LateReadings(LateReadingsBase):
    """Readings too late for their minute; self.state keeps what you count per sensor."""

    def consume(self, item: Reading) -> None:
        """Keep ``item`` (store it, call an API, ...)."""
        self.log.info("consumed", extra={"item": item})
