"""Per-port metrics: the snapshot, the Prometheus text, one registry per service."""

from __future__ import annotations

import random

import httpx
import pytest
import runtime
from prometheus_client.parser import text_string_to_metric_families

from tests.runtime.support import Gate, Numbers, Recorder, wait

pytestmark = pytest.mark.anyio


class Halve(runtime.Transformer):
    def transform(self, item: int) -> int | None:
        if item == 3:
            raise ValueError("three")
        return item // 2 if item % 2 == 0 else None


def pipeline() -> tuple[runtime.Service, Recorder]:
    service = runtime.Service("metrics")
    service.add(Numbers("numbers", 10))
    service.add(Halve("halve"))
    sink = service.add(Recorder("sink"))
    service.connect("numbers.out", "halve.in", buffer_size=4)
    service.connect("halve.out", "sink.in", buffer_size=4)
    return service, sink


async def test_the_snapshot_counts_every_port() -> None:
    service, sink = pipeline()
    await service.run()

    snapshot = service.metrics.snapshot()
    assert snapshot["numbers"]["out"] == {
        "direction": "out",
        "messages": 10,
        "dropped": 0,
        "errors": 0,
        "blocked_seconds": snapshot["numbers"]["out"]["blocked_seconds"],
    }
    halve_in = snapshot["halve"]["in"]
    assert (halve_in["messages"], halve_in["dropped"], halve_in["errors"]) == (10, 4, 1)
    assert (halve_in["queue_depth"], halve_in["utilization"]) == (0, 0.0)
    assert halve_in["age"]["count"] == 10
    assert halve_in["latency"]["count"] == 9  # the failed message has no latency
    assert halve_in["age"]["buckets"]["+Inf"] == 10
    assert snapshot["halve"]["out"]["messages"] == 5
    assert snapshot["sink"]["in"]["messages"] == len(sink.items) == 5


async def test_metrics_are_served_in_the_prometheus_text_format() -> None:
    service, _ = pipeline()
    await service.run()
    transport = httpx.ASGITransport(app=runtime.create_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}

    def value(family: str, sample: str, **labels: str) -> float:
        return next(
            s.value
            for s in families[family].samples
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
        )

    port = {"component": "halve", "port": "in"}
    assert value("portwright_messages_in", "portwright_messages_in_total", **port) == 10
    assert (
        value(
            "portwright_messages_dropped", "portwright_messages_dropped_total", **port
        )
        == 4
    )
    assert value("portwright_errors", "portwright_errors_total", **port) == 1
    assert value("portwright_queue_depth", "portwright_queue_depth", **port) == 0
    age = "portwright_message_age_seconds"
    assert families[age].type == "histogram"
    assert value(age, f"{age}_count", **port) == 10
    assert value(age, f"{age}_bucket", le="+Inf", **port) == 10
    assert (
        value(
            "portwright_messages_out",
            "portwright_messages_out_total",
            component="numbers",
            port="out",
        )
        == 10
    )
    assert "portwright_blocked_seconds" in families
    assert "portwright_processing_latency_seconds" in families
    assert "portwright_buffer_utilization" in families


async def test_queue_depth_and_utilization_come_from_the_buffers() -> None:
    service = runtime.Service("metrics")
    gate = service.add(Gate("gate"))
    inlet = service.inlet("gate.in", buffer_size=4)
    async with service.running():
        await inlet.send(0)
        await wait(gate.holding)
        for number in range(1, 4):
            inlet.send_nowait(number)
        port = service.metrics.snapshot()["gate"]["in"]
        assert (port["queue_depth"], port["utilization"]) == (3, 0.75)
        inlet.send_nowait(4)
        assert service.metrics.snapshot()["gate"]["in"]["utilization"] == 1.0
        gate.release.set()


async def test_every_service_has_a_registry_of_its_own() -> None:
    first, _ = pipeline()
    second, _ = pipeline()
    await first.run()

    assert first.metrics.registry is not second.metrics.registry
    assert b'component="halve"' in first.metrics.render()
    assert second.metrics.snapshot()["halve"]["in"]["messages"] == 0


def test_a_histogram_counts_a_value_on_a_bound_in_that_bucket() -> None:
    histogram = runtime.Histogram([0.1, 1.0])
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        histogram.observe(value)

    assert histogram.counts == [2, 2, 1]
    assert histogram.cumulative() == [("0.1", 2), ("1.0", 4), ("+Inf", 5)]
    assert histogram.as_dict() == {
        "count": 5,
        "sum": pytest.approx(8.65),
        "buckets": {"0.1": 2, "1.0": 4, "+Inf": 5},
    }


async def test_the_hot_loop_records_what_histogram_observe_would() -> None:
    # The drain loop inlines Histogram.observe; both must agree on every bucket.
    service = runtime.Service("metrics")
    sink = service.add(Recorder("sink"))
    inlet = service.inlet("sink.in")
    async with service.running():
        await inlet.send(1)
    latency = service.metrics.snapshot()["sink"]["in"]["latency"]
    reference = runtime.Histogram(runtime.metrics.LATENCY_BUCKETS)
    reference.observe(latency["sum"])

    assert sink.items == [1]
    assert latency["buckets"] == reference.as_dict()["buckets"]


@pytest.mark.parametrize("seed", range(5))
def test_a_batch_of_ages_lands_where_each_age_would(seed: int) -> None:
    # The loop records a batch's ages at once (observe_since): the same buckets
    # as one observe per age, bounds included, and the same sum.
    rng = random.Random(seed)
    bounds = runtime.metrics.AGE_BUCKETS
    for _ in range(200):
        now = rng.uniform(0, 1e7)
        count = rng.randint(0, 300)
        if rng.random() < 0.3:  # ages exactly on the bounds
            stamps = [now - rng.choice(bounds) for _ in range(count)]
        else:
            scale = 10 ** rng.uniform(-5, 2)
            stamps = [now - rng.random() * scale for _ in range(count)]
        each, batch = runtime.Histogram(bounds), runtime.Histogram(bounds)
        for stamp in stamps:
            each.observe(now - stamp)
        batch.observe_since(now, list(stamps))

        assert batch.counts == each.counts
        assert batch.sum == pytest.approx(each.sum, rel=1e-9, abs=1e-9)
