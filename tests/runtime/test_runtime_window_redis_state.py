"""A window's state over Redis, piece by piece: accumulators as JSON, the ``COMMIT``
script (fenced: a stale token writes nothing), what a window over Redis refuses, and
a sliding window's fields (what each commit writes and deletes, what a takeover
loads; issue #16). The kill tests are in test_runtime_window_redis.py."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import pairwise
from operator import attrgetter
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
import redis
import redis.asyncio
import runtime
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from runtime.aggregates import Aggregate, builtin
from runtime.redis.leases import TO, Lease
from runtime.redis.windowstore import (
    COMMIT,
    WATERMARK,
    WindowStore,
    _Partition,
    check_json,
    dump_value,
    load_value,
)
from runtime.redis.wire import FIELD
from runtime.windowstate import AlignedWindows, SlidingWindows

from tests.redisenv import (
    delete_prefixed,
    redis_cluster_url,
    redis_url,
    unique_prefix,
)

pytestmark = pytest.mark.anyio


class Trade(BaseModel):
    account: str
    price: Decimal
    at: datetime
    day: date
    size: float


TRADES = [
    Trade(
        account="a",
        price=Decimal("10.25"),
        at=datetime(2026, 1, 1, 12, n, tzinfo=UTC),
        day=date(2026, 1, n + 1),
        size=1.5 * n,
    )
    for n in range(3)
]


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("count", None),
        ("sum", "size"),
        ("sum", "price"),
        ("mean", "size"),
        ("mean", "price"),
        ("min", "at"),
        ("max", "day"),
        ("max", "price"),
        ("last", "at"),
        ("collect", "price"),
        ("collect", None),
    ],
)
def test_every_builtin_accumulator_round_trips_through_json(
    name: str, field: str | None
) -> None:
    aggregate = builtin(name, field)
    acc = aggregate.initial()
    check_json("w", aggregate)  # refuses nothing
    for trade in TRADES:
        acc = aggregate.add(acc, trade)
        data = dump_value(aggregate.dump(acc))
        back = aggregate.load(load_value(data, Trade))
        assert back == acc
        assert type(back) is type(acc)
        assert aggregate.result(back) == aggregate.result(acc)


def test_datetimes_decimals_and_items_are_written_tagged() -> None:
    at = datetime(2026, 1, 1, 12, 0, 30, 250000, tzinfo=UTC)
    assert dump_value([at, Decimal("1.10"), date(2026, 1, 2)]) == (
        b'[{"$datetime":"2026-01-01T12:00:30.250000+00:00"},'
        b'{"$decimal":"1.10"},{"$date":"2026-01-02"}]'
    )
    assert load_value(dump_value({"x": [TRADES[0]]}), Trade) == {"x": [TRADES[0]]}


class Distinct(Aggregate):
    """The distinct accounts: a set, which JSON has not."""

    def initial(self) -> set[str]:
        return set()

    def add(self, acc: set[str], item: Any) -> set[str]:
        return acc | {item.account}


class DistinctAsJson(Distinct):
    """The same, written as a sorted list."""

    def dump(self, acc: set[str]) -> list[str]:
        return sorted(acc)

    def load(self, data: list[str]) -> set[str]:
        return set(data)


def test_a_user_aggregate_must_give_its_accumulator_as_json() -> None:
    with pytest.raises(runtime.WiringError, match=r"is not JSON.*dump.*load"):
        check_json("w", Distinct())
    check_json("w", DistinctAsJson())


# -- the script, against a real Redis ------------------------------------------


@pytest.fixture(params=["redis", "cluster"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    url = redis_url() if request.param == "redis" else redis_cluster_url()
    prefix = unique_prefix()
    if "+cluster" in url:
        made: Any = redis.asyncio.RedisCluster.from_url(url.replace("+cluster", ""))
    else:
        made = redis.asyncio.Redis.from_url(url)
    made.prefix = prefix
    made.cluster = "+cluster" in url
    yield made
    await made.aclose()
    delete_prefixed(url, prefix)


async def _partition(client: Any) -> tuple[list[str], list[bytes]]:
    """A partition's stream with 3 entries read (pending) by group ``g``, its lease
    holding token 2; its keys and the entries' ids."""
    tag = "{" + client.prefix + "p0}"
    stream, lease, state = tag, f"{tag}.lease.g", f"{tag}.state.g"
    ids = [await client.xadd(stream, {FIELD: f"m{n}"}) for n in range(3)]
    await client.xgroup_create(stream, "g", id="0")
    await client.xreadgroup("g", "r", {stream: ">"})
    await client.hset(lease, mapping={"owner": "r", "token": "2"})
    return [stream, lease, state], ids


