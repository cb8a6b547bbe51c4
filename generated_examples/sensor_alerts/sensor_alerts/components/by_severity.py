"""Your logic for the 'by_severity' component (router).

This file is yours: portwright created it once and never overwrites it. When the
blueprint changes what this component needs, ``portwright regenerate`` merges the
change in and keeps your code. The base class (``sensor_alerts.bases``) knows the
ports and schemas; override the method below. It may also be ``async def``.
"""

from ..bases import BySeverityBase, BySeverityPort
from ..schemas import Alert


class BySeverity(BySeverityBase):
    """What by_severity does."""

    def route(self, item: Alert) -> BySeverityPort | list[BySeverityPort] | None:
        """The output port(s) for ``item`` (any of BySeverityPort), or None to drop it."""
        return "critical"
