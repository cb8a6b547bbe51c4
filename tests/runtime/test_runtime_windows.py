"""Windows: per key, the items of a span of time (or of N items), folded into a value.

Events carry fixed timestamps; closing by idleness and processing-time windows are
driven by a ``ManualClock`` the test moves, never by sleeping.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
import runtime
from anyio.abc import ObjectReceiveStream, ObjectSendStream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from runtime.aggregates import Collect, Count, Sum, builtin
from runtime.envelope import Envelope
from runtime.windowstate import AlignedWindows, SlidingWindows

from tests.runtime.support import Gate, Recorder, wait

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Reading(BaseModel):
    device: str
    time: datetime
    value: float = 1.0


def at(device: str, seconds: float, value: float = 1.0) -> Reading:
    return Reading(device=device, time=T0 + timedelta(seconds=seconds), value=value)


class Feed(runtime.Source):
    """Yields what the test sends, until the test closes its end."""

    def __init__(self) -> None:
        super().__init__("feed")
        self.send: ObjectSendStream[Any]
        self.receive: ObjectReceiveStream[Any]
        self.send, self.receive = anyio.create_memory_object_stream[Any](100_000)
        self.done = False

    async def generate(self) -> Any:
        async with self.receive:
            async for item in self.receive:
                yield item
        self.done = True

    async def finish(self) -> None:
        """End the input: what was sent is yielded first (a stop would cancel it)."""
        await self.send.aclose()
        await until(lambda: self.done)


def wired(
    window: runtime.Window, *, key: str | None = "device"
) -> tuple[runtime.Service, Feed, Recorder, Recorder | None]:
    service = runtime.Service("windows")
    feed = service.add(Feed())
    service.add(window)
    out = service.add(Recorder("out"))
    service.connect("feed.out", f"{window.name}.in", key=key)
    service.connect(f"{window.name}.out", "out.in")
    late = None
    if "late" in window.outputs:
        late = service.add(Recorder("late"))
        service.connect(f"{window.name}.late", "late.in")
    return service, feed, out, late


def rows(items: Iterable[Any]) -> list[tuple[Any, float, float, Any]]:
    """Windows as (key, start, end, value), times in seconds from T0."""
    return [
        (
            i.key,
            (i.start - T0).total_seconds(),
            (i.end - T0).total_seconds(),
            i.value,
        )
        for i in items
    ]


async def until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    with anyio.fail_after(seconds):
        while not check():
            await anyio.sleep(0.001)


async def settle() -> None:
    for _ in range(50):
        await anyio.sleep(0)


async def run_all(window: runtime.Window, items: Iterable[Any]) -> list[Any]:
    """Feed every item, then drain the service; what the window sent."""
    service, feed, out, _ = wired(window)
    async with service.running():
        for item in items:
            await feed.send.send(item)
        await feed.finish()
    return rows(out.items)


async def test_tumbling_windows_close_on_the_watermark_and_the_rest_at_drain() -> None:
    window = runtime.Window("w", size=10, time="time")
    service, feed, out, _ = wired(window)
    async with service.running():
        for item in (at("a", 1), at("b", 3), at("a", 5), at("a", 12)):
            await feed.send.send(item)
        # 12 is past [0, 10): that window closes for every key, the rest stays open
        await until(lambda: len(out.items) == 2)
        await settle()
        assert rows(out.items) == [("a", 0, 10, 2), ("b", 0, 10, 1)]
        assert window.open_windows == 1
        await feed.send.send(at("a", 25))
        await until(lambda: len(out.items) == 3)
        await feed.finish()
    assert rows(out.items)[2:] == [("a", 10, 20, 1), ("a", 20, 30, 1)]
    assert window.open_windows == 0
    assert service.metrics.groups()["w"]["windows_closed"] == 4


async def test_hopping_windows_hold_every_item_of_their_span() -> None:
    window = runtime.Window("w", type="hopping", size=10, hop=5, time="time")
    got = await run_all(window, [at("a", 7), at("a", 12), at("b", 16)])
    assert sorted(got) == [
        ("a", 0, 10, 1),
        ("a", 5, 15, 2),
        ("a", 10, 20, 1),
        ("b", 10, 20, 1),
        ("b", 15, 25, 1),
    ]


async def test_sliding_windows_end_at_each_item_and_hold_the_size_before_it() -> None:
    window = runtime.Window(
        "w", type="sliding", size=10, grace=1, time="time", aggregate=Collect("value")
    )
    got = await run_all(
        window,
        [at("a", 1, 1), at("a", 5, 5), at("a", 12, 12), at("b", 11, 11), at("b", 1)],
    )
    assert sorted(got) == [
        ("a", -9, 1, [1]),
        ("a", -5, 5, [1, 5]),
        ("a", 2, 12, [5, 12]),
        ("b", 1, 11, [11]),  # within the grace (12 - 1)
    ]
    # b at 1: its own window, (-9, 1], had closed, and (1, 11] does not hold it
    assert window.late_items == 1


async def test_count_windows_close_on_their_nth_item_and_a_partial_one_at_drain() -> (
    None
):
    window = runtime.Window("w", count=2, time="time", aggregate=Sum("value"))
    service, feed, out, _ = wired(window)
    async with service.running():
        for item in (at("a", 1, 1), at("b", 2, 10), at("a", 3, 2), at("a", 4, 4)):
            await feed.send.send(item)
        await until(lambda: len(out.items) == 1)
        await settle()
        assert rows(out.items) == [("a", 1, 3, 3)]
        await feed.finish()
    assert sorted(rows(out.items)[1:]) == [("a", 4, 4, 4), ("b", 2, 2, 10)]


async def test_a_late_item_goes_to_late_and_is_counted_per_partition_not_per_key() -> (
    None
):
    window = runtime.Window("w", size=10, grace=2, time="time", late=True)
    service, feed, out, late = wired(window)
    assert late is not None
    async with service.running():
        await feed.send.send(at("a", 1))
        await feed.send.send(at("a", 11))  # the watermark 11, minus grace: 9
        await feed.send.send(at("b", 8))  # within the grace: [0, 10) is open
        await feed.send.send(at("a", 12))  # 12 - 2 reaches 10: [0, 10) closes
        await until(lambda: len(out.items) == 2)
        await feed.send.send(at("a", 4))  # late
        await feed.send.send(at("c", 9))  # late too: another key, same partition
        await until(lambda: len(late.items) == 2)
        text = service.metrics.render().decode()
        await feed.finish()
    assert sorted(rows(out.items)) == [
        ("a", 0, 10, 1),
        ("a", 10, 20, 2),
        ("b", 0, 10, 1),
    ]
    assert late.items == [at("a", 4), at("c", 9)]
    assert window.late_items == 2
    assert 'portwright_window_late_items_total{component="w"} 2.0' in text


async def test_late_items_are_counted_without_a_late_port() -> None:
    window = runtime.Window("w", size=10, time="time")
    got = await run_all(window, [at("a", 1), at("a", 30), at("a", 2)])
    assert got == [("a", 0, 10, 1), ("a", 30, 40, 1)]
    assert window.late_items == 1


async def test_a_quiet_input_is_closed_by_idleness_on_the_clock() -> None:
    clock = runtime.ManualClock()
    window = runtime.Window("w", size=10, grace=5, time="time", clock=clock)
    service, feed, out, _ = wired(window)
    async with service.running():
        await feed.send.send(at("a", 1))
        await feed.send.send(at("b", 3))
        await until(lambda: window.open_windows == 2)
        clock.advance(14.5)  # idle_after is size + grace: 15
        await settle()
        assert out.items == []
        clock.advance(0.5)
        await until(lambda: len(out.items) == 2)
        assert sorted(rows(out.items)) == [("a", 0, 10, 1), ("b", 0, 10, 1)]
        # the watermark moved on by the idle time: 3 + 15
        assert window.watermark.value == (T0 + timedelta(seconds=18)).timestamp()
        await feed.send.send(at("a", 7))  # its window closed: late
        await until(lambda: window.late_items == 1)
        await feed.finish()
    assert len(out.items) == 2


async def test_items_that_keep_coming_postpone_idleness() -> None:
    clock = runtime.ManualClock()
    window = runtime.Window("w", size=10, time="time", clock=clock)
    service, feed, out, _ = wired(window)
    async with service.running():
        await feed.send.send(at("a", 1))
        await until(lambda: window.open_windows == 1)
        clock.advance(8)
        await feed.send.send(at("a", 2))  # moves the watermark: idle from now on
        await until(
            lambda: window.watermark.value == (T0 + timedelta(seconds=2)).timestamp()
        )
        clock.advance(8)  # 16 since the first item, 8 since the watermark moved
        await settle()
        assert out.items == []
        clock.advance(2)
        await until(lambda: len(out.items) == 1)
        await feed.finish()
    assert rows(out.items) == [("a", 0, 10, 2)]


async def test_processing_time_windows_close_by_the_timer() -> None:
    clock = runtime.ManualClock(wall=T0.timestamp())
    window = runtime.Window("w", size=10, clock=clock)
    service, feed, out, _ = wired(window)
    async with service.running():
        await feed.send.send(at("a", 999))  # the event's own time is not read
        await feed.send.send(at("b", 999))
        await until(lambda: window.open_windows == 2)
        clock.advance(4)
        await feed.send.send(at("a", 999))
        await until(lambda: window.watermark.value == T0.timestamp() + 4)
        clock.advance(5.5)
        await settle()
        assert out.items == []
        clock.advance(0.5)  # wall time T0 + 10: [T0, T0 + 10) ends
        await until(lambda: len(out.items) == 2)
        clock.advance(1)
        await feed.send.send(at("a", 999))
        await until(lambda: window.open_windows == 1)
        await feed.finish()
    assert sorted(rows(out.items)) == [
        ("a", 0, 10, 2),
        ("a", 10, 20, 1),
        ("b", 0, 10, 1),
    ]


async def test_emit_every_sends_each_update_and_nothing_more_at_close() -> None:
    window = runtime.Window("w", size=10, time="time", emit="every")
    got = await run_all(window, [at("a", 1), at("a", 2), at("b", 3), at("a", 11)])
    assert got == [
        ("a", 0, 10, 1),
        ("a", 0, 10, 2),
        ("b", 0, 10, 1),
        ("a", 10, 20, 1),
    ]
    assert window.closed == 3


class Spread(runtime.Aggregate):
    """User code: the spread (max - min) of the values."""

    def initial(self) -> tuple[float, float]:
        return (float("inf"), float("-inf"))

    def add(self, acc: tuple[float, float], item: Reading) -> tuple[float, float]:
        return (min(acc[0], item.value), max(acc[1], item.value))

    def result(self, acc: tuple[float, float]) -> float:
        return acc[1] - acc[0]


async def test_a_user_aggregate_folds_the_items() -> None:
    window = runtime.Window("w", size=10, time="time", aggregate=Spread())
    got = await run_all(window, [at("a", 1, 3), at("a", 2, 10), at("a", 3, 4.5)])
    assert got == [("a", 0, 10, 7.0)]


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        ("count", None, 3),
        ("sum", "value", 9.0),
        ("mean", "value", 3.0),
        ("min", "value", 1.0),
        ("max", "value", 6.0),
        ("last", "value", 2.0),
        ("collect", "value", [1.0, 6.0, 2.0]),
    ],
)
async def test_the_built_in_aggregates(
    name: str, field: str | None, value: Any
) -> None:
    window = runtime.Window("w", size=10, time="time", aggregate=builtin(name, field))
    got = await run_all(window, [at("a", 1, 1), at("a", 2, 6), at("a", 3, 2)])
    assert got == [("a", 0, 10, value)]


class Total(BaseModel):
    key: str
    start: datetime
    end: datetime
    value: int


async def test_the_output_schema_given_is_the_one_sent() -> None:
    window = runtime.Window("w", size=10, time="time", schema=Total, key="device")
    service, feed, out, _ = wired(window, key=None)
    async with service.running():
        await feed.send.send(at("a", 1))
        await feed.finish()
    assert out.items == [
        Total(key="a", start=T0, end=T0 + timedelta(seconds=10), value=1)
    ]


async def test_at_the_cap_the_oldest_window_closes_early_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    window = runtime.Window("w", size=10, time="time", max_open=2)
    service, feed, out, _ = wired(window)
    with caplog.at_level(logging.WARNING):
        async with service.running():
            for device in ("a", "b", "c", "d"):
                await feed.send.send(at(device, 1))
            await until(lambda: len(out.items) == 2)
            assert window.open_windows == 2
            text = service.metrics.render().decode()
            await feed.finish()
    assert rows(out.items) == [(k, 0, 10, 1) for k in "abcd"]
    assert window.evicted == 2
    assert 'portwright_window_evicted_total{component="w"} 2.0' in text
    assert 'portwright_window_open{component="w"} 2.0' in text
    warnings = [r for r in caplog.records if "max_open" in r.getMessage()]
    assert len(warnings) == 1


async def test_the_watermark_lag_is_the_wall_clock_minus_the_watermark() -> None:
    clock = runtime.ManualClock(wall=T0.timestamp() + 100)
    window = runtime.Window("w", size=10, time="time", clock=clock)
    service, feed, _, _ = wired(window)
    async with service.running():
        await feed.send.send(at("a", 30))
        await until(lambda: window.open_windows == 1)
        lag = service.metrics.groups()["w"]["watermark_lag_seconds"]
        await feed.finish()
    assert lag == 70


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "give size"),
        ({"size": 0}, "size must be a positive"),
        ({"size": 10, "hop": 5}, "tumbling window has no hop"),
        ({"size": 10, "type": "hopping"}, "needs hop"),
        ({"size": 10, "type": "hopping", "hop": 20}, "at most size"),
        ({"size": 10, "type": "sliding", "hop": 2}, "sliding window has no hop"),
        ({"size": 10, "type": "session"}, "is not tumbling, hopping or sliding"),
        ({"count": 0}, "count must be at least 1"),
        ({"count": 3, "size": 10}, "count windows are tumbling"),
        ({"size": 10, "grace": 5}, "grace is for event time"),
        ({"size": 10, "emit": "often"}, "is not final or every"),
        ({"size": 10, "max_open": 0}, "max_open must be at least 1"),
    ],
)
def test_a_misconfigured_window_is_refused(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(runtime.WiringError, match=message):
        runtime.Window("w", **options)


async def test_an_unkeyed_input_is_refused_when_the_service_starts() -> None:
    window = runtime.Window("w", size=10, time="time")
    service, _, _, _ = wired(window, key=None)
    with pytest.raises(runtime.StartupError, match="must be keyed"):
        async with service.running():
            pass


# --- the synchronous core, fed directly: fast enough for hypothesis -------------


def core(window: runtime.Window, items: list[Reading], batch: int = 1) -> list[Any]:
    """Add ``items`` in this order, ``batch`` at a time, then drain; the windows."""
    entries = [(0.0, Envelope.start(item, 0.0)) for item in items]
    for first in range(0, len(entries), batch):
        window._add_all(entries[first : first + batch], _by_device)
    window._close_all()
    return sorted(
        rows(envelope.item for _, envelope in window._entries),
        key=repr,
    )


def _by_device(item: Reading) -> str:
    return item.device


SHAPES: list[dict[str, Any]] = [
    {"size": 10},
    {"type": "hopping", "size": 10, "hop": 4},
    {"type": "sliding", "size": 7},
]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    events=st.lists(
        st.tuples(st.sampled_from("abc"), st.integers(0, 60), st.integers(0, 9)),
        max_size=40,
    ),
    delays=st.lists(st.integers(0, 5), min_size=40, max_size=40),
    shape=st.sampled_from(SHAPES),
    aggregate=st.sampled_from(["count", "sum", "min", "max"]),
    batch=st.integers(1, 8),
)
def test_any_arrival_order_within_the_grace_gives_the_windows_of_sorted_order(
    events: list[tuple[str, int, int]],
    delays: list[int],
    shape: dict[str, Any],
    aggregate: str,
    batch: int,
) -> None:
    grace = 5
    items = [at(device, t, value) for device, t, value in events]

    def window() -> runtime.Window:
        field = None if aggregate == "count" else "value"
        return runtime.Window(
            "w",
            time="time",
            grace=grace,
            key="device",
            aggregate=builtin(aggregate, field),
            clock=runtime.ManualClock(),
            **shape,
        )

    in_order = sorted(items, key=lambda i: i.time)
    # Arriving at t + delay, delay <= grace: no item is more than the grace behind
    # the highest time seen when it arrives.
    arrival = [
        item
        for _, item in sorted(
            ((i.time.timestamp() + delays[n], n), i) for n, i in enumerate(items)
        )
    ]
    shuffled = window()
    # in batches as the input loop takes them (a batch may be counted in bulk)
    assert core(shuffled, arrival, batch) == core(window(), in_order)
    assert shuffled.late_items == 0


def test_the_boundary_datetimes_kept_for_results_stay_few() -> None:
    # Sliding windows: every item's window has boundaries of its own, 2 x 6,000.
    window = runtime.Window(
        "w", type="sliding", size=1, time="time", key="device",
        clock=runtime.ManualClock(),
    )  # fmt: skip
    got = core(window, [at("a", t) for t in range(6_000)], batch=256)

    assert sorted(start for _, start, _, _ in got) == [t - 1 for t in range(6_000)]
    assert all(end - start == 1 and value == 1 for _, start, end, value in got)
    # each result's datetimes are its own window's, however many were kept before
    assert len(window._moments) <= 4096


def test_a_count_whose_add_is_overridden_is_not_counted_as_a_plain_count() -> None:
    class Weighted(Count):  # the fast path counts items; this one adds weights
        def add(self, acc: int, item: Any) -> int:
            return acc + int(item.value)

    window = runtime.Window(
        "w", size=10, time="time", key="device", aggregate=Weighted(),
        clock=runtime.ManualClock(),
    )  # fmt: skip
    got = core(window, [at("a", t, value=3) for t in range(5)], batch=5)

    assert [value for _, _, _, value in got] == [15]


async def test_fifty_thousand_random_events_count_exactly_like_plain_python() -> None:
    rng = random.Random(16)
    size, grace = 60, 30
    events = sorted(
        (
            at(f"k{rng.randrange(100)}", t)
            for t in (rng.uniform(0, 36_000) for _ in range(50_000))
        ),
        key=lambda i: i.time.timestamp() + rng.uniform(0, grace),
    )
    window = runtime.Window("w", size=size, grace=grace, time="time")
    got = await run_all(window, events)
    expected = Counter(
        (e.device, (e.time - T0).total_seconds() // size * size) for e in events
    )
    assert len(got) == len(expected)
    assert {(k, s): v for k, s, _, v in got} == expected
    assert all(end - start == size for _, start, end, _ in got)
    assert window.late_items == 0


class Faulty(runtime.Aggregate):
    """Sums the values; a negative one makes it raise."""

    def initial(self) -> float:
        return 0.0

    def add(self, acc: float, item: Reading) -> float:
        if item.value < 0:
            raise ValueError("negative reading")
        return acc + item.value


class Untimed(BaseModel):
    device: str
    time: datetime | None = None
    value: float = 1.0


@pytest.mark.parametrize(
    "options",
    [{"size": 10}, {"type": "hopping", "size": 10, "hop": 5}],
    ids=["tumbling", "hopping"],
)
async def test_an_item_that_fails_is_reported_and_the_others_still_count(
    options: dict[str, Any],
) -> None:
    window = runtime.Window(
        "w", time="time", aggregate=Faulty(), errors=True, **options
    )
    service, feed, out, _ = wired(window)
    errors = service.add(Recorder("errors"))
    service.connect("w.errors", "errors.in")
    async with service.running():
        for item in (at("a", 1, 2), at("a", 2, -1), Untimed(device="a"), at("a", 3)):
            await feed.send.send(item)
        await feed.finish()
    assert [(k, s, v) for k, s, _, v in rows(out.items) if s == 0] == [("a", 0, 3.0)]
    assert sorted(e.error_type for e in errors.items) == ["TypeError", "ValueError"]
    assert window.inputs["in"].errors == 2


@pytest.mark.parametrize(
    "shape",
    [
        {"size": 10},
        {"type": "hopping", "size": 10, "hop": 5},
        {"type": "sliding", "size": 10},
    ],
    ids=["tumbling", "hopping", "sliding"],
)
def test_closed_windows_and_items_no_window_needs_are_dropped(
    shape: dict[str, Any],
) -> None:
    window = runtime.Window("w", time="time", clock=runtime.ManualClock(), **shape)
    store: Any = window.store
    entries = [
        (0.0, Envelope.start(at(f"k{n % 50}", n * 0.5), 0.0)) for n in range(2_000)
    ]
    for first in range(0, len(entries), 64):
        window._add_all(entries[first : first + 64], _by_device)
    # a second of items per 50 keys, 10 s windows: only the last windows are open
    assert window.open_windows <= 50 * 20
    if isinstance(store, AlignedWindows):
        assert len(store.slots) <= 2
    else:
        # of 2,000: the items of the last 10 s, which new windows may still need
        assert sum(map(len, store.recent.values())) <= 21
    window._add_all([(0.0, Envelope.start(at("z", 5_000), 0.0))], _by_device)
    assert window.open_windows == (2 if shape.get("hop") else 1)
    assert window.closed == len(window._entries)
    if isinstance(store, SlidingWindows):
        assert set(store.windows) == set(store.recent) == {"z"}


async def test_emit_every_sends_each_window_an_item_updates() -> None:
    window = runtime.Window(
        "w", type="hopping", size=10, hop=5, time="time", emit="every"
    )
    got = await run_all(window, [at("a", 7), at("a", 8)])
    assert got == [
        ("a", 5, 15, 1),
        ("a", 0, 10, 1),
        ("a", 5, 15, 2),
        ("a", 0, 10, 2),
    ]


class CountingClock(runtime.ManualClock):
    """Counts the waits asked of it."""

    def __init__(self) -> None:
        super().__init__()
        self.scopes = 0

    def scope(self, deadline: float) -> anyio.CancelScope:
        self.scopes += 1
        return super().scope(deadline)


async def test_an_open_count_window_leaves_its_timer_waiting() -> None:
    clock = CountingClock()
    window = runtime.Window("w", count=2, time="time", clock=clock)
    service, feed, out, _ = wired(window)
    async with service.running():
        await feed.send.send(at("a", 1))
        await until(lambda: window.open_windows == 1)
        await settle()
        # the timer waited, then woke once for the first window: it has nothing to
        # time (an idle_after of 0 made it wake at once, again and again)
        assert clock.scopes <= 2
        clock.advance(1_000)
        await settle()
        assert out.items == []
        await feed.finish()
    assert rows(out.items) == [("a", 1, 1, 1)]


async def test_count_windows_on_processing_time_take_the_clock_s_wall_time() -> None:
    clock = runtime.ManualClock(wall=T0.timestamp())
    window = runtime.Window("w", count=2, clock=clock)
    service, feed, out, _ = wired(window)
    async with service.running():
        await feed.send.send(at("a", 999))
        await until(lambda: window.open_windows == 1)
        clock.advance(3)
        await feed.send.send(at("a", 999))
        await until(lambda: len(out.items) == 1)
        await feed.finish()
    assert rows(out.items) == [("a", 0, 3, 2)]


async def test_windows_the_timer_is_still_sending_at_drain_are_all_delivered() -> None:
    clock = runtime.ManualClock(wall=T0.timestamp())
    service = runtime.Service("windows")
    feed = service.add(Feed())
    window = service.add(runtime.Window("w", size=10, clock=clock))
    gate = service.add(Gate("out"))
    service.connect("feed.out", "w.in", key="device")
    service.connect("w.out", "out.in", buffer_size=1)
    async with service.running():
        for device in "abcd":
            await feed.send.send(at(device, 0))
        await until(lambda: window.open_windows == 4)
        clock.advance(10)  # the timer closes four windows: one held, one buffered
        await wait(gate.holding)
        await settle()
        await feed.finish()  # the input ends while the timer still sends
        await settle()
        gate.release.set()
    assert sorted(i.key for i in gate.items) == ["a", "b", "c", "d"]
