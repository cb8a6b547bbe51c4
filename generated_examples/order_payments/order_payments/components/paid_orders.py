"""Your logic for the 'paid_orders' component (sink).

This file is yours: portwright created it once and never overwrites it. When the
blueprint changes what this component needs, ``portwright regenerate`` merges the
change in and keeps your code. The base class (``order_payments.bases``) knows the
ports and schemas; override the method below. It may also be ``async def``.
"""

from ..bases import PaidOrdersBase
from ..schemas import PaidOrder


class PaidOrders(PaidOrdersBase):
    """What paid_orders does."""

    def consume(self, item: PaidOrder) -> None:
        """Keep ``item`` (store it, call an API, ...)."""
        self.log.info("consumed", extra={"item": item})
