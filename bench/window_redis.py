"""Issue #16: a window over Redis against the stateless keyed path, two replicas.

The same shape twice: ``events`` -> keyed Redis connection (4 partitions, leases of
2 s) -> a middle component run by two replicas in processes of their own
(``python -m bench.window_redis replica ...``) -> Redis -> ``sink``. The middle one
is either a ``Window`` (a tumbling count per account, 60 s windows over the events'
fixed times, its state per partition in Redis: one fenced script per batch that
acknowledges the batch, writes the changed counts and the watermark and writes what
closed) or a stateless ``Transformer`` that passes each event on (the keyed path of
issue #15: each result written fenced, then its input acknowledged). This process
runs the source and the sink. A round starts its replicas, waits until all four
leases are held, opens the source's gate, and stops the clock when every event is
acknowledged on every partition (the group's pending and lag both 0, polled every
10 ms): for the window, every event is in the state (and what closed is written);
for the transformer, every result is written. Goal: window >= 0.7 x stateless.

The same again on a Redis Cluster of three masters (``PORTWRIGHT_REDIS_CLUSTER_URL``
or three private ``redis-server``s), window against stateless on the cluster: there
the window's results go through the partition's outbox (one slot per script).

A section of ``python -m bench`` (``--only window_redis``); on its own: ``python -m
bench.window_redis [events] [rounds]`` (one Redis: ``PORTWRIGHT_REDIS_URL`` or a
private ``redis-server``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel

from .keyed import _client, _stream, delete_prefixed, redis_cluster
from .redis_transport import ROUND_TIMEOUT_S, redis_server
from .table import REPO, Goal, Row, median

SECTION = "16 windows over redis"
PARTITIONS = 4
REPLICAS = 2
LEASE_TTL_MS = 2000
ACCOUNTS = 1_000
#: the events' times: T0, then one every STEP_S (60 s windows: ~17 per account)
T0 = 1_700_000_000.0
STEP_S = 0.05


class Event(BaseModel):
    """One event of one account, at a fixed time."""

    account: str
    seq: int
    at: datetime


def event(n: int) -> Event:
    """The ``n``-th event."""
    return Event(
        account=f"acct-{n % ACCOUNTS}",
        seq=n,
        at=datetime.fromtimestamp(T0 + n * STEP_S, UTC),
    )


def _service(url: str, prefix: str, components: str, consumer: str, mode: str,
             items: int = 0, gate: anyio.Event | None = None) -> Any:  # fmt: skip
    """``events`` -> keyed -> ``middle`` (a window, or a pass-through) -> ``sink``."""
    import runtime as rt

    class Events(rt.Source):
        async def generate(self) -> Any:
            if gate is not None:
                await gate.wait()
            for number in range(items):
                yield event(number)

    class Pass(rt.Transformer):
        def transform(self, item: Event) -> Event:
            return item

    class Drop(rt.Sink):
        def consume(self, item: Any) -> None:
            return None

    settings = rt.ServiceSettings(
        redis_url=url,
        redis_prefix=prefix,
        redis_consumer=consumer,
        redis_lease_ttl_ms=LEASE_TTL_MS,
        components=components,
    )
    service = rt.Service("bench", settings=settings)
    service.add(Events("events", outputs={"out": Event}))
    if mode == "window":
        service.add(rt.Window("middle", size=60.0, time="at", inputs={"in": Event}))
    else:
        service.add(Pass("middle", inputs={"in": Event}, outputs={"out": Event}))
    service.add(Drop("sink", inputs={"in": Any}))
    service.connect(
        "events.out", "middle.in", transport="redis", key="account",
        partitions=PARTITIONS,
    )  # fmt: skip
    service.connect("middle.out", "sink.in", transport="redis")
    return service


def replica(url: str, prefix: str, name: str, mode: str) -> None:
    """One replica of ``middle`` until SIGTERM; then prints the CPU seconds it
    spent from its start (imports done) to its stop: ``cpu <seconds>``."""
    import signal

    service = _service(url, prefix, "middle", name, mode)
    started = time.process_time()

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(service.run)
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    service.stop()
                    return

    anyio.run(main)
    print(f"cpu {time.process_time() - started:.6f}", flush=True)


def _partitions(url: str, prefix: str) -> list[str]:
    return [
        _stream(url, f"{prefix}bench.events.out.middle.in.p{n}")
        for n in range(PARTITIONS)
    ]


def _owned(url: str, prefix: str) -> bool:
    """Whether every partition's lease is held, by both replicas between them."""
    with _client(url) as client:
        owners = {
            client.hget(f"{stream}.lease.middle.in", "owner")
            for stream in _partitions(url, prefix)
        }
    return None not in owners and len(owners) == REPLICAS


def _settled(client: Any, streams: list[str], items: int) -> bool:
    """Whether the group has read and acknowledged all ``items`` events."""
    import redis

    read = 0
    for stream in streams:
        try:
            groups = client.xinfo_groups(stream)
        except redis.ResponseError:  # no such key: not made yet (nothing read)
            return False
        for group in groups:
            if group["name"] == b"middle.in":
                if group["pending"] or group.get("lag"):
                    return False
                read += int(group.get("entries-read") or 0)
    return read >= items