def _args(token: str, park: bool, ids: list[bytes], target: str) -> list[Any]:
    return [
        "g", token, int(park),
        len(ids), *ids,
        2, b'[0.0,"a"]', b"3", b"~watermark", b"4.5",
        1, b'[-5.0,"a"]',
        1, target,
        1, b"result",
    ]  # fmt: skip


@pytest.mark.parametrize("token", ["1", "2"])
async def test_the_commit_acts_only_under_the_lease_token(
    client: Any, token: str
) -> None:
    keys, ids = await _partition(client)
    stream, _, state = keys
    outbox, target = f"{stream}.outbox.g", f"{stream}.out"
    await client.hset(state, b'[-5.0,"a"]', b"7")  # a window the commit closes
    park = client.cluster  # on a Cluster: results go to the partition's outbox
    more = [outbox] if park else [target]
    script = client.register_script(COMMIT)
    answer = await script(keys=[*keys, *more], args=_args(token, park, ids, target))
    pending = (await client.xpending(stream, "g"))["pending"]
    written = await client.hgetall(state)
    if token == "1":  # stale: nothing written, nothing acknowledged
        assert answer == -1
        assert pending == 3
        assert written == {b'[-5.0,"a"]': b"7"}
        assert not await client.exists(target) and not await client.exists(outbox)
        return
    assert answer == 3
    assert pending == 0
    assert written == {b'[0.0,"a"]': b"3", b"~watermark": b"4.5"}
    if park:
        ((_, fields),) = await client.xrange(outbox)
        assert fields == {FIELD: b"result", TO: target.encode()}
    else:
        ((_, fields),) = await client.xrange(target)
        assert fields == {FIELD: b"result"}


# -- refusals ------------------------------------------------------------------


class Quiet(runtime.Source):
    async def generate(self) -> AsyncIterator[Trade]:
        return
        yield


class Drop(runtime.Sink):
    def consume(self, item: Any) -> None:
        return None


def windowed(
    window: runtime.Window, key: str | None, out: str = "redis"
) -> runtime.Service:
    settings = runtime.ServiceSettings(
        redis_url=redis_url(), redis_prefix=unique_prefix()
    )
    service = runtime.Service("wr", settings=settings)
    service.add(Quiet("trades", outputs={"out": Trade}))
    service.add(window)
    service.add(Drop("keep", inputs={"in": Any}))
    service.connect("trades.out", "w.in", transport="redis", key=key)
    service.connect("w.out", "keep.in", transport=out)
    return service


@pytest.mark.parametrize(
    ("window", "key", "out", "message"),
    [
        (
            runtime.Window("w", size=60, time="at", inputs={"in": Trade}),
            None,
            "redis",
            "comes over 'redis', so it must be a keyed connection",
        ),
        (
            runtime.Window("w", size=60, time="at", inputs={"in": Trade}),
            "account",
            "memory",
            "w.out must be connected over redis too",
        ),
        (
            runtime.Window("w", size=60, type="sliding", time="at", inputs={"in": Any}),
            "account",
            "redis",
            "keeps its recent items in Redis, read back with the input's schema",
        ),
        (
            runtime.Window(
                "w", size=60, time="at", aggregate=Distinct(), inputs={"in": Trade}
            ),
            "account",
            "redis",
            r"accumulator of Distinct .* is not JSON",
        ),
    ],
    ids=["unkeyed", "out-in-memory", "sliding-of-no-model", "set-accumulator"],
)
async def test_what_a_window_over_redis_cannot_keep_is_refused_at_start(
    window: runtime.Window, key: str | None, out: str, message: str
) -> None:
    service = windowed(window, key, out)
    with pytest.raises(runtime.StartupError, match=message):
        async with service.running():
            pass


# -- closes by time, in one process against a real Redis ----------------------


