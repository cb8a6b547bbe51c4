"""Rate limits: 429 with Retry-After, per client or key, bounded memory, Redis."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import httpx
import pytest
import runtime
from pydantic import BaseModel

from tests.runtime.support import client_for

pytestmark = pytest.mark.anyio

KEY_A = "test-key-" + "a" * 32  # made up here; never a real secret
KEY_B = "test-key-" + "b" * 32

#: the address requests come from, unless a test says otherwise
CLIENT = "198.51.100.7"


class Order(BaseModel):
    order_id: str


ORDER = {"order_id": "o-1"}


def build(
    limit: runtime.RateLimit | None, auth: str | None = None, **settings: Any
) -> runtime.Service:
    service = runtime.Service("shop", settings=runtime.ServiceSettings(**settings))
    service.add(
        runtime.ApiEndpoint(
            "orders", route="/orders", schema=Order, auth=auth, rate_limit=limit  # type: ignore[arg-type]
        )
    )
    service.tap("orders.out")
    return service


@pytest.fixture(autouse=True)
def inside_a_window() -> None:
    """Start well inside a 60 s window, where the sliding count is exact.

    limits' sliding window weighs the last fixed window's requests by how much of it
    is still inside the sliding one: right after a window starts, each weighs a little
    less than one, and one more request than the limit gets through.
    """
    left = 60 - time.time() % 60
    if left < 3:
        time.sleep(left + 0.1)


async def post(client: httpx.AsyncClient, times: int, **headers: str) -> list[int]:
    return [
        (await client.post("/orders", json=ORDER, headers=headers)).status_code
        for _ in range(times)
    ]


async def test_over_the_limit_is_429_with_retry_after() -> None:
    service = build(runtime.RateLimit(3, 60))
    async with service.running(), client_for(service, CLIENT) as client:
        statuses = await post(client, 4)
        refused = await client.post("/orders", json=ORDER)

    assert statuses == [202, 202, 202, 429]
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    body = refused.json()
    assert (body["error"], body["detail"]) == (
        "rate_limited",
        "more than 3 requests in 60 s",
    )
    assert body["correlation_id"] == refused.headers["x-correlation-id"]
    assert service.metrics.snapshot()["orders"]["out"]["messages"] == 3


async def test_each_client_has_its_own_count_and_cannot_forge_another() -> None:
    service = build(runtime.RateLimit(2, 60))
    async with service.running():
        async with client_for(service, "198.51.100.7") as first:
            assert await post(first, 3) == [202, 202, 429]
            # a forged X-Forwarded-For from an untrusted peer changes nothing
            forged = await post(first, 2, **{"x-forwarded-for": "203.0.113.50"})
            assert forged == [429, 429]
        async with client_for(service, "198.51.100.8") as second:
            assert await post(second, 2) == [202, 202]


async def test_behind_a_trusted_proxy_each_forwarded_client_counts_alone() -> None:
    service = build(runtime.RateLimit(1, 60), trusted_proxies=("10.0.0.0/8",))
    async with service.running(), client_for(service, "10.0.0.2") as proxy:
        one = await post(proxy, 2, **{"x-forwarded-for": "203.0.113.1"})
        two = await post(proxy, 1, **{"x-forwarded-for": "203.0.113.2"})
        # what the client itself claims, left of the proxy's entry, is not believed
        claimed = await post(proxy, 1, **{"x-forwarded-for": "9.9.9.9, 203.0.113.1"})

    assert (one, two, claimed) == ([202, 429], [202], [429])


async def test_a_limit_per_api_key_counts_each_key_alone() -> None:
    digests = (runtime.api_key_digest(KEY_A), runtime.api_key_digest(KEY_B))
    service = build(runtime.RateLimit(1, 60, "api_key"), "api_key", api_keys=digests)
    async with service.running(), client_for(service, CLIENT) as client:
        a = await post(client, 2, **{"x-api-key": KEY_A})
        b = await post(client, 1, **{"x-api-key": KEY_B})
        nobody = await post(client, 1)

    assert (a, b, nobody) == ([202, 429], [202], [401])


async def test_memory_stays_bounded_whatever_the_number_of_clients() -> None:
    service = build(runtime.RateLimit(5, 60), rate_limit_max_clients=50)
    runtime.create_app(service)
    (endpoint,) = service.endpoints
    limiter = endpoint.limiter
    assert limiter is not None
    for number in range(2000):
        await limiter.hit(f"client-{number}")

    assert len(limiter.tracked) == 50
    storage: Any = limiter.store.storage
    assert len(storage.storage) <= 2 * 50  # two counters per client, at most
    # the most recent clients are still counted; the oldest were forgotten
    assert "client-1999" in limiter.tracked and "client-0" not in limiter.tracked


def test_ipv6_clients_count_per_64_network() -> None:
    assert runtime.ratelimit.client_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert runtime.ratelimit.client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert runtime.ratelimit.client_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert runtime.ratelimit.client_key("203.0.113.9") == "203.0.113.9"


async def test_a_setting_replaces_the_limit_of_an_endpoint() -> None:
    settings = runtime.ServiceSettings.from_env(
        "shop", {"SHOP_RATE_LIMIT__ORDERS": "1/60"}
    )
    service = build(runtime.RateLimit(100, 1), **settings.model_dump())
    async with service.running(), client_for(service, CLIENT) as client:
        assert await post(client, 2) == [202, 429]
    with pytest.raises(runtime.SettingsError, match="SHOP_RATE_LIMIT__ORDERS"):
        runtime.ServiceSettings.from_env("shop", {"SHOP_RATE_LIMIT__ORDERS": "lots"})
    unknown = build(None, rate_limit_overrides={"nothing": "1/1"})
    with pytest.raises(runtime.SettingsError, match="SHOP_RATE_LIMIT__NOTHING"):
        runtime.create_app(unknown)


def test_a_limit_for_an_endpoint_another_replica_runs_is_no_error() -> None:
    # python -m shop --components worker, with the environment every replica shares
    service = build(
        None, rate_limit_overrides={"orders": "1/60"}, components="orders.out"
    )
    assert service.endpoints == []  # this process runs the tap only
    runtime.create_app(service)
    with pytest.raises(runtime.SettingsError, match="SHOP_RATE_LIMIT__NOTHING"):
        runtime.create_app(
            build(
                None, rate_limit_overrides={"nothing": "1/1"}, components="orders.out"
            )
        )


def test_a_redis_url_is_the_only_other_storage() -> None:
    with pytest.raises(runtime.SettingsError, match="SHOP_RATE_LIMIT_STORAGE"):
        runtime.ServiceSettings.from_env(
            "shop", {"SHOP_RATE_LIMIT_STORAGE": "memcached://pw@cache:11211"}
        )
    settings = runtime.ServiceSettings.from_env(
        "shop", {"SHOP_RATE_LIMIT_STORAGE": "redis://cache:6379/0"}
    )
    store = runtime.ratelimit.RateLimitStore(
        settings.rate_limit_storage,
        namespace="shop",
        log=runtime.Service("shop").log,
    )
    assert store.shared


REDIS_URL = os.environ.get("PORTWRIGHT_REDIS_URL")


@pytest.mark.skipif(REDIS_URL is None, reason="PORTWRIGHT_REDIS_URL is not set")
async def test_replicas_on_redis_share_one_count() -> None:
    assert REDIS_URL is not None
    namespace = f"pwtest{uuid.uuid4().hex[:12]}"  # nothing left from another run

    def replica() -> runtime.Service:
        service = runtime.Service(
            namespace,
            settings=runtime.ServiceSettings(rate_limit_storage=REDIS_URL),
        )
        service.add(
            runtime.ApiEndpoint(
                "orders",
                route="/orders",
                schema=Order,
                rate_limit=runtime.RateLimit(3, 60),
            )
        )
        service.tap("orders.out")
        return service

    first, second = replica(), replica()
    async with (
        first.running(),
        second.running(),
        client_for(first, CLIENT) as one,
        client_for(second, CLIENT) as two,
    ):
        statuses = await post(one, 2) + await post(two, 2)

    assert statuses == [202, 202, 202, 429]


async def test_unreachable_redis_is_503_with_retry_after() -> None:
    # nothing listens on port 1: the limit cannot be checked, so nothing gets in
    service = build(
        runtime.RateLimit(3, 60), rate_limit_storage="redis://127.0.0.1:1/0"
    )
    async with service.running(), client_for(service, CLIENT) as client:
        response = await client.post("/orders", json=ORDER)

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"] == "unavailable"


def test_by_default_the_counters_follow_the_service_onto_redis() -> None:
    def limiter(transport: str) -> Any:
        settings = runtime.ServiceSettings(
            redis_url="redis://cache.invalid:6379/3", redis_prefix="staging:"
        )
        service = runtime.Service("shop", settings=settings)
        service.add(
            runtime.ApiEndpoint(
                "orders",
                route="/orders",
                schema=Order,
                rate_limit=runtime.RateLimit(3, 60),
            )
        )
        service.add(Keep("keep", inputs={"in": Order}))
        service.connect("orders.out", "keep.in", transport=transport)  # type: ignore[arg-type]
        runtime.create_app(service)  # connects nothing yet
        return service.endpoints[0].limiter

    on_redis, in_memory = limiter("redis"), limiter("memory")

    assert (
        on_redis.store.shared and on_redis.store.url == "redis://cache.invalid:6379/3"
    )
    assert on_redis.store.storage.bridge.prefixed_key("k") == "staging:shop.ratelimit:k"
    assert not in_memory.store.shared


class Keep(runtime.Sink):
    def consume(self, item: Order) -> None:
        pass
