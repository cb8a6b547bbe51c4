"""Your logic for the 'spans' component (sink).

This file is yours: portwright created it once and never overwrites it. When the
blueprint changes what this component needs, ``portwright regenerate`` merges the
change in and keeps your code. The base class (``sensor_counts.bases``) knows the
ports and schemas; override the method below. It may also be ``async def``.
"""

from ..bases import SpansBase
from ..schemas import SpanWindow


class Spans(SpansBase):
    """What spans does."""

    def consume(self, item: SpanWindow) -> None:
        """Keep ``item`` (store it, call an API, ...)."""
        self.log.info("consumed", extra={"item": item})
