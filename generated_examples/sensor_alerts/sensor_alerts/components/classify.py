"""Your logic for the 'classify' component (transformer).

This file is yours: portwright created it once and never overwrites it. When the
blueprint changes what this component needs, ``portwright regenerate`` merges the
change in and keeps your code. The base class (``sensor_alerts.bases``) knows the
ports and schemas; override the method below. It may also be ``async def``.
"""

from ..bases import ClassifyBase
from ..schemas import Alert, Reading


class Classify(ClassifyBase):
    """What classify does."""

    def transform(self, item: Reading) -> Alert | None:
        """Return the Alert for ``item``, or None to drop it (a list of them, or ``yield``, sends several)."""
        return self.carry_over(item)