class Held(runtime.Source):
    """Yields ``items``, then stays open (the window's state stays in Redis when
    its input ends, so the test keeps it running)."""

    def __init__(self, name: str, items: list[Trade]) -> None:
        super().__init__(name, outputs={"out": Trade})
        self.items = items
        self.done = anyio.Event()

    async def generate(self) -> AsyncIterator[Trade]:
        for item in self.items:
            yield item
        await self.done.wait()


class Keep(runtime.Sink):
    def __init__(self, name: str) -> None:
        super().__init__(name, inputs={"in": runtime.WindowResult})
        self.items: list[Any] = []

    def consume(self, item: Any) -> None:
        self.items.append(item)


def _trade(account: str, at: float) -> Trade:
    return Trade(
        account=account,
        price=Decimal(1),
        at=datetime.fromtimestamp(at, UTC),
        day=date(2026, 1, 1),
        size=1.0,
    )


async def _until(condition: Any) -> None:
    with anyio.fail_after(30):
        while not condition():
            await anyio.sleep(0.02)


@pytest.mark.parametrize("time", ["processing", "idleness"])
async def test_a_close_by_time_is_a_commit_too(time: str) -> None:
    url, prefix = redis_url(), unique_prefix()
    clock = runtime.ManualClock(wall=1_700_000_000.0)
    t0 = 1_700_000_000.0
    items = [_trade("a", t0 + 1), _trade("a", t0 + 2), _trade("b", t0 + 3)]
    event_time = {"time": "at", "idle_after": 5.0} if time == "idleness" else {}
    window = runtime.Window(
        "w", size=60, clock=clock, inputs={"in": Trade}, **event_time
    )
    settings = runtime.ServiceSettings(redis_url=url, redis_prefix=prefix)
    service = runtime.Service("wr", settings=settings)
    source = service.add(Held("trades", items))
    service.add(window)
    keep = service.add(Keep("keep"))
    service.connect("trades.out", "w.in", transport="redis", key="account")
    service.connect("w.out", "keep.in", transport="redis")
    connection = window.inputs["in"].connections[0]
    states = [f"{s}.state.w.in" for s in connection.streams]  # type: ignore[attr-defined]
    sync = redis.Redis.from_url(url)
    try:

        def fields() -> dict[bytes, bytes]:
            found: dict[bytes, bytes] = {}
            for state in states:
                found.update(sync.hgetall(state))
            return found

        def open_windows() -> int:
            return sum(name != b"~watermark" for name in fields())

        async with service.running():
            await _until(lambda: open_windows() == 2)  # a's and b's, committed
            assert keep.items == []
            clock.advance(60)  # past the windows' end (idleness: quiet for 60 s)
            await _until(lambda: len(keep.items) == 2)
            await _until(lambda: open_windows() == 0)
            source.done.set()
        assert sorted((i.key, i.value) for i in keep.items) == [("a", 2), ("b", 1)]
        assert b"~watermark" in fields()
    finally:
        sync.close()
        delete_prefixed(url, prefix)


class Buffered:
    """A keyed connection's face, with ``waiting`` items read and not yet taken."""

    def __init__(self, waiting: int) -> None:
        self.link: Any = None
        self.group = "w.in"
        self.streams = ["s.p0"]
        self.key = attrgetter("account")
        self.waiting = waiting

    def depth(self) -> int:
        return self.waiting


async def test_a_busy_partition_is_not_idle_while_its_items_wait_here() -> None:
    # The process was busy (items buffered, not taken): moving the watermark on
    # by the wall clock would make them late. It waits another idle_after instead.
    clock = runtime.ManualClock()
    window = runtime.Window(
        "w", size=60, time="at", idle_after=5, clock=clock, inputs={"in": Trade}
    )
    kept = WindowStore(window, Buffered(waiting=3))  # type: ignore[arg-type]
    lease = Lease(0, "s.p0.lease.w.in", "1", until=1e9)
    shape = AlignedWindows(60, 60, window.aggregate)
    kept.partitions[0] = part = _Partition(lease, shape, watermark=61.0)
    shape.add("a", 61.0, _trade("a", 61.0), None)
    clock.advance(10)
    await kept.on_time()
    assert (shape.open, part.watermark, part.advanced_at) == (1, 61.0, 10)


