"""Your logic for the 'paid' component (join).

This file is yours: portwright created it once and never overwrites it. When the
blueprint changes what this component needs, ``portwright regenerate`` merges the
change in and keeps your code. The base class (``order_payments.bases``) knows the
ports and schemas; override the method below. It may also be ``async def``.
"""

from ..bases import PaidBase
from ..schemas import Order, PaidOrder, Payment


class Paid(PaidBase):
    """Each order with each payment for it within five minutes."""

    def match(self, left: Order, right: Payment) -> PaidOrder | None:
        """Return the PaidOrder for ``left`` and ``right`` (the same key, times at most ``within`` apart), or None to drop the pair."""
        return self.combine(left, right, PaidOrder)