async def _round(url: str, prefix: str, items: int, mode: str) -> tuple[float, float]:
    """One round: the events per second from the gate to the last
    acknowledgement, and the replicas' CPU seconds (both, start to stop)."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'templates/project/package'}",
    }
    command = [sys.executable, "-m", "bench.window_redis", "replica", url, prefix]
    processes = [
        subprocess.Popen(
            [*command, f"r{i}", mode], cwd=REPO, env=env, stdout=subprocess.PIPE
        )
        for i in range(REPLICAS)
    ]
    rate = 0.0
    gate = anyio.Event()
    service = _service(url, prefix, "events,sink", "main", mode, items, gate)
    streams = _partitions(url, prefix)
    try:
        async with service.running():
            with anyio.fail_after(60):
                while not _owned(url, prefix):
                    await anyio.sleep(0.05)
            started = time.perf_counter()
            gate.set()
            with _client(url) as client, anyio.fail_after(ROUND_TIMEOUT_S):
                while not _settled(client, streams, items):
                    await anyio.sleep(0.01)
            rate = items / (time.perf_counter() - started)
    finally:
        for process in processes:
            process.terminate()
        cpu = 0.0
        for process in processes:
            try:
                said, _ = process.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                said, _ = process.communicate()
            cpu += sum(
                float(line.split()[1])
                for line in said.decode().splitlines()
                if line.startswith("cpu ")
            )
    return rate, cpu


def measure(url: str, items: int, mode: str) -> tuple[float, float]:
    """One round of ``mode`` on keys of its own, deleted afterwards: events/s and
    the replicas' CPU seconds."""
    prefix = f"pwbench-{uuid.uuid4().hex[:8]}:"
    try:
        return anyio.run(_round, url, prefix, items, mode)
    finally:
        delete_prefixed(url, prefix)


def rows(
    url: str, items: int, rounds: int, log: Any = print, where: str = "redis"
) -> list[Row]:
    """The window over Redis against the stateless keyed path, interleaved rounds;
    ``where`` names the Redis in the figure (``redis``, or ``a 3-master cluster``)."""
    rates: dict[str, list[float]] = {"window": [], "stateless": []}
    cpus: dict[str, list[float]] = {"window": [], "stateless": []}
    for r in range(rounds):
        names = list(rates) if r % 2 == 0 else list(reversed(rates))
        for name in names:
            rate, cpu = measure(url, items, name)
            rates[name].append(rate)
            cpus[name].append(cpu / items * 1e6)
        log(
            f"window over {where}: round {r + 1}/{rounds}: "
            + ", ".join(
                f"{n} {rates[n][-1]:,.0f}/s ({cpus[n][-1]:,.0f} us CPU/event)"
                for n in rates
            )
        )
    rate = {name: median(values) for name, values in rates.items()}
    cpu = {name: median(values) for name, values in cpus.items()}
    return [
        Row(
            SECTION,
            f"tumbling count per key over {where} ({PARTITIONS} partitions, "
            f"{REPLICAS} replicas): events/s vs the stateless keyed path",
            rate["window"],
            "items/s",
            rate["stateless"],
            f"a keyed pass-through, {REPLICAS} replicas",
            Goal(">=", 0.7, text="ratio >= 0.7"),
            note=f"{items:,} events, {ACCOUNTS:,} accounts x {rounds} rounds; "
            f"middle hop in {REPLICAS} processes, lease {LEASE_TTL_MS} ms",
        ),
        Row(
            SECTION,
            f"CPU per event in the {REPLICAS} replicas over {where}: window vs "
            "stateless (lower is cheaper)",
            cpu["window"],
            "us",
            cpu["stateless"],
            "the keyed pass-through's",
            note="each replica's process CPU from its start (imports done) to its "
            "stop; not Redis's own",
        ),
    ]


def run(work: Path, *, quick: bool, log: Any = print) -> list[Row]:
    """The section: on one Redis, then on a 3-master cluster (each when there is one)."""
    items, rounds = (2_000, 1) if quick else (20_000, 5)
    found: list[Row] = []
    with redis_server(log) as url:
        if url is None:
            found.append(_missing("redis", "no Redis (redis-server)"))
        else:
            found += rows(url, items, rounds, log)
    with redis_cluster(log) as cluster:
        if cluster is None:
            found.append(_missing("a 3-master cluster", "no Redis Cluster"))
        else:
            found += rows(cluster, items, rounds, log, where="a 3-master cluster")
    return found


def _missing(where: str, why: str) -> Row:
    return Row(
        SECTION,
        f"tumbling count per key over {where}",
        None,
        "",
        note=f"not measured: {why}",
    )


if __name__ == "__main__" and sys.argv[1:2] == ["replica"]:
    replica(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
elif __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with redis_server(print) as address:
        if address is None:
            raise SystemExit("no Redis: install redis-server")
        for row in rows(address, count, repeat):
            print(row)
