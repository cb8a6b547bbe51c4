"""The Redis transport runs the shared transport suite (on the test Redis)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import runtime

from tests.redisenv import delete_prefixed, redis_url, unique_prefix
from tests.runtime.transport_suite import TransportSuite


class TestRedisTransport(TransportSuite):
    @pytest.fixture
    def transport(self) -> str:
        return "redis"

    @pytest.fixture
    def settings(self) -> Iterator[runtime.ServiceSettings]:
        """Settings on the shared Redis, under a prefix of this test's own."""
        url = redis_url()
        prefix = unique_prefix()
        yield runtime.ServiceSettings(
            redis_url=url,
            redis_prefix=prefix,
            redis_claim_idle_ms=200,
            redis_max_retries=2,
            drain_timeout_s=20,
        )
        delete_prefixed(url, prefix)
