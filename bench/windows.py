"""Issue #16: a tumbling count per key, one process: portwright's Window against
Bytewax 0.21 and against a hand-written dict loop (the Python limit).

The same events for all three: ``(key, time)`` tuples (1,000 keys, an aware
``datetime`` each, in time order over an hour), counted per key in one-minute
tumbling windows on event time, every window's count kept as a result:

- portwright: a ``Source`` (a plain generator) yields the events into a ``Window``
  (``size=60``, ``grace=1``, ``time`` and ``key`` functions, built-in ``count``, its
  results validated by a typed schema as a generated service's ``<Name>Window``)
  whose ``out`` feeds a ``Sink`` that keeps the results; timed from start to the
  drained end (the last windows close at drain).
- Bytewax: ``TestingSource(events, batch_size=1000)`` (its documented way to move
  items in batches) -> ``count_window`` with an ``EventClock``
  (``wait_for_system_duration`` one second: the same grace) and a ``TumblingWindower`` of one minute ->
  ``TestingSink``; ``run_main`` (one worker); timed around ``run_main``.
- the limit: a plain loop over the events into a dict keyed by (key, window
  start), which is its result (no result objects, no datetimes).

Each side's result is checked against the limit's (same counts) after its clock
has stopped. Rates are items per second of the process's CPU time (one thread does
each side's work), as section 3's: on a shared machine the wall clock also counts
the time others' work held the core (a row gives it too). Medians of rounds
interleaved, the order flipping each round. Goals: items/s >= 1.5x Bytewax and
>= 0.5 of the dict loop. Where portwright's time goes:
its Window's core alone, and the time Python's garbage collector ran during its
side (``gc.callbacks``).

Usage on its own: ``python -m bench.windows [events] [rounds]``.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from random import Random
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict

from .table import Goal, Row, median

# The runtime every emitted project carries, as pipeline_throughput.py imports it.
RUNTIME = Path(__file__).resolve().parents[1] / "templates/project/package"
if str(RUNTIME) not in sys.path:
    sys.path.insert(0, str(RUNTIME))

SECTION = "11 windows"
KEYS = 1_000
SIZE = 60.0
SPAN = 3_600.0
#: the grace on both sides (Bytewax's ``wait_for_system_duration``): with none,
#: Bytewax counts a few items late, its watermark also moving with the system
#: clock while it works
GRACE = 1.0
T0 = datetime(2026, 1, 1, tzinfo=UTC)
Log = Callable[[str], None]
Event = tuple[str, datetime]
Counts = dict[tuple[str, float], int]
#: what a side hands back, once its clock has stopped: its results as counts (the
#: conversion is the check's, not the side's work, so it is not timed)
Check = Callable[[], Counts]


class CountWindow(BaseModel):
    """A window's result typed as a generated service types it (``<Name>Window``
    of a window with ``aggregate: count`` over a ``str`` key)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, regex_engine="python-re", validate_default=True
    )

    key: str
    start: datetime
    end: datetime
    value: int


