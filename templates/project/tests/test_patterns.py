"""The runtime's core guarantees, checked in every emitted project.

``rt`` is the runtime package (``runtime`` in portwright's repository,
``<service>.runtime`` in an emitted project), provided by conftest.py.
"""

from __future__ import annotations

import itertools
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest
from pydantic import BaseModel


@pytest.fixture
def anyio_backend() -> str:
    """Run the async tests on asyncio, the loop uvicorn serves on."""
    return "asyncio"


class Order(BaseModel):
    """A minimal ingress schema."""

    order_id: str


@pytest.mark.anyio
async def test_transformer_drop(rt: ModuleType) -> None:
    """Items a transformer maps to None are dropped, and counted."""

    class KeepEven(rt.Transformer):
        def transform(self, item: int) -> int | None:
            return None if item % 2 else item

    service = rt.Service("patterns")
    service.add(KeepEven("keep_even"))
    inlet = service.inlet("keep_even.in")
    tap = service.tap("keep_even.out")
    async with service.running():
        for item in range(10):
            await inlet.send(item)

    assert tap.items == [0, 2, 4, 6, 8]
    assert service.metrics.snapshot()["keep_even"]["in"]["dropped"] == 5


@pytest.mark.anyio
async def test_ingress_timeout_503(rt: ModuleType) -> None:
    """A full output and a 1 ms timeout answer 503 with Retry-After: 1."""
    consuming = anyio.Event()
    release = anyio.Event()

    class Stuck(rt.Sink):
        async def consume(self, item: Order) -> None:
            consuming.set()
            await release.wait()

    service = rt.Service("patterns")
    service.add(rt.ApiEndpoint("orders", route="/orders", schema=Order, timeout_ms=1))
    service.add(Stuck("stuck", inputs={"in": Order}))
    service.connect("orders.out", "stuck.in", buffer_size=1)
    app = rt.create_app(service)
    transport = httpx.ASGITransport(app=app)
    async with (
        service.running(),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        taken = await client.post("/orders", json={"order_id": "1"})
        with anyio.fail_after(5):
            await consuming.wait()
        buffered = await client.post("/orders", json={"order_id": "2"})
        refused = await client.post("/orders", json={"order_id": "3"})
        release.set()

    assert (taken.status_code, buffered.status_code) == (202, 202)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert "detail" in refused.json()


@pytest.mark.anyio
async def test_message_age(rt: ModuleType) -> None:
    """A message that waits 100 ms in a buffer is recorded as about 100 ms old."""
    first_taken = anyio.Event()
    release = anyio.Event()

    class Slow(rt.Sink):
        async def consume(self, item: str) -> None:
            if item == "first":
                first_taken.set()
                await release.wait()

    service = rt.Service("patterns")
    service.add(Slow("slow"))
    inlet = service.inlet("slow.in")
    async with service.running():
        await inlet.send("first")
        with anyio.fail_after(5):
            await first_taken.wait()
        await inlet.send("second")  # waits in the buffer behind "first"
        await anyio.sleep(0.1)
        release.set()

    age = service.metrics.snapshot()["slow"]["in"]["age"]
    assert age["count"] == 2
    # "first" was taken at once; "second" waited at least the 100 ms, plus what a
    # busy machine adds before the sink gets to run again.
    assert age["buckets"]["0.05"] == 1
    assert age["buckets"]["0.1"] == 1
    assert 0.099 <= age["sum"] < 0.1 + 0.4


@pytest.mark.anyio
async def test_sink_concurrent_draining(rt: ModuleType) -> None:
    """Two busy inputs of one sink are drained at the same time."""
    b_consumed = anyio.Event()
    consumed: list[tuple[str, int]] = []

    class Both(rt.Sink):
        async def consume(self, item: tuple[str, int]) -> None:
            if item == ("a", 0):
                # Only returns if input b is drained while input a is busy.
                with anyio.fail_after(5):
                    await b_consumed.wait()
            if item[0] == "b":
                b_consumed.set()
            consumed.append(item)

    service = rt.Service("patterns")
    service.add(Both("both", inputs={"a": tuple, "b": tuple}))
    a = service.inlet("both.a", buffer_size=50)
    b = service.inlet("both.b", buffer_size=50)
    async with service.running():
        for number in range(50):
            a.send_nowait(("a", number))
            b.send_nowait(("b", number))

    assert service.metrics.snapshot()["both"]["a"]["errors"] == 0
    assert sorted(consumed) == sorted(
        [("a", n) for n in range(50)] + [("b", n) for n in range(50)]
    )
    assert consumed.index(("b", 0)) < consumed.index(("a", 0))


@pytest.mark.anyio
async def test_merger_fairness(rt: ModuleType) -> None:
    """A burst on one input does not hold a slow input back by more than burst_limit."""
    burst_limit = 8
    service = rt.Service("patterns")
    service.add(
        rt.Merger("merge", inputs={"fast": Any, "slow": Any}, burst_limit=burst_limit)
    )
    fast = service.inlet("merge.fast", buffer_size=100)
    slow = service.inlet("merge.slow", buffer_size=10)
    tap = service.tap("merge.out", buffer_size=200)
    async with service.running():
        for number in range(100):
            fast.send_nowait(("fast", number))
        for number in range(10):
            slow.send_nowait(("slow", number))

    merged = tap.items
    assert sorted(merged) == sorted(
        [("fast", n) for n in range(100)] + [("slow", n) for n in range(10)]
    )
    slow_positions = [i for i, (source, _) in enumerate(merged) if source == "slow"]
    # fast items ahead of the first slow item, then between consecutive slow items
    waits = [slow_positions[0]] + [
        later - earlier - 1 for earlier, later in itertools.pairwise(slow_positions)
    ]
    assert max(waits) <= burst_limit
    assert [n for source, n in merged if source == "slow"] == list(range(10))
