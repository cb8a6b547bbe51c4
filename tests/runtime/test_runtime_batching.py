"""Batches: a sink or transformer whose method takes a list of items at once.

Batch waits are timed by a ``ManualClock`` that only the test moves, so "flushed
by time" is asserted exactly, never by sleeping on a shared machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
import redis
import runtime
from runtime.batching import Batching
from runtime.redis.connection import ACK_DELAY_S

from tests.redisenv import redis_url
from tests.runtime.support import Numbers, redis_settings

pytestmark = pytest.mark.anyio


class Batches(runtime.Sink):
    """Keeps each batch it is given, as a list."""

    def __init__(self, name: str = "sink", **options: Any) -> None:
        super().__init__(name, **options)
        self.batches: list[list[Any]] = []

    def consume(self, item: Any) -> None:
        self.batches.append(list(item))


class Pairs(runtime.Transformer):
    """Batched: returns each item times ten, or nothing for a batch holding 0."""

    def transform(self, item: Any) -> Any:
        return [] if 0 in item else [number * 10 for number in item]


async def until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait (yielding to the service) until ``check()`` holds; fail, never hang."""
    with anyio.fail_after(seconds):
        while not check():
            await anyio.sleep(0.001)


async def settle() -> None:
    """Let every ready task run a few turns."""
    for _ in range(50):
        await anyio.sleep(0)


def batched_sink(
    max_items: int, max_wait_s: float, clock: runtime.ManualClock
) -> Batches:
    sink = Batches(batch=runtime.Batch(max_items, max_wait_s))
    assert sink.batching is not None
    sink.batching.clock = clock
    return sink


async def test_a_batch_is_handed_over_once_it_holds_max_items() -> None:
    clock = runtime.ManualClock()
    service = runtime.Service("batching")
    sink = service.add(batched_sink(3, 10.0, clock))
    inlet = service.inlet("sink.in")
    async with service.running():
        for number in range(7):
            await inlet.send(number)
        await until(lambda: len(sink.batches) == 2)
        await settle()
        assert sink.batches == [[0, 1, 2], [3, 4, 5]]  # 6 waits: time has not moved
        clock.advance(10.0)
        await until(lambda: len(sink.batches) == 3)
    assert sink.batches == [[0, 1, 2], [3, 4, 5], [6]]


async def test_a_batch_is_handed_over_max_wait_after_its_first_item() -> None:
    clock = runtime.ManualClock()
    service = runtime.Service("batching")
    sink = service.add(batched_sink(100, 0.5, clock))
    inlet = service.inlet("sink.in")
    async with service.running():
        await inlet.send("a")
        await inlet.send("b")
        await until(lambda: clock.waiting == 1)  # the batch's wait has begun
        clock.advance(0.4)
        await settle()
        assert sink.batches == []
        clock.advance(0.1)
        await until(lambda: sink.batches == [["a", "b"]])
        await inlet.send("c")  # a new batch, with a new wait from its first item
        await until(lambda: clock.waiting == 1)
        clock.advance(0.49)
        await settle()
        assert sink.batches == [["a", "b"]]
        clock.advance(0.01)
        await until(lambda: len(sink.batches) == 2)
    assert sink.batches == [["a", "b"], ["c"]]


async def test_the_end_of_the_input_hands_over_what_the_batch_holds() -> None:
    service = runtime.Service("batching")
    service.add(Numbers("numbers", 8))
    sink = service.add(batched_sink(3, 3600.0, runtime.ManualClock()))
    service.connect("numbers.out", "sink.in")
    await service.run()
    assert [n for batch in sink.batches for n in batch] == list(range(8))
    assert all(1 <= len(batch) <= 3 for batch in sink.batches)


