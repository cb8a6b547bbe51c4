"""Keyed state (``state: true``) over a keyed Redis connection: per partition in
Redis, written by the script that acknowledges each item, under the partition's
lease (issue #16).

The service of tests/runtime/state_replica.py: this process runs the source
(``events``: accounts spread over the partitions) and the sink (``keep``); each
replica of the stateful ``counter`` is a process of its own, killed with SIGKILL
(from here, or by itself right before or after its acknowledging script). Each
account's count in Redis must equal the events sent for it exactly, and each event
must leave with the count it was counted at; its output is written by the same
script, so on one Redis each event leaves exactly once (on a Cluster it is parked
by the script and relayed: a copy is allowed there, at least once on the wire).
Waits are on conditions with a generous deadline, never on a duration.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import runtime
from runtime.envelope import Envelope
from runtime.logs import MaskedLogger
from runtime.pii import Masker
from runtime.redis.connection import _Held
from runtime.redis.leases import TO, Lease, Leases
from runtime.redis.link import RedisLink
from runtime.redis.partitions import partition_of
from runtime.redis.publisher import RedisPublisher
from runtime.redis.statestore import LOST, ROOM, Output, RedisKeyedState
from runtime.redis.wire import FIELD

from tests.redisenv import (
    client_for_url,
    delete_prefixed,
    redis_cluster_url,
    redis_url,
    stream_key,
    unique_prefix,
)
from tests.runtime.state_replica import (
    Count,
    Event,
    Numbered,
    build,
    settings_for,
)
from tests.runtime.state_replica import Counter as Counting

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGE = ROOT / "templates" / "project" / "package"
SCRIPT = ROOT / "tests" / "runtime" / "state_replica.py"
KEYS = 100
PARTITIONS = 4
TTL_MS = 1500
DEADLINE_S = 90


def event(n: int) -> Event:
    return Event(account=f"acct-{n % KEYS}", seq=n)


def sent_per_key(count: int) -> dict[str, int]:
    return dict(Counter(event(n).account for n in range(count)))


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
    """Every output, as it came (a copy twice is kept twice)."""

    def __init__(self, name: str) -> None:
        super().__init__(name, inputs={"in": Numbered})
        self.items: list[Numbered] = []

    def consume(self, item: Numbered) -> None:
        self.items.append(item)

    def seqs(self) -> int:
        return len({i.seq for i in self.items})


class Replicas:
    """The replicas of ``counter``, each a process; their logs in ``folder``."""

    def __init__(self, url: str, prefix: str, folder: Path) -> None:
        self.url, self.prefix, self.folder = url, prefix, folder
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, die: str = "") -> None:
        env = {**os.environ, "PYTHONPATH": f"{PACKAGE}{os.pathsep}{ROOT}"}
        env.pop("STATE_REPLICA_DIE", None)
        if die:
            env["STATE_REPLICA_DIE"] = die
        log = (self.folder / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            [sys.executable, str(SCRIPT), self.url, self.prefix, name,
             str(TTL_MS), str(PARTITIONS)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def kill(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGKILL)
        self.processes[name].wait(timeout=15)

    def signal(self, name: str, number: int) -> None:
        self.processes[name].send_signal(number)

    def killed(self, name: str) -> bool:
        return self.processes[name].poll() == -signal.SIGKILL

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


@pytest.fixture
def replicas(url: str, tmp_path: Path) -> Iterator[Replicas]:
    group = Replicas(url, unique_prefix(), tmp_path)
    yield group
    group.stop_all()
    delete_prefixed(url, group.prefix)


def partition_streams(url: str, prefix: str) -> list[str]:
    return [
        stream_key(url, prefix, f"sr.events.out.counter.in.p{n}")
        for n in range(PARTITIONS)
    ]


def lease_owners(url: str, prefix: str) -> list[str | None]:
    with client_for_url(url) as client:
        owners = [
            client.hget(f"{stream}.lease.counter.in", "owner")
            for stream in partition_streams(url, prefix)
        ]
    return [None if o is None else o.decode() for o in owners]


def states(url: str, prefix: str) -> dict[str, int]:
    """Each account's count, as the partitions' state hashes hold it."""
    found: dict[str, int] = {}
    with client_for_url(url) as client:
        for stream in partition_streams(url, prefix):
            for name, value in client.hgetall(f"{stream}.state.counter.in").items():
                (key,) = json.loads(name)
                assert key not in found  # one partition per key
                found[key] = Count.model_validate_json(value).n
    return found


def pending(url: str, prefix: str) -> int:
    with client_for_url(url) as client:
        return sum(
            int(client.xpending(s, "counter.in")["pending"])
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


def main_service(
    url: str, prefix: str, count: int
) -> tuple[runtime.Service, Events, Keep]:
    events, keep = Events("events", count), Keep("keep")
    settings = settings_for(url, prefix, "main", TTL_MS, "events,keep")
    return build(settings, PARTITIONS, events, keep), events, keep


async def settled(replicas: Replicas, keep: Keep, count: int) -> None:
    url, prefix = replicas.url, replicas.prefix
    await until(
        lambda: keep.seqs() >= count,
        "every event out",
        lambda: f"({keep.seqs()} of {count}; pending {pending(url, prefix)}; "
        f"owners {lease_owners(url, prefix)})",
    )
    await until(lambda: pending(url, prefix) == 0, "nothing pending")


def cluster(url: str) -> bool:
    return url.startswith("redis+cluster")


def assert_exact(replicas: Replicas, keep: Keep, count: int) -> None:
    """Each account counted exactly once per event in Redis, and each event left
    with the count it was counted at: one value per event (a copy is the same),
    each account's 1, 2, ... n in the order sent; on one Redis, each event's
    output exactly once (written by the script that counted it)."""
    assert states(replicas.url, replicas.prefix) == sent_per_key(count)
    if not cluster(replicas.url):
        copies = Counter(item.seq for item in keep.items)
        twice = sorted(seq for seq, n in copies.items() if n > 1)
        assert not twice, f"{len(twice)} outputs written twice: {twice[:10]}"
    numbers: dict[int, set[int]] = {}
    for item in keep.items:
        numbers.setdefault(item.seq, set()).add(item.n)
    assert all(len(v) == 1 for v in numbers.values()), "an event counted twice"
    per_key: dict[str, list[tuple[int, int]]] = {}
    for seq in sorted(numbers):
        per_key.setdefault(event(seq).account, []).append((seq, numbers[seq].pop()))
    for account, pairs in per_key.items():
        wrong = [(seq, n) for at, (seq, n) in enumerate(pairs, 1) if n != at]
        assert not wrong, f"{account}: (seq, count) out of order from {wrong[:5]}"


async def test_counts_are_exact_when_a_replica_is_killed_midway(
    url: str, replicas: Replicas
) -> None:
    count = 24_000
    prefix = replicas.prefix
    service, events, keep = main_service(url, prefix, count)
    replicas.start("r-a")
    replicas.start("r-b")
    async with service.running():
        await until(
            lambda: set(lease_owners(url, prefix)) == {"r-a", "r-b"},
            "r-a and r-b share the partitions",
        )
        events.gate.set()  # the second half flows while r-a dies
        await until(lambda: keep.seqs() >= count * 2 // 3, "some counts")
        replicas.kill("r-a")
        await until(lambda: set(lease_owners(url, prefix)) == {"r-b"}, "r-b owns all")
        replicas.start("r-c")  # restarted (as a new member): it takes some back
        await until(lambda: "r-c" in lease_owners(url, prefix), "r-c takes some")
        await settled(replicas, keep, count)
    assert_exact(replicas, keep, count)


@pytest.mark.parametrize("die", ["before:5", "after:5"])
async def test_counts_are_exact_whatever_side_of_the_script_a_replica_dies_at(
    url: str, replicas: Replicas, die: str
) -> None:
    count = 6_000
    prefix = replicas.prefix
    service, events, keep = main_service(url, prefix, count)
    events.gate.set()
    replicas.start("r-a", die=die)
    async with service.running():
        await until(lambda: replicas.killed("r-a"), f"r-a dies at {die}")
        replicas.start("r-b")
        await settled(replicas, keep, count)
    assert_exact(replicas, keep, count)


async def test_counts_are_exact_when_a_replica_paused_past_its_lease_comes_back(
    url: str, replicas: Replicas
) -> None:
    count = 12_000
    prefix = replicas.prefix
    service, events, keep = main_service(url, prefix, count)
    replicas.start("r-a")
    replicas.start("r-b")
    async with service.running():
        await until(
            lambda: set(lease_owners(url, prefix)) == {"r-a", "r-b"},
            "r-a and r-b share the partitions",
        )
        events.gate.set()
        await until(lambda: keep.seqs() >= count * 2 // 3, "some counts")
        replicas.signal("r-a", signal.SIGSTOP)  # holding items, states, a lease
        await until(lambda: set(lease_owners(url, prefix)) == {"r-b"}, "r-b owns all")
        replicas.signal("r-a", signal.SIGCONT)  # its scripts are refused: stale
        await until(lambda: "r-a" in lease_owners(url, prefix), "r-a takes some back")
        await settled(replicas, keep, count)
    assert_exact(replicas, keep, count)


def link_for(url: str, prefix: str, consumer: str) -> RedisLink:
    settings = runtime.ServiceSettings(
        redis_url=url, redis_prefix=prefix, redis_consumer=consumer
    )
    log = MaskedLogger(logging.getLogger("test"), Masker(), {})
    return RedisLink("st", settings, log)


def publisher_for(link: RedisLink, stream: str) -> RedisPublisher:
    """The publisher of an output stream, as ``ACK_STATE`` sees it."""
    port = runtime.OutputPort("counter", "out", Numbered)
    return RedisPublisher(link, stream, port, buffer_size=16, confirm=False, owner=None)


async def test_a_stale_token_writes_no_state_no_output_and_acknowledges_nothing(
    url: str, replicas: Replicas
) -> None:
    a, b = link_for(url, replicas.prefix, "r-a"), link_for(url, replicas.prefix, "r-b")
    stream = a.key("{s}.p0")  # one slot on a Cluster
    key, fence, state = stream + ".lease.g", stream + ".fence.g", stream + ".state.g"
    outbox = stream + ".outbox.g"
    keys = [stream, key, stream + ".dlq", state]
    out = a.key("{s}.out")  # the output stream (on a Cluster: reached by the relay)
    store = RedisKeyedState(Count, 10, Count, 1)
    sync = client_for_url(url)
    try:
        sync.xgroup_create(stream, "g", id="0", mkstream=True)
        entry = sync.xadd(stream, {b"e": b"{}"})
        sync.xreadgroup("g", "r-a", {stream: ">"})
        stale = await Leases(a).acquire(0, key, fence, "r-a", 300, outbox=outbox)
        assert stale is not None
        with anyio.fail_after(10):  # r-a paused: its lease runs out in Redis
            while sync.exists(key):
                await anyio.sleep(0.05)
        fresh = await Leases(b).acquire(0, key, fence, "r-b", 5000, outbox=outbox)
        assert fresh is not None
        write = [(b'["acct"]', b'{"n":1}')]

        def made(link: RedisLink) -> dict[bytes, list[Output]]:
            return {entry: [(publisher_for(link, out), b"result")]}

        refused = await store.acknowledge(
            Leases(a), keys, "g", stale, [entry], {entry: list(write)}, [], made(a)
        )
        assert refused.acked == LOST
        assert sync.xpending(stream, "g")["pending"] == 1
        assert not sync.exists(state)
        assert not sync.exists(stream + ".dlq")
        assert not sync.exists(out) and not sync.exists(outbox)
        # the new owner's go through: acknowledged, written and output together
        done = await store.acknowledge(
            Leases(b), keys, "g", fresh, [entry], {entry: list(write)}, [], made(b)
        )
        assert done == (1, 1)
        assert sync.xpending(stream, "g")["pending"] == 0
        assert sync.hgetall(state) == {b'["acct"]': b'{"n":1}'}
        if cluster(url):  # parked for the partition's relay, with its target
            [(_, fields)] = sync.xrange(outbox)
            assert fields == {FIELD: b"result", TO: out.encode()}
        else:
            assert [f for _, f in sync.xrange(out)] == [{FIELD: b"result"}]
    finally:
        sync.close()
        await a.close()
        await b.close()


class _Silent(runtime.Source):
    def __init__(self, name: str) -> None:
        super().__init__(name, outputs={"out": Event})

    async def generate(self) -> Any:
        return
        yield


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        ("memory", "takes one input connection over Redis, and has 2"),
        ("", r"keeps state per key: its input counter\.in must be keyed"),
    ],
    ids=["beside-another", "unkeyed"],
)
def test_what_state_over_redis_cannot_serve_is_refused_when_it_starts(
    second: str, expected: str, tmp_path: Path
) -> None:
    prefix = unique_prefix()
    url = redis_url()
    service = runtime.Service("sx", settings=settings_for(url, prefix, "x", TTL_MS, ""))
    service.add(_Silent("events"))
    service.add(Counting("counter"))
    service.add(Keep("keep"))
    key = "account" if second else None
    service.connect("events.out", "counter.in", transport="redis", key=key)
    if second:
        service.add(_Silent("more"))
        service.connect("more.out", "counter.in", transport=second, key="account")
    service.connect("counter.out", "keep.in")

    async def running() -> None:
        async with service.running():
            pass

    try:
        with pytest.raises(runtime.StartupError, match=expected):
            anyio.run(running)
    finally:
        delete_prefixed(url, prefix)


async def test_past_max_keys_a_key_of_the_same_partition_goes_here_and_in_redis(
    url: str, replicas: Replicas
) -> None:
    link = link_for(url, replicas.prefix, "r-a")
    stream = link.key("{s}.p0")  # one slot on a Cluster
    key, fence, state = stream + ".lease.g", stream + ".fence.g", stream + ".state.g"
    keys = [stream, key, stream + ".dlq", state]
    store = RedisKeyedState(Count, 2, Count, 1)  # one partition, two keys at most
    sync = client_for_url(url)
    try:
        sync.xgroup_create(stream, "g", id="0", mkstream=True)
        ids = [sync.xadd(stream, {b"e": b"{}"}) for _ in range(3)]
        sync.xreadgroup("g", "r-a", {stream: ">"})
        lease = await Leases(link).acquire(0, key, fence, "r-a", 5000)
        assert lease is not None
        writes = {}
        for entry_id, (account, item) in zip(
            ids, [("a", object()), ("b", object()), ("c", object())], strict=True
        ):
            store.taken(item, lease)
            store.keep(account, Count(n=1), item)
            written = store.written(item)
            assert written is not None
            writes[entry_id] = written
        assert store.evicted == 1 and store.get("a") is None and len(store) == 2
        done = await store.acknowledge(Leases(link), keys, "g", lease, ids, writes, [])
        assert done == (3, 3)
        assert set(sync.hgetall(state)) == {b'["b"]', b'["c"]'}
    finally:
        sync.close()
        await link.close()


def test_an_item_taken_under_a_lost_lease_changes_no_state() -> None:
    # Still in this process's buffer when its lease was lost: the partition's next
    # owner (maybe this process, after a new grant) delivers it again.
    store = RedisKeyedState(Count, 10, Count, 1)
    lost = Lease(0, "k", "1", until=0.0, lost=True)
    live = Lease(0, "k", "2", until=1e18)
    stale, fresh = object(), object()
    store.taken(stale, lost)
    store.taken(fresh, live)
    assert not store.keep("a", Count(n=5), stale)
    assert store.get("a") is None and store.written(stale) is None
    store.keep("a", Count(n=1), fresh)
    assert store.get("a") == Count(n=1)
    assert store.written(fresh) == [(b'["a"]', b'{"n":1}')]


class _Writer:
    """A publisher as a reader's acknowledgement barrier sees it."""

    queued = 0
    flushed = 0


