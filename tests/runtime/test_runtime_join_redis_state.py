"""A join over Redis in one process, against a real Redis: what it refuses at start,
and an expiry by idleness committed by its script (a manual clock), items paired
and unpaired deleted from the partition's state as they expire (issue #16).

The kill tests, with replicas as processes, are in test_runtime_join_redis.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
import redis
import runtime
from pydantic import BaseModel

from tests.redisenv import delete_prefixed, redis_url, unique_prefix

pytestmark = pytest.mark.anyio

T0 = 1_700_000_000.0


class Order(BaseModel):
    account: str
    seq: int
    at: datetime


class Payment(BaseModel):
    account: str
    seq: int
    at: datetime


class Pair(BaseModel):
    order: int
    payment: int


class Pairs(runtime.Join):
    def match(self, left: Order, right: Payment) -> Pair:
        return Pair(order=left.seq, payment=right.seq)


class Held(runtime.Source):
    """Yields ``items``, then stays open (the join's state stays in Redis when its
    inputs end, so the test keeps them running)."""

    def __init__(self, name: str, schema: type[BaseModel], items: list[Any]) -> None:
        super().__init__(name, outputs={"out": schema})
        self.items = items
        self.done = anyio.Event()

    async def generate(self) -> AsyncIterator[Any]:
        for item in self.items:
            yield item
        await self.done.wait()


class Keep(runtime.Sink):
    def __init__(self, name: str, schema: Any) -> None:
        super().__init__(name, inputs={"in": schema})
        self.items: list[Any] = []

    def consume(self, item: Any) -> None:
        self.items.append(item)


def joined(
    join: runtime.Join,
    *,
    orders: list[Order] = (),  # type: ignore[assignment]
    payments: list[Payment] = (),  # type: ignore[assignment]
    left: dict[str, Any] | None = None,
    right: dict[str, Any] | None = None,
    out: str = "redis",
    prefix: str = "",
) -> tuple[runtime.Service, list[Held], dict[str, Keep]]:
    """``orders`` and ``payments`` over keyed Redis connections (4 partitions,
    unless ``left`` or ``right`` say otherwise) into ``join``; its outputs to sinks."""
    settings = runtime.ServiceSettings(
        redis_url=redis_url(), redis_prefix=prefix or unique_prefix()
    )
    service = runtime.Service("jr", settings=settings)
    sources = [
        service.add(Held("orders", Order, list(orders))),
        service.add(Held("payments", Payment, list(payments))),
    ]
    service.add(join)
    sinks = {
        "out": service.add(Keep("keep", Pair)),
        "unmatched_left": service.add(Keep("lonely_orders", Order)),
        "unmatched_right": service.add(Keep("lonely_payments", Payment)),
    }
    for source, side, options in (
        ("orders", "left", left),
        ("payments", "right", right),
    ):
        service.connect(
            f"{source}.out",
            f"{join.name}.{side}",
            **(
                {"transport": "redis", "key": "account", "partitions": 4}
                | (options or {})
            ),
        )
    for port, sink in sinks.items():
        if port in join.outputs:
            service.connect(f"{join.name}.{port}", f"{sink.name}.in", transport=out)
    return service, sources, sinks


def pairs(**options: Any) -> Pairs:
    arguments: dict[str, Any] = {
        "within": 1.0,
        "time": "at",
        "unmatched": True,
        "schema": Pair,
        "inputs": {"left": Order, "right": Payment},
    }
    return Pairs("pairs", **(arguments | options))


@pytest.mark.parametrize(
    ("join", "setup", "message"),
    [
        (pairs(), {"right": {"partitions": 8}}, "the same number of partitions"),
        (pairs(), {"left": {"transport": "memory"}}, "connect both over redis"),
        (pairs(time=None), {}, "event time only"),
        (pairs(), {"out": "memory"}, "pairs.out must be connected over redis too"),
        (pairs(key="account"), {}, "give the join no key of its own"),
    ],
    ids=["partitions", "one-side-in-memory", "processing-time", "out-in-memory", "key"],
)
async def test_what_a_join_over_redis_cannot_keep_exact_is_refused_at_start(
    join: runtime.Join, setup: dict[str, Any], message: str
) -> None:
    service, _, _ = joined(join, **setup)
    with pytest.raises(runtime.StartupError, match=message):
        async with service.running():
            pass


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(T0 + seconds, UTC)


async def _until(condition: Any, detail: Any = str) -> None:
    with anyio.move_on_after(30):
        while not condition():
            await anyio.sleep(0.02)
        return
    pytest.fail(f"gave up waiting {detail()}")


async def test_an_expiry_by_idleness_is_a_commit_that_deletes_what_it_drops() -> None:
    prefix = unique_prefix()
    clock = runtime.ManualClock(wall=T0)
    # (a grace: the two inputs are two streams, read in either order)
    join = pairs(idle_after=5.0, grace=10.0, clock=clock)
    orders = [
        Order(account="a", seq=1, at=_at(1)),
        Order(account="b", seq=2, at=_at(2)),
    ]
    payments = [Payment(account="a", seq=10, at=_at(1.5))]
    service, sources, sinks = joined(
        join, orders=orders, payments=payments, prefix=prefix
    )
    left = join.inputs["left"].connections[0]
    states = [f"{s}.state.pairs.left" for s in left.streams]  # type: ignore[attr-defined]
    sync = redis.Redis.from_url(redis_url())
    try:

        def held() -> list[bytes]:
            return [
                name
                for state in states
                for name in sync.hgetall(state)
                if name != b"~watermark"
            ]

        async with service.running():
            # a's pair made; all three held: none is past the horizon yet
            await _until(
                lambda: len(held()) == 3 and len(sinks["out"].items) == 1,
                lambda: (held(), sinks["out"].items, join.matched_pairs),
            )
            assert sinks["unmatched_left"].items == []
            clock.advance(60)  # quiet for 60 s: the watermark moves on by as much
            await _until(lambda: held() == [], lambda: (held(), join.buffered))
            await _until(lambda: len(sinks["unmatched_left"].items) == 1)
            for source in sources:
                source.done.set()
        assert [(p.order, p.payment) for p in sinks["out"].items] == [(1, 10)]
        assert [o.seq for o in sinks["unmatched_left"].items] == [2]
        assert sinks["unmatched_right"].items == []
        assert join.matched_pairs == 1 and join.unmatched_items == 1
    finally:
        sync.close()
        delete_prefixed(redis_url(), prefix)


async def test_at_the_cap_the_oldest_is_dropped_early_and_deleted() -> None:
    prefix = unique_prefix()
    join = pairs(max_buffered=2, grace=10.0)
    orders = [Order(account=a, seq=n, at=_at(n)) for n, a in enumerate("abc")]
    one = {"partitions": 1}  # (the cap is per partition: all three in one)
    service, sources, sinks = joined(
        join, orders=orders, left=one, right=one, prefix=prefix
    )
    left = join.inputs["left"].connections[0]
    state = f"{left.streams[0]}.state.pairs.left"  # type: ignore[attr-defined]
    sync = redis.Redis.from_url(redis_url())
    try:

        def held() -> list[int]:
            return sorted(
                json.loads(value)[3]["$item"]["seq"]
                for name, value in sync.hgetall(state).items()
                if name != b"~watermark"
            )

        async with service.running():
            await _until(lambda: held() == [1, 2], held)
            await _until(lambda: len(sinks["unmatched_left"].items) == 1)
            for source in sources:
                source.done.set()
        assert [o.seq for o in sinks["unmatched_left"].items] == [0]
        assert join.evicted == 1 and join.buffered == 0  # (stopped: kept in Redis only)
    finally:
        sync.close()
        delete_prefixed(redis_url(), prefix)
