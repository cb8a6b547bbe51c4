"""Connections carried by Redis: the same components, at-least-once between replicas."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import orjson
import pytest
import redis
import runtime
from pydantic import BaseModel
from runtime import deadletter
from runtime.redis.link import RedisLink

from tests.redisenv import redis_url
from tests.runtime.support import Numbers, Recorder, client_for, redis_settings


@pytest.fixture
def settings() -> Iterator[runtime.ServiceSettings]:
    """Settings on the shared Redis, under a prefix of this test's own."""
    yield from redis_settings(redis_url())


def client(settings: runtime.ServiceSettings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url)


class Double(runtime.Transformer):
    def transform(self, item: int) -> int:
        return item * 2


class Order(BaseModel):
    order_id: str
    amount: float


class Scored(Order):
    risk: float


class Score(runtime.Transformer):
    def transform(self, item: Order) -> Scored:
        return Scored(**item.model_dump(), risk=item.amount / 100)


class Envelopes(runtime.Sink):
    """Keeps each message it consumes, with its ids."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.seen: list[runtime.Envelope] = []

    def consume(self, item: Any) -> None:
        message = runtime.current_message()
        assert message is not None and message.item is item
        self.seen.append(message)


def pending(settings: runtime.ServiceSettings, stream: str, group: str) -> int:
    with client(settings) as c:
        return int(c.xpending(settings.redis_prefix + stream, group)["pending"])


@pytest.mark.anyio
async def test_items_cross_redis_and_are_all_acknowledged(
    settings: runtime.ServiceSettings,
) -> None:
    service = runtime.Service("rt", settings=settings)
    service.add(Numbers("numbers", 2000))
    service.add(Double("double"))
    sink = service.add(Recorder("sink"))
    service.connect("numbers.out", "double.in", transport="redis")
    service.connect("double.out", "sink.in", transport="redis")
    with anyio.fail_after(30):
        report = await service.run()

    assert report.completed
    assert sorted(sink.items) == [2 * n for n in range(2000)]
    assert pending(settings, "rt.numbers.out", "double.in") == 0
    assert pending(settings, "rt.double.out", "sink.in") == 0
    snapshot = service.metrics.snapshot()
    assert snapshot["sink"]["in"]["messages"] == 2000
    assert snapshot["sink"]["in"]["redeliveries"] == 0
    assert snapshot["sink"]["in"]["dead_lettered"] == 0
    assert b"portwright_stream_lag" in service.metrics.render()


@pytest.mark.anyio
async def test_writes_carry_on_after_redis_forgets_its_scripts(
    settings: runtime.ServiceSettings,
) -> None:
    # Each batch is written by one script call; a Redis that restarted has lost
    # its scripts (as SCRIPT FLUSH does) and the writer must load it again.
    service = runtime.Service("rt", settings=settings)
    inlet = service.add(runtime.Inlet("numbers", int))
    service.add(Double("double"))
    sink = service.add(Recorder("sink"))
    service.connect("numbers.out", "double.in", transport="redis")
    service.connect("double.out", "sink.in", transport="redis")
    with client(settings) as c:
        async with service.running():
            for number in range(10):
                await inlet.send(number)
            await wait_until(lambda: len(sink.items) == 10)
            c.script_flush()
            for number in range(10, 20):
                await inlet.send(number)
            await wait_until(lambda: len(sink.items) == 20)
            inlet.close()

    assert sorted(sink.items) == [2 * n for n in range(20)]
    assert pending(settings, "rt.numbers.out", "double.in") == 0
    assert pending(settings, "rt.double.out", "sink.in") == 0


@pytest.mark.anyio
async def test_ids_and_schemas_survive_the_wire(
    settings: runtime.ServiceSettings,
) -> None:
    service = runtime.Service("rt", settings=settings)
    inlet = service.add(runtime.Inlet("orders", Order))
    service.add(Score("score", inputs={"in": Order}, outputs={"out": Scored}))
    sink = service.add(Envelopes("sink", inputs={"in": Order}))
    service.connect("orders.out", "score.in", transport="redis")
    service.connect("score.out", "sink.in", transport="redis")  # Scored -> Order
    async with service.running():
        sent = await inlet.send(
            Order(order_id="o-1", amount=42), correlation_id="req-7"
        )
        inlet.close()

    [received] = sink.seen
    assert type(received.item) is Scored  # the subclass the sender sent
    assert received.item == Scored(order_id="o-1", amount=42, risk=0.42)
    assert received.correlation_id == "req-7"
    assert received.causation_id == sent.id
    assert received.id != sent.id
    # a message derived from one that came over Redis gets a reproducible id
    assert received.id == runtime.envelope.stable_id(sent.id, "score.out")


class Then(runtime.Source):
    """Yields 0..count-1, then stays open until the service stops."""

    def __init__(self, name: str, count: int) -> None:
        super().__init__(name)
        self.count = count

    async def generate(self) -> Any:
        for number in range(self.count):
            yield number
        await anyio.sleep_forever()


class Picky(runtime.Transformer):
    """Fails on every number ending in 3, until it is fixed."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.calls: dict[int, int] = {}
        self.fixed = False

    def transform(self, item: int) -> int:
        self.calls[item] = self.calls.get(item, 0) + 1
        if item % 10 == 3 and not self.fixed:
            raise ValueError(f"cannot take {item} (customer_email=ann@example.com)")
        return item