def test_a_stateful_input_acknowledges_in_the_order_its_items_were_settled() -> None:
    # The first item waits for its output to be written; the second, settled once
    # the writer caught up, has no barrier of its own. Acknowledged first, its state
    # (which counts the first item) would be in Redis while the first is unacked.
    service = build(settings_for(redis_url(), unique_prefix(), "x", TTL_MS, ""), 1)
    connection = service.components["counter"].inputs["in"].connections[0]
    connection.keep_state(Count, 10, Count)
    reader = connection.readers[0]
    lease = Lease(0, "k", "1", until=1e18)
    reader.lease = lease
    writer = _Writer()
    reader._writers = [writer]
    envelopes = [Envelope.start(event(n), 0.0) for n in range(2)]
    for n, envelope in enumerate(envelopes):
        reader._held[envelope.seq] = _Held(f"1-{n}".encode(), 1, b"")
        connection._taken[envelope.seq] = lease
    writer.queued = 1  # the first item's output, not written yet
    connection._settle(envelopes[0], None)
    writer.flushed = 1  # written; then the second item settles
    connection._settle(envelopes[1], None)
    reader._release()
    assert reader._acks == [b"1-0", b"1-1"]


async def test_under_max_lag_the_script_waits_for_room_in_the_output_stream() -> None:
    # One Redis: a bounded group of an output stream that is full holds the whole
    # script back (no ack, no state, no output), until its readers make room.
    url = redis_url()
    prefix = unique_prefix()
    link = link_for(url, prefix, "r-a")
    stream = link.key("s.p0")
    key, fence, state = stream + ".lease.g", stream + ".fence.g", stream + ".state.g"
    keys = [stream, key, stream + ".dlq", state]
    out = link.key("s.out")
    writer = publisher_for(link, out)
    writer.bound("down", 2)
    store = RedisKeyedState(Count, 10, Count, 1)
    sync = client_for_url(url)
    try:
        sync.xgroup_create(stream, "g", id="0", mkstream=True)
        entry = sync.xadd(stream, {b"e": b"{}"})
        sync.xreadgroup("g", "r-a", {stream: ">"})
        sync.xgroup_create(out, "down", id="0", mkstream=True)
        for _ in range(2):  # the group is full: 2 unread of max_lag 2
            sync.xadd(out, {FIELD: b"earlier"})
        lease = await Leases(link).acquire(0, key, fence, "r-a", 5000)
        assert lease is not None
        writes = {entry: [(b'["acct"]', b'{"n":1}')]}
        made: dict[bytes, list[Output]] = {entry: [(writer, b"result")]}
        args = (Leases(link), keys, "g", lease, [entry], writes, [], made)
        assert await store.acknowledge(*args) == (ROOM, 0)
        assert sync.xpending(stream, "g")["pending"] == 1
        assert not sync.exists(state) and sync.xlen(out) == 2
        assert writes and made  # kept, to be tried again
        read = sync.xreadgroup("down", "c", {out: ">"})
        sync.xack(out, "down", *[i for _, rows in read for i, _ in rows])
        assert await store.acknowledge(*args) == (1, 1)
        assert sync.xpending(stream, "g")["pending"] == 0
        assert sync.hgetall(state) == {b'["acct"]': b'{"n":1}'}
        assert [f for _, f in sync.xrange(out)][-1] == {FIELD: b"result"}
        assert writer.last_written is not None  # its local readers read up to it
    finally:
        sync.close()
        await link.close()
        delete_prefixed(url, prefix)


