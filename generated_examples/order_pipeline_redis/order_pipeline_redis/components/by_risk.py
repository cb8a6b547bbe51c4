"""Your logic for the 'by_risk' component (router).

This file is yours: portwright created it once and never overwrites it. When the
blueprint changes what this component needs, ``portwright regenerate`` merges the
change in and keeps your code. The base class (``order_pipeline_redis.bases``) knows the
ports and schemas; override the method below. It may also be ``async def``.
"""

from ..bases import ByRiskBase, ByRiskPort
from ..schemas import ScoredOrder


class ByRisk(ByRiskBase):
    """What by_risk does."""

    def route(self, item: ScoredOrder) -> ByRiskPort | list[ByRiskPort] | None:
        """The output port(s) for ``item`` (any of ByRiskPort), or None to drop it."""
        return "high"
