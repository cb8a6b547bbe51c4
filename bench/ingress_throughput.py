"""Requests per second of the runtime's ingest route against FastAPI and Starlette.

Each app is called directly through ASGI (no HTTP client or server in the way) with
the same small JSON body:

- fastapi: the idiomatic route, ``async def post(body: Order)``;
- starlette: a bare Starlette app whose route validates with ``model_validate_json``;
- fastapi+route: that same Starlette route inside a FastAPI app (FastAPI's
  middleware, no FastAPI request handling): the ceiling for any route in the app;
- runtime: ``create_app`` with an ``ApiEndpoint``, the service running and a tap
  taking the messages.

Usage: ``python bench/ingress_throughput.py [requests] [rounds] [--tracing[=RATIO]]``. Prints
requests per second of CPU time (best of the rounds). No assertions: numbers depend
on the machine. ``--tracing`` adds "runtime+tracing": the runtime with OpenTelemetry
tracing on (a span per request, all sampled, handed to an exporter that discards it;
``--tracing=0.01``: one trace in a hundred sampled).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

sys.path.insert(
    0, str(Path(__file__).resolve().parents[1] / "templates/project/package")
)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script too

import runtime as rt

from bench.tracer import ratio_argument, tracing_on

App = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]
BODY = b'{"order_id": "o-1", "email": "a@example.com", "amount": 3.5}'


class Order(BaseModel):
    """The body every route accepts."""

    order_id: str
    email: str
    amount: float


async def requests_per_second(app: App, requests: int) -> float:
    """Call ``app`` with ``requests`` POST /orders; every answer must be 2xx."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/orders",
        "raw_path": b"/orders",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ],
        "client": ("127.0.0.1", 1234),
        "server": ("bench", 80),
    }
    statuses: set[int] = set()

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    started = time.process_time()
    for _ in range(requests):
        await app(dict(scope), receive, send)
    elapsed = time.process_time() - started
    if not statuses <= {200, 202}:
        raise SystemExit(f"unexpected answers: {sorted(statuses)}")
    return requests / elapsed


async def validate(request: Request) -> Response:
    """The bare route: validate, answer 202."""
    Order.model_validate_json(await request.body())
    return Response(b'{"id": "x"}', status_code=202, media_type="application/json")


def fastapi_app() -> FastAPI:
    """The idiomatic FastAPI route."""
    app = FastAPI()

    @app.post("/orders", status_code=202)
    async def post(body: Order) -> dict[str, str]:
        return {"id": "x"}

    return app


def fastapi_with_route() -> FastAPI:
    """A plain Starlette route inside a FastAPI app."""
    app = FastAPI()
    app.router.routes.append(Route("/orders", validate, methods=["POST"]))
    return app


async def runtime_rate(requests: int, ratio: float | None = None) -> float:
    """The runtime's ingest route, the service running, a tap taking the messages
    (``ratio``: tracing on, that share of the traces sampled)."""
    off = tracing_on(ratio) if ratio is not None else None
    try:
        service = rt.Service("bench")
        service.add(rt.ApiEndpoint("orders", route="/orders", schema=Order))
        service.tap("orders.out", buffer_size=requests + 1)
        async with service.running():
            return await requests_per_second(rt.create_app(service), requests)
    finally:
        if off is not None:
            off()


async def main(requests: int, rounds: int, ratio: float | None = None) -> None:
    """Measure each app, best of the rounds."""
    apps: dict[str, App] = {
        "fastapi": fastapi_app(),
        "starlette": Starlette(routes=[Route("/orders", validate, methods=["POST"])]),
        "fastapi+route": fastapi_with_route(),
    }
    traced = ratio is not None
    runtimes = ["runtime", "runtime+tracing"] if traced else ["runtime"]
    results = dict.fromkeys([*apps, *runtimes], 0.0)
    for _ in range(rounds):
        for name, app in apps.items():
            results[name] = max(results[name], await requests_per_second(app, requests))
        for name in runtimes:
            rate = await runtime_rate(requests, None if name == "runtime" else ratio)
            results[name] = max(results[name], rate)
    for name, rate in results.items():
        print(f"{name:>15}: {rate:10,.0f} requests/s")
    print(f"runtime / fastapi: {results['runtime'] / results['fastapi']:5.2f}x")
    if traced:  # CPU per request, on against off
        ratio = results["runtime"] / results["runtime+tracing"]
        print(f"tracing on / off (CPU per request): {ratio:5.2f}x")


if __name__ == "__main__":
    args, ratio = ratio_argument(sys.argv[1:])
    anyio.run(
        main,
        int(args[0]) if args else 20_000,
        int(args[1]) if len(args) > 1 else 3,
        ratio,
    )