class Stuck(runtime.Sink):
    """Holds its first item until ``go``: what it read stays pending meanwhile."""

    def __init__(self, name: str) -> None:
        super().__init__(name, inputs={"in": Numbered})
        self.items: list[Numbered] = []
        self.go = anyio.Event()

    async def consume(self, item: Numbered) -> None:
        await self.go.wait()
        self.items.append(item)


async def test_under_max_lag_a_stateful_component_holds_its_outputs_at_the_bound() -> (
    None
):
    # One process, one Redis: the sink is stuck, so the stateful counter's scripts
    # fill its group up to max_lag and are then held back (nothing acknowledged,
    # counted or written past the bound); once the sink goes on, every event is
    # counted and leaves exactly once.
    url, prefix = redis_url(), unique_prefix()
    count, bound = 300, 20
    service = runtime.Service("sr", settings=settings_for(url, prefix, "x", TTL_MS, ""))
    events, keep = Events("events", count), Stuck("keep")
    events.gate.set()
    service.add(events)
    service.add(Counting("counter"))
    service.add(keep)
    service.connect(
        "events.out", "counter.in", transport="redis", key="account",
        partitions=PARTITIONS, buffer_size=64,
    )  # fmt: skip
    service.connect(
        "counter.out", "keep.in", transport="redis", buffer_size=4, max_lag=bound
    )
    out = stream_key(url, prefix, "sr.counter.out")
    readers = service.components["counter"].inputs["in"].connections[0].readers

    def used() -> int:
        with client_for_url(url) as client:
            if not client.exists(out):
                return 0
            [group] = client.xinfo_groups(out)
            return int(group["lag"] or 0) + int(group["pending"])

    def written() -> int:
        with client_for_url(url) as client:
            return int(client.xlen(out)) if client.exists(out) else 0

    try:
        async with service.running():
            await until(
                lambda: sum(r.held_back for r in readers) > 0 or written() >= count,
                "a script held back at the bound",
            )
            assert used() <= bound and written() <= bound
            keep.go.set()
            await until(lambda: len(keep.items) >= count, "every event out")
            await until(lambda: pending(url, prefix) == 0, "nothing pending")
        assert states(url, prefix) == sent_per_key(count)
        assert sorted(i.seq for i in keep.items) == list(range(count))
    finally:
        delete_prefixed(url, prefix)


