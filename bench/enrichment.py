"""Issue #14: a transformer that awaits an HTTP API, with ``concurrency: 64``.

Both sides move the same orders through the same shape, in one process, against the
same Redis, each round on streams of its own:

    orders -> stream A -> enrich (awaits the API) -> stream B -> sink

The API is a local HTTP server on 127.0.0.1 (a subprocess: plain asyncio, keep-alive
HTTP/1.1) that answers every request after 100 ms, so the physical limit of 64 calls
in flight is 64 / 0.1 s = 640 items/s.

- portwright: the runtime every emitted project carries, a ``Transformer`` with
  ``concurrency=64`` whose ``async def transform`` awaits an aiohttp GET (one
  session, 64 keep-alive connections: 64 concurrent clients of the API); both
  connections over Redis,
  each entry acknowledged once its own result is written.
- FastStream 0.7 (``faststream[redis]``): the subscriber on stream A with its
  concurrency option (``max_workers=64``, a ``StreamConcurrentSubscriber``), the same
  handler (the same aiohttp client), its result published to stream B
  (``@broker.publisher``), acknowledged after processing (``NACK_ON_ERROR``).

The figure is items per second of wall time from start to the last item at the sink,
the median of interleaved rounds.

Usage on its own: ``python -m bench.enrichment [items] [rounds]``;
``python -m bench.enrichment serve PORT`` runs the API alone.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import orjson

from .redis_transport import (
    READ_BATCH,
    ROUND_TIMEOUT_S,
    VARIABLE,
    Order,
    Result,
    Scored,
    _delete_prefixed,
    _publish,
    order,
    redis_server,
)
from .table import REPO, Goal, Row, median

SECTION = "7 enrichment"
CONCURRENCY = 64
DELAY_S = 0.1
LIMIT = CONCURRENCY / DELAY_S  # items/s with 64 calls always in flight
Log = Callable[[str], None]
_ANSWER = b'{"rate": 1}'
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_ANSWER), _ANSWER)
)

sys.path.insert(0, str(REPO / "templates/project/package"))

# -- the API: 100 ms per answer ----------------------------------------------------


async def _serve(port: int) -> None:
    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")  # GET: no body
                await asyncio.sleep(DELAY_S)
                writer.write(_RESPONSE)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


@contextmanager
def api_server() -> Iterator[str]:
    """The 100 ms API in a subprocess; its URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.enrichment", "serve", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("the API server did not start")
        yield f"http://127.0.0.1:{port}/rate"
    finally:
        process.terminate()
        process.wait(timeout=10)


class Clients:
    """64 concurrent clients of the API: one aiohttp session whose connector keeps
    64 keep-alive connections, each call on a free one.

    aiohttp rather than httpx: an httpx call costs ~660 us of CPU here (a bare loop
    of 64 workers and nothing else reaches only 0.93 of the limit on this machine),
    an aiohttp call about a third of that; the client is the user's code, the same
    on both sides, and the figure is about what the runtime adds to it.
    """

    def __init__(self) -> None:
        self._session: Any = None

    async def get_json(self, url: str) -> Any:
        async with self._session.get(url) as response:
            response.raise_for_status()
            return orjson.loads(await response.read())

    async def __aenter__(self) -> Clients:
        import aiohttp

        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONCURRENCY),
            timeout=aiohttp.ClientTimeout(total=30),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()


async def enrich(clients: Clients, api: str, item: Order) -> Scored:
    """The work of the middle hop (the same on both sides): one call of the API."""
    rate = float((await clients.get_json(api))["rate"])
    return Scored(order_id=item.order_id, amount=item.amount, risk=rate)


# -- portwright --------------------------------------------------------------------


async def portwright(url: str, prefix: str, items: int, api: str) -> Result:
    """orders -> enrich (concurrency 64) -> sink, both connections over Redis."""
    import runtime as rt

    class Orders(rt.Source):
        async def generate(self) -> Any:
            for number in range(items):
                yield order(number)

    class Enrich(rt.Transformer):
        async def transform(self, item: Order) -> Scored:
            return await enrich(client, api, item)

    class Count(rt.Sink):
        def consume(self, item: Scored) -> None:
            result.count()

    settings = rt.ServiceSettings(redis_url=url, redis_prefix=prefix)
    service = rt.Service("bench", settings=settings)
    service.add(Orders("orders", outputs={"out": Order}))
    service.add(
        Enrich(
            "enrich",
            inputs={"in": Order},
            outputs={"out": Scored},
            concurrency=CONCURRENCY,
        )
    )
    service.add(Count("sink", inputs={"in": Scored}))
    service.connect("orders.out", "enrich.in", transport="redis")
    service.connect("enrich.out", "sink.in", transport="redis")
    async with Clients() as client:
        result = Result(items)
        with anyio.fail_after(ROUND_TIMEOUT_S):
            report = await service.run()
    if not report.completed or result.received != items:
        raise RuntimeError(f"portwright: {result.received} of {items} items arrived")
    return result


