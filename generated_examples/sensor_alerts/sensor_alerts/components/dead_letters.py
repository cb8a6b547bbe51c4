"""Your logic for the 'dead_letters' component (sink).

This file is yours: portwright created it once and never overwrites it. When the
blueprint changes what this component needs, ``portwright regenerate`` merges the
change in and keeps your code. The base class (``sensor_alerts.bases``) knows the
ports and schemas; override the method below. It may also be ``async def``.
"""

from ..bases import DeadLettersBase
from ..schemas import ErrorRecord


class DeadLetters(DeadLettersBase):
    """What dead_letters does."""

    def consume(self, item: ErrorRecord) -> None:
        """Keep ``item`` (store it, call an API, ...)."""
        self.log.info("consumed", extra={"item": item})
