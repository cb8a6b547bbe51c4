"""Your logic for the 'score' component (transformer).

This file is yours: portwright created it once and never overwrites it. When the
blueprint changes what this component needs, ``portwright regenerate`` merges the
change in and keeps your code. The base class (``order_pipeline_redis.bases``) knows the
ports and schemas; override the method below. It may also be ``async def``.
"""

from ..bases import ScoreBase
from ..schemas import Order, ScoredOrder


class Score(ScoreBase):
    """What score does."""

    def transform(self, item: Order) -> ScoredOrder | None:
        """Return the ScoredOrder for ``item``, or None to drop it (a list of them, or ``yield``, sends several)."""
        return self.carry_over(item)
