"""Keyed connections over Redis (issue #15): the partition hash, rendezvous
ownership, leases and the fenced scripts, and a keyed pipeline in one process.

The multi-process tests (kill -9, SIGSTOP, a replica joining) are in
tests/test_keyed_partitions.py.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import runtime
from pydantic import BaseModel
from runtime.logs import MaskedLogger
from runtime.partitions import run as show_partitions
from runtime.pii import Masker
from runtime.redis.leases import SAFE, Lease, Leases
from runtime.redis.link import RedisLink
from runtime.redis.partitions import (
    DEFAULT_PARTITIONS,
    assignment,
    canonical,
    partition_of,
    skew,
)
from runtime.redis.replicas import heartbeat
from runtime.status import dependency_checks

from tests.redisenv import client_for_url, redis_url
from tests.runtime.support import redis_settings

pytestmark = pytest.mark.anyio


# -- the hash -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "raw", "of_8", "of_16"),
    [
        ("acct-1", b"acct-1", 5, 5),
        ("AAPL", b"AAPL", 4, 12),
        ("", b"", 0, 0),
        (42, b"42", 0, 8),
        (True, b"true", 5, 13),
        (None, b"null", 7, 15),
        ("é", b"\xc3\xa9", 6, 14),
        (b"x", b"x", 3, 3),
    ],
)
def test_the_partition_hash_is_crc32_of_the_canonical_bytes(
    key: Any, raw: bytes, of_8: int, of_16: int
) -> None:
    # Pinned: every process, every Python, every release puts a key in the same
    # partition (a stream's items would be split between two owners otherwise).
    assert canonical(key) == raw
    assert partition_of(key, 8) == of_8
    assert partition_of(key, 16) == of_16


def test_the_default_is_eight_partitions() -> None:
    assert DEFAULT_PARTITIONS == 8


# -- rendezvous ---------------------------------------------------------------


def test_every_member_computes_the_same_assignment_whatever_the_order() -> None:
    members = ["r-a", "r-b", "r-c"]
    first = assignment(32, members)
    assert first == assignment(32, list(reversed(members)))
    assert set(first.values()) == set(members)  # 32 partitions reach all three
    assert assignment(4, []) == {0: None, 1: None, 2: None, 3: None}


def test_a_member_joining_takes_partitions_only_for_itself() -> None:
    before = assignment(256, ["r-a", "r-b", "r-c", "r-d"])
    after = assignment(256, ["r-a", "r-b", "r-c", "r-d", "r-e"])
    moved = {p for p in before if before[p] != after[p]}
    assert moved and all(after[p] == "r-e" for p in moved)
    # about a fifth of them, not a reshuffle
    assert len(moved) < 256 * 0.4


def test_a_member_leaving_moves_only_its_own_partitions() -> None:
    before = assignment(256, ["r-a", "r-b", "r-c", "r-d"])
    after = assignment(256, ["r-a", "r-c", "r-d"])
    moved = {p for p in before if before[p] != after[p]}
    assert moved == {p for p in before if before[p] == "r-b"}


# -- leases and fencing, on a real Redis --------------------------------------


@pytest.fixture
def settings() -> Iterator[runtime.ServiceSettings]:
    yield from redis_settings(redis_url(), redis_lease_ttl_ms=1000)


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def link_for(settings: runtime.ServiceSettings, consumer: str) -> RedisLink:
    log = MaskedLogger(logging.getLogger("test"), Masker(), {})
    return RedisLink(
        "lz", settings.model_copy(update={"redis_consumer": consumer}), log
    )


async def test_a_lease_is_trusted_for_its_safe_share_by_the_holders_clock(
    settings: runtime.ServiceSettings,
) -> None:
    clock = Clock()
    link = link_for(settings, "r-a")
    leases = Leases(link, clock)
    try:
        lease = await leases.acquire(
            0, link.key("p0.lease"), link.key("p0.f"), "r-a", 1000
        )
        assert lease is not None
        # granted at the time the request left, trusted for SAFE of the ttl
        assert lease.until == 100.0 + SAFE
        assert lease.valid(100.0 + SAFE - 0.001)
        assert not lease.valid(100.0 + SAFE)
        clock.now = 100.5
        assert await leases.renew(lease, 1000)
        assert lease.until == 100.5 + SAFE
        lease.lost = True
        assert not lease.usable(100.6) and lease.valid(100.6)
    finally:
        await link.close()


async def test_tokens_grow_with_every_grant_and_a_held_lease_is_refused(
    settings: runtime.ServiceSettings,
) -> None:
    a, b = link_for(settings, "r-a"), link_for(settings, "r-b")
    key, fence = a.key("s.p0.lease.g"), a.key("s.p0.fence.g")
    try:
        first = await Leases(a).acquire(0, key, fence, "r-a", 5000)
        assert first is not None
        assert await Leases(b).acquire(0, key, fence, "r-b", 5000) is None
        assert await Leases(a).release(first)
        second = await Leases(b).acquire(0, key, fence, "r-b", 5000)
        assert second is not None and int(second.token) > int(first.token)
        # the old holder can neither renew nor release what is no longer its own
        assert not await Leases(a).renew(first, 5000)
        assert not await Leases(a).release(first)
        # the same owner asking again gets a new grant, with a new token
        again = await Leases(b).acquire(0, key, fence, "r-b", 5000)
        assert again is not None and int(again.token) > int(second.token)
    finally:
        await a.close()
        await b.close()


async def test_a_stale_token_can_neither_acknowledge_nor_write(
    settings: runtime.ServiceSettings,
) -> None:
    a, b = link_for(settings, "r-a"), link_for(settings, "r-b")
    stream, out = a.key("s.p0"), a.key("s.out")
    key, fence = stream + ".lease.g", stream + ".fence.g"
    sync = client_for_url(settings.redis_url)
    try:
        sync.xgroup_create(stream, "g", id="0", mkstream=True)
        entry = sync.xadd(stream, {b"e": b"{}"})
        sync.xreadgroup("g", "r-a", {stream: ">"})
        stale = await Leases(a).acquire(0, key, fence, "r-a", 300)
        assert stale is not None
        # the lease runs out in Redis (r-a paused); r-b takes the partition
        with anyio.fail_after(10):
            while sync.exists(key):
                await anyio.sleep(0.05)
        fresh = await Leases(b).acquire(0, key, fence, "r-b", 5000)
        assert fresh is not None
        # r-a wakes up: its acknowledgement and its writes are refused, whole
        assert await Leases(a).acknowledge(stream, "g", stale, [entry]) == -1
        assert sync.xpending(stream, "g")["pending"] == 1
        added, refused, _ = await Leases(a).add(
            out, [(stale, b"late-1"), (stale, b"late-2")]
        )
        assert (added, refused) == (0, 2)
        assert not sync.exists(out)
        # the new owner's go through, and so does a message no lease fences
        added, refused, last = await Leases(b).add(
            out, [(fresh, b"ok"), (None, b"free"), (stale, b"late-3")]
        )
        assert (added, refused) == (2, 1) and last is not None
        assert [f[b"e"] for _, f in sync.xrange(out)] == [b"ok", b"free"]
        assert await Leases(b).acknowledge(stream, "g", fresh, [entry]) == 1
        assert sync.xpending(stream, "g")["pending"] == 0
    finally:
        sync.close()
        await a.close()
        await b.close()


async def test_a_dead_letter_moves_only_under_the_lease(
    settings: runtime.ServiceSettings,
) -> None:
    a = link_for(settings, "r-a")
    stream = a.key("s.p1")
    key, fence = stream + ".lease.g", stream + ".fence.g"
    sync = client_for_url(settings.redis_url)
    try:
        sync.xgroup_create(stream, "g", id="0", mkstream=True)
        entry = sync.xadd(stream, {b"e": b"{}"})
        sync.xreadgroup("g", "r-a", {stream: ">"})
        lease = await Leases(a).acquire(1, key, fence, "r-a", 5000)
        assert lease is not None
        stale = Lease(1, key, "0", lease.until)
        dead = [(entry, b"record")]
        assert await Leases(a).acknowledge(stream, "g", stale, [], dead) == -1
        assert not sync.exists(stream + ".dlq")
        assert await Leases(a).acknowledge(stream, "g", lease, [], dead) == 1
        assert sync.xlen(stream + ".dlq") == 1
        assert sync.xpending(stream, "g")["pending"] == 0
    finally:
        sync.close()
        await a.close()


async def test_members_beat_and_expire_by_the_redis_clock(
    settings: runtime.ServiceSettings,
) -> None:
    a, b = link_for(settings, "r-a"), link_for(settings, "r-b")
    try:
        assert await heartbeat(a, "w.in", 300) == ["r-a"]
        assert await heartbeat(b, "w.in", 60_000) == ["r-a", "r-b"]
        with anyio.fail_after(10):  # r-a stops beating: it drops out
            while await heartbeat(b, "w.in", 60_000) != ["r-b"]:
                await anyio.sleep(0.05)
        assert await heartbeat(b, "w.in", 0) == []  # leaving
    finally:
        await a.close()
        await b.close()


# -- wiring and one process ---------------------------------------------------


class Tick(BaseModel):
    account: str
    seq: int


class Ticks(runtime.Source):
    def __init__(self, name: str, count: int, keys: int, **options: Any) -> None:
        super().__init__(name, **options)
        self.count, self.keys = count, keys

    async def generate(self) -> Any:
        for n in range(self.count):
            yield Tick(account=f"acct-{n % self.keys}", seq=n // self.keys)


class Keep(runtime.Sink):
    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.items: list[Tick] = []

    def consume(self, item: Any) -> None:
        self.items.append(Tick.model_validate(item))


def keyed_service(settings: runtime.ServiceSettings, **connect: Any) -> runtime.Service:
    service = runtime.Service("kp", settings=settings)
    service.add(Ticks("ticks", 0, 1))
    service.add(Keep("keep"))
    return service


async def test_a_partition_read_under_a_lease_that_passed_on_takes_nothing(
    settings: runtime.ServiceSettings,
) -> None:
    """A replica paused past its lease reads under it as its own clock still
    trusts it: the read checks the token in Redis. A plain ``XREADGROUP`` took the
    entry into the paused replica's pending list, where the new owner got it only
    at a later claim, behind its key's newer entries (the key's order lost)."""
    service = keyed_service(settings.model_copy(update={"redis_consumer": "r-a"}))
    connection: Any = service.connect(
        "ticks.out", "keep.in", transport="redis", key="account", partitions=1
    )
    reader = connection.readers[0]
    stream, group = reader.stream, reader.group
    key, fence = connection.lease_key(0), connection.fence_key(0)
    b = link_for(settings, "r-b")
    sync = client_for_url(settings.redis_url)
    try:
        sync.xgroup_create(stream, group, id="0", mkstream=True)
        stale = await connection.leases.acquire(0, key, fence, "r-a", 300)
        assert stale is not None
        with anyio.fail_after(10):  # the lease runs out in Redis; r-b takes it
            while sync.exists(key):
                await anyio.sleep(0.05)
        fresh = await Leases(b).acquire(0, key, fence, "r-b", 5000)
        assert fresh is not None
        written = sync.xadd(stream, {b"e": b"{}"})
        # r-a, paused meanwhile, still trusts its lease by its own clock
        stale.until = connection.leases.clock() + 60
        reader.lease = stale

        assert await reader._read_new() == []
        assert stale.lost  # and it stops reading the partition
        assert sync.xpending(stream, group)["pending"] == 0
        # the new owner reads it; then, with nothing new, the id to wait past
        taken = await Leases(b).read(stream, group, "r-b", fresh, 10)
        assert taken == [(written, {b"e": b"{}"})]
        assert await Leases(b).read(stream, group, "r-b", fresh, 10) == written
        assert await Leases(b).read(stream, group, "r-a", stale, 10) == -1
    finally:
        sync.close()
        await b.close()
        await connection.link.close()


def test_partitions_need_a_key_and_at_least_one(
    settings: runtime.ServiceSettings,
) -> None:
    service = keyed_service(settings)
    with pytest.raises(runtime.WiringError, match="partitions needs a key"):
        service.connect("ticks.out", "keep.in", transport="redis", partitions=4)
    with pytest.raises(runtime.WiringError, match="at least 1"):
        service.connect(
            "ticks.out", "keep.in", transport="redis", key="account", partitions=0
        )


def test_memory_ignores_partitions(settings: runtime.ServiceSettings) -> None:
    service = keyed_service(settings)
    connection = service.connect("ticks.out", "keep.in", key="account", partitions=4)
    assert connection.transport == "memory" and connection.keeps_key_order


def test_a_keyed_redis_connection_is_one_stream_per_partition(
    settings: runtime.ServiceSettings,
) -> None:
    service = keyed_service(settings)
    connection: Any = service.connect(
        "ticks.out", "keep.in", transport="redis", key="account"
    )
    assert connection.keeps_key_order
    assert connection.partitions == DEFAULT_PARTITIONS
    prefix = settings.redis_prefix
    assert connection.streams[3] == f"{prefix}kp.ticks.out.keep.in.p3"
    assert connection.lease_key(3) == f"{prefix}kp.ticks.out.keep.in.p3.lease.keep.in"
    # unkeyed, it is the one stream that never promised key order
    plain = keyed_service(settings).connect("ticks.out", "keep.in", transport="redis")
    assert not plain.keeps_key_order


async def test_keyed_items_arrive_in_order_per_key_through_partitions(
    settings: runtime.ServiceSettings,
) -> None:
    service = runtime.Service("kp", settings=settings)
    service.add(Ticks("ticks", 2000, 50))
    keep = service.add(Keep("keep"))
    service.connect(
        "ticks.out", "keep.in", transport="redis", key="account", partitions=4
    )
    with anyio.fail_after(60):
        report = await service.run()
    assert report.completed
    seen: dict[str, list[int]] = {}
    for tick in keep.items:
        seen.setdefault(tick.account, []).append(tick.seq)
    assert len(keep.items) == 2000
    assert all(seqs == list(range(40)) for seqs in seen.values())
    sync = client_for_url(settings.redis_url)
    try:
        prefix = settings.redis_prefix
        lengths = [sync.xlen(f"{prefix}kp.ticks.out.keep.in.p{n}") for n in range(4)]
        assert all(lengths)  # every partition carried some keys
        for n in range(4):
            assert (
                sync.xpending(f"{prefix}kp.ticks.out.keep.in.p{n}", "keep.in")[
                    "pending"
                ]
                == 0
            )
    finally:
        sync.close()


# -- metrics, /ready and the partitions command -------------------------------


async def test_two_keyed_connections_from_one_port_each_take_every_item_once(
    settings: runtime.ServiceSettings,
) -> None:
    """Each keyed connection has streams of its own: a port fanning out to two keyed
    inputs (with different counts) delivers every item once to each."""
    service = runtime.Service("kp", settings=settings)
    service.add(Ticks("ticks", 300, 7))
    first = service.add(Keep("keep"))
    second = service.add(Keep("other"))
    service.connect(
        "ticks.out", "keep.in", transport="redis", key="account", partitions=4
    )
    service.connect(
        "ticks.out", "other.in", transport="redis", key="account", partitions=2
    )
    with anyio.fail_after(60):
        report = await service.run()
    assert report.completed
    sent = sorted((f"acct-{n % 7}", n // 7) for n in range(300))
    for keep in (first, second):
        assert sorted((t.account, t.seq) for t in keep.items) == sent, keep.name
        by_key: dict[str, list[int]] = {}
        for tick in keep.items:
            by_key.setdefault(tick.account, []).append(tick.seq)
        assert all(seqs == sorted(seqs) for seqs in by_key.values())


def test_skew_is_the_hottest_share_over_the_mean() -> None:
    assert skew([5, 5, 5, 5]) == 1.0
    assert skew([0, 0, 0]) == 0.0
    assert skew([8, 0, 0, 0]) == 4.0


class GatedTicks(runtime.Source):
    """Half of its ticks on one hot account; it starts when ``gate`` is set."""

    def __init__(self, name: str, count: int) -> None:
        super().__init__(name, outputs={"out": Tick})
        self.count = count
        self.gate = anyio.Event()

    def account(self, n: int) -> str:
        return "hot" if n % 2 == 0 else f"acct-{n % 200}"

    async def generate(self) -> Any:
        await self.gate.wait()
        for n in range(self.count):
            yield Tick(account=self.account(n), seq=n)
        # Not finished: a finished source in this process ends the readers (they
        # release their partitions once they read everything it wrote).
        await anyio.sleep_forever()


def hot_service(settings: runtime.ServiceSettings) -> tuple[Any, GatedTicks, Keep, Any]:
    service = runtime.Service("hot", settings=settings)
    ticks = service.add(GatedTicks("ticks", 4000))
    keep = service.add(Keep("keep"))
    connection = service.connect(
        "ticks.out", "keep.in", transport="redis", key="account", partitions=8
    )
    return service, ticks, keep, connection


async def test_a_hot_key_shows_in_the_skew_gauge_and_ops_see_the_owner(
    settings: runtime.ServiceSettings,
) -> None:
    settings = settings.model_copy(
        update={"redis_lease_ttl_ms": 1000, "redis_consumer": "r-only"}
    )
    service, ticks, keep, connection = hot_service(settings)
    async with service.running():
        with anyio.fail_after(60):
            while not connection._intake:  # the first sample: nothing written yet
                await anyio.sleep(0.01)
            ticks.gate.set()
            while len(keep.items) < ticks.count:
                await anyio.sleep(0.01)
            sampled = len(connection._intake)
            while len(connection._intake) < sampled + 2:  # a sample after the last
                await anyio.sleep(0.01)
            while len(connection.owned()) < 8:
                await anyio.sleep(0.01)
        counts = [0] * 8
        for n in range(ticks.count):
            counts[partition_of(ticks.account(n), 8)] += 1
        expected = skew(counts)
        assert expected > 3  # half the load on one key, over 8 partitions
        assert connection.skew == pytest.approx(expected)
        text = service.metrics.render().decode()
        gauge = re.search(r"portwright_partition_skew\{[^}]*\} ([0-9.e+]+)", text)
        assert gauge is not None and float(gauge[1]) == pytest.approx(expected)
        assert text.count("portwright_partition_owner{") == 8
        assert 'owner="r-only"' in text
        taken = re.findall(
            r"portwright_partition_messages_in_total\{[^}]*\} (\S+)", text
        )
        assert sum(float(n) for n in taken) >= ticks.count  # at least once
        ready = dependency_checks(service)
        assert ready["redis"]["partitions"] == {"keep.in": list(range(8))}
        lines: list[str] = []
        other, *_ = hot_service(settings)  # the command builds its own service
        assert await show_partitions(other, echo=lines.append) == 0
    assert "members: r-only" in lines[0]
    rows = [line.split() for line in lines[2:]]
    assert [row[0] for row in rows] == [str(n) for n in range(8)]
    assert all(row[1] == "r-only" and row[2] == "r-only" for row in rows)
    assert all(row[3].isdigit() for row in rows)  # the lease's token


async def test_a_lease_past_its_trust_stays_lost_though_redis_would_renew_it(
    settings: runtime.ServiceSettings,
) -> None:
    # What was refused while the lease was past its trust (an output not written)
    # must never be acknowledged under a renewal that came late: once not usable,
    # the lease is lost for good, and the next grant delivers it again.
    clock = Clock()
    link = link_for(settings, "r-a")
    leases = Leases(link, clock)
    try:
        lease = await leases.acquire(
            2, link.key("p2.lease"), link.key("p2.f"), "r-a", 60_000
        )
        assert lease is not None
        clock.now += 60 * SAFE  # the event loop stalled; Redis still holds it
        assert not lease.usable(clock.now) and lease.lost
        assert not await leases.renew(lease, 60_000)
        clock.now = 100.0
        assert not lease.usable(clock.now)
    finally:
        await link.close()
