"""The Redis transport on a Redis Cluster of three masters (issue #15): the shared
transport suite and ``max_lag``, with the service's URL ``redis+cluster://``."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
import runtime

from tests.redisenv import (
    client_for_url,
    redis_cluster_url,
    stream_key,
)
from tests.runtime.support import Numbers, Recorder, redis_settings
from tests.runtime.test_runtime_keyed_lag import (
    test_a_sender_waits_at_the_bound_until_a_reader_makes_room as test_a_sender_waits_at_the_bound_on_a_cluster,
)
from tests.runtime.test_runtime_keyed_lag import (
    test_ingress_answers_503_at_the_bound_and_loses_nothing_accepted as test_ingress_503_at_the_bound_on_a_cluster,
)
from tests.runtime.transport_suite import TransportSuite

pytestmark = pytest.mark.anyio
__all__ = [
    "test_a_sender_waits_at_the_bound_on_a_cluster",
    "test_ingress_503_at_the_bound_on_a_cluster",
]


def cluster_settings(**update: object) -> Iterator[runtime.ServiceSettings]:
    yield from redis_settings(redis_cluster_url(), **update)


@pytest.fixture
def settings() -> Iterator[runtime.ServiceSettings]:
    """Settings on the shared cluster, under a prefix of this test's own."""
    yield from cluster_settings()


class TestRedisClusterTransport(TransportSuite):
    @pytest.fixture
    def transport(self) -> str:
        return "redis"

    @pytest.fixture
    def settings(self) -> Iterator[runtime.ServiceSettings]:
        yield from cluster_settings(redis_max_retries=2)


def test_the_streams_spread_over_the_masters() -> None:
    # Each stream is its own hash tag: a service's streams land on several nodes.
    url = redis_cluster_url()
    link_names = ["{" + f"p.svc.component{n}.out" + "}" for n in range(12)]
    with client_for_url(url) as client:
        slots = {client.keyslot(name) for name in link_names}
        nodes = {client.get_node_from_key(name).name for name in link_names}
        masters = {node.name for node in client.get_primaries()}
    assert len(slots) == 12
    assert nodes == masters and len(masters) == 3


class Poison(runtime.Transformer):
    def transform(self, item: int) -> int:
        if item == 3:
            raise ValueError("unlucky")
        return item


async def test_a_poison_item_moves_to_its_dead_letter_stream_in_one_transaction(
    settings: runtime.ServiceSettings,
) -> None:
    # The entry is added to '<stream>.dlq' and acknowledged in '<stream>' in one
    # MULTI: both names carry the stream's hash tag, so they share a slot.
    update = {"redis_max_retries": 1}
    service = runtime.Service("dl", settings=settings.model_copy(update=update))
    service.add(Numbers("numbers", 6))
    service.add(Poison("poison"))
    sink = service.add(Recorder("sink"))
    service.connect("numbers.out", "poison.in", transport="redis")
    service.connect("poison.out", "sink.in", transport="redis")
    with anyio.fail_after(60):
        await service.run()
    assert sorted(sink.items) == [0, 1, 2, 4, 5]
    stream = stream_key(settings.redis_url, settings.redis_prefix, "dl.numbers.out")
    with client_for_url(settings.redis_url) as client:
        letters = client.xrange(stream + ".dlq")
        assert client.xpending(stream, "poison.in")["pending"] == 0
    assert len(letters) == 1