# -- sliding windows: their windows and kept items, field by field -------------


class Partition:
    """A keyed connection's face: one partition, its stream ``stream``, every item
    held under ``lease`` (its entry's id in ``ids``), over ``client`` if any."""

    def __init__(self, client: Any, stream: str, lease: Lease) -> None:
        cluster = bool(getattr(client, "cluster", False))
        self.link: Any = SimpleNamespace(client=client, cluster=cluster)
        self.group = "g"
        self.streams = [stream]
        self.key = attrgetter("account")
        self.lease = lease
        self.ids: dict[int, bytes] = {}
        self.lost: list[str] = []

    def held(self, envelope: Any) -> tuple[Lease, bytes]:
        return self.lease, self.ids[id(envelope)]

    def committed(self, lease: Lease, entries: list[Any]) -> None:
        return None

    def lose(self, lease: Lease, why: str) -> None:
        self.lost.append(why)

    def depth(self) -> int:
        return 0


def _sliding(stream: str = "s.p0", client: Any = None) -> tuple[WindowStore, Any]:
    """A sliding window of 10 s (the sum of ``price``) kept over ``client``, its
    partition 0 held under token 2 (loaded with ``load``)."""
    window = runtime.Window(
        "w",
        type="sliding",
        size=10,
        time="at",
        aggregate=builtin("sum", "price"),
        clock=runtime.ManualClock(),
        inputs={"in": Trade},
    )
    lease = Lease(0, f"{stream}.lease.g", "2", until=1e12)
    lease.outbox = f"{stream}.outbox.g"
    return WindowStore(window, Partition(client, stream, lease)), lease


def _priced(account: str, at: float, price: int) -> Trade:
    trade = _trade(account, at)
    trade.price = Decimal(price)
    return trade


def _entries(trades: list[Trade]) -> tuple[list[Any], list[bytes]]:
    entries = [(0.0, runtime.Envelope.start(t, 0.0)) for t in trades]
    return entries, [f"{n}-0".encode() for n in range(len(trades))]


def _field(*parts: Any) -> bytes:
    return dump_value(list(parts))


def _written(args: list[Any]) -> tuple[dict[bytes, bytes], list[bytes]]:
    """The (field, value) pairs and the deleted fields of ``COMMIT``'s ``args``."""
    at = 4 + int(args[3])
    pairs = int(args[at])
    flat = args[at + 1 : at + 1 + 2 * pairs]
    at += 1 + 2 * pairs
    deleted = args[at + 1 : at + 1 + int(args[at])]
    return dict(zip(flat[::2], flat[1::2], strict=True)), deleted


def _batch(kept: WindowStore, part: _Partition, trades: list[Trade]) -> Any:
    """The ``COMMIT`` input of the batch ``trades`` (the state moves on, no Redis)."""
    changes = kept._add(part, *_entries(trades))
    return _written(kept._script_input(part, changes)[1]), changes


def test_a_sliding_commit_writes_what_its_batch_changed() -> None:
    kept, lease = _sliding()
    shape = kept.shape
    assert isinstance(shape, SlidingWindows)
    store = SlidingWindows(shape.size, kept.window.aggregate)
    part = _Partition(lease, store)
    part.watch(store)
    a100, a103, b104 = _priced("a", 100, 1), _priced("a", 103, 2), _priced("b", 104, 4)
    (pairs, deleted), _ = _batch(kept, part, [a100, a103, b104])
    # the windows of a at 100 and 103 closed at 104 (the watermark): deleted; the
    # items are kept (a window at 110 would hold them), one field each
    assert pairs == {
        _field(104.0, "b"): b'{"$decimal":"4"}',
        _field(100.0, 1, "a"): dump_value(a100),
        _field(103.0, 2, "a"): dump_value(a103),
        _field(104.0, 3, "b"): dump_value(b104),
        WATERMARK: "104.0",
    }
    assert deleted == [_field(100.0, "a"), _field(103.0, "a")]
    a115 = _priced("a", 115, 8)
    (pairs, deleted), changes = _batch(kept, part, [a115])
    # at 115 b's window closes and no window to come holds the items up to 105
    assert pairs == {
        _field(115.0, "a"): b'{"$decimal":"8"}',
        _field(115.0, 4, "a"): dump_value(a115),
        WATERMARK: "115.0",
    }
    assert sorted(deleted) == sorted(
        [
            _field(104.0, "b"),
            _field(100.0, 1, "a"),
            _field(103.0, 2, "a"),
            _field(104.0, 3, "b"),
        ]
    )
    assert [(i.key, i.value) for _, i in changes.outputs] == [("b", Decimal(4))]
    # kept then dropped between two commits: never written, so never deleted
    (pairs, deleted), _ = _batch(
        kept, part, [_priced("c", 200, 1), _priced("c", 300, 2)]
    )
    assert pairs == {
        _field(300.0, "c"): b'{"$decimal":"2"}',
        _field(300.0, 6, "c"): dump_value(_priced("c", 300, 2)),
        WATERMARK: "300.0",
    }
    assert _field(200.0, 5, "c") not in deleted
    assert _field(115.0, 4, "a") in deleted


