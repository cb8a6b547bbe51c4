"""Stopping a service: what it waits for, and what it must not wait for."""

from __future__ import annotations

import anyio
import pytest
import runtime
from pydantic import BaseModel
from runtime.redis import publisher as redis_publisher

from tests.redisenv import free_port
from tests.runtime.support import Recorder, client_for

#: long enough that a drain that waits it out cannot pass for a prompt one
DRAIN_TIMEOUT_S = 20


class Double(runtime.Transformer):
    def transform(self, item: int) -> int:
        return item * 2


def unreachable_redis(components: str = "") -> runtime.ServiceSettings:
    """Settings naming a Redis that nothing answers: a port nobody listens on."""
    return runtime.ServiceSettings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        components=components,
        drain_timeout_s=DRAIN_TIMEOUT_S,
    )


def redis_service(settings: runtime.ServiceSettings) -> runtime.Service:
    service = runtime.Service("rt", settings=settings)
    service.add(runtime.Inlet("numbers", int))
    service.add(Double("double"))
    service.add(Recorder("sink"))
    service.connect("numbers.out", "double.in", transport="redis")
    service.connect("double.out", "sink.in", transport="redis")
    return service


async def until_redis_is_missed(service: runtime.Service) -> None:
    """Wait until the service has tried Redis and found it unreachable."""
    while not any("unreachable" in reason for reason in service.readiness()):
        await anyio.sleep(0.01)


@pytest.mark.anyio
@pytest.mark.parametrize("components", ["", "double"], ids=["whole", "worker"])
async def test_a_stop_with_nothing_in_flight_ends_the_drain_though_redis_is_down(
    components: str,
) -> None:
    # Nothing was accepted, so nothing can be lost: the drain is complete at once,
    # instead of waiting out drain_timeout_s for a Redis that does not answer.
    service = redis_service(unreachable_redis(components))
    async with service.running():
        with anyio.fail_after(DRAIN_TIMEOUT_S):
            await until_redis_is_missed(service)
    report = service.drain_report
    assert report is not None
    assert report.completed, report
    assert report.left == {}


class Order(BaseModel):
    order_id: str


@pytest.mark.anyio
async def test_a_stop_after_503s_does_not_wait_for_a_redis_that_is_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each request gave up on an unreachable Redis and was answered 503, so nothing
    # was accepted; the write still under way for one of them must not hold the
    # stop until drain_timeout_s.
    monkeypatch.setattr(redis_publisher, "CONFIRM_GRACE_S", 0.05)
    service = runtime.Service("rt", settings=unreachable_redis())
    service.add(
        runtime.ApiEndpoint("orders", route="/orders", schema=Order, timeout_ms=50)
    )
    service.add(Recorder("sink", inputs={"in": Order}))
    service.connect("orders.out", "sink.in", transport="redis")
    async with service.running(), client_for(service) as http:
        for number in range(3):
            answer = await http.post("/orders", json={"order_id": str(number)})
            assert answer.status_code == 503, answer.text
    report = service.drain_report
    assert report is not None
    assert report.completed, report
    assert report.left == {}