async def test_keyed_outputs_go_to_their_partition_in_the_script_memory_ones_at_once() -> (
    None
):
    # One process, one Redis: the counter's output port is connected keyed over
    # Redis (2 partitions, by account) and in memory. The Redis outputs are written
    # by the script (the port's publishers queue none), each to its key's partition
    # stream, once; the memory sink gets every output too (at once, at least once).
    url, prefix = redis_url(), unique_prefix()
    count = 200
    service = runtime.Service("sr", settings=settings_for(url, prefix, "x", TTL_MS, ""))
    events = Events("events", count)
    events.gate.set()
    keep, beside = Keep("keep"), Keep("beside")
    for component in (events, Counting("counter"), keep, beside):
        service.add(component)
    service.connect(
        "events.out", "counter.in", transport="redis", key="account",
        partitions=PARTITIONS, buffer_size=64,
    )  # fmt: skip
    service.connect(
        "counter.out", "keep.in", transport="redis", key="account", partitions=2
    )
    service.connect("counter.out", "beside.in")
    outputs = service.components["counter"].outputs["out"].connections
    try:
        async with service.running():
            await until(lambda: keep.seqs() >= count, "every event out")
            await until(lambda: beside.seqs() >= count, "every event beside")
            await until(lambda: pending(url, prefix) == 0, "nothing pending")
        publishers = [p for c in outputs for p in getattr(c, "publishers", [])]
        assert len(publishers) == 2 and all(p.queued == 0 for p in publishers)
        assert sorted(i.seq for i in keep.items) == list(range(count))
        assert states(url, prefix) == sent_per_key(count)
        with client_for_url(url) as client:
            for n in range(2):
                stream = stream_key(url, prefix, f"sr.counter.out.keep.in.p{n}")
                for _, fields in client.xrange(stream):
                    account = json.loads(fields[FIELD])["payload"]["account"]
                    assert partition_of(account, 2) == n
    finally:
        delete_prefixed(url, prefix)
