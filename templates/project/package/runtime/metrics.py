"""Per-port metrics: cheap in-place updates per message, Prometheus on scrape.

Components update plain ints and fixed-bucket arrays as messages pass (no locks, no
prometheus_client call per message). A custom collector folds them into Prometheus
metric families only when ``/metrics`` is scraped; ``snapshot()`` returns the same
numbers as a dict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .component import Component
from .components import Timer
from .histogram import AGE_BUCKETS, LATENCY_BUCKETS, Histogram
from .ingress import ApiEndpoint
from .joins import Join
from .keyedstate import Stateful
from .ports import InputPort
from .windows import Window

_C = TypeVar("_C")  # a kind of component (or a mixin of some, as Stateful)

__all__ = ["AGE_BUCKETS", "LATENCY_BUCKETS", "Histogram", "ServiceMetrics"]

_LABELS = ("component", "port")
_STREAM_NUMBERS = ("lag", "pending", "redeliveries", "dead_lettered")


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

    def groups(self) -> dict[str, dict[str, Any]]:
        """``{component: numbers}`` for components that batch or tick: ``batch_size``
        and ``batch_latency`` (histograms), or ``ticks`` and ``ticks_skipped``."""
        found: dict[str, dict[str, Any]] = {}
        for component in self._components():
            if component.batching is not None:
                found[component.name] = {
                    "batch_size": component.batching.sizes.as_dict(),
                    "batch_latency": component.batching.latency.as_dict(),
                }
            if isinstance(component, Timer):
                ticker = component.ticker
                found[component.name] = {
                    "ticks": ticker.ticks,
                    "ticks_skipped": ticker.skipped,
                }
            if isinstance(component, Window):
                found[component.name] = _window_numbers(component)
            if isinstance(component, Join):
                found[component.name] = _join_numbers(component)
            if isinstance(component, Stateful):
                found[component.name] = _state_numbers(component)
        return found


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
        yield from _batches_and_ticks(self._components())
        yield from _partitions(self._components())
        yield from _requests(self._components())
        yield from _windows(self._components())
        yield from _joins(self._components())
        yield from _states(self._components())


def _partitions(components: Iterable[Component]) -> Iterator[Metric]:
    """Per partition of a keyed connection read here (Redis): its owner, messages
    taken and acknowledged here, lag and pending while owned; per connection the
    skew (hottest partition's intake over the mean) and assignment changes."""
    labels = [*_LABELS, "partition"]
    taken = CounterMetricFamily(
        "portwright_partition_messages_in",
        "Entries this replica took from a partition of a keyed connection.",
        labels=labels,
    )
    done = CounterMetricFamily(
        "portwright_partition_messages_out",
        "Entries of a partition this replica acknowledged.",
        labels=labels,
    )
    lag = GaugeMetricFamily(
        "portwright_partition_lag",
        "Entries of a partition owned here not yet delivered to the group.",
        labels=labels,
    )
    pending = GaugeMetricFamily(
        "portwright_partition_pending",
        "Entries of a partition owned here delivered and not yet acknowledged.",
        labels=labels,
    )
    owner = GaugeMetricFamily(
        "portwright_partition_owner",
        "1 for the replica the assignment gives a partition (label owner).",
        labels=[*labels, "owner"],
    )
    skew = GaugeMetricFamily(
        "portwright_partition_skew",
        "The hottest partition's intake over the mean, over the last minute.",
        labels=list(_LABELS),
    )
    changes = CounterMetricFamily(
        "portwright_partition_assignment_changes",
        "Times the partitions' assignment over the live replicas changed.",
        labels=list(_LABELS),
    )
    for component in components:
        for port in component.inputs.values():
            for stats in _partition_stats(port):
                keys = [component.name, port.name]
                skew.add_metric(keys, stats["skew"])
                changes.add_metric(keys, stats["assignment_changes"])
                for part in stats["partitions"]:
                    row = [*keys, str(part["partition"])]
                    taken.add_metric(row, part["messages_in"])
                    done.add_metric(row, part["messages_out"])
                    if part["owner"]:
                        owner.add_metric([*row, part["owner"]], 1)
                    if part["lag"] is not None:
                        lag.add_metric(row, part["lag"])
                        pending.add_metric(row, part["pending"])
    yield from (taken, done, lag, pending, owner, skew, changes)


def _partition_stats(port: InputPort) -> list[dict[str, Any]]:
    """The partition numbers of the port's keyed connections read here."""
    found = []
    for connection in port.connections:
        stats = getattr(connection, "partition_stats", None)
        if stats is not None and (numbers := stats()) is not None:
            found.append(numbers)
    return found


def _batches_and_ticks(components: Iterable[Component]) -> Iterator[Metric]:
    """Per component: its batch sizes and batch latency, or its ticks run and skipped."""
    sizes = HistogramMetricFamily(
        "portwright_batch_size",
        "Items per batch handed to a batching component's user method.",
        labels=["component"],
    )
    latency = HistogramMetricFamily(
        "portwright_batch_latency_seconds",
        "Time a batching component's user method spent on one batch.",
        labels=["component"],
    )
    ticks = CounterMetricFamily(
        "portwright_ticks", "Ticks a timer source ran.", labels=["component"]
    )
    skipped = CounterMetricFamily(
        "portwright_ticks_skipped",
        "Ticks a timer source skipped because the one before ran past them.",
        labels=["component"],
    )
    for component in components:
        batching = component.batching
        if batching is not None:
            labels = [component.name]
            sizes.add_metric(labels, batching.sizes.cumulative(), batching.sizes.sum)
            latency.add_metric(
                labels, batching.latency.cumulative(), batching.latency.sum
            )
        if isinstance(component, Timer):
            ticks.add_metric([component.name], component.ticker.ticks)
            skipped.add_metric([component.name], component.ticker.skipped)
    yield from (sizes, latency, ticks, skipped)


def _requests(components: Iterable[Component]) -> Iterator[Metric]:
    """Per api_endpoint: requests answered by status, and how long answering took
    (the availability and latency SLIs of docs/operations.md)."""
    answered = CounterMetricFamily(
        "portwright_http_responses",
        "Requests an api_endpoint answered, by HTTP status.",
        labels=["component", "code"],
    )
    duration = HistogramMetricFamily(
        "portwright_http_request_duration_seconds",
        "Time an api_endpoint took to answer a request.",
        labels=["component"],
    )
    for component in components:
        if isinstance(component, ApiEndpoint):
            for status, count in sorted(component.responses.items()):
                answered.add_metric([component.name, str(status)], count)
            stats = component.duration
            duration.add_metric([component.name], stats.cumulative(), stats.sum)
    yield from (answered, duration)


def _window_numbers(window: Window) -> dict[str, float]:
    """A window component's numbers, as ``groups()`` and ``/metrics`` show them."""
    return {
        "open_windows": window.open_windows,
        "windows_closed": window.closed,
        "windows_evicted": window.evicted,
        "late_items": window.late_items,
        "watermark_lag_seconds": window.watermark_lag(),
    }


#: a per-component metric family: the number it shows (a key of what the kind's
#: ``_*_numbers`` gives), gauge or counter, its name and its help
_Family = tuple[str, type[GaugeMetricFamily] | type[CounterMetricFamily], str, str]


def _per_component(
    components: Iterable[Component],
    kind: type[_C],
    numbers: Callable[[_C], dict[str, float]],
    table: tuple[_Family, ...],
) -> Iterator[Metric]:
    """A family per row of ``table``, labelled by component: each component of
    ``kind`` adds its number to each."""
    families = {
        key: family(name, text, labels=["component"])
        for key, family, name, text in table
    }
    for component in components:
        if isinstance(component, kind):
            for key, value in numbers(component).items():
                families[key].add_metric([component.name], value)
    yield from families.values()


_WINDOW_FAMILIES: tuple[_Family, ...] = (
    ("open_windows", GaugeMetricFamily, "portwright_window_open", "Windows open now."),
    (
        "windows_closed",
        CounterMetricFamily,
        "portwright_window_closed",
        "Windows closed (by the watermark, idleness, the cap or a drain).",
    ),
    (
        "windows_evicted",
        CounterMetricFamily,
        "portwright_window_evicted",
        "Windows closed early because max_open windows were open.",
    ),
    (
        "late_items",
        CounterMetricFamily,
        "portwright_window_late_items",
        "Items that came after every window they belong to had closed.",
    ),
    (
        "watermark_lag_seconds",
        GaugeMetricFamily,
        "portwright_window_watermark_lag_seconds",
        "The clock's wall time minus the window's watermark.",
    ),
)


def _windows(components: Iterable[Component]) -> Iterator[Metric]:
    """Per window component: windows open, closed and closed early at the cap,
    late items, and how far its watermark is behind the clock."""
    return _per_component(components, Window, _window_numbers, _WINDOW_FAMILIES)


def _join_numbers(join: Join) -> dict[str, float]:
    """A join component's numbers, as ``groups()`` and ``/metrics`` show them."""
    return {
        "buffered_items": join.buffered,
        "matched_pairs": join.matched_pairs,
        "unmatched_items": join.unmatched_items,
        "late_items": join.late_items,
        "evicted_items": join.evicted,
        "watermark_lag_seconds": join.watermark_lag(),
    }


_JOIN_FAMILIES: tuple[_Family, ...] = (
    (
        "buffered_items",
        GaugeMetricFamily,
        "portwright_join_buffered",
        "Items held for a partner now (both sides).",
    ),
    (
        "matched_pairs",
        CounterMetricFamily,
        "portwright_join_matched_pairs",
        "Pairs of the same key within the join's interval (match called).",
    ),
    (
        "unmatched_items",
        CounterMetricFamily,
        "portwright_join_unmatched_items",
        "Items dropped without a partner (expired, late, evicted or drained).",
    ),
    (
        "late_items",
        CounterMetricFamily,
        "portwright_join_late_items",
        "Items that came behind the watermark minus the grace (not joined).",
    ),
    (
        "evicted_items",
        CounterMetricFamily,
        "portwright_join_evicted",
        "Items dropped early because max_buffered items were held.",
    ),
    (
        "watermark_lag_seconds",
        GaugeMetricFamily,
        "portwright_join_watermark_lag_seconds",
        "The clock's wall time minus the join's watermark.",
    ),
)


def _joins(components: Iterable[Component]) -> Iterator[Metric]:
    """Per join component: items held, pairs made, items dropped unmatched, late
    and early at the cap, and how far its watermark is behind the clock."""
    return _per_component(components, Join, _join_numbers, _JOIN_FAMILIES)


def _stream_stats(port: InputPort) -> list[dict[str, Any]]:
    """The stream numbers of the port's connections that are read here (a
    transport between processes reports them)."""
    return [
        stats
        for connection in port.connections
        if (stats := connection.stream_stats()) is not None
    ]


def _counter(name: str, documentation: str) -> CounterMetricFamily:
    return CounterMetricFamily(f"portwright_{name}", documentation, labels=_LABELS)


def _gauge(name: str, documentation: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"portwright_{name}", documentation, labels=_LABELS)


def _histogram(name: str, documentation: str) -> HistogramMetricFamily:
    return HistogramMetricFamily(f"portwright_{name}", documentation, labels=_LABELS)


def _state_numbers(component: Stateful[Any]) -> dict[str, float]:
    """A stateful component's numbers (``keyedstate.py``)."""
    return {
        "state_keys": len(component.states),
        "state_evicted_keys": component.states.evicted,
    }


_STATE_FAMILIES: tuple[_Family, ...] = (
    (
        "state_keys",
        GaugeMetricFamily,
        "portwright_state_keys",
        "Keys holding state now.",
    ),
    (
        "state_evicted_keys",
        CounterMetricFamily,
        "portwright_state_evicted_keys",
        "Keys whose state was dropped because max_keys keys held state.",
    ),
)


def _states(components: Iterable[Component]) -> Iterator[Metric]:
    """Per stateful component: keys holding state, keys dropped at the cap."""
    return _per_component(components, Stateful, _state_numbers, _STATE_FAMILIES)
