"""Joins: two keyed inputs, each item paired with the other side's items near in time.

Events carry fixed timestamps; idleness and processing time are driven by a
``ManualClock`` the test moves, never by sleeping.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
import runtime
from anyio.abc import ObjectReceiveStream, ObjectSendStream
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from runtime.envelope import Envelope

from tests.runtime.support import Recorder

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Order(BaseModel):
    order_id: str
    placed_at: datetime


class Payment(BaseModel):
    order_id: str
    paid_at: datetime
    amount: float = 1.0


class Paid(BaseModel):
    order_id: str
    placed: float
    paid: float


def order(key: str, seconds: float) -> Order:
    return Order(order_id=key, placed_at=T0 + timedelta(seconds=seconds))


def payment(key: str, seconds: float, amount: float = 1.0) -> Payment:
    return Payment(order_id=key, paid_at=T0 + timedelta(seconds=seconds), amount=amount)


def since(moment: datetime) -> float:
    return (moment - T0).total_seconds()


class OrderPayments(runtime.Join):
    """Pairs as (key, order time, payment time), seconds from T0."""

    def match(self, left: Order, right: Payment) -> Paid | None:
        if right.amount == 0:
            return None
        if right.amount < 0:
            raise ValueError("negative payment")
        return Paid(
            order_id=left.order_id,
            placed=since(left.placed_at),
            paid=since(right.paid_at),
        )


def joiner(**options: Any) -> OrderPayments:
    defaults: dict[str, Any] = {
        "within": 5,
        "time": {"left": "placed_at", "right": "paid_at"},
        "inputs": {"left": Order, "right": Payment},
        "schema": Paid,
    }
    return OrderPayments("j", **(defaults | options))


class Feed(runtime.Source):
    """Yields what the test sends, until the test closes its end."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.send: ObjectSendStream[Any]
        self.receive: ObjectReceiveStream[Any]
        self.send, self.receive = anyio.create_memory_object_stream[Any](100_000)
        self.done = False

    async def generate(self) -> Any:
        async with self.receive:
            async for item in self.receive:
                yield item
        self.done = True

    async def finish(self) -> None:
        await self.send.aclose()
        await until(lambda: self.done)


class Wired:
    """A join between two feeds, its outputs recorded."""

    def __init__(self, join: runtime.Join, *, keyed: bool = True) -> None:
        self.join = join
        self.service = service = runtime.Service("joins")
        self.left = service.add(Feed("orders"))
        self.right = service.add(Feed("payments"))
        service.add(join)
        self.out = service.add(Recorder("out"))
        key = "order_id" if keyed else None
        self.connections = [
            service.connect("orders.out", "j.left", key=key),
            service.connect("payments.out", "j.right", key=key),
        ]
        service.connect("j.out", "out.in")
        self.unmatched: dict[str, Recorder] = {}
        for side in ("left", "right"):
            if f"unmatched_{side}" in join.outputs:
                recorder = service.add(Recorder(f"lost_{side}"))
                service.connect(f"j.unmatched_{side}", f"lost_{side}.in")
                self.unmatched[side] = recorder
        if "errors" in join.outputs:
            self.errors = service.add(Recorder("errors_seen"))
            service.connect("j.errors", "errors_seen.in")

    async def finish(self) -> None:
        await self.left.finish()
        await self.right.finish()

    def pairs(self) -> list[tuple[str, float, float]]:
        return sorted((p.order_id, p.placed, p.paid) for p in self.out.items)

    def lost(self, side: str) -> list[Any]:
        return self.unmatched[side].items


async def until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    with anyio.fail_after(seconds):
        while not check():
            await anyio.sleep(0.001)


async def settle() -> None:
    for _ in range(50):
        await anyio.sleep(0)


async def test_items_of_the_same_key_within_the_interval_pair_and_others_do_not() -> (
    None
):
    wired = Wired(joiner(unmatched=True, grace=5))
    async with wired.service.running():
        await wired.left.send.send(order("a", 10))
        await wired.left.send.send(order("b", 10))
        await until(lambda: wired.join.buffered == 2)
        await wired.right.send.send(payment("a", 5))  # 5 before, both ends in: pairs
        await wired.right.send.send(payment("a", 13))  # 3 after: pairs
        await wired.right.send.send(payment("c", 11))  # another key: does not
        await until(lambda: len(wired.out.items) == 2)
        await wired.finish()
    assert wired.pairs() == [("a", 10, 5), ("a", 10, 13)]
    # at drain, what never paired goes to unmatched
    assert wired.lost("left") == [order("b", 10)]
    assert wired.lost("right") == [payment("c", 11)]
    assert wired.join.matched_pairs == 2
    assert wired.join.unmatched_items == 2
    assert wired.join.buffered == 0


