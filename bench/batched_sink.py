"""A sink that writes to SQLite: batched (``batch: {max_items: 500}``) against one
insert per item, both through the runtime every emitted project carries.

A source sends N rows (an int and a short text) to a sink. The per-item sink runs
one ``INSERT`` and one ``COMMIT`` per item; the batched one gets up to 500 items per
call (what is buffered: ``max_wait_ms: 0``) and runs one ``executemany`` and one
``COMMIT`` per batch. The database is a file in a temporary folder, measured twice:
with SQLite's default rollback journal (``synchronous=FULL``: every commit waits for
the disk; what ``sqlite3.connect`` gives), and in WAL mode with
``synchronous=NORMAL`` (a commit does not wait for the disk: the usual tuning of a
service's local store, where a per-item commit costs least). Rounds alternate the
two sinks, flipping the order each round; figures are medians. Goal: batched >= 10x.

    python -m bench.batched_sink [quick]
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(
    0, str(Path(__file__).resolve().parents[1] / "templates" / "project" / "package")
)

import runtime as rt

from .table import Goal, Row, median

SECTION = "6 batched sink"
MAX_ITEMS = 500
#: (label, WAL) of each journal, and how many times fewer items a per-item round
#: takes than a batched one (a commit that waits for the disk is slow)
JOURNALS = (
    ("default journal", False, 100),
    ("WAL, synchronous=NORMAL", True, 5),
)
Log = Callable[[str], None]


class Rows(rt.Source):
    """Sends ``count`` rows."""

    def __init__(self, count: int) -> None:
        super().__init__("rows")
        self.count = count

    async def generate(self) -> AsyncIterator[Any]:
        for number in range(self.count):
            yield (number, f"reading {number}")


class Store(rt.Sink):
    """Keeps rows in SQLite: one transaction per item, or one per batch."""

    def __init__(self, path: Path, *, batched: bool, wal: bool) -> None:
        super().__init__("store", batch=rt.Batch(MAX_ITEMS) if batched else None)
        self.path = path
        self.wal = wal
        self.db: sqlite3.Connection | None = None

    async def setup(self) -> None:
        db = self.db = sqlite3.connect(self.path)
        if self.wal:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS reading (id INTEGER, text TEXT)")
        db.execute("DELETE FROM reading")
        db.commit()

    def consume(self, item: Any, /) -> None:
        assert self.db is not None
        if self.batching is None:
            self.db.execute("INSERT INTO reading VALUES (?, ?)", item)
        else:
            self.db.executemany("INSERT INTO reading VALUES (?, ?)", item)
        self.db.commit()

    async def cleanup(self) -> None:
        if self.db is not None:
            self.db.close()

    def stored(self) -> int:
        """How many rows the table holds."""
        with sqlite3.connect(self.path) as db:
            (count,) = db.execute("SELECT COUNT(*) FROM reading").fetchone()
        return int(count)


def measure(path: Path, count: int, *, batched: bool, wal: bool) -> float:
    """Items per second through source -> sink; every row checked stored."""
    store = Store(path, batched=batched, wal=wal)
    service = rt.Service("bench")
    service.add(Rows(count))
    service.add(store)
    service.connect("rows.out", "store.in")
    started = time.perf_counter()
    anyio.run(service.run)
    took = time.perf_counter() - started
    if store.stored() != count:
        raise RuntimeError(f"stored {store.stored()} rows of {count}")
    return count / took


def run(work: Path, *, quick: bool, log: Log) -> list[Row]:
    """Per journal: the batched sink's items/s against one insert per item."""
    items = 2_000 if quick else 50_000
    rounds = 1 if quick else 5
    rows = []
    for label, wal, fewer in JOURNALS:
        path = work / f"bench-{'wal' if wal else 'default'}.sqlite"
        rates: dict[bool, list[float]] = {True: [], False: []}
        for r in range(rounds):
            order = [True, False] if r % 2 == 0 else [False, True]
            for batched in order:
                count = items if batched else max(items // fewer, 10)
                rates[batched].append(measure(path, count, batched=batched, wal=wal))
            log(f"batched sink, {label}: round {r + 1}/{rounds} done")
        rows.append(
            Row(
                SECTION,
                f"SQLite ({label}), batch max_items {MAX_ITEMS}: items/s vs one "
                "insert per item",
                median(rates[True]),
                "items/s",
                baseline=median(rates[False]),
                baseline_label="an insert and a commit per item",
                goal=Goal(">=", 10),
            )
        )
    return rows


def main() -> None:
    """Print the rows: ``python -m bench.batched_sink [quick]``."""
    quick = sys.argv[1:] == ["quick"]
    with tempfile.TemporaryDirectory() as folder:
        for row in run(Path(folder), quick=quick, log=print):
            print(" | ".join(row.cells()))


if __name__ == "__main__":
    main()
