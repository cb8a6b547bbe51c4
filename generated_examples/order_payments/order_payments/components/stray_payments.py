"""Your logic for the 'stray_payments' component (sink).

This file is yours: portwright created it once and never overwrites it. When the
blueprint changes what this component needs, ``portwright regenerate`` merges the
change in and keeps your code. The base class (``order_payments.bases``) knows the
ports and schemas; override the method below. It may also be ``async def``.
"""

from ..bases import StrayPaymentsBase
from ..schemas import Payment


class StrayPayments(StrayPaymentsBase):
    """What stray_payments does."""

    def consume(self, item: Payment) -> None:
        """Keep ``item`` (store it, call an API, ...)."""
        self.log.info("consumed", extra={"item": item})