class Collector:
    """The seconds Python's garbage collector runs while this is entered."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __enter__(self) -> Collector:
        gc.callbacks.append(self._observe)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._observe)

    def _observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started


def events(count: int, seed: int = 16) -> list[Event]:
    """``count`` events of ``KEYS`` keys, in time order over ``SPAN`` seconds."""
    rng = Random(seed)
    keys = [f"k{n}" for n in range(KEYS)]
    step = SPAN / count
    return [
        (keys[rng.randrange(KEYS)], T0 + timedelta(seconds=n * step))
        for n in range(count)
    ]


def dict_loop(items: list[Event]) -> Counts:
    """The limit: one dict of counts by (key, window start), which is the result."""
    counts: dict[tuple[str, float], int] = {}
    get = counts.get
    for key, moment in items:
        t = moment.timestamp()
        window = (key, t - t % SIZE)
        counts[window] = get(window, 0) + 1
    return counts


def limit(items: list[Event]) -> Check:
    """The dict loop as a side: its dict is already the counts."""
    counts = dict_loop(items)
    return lambda: counts


def portwright(items: list[Event]) -> Check:
    """Source -> Window(count) -> Sink, in one service, drained."""
    from runtime import Service, Sink, Source, Window

    class Events(Source):
        def generate(self) -> Any:
            return iter(items)

    class Keep(Sink):
        def __init__(self) -> None:
            super().__init__("keep")
            self.results: list[Any] = []

        def consume(self, item: Any) -> None:
            self.results.append(item)

    service = Service("windows")
    service.add(Events("events"))
    window = service.add(
        Window(
            "count",
            size=SIZE,
            grace=GRACE,
            time=itemgetter(1),
            key=itemgetter(0),
            schema=CountWindow,
        )
    )
    keep = service.add(Keep())
    service.connect("events.out", "count.in", buffer_size=4096)
    service.connect("count.out", "keep.in", buffer_size=4096)

    async def run() -> None:
        async with service.running():
            # The source ends by itself; the window closes the rest at drain.
            while window.inputs["in"].age.count < len(items):
                await anyio.sleep(0.01)

    anyio.run(run)
    return lambda: {(r.key, r.start.timestamp()): r.value for r in keep.results}


def core(items: list[Event]) -> Check:
    """The Window's synchronous core alone: batches of 256 ready entries (made
    before the clock starts), no source, no event loop, then every window closed."""
    from runtime import ManualClock, Window
    from runtime.envelope import Envelope

    window = Window(
        "count",
        size=SIZE,
        grace=GRACE,
        time=itemgetter(1),
        key=itemgetter(0),
        schema=CountWindow,
        clock=ManualClock(),
    )
    entries = [(0.0, Envelope.start(item, 0.0)) for item in items]
    key = itemgetter(0)
    started, cpu = time.perf_counter(), time.process_time()
    for first in range(0, len(entries), 256):
        window._add_all(entries[first : first + 256], key)
    window._close_all()
    CORE_SECONDS.append((time.process_time() - cpu, time.perf_counter() - started))
    results = [envelope.item for _, envelope in window._entries]
    return lambda: {(r.key, r.start.timestamp()): r.value for r in results}


#: the CPU and wall time of each ``core`` run's timed part (its entries are made
#: outside it)
CORE_SECONDS: list[tuple[float, float]] = []


def bytewax(items: list[Event]) -> Check:
    """TestingSource -> count_window (event time, tumbling) -> TestingSink."""
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.operators.windowing import EventClock, TumblingWindower, count_window
    from bytewax.testing import TestingSink, TestingSource, run_main

    flow = Dataflow("windows")
    up = op.input("in", flow, TestingSource(items, batch_size=1000))
    clock = EventClock(itemgetter(1), wait_for_system_duration=timedelta(seconds=GRACE))
    windower = TumblingWindower(length=timedelta(seconds=SIZE), align_to=T0)
    counted = count_window("count", up, clock, windower, itemgetter(0))
    results: list[tuple[str, tuple[int, int]]] = []
    op.output("out", counted.down, TestingSink(results))
    run_main(flow)
    base = T0.timestamp()
    return lambda: {(key, base + wid * SIZE): count for key, (wid, count) in results}


RUNNERS: dict[str, Callable[[list[Event]], Check]] = {
    "portwright": portwright,
    "bytewax": bytewax,
    "dict loop": limit,
    "window core": core,
}


#: per side, the share of each run's wall time that the garbage collector ran
COLLECTED: dict[str, list[float]] = {}
#: per side, each run's items per second of wall-clock time
WALL: dict[str, list[float]] = {}


def measure(name: str, items: list[Event], expected: Counts) -> float:
    """One run's items per second of CPU time (the process's: one thread does
    the work on every side); its counts must be the limit's (checked after the
    clock has stopped). The wall-clock rate goes to ``WALL``."""
    with Collector() as collector:
        started, cpu = time.perf_counter(), time.process_time()
        check = RUNNERS[name](items)
        cpu = time.process_time() - cpu
        took = time.perf_counter() - started
    COLLECTED.setdefault(name, []).append(collector.seconds / took)
    if name == "window core":
        cpu, took = CORE_SECONDS.pop()
    WALL.setdefault(name, []).append(len(items) / took)
    if check() != expected:
        raise RuntimeError(f"{name}: counts differ from the dict loop's")
    return len(items) / cpu


def run(work: Path, *, quick: bool, log: Log) -> list[Row]:
    """Tumbling count per key: portwright vs Bytewax vs the dict loop."""
    count = 20_000 if quick else 1_000_000
    rounds = 1 if quick else 5
    items = events(count)
    expected = dict_loop(items)
    try:
        import bytewax as _  # noqa: F401

        names = list(RUNNERS)
    except ImportError:
        names = ["portwright", "dict loop", "window core"]
    rates: dict[str, list[float]] = {name: [] for name in names}
    warm = items[: max(count // 20, 1_000)]
    for name in names:  # warm-up, not counted
        measure(name, warm, dict_loop(warm))
    COLLECTED.clear()
    WALL.clear()
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            rates[name].append(measure(name, items, expected))
        log(
            f"windows: round {r + 1}/{rounds}, items/s of CPU time (wall): "
            + ", ".join(f"{n} {rates[n][-1]:,.0f} ({WALL[n][-1]:,.0f})" for n in names)
        )
    rate = {name: median(values) for name, values in rates.items()}
    wall = {name: median(values) for name, values in WALL.items()}
    note = (
        f"{count:,} events, {KEYS:,} keys, {SIZE:g} s windows over {SPAN:g} s, "
        f"{len(expected):,} windows, {rounds} rounds"
    )
    rows = [
        Row(
            SECTION,
            "tumbling count per key: items/s vs the dict loop (CPU time)",
            rate["portwright"],
            "items/s",
            rate["dict loop"],
            "a hand-written dict loop",
            Goal(">=", 0.5),
            note=note,
        ),
        Row(
            SECTION,
            "the same by the wall clock (a shared machine: what others run counts)",
            wall["portwright"],
            "items/s",
            wall["dict loop"],
            "a hand-written dict loop",
            note=note,
        ),
    ]
    rows.append(
        Row(
            SECTION,
            "the Window's core alone (no source, no loop): items/s (CPU) vs the loop",
            rate["window core"],
            "items/s",
            rate["dict loop"],
            "a hand-written dict loop",
            note="where the time goes: the rest is the hop and the collector",
        )
    )
    collected = {name: median(COLLECTED[name]) * 100 for name in COLLECTED}
    rows.append(
        Row(
            SECTION,
            "portwright: % of its run in Python's garbage collector",
            collected["portwright"],
            "%",
            note=f"where the time goes; the dict loop: {collected['dict loop']:.1f} %",
        )
    )
    if "bytewax" in rate:
        rows.append(
            Row(
                SECTION,
                "tumbling count per key: items/s vs Bytewax (CPU time)",
                rate["portwright"],
                "items/s",
                rate["bytewax"],
                "Bytewax 0.21 count_window",
                Goal(">=", 1.5),
                note=note,
            )
        )
    else:
        rows.append(
            Row(
                SECTION,
                "tumbling count per key: items/s vs Bytewax",
                None,
                "items/s",
                note="not measured: bytewax is not installed (pip install -e '.[dev]')",
            )
        )
    return rows


if __name__ == "__main__":
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    data = events(total)
    wanted = dict_loop(data)
    for _ in range(repeat):
        for label in RUNNERS:
            print(f"{label}: {measure(label, data, wanted):,.0f} items/s")
