"""Issue #14: ``/health`` while a ``blocking: true`` component sleeps 200 ms per item.

One service, in one process: a source that never runs dry -> a sink whose plain
``def consume`` calls ``time.sleep(0.2)`` (a sync driver, ``requests.get``), marked
``blocking=True`` with ``concurrency=4`` (worker threads), so four items are always
in it. The service is served by uvicorn (its app's lifespan runs it) on 127.0.0.1;
meanwhile a client in another thread asks ``/health`` again and again (one request at
a time, 5 ms apart) and the figure is the p99 of those answers: how soon the
service's event loop gets to a request.

The baseline is the same service with nothing running (the source sends nothing),
measured in the same run, rounds interleaved. For reference, a third row shows the
same sink *without* ``blocking`` (its ``def`` on the event loop): what the setting
saves.

Usage on its own: ``python -m bench.blocking [requests] [rounds]``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from .redis_transport import _free_port
from .table import REPO, Goal, Row, median

SECTION = "8 blocking code"
SLEEP_S = 0.2
CONCURRENCY = 4
Log = Callable[[str], None]

sys.path.insert(0, str(REPO / "templates/project/package"))

MODES = ("idle", "blocking", "on the loop")


async def health_p99(mode: str, requests: int) -> float:
    """The p99 of ``/health`` (seconds) while the service runs in ``mode``."""
    import runtime as rt
    import uvicorn

    class Endless(rt.Source):
        async def generate(self) -> Any:
            if mode == "idle":
                return
            number = 0
            while True:
                yield number
                number += 1

    class Slow(rt.Sink):
        def consume(self, item: int) -> None:
            time.sleep(SLEEP_S)

    service = rt.Service("bench")
    service.add(Endless("numbers"))
    work = {"blocking": True, "concurrency": CONCURRENCY}
    service.add(Slow("slow", **(work if mode == "blocking" else {})))
    service.connect("numbers.out", "slow.in", buffer_size=4)
    port = _free_port()
    config = uvicorn.Config(
        rt.create_app(service),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",  # the app's lifespan runs the service
    )
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as group:
        group.start_soon(server.serve)
        while not server.started:
            await anyio.sleep(0.01)
        await anyio.sleep(SLEEP_S)  # the sink is busy before the first request
        # The client runs in a thread of its own: its wait includes the time the
        # service's event loop takes to get to the request.
        times = await anyio.to_thread.run_sync(_ask, port, requests)
        server.should_exit = True
    return _p99(times)


def _ask(port: int, requests: int) -> list[float]:
    import httpx

    times: list[float] = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(requests):
            started = time.perf_counter()
            response = client.get("/health")
            times.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"/health answered {response.status_code}")
            time.sleep(0.005)
    return times


def _p99(times: list[float]) -> float:
    return statistics.quantiles(times, n=100, method="inclusive")[98]


def run(work: Path, *, quick: bool, log: Log) -> list[Row]:
    """``/health`` p99 under a blocking component, against the idle service."""
    # quick (the harness test): 20 requests, each ~0.2 s on the loop for the third row
    return measure(20 if quick else 400, 1 if quick else 3, log)


def measure(requests: int, rounds: int, log: Log) -> list[Row]:
    """``rounds`` interleaved rounds of ``requests`` each; the section's rows."""
    results: dict[str, list[float]] = {mode: [] for mode in MODES}
    for r in range(rounds):
        order = list(MODES) if r % 2 == 0 else list(reversed(MODES))
        for mode in order:
            # On the loop, each answer waits for whole batches of 200 ms calls: a
            # few requests show it (their p99 is their slowest).
            asked = requests if mode != "on the loop" else max(5, requests // 40)
            results[mode].append(anyio.run(health_p99, mode, asked))
        log(
            f"blocking: round {r + 1}/{rounds}: "
            + ", ".join(f"{m} {results[m][-1] * 1000:.1f} ms" for m in MODES)
        )
    p99 = {mode: median(values) for mode, values in results.items()}
    note = (
        f"{requests} requests x {rounds} rounds; the sink sleeps "
        f"{SLEEP_S * 1000:.0f} ms per item"
    )
    return [
        Row(
            SECTION,
            "/health p99, blocking sink busy vs idle",
            p99["blocking"] * 1000,
            "ms",
            p99["idle"] * 1000,
            f"idle service; blocking=True, concurrency={CONCURRENCY}",
            Goal("<=", 2.0),
            note,
        ),
        Row(
            SECTION,
            "/health p99, the same sink on the loop vs idle",
            p99["on the loop"] * 1000,
            "ms",
            p99["idle"] * 1000,
            "idle service; the def not marked blocking (for reference; "
            f"{max(5, requests // 40)} requests a round)",
            None,
            note,
        ),
    ]


def main(argv: list[str]) -> None:
    """``python -m bench.blocking [requests] [rounds]``."""
    requests = int(argv[0]) if argv else 400
    rounds = int(argv[1]) if len(argv) > 1 else 3

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    for row in measure(requests, rounds, log):
        print(f"{row.figure}: {row.value:.2f} {row.unit} (baseline {row.baseline:.2f})")


if __name__ == "__main__":
    main(sys.argv[1:])
