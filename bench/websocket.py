"""Live clients (issue #19): fan-out, fan-in and a slow client, over real sockets.

    python -m bench.websocket serve --port PORT [--queue N] [--kind runtime|starlette]

serves one of two apps with uvicorn, in a process of its own:

- ``runtime``: the portwright runtime, ``feed`` (websocket_in) -> ``live``
  (websocket_out, ``subscribe_by: [symbol]``) and ``orders`` (api_endpoint, POST
  /orders) -> ``live``: what an emitted service with these components runs;
- ``starlette``: the practical limit for fan-out, a hand-written Starlette
  broadcast loop: ``/feed`` frames sent on to every ``/live`` socket, one
  ``await send_text`` each, in order, with nothing between.

The clients are the ``websockets`` library's, in the measuring process. The
figures (``run``): items/s delivered to 100 clients against the Starlette loop
(goal >= 0.8); items/s accepted over 50 connections against the same service's
HTTP ingress (goal >= 3x); the p99 delivery latency of the other clients while one
client reads nothing, against the same run without it (goal <= 2x).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import socket as socket_module
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from .table import Goal, Row, median

Log = Callable[[str], None]
SECTION = "10 websocket"

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_HOME = Path(
    os.environ.get("BENCH_RUNTIME_HOME", ROOT / "templates" / "project" / "package")
)
#: each tick's padding: ~330-byte frames
PAD = "x" * 256
#: the served runtime's kernel send buffer per connection (``send_buffer_bytes``):
#: left to the kernel, it grows to 4 MiB, more than 10,000 frames, and a client
#: that reads nothing might never fill its queue; with it, ~330 frames wait in the
#: kernel, then 1,024 in the queue, and the route drops it
SEND_BUFFER = 65536
#: the buffer in front of the slow sink
BOOK_BUFFER = 64


# -- the served apps ------------------------------------------------------------


def runtime_app(
    queue: int,
    slow_client: str,
    slow_ms: float = 0,
    record: str | None = None,
    send_buffer: int | None = None,
) -> Any:
    """The runtime's service: feed (ws in) and orders (http) into live (ws out).

    With ``slow_ms``, feed goes instead to ``book``, a sink that spends that long
    on each item (in a worker thread) and, at its end, writes every ``seq`` it got
    to ``record``, one a line: a pipeline slower than its sender.
    """
    import runtime
    from pydantic import BaseModel

    class Tick(BaseModel):
        seq: int
        symbol: str
        sent: float
        pad: str = ""

    # warnings only: the figures are the transport's, not the access log's
    settings = runtime.ServiceSettings(
        log_level="WARNING", send_buffer_bytes=send_buffer
    )
    service = runtime.Service("bench", settings=settings)
    service.add(runtime.WebSocketIn("feed", route="/feed", schema=Tick))
    service.add(runtime.ApiEndpoint("orders", route="/orders", schema=Tick))
    service.add(
        runtime.WebSocketOut(
            "live",
            route="/live",
            inputs={"ws": Tick, "http": Tick},
            queue_size=queue,
            slow_client=slow_client,  # type: ignore[arg-type]
            subscribe_by=["symbol"],
            heartbeat_s=None,
        )
    )
    service.connect("orders.out", "live.http")
    if not slow_ms:
        service.connect("feed.out", "live.ws")
        return runtime.create_app(service)

    class Book(runtime.Sink):
        """Slow: ``slow_ms`` per item."""

        async def setup(self) -> None:
            self.seqs: list[int] = []

        def consume(self, item: Tick) -> None:
            time.sleep(slow_ms / 1000)
            self.seqs.append(item.seq)

        async def cleanup(self) -> None:
            if record is not None:
                Path(record).write_text("".join(f"{seq}\n" for seq in self.seqs))

    service.add(Book("book", inputs={"in": Tick}, blocking=True))
    service.connect("feed.out", "book.in", buffer_size=BOOK_BUFFER)
    # live keeps an input of each kind it declares: an inlet nothing sends to
    service.inlet("live.ws")
    return runtime.create_app(service)


def starlette_app() -> Any:
    """The hand-written broadcast loop: every /feed frame to every /live socket."""
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    clients: set[WebSocket] = set()

    async def live(websocket: WebSocket) -> None:
        await websocket.accept()
        clients.add(websocket)
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            clients.discard(websocket)

    async def feed(websocket: WebSocket) -> None:
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                text = await websocket.receive_text()
                for client in list(clients):
                    await client.send_text(text)

    return Starlette(
        routes=[WebSocketRoute("/live", live), WebSocketRoute("/feed", feed)]
    )


def serve_main(argv: Sequence[str]) -> None:
    """``serve``: one app under uvicorn, as ``runtime.serve`` configures it."""
    parser = argparse.ArgumentParser(prog="python -m bench.websocket serve")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--queue", type=int, default=1024)
    parser.add_argument("--slow-client", default="disconnect")
    parser.add_argument("--kind", choices=("runtime", "starlette"), default="runtime")
    parser.add_argument("--slow-ms", type=float, default=0)
    parser.add_argument("--record")
    parser.add_argument("--send-buffer", type=int)
    args = parser.parse_args(argv)
    if args.kind == "runtime":
        sys.path.insert(0, str(RUNTIME_HOME))
        import runtime

        app = runtime_app(
            args.queue, args.slow_client, args.slow_ms, args.record, args.send_buffer
        )
        sys.exit(runtime.serve(app, host="127.0.0.1", port=args.port))
    import uvicorn

    uvicorn.run(starlette_app(), host="127.0.0.1", port=args.port, log_level="warning")


@contextlib.contextmanager
def served(port: int, *options: str) -> Iterator[subprocess.Popen[bytes]]:
    """The app serving on ``port`` in its own process, until the block ends."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # the log goes to a file: a pipe nobody reads would fill and stop the server
    with tempfile.TemporaryFile() as log:
        command = [sys.executable, "-m", "bench.websocket", "serve"]
        process = subprocess.Popen(
            [*command, "--port", str(port), *options],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            _wait_until_up(port, process, log)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(port: int, process: subprocess.Popen[bytes], log: Any) -> None:
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"the server exited: {log.read().decode()[-2000:]}")
        try:
            with httpx.Client(trust_env=False) as client:
                client.get(f"http://127.0.0.1:{port}/", timeout=1)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# -- the clients ------------------------------------------------------------------


