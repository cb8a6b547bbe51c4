"""Issue #16: a tumbling count per key, one process: portwright's Window against
Bytewax 0.21 and against a hand-written dict loop (the Python limit).

The same events for all three: ``(key, time)`` tuples (1,000 keys, an aware
``datetime`` each, in time order over an hour), counted per key in one-minute
tumbling windows on event time, every window's count kept as a result:

- portwright: a ``Source`` yields the events into a ``Window`` (``size=60``,
  ``grace=1``, ``time`` and ``key`` functions, built-in ``count``) whose ``out`` feeds a
  ``Sink`` that keeps the results; timed from start to the drained end (the last
  windows close at drain).
- Bytewax: ``TestingSource(events, batch_size=1000)`` (its documented way to move
  items in batches) -> ``count_window`` with an ``EventClock``
  (``wait_for_system_duration`` one second: the same grace) and a ``TumblingWindower`` of one minute ->
  ``TestingSink``; ``run_main`` (one worker); timed around ``run_main``.
- the limit: a plain loop over the events into a dict keyed by (key, window
  start), then the list of results.

Each checks its own result against the limit's (same counts). Medians of rounds
interleaved, the order flipping each round. Goals: items/s >= 1.5x Bytewax and
>= 0.5 of the dict loop.

Usage on its own: ``python -m bench.windows [events] [rounds]``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from random import Random
from typing import Any

import anyio

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
    """The limit: one dict of counts, then the results."""
    counts: dict[tuple[str, float], int] = {}
    get = counts.get
    for key, moment in items:
        t = moment.timestamp()
        window = (key, t - t % SIZE)
        counts[window] = get(window, 0) + 1
    return dict(counts.items())


def portwright(items: list[Event]) -> Counts:
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
        Window("count", size=SIZE, grace=GRACE, time=itemgetter(1), key=itemgetter(0))
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
    return {(r.key, r.start.timestamp()): r.value for r in keep.results}


def core(items: list[Event]) -> Counts:
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
        clock=ManualClock(),
    )
    entries = [(0.0, Envelope.start(item, 0.0)) for item in items]
    key = itemgetter(0)
    started = time.perf_counter()
    for first in range(0, len(entries), 256):
        window._add_all(entries[first : first + 256], key)
    window._close_all()
    CORE_SECONDS.append(time.perf_counter() - started)
    results = (envelope.item for _, envelope in window._entries)
    return {(r.key, r.start.timestamp()): r.value for r in results}


#: the timed part of each ``core`` run (its entries are made outside it)
CORE_SECONDS: list[float] = []


def bytewax(items: list[Event]) -> Counts:
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
    return {(key, base + wid * SIZE): count for key, (wid, count) in results}


RUNNERS: dict[str, Callable[[list[Event]], Counts]] = {
    "portwright": portwright,
    "bytewax": bytewax,
    "dict loop": dict_loop,
    "window core": core,
}


def measure(name: str, items: list[Event], expected: Counts) -> float:
    """One run's items/s; its counts must be the limit's."""
    started = time.perf_counter()
    got = RUNNERS[name](items)
    took = time.perf_counter() - started
    if name == "window core":
        took = CORE_SECONDS.pop()
    if got != expected:
        raise RuntimeError(f"{name}: counts differ from the dict loop's")
    return len(items) / took


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
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            rates[name].append(measure(name, items, expected))
        log(
            f"windows: round {r + 1}/{rounds}: "
            + ", ".join(f"{n} {rates[n][-1]:,.0f}/s" for n in names)
        )
    rate = {name: median(values) for name, values in rates.items()}
    note = (
        f"{count:,} events, {KEYS:,} keys, {SIZE:g} s windows over {SPAN:g} s, "
        f"{len(expected):,} windows, {rounds} rounds"
    )
    rows = [
        Row(
            SECTION,
            "tumbling count per key: items/s vs the dict loop",
            rate["portwright"],
            "items/s",
            rate["dict loop"],
            "a hand-written dict loop",
            Goal(">=", 0.5),
            note=note,
        )
    ]
    rows.append(
        Row(
            SECTION,
            "the Window's core alone (no source, no loop): items/s vs the dict loop",
            rate["window core"],
            "items/s",
            rate["dict loop"],
            "a hand-written dict loop",
            note="where the time goes: the rest is the source's hop",
        )
    )
    if "bytewax" in rate:
        rows.append(
            Row(
                SECTION,
                "tumbling count per key: items/s vs Bytewax",
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
    limit = dict_loop(data)
    for _ in range(repeat):
        for label in RUNNERS:
            print(f"{label}: {measure(label, data, limit):,.0f} items/s")
