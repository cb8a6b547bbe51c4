"""Small components and helpers the runtime tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import runtime

from tests.redisenv import delete_prefixed, unique_prefix


class Recorder(runtime.Sink):
    """Keeps every item it consumes, in order."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.items: list[Any] = []

    def consume(self, item: Any) -> None:
        self.items.append(item)


class Gate(runtime.Sink):
    """Holds its first item until ``release`` is set; then keeps everything."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.items: list[Any] = []

    async def setup(self) -> None:
        self.holding = anyio.Event()
        self.release = anyio.Event()

    async def consume(self, item: Any) -> None:
        if not self.holding.is_set():
            self.holding.set()
            await self.release.wait()
        self.items.append(item)


class Numbers(runtime.Source):
    """Yields 0..count-1."""

    def __init__(self, name: str, count: int, **options: Any) -> None:
        super().__init__(name, **options)
        self.count = count

    async def generate(self) -> Any:
        for number in range(self.count):
            yield number


async def wait(event: anyio.Event, seconds: float = 5.0) -> None:
    """Wait for ``event``, failing the test instead of hanging."""
    with anyio.fail_after(seconds):
        await event.wait()


@asynccontextmanager
async def client_for(
    service: runtime.Service, peer: str = "127.0.0.1"
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of ``service``'s app, called in process from address ``peer``."""
    transport = httpx.ASGITransport(
        app=runtime.create_app(service), client=(peer, 4321)
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def redis_settings(url: str, **update: Any) -> Iterator[runtime.ServiceSettings]:
    """Settings on the shared Redis at ``url``, under a prefix of this test's own
    (its keys are deleted afterwards); a fixture yields from it."""
    prefix = unique_prefix()
    yield runtime.ServiceSettings(
        redis_url=url,
        redis_prefix=prefix,
        redis_claim_idle_ms=200,
        drain_timeout_s=20,
        **update,
    )
    delete_prefixed(url, prefix)