async def test_without_a_wait_a_batch_is_what_is_buffered() -> None:
    service = runtime.Service("batching")
    service.add(Numbers("numbers", 10))
    # a clock nobody moves: the run would never end if a batch waited on it
    sink = service.add(batched_sink(4, 0.0, runtime.ManualClock()))
    service.connect("numbers.out", "sink.in")
    with anyio.fail_after(10):
        await service.run()
    assert [n for batch in sink.batches for n in batch] == list(range(10))
    assert max(map(len, sink.batches)) == 4


async def test_batch_sizes_and_latency_are_metrics_of_the_component() -> None:
    service = runtime.Service("batching")
    service.add(Numbers("numbers", 10))
    service.add(batched_sink(4, 3600.0, runtime.ManualClock()))
    service.connect("numbers.out", "sink.in")
    await service.run()
    numbers = service.metrics.groups()["sink"]
    assert numbers["batch_size"]["sum"] == 10
    assert numbers["batch_size"]["count"] == numbers["batch_latency"]["count"] >= 3
    assert service.metrics.snapshot()["sink"]["in"]["messages"] == 10
    text = service.metrics.render().decode()
    count = numbers["batch_size"]["count"]
    assert f'portwright_batch_size_count{{component="sink"}} {count}.0' in text
    assert f'portwright_batch_latency_seconds_count{{component="sink"}} {count}.0' in (
        text
    )


class Failing(runtime.Sink):
    def consume(self, item: Any) -> None:
        raise ValueError(f"cannot keep {len(item)} items")


async def test_a_failed_batch_reports_each_of_its_messages() -> None:
    service = runtime.Service("batching")
    service.add(
        Failing(
            "sink",
            outputs={"errors": runtime.ErrorRecord},
            batch=runtime.Batch(3, 3600.0),
        )
    )
    errors = service.tap("sink.errors")
    inlet = service.inlet("sink.in")
    async with service.running():
        for number in range(3):
            await inlet.send(number)
        await errors.wait_for(3)
    assert [record.item for record in errors.items] == [
        {"value": 0},
        {"value": 1},
        {"value": 2},
    ]
    assert {record.message for record in errors.items} == {"cannot keep 3 items"}
    assert service.metrics.snapshot()["sink"]["in"]["errors"] == 3


async def test_a_batched_transformer_takes_and_returns_lists() -> None:
    service = runtime.Service("batching")
    pairs = service.add(Pairs("pairs", batch=runtime.Batch(2, 3600.0)))
    assert pairs.batching is not None
    pairs.batching.clock = runtime.ManualClock()
    out = service.tap("pairs.out")
    inlet = service.inlet("pairs.in")
    async with service.running():
        sent = [await inlet.send(number) for number in (1, 2, 0, 3, 4, 5)]
        await out.wait_for(4)
    assert out.items == [10, 20, 40, 50]
    # as many outputs as inputs: each caused by its own input
    assert [e.causation_id for e in out.envelopes] == [
        sent[0].id,
        sent[1].id,
        sent[4].id,
        sent[5].id,
    ]
    assert [e.correlation_id for e in out.envelopes] == [
        sent[0].id,
        sent[1].id,
        sent[4].id,
        sent[5].id,
    ]
    assert service.metrics.snapshot()["pairs"]["in"]["dropped"] == 2  # [0, 3] -> []


class Spread(runtime.Transformer):
    """Batched: one output per batch, the sum, and its half."""

    def transform(self, item: Any) -> Any:
        return [sum(item), sum(item) / 2, sum(item) / 4]


async def test_a_batched_transformers_outputs_of_another_count_come_of_the_first() -> (
    None
):
    service = runtime.Service("batching")
    spread = service.add(Spread("spread", batch=runtime.Batch(2, 3600.0)))
    assert spread.batching is not None
    spread.batching.clock = runtime.ManualClock()
    out = service.tap("spread.out")
    inlet = service.inlet("spread.in")
    async with service.running():
        first = await inlet.send(4)
        await inlet.send(4)
        await out.wait_for(3)
    assert out.items == [8, 4.0, 2.0]
    assert {e.causation_id for e in out.envelopes} == {first.id}
    assert len({e.id for e in out.envelopes}) == 3


