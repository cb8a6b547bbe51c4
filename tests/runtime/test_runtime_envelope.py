"""Message ids (UUID v7), correlation and causation across hops."""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
import runtime

pytestmark = pytest.mark.anyio


def test_uuid7_has_the_version_the_variant_and_the_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from runtime import envelope

    # the clock is injected: ids carry the Unix milliseconds of the monotonic reading
    # (plus the wall offset taken at import), so the test asserts that mapping, not
    # a race against the wall clock; readings repeat so ids share milliseconds
    readings = [1000.0 + (n // 3) / 1000 for n in range(999)]
    clock = iter(readings)
    monkeypatch.setattr(
        envelope, "time", SimpleNamespace(monotonic=lambda: next(clock))
    )
    ids = [runtime.uuid7() for _ in readings]

    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert [i.int >> 80 for i in ids] == [
        int(m * 1000.0 + envelope._WALL_OFFSET_MS) for m in readings
    ]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_the_wall_offset_maps_monotonic_readings_to_unix_time() -> None:
    from runtime import envelope

    now = 5000.25
    assert envelope.wall_time(now) == now + envelope._WALL_OFFSET_MS / 1000.0
    assert envelope.monotonic_time(envelope.wall_time(now)) == pytest.approx(now)


def test_an_envelope_keeps_its_ids_and_passes_on_the_correlation() -> None:
    root = runtime.Envelope.start("order", time.monotonic())
    child = root.derive("scored", time.monotonic())
    grandchild = child.derive("stored", time.monotonic())

    assert root.id == root.id  # stable, though computed on demand
    assert uuid.UUID(root.id).version == 7
    assert len({root.id, child.id, grandchild.id}) == 3
    assert (
        root.correlation_id
        == child.correlation_id
        == grandchild.correlation_id
        == root.id
    )
    assert (root.causation_id, child.causation_id, grandchild.causation_id) == (
        None,
        root.id,
        child.id,
    )
    external = runtime.Envelope.start("order", time.monotonic(), "req-1")
    assert external.derive("x", time.monotonic()).correlation_id == "req-1"


async def test_tracing_survives_every_hop() -> None:
    class Score(runtime.Transformer):
        def transform(self, item: int) -> int:
            return item * 10

    class Everywhere(runtime.Router):
        def route(self, item: int) -> list[str]:
            return ["a", "b"]

    service = runtime.Service("trace")
    service.add(Score("score"))
    service.add(Everywhere("split", outputs={"a": Any, "b": Any}))
    service.add(runtime.Merger("merge", inputs={"a": Any, "b": Any}))
    service.connect("score.out", "split.in")
    service.connect("split.a", "merge.a")
    service.connect("split.b", "merge.b")
    inlet = service.inlet("score.in")
    tap = service.tap("merge.out")
    async with service.running():
        sent = await inlet.send(4, correlation_id="checkout-1")

    first, second = tap.envelopes
    assert first.item == second.item == 40
    # the router and merger forward the transformer's message unchanged
    assert first.id == second.id
    assert first.causation_id == sent.id
    assert first.correlation_id == "checkout-1"


def test_new_envelope_builds_the_same_envelope_as_its_fields_say() -> None:
    from runtime.envelope import new_envelope

    parent = runtime.Envelope.start("order", 1.0, "corr-1")
    fields = ("scored", 7, 2.0, "corr-1", parent)

    envelope = new_envelope(runtime.Envelope, fields)

    assert type(envelope) is runtime.Envelope
    assert envelope == runtime.Envelope(*fields)
    assert envelope.item == "scored" and envelope.causation_id == parent.id
