"""One-to-many: a transformer that returns a list, or yields, sends each item on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import runtime

from tests.runtime.support import Numbers, Recorder

pytestmark = pytest.mark.anyio


class Listing(runtime.Transformer):
    """n -> [n, n] for odd n; [] for 0; None for 2; n for the rest."""

    def transform(self, item: int) -> Any:
        if item == 0:
            return []
        if item == 2:
            return None
        return [item, item] if item % 2 else item


class Yielding(runtime.Transformer):
    """n -> n copies of n (a plain generator)."""

    def transform(self, item: int) -> Iterator[int]:
        yield from [item] * item


class AsyncYielding(runtime.Transformer):
    """n -> n copies of n (an async generator)."""

    async def transform(self, item: int) -> AsyncIterator[int]:  # type: ignore[override]
        for _ in range(item):
            yield item


class AsyncListing(runtime.Transformer):
    """n -> [n, -n] (an async method returning a list)."""

    async def transform(self, item: int) -> list[int]:
        return [item, -item]


class Broken(runtime.Transformer):
    """Yields n, then fails on 3."""

    def transform(self, item: int) -> Iterator[int]:
        yield item
        if item == 3:
            raise ValueError("three")


async def through(
    transformer: runtime.Transformer, count: int, **outputs: Any
) -> tuple[runtime.Service, runtime.Tap]:
    service = runtime.Service("many")
    service.add(Numbers("numbers", count))
    service.add(transformer)
    out = service.tap(f"{transformer.name}.out")
    service.connect("numbers.out", f"{transformer.name}.in")
    await service.run()
    return service, out


async def test_a_list_sends_each_item_and_empty_or_none_drop() -> None:
    service, out = await through(Listing("t"), 6)
    assert out.items == [1, 1, 3, 3, 4, 5, 5]
    assert service.metrics.snapshot()["t"]["in"]["dropped"] == 2  # [] and None


@pytest.mark.parametrize("transformer", [Yielding, AsyncYielding])
async def test_a_generator_sends_what_it_yields(
    transformer: type[runtime.Transformer],
) -> None:
    service, out = await through(transformer("t"), 4)
    assert out.items == [1, 2, 2, 3, 3, 3]
    assert service.metrics.snapshot()["t"]["in"]["dropped"] == 1  # 0 yields none


async def test_an_async_method_may_return_a_list() -> None:
    _, out = await through(AsyncListing("t"), 3)
    assert out.items == [0, 0, 1, -1, 2, -2]


async def test_each_item_is_its_own_message_caused_by_the_input() -> None:
    service = runtime.Service("many")
    service.add(Yielding("t"))
    inlet = service.inlet("t.in")
    out = service.tap("t.out")
    async with service.running():
        sent = await inlet.send(3, correlation_id="order-7")
        await out.wait_for(3)
    assert len({e.id for e in out.envelopes}) == 3
    assert {e.causation_id for e in out.envelopes} == {sent.id}
    assert {e.correlation_id for e in out.envelopes} == {"order-7"}


async def test_a_generator_that_fails_is_reported_and_the_loop_goes_on() -> None:
    service = runtime.Service("many")
    service.add(Numbers("numbers", 5))
    service.add(Broken("t", outputs={"out": int, "errors": runtime.ErrorRecord}))
    sink = service.add(Recorder("sink"))
    errors = service.tap("t.errors")
    service.connect("numbers.out", "t.in")
    service.connect("t.out", "sink.in")
    await service.run()
    assert sink.items == [0, 1, 2, 3, 4]  # what it yielded before failing went on
    assert [record.message for record in errors.items] == ["three"]


@pytest.fixture
def settings() -> Iterator[runtime.ServiceSettings]:
    from tests.redisenv import delete_prefixed, redis_url, unique_prefix

    url = redis_url()
    prefix = unique_prefix()
    yield runtime.ServiceSettings(redis_url=url, redis_prefix=prefix)
    delete_prefixed(url, prefix)


async def test_over_redis_the_items_of_one_input_get_ids_of_their_own(
    settings: runtime.ServiceSettings,
) -> None:
    service = runtime.Service("many", settings=settings)
    service.add(Numbers("numbers", 4))
    service.add(Yielding("t"))
    out = service.tap("t.out")
    service.connect("numbers.out", "t.in", transport="redis")
    async with service.running():
        await out.wait_for(6)
    # ids derived from a message whose id Redis fixed are stable, and distinct
    assert out.items == [1, 2, 2, 3, 3, 3]
    assert len({e.id for e in out.envelopes}) == 6