def picky_service(settings: runtime.ServiceSettings) -> runtime.Service:
    service = runtime.Service("rt", settings=settings, pii_fields={"customer_email"})
    service.add(Then("numbers", 30))
    service.add(Picky("picky"))
    service.add(Recorder("sink"))
    service.connect("numbers.out", "picky.in", transport="redis")
    service.connect("picky.out", "sink.in", transport="redis")
    return service


async def wait_until(check: Callable[[], bool], seconds: float = 15.0) -> None:
    """Poll ``check`` until it holds; fail the test after ``seconds``."""
    with anyio.fail_after(seconds):
        while not check():
            await anyio.sleep(0.02)


@pytest.mark.anyio
async def test_poison_items_are_dead_lettered_after_exactly_max_retries_then_replayed(
    settings: runtime.ServiceSettings,
) -> None:
    settings = settings.model_copy(update={"redis_max_retries": 3})
    dlq = settings.redis_prefix + "rt.numbers.out.dlq"
    stream = settings.redis_prefix + "rt.numbers.out"
    service = picky_service(settings)
    picky = service.components["picky"]
    sink = service.components["sink"]
    assert isinstance(picky, Picky) and isinstance(sink, Recorder)
    tool = picky_service(settings)  # what `python -m <service> dlq ...` builds
    printed: list[str] = []
    with client(settings) as c:
        async with service.running():
            await wait_until(lambda: c.xlen(dlq) == 3 and len(sink.items) == 27)
            poison = [3, 13, 23]
            assert {n: picky.calls[n] for n in poison} == {3: 3, 13: 3, 23: 3}
            assert all(picky.calls[n] == 1 for n in range(30) if n not in poison)
            [(_, fields), *_] = c.xrange(dlq)
            record = orjson.loads(fields[b"e"])
            assert record["group"] == "picky.in"
            assert record["stream"] == stream
            assert record["attempts"] == 3
            assert record["error"]["type"] == "ValueError"
            assert "ann@example.com" not in record["error"]["message"]  # masked
            assert record["envelope"]["payload"] == 3
            assert record["dead_lettered_at"] >= record["enqueued_at"]

            before = (c.xrange(dlq), c.xlen(stream), c.xpending(stream, "picky.in"))
            code = await deadletter.run(
                tool, "replay", "numbers.out", None, dry_run=True, echo=printed.append
            )
            assert code == 0
            assert (c.xrange(dlq), c.xlen(stream), c.xpending(stream, "picky.in")) == (
                before
            )
            assert printed[-1].startswith("3 dead letter(s) would replay")

            picky.fixed = True
            await deadletter.run(
                tool, "replay", "numbers.out", None, echo=printed.append
            )
            await wait_until(lambda: len(sink.items) == 30)
            assert c.xlen(dlq) == 0
    assert sorted(sink.items) == list(range(30))
    assert {n: picky.calls[n] for n in (3, 13, 23)} == {3: 4, 13: 4, 23: 4}
    assert service.metrics.snapshot()["picky"]["in"]["dead_lettered"] == 3
    assert service.metrics.snapshot()["picky"]["in"]["redeliveries"] == 6