async def _pending(client: Any, kept: WindowStore, trades: list[Trade]) -> list[Any]:
    """``trades`` as entries of the partition's stream, read (pending) by ``g``."""
    connection: Any = kept.connection
    (stream,) = connection.streams
    entries, _ = _entries(trades)
    for entry in entries:
        connection.ids[id(entry[1])] = await client.xadd(stream, {FIELD: b"x"})
    await client.xreadgroup("g", "r", {stream: ">"})
    return entries


async def _held(client: Any) -> tuple[WindowStore, Lease]:
    """A sliding window's store over ``client``: its partition's group made, its
    lease held by token 2, its (empty) state loaded."""
    tag = "{" + client.prefix + "p0}"
    kept, lease = _sliding(tag, client)
    await client.xgroup_create(tag, "g", id="0", mkstream=True)
    await client.hset(lease.key, mapping={"owner": "r", "token": "2"})
    await kept.load(lease)
    return kept, lease


FIRST = [
    _priced("a", 100, 1),
    _priced("a", 103, 2),
    _priced("b", 104, 4),
    _priced("a", 108, 8),
    _priced("b", 109, 16),
]
NEXT = [_priced("a", 112, 32), _priced("b", 125, 64)]


async def test_a_sliding_state_loaded_by_the_next_owner_goes_on_the_same(
    client: Any,
) -> None:
    kept, lease = await _held(client)
    assert await kept.take(await _pending(client, kept, FIRST)) == []
    # the next owner of the partition (here under the same token) loads it
    again, _ = _sliding(kept.connection.streams[0], client)
    again.connection.lease = lease  # type: ignore[attr-defined]
    await again.load(lease)
    was, now = kept.partitions[0], again.partitions[0]
    assert isinstance(was.store, SlidingWindows)
    assert isinstance(now.store, SlidingWindows)
    # a's windows closed at 109 (the watermark), its items are kept (for windows
    # to come): both in Redis
    assert now.store.windows == was.store.windows == {"a": {}, "b": {109.0: 20}}
    assert now.store.recent == was.store.recent
    assert [t for t, _, _ in now.store.recent["a"]] == [100.0, 103.0, 108.0]
    assert (now.store.open, now.store.seq, now.watermark) == (1, 5, 109.0)
    # and goes on as the first would have: a's window at 112 holds its items since
    # 102 (two of them kept in Redis), b's at 125 none of before
    outputs = []
    for store in (kept, again):
        part = store.partitions[0]
        entries, ids = _entries(NEXT)
        changes = store._add(part, entries, ids)
        outputs.append(
            sorted((i.key, i.end.timestamp(), i.value) for _, i in changes.outputs)
        )
        assert not changes.failed
    assert outputs[0] == outputs[1] == [("a", 112.0, 42), ("b", 109.0, 20)]


async def test_a_sliding_commit_under_a_stale_token_writes_nothing(client: Any) -> None:
    kept, lease = await _held(client)
    state = kept.state_key(0)
    assert await kept.take(await _pending(client, kept, FIRST)) == []
    before = await client.hgetall(state)
    assert len(before) == 1 + 1 + 5  # the watermark, b's window, 5 items
    await client.hset(lease.key, "token", "3")  # another replica took the partition
    await kept.take(await _pending(client, kept, NEXT))
    assert await client.hgetall(state) == before
    assert (await client.xpending(kept.connection.streams[0], "g"))["pending"] == 2
    assert kept.partitions == {}  # dropped: its next owner loads it from Redis
    assert kept.connection.lost == [  # type: ignore[attr-defined]
        "its window state's commit found another replica's lease"
    ]