class Received:
    """What one reading client got: the sequence numbers and delivery delays."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.delays: list[float] = []
        self.close_code: int | None = None


async def read(url: str, count: int, into: Received, ready: asyncio.Event) -> None:
    """Read ``count`` items (or until closed) and note each one's delay."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async with connect(url, max_size=None) as socket:
        ready.set()
        try:
            while len(into.seqs) < count:
                frame = json.loads(await socket.recv())
                item = frame.get("item", frame)
                into.seqs.append(item["seq"])
                into.delays.append(time.time() - item["sent"])
        except ConnectionClosed as closed:
            into.close_code = closed.rcvd.code if closed.rcvd else None


async def sleep_on(
    url: str, ready: asyncio.Event, closed: asyncio.Event
) -> tuple[int | None, int]:
    """Connect and never read, until ``closed`` is set; then read everything the
    server sent: the code of its close frame (None: it sent none) and how many
    other frames came before it.

    A raw socket with a small receive buffer, not a client library that keeps
    reading into a queue of its own: the server's writes back up after a few
    frames, as they do behind a client that stopped reading.
    """
    host, _, rest = url.removeprefix("ws://").partition(":")
    port, _, path = rest.partition("/")
    loop = asyncio.get_running_loop()
    sock = socket_module.socket()
    sock.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, (host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /{path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:  # one byte at a time: no frame read with it
        head += await loop.sock_recv(sock, 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    ready.set()
    await closed.wait()
    data = bytearray()
    while chunk := await loop.sock_recv(sock, 1 << 16):
        data += chunk
        code, frames = _frames(bytes(data))
        if code is not None:
            sock.close()
            return code, frames
    sock.close()
    return _frames(bytes(data))


def _frames(data: bytes) -> tuple[int | None, int]:
    """The code of the close frame among server frames ``data``, if it is there,
    and how many whole frames came before it."""
    at = frames = 0
    while at + 2 <= len(data):
        opcode, size = data[at] & 0x0F, data[at + 1] & 0x7F
        at += 2
        if size == 126:
            size, at = int.from_bytes(data[at : at + 2], "big"), at + 2
        elif size == 127:
            size, at = int.from_bytes(data[at : at + 8], "big"), at + 8
        if at + size > len(data):
            return None, frames
        if opcode == 0x8:
            return int.from_bytes(data[at : at + 2], "big"), frames
        at += size
        frames += 1
    return None, frames


async def send(url: str, count: int, start: int = 0, symbol: str = "ACME") -> None:
    """Send ``count`` ticks over one connection, as fast as the server reads."""
    from websockets.asyncio.client import connect

    # no close timeout: the server reads the frames before the close frame first,
    # and a sender that gave up on the close would reset what it has not read yet
    async with connect(url, close_timeout=None) as socket:
        for seq in range(start, start + count):
            await socket.send(
                json.dumps(
                    {"seq": seq, "symbol": symbol, "sent": time.time(), "pad": PAD}
                )
            )


def p99(values: Sequence[float]) -> float:
    """The 99th percentile of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def fan_out(
    port: int, clients: int, items: int, *, sleeper: bool = False
) -> tuple[float, list[Received], tuple[int | None, int] | None]:
    """``clients`` readers get ``items`` ticks sent over /feed; items/s delivered
    (per client), what each got, and the sleeper's close code and frame count."""
    base = f"ws://127.0.0.1:{port}"
    received = [Received() for _ in range(clients)]
    readies = [asyncio.Event() for _ in range(clients)]
    readers = [
        asyncio.create_task(read(f"{base}/live", items, r, e))
        for r, e in zip(received, readies, strict=True)
    ]
    sleeping = watching = None
    done = asyncio.Event()
    if sleeper:
        ready = asyncio.Event()
        readies.append(ready)
        sleeping = asyncio.create_task(sleep_on(f"{base}/live", ready, done))
        watching = asyncio.create_task(_until_dropped(port, done))
    for ready in readies:
        await ready.wait()
    await asyncio.sleep(0.2)  # every handshake counted by the server
    started = time.perf_counter()
    await send(f"{base}/feed", items)
    await asyncio.gather(*readers)
    elapsed = time.perf_counter() - started
    code = None
    if sleeping is not None and watching is not None:
        # Dropped (the server counted it), the sleeper reads up to the close frame.
        # Not dropped (a run too short to fill its queue and the socket buffers),
        # nobody will close it: it is let go, and there is no code.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 2)
        dropped = done.is_set()
        done.set()
        watching.cancel()
        if dropped:
            code = await asyncio.wait_for(sleeping, 60)
        else:
            sleeping.cancel()
    return items / elapsed, received, code


async def _until_dropped(port: int, dropped: asyncio.Event) -> None:
    """Set ``dropped`` once the server counts a slow client closed: the sleeper
    then reads, so that the close frame behind its unread frames reaches it."""
    name = 'portwright_websocket_slow_disconnected_total{component="live"}'
    async with httpx.AsyncClient(trust_env=False) as client:
        while not dropped.is_set():
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            if f"{name} 1.0" in text:
                dropped.set()
            await asyncio.sleep(0.1)


async def fan_in_ws(port: int, connections: int, items: int) -> float:
    """Items/s accepted over ``connections`` WebSocket connections to /feed."""
    each = items // connections
    started = time.perf_counter()
    await asyncio.gather(
        *(
            send(f"ws://127.0.0.1:{port}/feed", each, start=i * each)
            for i in range(connections)
        )
    )
    return each * connections / (time.perf_counter() - started)


async def fan_in_http(port: int, connections: int, items: int) -> float:
    """Items/s accepted by POST /orders over ``connections`` keep-alive clients."""
    each = items // connections
    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(limits=limits, trust_env=False) as client:

        async def post_many(start: int) -> None:
            for seq in range(start, start + each):
                body = {"seq": seq, "symbol": "ACME", "sent": time.time(), "pad": PAD}
                answer = await client.post(f"http://127.0.0.1:{port}/orders", json=body)
                answer.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(post_many(i * each) for i in range(connections)))
        return each * connections / (time.perf_counter() - started)


def metric(port: int, name: str) -> float:
    """One ``portwright_*`` sample of the served runtime, by its full text name."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", trust_env=False).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise KeyError(name)


def _free_port() -> int:
    with socket_module.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run(work: Path, *, quick: bool, log: Log) -> list[Row]:
    """Fan-out against the Starlette loop, fan-in against the HTTP ingress, and
    the slow-client p99 ratio; alternate rounds, medians."""
    rounds = 1 if quick else 3
    out_clients, out_items = (10, 300) if quick else (100, 5_000)
    in_connections, in_items = (10, 1_000) if quick else (50, 50_000)
    slow_clients, slow_items = (10, 300) if quick else (200, 10_000)
    fan: dict[str, list[float]] = {"runtime": [], "starlette": []}
    fan_in: dict[str, list[float]] = {"ws": [], "http": []}
    p99s: dict[bool, list[float]] = {True: [], False: []}
    for r in range(rounds):
        kinds = ["runtime", "starlette"] if r % 2 == 0 else ["starlette", "runtime"]
        for kind in kinds:
            port = _free_port()
            with served(port, "--kind", kind):
                rate, _, _ = asyncio.run(fan_out(port, out_clients, out_items))
            fan[kind].append(rate)
        port = _free_port()
        with served(port):
            ways = ["ws", "http"] if r % 2 == 0 else ["http", "ws"]
            for way in ways:
                measure = fan_in_ws if way == "ws" else fan_in_http
                fan_in[way].append(asyncio.run(measure(port, in_connections, in_items)))
        for sleeper in [True, False] if r % 2 == 0 else [False, True]:
            port = _free_port()
            with served(port, "--send-buffer", str(SEND_BUFFER)):
                _, got, _ = asyncio.run(
                    fan_out(port, slow_clients, slow_items, sleeper=sleeper)
                )
            p99s[sleeper].append(p99([d for client in got for d in client.delays]))
        log(f"websocket: round {r + 1}/{rounds} done")
    return [
        Row(
            SECTION,
            f"websocket_out fan-out to {out_clients} clients: items/s vs a "
            "Starlette broadcast loop",
            median(fan["runtime"]),
            "items/s",
            baseline=median(fan["starlette"]),
            baseline_label="hand-written loop, same uvicorn",
            goal=Goal(">=", 0.8),
        ),
        Row(
            SECTION,
            f"websocket_in fan-in over {in_connections} connections: items/s vs "
            "the same service's api_endpoint",
            median(fan_in["ws"]),
            "items/s",
            baseline=median(fan_in["http"]),
            baseline_label=f"POST, {in_connections} keep-alive clients",
            goal=Goal(">=", 3),
        ),
        Row(
            SECTION,
            f"p99 delivery to {slow_clients} clients, one reading nothing vs none",
            median(p99s[True]),
            "s",
            baseline=median(p99s[False]),
            baseline_label="without the non-reader",
            goal=Goal("<=", 2),
        ),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    """``serve`` (see the module docstring), or ``[quick]``: print the rows."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        serve_main(argv[1:])
        return
    quick = argv[:1] == ["quick"]

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    for row in run(Path("."), quick=quick, log=log):
        print(" | ".join(row.cells()))


if __name__ == "__main__":
    main()
