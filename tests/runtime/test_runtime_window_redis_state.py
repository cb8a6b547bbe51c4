"""A window's state over Redis, piece by piece: accumulators as JSON, the ``COMMIT``
script (fenced: a stale token writes nothing), and what a window over Redis refuses
(issue #16). The kill tests are in test_runtime_window_redis.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any

import anyio
import pytest
import redis
import redis.asyncio
import runtime
from pydantic import BaseModel
from runtime.aggregates import Aggregate, builtin
from runtime.redis.leases import TO, Lease
from runtime.redis.windowstore import (
    COMMIT,
    WindowStore,
    _Partition,
    check_json,
    dump_value,
    load_value,
)
from runtime.redis.wire import FIELD
from runtime.windowstate import AlignedWindows

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
            runtime.Window(
                "w", size=60, type="sliding", time="at", inputs={"in": Trade}
            ),
            "account",
            "redis",
            "only tumbling, hopping and count windows are kept",
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
    ids=["unkeyed", "out-in-memory", "sliding", "set-accumulator"],
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