async def test_every_left_pairs_with_every_right_in_the_interval() -> None:
    wired = Wired(joiner(within=10))
    async with wired.service.running():
        for t in (0, 4):
            await wired.left.send.send(order("a", t))
        await until(lambda: wired.join.buffered == 2)
        for t in (6, 12):
            await wired.right.send.send(payment("a", t))
        await until(lambda: len(wired.out.items) == 3)
        await wired.finish()
    # 0 and 12 are 12 apart: the only pair missing
    assert wired.pairs() == [("a", 0, 6), ("a", 4, 6), ("a", 4, 12)]


async def test_an_item_is_unmatched_once_the_watermark_passes_its_interval() -> None:
    wired = Wired(joiner(unmatched=True))
    async with wired.service.running():
        await wired.left.send.send(order("a", 0))
        await until(lambda: wired.join.buffered == 1)
        await wired.right.send.send(payment("z", 5))  # 0 + 5 is not below 5: held
        await settle()
        assert wired.lost("left") == []
        await wired.right.send.send(payment("z", 5.5))  # the watermark passes 0 + 5
        await until(lambda: len(wired.lost("left")) == 1)
        assert wired.lost("left") == [order("a", 0)]
        # a payment for "a" within 5 of 0 can no longer come: 0.5 would be late
        await wired.right.send.send(payment("a", 0.5))
        await until(lambda: wired.join.late_items == 1)
        await wired.finish()
    assert wired.out.items == []
    assert payment("a", 0.5) in wired.lost("right")


async def test_an_item_within_the_grace_still_pairs_and_one_past_it_is_late() -> None:
    wired = Wired(joiner(grace=2, unmatched=True))
    async with wired.service.running():
        await wired.left.send.send(order("a", 10))
        await until(lambda: wired.join.buffered == 1)
        await wired.right.send.send(payment("a", 8))  # 2 behind 10: within the grace
        await wired.right.send.send(payment("a", 7.5))  # 2.5 behind: late
        await until(lambda: wired.join.late_items == 1)
        await wired.finish()
    assert wired.pairs() == [("a", 10, 8)]
    assert wired.lost("right") == [payment("a", 7.5)]
    assert wired.lost("left") == []


async def test_a_quiet_input_releases_its_items_by_idleness_on_the_clock() -> None:
    clock = runtime.ManualClock()
    wired = Wired(joiner(grace=1, unmatched=True, clock=clock))
    async with wired.service.running():
        await wired.left.send.send(order("a", 0))
        await wired.left.send.send(order("b", 3))
        await until(lambda: wired.join.buffered == 2)
        clock.advance(5.5)  # idle_after is within + grace: 6
        await settle()
        assert wired.lost("left") == []
        clock.advance(0.5)
        # the watermark moves on by 6, to 9, the horizon to 8: 0 + 5 is below it
        await until(lambda: len(wired.lost("left")) == 1)
        assert wired.lost("left") == [order("a", 0)]
        assert wired.join.watermark.value == (T0 + timedelta(seconds=9)).timestamp()
        clock.advance(6)  # quiet again: 15, horizon 14 passes 3 + 5
        await until(lambda: len(wired.lost("left")) == 2)
        assert wired.join.buffered == 0
        await wired.finish()
    assert wired.out.items == []


