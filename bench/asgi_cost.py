"""CPU time per request of each HTTP app, called directly as ASGI (no server).

    python -m bench.asgi_cost [requests] [rounds]

Where section 4's time goes, without uvicorn and the network: the emitted app
(``create_app`` of the one-endpoint service of ``bench/ingress.py``, its service
running), which answers ingest requests before FastAPI's middleware; the same app
with a user's (pass-through) middleware added, which sends every request through
FastAPI's whole stack; idiomatic FastAPI; and bare Starlette. Microseconds of CPU
time per request, medians of interleaved rounds.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import ingress
from .servers import fastapi_app, starlette_app
from .table import median


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": ingress.ROUTE,
        "raw_path": ingress.ROUTE.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(ingress.BODY)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }


class _PassOn:
    """A user's middleware that does nothing but pass the request on."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


async def _per_request(app: Any, requests: int) -> float:
    """CPU microseconds per request for ``requests`` sequential requests."""
    body = ingress.BODY
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    started = time.process_time()
    for _ in range(requests):
        await app(_scope(), receive, send)
    spent = time.process_time() - started
    if statuses[-1] != 202:
        raise RuntimeError(f"{app!r} answered {statuses[-1]}")
    return spent / requests * 1e6


async def measure(project: Path, requests: int, rounds: int) -> dict[str, float]:
    """Every app's median CPU microseconds per request."""
    sys.path.insert(0, str(project))
    package = ingress.PACKAGE
    emitted = importlib.import_module(f"{package}.app").make_app()
    # The same service behind a second app, with a middleware that only passes on.
    create_app = importlib.import_module(f"{package}.runtime").create_app
    stacked = create_app(emitted.state.service)
    stacked.add_middleware(_PassOn)
    model = importlib.import_module(f"{package}.schemas").Order
    apps = {
        "emitted": emitted,
        "emitted + middleware": stacked,
        "idiomatic FastAPI": fastapi_app(model),
        "bare Starlette": starlette_app(),
    }
    times: dict[str, list[float]] = {name: [] for name in apps}
    async with emitted.state.service.running():
        for app in apps.values():
            await _per_request(app, max(requests // 10, 1))  # warm-up
        for r in range(rounds):
            names = list(apps) if r % 2 == 0 else list(reversed(apps))
            for name in names:
                times[name].append(await _per_request(apps[name], requests))
    return {name: median(values) for name, values in times.items()}


def main(argv: list[str]) -> None:
    """Generate the service, measure, print."""
    requests = int(argv[0]) if argv else 3000
    rounds = int(argv[1]) if len(argv) > 1 else 7
    with tempfile.TemporaryDirectory(prefix="portwright-asgi-") as folder:
        project = ingress.prepare(Path(folder))
        result = asyncio.run(measure(project, requests, rounds))
    for name, micros in result.items():
        print(f"{name:>20}: {micros:7.1f} us CPU per request")


if __name__ == "__main__":
    main(sys.argv[1:])
