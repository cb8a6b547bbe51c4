"""A fixed-bucket histogram updated in place, and the runtime's bucket bounds.

A leaf: ports and components update it per message; ``metrics`` reads it on scrape.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from itertools import chain, repeat
from math import fsum
from operator import neg
from typing import Any

__all__ = ["AGE_BUCKETS", "LATENCY_BUCKETS", "Histogram", "prometheus_bound"]

#: Upper bounds (seconds) for message age: from sub-millisecond hops to a minute.
AGE_BUCKETS = (
    0.0001,
    0.0005,
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
#: Upper bounds (seconds) for the time user code spends on one item.
LATENCY_BUCKETS = (
    0.00001,
    0.00005,
    0.0001,
    0.0005,
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class Histogram:
    """A fixed-bucket histogram updated in place (``counts[i] += 1``).

    ``counts[i]`` holds the observations in ``(bounds[i-1], bounds[i]]``; the last
    slot holds those above every bound. Hot loops inline ``observe``.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(sorted(bounds))
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Record one observation."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def observe_since(self, now: float, stamps: list[float]) -> None:
        """Record ``now - stamp`` for every stamp, as ``observe`` would (sorts them).

        For a batch of messages' ages: the ages are split at the bounds they
        straddle, so the work grows with the buckets they cover, not with each
        message (one bucket, the common case: one ``+=``).
        """
        count = len(stamps)
        if count < 4:
            for stamp in stamps:
                self.observe(now - stamp)
            return
        bounds, counts = self.bounds, self.counts
        stamps.sort()
        # The newest stamp is the youngest age: ages fall along the sorted stamps.
        low = bisect_left(bounds, now - stamps[-1])
        high = bisect_left(bounds, now - stamps[0])
        if low == high:
            counts[low] += count
        else:
            # older[k]: how many ages are over bounds[k]. ``stamp - now < -bound``
            # is exactly ``now - stamp > bound`` (IEEE negation is exact).
            def since(stamp: float) -> float:
                return stamp - now

            above = count
            for index in range(low, high):
                older = bisect_left(stamps, -bounds[index], key=since)
                counts[index] += above - older
                above = older
            counts[high] += above
        # Correctly rounded: the same as adding each age, without its rounding.
        self.sum += fsum(chain(repeat(now, count), map(neg, stamps)))

    @property
    def count(self) -> int:
        """The number of observations."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, cumulative count)`` pairs in Prometheus order, ending with +Inf."""
        total = 0
        pairs = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            pairs.append((prometheus_bound(bound), total))
        return pairs

    def as_dict(self) -> dict[str, Any]:
        """Count, sum and cumulative buckets, for snapshots and logs."""
        return {
            "count": self.count,
            "sum": self.sum,
            "buckets": dict(self.cumulative()),
        }


def prometheus_bound(bound: float) -> str:
    """A bucket bound as Prometheus writes it: ``0.005``, ``1.0``, ``+Inf``."""
    return "+Inf" if bound == float("inf") else repr(float(bound))
