"""Your logic for the 'ledger' component (sink).

This file is yours: portwright created it once and never overwrites it. When the
blueprint changes what this component needs, ``portwright regenerate`` merges the
change in and keeps your code. The base class (``order_pipeline_redis.bases``) knows the
ports and schemas; override the method below. It may also be ``async def``.
"""

from ..bases import LedgerBase
from ..schemas import ScoredOrder


class Ledger(LedgerBase):
    """What ledger does."""

    def consume(self, item: ScoredOrder) -> None:
        """Keep ``item`` (store it, call an API, ...)."""
        self.log.info("consumed", extra={"item": item})
