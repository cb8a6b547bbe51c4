"""The keyed service of tests/test_keyed_partitions.py, and one replica of it.

``ticks`` (a source of keyed items) -> keyed Redis connection (``partitions``) ->
``work`` (a transformer that stamps who handled each item) -> Redis -> ``keep``.
The test runs ``ticks`` and ``keep`` in its own process (``build``); each replica
of ``work`` is this script, a process of its own:

    python partition_replica.py URL PREFIX CONSUMER LEASE_TTL_MS PARTITIONS WORK_S

It needs ``templates/project/package`` on ``PYTHONPATH`` (the runtime).
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
import runtime
from pydantic import BaseModel


class Tick(BaseModel):
    """One item of one account, its ``seq``-th."""

    account: str
    seq: int


class Done(BaseModel):
    """A tick as handled by replica ``by``."""

    account: str
    seq: int
    by: str


class Work(runtime.Transformer):
    """Stamps each tick with this replica's name (and takes a little time)."""

    def __init__(self, name: str, by: str, work_s: float = 0.0001) -> None:
        super().__init__(name, inputs={"in": Tick}, outputs={"out": Done})
        self.by = by
        self.work_s = work_s

    async def transform(self, item: Tick) -> Done:
        await anyio.sleep(self.work_s)  # work: a replica holds items when killed
        return Done(account=item.account, seq=item.seq, by=self.by)


def settings_for(
    url: str, prefix: str, consumer: str, ttl_ms: int, components: str
) -> runtime.ServiceSettings:
    """The settings every process of the test service shares (its own consumer)."""
    return runtime.ServiceSettings(
        redis_url=url,
        redis_prefix=prefix,
        redis_consumer=consumer,
        redis_lease_ttl_ms=ttl_ms,
        redis_claim_idle_ms=max(200, ttl_ms),
        components=components,
        drain_timeout_s=10,
    )


def build(
    settings: runtime.ServiceSettings,
    partitions: int,
    ticks: runtime.Source | None = None,
    keep: runtime.Sink | None = None,
    work_s: float = 0.0001,
) -> runtime.Service:
    """The service; ``ticks`` and ``keep`` only matter where they run."""
    service = runtime.Service("kp", settings=settings)
    service.add(ticks or Nothing("ticks"))
    service.add(Work("work", settings.redis_consumer, work_s))
    service.add(keep or Drop("keep"))
    service.connect(
        "ticks.out",
        "work.in",
        transport="redis",
        key="account",
        partitions=partitions,
        buffer_size=64,
    )
    service.connect("work.out", "keep.in", transport="redis", buffer_size=256)
    return service


class Nothing(runtime.Source):
    """The source where it does not run: it sends nothing (every replica script)."""

    def __init__(self, name: str, schema: type[BaseModel] = Tick) -> None:
        super().__init__(name, outputs={"out": schema})

    async def generate(self) -> Any:
        return
        yield


class Drop(runtime.Sink):
    """The sink where it does not run: it keeps nothing (every replica script)."""

    def __init__(self, name: str, schema: type[BaseModel] = Done) -> None:
        super().__init__(name, inputs={"in": schema})

    def consume(self, item: Any) -> None:
        return None


def main() -> None:
    url, prefix, consumer, ttl_ms, partitions, work_s = sys.argv[1:7]
    settings = settings_for(url, prefix, consumer, int(ttl_ms), "work")
    service = build(settings, int(partitions), work_s=float(work_s))

    async def run() -> None:
        import signal

        async with anyio.create_task_group() as group:
            group.start_soon(service.run)
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    service.stop()
                    break

    anyio.run(run)


if __name__ == "__main__":
    main()
