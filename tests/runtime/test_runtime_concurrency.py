"""Several items in a user method at once: concurrency, ordering, blocking code."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import redis
import runtime
from runtime import concurrency

from tests.redisenv import redis_url
from tests.runtime.support import Numbers, Recorder, redis_settings

pytestmark = pytest.mark.anyio


class Held(runtime.Transformer):
    """Doubles each item once the test lets that item go; counts what is inside."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.inside = 0
        self.most_inside = 0
        self.entered: list[int] = []
        self.gates: dict[int, anyio.Event] = {}
        self.poison: int | None = None  # the item that fails

    def gate(self, item: int) -> anyio.Event:
        return self.gates.setdefault(item, anyio.Event())

    async def transform(self, item: int) -> int:
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        self.entered.append(item)
        try:
            await self.gate(item).wait()
        finally:
            self.inside -= 1
        if item == self.poison:
            raise ValueError("unlucky")
        return item * 2


async def until(condition: Any, seconds: float = 10.0) -> None:
    """Poll ``condition`` (the event loop must be free for this to return)."""
    with anyio.fail_after(seconds):
        while not condition():
            await anyio.sleep(0.005)


def pipeline(
    transformer: runtime.Transformer, count: int
) -> tuple[runtime.Service, Recorder]:
    service = runtime.Service("work")
    service.add(Numbers("numbers", count))
    service.add(transformer)
    sink = service.add(Recorder("sink"))
    service.connect("numbers.out", "held.in", buffer_size=4)
    service.connect("held.out", "sink.in", buffer_size=4)
    return service, sink


async def test_results_leave_in_input_order_though_they_finish_in_reverse() -> None:
    held = Held("held", concurrency=8)
    service, sink = pipeline(held, 8)
    async with service.running():
        await until(lambda: len(held.entered) == 8)  # all eight at once
        for item in reversed(range(8)):
            held.gate(item).set()
            await anyio.sleep(0)
        await until(lambda: len(sink.items) == 8)
    assert sink.items == [0, 2, 4, 6, 8, 10, 12, 14]


async def test_ordering_none_lets_results_leave_as_they_finish() -> None:
    held = Held("held", concurrency=8, ordering="none")
    service, sink = pipeline(held, 8)
    async with service.running():
        await until(lambda: len(held.entered) == 8)
        for item in reversed(range(8)):
            held.gate(item).set()
            await until(lambda n=8 - item: len(sink.items) == n)
    assert sink.items == [14, 12, 10, 8, 6, 4, 2, 0]


async def test_no_more_than_concurrency_items_are_in_the_method() -> None:
    held = Held("held", concurrency=3)
    service, sink = pipeline(held, 12)
    async with service.running():
        for item in range(12):
            await until(lambda n=item: n in held.entered)
            await anyio.sleep(0.001)  # room for a fourth to enter, were it allowed
            held.gate(item).set()
        await until(lambda: len(sink.items) == 12)
    assert held.most_inside == 3
    assert sink.items == [2 * n for n in range(12)]


async def test_a_head_that_is_not_done_holds_the_window_shut() -> None:
    """Finished results behind an unfinished one keep their places: backpressure."""
    held = Held("held", concurrency=4)
    service, sink = pipeline(held, 20)
    async with service.running():
        await until(lambda: len(held.entered) == 4)
        for item in (1, 2, 3):
            held.gate(item).set()
        await anyio.sleep(0.05)
        assert held.entered == [0, 1, 2, 3]  # 0 still holds its place
        assert sink.items == []
        for item in range(20):
            held.gate(item).set()
        await until(lambda: len(sink.items) == 20)
    assert sink.items == [2 * n for n in range(20)]


async def test_a_failure_is_counted_in_its_place_and_the_rest_go_on() -> None:
    held = Held("held", concurrency=4)
    held.poison = 13
    for item in range(16):
        held.gate(item).set()
    service, sink = pipeline(held, 16)
    async with service.running():
        await until(lambda: len(sink.items) == 15)
    assert sink.items == [2 * n for n in range(16) if n != 13]
    ports = service.metrics.snapshot()["held"]
    assert ports["in"]["errors"] == 1
    assert ports["in"]["messages"] == 16
    assert ports["in"]["latency"]["count"] == 16


class Traced(runtime.Sink):
    """An async sink that checks current_message() while others interleave."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.mismatches = 0
        self.count = 0

    async def consume(self, item: int) -> None:
        await anyio.sleep(0.001 * (item % 3))
        message = runtime.current_message()
        if message is None or message.item != item:
            self.mismatches += 1
        self.count += 1


async def test_each_concurrent_call_sees_its_own_message() -> None:
    service = runtime.Service("work")
    service.add(Numbers("numbers", 60))
    sink = service.add(Traced("sink", concurrency=16, ordering="none"))
    service.connect("numbers.out", "sink.in")
    with anyio.fail_after(20):
        report = await service.run()
    assert report.completed
    assert (sink.count, sink.mismatches) == (60, 0)


class Blocking(runtime.Transformer):
    """A plain ``def`` that blocks its thread until the test lets it go."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.release = threading.Event()
        self.threads: set[str] = set()
        self.lock = threading.Lock()
        self.inside = 0

    def transform(self, item: int) -> int:
        with self.lock:
            self.inside += 1
            self.threads.add(threading.current_thread().name)
        self.release.wait(30)
        message = runtime.current_message()
        assert message is not None and message.item == item
        return item + 1


async def test_blocking_code_runs_in_worker_threads_and_leaves_the_loop_free() -> None:
    blocking = Blocking("held", blocking=True, concurrency=2)
    service, sink = pipeline(blocking, 10)
    async with service.running():
        # ``until`` polls on the event loop: it returns only if the loop is free
        # while both calls block their threads.
        await until(lambda: blocking.inside == 2)
        assert threading.current_thread().name not in blocking.threads
        assert sink.items == []
        blocking.release.set()
        await until(lambda: len(sink.items) == 10)
    assert sink.items == [n + 1 for n in range(10)]
    assert blocking.inside == 10