def test_a_batch_needs_at_least_one_item_and_no_negative_wait() -> None:
    with pytest.raises(ValueError, match="max_items"):
        runtime.Batch(0)
    with pytest.raises(ValueError, match="max_wait_s"):
        runtime.Batch(2, -1.0)
    assert isinstance(Batching(runtime.Batch(2)).clock, runtime.LoopClock)


# -- over Redis: acknowledged once the method returns ------------------------------


@pytest.fixture
def settings() -> Iterator[runtime.ServiceSettings]:
    yield from redis_settings(redis_url())


def pending(settings: runtime.ServiceSettings) -> int:
    with redis.Redis.from_url(settings.redis_url) as client:
        stream = settings.redis_prefix + "rt.numbers.out"
        return int(client.xpending(stream, "sink.in")["pending"])


class Held(runtime.Sink):
    """Batched; holds each batch until ``release`` is set, then keeps it."""

    def __init__(self, name: str = "sink", **options: Any) -> None:
        super().__init__(name, batch=runtime.Batch(5), **options)
        self.batches: list[list[int]] = []
        self.taken = 0

    async def setup(self) -> None:
        self.release = anyio.Event()

    async def consume(self, item: Any) -> None:
        self.taken += len(item)
        await self.release.wait()
        self.batches.append(list(item))


class Forever(runtime.Sink):
    """Batched; takes a batch and never returns: a replica that hangs, then dies."""

    def __init__(self) -> None:
        super().__init__("sink", batch=runtime.Batch(5))
        self.taken = 0

    async def consume(self, item: Any) -> None:
        self.taken += len(item)
        await anyio.sleep_forever()


def over_redis(
    settings: runtime.ServiceSettings, count: int, sink: runtime.Sink, **update: Any
) -> runtime.Service:
    service = runtime.Service("rt", settings=settings.model_copy(update=update))
    service.add(Numbers("numbers", count))
    service.add(sink)
    service.connect("numbers.out", "sink.in", buffer_size=10, transport="redis")
    return service


async def test_over_redis_a_batch_is_acknowledged_after_the_method_returns(
    settings: runtime.ServiceSettings,
) -> None:
    sink = Held()
    service = over_redis(settings, 5, sink)
    async with service.running():
        await until(lambda: sink.taken == 5)
        # long enough for an acknowledgement to be flushed, were one made early
        await anyio.sleep(ACK_DELAY_S * 20)
        held = pending(settings)  # in the method: none acknowledged yet
        sink.release.set()
        await until(lambda: pending(settings) == 0)
    assert held == 5
    assert sink.batches == [[0, 1, 2, 3, 4]]


async def test_over_redis_a_batch_killed_in_its_method_is_delivered_again(
    settings: runtime.ServiceSettings,
) -> None:
    producer = over_redis(settings, 20, Batches(), components="numbers")
    stuck = Forever()
    dying = over_redis(settings, 20, stuck, components="sink", redis_consumer="a")
    live = Batches(batch=runtime.Batch(5))
    survivor = over_redis(settings, 20, live, components="sink", redis_consumer="b")
    async with producer.running():
        with anyio.CancelScope() as dead:
            async with anyio.create_task_group() as group:
                group.start_soon(dying.run)
                await until(lambda: stuck.taken > 0)
                dead.cancel()  # the replica dies in the middle of a batch
        async with survivor.running():
            await until(lambda: sum(map(len, live.batches)) >= 20, 20.0)
            await until(lambda: pending(settings) == 0)
    kept = sorted(n for batch in live.batches for n in batch)
    assert kept == list(range(20))  # the killed batch came again, nothing lost
    assert survivor.metrics.snapshot()["sink"]["in"]["redeliveries"] >= 1
