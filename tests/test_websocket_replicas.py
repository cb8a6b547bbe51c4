"""A websocket_out over Redis, in two replicas in processes of their own: clients
of either replica see the whole stream, in order (each replica reads the stream on
its own position, not a share of it through the shared consumer group), and the
group that trimming goes by follows the lowest live replica's position."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis
from websockets.asyncio.client import connect

from tests.redisenv import free_port, redis_url, unique_prefix

PACKAGE = Path(__file__).resolve().parents[1] / "templates" / "project" / "package"
SERVICE = textwrap.dedent("""
    import sys

    sys.path.insert(0, sys.argv[1])

    import runtime
    from pydantic import BaseModel


    class Tick(BaseModel):
        n: int


    port, url, prefix, components = sys.argv[2:6]
    settings = runtime.ServiceSettings(
        port=int(port),
        redis_url=url,
        redis_prefix=prefix,
        components=components,
        redis_consumer=f"replica-{port}",
        redis_claim_idle_ms=2000,
        drain_timeout_s=2,
    )
    service = runtime.Service("wsdemo", settings=settings)
    service.add(runtime.ApiEndpoint("ticks", route="/ticks", schema=Tick))
    service.add(runtime.WebSocketOut("board", route="/board", inputs={"in": Tick}))
    service.connect("ticks.out", "board.in", transport="redis")
    runtime.serve(runtime.create_app(service))
    """)
CLIENTS = 3  # per replica
ITEMS = 60


def test_clients_of_every_replica_see_the_whole_stream_in_order(
    tmp_path: Path,
) -> None:
    url = redis_url()
    prefix = unique_prefix()
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    client = redis.Redis.from_url(url)
    stream = f"{prefix}wsdemo.ticks.out"
    ports = [free_port(), free_port()]
    try:
        with ExitStack() as stack:
            # the first replica takes the items and serves clients; the second
            # only serves clients
            stack.enter_context(_replica(script, ports[0], url, prefix, "ticks,board"))
            stack.enter_context(_replica(script, ports[1], url, prefix, "board"))
            _until(lambda: client.hlen(stream + ".broadcast") == 2, "both reading")
            seen = asyncio.run(_watch(ports))
            # every live replica has read everything: the group that trimming
            # goes by is past it, and the stream is trimmed down to it
            newest: Any = client.xrevrange(stream, count=1)
            last = newest[0][0]
            _until(
                lambda: _group_position(client, stream) == last,
                "the group at the newest entry",
            )
        assert len(seen) == 2 * CLIENTS
        for numbers in seen:
            assert numbers == list(range(ITEMS))
    finally:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


async def _watch(ports: list[int]) -> list[list[int]]:
    """Clients on each replica; the items posted to the first, as each saw them."""
    sockets = [
        await connect(f"ws://127.0.0.1:{port}/board")
        for port in ports
        for _ in range(CLIENTS)
    ]
    try:
        async with httpx.AsyncClient(trust_env=False) as http:
            for port in ports:  # every client is counted before anything is sent
                await _until_async(
                    lambda port=port: _clients(http, port), f"{CLIENTS} clients"
                )
            for n in range(ITEMS):
                posted = await http.post(
                    f"http://127.0.0.1:{ports[0]}/ticks", json={"n": n}
                )
                assert posted.status_code == 202, posted.text

        async def numbers(socket: object) -> list[int]:
            got: list[int] = []
            while len(got) < ITEMS:
                frame = json.loads(await socket.recv())  # type: ignore[attr-defined]
                if frame["type"] == "item":
                    got.append(frame["item"]["n"])
            return got

        async with asyncio.timeout(60):
            return list(await asyncio.gather(*(numbers(s) for s in sockets)))
    finally:
        for socket in sockets:
            await socket.close()


async def _clients(http: httpx.AsyncClient, port: int) -> bool:
    text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    return f'portwright_websocket_clients{{component="board"}} {CLIENTS}.0' in text


async def _until_async(check: object, what: str) -> None:
    deadline = time.monotonic() + 30
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not reached: {what}"
        await asyncio.sleep(0.05)


def _group_position(client: redis.Redis, stream: str) -> bytes | None:
    for group in client.xinfo_groups(stream):
        if group["name"] == b"board.in":
            position: bytes = group["last-delivered-id"]
            return position
    return None


def _until(check: object, what: str) -> None:
    deadline = time.monotonic() + 30
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not reached: {what}"
        time.sleep(0.05)


@contextmanager
def _replica(
    script: Path, port: int, url: str, prefix: str, components: str
) -> Iterator[None]:
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(PACKAGE),
                str(port),
                url,
                prefix,
                components,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                    break
                except httpx.TransportError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        raise AssertionError(log.read().decode()[-3000:]) from None
                    time.sleep(0.05)
            yield
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
