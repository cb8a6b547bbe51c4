"""Item 5: two hops over Redis Streams with acknowledgement, against FastStream.

Both sides move the same orders through the same shape, in one process, against the
same Redis, each round on streams of its own:

    source -> stream A -> score (a transformer) -> stream B -> sink

- portwright: the runtime every emitted project carries
  (``templates/project/package/runtime``), a ``Source``, a ``Transformer`` and a
  ``Sink`` with both connections ``transport="redis"``: consumer groups, each entry
  acknowledged (``XACK``) once the component is done with it and what it sent for it
  is in Redis.
- FastStream (``faststream[redis]``, a real ``RedisBroker``, no test client): a
  subscriber on stream A (``StreamSub(group=..., consumer=...)``) whose handler
  returns the scored order to a ``@broker.publisher(stream=B)``, and a subscriber on
  stream B; acknowledged after processing (``AckPolicy.NACK_ON_ERROR``: acknowledged
  when the handler and its publisher returned, left pending when it raised, like
  portwright). Its producer publishes in pipelines of ``WRITE_BATCH`` (FastStream's
  documented ``pipeline=``), so that the source is not what limits it. Per-message
  access logs are off (``logger=None``): portwright logs no line per message either.
- by hand, the practical ceiling for Python: the same reads, writes and
  acknowledgements written directly on redis-py, batched and pipelined everywhere
  (``by_hand``); the goal is >= 0.6 of it (issue #15).
- FastStream batched, for reference (the goal is against the one above, FastStream
  as its documentation shows it): batch subscribers (``StreamSub(batch=True)``, one
  ``XACK`` per batch) whose middle hop publishes each result into one pipeline per
  batch (the injected ``Pipeline``): the fastest a FastStream user can go with the
  same guarantees, at the price of handlers that take lists.

The figure is items per second of wall time from start (groups created, readers
started) to the last item consumed by the sink, medians of interleaved rounds. A
second row gives the Python process's CPU time per item (Redis's own time is not in
it). The ceiling is ``redis-benchmark``'s ``XADD`` rate (50 clients, no pipelining)
on the same Redis.

The Redis is ``PORTWRIGHT_REDIS_URL`` when set, else a private ``redis-server`` on
127.0.0.1, on a free port, without persistence, stopped at the end. Without either
(or without FastStream) the rows say "not measured" and why.

Usage on its own: ``python -m bench.redis_transport [items] [rounds]``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
from pydantic import BaseModel

from .table import REPO, Goal, Row, median

SECTION = "5 redis transport"
VARIABLE = "PORTWRIGHT_REDIS_URL"
WRITE_BATCH = 512
READ_BATCH = 256
ROUND_TIMEOUT_S = 300
Log = Callable[[str], None]

sys.path.insert(0, str(REPO / "templates/project/package"))


class Order(BaseModel):
    """What the source sends."""

    order_id: str
    amount: float


class Scored(Order):
    """What the transformer makes of it."""

    risk: float


def order(number: int) -> Order:
    """The ``number``-th order of a round (the same on both sides)."""
    return Order(order_id=f"o-{number}", amount=float(number % 1000))


def score(item: Order) -> Scored:
    """The work of the middle hop (the same on both sides)."""
    return Scored(order_id=item.order_id, amount=item.amount, risk=item.amount / 1000)


class Result:
    """One round: wall seconds to the last item, CPU seconds, items received."""

    def __init__(self, items: int) -> None:
        self.items = items
        self.received = 0
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()
        self.seconds = 0.0
        self.cpu = 0.0
        self.done = anyio.Event()

    def count(self) -> None:
        """The sink took one more item; the clock stops at the last."""
        self.received += 1
        if self.received == self.items:
            self.seconds = time.perf_counter() - self.started
            self.cpu = time.process_time() - self.cpu_started
            self.done.set()

    @property
    def rate(self) -> float:
        """Items per second of wall time."""
        return self.items / self.seconds

    @property
    def cpu_us(self) -> float:
        """CPU time of this process per item, in microseconds."""
        return self.cpu / self.items * 1e6


# -- portwright --------------------------------------------------------------------


async def portwright(url: str, prefix: str, items: int) -> Result:
    """Source -> score -> sink, both connections over Redis Streams."""
    import runtime as rt

    class Orders(rt.Source):
        async def generate(self) -> Any:
            for number in range(items):
                yield order(number)

    class Score(rt.Transformer):
        def transform(self, item: Order) -> Scored:
            return score(item)

    class Count(rt.Sink):
        def consume(self, item: Scored) -> None:
            result.count()

    settings = rt.ServiceSettings(redis_url=url, redis_prefix=prefix)
    service = rt.Service("bench", settings=settings)
    service.add(Orders("orders", outputs={"out": Order}))
    service.add(Score("score", inputs={"in": Order}, outputs={"out": Scored}))
    service.add(Count("sink", inputs={"in": Scored}))
    service.connect("orders.out", "score.in", transport="redis")
    service.connect("score.out", "sink.in", transport="redis")
    result = Result(items)
    with anyio.fail_after(ROUND_TIMEOUT_S):
        report = await service.run()
    if not report.completed or result.received != items:
        raise RuntimeError(f"portwright: {result.received} of {items} items arrived")
    return result


# -- FastStream ----------------------------------------------------------------------


async def faststream(url: str, prefix: str, items: int) -> Result:
    """The same two hops with FastStream's RedisBroker: subscriber -> publisher ->
    subscriber, consumer groups, acknowledged after processing."""
    from faststream import AckPolicy
    from faststream.redis import RedisBroker, StreamSub

    first, second = f"{prefix}fs.orders", f"{prefix}fs.scored"
    broker = RedisBroker(url, logger=None)

    @broker.subscriber(
        stream=StreamSub(
            first, group="score", consumer="bench", max_records=READ_BATCH
        ),
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    @broker.publisher(stream=second)
    async def handle_score(item: Order) -> Scored:
        return score(item)

    @broker.subscriber(
        stream=StreamSub(
            second, group="sink", consumer="bench", max_records=READ_BATCH
        ),
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def handle_sink(item: Scored) -> None:
        result.count()

    result = Result(items)
    return await _run_broker(broker, first, result)


async def faststream_batch(url: str, prefix: str, items: int) -> Result:
    """FastStream tuned: batch subscribers (``StreamSub(batch=True)``, one ``XACK``
    per batch) and the middle hop's results published in one pipeline per batch."""
    from faststream import AckPolicy
    from faststream.redis import RedisBroker, StreamSub
    from faststream.redis.annotations import Pipeline

    first, second = f"{prefix}fsb.orders", f"{prefix}fsb.scored"
    broker = RedisBroker(url, logger=None)

    @broker.subscriber(
        stream=StreamSub(
            first, group="score", consumer="bench", batch=True, max_records=READ_BATCH
        ),
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def handle_score(batch: list[Order], pipe: Pipeline) -> None:
        for item in batch:
            await broker.publish(score(item), stream=second, pipeline=pipe)
        await pipe.execute()

    @broker.subscriber(
        stream=StreamSub(
            second, group="sink", consumer="bench", batch=True, max_records=READ_BATCH
        ),
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def handle_sink(batch: list[Scored]) -> None:
        for _ in batch:
            result.count()

    result = Result(items)
    return await _run_broker(broker, first, result)


async def _run_broker(broker: Any, stream: str, result: Result) -> Result:
    """Start ``broker``, publish ``result.items`` orders to ``stream``, wait for the
    sink to count them all, stop."""
    client = await broker.connect()
    await broker.start()
    try:
        with anyio.fail_after(ROUND_TIMEOUT_S):
            await _publish(broker, client, stream, result.items)
            await result.done.wait()
    finally:
        await broker.stop()
    return result


async def _publish(broker: Any, client: Any, stream: str, items: int) -> None:
    """FastStream's producer: the orders, in pipelines of ``WRITE_BATCH``."""
    for start in range(0, items, WRITE_BATCH):
        async with client.pipeline(transaction=False) as pipe:
            for number in range(start, min(start + WRITE_BATCH, items)):
                await broker.publish(order(number), stream=stream, pipeline=pipe)
            await pipe.execute()


# -- by hand -----------------------------------------------------------------------


async def by_hand(url: str, prefix: str, items: int) -> Result:
    """The same two hops written by hand on redis-py, batched everywhere: the
    practical ceiling for Python. A producer ``XADD``s the orders in pipelines of
    ``WRITE_BATCH``; the middle reads up to ``READ_BATCH`` (``XREADGROUP``), scores
    them and writes the results and the acknowledgement of the batch in one
    pipeline; the sink reads, counts and acknowledges each batch with one ``XACK``.
    Each item is one JSON document in one field, parsed and checked by pydantic,
    as on the other sides."""
    import redis.asyncio as aioredis

    first, second = f"{prefix}hand.orders", f"{prefix}hand.scored"
    client = aioredis.Redis.from_url(url)
    result = Result(items)
    for stream, group in ((first, "score"), (second, "sink")):
        await client.xgroup_create(stream, group, id="0", mkstream=True)

    async def produce() -> None:
        for start in range(0, items, WRITE_BATCH):
            async with client.pipeline(transaction=False) as pipe:
                for number in range(start, min(start + WRITE_BATCH, items)):
                    pipe.xadd(first, {"d": order(number).model_dump_json()})
                await pipe.execute()

    async def batches(stream: str, group: str) -> Any:
        while result.received < items:
            answer = await client.xreadgroup(
                group, "bench", {stream: ">"}, count=READ_BATCH, block=100
            )
            for _, entries in answer or ():
                yield entries

    async def middle() -> None:
        async for entries in batches(first, "score"):
            async with client.pipeline(transaction=False) as pipe:
                for _, fields in entries:
                    scored = score(Order.model_validate_json(fields[b"d"]))
                    pipe.xadd(second, {"d": scored.model_dump_json()})
                pipe.xack(first, "score", *(entry_id for entry_id, _ in entries))
                await pipe.execute()

    async def sink() -> None:
        async for entries in batches(second, "sink"):
            for _, fields in entries:
                Scored.model_validate_json(fields[b"d"])
                result.count()
            await client.xack(second, "sink", *(entry_id for entry_id, _ in entries))

    try:
        with anyio.fail_after(ROUND_TIMEOUT_S):
            async with anyio.create_task_group() as group:
                group.start_soon(middle)
                group.start_soon(sink)
                await produce()
                await result.done.wait()
                group.cancel_scope.cancel()
    finally:
        await client.aclose()
    return result


SIDES = {
    "portwright": portwright,
    "faststream": faststream,
    "faststream_batch": faststream_batch,
    "by_hand": by_hand,
}


def measure(side: str, url: str, items: int) -> Result:
    """One round of ``side`` on streams of its own, deleted afterwards."""
    prefix = f"pwbench-{uuid.uuid4().hex[:8]}:"
    try:
        return anyio.run(SIDES[side], url, prefix, items)
    finally:
        _delete_prefixed(url, prefix)


def _delete_prefixed(url: str, prefix: str) -> None:
    import redis

    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


# -- the Redis -----------------------------------------------------------------------


@contextmanager
def redis_server(log: Log) -> Iterator[str | None]:
    """``PORTWRIGHT_REDIS_URL``, else a private redis-server; None if neither."""
    url = os.environ.get(VARIABLE)
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = _free_port()
    process = subprocess.Popen(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        _wait_for(url)
        log(f"redis: private redis-server on 127.0.0.1:{port}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for(url: str, seconds: float = 10.0) -> None:
    import redis

    deadline = time.monotonic() + seconds
    while True:
        try:
            with redis.Redis.from_url(url, socket_connect_timeout=0.5) as client:
                client.ping()
                return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def xadd_ceiling(url: str, requests: int) -> float | None:
    """``redis-benchmark``'s XADD rate on this Redis (None without the program)."""
    binary = shutil.which("redis-benchmark")
    parts = urlsplit(url)
    if binary is None or parts.scheme not in ("redis", "rediss"):
        return None
    key = f"pwbench-{uuid.uuid4().hex[:8]}:xadd"
    command = [binary, "-h", parts.hostname or "127.0.0.1"]
    command += ["-p", str(parts.port or 6379), "-n", str(requests), "-q", "--csv"]
    if parts.password:
        command += ["-a", parts.password]
    if parts.path.strip("/"):
        command += ["--dbnum", parts.path.strip("/")]
    try:
        done = subprocess.run(
            [*command, "XADD", key, "*", "f", "v"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    finally:
        _delete_prefixed(url, key)
    # "test","rps",...  then  "XADD ...","40322.58",...
    last = done.stdout.strip().splitlines()[-1]
    return float(last.split(",")[1].strip('"'))


# -- the section ---------------------------------------------------------------------


def run(work: Path, *, quick: bool, log: Log) -> list[Row]:
    """Throughput and CPU per item, portwright vs FastStream; the XADD ceiling."""
    try:
        import faststream  # noqa: F401
    except ImportError:
        return [_unmeasured("FastStream is not installed (pip install -e '.[dev]')")]
    with redis_server(log) as url:
        if url is None:
            return [_unmeasured(f"no Redis: set {VARIABLE} or install redis-server")]
        items = 2_000 if quick else 20_000
        rounds = 1 if quick else 5
        for side in SIDES:  # warm-up, not counted
            measure(side, url, max(items // 10, 200))
        results: dict[str, list[Result]] = {side: [] for side in SIDES}
        for r in range(rounds):
            order_ = list(SIDES) if r % 2 == 0 else list(reversed(SIDES))
            for side in order_:
                results[side].append(measure(side, url, items))
            log(
                f"redis: round {r + 1}/{rounds}: "
                + ", ".join(f"{s} {results[s][-1].rate:,.0f}/s" for s in SIDES)
            )
        ceiling = xadd_ceiling(url, 20_000 if quick else 200_000)
    return _rows(results, ceiling, items, rounds)


#: the issues' goals: against FastStream as its docs show it (#5), and against the
#: hand-written loop, the practical ceiling for Python (#15)
GOALS = {
    "faststream": Goal(">=", 1.0, text="ratio >= 1"),
    "by_hand": Goal(">=", 0.6, text="ratio >= 0.6"),
}


def _rows(
    results: dict[str, list[Result]], ceiling: float | None, items: int, rounds: int
) -> list[Row]:
    rate = {side: median(r.rate for r in rs) for side, rs in results.items()}
    cpu = {side: median(r.cpu_us for r in rs) for side, rs in results.items()}
    note = f"{items:,} orders x {rounds} rounds, one process"
    baselines = {
        "faststream": ("FastStream", "subscriber -> publisher, per message"),
        "faststream_batch": ("FastStream batched", "batch subscribers, pipelined"),
        "by_hand": ("redis-py by hand", "batched reads, pipelined writes and acks"),
    }
    rows: list[Row] = []
    for side, (name, how) in baselines.items():
        rows.append(
            Row(
                SECTION,
                f"two hops with ack: items/s vs {name}",
                rate["portwright"],
                "items/s",
                rate[side],
                f"{name}: {how}",
                GOALS.get(side),
                note=note,
            )
        )
    for side, (name, _) in baselines.items():
        rows.append(
            Row(
                SECTION,
                f"two hops with ack: CPU per item vs {name}",
                cpu["portwright"],
                "us",
                cpu[side],
                name,
                note="this process only; Redis's own CPU not included",
            )
        )
    if ceiling is None:
        rows.append(_unmeasured("redis-benchmark is not installed", "XADD ceiling"))
    else:
        rows.append(
            Row(
                SECTION,
                "two hops with ack vs the XADD ceiling",
                rate["portwright"],
                "items/s",
                ceiling,
                "redis-benchmark XADD, 50 clients",
            )
        )
    return rows


def _unmeasured(why: str, what: str = "two hops with ack") -> Row:
    return Row(SECTION, what, None, "", note=f"not measured: {why}")


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with redis_server(print) as address:
        if address is None:
            raise SystemExit(f"no Redis: set {VARIABLE} or install redis-server")
        for _ in range(repeat):
            for name in SIDES:
                done = measure(name, address, count)
                print(
                    f"{name}: {done.rate:,.0f} items/s, {done.cpu_us:.0f} us CPU/item"
                )
