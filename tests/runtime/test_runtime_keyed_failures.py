"""A failing item of a keyed input over Redis keeps its key's order (issue #15).

The service of tests/runtime/keyed_failure_replica.py: this process runs the source
(``ticks``) and the sink (``keep``); each replica of the keyed transformer ``work``
is a process of its own. Leases are short (1.5 s); every wait is on a condition
with a generous deadline, never on a duration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import runtime

from tests.redisenv import (
    client_for_url,
    delete_prefixed,
    redis_url,
    stream_key,
    unique_prefix,
)
from tests.runtime.keyed_failure_replica import (
    BROKEN,
    FLAKY,
    POISON,
    build,
    settings_for,
)
from tests.runtime.partition_replica import Done, Tick

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "templates" / "project" / "package"
SCRIPT = ROOT / "tests" / "runtime" / "keyed_failure_replica.py"
KEYS = 20
PER_KEY = 30
PARTITIONS = 4
TTL_MS = 1500
DEADLINE_S = 90


class Ticks(runtime.Source):
    """``PER_KEY`` ticks of each of ``KEYS`` accounts, interleaved, once ``gate``
    opens."""

    def __init__(self, name: str) -> None:
        super().__init__(name, outputs={"out": Tick})
        self.gate = anyio.Event()

    async def generate(self) -> Any:
        await self.gate.wait()
        for n in range(KEYS * PER_KEY):
            yield Tick(account=f"acct-{n % KEYS}", seq=n // KEYS)


class Keep(runtime.Sink):
    """Every item, in the order it arrived."""

    def __init__(self, name: str) -> None:
        super().__init__(name, inputs={"in": Done})
        self.seen: dict[str, list[int]] = {}

    def consume(self, item: Done) -> None:
        self.seen.setdefault(item.account, []).append(item.seq)

    def holds(self, want: dict[str, list[int]]) -> bool:
        """Whether every item of ``want`` arrived (in whatever order)."""
        return all(set(seqs) <= set(self.seen.get(k, ())) for k, seqs in want.items())

    def firsts(self) -> dict[str, list[int]]:
        """Each key's items in the order they first arrived (a redelivery may
        repeat what its key already showed)."""
        return {k: list(dict.fromkeys(seqs)) for k, seqs in self.seen.items()}


class Replicas:
    """The replicas of ``work``, each a process; their logs in ``folder``."""

    def __init__(self, url: str, prefix: str, folder: Path) -> None:
        self.url, self.prefix, self.folder = url, prefix, folder
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, mode: str, concurrency: int, takeovers: int) -> None:
        env = {**os.environ, "PYTHONPATH": f"{PACKAGE}{os.pathsep}{ROOT}"}
        log = (self.folder / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, str(SCRIPT), self.url, self.prefix, name, str(TTL_MS),
             str(PARTITIONS), mode, str(concurrency), str(takeovers)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Replicas]:
    url = redis_url()
    cluster = Replicas(url, unique_prefix(), tmp_path)
    yield cluster
    cluster.stop_all()
    delete_prefixed(url, cluster.prefix)


def streams(url: str, prefix: str) -> list[str]:
    return [
        stream_key(url, prefix, f"kf.ticks.out.work.in.p{n}") for n in range(PARTITIONS)
    ]


def lease_owners(url: str, prefix: str) -> set[str | None]:
    with client_for_url(url) as client:
        owners = [
            client.hget(f"{s}.lease.work.in", "owner") for s in streams(url, prefix)
        ]
    return {None if o is None else o.decode() for o in owners}


def dead_letters(url: str, prefix: str) -> list[dict[str, Any]]:
    with client_for_url(url) as client:
        return [
            json.loads(fields[b"e"])
            for stream in streams(url, prefix)
            for _, fields in client.xrange(f"{stream}.dlq")
        ]


def pending(url: str, prefix: str) -> int:
    with client_for_url(url) as client:
        return sum(
            int(client.xpending(s, "work.in")["pending"])
            for s in streams(url, prefix)
            if client.exists(s)
        )


async def until(condition: Callable[[], bool], what: str) -> None:
    with anyio.move_on_after(DEADLINE_S):
        while not condition():
            await anyio.sleep(0.05)
        return
    pytest.fail(f"gave up waiting: {what}")


def expected(dead: set[tuple[str, int]]) -> dict[str, list[int]]:
    return {
        f"acct-{k}": [s for s in range(PER_KEY) if (f"acct-{k}", s) not in dead]
        for k in range(KEYS)
    }


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_a_failing_item_is_tried_again_before_the_later_items_of_its_key(
    replicas: Replicas, concurrency: int
) -> None:
    # acct-3's item 2 fails twice, then passes; acct-7's item 2 always fails. With
    # concurrency 4 the window runs other keys meanwhile, and the retry keeps its
    # key inside.
    url, prefix = replicas.url, replicas.prefix
    ticks, keep = Ticks("ticks"), Keep("keep")
    settings = settings_for(url, prefix, "main", TTL_MS, "ticks,keep", takeovers=10)
    service = build(settings, PARTITIONS, ticks, keep)
    replicas.start("r-a", "flaky", concurrency, 10)
    replicas.start("r-b", "flaky", concurrency, 10)
    want = expected({BROKEN})
    async with service.running():
        await until(
            lambda: lease_owners(url, prefix) == {"r-a", "r-b"},
            "r-a and r-b share the partitions",
        )
        ticks.gate.set()
        await until(lambda: keep.holds(want), "every item but the broken one")
        await until(lambda: len(dead_letters(url, prefix)) >= 1, "a dead letter")
        await until(lambda: pending(url, prefix) == 0, "nothing pending")
    # every key's items in order, the flaky one among them; the broken one is the
    # one exception to its key's order
    assert keep.firsts() == want
    assert FLAKY[1] in keep.seen[FLAKY[0]]
    (letter,) = dead_letters(url, prefix)
    payload = letter["envelope"]["payload"]
    assert (payload["account"], payload["seq"]) == BROKEN
    assert letter["attempts"] == 3
    assert letter["error"]["type"] == "ValueError"
    assert "in place" in letter["reason"]
    logs = replicas.log("r-a") + replicas.log("r-b")
    assert "tried again in place" in logs


class Picky(runtime.Transformer):
    """Passes each tick on; raises on ``acct-3``'s item 2, every time."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, inputs={"in": Tick}, outputs={"out": Tick}, **options)
        self.calls = 0

    async def transform(self, item: Tick) -> Tick:
        self.calls += 1
        await anyio.sleep(0)
        if (item.account, item.seq) == FLAKY:
            raise ValueError("cannot")
        return item