class Hash:
    """A partition's state hash in a dict, and ``COMMIT`` as it writes it (HSET of
    the pairs, then HDEL): the client a store's takeovers are tried with."""

    def __init__(self) -> None:
        self.fields: dict[bytes, bytes] = {}

    async def hgetall(self, name: str) -> dict[bytes, bytes]:
        return dict(self.fields)

    def register_script(self, text: str) -> Any:
        async def commit(keys: list[str], args: list[Any], client: Any) -> int:
            data = [a.encode() if isinstance(a, str) else a for a in args]
            ids = int(data[3])
            at = 4 + ids
            for _ in range(int(data[at])):
                self.fields[data[at + 1]] = data[at + 2]
                at += 2
            at += 1
            for name in data[at + 1 : at + 1 + int(data[at])]:
                self.fields.pop(name, None)
            return ids

        return commit


class Recorded(WindowStore):
    """A store that records the windows each commit sends (the window's ``out``
    is not connected here)."""

    sent: list[tuple[str, float, int]]

    async def _commit(self, part: _Partition, changes: Any) -> bool:
        ok = await super()._commit(part, changes)
        self.sent += [(i.key, i.end.timestamp(), i.value) for _, i in changes.outputs]
        return ok


def _sliding_reference(
    items: list[tuple[str, int]], size: float
) -> dict[tuple[str, float], int]:
    """Per (key, item time ``t``): the key's items in ``(t - size, t]``."""
    return {
        (k, float(t)): sum(1 for j, u in items if j == k and t - size < u <= t)
        for k, t in items
    }


@settings(max_examples=60, deadline=None)
@given(
    times=st.lists(
        st.tuples(st.sampled_from("abc"), st.integers(0, 40)), min_size=1, max_size=40
    ),
    jitter=st.lists(st.floats(0, 0.99), min_size=40, max_size=40),
    cuts=st.lists(st.integers(1, 40), max_size=6),
    takeovers=st.lists(st.booleans(), min_size=8, max_size=8),
)
async def test_a_sliding_window_taken_over_between_any_two_commits_counts_exactly(
    times: list[tuple[str, int]],
    jitter: list[float],
    cuts: list[int],
    takeovers: list[bool],
) -> None:
    # Items out of order within the grace (none late), in batches cut anywhere, the
    # partition taken over (its state loaded from the hash) after any commit: what
    # was sent and what is still open are each item's window, exactly, once.
    grace, size = 4.0, 6.0
    order = sorted(times, key=lambda kt: kt[1] + grace * jitter[times.index(kt)])
    window = runtime.Window(
        "w", type="sliding", size=size, grace=grace, time="at",
        clock=runtime.ManualClock(), inputs={"in": Trade},
    )  # fmt: skip
    lease = Lease(0, "s.p0.lease.g", "2", until=1e12)
    connection = Partition(Hash(), "s.p0", lease)
    sent: list[tuple[str, float, int]] = []

    async def owner() -> Recorded:
        kept = Recorded(window, connection)  # type: ignore[arg-type]
        kept.sent = sent
        await kept.load(lease)
        return kept

    kept = await owner()
    bounds = sorted({0, len(order), *(c for c in cuts if c < len(order))})
    for n, (start, end) in enumerate(pairwise(bounds)):
        batch = [_trade(k, t) for k, t in order[start:end]]
        entries, ids = _entries(batch)
        connection.ids.update(zip((id(e[1]) for e in entries), ids, strict=True))
        assert await kept.take(entries) == []
        if takeovers[n % len(takeovers)]:
            kept = await owner()
    assert window.late_items == 0
    store = kept.partitions[0].store
    assert isinstance(store, SlidingWindows)
    still = [
        (k, end, acc) for k, ends in store.windows.items() for end, acc in ends.items()
    ]
    windows = Counter((k, end) for k, end, _ in [*sent, *still])
    assert max(windows.values()) == 1  # each window sent once, or still open
    assert {(k, end): v for k, end, v in [*sent, *still]} == _sliding_reference(
        times, size
    )
