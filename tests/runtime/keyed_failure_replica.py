"""A replica of a keyed service whose user code fails on chosen items (issue #15).

``ticks`` -> keyed Redis connection (``partitions``) -> ``work`` -> Redis -> ``keep``,
as in ``partition_replica``; here ``work`` fails on purpose:

- ``flaky``: ``acct-3``'s item 2 raises on its first two deliveries in a process,
  then passes; ``acct-7``'s item 2 raises every time;
- ``poison``: ``acct-5``'s item 3 ends the process at once (``os._exit``), every
  time, in whichever replica takes it.

    python keyed_failure_replica.py URL PREFIX CONSUMER TTL_MS PARTITIONS MODE \
        CONCURRENCY MAX_TAKEOVERS

It needs ``templates/project/package`` on ``PYTHONPATH`` (the runtime).
"""

from __future__ import annotations

import os
import sys
from collections import Counter

import anyio
import runtime

from tests.runtime.partition_replica import Done, Drop, Nothing, Tick

FLAKY = ("acct-3", 2)
BROKEN = ("acct-7", 2)
POISON = ("acct-5", 3)
#: how many times the flaky item fails in a process before it passes
FLAKY_FAILURES = 2


class Failing(runtime.Transformer):
    """Stamps each tick with this replica's name; fails as ``mode`` says."""

    def __init__(self, name: str, by: str, mode: str, concurrency: int) -> None:
        super().__init__(
            name, inputs={"in": Tick}, outputs={"out": Done}, concurrency=concurrency
        )
        self.by, self.mode = by, mode
        self.failures: Counter[tuple[str, int]] = Counter()

    async def transform(self, item: Tick) -> Done:
        await anyio.sleep(0.0005)  # work: items of other keys are in flight
        which = (item.account, item.seq)
        if self.mode == "poison" and which == POISON:
            os._exit(3)  # what a segfault or an OOM kill does to the replica
        flaky = which == FLAKY and self.failures[which] < FLAKY_FAILURES
        if self.mode == "flaky" and (which == BROKEN or flaky):
            self.failures[which] += 1
            raise ValueError(f"cannot handle {item.account}/{item.seq}")
        return Done(account=item.account, seq=item.seq, by=self.by)


def settings_for(
    url: str, prefix: str, consumer: str, ttl_ms: int, components: str, takeovers: int
) -> runtime.ServiceSettings:
    """The settings every process of the test service shares (its own consumer)."""
    return runtime.ServiceSettings(
        redis_url=url,
        redis_prefix=prefix,
        redis_consumer=consumer,
        redis_lease_ttl_ms=ttl_ms,
        redis_claim_idle_ms=max(200, ttl_ms),
        redis_max_retries=3,
        redis_max_takeovers=takeovers,
        components=components,
        drain_timeout_s=10,
    )


def build(
    settings: runtime.ServiceSettings,
    partitions: int,
    ticks: runtime.Source | None = None,
    keep: runtime.Sink | None = None,
    mode: str = "flaky",
    concurrency: int = 1,
) -> runtime.Service:
    """The service; ``ticks`` and ``keep`` only matter where they run."""
    service = runtime.Service("kf", settings=settings)
    service.add(ticks or Nothing("ticks", Tick))
    service.add(Failing("work", settings.redis_consumer, mode, concurrency))
    service.add(keep or Drop("keep", Done))
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


def main() -> None:
    url, prefix, consumer, ttl_ms, partitions, mode, concurrency, takeovers = sys.argv[
        1:9
    ]
    settings = settings_for(url, prefix, consumer, int(ttl_ms), "work", int(takeovers))
    service = build(settings, int(partitions), mode=mode, concurrency=int(concurrency))

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