class Listed(runtime.Source):
    def __init__(self, name: str, items: list[Tick]) -> None:
        super().__init__(name, outputs={"out": Tick})
        self.items = items

    async def generate(self) -> Any:
        for item in self.items:
            yield item


class Kept(runtime.Sink):
    def __init__(self, name: str) -> None:
        super().__init__(name, inputs={"in": Tick})
        self.items: list[Tick] = []

    def consume(self, item: Tick) -> None:
        self.items.append(item)


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_in_memory_a_failed_item_is_reported_once_and_its_key_goes_on(
    concurrency: int,
) -> None:
    # The memory transport tries nothing again: the failed item is reported and
    # dropped, the one exception to its key's order, as a dead letter is on Redis.
    ticks = [Tick(account=f"acct-{n % 5}", seq=n // 5) for n in range(50)]
    picky = Picky("work", concurrency=concurrency)
    service = runtime.Service("kfm")
    service.add(Listed("ticks", ticks))
    service.add(picky)
    kept = service.add(Kept("keep"))
    service.connect("ticks.out", "work.in", buffer_size=8, key="account")
    service.connect("work.out", "keep.in", buffer_size=8)
    with anyio.fail_after(DEADLINE_S):
        await service.run()
    assert picky.calls == 50  # tried once
    assert picky.inputs["in"].errors == 1
    by_key: dict[str, list[int]] = {}
    for item in kept.items:
        by_key.setdefault(item.account, []).append(item.seq)
    assert by_key == {
        f"acct-{k}": [s for s in range(10) if (f"acct-{k}", s) != FLAKY]
        for k in range(5)
    }


async def test_an_item_that_kills_every_replica_that_takes_it_is_dead_lettered(
    replicas: Replicas,
) -> None:
    # acct-5's item 3 ends whichever replica takes it (os._exit); the test starts a
    # new replica for each one that died. With max_takeovers 3: taken over three
    # times in a row as the entry in hand, then dead-lettered at the next takeover
    # (it may have been read, and claimed behind an older entry, once each before).
    url, prefix = replicas.url, replicas.prefix
    ticks, keep = Ticks("ticks"), Keep("keep")
    settings = settings_for(url, prefix, "main", TTL_MS, "ticks,keep", takeovers=3)
    service = build(settings, PARTITIONS, ticks, keep, mode="poison")
    started = 0

    def start() -> None:
        nonlocal started
        started += 1
        replicas.start(f"r-{started}", "poison", 1, 3)

    async def replace_the_dead() -> None:
        while True:
            dead = [p for p in replicas.processes.values() if p.returncode is None]
            for process in dead:
                if process.poll() is not None:
                    start()
            await anyio.sleep(0.05)

    start()
    start()
    want = expected({POISON})
    async with service.running(), anyio.create_task_group() as group:
        await until(lambda: len(lease_owners(url, prefix)) == 2, "two owners")
        group.start_soon(replace_the_dead)
        ticks.gate.set()
        await until(lambda: len(dead_letters(url, prefix)) >= 1, "a dead letter")
        await until(lambda: keep.holds(want), "every item but the poison")
        await until(lambda: pending(url, prefix) == 0, "nothing pending")
        group.cancel_scope.cancel()
    letters = dead_letters(url, prefix)
    assert [d["envelope"]["payload"] for d in letters] == [
        {"account": POISON[0], "seq": POISON[1]}
    ]
    assert keep.firsts() == want
    (letter,) = letters
    payload = letter["envelope"]["payload"]
    assert (payload["account"], payload["seq"]) == POISON
    assert "taken over" in letter["reason"]
    died = sum(p.returncode == 3 for p in replicas.processes.values())
    # in hand at max_takeovers takeovers in a row, each a death, after the death
    # that left it pending; before that it may have been claimed behind an older
    # entry that its replica had not acknowledged yet, each such time a death too
    assert "taken over 4 times in a row" in letter["reason"]
    assert died >= 4


class Blocking(runtime.Transformer):
    """A plain def in worker threads (``blocking``): fails as ``flaky`` says."""

    def __init__(self, name: str) -> None:
        super().__init__(
            name, inputs={"in": Tick}, outputs={"out": Done}, blocking=True
        )
        self.failures: dict[tuple[str, int], int] = {}

    def transform(self, item: Tick) -> Done:
        which = (item.account, item.seq)
        if which == BROKEN or (which == FLAKY and self.failures.get(which, 0) < 2):
            self.failures[which] = self.failures.get(which, 0) + 1
            raise ValueError(f"cannot handle {item.account}/{item.seq}")
        return Done(account=item.account, seq=item.seq, by="solo")


async def test_blocking_code_is_tried_again_in_its_worker_thread() -> None:
    # One process, over Redis: the window's blocking path waits in the thread.
    url, prefix = redis_url(), unique_prefix()
    ticks, keep = Ticks("ticks"), Keep("keep")
    ticks.gate.set()
    settings = settings_for(url, prefix, "solo", TTL_MS, "", takeovers=10)
    service = runtime.Service("kf", settings=settings)
    service.add(ticks)
    service.add(Blocking("work"))
    service.add(keep)
    service.connect(
        "ticks.out", "work.in", transport="redis", key="account",
        partitions=PARTITIONS, buffer_size=64,
    )  # fmt: skip
    service.connect("work.out", "keep.in", transport="redis", buffer_size=256)
    try:
        with anyio.fail_after(DEADLINE_S):
            report = await service.run()
        assert report.completed
        assert keep.firsts() == expected({BROKEN})
        (letter,) = dead_letters(url, prefix)
        assert (letter["attempts"], letter["error"]["type"]) == (3, "ValueError")
    finally:
        delete_prefixed(url, prefix)


class BatchedKeep(runtime.Sink):
    """Takes lists of ticks; a list holding the flaky one fails twice."""

    def __init__(self, name: str) -> None:
        super().__init__(name, inputs={"in": Tick}, batch=runtime.Batch(16, 0.01))
        self.seen: dict[str, list[int]] = {}
        self.failures = 0

    def consume(self, items: list[Tick]) -> None:
        if any((t.account, t.seq) == FLAKY for t in items) and self.failures < 2:
            self.failures += 1
            raise ValueError("cannot take this batch")
        for tick in items:
            self.seen.setdefault(tick.account, []).append(tick.seq)


async def test_a_batch_that_failed_is_tried_again_whole_before_the_next() -> None:
    url, prefix = redis_url(), unique_prefix()
    ticks, keep = Ticks("ticks"), BatchedKeep("keep")
    ticks.gate.set()
    settings = settings_for(url, prefix, "solo", TTL_MS, "", takeovers=10)
    service = runtime.Service("kb", settings=settings)
    service.add(ticks)
    service.add(keep)
    service.connect(
        "ticks.out", "keep.in", transport="redis", key="account",
        partitions=PARTITIONS, buffer_size=64,
    )  # fmt: skip
    try:
        with anyio.fail_after(DEADLINE_S):
            report = await service.run()
        assert report.completed
        assert keep.failures == 2
        assert keep.seen == expected(set())  # every key in order, nothing twice
    finally:
        delete_prefixed(url, prefix)
