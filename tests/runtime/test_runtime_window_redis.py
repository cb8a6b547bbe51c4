"""A window over a keyed Redis connection: state per partition in Redis, updated in
the script that acknowledges the input (issue #16).

The service of tests/runtime/window_replica.py: this process runs the source
(``events``: accounts spread over the partitions, fixed event times) and the sink
(``keep``); each replica of the window ``counts`` is a process of its own, killed
with SIGKILL (from here, or by itself at a chosen step of a commit). The counts per
(account, window) must equal a plain Python computation exactly. Every test runs for
the shapes the replica knows (``SHAPES``): tumbling windows of time, closed by
time, none left open; count windows of ``COUNT`` items, each key's last few items
left open in Redis, that partial count checked too; sliding windows (one per item,
the ``SLIDE_S`` before it: per (account, window end)), closed by time, their
windows and kept items all gone from Redis at the end (the paused replica's test:
tumbling and count only). Waits are on conditions with a generous deadline, never
on a duration.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
import runtime

from tests.redisenv import (
    client_for_url,
    delete_prefixed,
    redis_cluster_url,
    redis_url,
    stream_key,
    unique_prefix,
)
from tests.runtime.window_replica import (
    COUNT,
    SHAPES,
    SIZE_S,
    SLIDE_S,
    Counted,
    Event,
    build,
    settings_for,
)

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGE = ROOT / "templates" / "project" / "package"
SCRIPT = ROOT / "tests" / "runtime" / "window_replica.py"
KEYS = 100
PARTITIONS = 4
TTL_MS = 1500
DEADLINE_S = 60
#: the steps a replica kills itself at (window_replica.py): before and after its 5th
#: commit, at its 2nd load
STEPS = ("before:5", "after:5", "load:2")
#: the events' times: one every STEP_S from T0 (whole windows of SIZE_S)
T0 = 1_700_000_000.0
STEP_S = 0.002


def event(n: int) -> Event:
    """The ``n``-th event: its account and its fixed time."""
    return Event(
        account=f"acct-{n % KEYS}",
        seq=n,
        at=datetime.fromtimestamp(T0 + n * STEP_S, UTC),
    )


def reference(count: int, shape: str) -> dict[tuple[str, float], int]:
    """The counts per (account, window start), in plain Python: by time, or (shape
    ``count``) every ``COUNT`` items of an account in order, starting at the first
    one's time (the partial windows left aside: they stay open); shape ``sliding``:
    per (account, window end), for each time ``t`` of an account's item, its items
    in ``(t - SLIDE_S, t]``."""
    counts: Counter[tuple[str, float]] = Counter()
    seen: Counter[str] = Counter()
    starts: dict[str, float] = {}
    if shape == "sliding":
        times: dict[str, list[float]] = {}
        for n in range(count):
            e = event(n)
            times.setdefault(e.account, []).append(e.at.timestamp())
        for account, ts in times.items():  # each in order: one item every 0.2 s
            for t in ts:
                inside = bisect_right(ts, t) - bisect_right(ts, t - SLIDE_S)
                counts[(account, t)] = inside
        return dict(counts)
    for n in range(count):
        e = event(n)
        t = e.at.timestamp()
        if shape == "tumbling":
            counts[(e.account, t - t % SIZE_S)] += 1
            continue
        if seen[e.account] % COUNT == 0:
            starts[e.account] = t
        seen[e.account] += 1
        if seen[e.account] % COUNT == 0:
            counts[(e.account, starts[e.account])] = COUNT
    return dict(counts)


def fewer_if_sliding(count: int, shape: str) -> int:
    """``count`` events, or fewer for sliding windows: each item is in a few
    windows and kept itself, so a commit writes several times as much; fewer
    events still kill a replica midway and at each step (and keep CI short)."""
    return count * 2 // 5 if shape == "sliding" else count


def left_open(count: int, shape: str) -> dict[str, int]:
    """The windows left open at the end, per account: the items in each (count
    windows: the last ones of each account, fewer than ``COUNT``)."""
    if shape != "count":
        return {}
    per_key = Counter(event(n).account for n in range(count))
    return {k: v % COUNT for k, v in per_key.items() if v % COUNT}


class Events(runtime.Source):
    """``count`` events; from ``count // 2`` on, they wait for ``gate``."""

    def __init__(self, name: str, count: int) -> None:
        super().__init__(name, outputs={"out": Event})
        self.count = count
        self.gate = anyio.Event()

    async def generate(self) -> Any:
        for n in range(self.count):
            if n == self.count // 2:
                await self.gate.wait()
            yield event(n)


