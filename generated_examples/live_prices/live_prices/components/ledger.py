"""Your logic for the 'ledger' component (sink).

This file is yours: portwright created it once and never overwrites it. When the
blueprint changes what this component needs, ``portwright regenerate`` merges the
change in and keeps your code. The base class (``live_prices.bases``) knows the
ports and schemas; override the method below. It may also be ``async def``.
"""

from ..bases import LedgerBase
from ..schemas import Price


class Ledger(LedgerBase):
    """Keeps every price."""

    def consume(self, item: Price) -> None:
        """Keep ``item`` (store it, call an API, ...)."""
        self.log.info("consumed", extra={"item": item})