async def test_concurrency_one_keeps_the_one_at_a_time_loops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("concurrency 1 must not build a window")

    monkeypatch.setattr(concurrency.Window, "__init__", refuse)
    held = Held("held", concurrency=1)
    for item in range(5):
        held.gate(item).set()
    service, sink = pipeline(held, 5)
    with anyio.fail_after(20):
        await service.run()
    assert sink.items == [0, 2, 4, 6, 8]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency must be from 1 to 1024, got 0"),
        ({"concurrency": 1025}, "concurrency must be from 1 to 1024, got 1025"),
        ({"ordering": "random"}, "ordering 'random' is not one of input, none"),
    ],
)
def test_a_window_it_cannot_run_is_refused(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(runtime.WiringError, match=message):
        Held("held", **options)


# -- on Redis: each entry is acknowledged when its own work is done -----------


@pytest.fixture
def settings() -> Iterator[runtime.ServiceSettings]:
    yield from redis_settings(redis_url())


def split(
    settings: runtime.ServiceSettings, held: runtime.Transformer, **update: Any
) -> tuple[runtime.Service, Recorder]:
    service = runtime.Service("cw", settings=settings.model_copy(update=update))
    service.add(Numbers("numbers", 8))
    service.add(held)
    sink = service.add(Recorder("sink"))
    service.connect("numbers.out", "held.in", buffer_size=16, transport="redis")
    service.connect("held.out", "sink.in", transport="redis")
    return service, sink


def pending(settings: runtime.ServiceSettings) -> int:
    client = redis.Redis.from_url(settings.redis_url)
    stream = f"{settings.redis_prefix}cw.numbers.out"
    return int(client.xpending(stream, "held.in")["pending"])


@pytest.mark.parametrize(
    ("ordering", "left"),
    [
        ("input", 8),  # 1..7 finished behind 0: none of them leaves, none is acked
        ("none", 1),  # 1..7 left and were acknowledged, each on its own; 0 was not
    ],
)
async def test_a_worker_killed_mid_window_has_acknowledged_only_what_it_finished(
    settings: runtime.ServiceSettings, ordering: str, left: int
) -> None:
    producer, _ = split(settings, Held("held"), components="numbers")
    held = Held("held", concurrency=8, ordering=ordering)
    dying, _ = split(settings, held, components="held", redis_consumer="a")
    survivor_held = Held("held")
    for item in range(8):
        survivor_held.gate(item).set()
    survivor, _ = split(settings, survivor_held, components="held", redis_consumer="b")
    consumer, sink = split(settings, Held("held"), components="sink")
    async with producer.running(), consumer.running():
        with anyio.CancelScope() as dead:
            async with anyio.create_task_group() as group:
                group.start_soon(dying.run)
                await until(lambda: len(held.entered) == 8)
                for item in range(1, 8):
                    held.gate(item).set()
                await until(lambda: pending(settings) == left)
                await anyio.sleep(0.3)  # longer than acknowledging takes
                assert pending(settings) == left  # 0 is never acknowledged
                dead.cancel()  # the worker dies holding what is in its window
        async with survivor.running():
            await until(lambda: set(sink.items) == {2 * n for n in range(8)}, 30)
    assert sorted(survivor_held.entered) == sorted(
        held.entered[:1] if ordering == "none" else held.entered
    )


# -- event-loop lag: measured always, and the code holding the loop named ----


class Sleepy(runtime.Transformer):
    """A plain ``def`` that blocks for a while on every item."""

    def transform(self, item: int) -> int:
        time.sleep(0.3)  # the line the warning names
        return item


SLEEP_LINE = Sleepy.transform.__code__.co_firstlineno + 1


def sleepy_service(**options: Any) -> runtime.Service:
    service = runtime.Service(
        "lag", settings=runtime.ServiceSettings(loop_lag_warn_ms=50)
    )
    service.add(Numbers("numbers", 3))
    service.add(Sleepy("held", **options))
    service.add(Recorder("sink"))
    service.connect("numbers.out", "held.in")
    service.connect("held.out", "sink.in")
    return service


def held_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if "event loop has been held" in record.getMessage()
        and "component 'held'" in record.getMessage()
    ]


async def test_a_method_that_blocks_the_loop_is_named_once_with_its_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = sleepy_service()
    with caplog.at_level(logging.WARNING), anyio.fail_after(30):
        await service.run()
    warnings = held_warnings(caplog)
    assert len(warnings) == 1, warnings  # three stalls, one warning
    assert f"transform ({__file__}:{SLEEP_LINE})" in warnings[0]
    assert "blocking: true" in warnings[0]
    # The stall is in the lag histogram, above 0.25 s (the batch loop may take the
    # three items in one turn: one stall of three sleeps).
    lag = service.loop_lag.histogram
    assert sum(lag.counts[lag.bounds.index(0.25) + 1 :]) >= 1
    assert b"portwright_event_loop_lag_seconds_bucket" in service.metrics.render()


async def test_the_same_method_marked_blocking_leaves_the_loop_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = sleepy_service(blocking=True)
    with caplog.at_level(logging.WARNING), anyio.fail_after(30):
        await service.run()
    assert held_warnings(caplog) == []
    lag = service.loop_lag.histogram
    assert lag.count >= 3  # it was measuring all along


def test_blocking_refuses_an_async_method() -> None:
    with pytest.raises(runtime.WiringError, match=r"transform\(\) is async def"):
        Held("held", blocking=True)