class Keep(runtime.Sink):
    """Every window's count, as it came (a copy twice is kept twice)."""

    def __init__(self, name: str, shape: str) -> None:
        super().__init__(name, inputs={"in": Counted})
        self.items: list[Counted] = []
        self.by_end = shape == "sliding"  # a sliding window is its end's

    def consume(self, item: Counted) -> None:
        self.items.append(item)

    def window(self, item: Counted) -> tuple[str, float]:
        """The window of ``item``: its account, its start (sliding: its end)."""
        return item.key, (item.end if self.by_end else item.start).timestamp()

    def counts(self) -> dict[tuple[str, float], int]:
        return {self.window(i): i.value for i in self.items}

    def arrived(self) -> int:
        return len(self.items)


class Replicas:
    """The replicas of ``counts``, each a process; their logs in ``folder``."""

    def __init__(self, url: str, prefix: str, folder: Path, shape: str) -> None:
        self.url, self.prefix, self.folder = url, prefix, folder
        self.shape = shape
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, die: str = "") -> None:
        env = {**os.environ, "PYTHONPATH": f"{PACKAGE}{os.pathsep}{ROOT}"}
        env.pop("WINDOW_REPLICA_DIE", None)
        if die:
            env["WINDOW_REPLICA_DIE"] = die
        log = (self.folder / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            [sys.executable, str(SCRIPT), self.url, self.prefix, name,
             str(TTL_MS), str(PARTITIONS), self.shape],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def kill(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGKILL)
        self.processes[name].wait(timeout=15)

    def signal(self, name: str, number: int) -> None:
        self.processes[name].send_signal(number)

    def killed(self, name: str) -> bool:
        return self.processes[name].poll() == -signal.SIGKILL

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(params=["redis", "cluster"])
def url(request: pytest.FixtureRequest) -> str:
    return redis_url() if request.param == "redis" else redis_cluster_url()


@pytest.fixture(params=SHAPES)
def shape(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def replicas(url: str, shape: str, tmp_path: Path) -> Iterator[Replicas]:
    group = Replicas(url, unique_prefix(), tmp_path, shape)
    yield group
    group.stop_all()
    delete_prefixed(url, group.prefix)


def partition_streams(url: str, prefix: str) -> list[str]:
    return [
        stream_key(url, prefix, f"wr.events.out.counts.in.p{n}")
        for n in range(PARTITIONS)
    ]


def lease_owners(url: str, prefix: str) -> list[str | None]:
    with client_for_url(url) as client:
        owners = [
            client.hget(f"{stream}.lease.counts.in", "owner")
            for stream in partition_streams(url, prefix)
        ]
    return [None if o is None else o.decode() for o in owners]


def open_windows(url: str, prefix: str) -> dict[str, int]:
    """The count windows open in the partitions' state hashes: per account, the
    items in it (the accumulator, of ``count``, is the same number)."""
    found: dict[str, int] = {}
    with client_for_url(url) as client:
        for stream in partition_streams(url, prefix):
            for name, value in client.hgetall(f"{stream}.state.counts.in").items():
                if name != b"~watermark":
                    (key,), (acc, items, _, _) = json.loads(name), json.loads(value)
                    assert acc == items
                    found[key] = items
    return found


def state_fields(url: str, prefix: str) -> int:
    """Fields in the partitions' state hashes, the watermarks aside: open windows
    (and a sliding window's kept items)."""
    with client_for_url(url) as client:
        return sum(
            int(client.hlen(f"{stream}.state.counts.in"))
            - int(client.hexists(f"{stream}.state.counts.in", "~watermark"))
            for stream in partition_streams(url, prefix)
        )


def pending(url: str, prefix: str) -> int:
    with client_for_url(url) as client:
        return sum(
            int(client.xpending(s, "counts.in")["pending"])
            for s in partition_streams(url, prefix)
            if client.exists(s)
        )


async def until(
    condition: Callable[[], bool], what: str, detail: Callable[[], str] = str
) -> None:
    with anyio.move_on_after(DEADLINE_S):
        while not condition():
            await anyio.sleep(0.05)
        return
    pytest.fail(f"gave up waiting: {what} {detail()}")


def missing(
    url: str, prefix: str, keep: Keep, expected: dict[tuple[str, float], int]
) -> str:
    """What is missing, and where the windows stand (for a failure's message)."""
    gone = sorted(expected.keys() - keep.counts().keys())
    return (
        f"({len(gone)} windows missing, e.g. {gone[:3]}; open in Redis: "
        f"{state_fields(url, prefix)}; pending: {pending(url, prefix)}; owners: "
        f"{lease_owners(url, prefix)})"
    )


def main_service(
    url: str, prefix: str, count: int, shape: str
) -> tuple[runtime.Service, Events, Keep]:
    events, keep = Events("events", count), Keep("keep", shape)
    settings = settings_for(url, prefix, "main", TTL_MS, "events,keep")
    return build(settings, PARTITIONS, events, keep, shape), events, keep


async def settled(
    replicas: Replicas, keep: Keep, expected: dict[tuple[str, float], int], count: int
) -> None:
    """Every window sent, nothing pending, and what stays open in Redis exactly
    what should (nothing, or each account's last items)."""
    url, prefix = replicas.url, replicas.prefix
    await until(
        lambda: keep.counts().keys() >= expected.keys(),
        "every window",
        lambda: missing(url, prefix, keep, expected),
    )
    await until(lambda: pending(url, prefix) == 0, "nothing pending")
    still = left_open(count, replicas.shape)
    await until(
        lambda: state_fields(url, prefix) == len(still),
        f"{len(still)} windows left open",
    )
    if still:
        assert open_windows(url, prefix) == still


def assert_exact(url: str, keep: Keep, expected: dict[tuple[str, float], int]) -> None:
    """Each (account, window) counted exactly as the reference: on one Redis sent
    exactly once; on a Cluster (the outbox's relay: at least once) every copy the
    same."""
    assert keep.counts() == expected
    copies = Counter(keep.window(i) for i in keep.items)
    if "+cluster" not in url:
        assert max(copies.values()) == 1
    values: dict[tuple[str, float], set[int]] = {}
    for item in keep.items:
        values.setdefault(keep.window(item), set()).add(item.value)
    assert all(len(v) == 1 for v in values.values())


async def test_counts_are_exact_when_a_replica_is_killed_midway(
    url: str, replicas: Replicas
) -> None:
    count = fewer_if_sliding(50_000, replicas.shape)
    expected = reference(count, replicas.shape)
    prefix = replicas.prefix
    service, events, keep = main_service(url, prefix, count, replicas.shape)
    replicas.start("r-a")
    replicas.start("r-b")
    async with service.running():
        await until(
            lambda: set(lease_owners(url, prefix)) == {"r-a", "r-b"},
            "r-a and r-b share the partitions",
        )
        events.gate.set()  # the second half flows while r-a dies
        await until(lambda: keep.arrived() >= len(expected) // 3, "some windows")
        replicas.kill("r-a")
        await until(lambda: set(lease_owners(url, prefix)) == {"r-b"}, "r-b owns all")
        replicas.start("r-c")  # restarted (as a new member): it takes some back
        await until(lambda: "r-c" in lease_owners(url, prefix), "r-c takes some")
        await settled(replicas, keep, expected, count)
    assert_exact(url, keep, expected)


# Every step for tumbling windows; for count and sliding windows the kill just
# after a commit (the script and the takeover are the same for every shape: what
# differs is the state the script writes, which the midway kill and
# test_runtime_window_redis_state.py's takeover tests check for each shape).
@pytest.mark.parametrize(
    ("shape", "die"),
    [
        *(("tumbling", die) for die in STEPS),
        ("count", "after:5"),
        ("sliding", "after:5"),
    ],
)
async def test_counts_are_exact_whatever_step_a_replica_dies_at(
    url: str, replicas: Replicas, die: str
) -> None:
    count = fewer_if_sliding(8_000, replicas.shape)
    expected = reference(count, replicas.shape)
    prefix = replicas.prefix
    service, events, keep = main_service(url, prefix, count, replicas.shape)
    events.gate.set()
    replicas.start("r-a", die=die)
    async with service.running():
        await until(lambda: replicas.killed("r-a"), f"r-a dies at {die}")
        replicas.start("r-b")
        await settled(replicas, keep, expected, count)
    assert_exact(url, keep, expected)


# Tumbling windows only: every shape's commits are fenced by the same script (a
# stale token writing nothing is tested in test_runtime_window_redis_state.py).
@pytest.mark.parametrize("shape", ["tumbling"])
async def test_counts_are_exact_when_a_replica_paused_past_its_lease_comes_back(
    url: str, replicas: Replicas
) -> None:
    count = 20_000
    expected = reference(count, replicas.shape)
    prefix = replicas.prefix
    service, events, keep = main_service(url, prefix, count, replicas.shape)
    replicas.start("r-a")
    replicas.start("r-b")
    async with service.running():
        await until(
            lambda: set(lease_owners(url, prefix)) == {"r-a", "r-b"},
            "r-a and r-b share the partitions",
        )
        events.gate.set()
        await until(lambda: keep.arrived() >= len(expected) // 4, "some windows")
        replicas.signal("r-a", signal.SIGSTOP)  # holding batches, state, a lease
        await until(lambda: set(lease_owners(url, prefix)) == {"r-b"}, "r-b owns all")
        replicas.signal("r-a", signal.SIGCONT)  # its commits are refused: stale
        await until(lambda: "r-a" in lease_owners(url, prefix), "r-a takes some back")
        await settled(replicas, keep, expected, count)
    assert_exact(url, keep, expected)
