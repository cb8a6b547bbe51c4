"""Per-port metrics: cheap in-place updates per message, Prometheus on scrape.

Components update plain ints and fixed-bucket arrays as messages pass (no locks, no
prometheus_client call per message). A custom collector folds them into Prometheus
metric families only when ``/metrics`` is scraped; ``snapshot()`` returns the same
numbers as a dict.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, repeat
from math import fsum
from operator import neg
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .component import Component
    from .ports import InputPort

__all__ = ["AGE_BUCKETS", "LATENCY_BUCKETS", "Histogram", "ServiceMetrics"]

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

_LABELS = ("component", "port")
_STREAM_NUMBERS = ("lag", "pending", "redeliveries", "dead_lettered")


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
            pairs.append((_le(bound), total))
        return pairs

    def as_dict(self) -> dict[str, Any]:
        """Count, sum and cumulative buckets, for snapshots and logs."""
        return {
            "count": self.count,
            "sum": self.sum,
            "buckets": dict(self.cumulative()),
        }


class ServiceMetrics:
    """The metrics of one service, in a registry of its own (never the global one)."""

    def __init__(self, components: Callable[[], Iterable[Component]]) -> None:
        self._components = components
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_PortCollector(components))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{component: {port: {metric: value}}}`` with the numbers ``/metrics`` shows.

        Input ports report ``messages`` (received), ``dropped``, ``errors``,
        ``queue_depth``, ``utilization``, ``age`` and ``latency``; output ports report
        ``messages`` (sent), ``dropped``, ``errors`` and ``blocked_seconds``. An input
        port fed over Redis also reports ``lag``, ``pending``, ``redeliveries`` and
        ``dead_lettered``, summed over its streams.
        """
        snapshot: dict[str, dict[str, dict[str, Any]]] = {}
        for component in self._components():
            ports: dict[str, dict[str, Any]] = {}
            for port in component.inputs.values():
                ports[port.name] = {
                    "direction": "in",
                    "messages": port.age.count,
                    "dropped": port.dropped,
                    "errors": port.errors,
                    "queue_depth": port.depth(),
                    "utilization": port.utilization(),
                    "age": port.age.as_dict(),
                    "latency": port.latency.as_dict(),
                }
                streams = _stream_stats(port)
                if streams:
                    ports[port.name].update(
                        {
                            key: sum(stats[key] for stats in streams)
                            for key in _STREAM_NUMBERS
                        }
                    )
            for out in component.outputs.values():
                ports[out.name] = {
                    "direction": "out",
                    "messages": out.sent,
                    "dropped": out.dropped,
                    "errors": out.errors,
                    "blocked_seconds": out.blocked_seconds,
                }
            snapshot[component.name] = ports
        return snapshot


class _PortCollector(Collector):
    """Reads every port's counters when the registry is scraped."""

    def __init__(self, components: Callable[[], Iterable[Component]]) -> None:
        self._components = components

    def collect(self) -> Iterator[Metric]:
        received = _counter("messages_in", "Messages taken from an input port.")
        sent = _counter("messages_out", "Messages emitted on an output port.")
        dropped = _counter(
            "messages_dropped",
            "Messages dropped: by overflow policy (output ports) or by user code "
            "returning None/False (input ports).",
        )
        errors = _counter("errors", "Failures in user code or delivery, per port.")
        blocked = _counter(
            "blocked_seconds", "Time spent waiting for room in a full buffer."
        )
        depth = _gauge("queue_depth", "Messages waiting in an input port's buffers.")
        utilization = _gauge(
            "buffer_utilization", "Fullest incoming buffer of a port, 0..1."
        )
        running = GaugeMetricFamily(
            "portwright_component_running",
            "1 while the component is running.",
            labels=["component"],
        )
        age = _histogram("message_age_seconds", "Enqueue-to-dequeue time of messages.")
        latency = _histogram(
            "processing_latency_seconds", "Time user code spent on one message."
        )
        labels = [*_LABELS, "stream"]
        lag = GaugeMetricFamily(
            "portwright_stream_lag",
            "Entries of a Redis stream not yet delivered to the input port's group.",
            labels=labels,
        )
        pending = GaugeMetricFamily(
            "portwright_stream_pending",
            "Entries delivered to the input port's group and not yet acknowledged.",
            labels=labels,
        )
        redeliveries = CounterMetricFamily(
            "portwright_redeliveries",
            "Entries this replica claimed and delivered again.",
            labels=labels,
        )
        dead = CounterMetricFamily(
            "portwright_dead_lettered",
            "Entries this replica moved to the dead-letter stream.",
            labels=labels,
        )
        for component in self._components():
            running.add_metric([component.name], float(component.is_running))
            for port in component.inputs.values():
                labels = [component.name, port.name]
                received.add_metric(labels, port.age.count)
                dropped.add_metric(labels, port.dropped)
                errors.add_metric(labels, port.errors)
                depth.add_metric(labels, port.depth())
                utilization.add_metric(labels, port.utilization())
                age.add_metric(labels, port.age.cumulative(), port.age.sum)
                latency.add_metric(labels, port.latency.cumulative(), port.latency.sum)
                for stats in _stream_stats(port):
                    stream_labels = [*labels, stats["stream"]]
                    lag.add_metric(stream_labels, stats["lag"])
                    pending.add_metric(stream_labels, stats["pending"])
                    redeliveries.add_metric(stream_labels, stats["redeliveries"])
                    dead.add_metric(stream_labels, stats["dead_lettered"])
            for out in component.outputs.values():
                labels = [component.name, out.name]
                sent.add_metric(labels, out.sent)
                dropped.add_metric(labels, out.dropped)
                errors.add_metric(labels, out.errors)
                blocked.add_metric(labels, out.blocked_seconds)
        yield from (received, sent, dropped, errors, blocked, depth, utilization)
        yield from (running, age, latency, lag, pending, redeliveries, dead)


def _stream_stats(port: InputPort) -> list[dict[str, Any]]:
    """The Redis numbers of the port's connections that are read here."""
    return [
        stats
        for connection in port.connections
        if (stats := connection.stream_stats()) is not None
    ]


def _le(bound: float) -> str:
    """A bucket bound as Prometheus writes it: ``0.005``, ``1.0``, ``+Inf``."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _counter(name: str, documentation: str) -> CounterMetricFamily:
    return CounterMetricFamily(f"portwright_{name}", documentation, labels=_LABELS)


def _gauge(name: str, documentation: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"portwright_{name}", documentation, labels=_LABELS)


def _histogram(name: str, documentation: str) -> HistogramMetricFamily:
    return HistogramMetricFamily(f"portwright_{name}", documentation, labels=_LABELS)