async def test_processing_time_pairs_what_comes_within_and_expires_by_the_timer() -> (
    None
):
    clock = runtime.ManualClock(wall=T0.timestamp())
    join = OrderPayments(
        "j",
        within=5,
        clock=clock,
        unmatched=True,
        inputs={"left": Order, "right": Payment},
    )
    join.match = lambda left, right: (left.order_id, right.amount)  # type: ignore
    wired = Wired(join)
    async with wired.service.running():
        await wired.left.send.send(order("a", 999))  # the event's own time is unread
        await wired.left.send.send(order("b", 999))
        await until(lambda: join.buffered == 2)
        clock.advance(3)
        await wired.right.send.send(payment("a", 0, amount=7))
        await until(lambda: len(wired.out.items) == 1)
        clock.advance(2)  # 5 since the orders: not yet past
        await settle()
        assert wired.lost("left") == []
        clock.advance(0.5)
        await until(lambda: len(wired.lost("left")) == 1)
        assert wired.lost("left") == [order("b", 999)]  # "a" paired
        assert join.buffered == 1  # the payment's 5 s run on
        await wired.finish()
    assert wired.out.items == [("a", 7)]
    assert wired.lost("right") == []  # it paired


async def test_match_returning_none_drops_the_pair_and_raising_reports_it() -> None:
    wired = Wired(joiner(unmatched=True, errors=True))
    async with wired.service.running():
        await wired.left.send.send(order("a", 0))
        await until(lambda: wired.join.buffered == 1)
        await wired.right.send.send(payment("a", 1, amount=0))  # None: dropped
        await wired.right.send.send(payment("a", 2, amount=-1))  # raises
        await wired.right.send.send(payment("a", 3))
        await until(lambda: len(wired.out.items) == 1)
        await until(lambda: len(wired.errors.items) == 1)
        await wired.finish()
    assert wired.pairs() == [("a", 0, 3)]
    assert wired.errors.items[0].error_type == "ValueError"
    assert wired.join.inputs["right"].errors == 1
    # every one had a partner in time: none is unmatched
    assert wired.lost("left") == wired.lost("right") == []
    assert wired.join.matched_pairs == 3


async def test_an_item_without_a_time_is_reported_not_held() -> None:
    wired = Wired(joiner(errors=True))
    async with wired.service.running():
        await wired.left.send.send({"order_id": "a"})
        await until(lambda: len(wired.errors.items) == 1)
        await wired.finish()
    assert wired.join.buffered == 0
    assert wired.join.inputs["left"].errors == 1


async def test_at_the_cap_the_oldest_item_is_dropped_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wired = Wired(joiner(max_buffered=2, unmatched=True, grace=100))
    caplog.set_level(logging.WARNING)
    async with wired.service.running():
        for t in (0, 1, 2, 3):
            await wired.left.send.send(order(f"k{t}", t))
        await until(lambda: wired.join.evicted == 2)
        assert wired.join.buffered == 2
        await until(lambda: len(wired.lost("left")) == 2)  # sent, then consumed
        assert [o.order_id for o in wired.lost("left")] == ["k0", "k1"]
        text = wired.service.metrics.render().decode()
        await wired.finish()
    warnings = [r for r in caplog.records if "max_buffered" in r.getMessage()]
    assert len(warnings) == 1
    assert 'portwright_join_evicted_total{component="j"} 2.0' in text
    assert 'portwright_join_buffered{component="j"} 2.0' in text
    assert 'portwright_join_unmatched_items_total{component="j"} 2.0' in text


async def test_metrics_show_pairs_unmatched_items_and_the_watermark_lag() -> None:
    clock = runtime.ManualClock(wall=T0.timestamp() + 100)
    wired = Wired(joiner(clock=clock))
    async with wired.service.running():
        await wired.left.send.send(order("a", 10))
        await wired.right.send.send(payment("a", 12))
        await until(lambda: wired.join.matched_pairs == 1)
        numbers = wired.service.metrics.groups()["j"]
        text = wired.service.metrics.render().decode()
        await wired.finish()
    assert numbers["watermark_lag_seconds"] == pytest.approx(88)
    assert numbers["matched_pairs"] == 1
    assert numbers["buffered_items"] == 2
    assert 'portwright_join_matched_pairs_total{component="j"} 1.0' in text
    assert "portwright_join_watermark_lag_seconds" in text


async def test_an_unkeyed_input_is_refused_when_the_service_starts() -> None:
    wired = Wired(joiner(), keyed=False)
    with pytest.raises(runtime.StartupError, match="must be keyed"):
        async with wired.service.running():
            pass


