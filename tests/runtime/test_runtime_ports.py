"""Connections: overflow policies, fan-in, fan-out, closing and draining order."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import runtime

from tests.runtime.support import Gate, Numbers, Recorder, wait

pytestmark = pytest.mark.anyio


async def test_block_waits_for_room_and_measures_the_wait() -> None:
    service = runtime.Service("ports")
    gate = service.add(Gate("gate"))
    inlet = service.inlet("gate.in", buffer_size=2, overflow="block")
    async with service.running():
        await inlet.send(0)
        await wait(gate.holding)
        inlet.send_nowait(1)
        inlet.send_nowait(2)
        with pytest.raises(anyio.WouldBlock):
            inlet.send_nowait(3)
        async with anyio.create_task_group() as group:
            group.start_soon(inlet.send, 3)
            await anyio.sleep(0.05)  # the blocked time being measured
            assert gate.items == []
            gate.release.set()

    assert gate.items == [0, 1, 2, 3]
    out = service.metrics.snapshot()[inlet.name]["out"]
    assert out["dropped"] == 0
    assert out["blocked_seconds"] >= 0.045


@pytest.mark.parametrize(
    ("overflow", "kept"),
    [("drop_newest", [0, 1, 2]), ("drop_oldest", [0, 8, 9])],
)
async def test_drop_policies_never_wait_and_count_each_drop(
    overflow: runtime.Overflow, kept: list[int]
) -> None:
    service = runtime.Service("ports")
    gate = service.add(Gate("gate"))
    inlet = service.inlet("gate.in", buffer_size=2, overflow=overflow)
    async with service.running():
        await inlet.send(0)
        await wait(gate.holding)
        for number in range(1, 10):
            inlet.send_nowait(number)  # never raises WouldBlock
        gate.release.set()

    assert gate.items == kept
    out = service.metrics.snapshot()[inlet.name]["out"]
    assert out["dropped"] == 7
    assert out["messages"] == 10
    assert out["blocked_seconds"] == 0.0


async def test_fan_out_gives_every_connection_every_message() -> None:
    service = runtime.Service("ports")
    service.add(Numbers("numbers", 20))
    left = service.tap("numbers.out")
    right = service.tap("numbers.out", buffer_size=3)
    await service.run()

    assert left.items == right.items == list(range(20))
    assert [e.id for e in left.envelopes] == [e.id for e in right.envelopes]
    assert service.metrics.snapshot()["numbers"]["out"]["messages"] == 20


async def test_fan_in_keeps_each_connection_bounded_by_its_own_policy() -> None:
    service = runtime.Service("ports")
    gate = service.add(Gate("gate"))
    lossless = service.inlet("gate.in", buffer_size=4, overflow="block")
    lossy = service.inlet("gate.in", buffer_size=2, overflow="drop_oldest")
    async with service.running():
        await lossless.send("first")
        await wait(gate.holding)
        for number in range(4):
            lossless.send_nowait(("block", number))
        for number in range(10):
            lossy.send_nowait(("drop", number))
        gate.release.set()

    # the lossy connection only ever dropped its own oldest messages
    assert sorted(map(str, gate.items)) == sorted(
        map(
            str,
            ["first", *[("block", n) for n in range(4)], ("drop", 8), ("drop", 9)],
        )
    )
    assert service.metrics.snapshot()[lossy.name]["out"]["dropped"] == 8
    assert service.metrics.snapshot()[lossless.name]["out"]["dropped"] == 0


async def test_closing_drains_the_pipeline_and_stops_it_in_order() -> None:
    events: list[str] = []

    class Double(runtime.Transformer):
        def transform(self, item: int) -> int:
            return item * 2

        async def cleanup(self) -> None:
            events.append(f"cleanup {self.name}")

    class Keep(Recorder):
        async def cleanup(self) -> None:
            events.append(f"cleanup {self.name} after {len(self.items)} items")

    class Count(Numbers):
        async def cleanup(self) -> None:
            events.append(f"cleanup {self.name}")

    service = runtime.Service("ports")
    service.add(Count("numbers", 100))
    service.add(Double("double"))
    keep = service.add(Keep("keep"))
    service.connect("numbers.out", "double.in", buffer_size=4)
    service.connect("double.out", "keep.in", buffer_size=4)
    report = await service.run()  # nobody calls stop(): closing alone ends it

    assert keep.items == [n * 2 for n in range(100)]
    assert events == [
        "cleanup numbers",
        "cleanup double",
        "cleanup keep after 100 items",
    ]
    assert report.completed and report.left == {}
    assert service.state is runtime.ServiceState.STOPPED


async def test_an_unconnected_output_counts_what_it_drops() -> None:
    service = runtime.Service("ports")
    service.add(Numbers("numbers", 5))
    await service.run()

    assert service.metrics.snapshot()["numbers"]["out"]["dropped"] == 5


@pytest.mark.parametrize(
    ("source", "target", "options", "message"),
    [
        ("nope.out", "keep.in", {}, "has no component 'nope'"),
        ("numbers.nope", "keep.in", {}, "has no output port 'nope'"),
        ("numbers.out", "keep.nope", {}, "has no input port 'nope'"),
        ("numbers", "keep.in", {}, "is not 'component.port'"),
        (
            "numbers.out",
            "keep.in",
            {"buffer_size": 0},
            "buffer_size must be at least 1",
        ),
        (
            "numbers.out",
            "keep.in",
            {"overflow": "spill"},
            "overflow 'spill' is not one",
        ),
        ("numbers.out", "strings.in", {}, "int is not str"),
    ],
)
def test_wiring_mistakes_are_reported_with_the_names(
    source: str, target: str, options: dict[str, Any], message: str
) -> None:
    service = runtime.Service("ports")
    service.add(Numbers("numbers", 1, outputs={"out": int}))
    service.add(Recorder("keep", inputs={"in": int}))
    service.add(Recorder("strings", inputs={"in": str}))
    with pytest.raises(runtime.WiringError, match=message):
        service.connect(source, target, **options)