# -- FastStream ----------------------------------------------------------------------


async def faststream(url: str, prefix: str, items: int, api: str) -> Result:
    """The same hop with FastStream's concurrent stream subscriber (max_workers)."""
    from faststream import AckPolicy
    from faststream.redis import RedisBroker, StreamSub

    first, second = f"{prefix}fs.orders", f"{prefix}fs.enriched"
    broker = RedisBroker(url, logger=None)

    @broker.subscriber(
        stream=StreamSub(
            first, group="enrich", consumer="bench", max_records=READ_BATCH
        ),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        max_workers=CONCURRENCY,
    )
    @broker.publisher(stream=second)
    async def handle_enrich(item: Order) -> Scored:
        return await enrich(client, api, item)

    @broker.subscriber(
        stream=StreamSub(
            second, group="sink", consumer="bench", max_records=READ_BATCH
        ),
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def handle_sink(item: Scored) -> None:
        result.count()

    async with Clients() as client:
        result = Result(items)
        redis = await broker.connect()
        await broker.start()
        try:
            with anyio.fail_after(ROUND_TIMEOUT_S):
                await _publish(broker, redis, first, items)
                await result.done.wait()
        finally:
            await broker.stop()
    return result


SIDES = {"portwright": portwright, "faststream": faststream}


def measure(side: str, url: str, items: int, api: str) -> Result:
    """One round of ``side`` on streams of its own, deleted afterwards."""
    prefix = f"pwbench-{uuid.uuid4().hex[:8]}:"
    try:
        return anyio.run(SIDES[side], url, prefix, items, api)
    finally:
        _delete_prefixed(url, prefix)


# -- the section ---------------------------------------------------------------------


def run(work: Path, *, quick: bool, log: Log) -> list[Row]:
    """Items/s through a 64-wide transformer awaiting a 100 ms API, against the
    limit and against FastStream's concurrent subscriber."""
    try:
        import faststream  # noqa: F401
    except ImportError:
        return [_unmeasured("FastStream is not installed (pip install -e '.[dev]')")]
    with redis_server(log) as url:
        if url is None:
            return [_unmeasured(f"no Redis: set {VARIABLE} or install redis-server")]
        items = 320 if quick else 6_400
        rounds = 1 if quick else 3
        results: dict[str, list[Result]] = {side: [] for side in SIDES}
        with api_server() as api:
            for side in SIDES:  # warm-up, not counted
                measure(side, url, CONCURRENCY * 2, api)
            for r in range(rounds):
                order_ = list(SIDES) if r % 2 == 0 else list(reversed(SIDES))
                for side in order_:
                    results[side].append(measure(side, url, items, api))
                log(
                    f"enrichment: round {r + 1}/{rounds}: "
                    + ", ".join(f"{s} {results[s][-1].rate:,.0f}/s" for s in SIDES)
                )
    rate = {side: median(r.rate for r in rs) for side, rs in results.items()}
    note = (
        f"{items:,} orders x {rounds} rounds over Redis; the API answers in "
        f"{DELAY_S * 1000:.0f} ms"
    )
    return [
        Row(
            SECTION,
            f"enrich, concurrency {CONCURRENCY}: items/s vs the limit",
            rate["portwright"],
            "items/s",
            LIMIT,
            f"{CONCURRENCY} in flight / {DELAY_S:g} s",
            Goal(">=", 0.9),
            note,
        ),
        Row(
            SECTION,
            f"enrich, concurrency {CONCURRENCY}: items/s vs FastStream",
            rate["portwright"],
            "items/s",
            rate["faststream"],
            f"FastStream 0.7: stream subscriber, max_workers={CONCURRENCY}",
            Goal(">=", 1.0),
            note,
        ),
    ]


def _unmeasured(reason: str) -> Row:
    return Row(
        SECTION,
        f"enrich, concurrency {CONCURRENCY}: items/s vs the limit",
        None,
        "items/s",
        note=f"not measured: {reason}",
    )


def main(argv: list[str]) -> None:
    """``python -m bench.enrichment [items] [rounds]`` or ``serve PORT``."""
    if argv[:1] == ["serve"]:
        asyncio.run(_serve(int(argv[1])))
        return
    items = int(argv[0]) if argv else 3_200
    rounds = int(argv[1]) if len(argv) > 1 else 3

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    with redis_server(log) as url, api_server() as api:
        if url is None:
            raise SystemExit(f"no Redis: set {VARIABLE} or install redis-server")
        for _ in range(rounds):
            for side in SIDES:
                log(f"{side}: {measure(side, url, items, api).rate:,.0f} items/s")


if __name__ == "__main__":
    main(sys.argv[1:])