async def test_an_input_over_a_transport_that_keeps_no_state_is_refused() -> None:
    wired = Wired(joiner())
    # what a Redis connection sets (its acknowledgement hook), without a Redis:
    # not keyed over Redis (no ``keep_join``), so it cannot keep the join's state
    wired.connections[1].settled = lambda envelope, error: None
    with pytest.raises(
        runtime.StartupError, match=r"right input comes over .* cannot keep"
    ):
        async with wired.service.running():
            pass


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"within": -1}, "within must be a positive"),
        ({"grace": 1, "time": None}, "grace is for event time"),
        ({"max_buffered": 0}, "max_buffered must be at least 1"),
        ({"time": {"left": "placed_at"}}, "time per side must name left and right"),
        ({"inputs": {"left": Order}}, "exactly two input ports"),
    ],
)
def test_a_misconfigured_join_is_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(runtime.WiringError, match=message):
        joiner(**options)


# --- the synchronous core, fed directly: fast enough for hypothesis -------------


def core(join: runtime.Join, arrivals: list[tuple[str, Any]], batch: int) -> Any:
    """Add the items in this order (each side's runs ``batch`` at a time), then
    drain; the pairs and the unmatched items, as multisets."""
    keys = {"left": by_order_id, "right": by_order_id}
    run: list[tuple[str, Any]] = []

    def flush() -> None:
        if run:
            side = run[0][0]
            entries = [(0.0, Envelope.start(item, 0.0)) for _, item in run]
            join._add_all(side, entries, keys[side])  # type: ignore[arg-type]
            run.clear()

    for side, item in arrivals:
        if run and (run[0][0] != side or len(run) == batch):
            flush()
        run.append((side, item))
    flush()
    join.buffers.clear()
    pairs = Counter(
        (p.order_id, p.placed, p.paid)
        for _, envelope in join._entries
        for p in [envelope.item]
    )
    lost = Counter(
        (side, repr(envelope.item))
        for side, entries in join._dropped.items()
        for _, envelope in entries
    )
    return pairs, lost


def by_order_id(item: Any) -> str:
    return str(item.order_id)


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(["left", "right"]),
            st.sampled_from("abc"),
            st.integers(0, 40),
        ),
        max_size=40,
    ),
    delays=st.lists(st.integers(0, 4), min_size=40, max_size=40),
    within=st.integers(1, 6),
    batch=st.integers(1, 5),
)
def test_any_arrival_order_within_the_grace_gives_the_pairs_of_sorted_order(
    events: list[tuple[str, str, int]],
    delays: list[int],
    within: int,
    batch: int,
) -> None:
    grace = 4
    items = [
        (side, order(key, t) if side == "left" else payment(key, t))
        for side, key, t in events
    ]

    def join() -> runtime.Join:
        return joiner(
            within=within, grace=grace, unmatched=True, clock=runtime.ManualClock()
        )

    def t(item: Any) -> float:
        return since(item.placed_at if isinstance(item, Order) else item.paid_at)

    in_order = sorted(items, key=lambda pair: t(pair[1]))
    # arriving at t + delay, delay <= grace: never more than the grace behind
    arrival = [
        pair
        for _, pair in sorted(
            ((t(pair[1]) + delays[n], n), pair) for n, pair in enumerate(items)
        )
    ]
    shuffled = join()
    got = core(shuffled, arrival, batch)
    assert got == core(join(), in_order, 1)
    assert shuffled.late_items == 0
    # and both are the nested loop's pairs
    expected = Counter(
        (left.order_id, t(left), t(right))
        for ls, left in items
        for rs, right in items
        if ls == "left"
        and rs == "right"
        and left.order_id == right.order_id
        and abs(t(left) - t(right)) <= within
    )
    assert got[0] == expected


class Split(runtime.Source):
    """Yields orders on ``left`` and payments on ``right``, in the given order."""

    def __init__(self, events: list[tuple[str, str, int]]) -> None:
        super().__init__("split", outputs={"left": Order, "right": Payment})
        self.events = events

    async def generate(self) -> Any:
        for side, key, t in self.events:
            if side == "left":
                await self.emit("left", order(key, t))
            else:
                await self.emit("right", payment(key, t))
        return
        yield


