"""Your logic for the 'plausible' component (filter).

This file is yours: portwright created it once and never overwrites it. When the
blueprint changes what this component needs, ``portwright regenerate`` merges the
change in and keeps your code. The base class (``sensor_alerts.bases``) knows the
ports and schemas; override the method below. It may also be ``async def``.
"""

from ..bases import PlausibleBase
from ..schemas import Reading


class Plausible(PlausibleBase):
    """Drops readings outside what the hardware can measure."""

    def keep(self, item: Reading) -> bool:
        """Whether ``item`` goes on to the next component."""
        return True
