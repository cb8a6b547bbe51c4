"""Ingest requests answered before FastAPI's middleware, and when they are not.

``ServiceApp`` hands a request for an ingest route straight to the route while
nothing else would see it. These tests check that both ways give the same answers,
that middleware a user adds, FastAPI's own telemetry and a handler a user
registers are never bypassed, and which way a request took: FastAPI builds its
middleware stack on the first request that goes through it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import runtime
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

pytestmark = pytest.mark.anyio

KEY = "test-key-" + "k" * 32  # made up here; never a real secret


class Order(BaseModel):
    order_id: str
    email: str


ORDER = {"order_id": "o-1", "email": "ann@example.com"}


def build(**endpoint: Any) -> tuple[runtime.Service, runtime.Tap]:
    service = runtime.Service(
        "shop",
        pii_fields={"email"},
        settings=runtime.ServiceSettings(api_keys=(runtime.api_key_digest(KEY),)),
    )
    options = {"route": "/orders", "schema": Order, "max_payload_kb": 1} | endpoint
    service.add(runtime.ApiEndpoint("orders", **options))
    return service, service.tap("orders.out")


class Seen:
    """A user's ASGI middleware that records every request it sees."""

    def __init__(self, app: ASGIApp, paths: list[str]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.paths.append(f"{scope['method']} {scope['path']}")
        await self.app(scope, receive, send)


@asynccontextmanager
async def client_for(
    app: FastAPI, **transport: Any
) -> AsyncIterator[httpx.AsyncClient]:
    asgi = httpx.ASGITransport(app=app, **transport)
    async with httpx.AsyncClient(transport=asgi, base_url="http://test") as client:
        yield client


def full_stack(app: FastAPI) -> bool:
    """Whether a request has gone through FastAPI's middleware stack."""
    return app.middleware_stack is not None


@pytest.fixture(params=["direct", "middleware"])
def way(request: pytest.FixtureRequest) -> str:
    """Answered before FastAPI's middleware, or through a user's middleware."""
    return str(request.param)


def app_for(service: runtime.Service, way: str) -> tuple[FastAPI, list[str]]:
    app = runtime.create_app(service)
    seen: list[str] = []
    if way == "middleware":
        app.add_middleware(Seen, paths=seen)
    return app, seen


async def parts() -> AsyncIterator[bytes]:
    """A chunked body of 2,400 bytes (no Content-Length)."""
    for _ in range(4):
        yield b" " * 600


async def test_both_ways_answer_alike(way: str) -> None:
    service, tap = build(auth="api_key")
    app, seen = app_for(service, way)
    key = {"x-api-key": KEY}
    async with client_for(app) as client:
        stopped = await client.post("/orders", json=ORDER, headers=key)
        async with service.running():
            ok = await client.post(
                "/orders", json=ORDER, headers={**key, "x-correlation-id": "c-1"}
            )
            made = await client.post("/orders", json=ORDER, headers=key)
            unauthorized = await client.post("/orders", json=ORDER)
            bad_length = await client.post(
                "/orders", content=b"{}", headers={**key, "content-length": "x"}
            )
            declared = await client.post("/orders", content=b" " * 2000, headers=key)
            chunked = await client.post("/orders", content=parts(), headers=key)
            invalid = await client.post(
                "/orders",
                json={"order_id": 5},
                headers={**key, "x-correlation-id": "c-2"},
            )

    assert ok.status_code == 202
    assert ok.headers["content-type"] == "application/json"
    assert ok.headers["x-correlation-id"] == "c-1"
    assert [e.correlation_id for e in tap.envelopes] == ["c-1", made.json()["id"]]
    assert ok.json() == {"id": tap.envelopes[0].id}
    assert made.headers["x-correlation-id"] == made.json()["id"]
    refused = {
        503: stopped,
        401: unauthorized,
        400: bad_length,
        413: declared,
        422: invalid,
    }
    for status, response in refused.items():
        assert response.status_code == status, response.text
        body = response.json()
        assert set(body) == {"error", "detail", "correlation_id"}
        assert body["correlation_id"] == response.headers["x-correlation-id"]
    assert chunked.status_code == 413
    assert stopped.headers["retry-after"] == "2"  # ceil(timeout_ms 2000)
    assert "www-authenticate" in unauthorized.headers
    assert invalid.json()["correlation_id"] == "c-2"
    assert [tuple(e["loc"]) for e in invalid.json()["detail"]] == [
        ("body", "order_id"),
        ("body", "email"),
    ]
    assert len(tap.envelopes) == 2
    if way == "direct":
        assert not full_stack(app) and seen == []
    else:  # the user's middleware saw every request
        assert full_stack(app) and seen == ["POST /orders"] * 8


async def test_middleware_added_with_the_decorator_sees_ingest_requests() -> None:
    service, _ = build()
    app = runtime.create_app(service)
    seen: list[str] = []

    @app.middleware("http")
    async def record(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        seen.append(request.url.path)
        response = await call_next(request)
        response.headers["x-seen"] = "yes"
        return response

    async with service.running(), client_for(app) as client:
        response = await client.post("/orders", json=ORDER)

    assert response.status_code == 202
    assert response.headers["x-seen"] == "yes"
    assert seen == ["/orders"]


async def test_a_handler_the_user_registers_answers_refusals_both_ways(
    way: str,
) -> None:
    service, _ = build()
    app, _ = app_for(service, way)

    async def teapot(request: Request, exc: Exception) -> Response:
        return JSONResponse({"why": type(exc).__name__}, status_code=418)

    app.add_exception_handler(runtime.InvalidBody, teapot)
    async with service.running(), client_for(app) as client:
        invalid = await client.post(
            "/orders", json={}, headers={"x-correlation-id": "c-9"}
        )
        too_large = await client.post("/orders", content=b" " * 2000)

    assert invalid.status_code == 418
    assert invalid.json() == {"why": "InvalidBody"}
    # the request context still adds the correlation id the handler left out
    assert invalid.headers["x-correlation-id"] == "c-9"
    assert too_large.status_code == 413  # other errors keep the runtime's handler
    assert full_stack(app) == (way == "middleware")


class Telemetry:
    """Stands in for FastAPI's native telemetry, switched on."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def enabled(self) -> bool:
        return True

    async def __call__(
        self, *, app: ASGIApp, scope: Scope, receive: Receive, send: Send, **_: Any
    ) -> None:
        self.paths.append(scope["path"])
        await app(scope, receive, send)


async def test_fastapi_telemetry_sees_ingest_requests_when_it_is_on() -> None:
    service, tap = build()
    app = runtime.create_app(service)
    assert hasattr(app, "_native_telemetry"), "FastAPI's telemetry moved: see app.py"
    telemetry = Telemetry()
    app._native_telemetry = telemetry  # type: ignore[attr-defined]
    async with service.running(), client_for(app) as client:
        response = await client.post("/orders", json=ORDER)

    assert response.status_code == 202
    assert telemetry.paths == ["/orders"]
    assert len(tap.envelopes) == 1


async def test_a_root_path_takes_the_full_stack() -> None:
    service, tap = build()
    app = runtime.create_app(service)
    async with service.running(), client_for(app, root_path="/api") as client:
        response = await client.post("/api/orders", json=ORDER)

    assert response.status_code == 202
    assert full_stack(app)
    assert len(tap.envelopes) == 1


async def call(app: FastAPI, messages: list[Message]) -> list[Message]:
    """Call ``app`` with a POST /orders whose body arrives as ``messages``."""
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
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 4321),
        "server": ("test", 80),
    }
    pending = list(messages)
    sent: list[Message] = []

    async def receive() -> Message:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_a_body_in_several_parts_is_joined(way: str) -> None:
    service, tap = build()
    app, _ = app_for(service, way)
    body = json.dumps(ORDER).encode()
    parts = [body[:5], b"", body[5:20], body[20:]]
    messages: list[Message] = [
        {"type": "http.request", "body": part, "more_body": True} for part in parts
    ]
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    async with service.running():
        sent = await call(app, messages)

    assert sent[0]["status"] == 202
    assert tap.envelopes[0].item == Order(**ORDER)


async def test_a_client_that_leaves_mid_body_gets_no_answer_and_sends_nothing(
    way: str, caplog: pytest.LogCaptureFixture
) -> None:
    service, tap = build()
    app, _ = app_for(service, way)
    half: list[Message] = [
        {"type": "http.request", "body": b'{"order', "more_body": True}
    ]
    with caplog.at_level(logging.INFO, logger="shop"):
        async with service.running():
            sent = await call(app, half)  # then http.disconnect

    assert sent == []
    assert tap.envelopes == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_crash_is_a_plain_500_both_ways(
    way: str, caplog: pytest.LogCaptureFixture
) -> None:
    service, _ = build()
    app, _ = app_for(service, way)

    def explode(body: bytes) -> Any:
        raise RuntimeError("no disk for email=ann@example.com")

    service.endpoints[0]._validate_json = explode  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="shop"):
        async with service.running(), client_for(app) as client:
            response = await client.post(
                "/orders", json=ORDER, headers={"x-correlation-id": "c-5"}
            )

    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "detail": "the service failed to handle the request",
        "correlation_id": "c-5",
    }
    assert response.headers["x-correlation-id"] == "c-5"
    (record,) = [r for r in caplog.records if r.name == "shop"]
    assert "ann@example.com" not in runtime.JsonFormatter().format(record)
