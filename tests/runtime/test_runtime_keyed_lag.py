"""``max_lag`` over Redis: backpressure across processes (issue #15). With nobody
reading, a stream holds at most the bound; senders wait, HTTP ingress answers 503
with Retry-After, and everything accepted arrives once a reader is back."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import anyio
import pytest
import runtime
from pydantic import BaseModel

from tests.redisenv import (
    client_for_url,
    delete_prefixed,
    redis_url,
    stream_key,
    unique_prefix,
)
from tests.runtime.support import Numbers, Recorder, client_for

pytestmark = pytest.mark.anyio


class Order(BaseModel):
    order_id: str
    amount: float


@pytest.fixture
def settings() -> Iterator[runtime.ServiceSettings]:
    url = redis_url()
    prefix = unique_prefix()
    yield runtime.ServiceSettings(
        redis_url=url, redis_prefix=prefix, redis_claim_idle_ms=200, drain_timeout_s=20
    )
    delete_prefixed(url, prefix)


async def wait_until(check: Callable[[], bool], seconds: float = 15.0) -> None:
    with anyio.fail_after(seconds):
        while not check():
            await anyio.sleep(0.02)


def held(settings: runtime.ServiceSettings, stream: str, group: str) -> int:
    """What ``group`` holds of ``stream``: unread plus pending entries."""
    with client_for_url(settings.redis_url) as client:
        key = stream_key(settings.redis_url, settings.redis_prefix, stream)
        (info,) = client.xinfo_groups(key)
        assert info["name"].decode() == group
        return int(info["lag"]) + int(info["pending"])


def length(settings: runtime.ServiceSettings, stream: str) -> int:
    with client_for_url(settings.redis_url) as client:
        key = stream_key(settings.redis_url, settings.redis_prefix, stream)
        return int(client.xlen(key))


def endpoint_service(
    settings: runtime.ServiceSettings, components: str
) -> tuple[runtime.Service, Recorder]:
    service = runtime.Service(
        "lag", settings=settings.model_copy(update={"components": components})
    )
    service.add(
        runtime.ApiEndpoint("orders", route="/orders", schema=Order, timeout_ms=250)
    )
    sink = service.add(Recorder("sink", inputs={"in": Order}))
    service.connect("orders.out", "sink.in", transport="redis", max_lag=20)
    return service, sink


async def test_ingress_answers_503_at_the_bound_and_loses_nothing_accepted(
    settings: runtime.ServiceSettings,
) -> None:
    producer, _ = endpoint_service(settings, "orders")
    consumer, sink = endpoint_service(settings, "sink")
    statuses: list[int] = []
    async with producer.running(), client_for(producer) as http:

        async def post(order_id: str) -> int:
            body = {"order_id": order_id, "amount": 1.0}
            answer = await http.post("/orders", json=body)
            if answer.status_code == 503:
                assert answer.headers["retry-after"] == "1"
            return answer.status_code

        for number in range(23):  # nobody reads yet: the group exists all the same
            statuses.append(await post(str(number)))
        assert statuses == [202] * 20 + [503] * 3
        assert held(settings, "lag.orders.out", "sink.in") == 20
        assert length(settings, "lag.orders.out") == 20  # a refused one never written
        async with consumer.running():
            await wait_until(lambda: len(sink.items) == 20)
            # room again once the reader has acknowledged (a refused try is never
            # written, so trying again adds nothing twice)
            with anyio.fail_after(15):
                while await post("late") != 202:
                    await anyio.sleep(0.05)
            await wait_until(lambda: len(sink.items) == 21)
    assert [o.order_id for o in sink.items] == [str(n) for n in range(20)] + ["late"]


def numbers_service(
    settings: runtime.ServiceSettings, components: str
) -> tuple[runtime.Service, Recorder]:
    service = runtime.Service(
        "lag", settings=settings.model_copy(update={"components": components})
    )
    service.add(Numbers("numbers", 200))
    sink = service.add(Recorder("sink"))
    service.connect(
        "numbers.out", "sink.in", buffer_size=8, transport="redis", max_lag=10
    )
    return service, sink


async def test_a_sender_waits_at_the_bound_until_a_reader_makes_room(
    settings: runtime.ServiceSettings,
) -> None:
    producer, _ = numbers_service(settings, "numbers")
    consumer, sink = numbers_service(settings, "sink")
    numbers = producer.components["numbers"]
    async with producer.running():
        await wait_until(lambda: length(settings, "lag.numbers.out") == 10)
        await anyio.sleep(0.3)  # were the bound not held, more would be written now
        assert length(settings, "lag.numbers.out") == 10
        assert held(settings, "lag.numbers.out", "sink.in") == 10
        assert numbers.is_running  # waiting to send, not finished
        async with consumer.running():
            await wait_until(lambda: len(sink.items) == 200)
    assert sink.items == list(range(200))


async def test_memory_ignores_max_lag_its_buffer_is_the_bound() -> None:
    service = runtime.Service("lag")
    service.add(Numbers("numbers", 50))
    sink = service.add(Recorder("sink"))
    service.connect("numbers.out", "sink.in", buffer_size=4, max_lag=1)
    async with service.running():
        await wait_until(lambda: len(sink.items) == 50)
    assert sink.items == list(range(50))


async def test_a_bound_below_one_is_refused() -> None:
    service = runtime.Service("lag")
    service.add(Numbers("numbers", 1))
    service.add(Recorder("sink"))
    with pytest.raises(runtime.errors.WiringError) as caught:
        service.connect("numbers.out", "sink.in", transport="redis", max_lag=0)
    assert str(caught.value) == (
        "connection numbers.out -> sink.in: max_lag must be at least 1, got 0"
    )