class Stuck(runtime.Sink):
    """Takes items and never finishes one: a replica that hangs, then dies."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.taken = 0

    async def consume(self, item: int) -> None:
        self.taken += 1
        await anyio.sleep_forever()


def split_service(
    settings: runtime.ServiceSettings, sink: runtime.Sink, **update: Any
) -> runtime.Service:
    service = runtime.Service("rt", settings=settings.model_copy(update=update))
    service.add(Then("numbers", 100))
    service.add(sink)
    service.connect("numbers.out", "sink.in", buffer_size=10, transport="redis")
    return service


@pytest.mark.anyio
async def test_a_dead_replicas_items_are_claimed_by_a_live_one(
    settings: runtime.ServiceSettings,
) -> None:
    producer = split_service(settings, Recorder("sink"), components="numbers")
    stuck = Stuck("sink")
    dying = split_service(settings, stuck, components="sink", redis_consumer="a")
    live = Recorder("sink")
    survivor = split_service(settings, live, components="sink", redis_consumer="b")
    async with producer.running():
        with anyio.CancelScope() as dead:
            async with anyio.create_task_group() as group:
                group.start_soon(dying.run)
                with anyio.fail_after(10):
                    while stuck.taken == 0:
                        await anyio.sleep(0.01)
                dead.cancel()  # the replica dies holding its buffer
        async with survivor.running():
            await wait_until(lambda: len(live.items) >= 100)
    assert sorted(set(live.items)) == list(range(100))
    stats = survivor.metrics.snapshot()["sink"]["in"]
    assert stats["redeliveries"] >= 1  # what "a" held came again, claimed by "b"
    assert stats["dead_lettered"] == 0


class Once(runtime.Sink):
    """Applies each message's effect once, however often the message comes."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.applied: list[int] = []
        self.consumed = 0

    async def consume(self, item: int) -> None:
        self.consumed += 1
        await self.once(lambda: self.applied.append(item))


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["memory", "redis"])
async def test_once_applies_an_effect_once_per_key(
    settings: runtime.ServiceSettings, transport: str
) -> None:
    service = runtime.Service("rt", settings=settings)
    service.add(Then("numbers", 3))
    sink = service.add(Once("sink"))
    service.connect("numbers.out", "sink.in", transport=transport)  # type: ignore[arg-type]
    calls: list[str] = []

    def effect() -> None:
        calls.append("ran")

    async def failing() -> None:
        raise RuntimeError("the effect failed")

    async with service.running():
        await wait_until(lambda: len(sink.applied) == 3)
        assert await sink.once(effect, key="k") is True
        assert await sink.once(effect, key="k") is False
        with pytest.raises(RuntimeError):
            await sink.once(failing, key="f")
        assert await sink.once(effect, key="f") is True  # a failed effect is released

        release = anyio.Event()

        async def slow() -> None:
            await release.wait()

        async def hold() -> None:
            await sink.once(slow, key="busy")

        async with anyio.create_task_group() as group:
            group.start_soon(hold)
            await anyio.sleep(0.05)
            with pytest.raises(runtime.DedupBusy):
                await sink.once(effect, key="busy")
            release.set()
    assert calls == ["ran", "ran"]
    assert sorted(sink.applied) == [0, 1, 2]


@pytest.mark.anyio
async def test_ingress_503_withdraws_a_message_redis_has_not_got(
    settings: runtime.ServiceSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client that gets 503 sends again; the message it gave up on must not reach
    # Redis as well (it would be applied twice). A message whose write is already
    # under way when its request times out is waited for, and accepted.
    under_way, release = anyio.Event(), anyio.Event()
    script = RedisLink.add_entries

    def held_script(link: RedisLink) -> Any:
        real = script.fget(link)  # type: ignore[attr-defined]

        async def add(**arguments: Any) -> Any:
            under_way.set()
            await release.wait()
            return await real(**arguments)

        return add

    monkeypatch.setattr(RedisLink, "add_entries", property(held_script))
    service = runtime.Service("rt", settings=settings)
    service.add(
        runtime.ApiEndpoint("orders", route="/orders", schema=Order, timeout_ms=50)
    )
    sink = service.add(Recorder("sink", inputs={"in": Order}))
    service.connect("orders.out", "sink.in", transport="redis")
    answers: dict[str, httpx.Response] = {}
    async with service.running(), client_for(service) as http:

        async def post(order_id: str) -> None:
            body = {"order_id": order_id, "amount": 1.0}
            answers[order_id] = await http.post("/orders", json=body)

        async with anyio.create_task_group() as group:
            group.start_soon(post, "under-way")
            await under_way.wait()
            await post("queued")  # times out behind the write under way
            assert answers["queued"].status_code == 503
            assert answers["queued"].headers["retry-after"] == "1"
            release.set()
        assert answers["under-way"].status_code == 202, answers["under-way"].text
        await wait_until(lambda: len(sink.items) == 1)
        await anyio.sleep(0.2)  # a withdrawn message written anyway would show now
    assert [order.order_id for order in sink.items] == ["under-way"]
    with client(settings) as c:
        assert c.xlen(settings.redis_prefix + "rt.orders.out") == 1


class Slow(runtime.Sink):
    """Takes one item a millisecond: slower than Redis answers a read."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.count = 0

    async def consume(self, item: Any) -> None:
        await anyio.sleep(0.001)
        self.count += 1


@pytest.mark.anyio
async def test_a_reader_behind_a_slow_component_reads_in_batches(
    settings: runtime.ServiceSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full buffer freed one slot at a time is refilled a batch at a time (a
    quarter of the buffer), not with one read per slot."""
    sizes: list[int] = []
    read = redis.asyncio.Redis.xreadgroup

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        answer = await read(self, *args, **kwargs)
        taken = sum(len(entries) for _, entries in answer or ())
        if taken and args[0] == "sink.in":
            sizes.append(taken)
        return answer

    monkeypatch.setattr(redis.asyncio.Redis, "xreadgroup", counted)
    service = runtime.Service("rt", settings=settings)
    service.add(Numbers("numbers", 1000))
    sink = service.add(Slow("sink"))
    service.connect("numbers.out", "sink.in", transport="redis", buffer_size=64)
    with anyio.fail_after(60):
        report = await service.run()
    assert report.completed and sink.count == 1000
    # Until the buffer first fills, a read takes what the source wrote so far (at
    # most its 64 entries in all); after that, every read but the last asks for at
    # least 16 of the entries already waiting in the stream.
    assert sum(sizes) == 1000
    assert len(sizes) <= 64 + 1000 // 16 + 1, sizes
