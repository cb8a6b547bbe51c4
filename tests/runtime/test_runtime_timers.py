"""Timers: ``tick()`` every so often or on a cron schedule, late ticks skipped.

Cadence is asserted on a ``ManualClock`` the test moves, never by sleeping.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
import runtime
from runtime.clock import Alarm, ManualClock
from runtime.cron import Cron, CronError
from runtime.timers import Ticker

from tests.runtime.support import Recorder

pytestmark = pytest.mark.anyio

NOON = datetime(2026, 3, 2, 12, 3, tzinfo=UTC).timestamp()  # a Monday, 12:03


class Counter(runtime.Timer):
    """Each tick sends the tick's number and the clock's time."""

    def __init__(self, **options: Any) -> None:
        super().__init__("timer", **options)
        self.count = 0

    def tick(self) -> tuple[int, float]:
        self.count += 1
        return (self.count, self.clock.now())


class Slow(runtime.Timer):
    """Its second tick waits for ``release``."""

    def __init__(self, **options: Any) -> None:
        super().__init__("timer", **options)
        self.started: list[float] = []
        self.release = anyio.Event()

    async def tick(self) -> None:
        self.started.append(self.clock.now())
        if len(self.started) == 2:
            await self.release.wait()


async def until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    with anyio.fail_after(seconds):
        while not check():
            await anyio.sleep(0.001)


async def settle() -> None:
    for _ in range(50):
        await anyio.sleep(0)


def timed(timer: runtime.Timer) -> tuple[runtime.Service, Recorder]:
    service = runtime.Service("timers")
    service.add(timer)
    sink = service.add(Recorder("sink"))
    service.connect("timer.out", "sink.in")
    return service, sink


async def test_a_timer_ticks_at_start_then_every_period() -> None:
    clock = runtime.ManualClock()
    service, sink = timed(Counter(every=2.0, clock=clock))
    async with service.running():
        await until(lambda: len(sink.items) == 1)
        for ticked in (2, 3, 4):
            clock.advance(1.0)
            await settle()
            clock.advance(1.0)
            await until(lambda: len(sink.items) == ticked)  # noqa: B023
        await settle()
    assert sink.items == [(1, 0.0), (2, 2.0), (3, 4.0), (4, 6.0)]
    assert service.metrics.groups()["timer"] == {"ticks": 4, "ticks_skipped": 0}


async def test_ticks_that_come_due_during_a_long_tick_are_skipped_and_counted() -> None:
    clock = runtime.ManualClock()
    timer = Slow(every=1.0, clock=clock)
    service, _ = timed(timer)
    async with service.running():
        await until(lambda: len(timer.started) == 1)
        clock.advance(1.0)
        await until(lambda: len(timer.started) == 2)  # the slow one, at 1.0
        clock.advance(2.5)  # 2.0 and 3.0 come due meanwhile
        await settle()
        timer.release.set()
        await settle()
        assert timer.started == [0.0, 1.0]  # nothing ran late, one after another
        clock.advance(0.5)
        await until(lambda: len(timer.started) == 3)
        text = service.metrics.render().decode()
    assert timer.started == [0.0, 1.0, 4.0]
    assert timer.ticker.skipped == 2
    assert 'portwright_ticks_skipped_total{component="timer"} 2.0' in text


class Listing(runtime.Timer):
    def tick(self) -> Iterator[str]:
        yield "a"
        yield "b"


class Failing(runtime.Timer):
    def __init__(self, **options: Any) -> None:
        super().__init__("timer", **options)
        self.ticks = 0

    def tick(self) -> list[int]:
        self.ticks += 1
        if self.ticks == 1:
            raise ValueError("first tick")
        return [self.ticks]


async def test_a_tick_may_yield_several_items() -> None:
    clock = runtime.ManualClock()
    service, sink = timed(Listing("timer", every=1.0, clock=clock))
    async with service.running():
        await until(lambda: len(sink.items) == 2)
        clock.advance(1.0)
        await until(lambda: len(sink.items) == 4)
    assert sink.items == ["a", "b", "a", "b"]


async def test_a_failing_tick_is_reported_and_the_next_one_runs_on_time() -> None:
    clock = runtime.ManualClock()
    timer = Failing(
        every=1.0, clock=clock, outputs={"out": Any, "errors": runtime.ErrorRecord}
    )
    service, sink = timed(timer)
    errors = service.tap("timer.errors")
    async with service.running():
        await errors.wait_for(1)
        clock.advance(1.0)
        await until(lambda: sink.items == [2])
    assert [record.message for record in errors.items] == ["first tick"]


async def test_a_scheduled_timer_ticks_at_the_matching_minutes() -> None:
    clock = runtime.ManualClock(wall=NOON)
    service, sink = timed(Counter(schedule="*/5 * * * *", clock=clock))
    async with service.running():
        await until(lambda: clock.waiting == 1)
        clock.advance(119.0)  # 12:04:59
        await settle()
        assert sink.items == []
        clock.advance(1.0)  # 12:05
        await until(lambda: len(sink.items) == 1)
        clock.advance(300.0)  # 12:10
        await until(lambda: len(sink.items) == 2)
    assert sink.items == [(1, 120.0), (2, 420.0)]


def test_a_timer_takes_every_or_schedule() -> None:
    with pytest.raises(runtime.WiringError, match="either every or schedule"):
        Counter()
    with pytest.raises(runtime.WiringError, match="either every or schedule"):
        Counter(every=1.0, schedule="* * * * *")
    with pytest.raises(runtime.WiringError, match="positive"):
        Counter(every=0.0)
    with pytest.raises(runtime.WiringError, match="minute 61"):
        Counter(schedule="61 * * * *")


def test_a_schedule_skips_the_matching_minutes_a_tick_ran_past() -> None:
    clock = runtime.ManualClock(wall=NOON + 3.0)  # 12:03:03
    ticker = Ticker(clock, schedule="* * * * *")
    assert ticker.first() == 57.0  # 12:04
    clock.advance(57.0 + 150.0)  # the tick ends at 12:06:30
    assert ticker.next() == 237.0  # 12:07; 12:05 and 12:06 skipped
    assert ticker.skipped == 2


# -- the cron parser ----------------------------------------------------------


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        ("* * * * *", "2026-03-02 12:03:30", "2026-03-02 12:04"),
        ("0 * * * *", "2026-03-02 12:00:00", "2026-03-02 13:00"),
        ("30 9 * * 1-5", "2026-03-06 10:00", "2026-03-09 09:30"),  # Fri -> Mon
        ("0 0 1 * *", "2026-01-31 00:00", "2026-02-01 00:00"),
        ("0 0 29 2 *", "2026-03-01 00:00", "2028-02-29 00:00"),
        ("15,45 */6 * * *", "2026-03-02 06:20", "2026-03-02 06:45"),
        ("0 12 * * 0", "2026-03-02 00:00", "2026-03-08 12:00"),  # Sunday as 0
        ("0 12 * * 7", "2026-03-02 00:00", "2026-03-08 12:00"),  # and as 7
        # both day fields restricted: either matches (the 13th, or a Friday)
        ("0 0 13 * 5", "2026-03-02 00:00", "2026-03-06 00:00"),
        ("0 0 13 * 5", "2026-03-06 00:00", "2026-03-13 00:00"),
        ("0-10/5 8 * * *", "2026-03-02 08:06", "2026-03-02 08:10"),
    ],
)
def test_cron_finds_the_next_matching_minute(
    schedule: str, after: str, expected: str
) -> None:
    assert Cron.parse(schedule).next_after(at(after)) == at(expected)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("* * * *", "4 fields, not 5"),
        ("60 * * * *", "minute 60 is out of range 0-59"),
        ("* 24 * * *", "hour 24 is out of range 0-23"),
        ("* * 0 * *", "day of month 0 is out of range 1-31"),
        ("* * * 13 *", "month 13 is out of range 1-12"),
        ("* * * * MON", "day of week 'MON' is not a number"),
        ("5-1 * * * *", "minute range '5-1' runs backwards"),
        ("*/0 * * * *", "minute 0 is out of range 1-59"),
    ],
)
def test_cron_refuses_what_it_cannot_read(schedule: str, message: str) -> None:
    with pytest.raises(CronError, match=message.replace("(", r"\(")):
        Cron.parse(schedule)


def test_cron_says_when_a_schedule_never_matches() -> None:
    with pytest.raises(CronError, match="never matches"):
        Cron.parse("0 0 30 2 *").next_after(at("2026-01-01 00:00"))


async def wait_until(check: Callable[[], bool]) -> None:
    with anyio.fail_after(5):
        while not check():
            await anyio.sleep(0)


class Due:
    """State that falls due at ``at`` and records when it was served."""

    def __init__(self, clock: ManualClock, at: float) -> None:
        self.clock, self.at, self.served = clock, at, list[float]()

    def deadline(self) -> float:
        return self.at

    async def on_time(self) -> None:
        self.served.append(self.clock.now())
        self.at = math.inf


async def test_an_alarm_serves_what_falls_due_and_a_wake_brings_a_new_deadline() -> (
    None
):
    clock = ManualClock()
    due, alarm = Due(clock, math.inf), Alarm()
    alarm.unarmed = False
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(alarm.serve, clock, due)
        await wait_until(lambda: alarm.unarmed)  # nothing due: it waits unarmed
        due.at = clock.now() + 5
        clock.advance(10)
        for _ in range(5):
            await anyio.sleep(0)
        assert due.served == []  # the deadline moved, but nobody woke it
        alarm.wake()
        await wait_until(lambda: due.served != [])
        assert due.served == [clock.now()] and alarm.unarmed
        tasks.cancel_scope.cancel()