async def test_fifty_thousand_random_events_pair_exactly_like_a_nested_loop() -> None:
    rng = random.Random(16)
    within, grace = 30, 5_000
    events = [
        (rng.choice(["left", "right"]), f"k{rng.randrange(200)}", rng.randrange(50_000))
        for _ in range(50_000)
    ]
    # roughly in time order, as a real feed: each item up to 60 s behind; one
    # source, so that neither side runs far ahead of the other (the grace covers
    # what the two connections' buffers let one side get ahead)
    events.sort(key=lambda e: e[2] + rng.uniform(0, 60))
    join = joiner(within=within, grace=grace, unmatched=True)
    service = runtime.Service("joins")
    service.add(Split(events))
    service.add(join)
    out = service.add(Recorder("out"))
    lost = [service.add(Recorder("lost_left")), service.add(Recorder("lost_right"))]
    service.connect("split.left", "j.left", key="order_id")
    service.connect("split.right", "j.right", key="order_id")
    service.connect("j.out", "out.in")
    service.connect("j.unmatched_left", "lost_left.in")
    service.connect("j.unmatched_right", "lost_right.in")
    async with service.running():
        await until(
            lambda: join.inputs["left"].age.count + join.inputs["right"].age.count
            == len(events),
            120,
        )
    assert join.late_items == 0
    # the reference: a plain nested loop, per key (the pairs of other keys are
    # never within the join's reach anyway)
    lefts: dict[str, list[int]] = defaultdict(list)
    rights: dict[str, list[int]] = defaultdict(list)
    for side, key, t in events:
        (lefts if side == "left" else rights)[key].append(t)
    expected = Counter(
        (key, float(a), float(b))
        for key in lefts
        for a in lefts[key]
        for b in rights.get(key, [])
        if abs(a - b) <= within
    )
    assert Counter((p.order_id, p.placed, p.paid) for p in out.items) == expected
    paired_left = {(k, a) for k, a, _ in expected}
    paired_right = {(k, b) for k, _, b in expected}
    unpaired = sum(
        1
        for side, key, t in events
        if (key, float(t)) not in (paired_left if side == "left" else paired_right)
    )
    assert len(lost[0].items) + len(lost[1].items) == unpaired
    assert join.unmatched_items == unpaired
    assert join.matched_pairs == sum(expected.values())


class Both(BaseModel):
    order_id: str
    placed_at: datetime
    paid_at: datetime
    amount: float


def test_combine_builds_the_output_from_the_fields_of_the_pair_left_first() -> None:
    join = runtime.Join("j", within=5, schema=Both)
    got = join.combine(order("a", 1), payment("b", 2, amount=3), Both)
    assert got == Both(
        order_id="a",
        placed_at=T0 + timedelta(seconds=1),
        paid_at=T0 + timedelta(seconds=2),
        amount=3,
    )


async def test_a_clock_set_after_construction_drives_idleness() -> None:
    clock = runtime.ManualClock()
    join = joiner(unmatched=True)
    join.clock = clock  # what an emitted test does with a generated component
    wired = Wired(join)
    async with wired.service.running():
        await wired.left.send.send(order("a", 0))
        await until(lambda: join.buffered == 1)
        clock.advance(5)  # idle_after: within + grace = 5; horizon 5 is not past 0 + 5
        await settle()
        clock.advance(5)
        await until(lambda: len(wired.lost("left")) == 1)
        await wired.finish()


class Looked(OrderPayments):
    """An ``async def match``: a lookup between the pair and what it sends."""

    async def match(self, left: Order, right: Payment) -> Paid | None:  # type: ignore[override]
        await anyio.sleep(0)
        if right.amount < 0:
            raise ValueError("negative payment")
        return None if right.amount == 0 else super().match(left, right)


async def test_an_async_match_is_awaited_and_its_failures_reported() -> None:
    join = Looked(
        "j",
        within=5,
        time={"left": "placed_at", "right": "paid_at"},
        inputs={"left": Order, "right": Payment},
        schema=Paid,
        errors=True,
    )
    wired = Wired(join)
    async with wired.service.running():
        await wired.left.send.send(order("a", 0))
        await until(lambda: join.buffered == 1)
        await wired.right.send.send(payment("a", 1))
        await wired.right.send.send(payment("a", 2, amount=0))  # None: dropped
        await wired.right.send.send(payment("a", 3, amount=-1))  # raises
        await until(lambda: len(wired.errors.items) == 1)
        await until(lambda: len(wired.out.items) == 1)
        await wired.finish()
    assert wired.pairs() == [("a", 0, 1)]
    assert join.matched_pairs == 3
    assert wired.errors.items[0].error_type == "ValueError"
