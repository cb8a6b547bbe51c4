"""HTTP ingress: 202 with an id, 413 (declared and chunked), 422, 503, OpenAPI."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
import runtime
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.routing import Route

from tests.runtime.support import Gate, client_for, wait

pytestmark = pytest.mark.anyio


class Address(BaseModel):
    city: str


class Order(BaseModel):
    order_id: str = Field(max_length=8)
    email: str
    amount: float = Field(gt=0)
    ship_to: Address | None = None


ORDER = {"order_id": "o-1", "email": "a@example.com", "amount": 9.5}


def build(**endpoint: Any) -> tuple[runtime.Service, runtime.Tap]:
    service = runtime.Service("shop", pii_fields={"email"})
    options = {"route": "/orders", "schema": Order, "max_payload_kb": 1} | endpoint
    service.add(runtime.ApiEndpoint("orders", **options))
    return service, service.tap("orders.out")


async def test_an_accepted_body_answers_202_with_the_message_id() -> None:
    service, tap = build()
    async with service.running(), client_for(service) as client:
        response = await client.post(
            "/orders", json=ORDER, headers={"x-correlation-id": "checkout-42"}
        )

    assert response.status_code == 202
    message_id = response.json()["id"]
    assert uuid.UUID(message_id).version == 7
    assert response.headers["x-correlation-id"] == "checkout-42"
    (envelope,) = tap.envelopes
    assert envelope.item == Order(**ORDER)
    assert (envelope.id, envelope.correlation_id) == (message_id, "checkout-42")


async def test_a_correlation_id_that_is_not_an_id_is_replaced() -> None:
    service, tap = build()
    async with service.running(), client_for(service) as client:
        response = await client.post(
            "/orders", json=ORDER, headers={"x-correlation-id": "x\r\nlevel=fake"}
        )

    assert response.headers["x-correlation-id"] == response.json()["id"]
    assert tap.envelopes[0].correlation_id == response.json()["id"]


async def test_a_body_that_does_not_match_answers_422_with_the_field_errors() -> None:
    service, tap = build()
    bad = {"order_id": "much-too-long", "email": "b@example.com", "amount": -1}
    async with service.running(), client_for(service) as client:
        response = await client.post("/orders", json=bad)
        broken = await client.post(
            "/orders",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )

    assert response.status_code == 422
    errors = response.json()["detail"]
    assert {tuple(e["loc"]) for e in errors} == {
        ("body", "order_id"),
        ("body", "amount"),
    }
    assert all("input" not in e for e in errors)  # never echoes what was sent
    assert "b@example.com" not in response.text
    assert broken.status_code == 422
    assert broken.json()["detail"][0]["type"] == "json_invalid"
    assert tap.items == []


async def test_a_declared_length_over_the_cap_answers_413_unread() -> None:
    service, tap = build(max_payload_kb=1)
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(4):
            pulled += 1
            yield b" " * 1024

    async with service.running(), client_for(service) as client:
        response = await client.post(
            "/orders", content=body(), headers={"content-length": str(4 * 1024)}
        )

    assert response.status_code == 413
    assert pulled == 0
    assert tap.items == []


async def test_a_chunked_body_is_cut_off_at_the_cap_with_413() -> None:
    service, tap = build(max_payload_kb=4)
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(1000):
            pulled += 1
            yield b" " * 1024

    async with service.running(), client_for(service) as client:
        response = await client.post("/orders", content=body())

    assert response.status_code == 413
    assert response.json() == {
        "error": "payload_too_large",
        "detail": "body exceeds 4 KiB",
        "correlation_id": response.headers["x-correlation-id"],
    }
    assert pulled <= 6  # stopped reading at the cap, not after 1000 KiB
    assert tap.items == []


async def test_a_chunked_body_under_the_cap_is_accepted() -> None:
    service, tap = build(max_payload_kb=4)
    payload = httpx.Request("POST", "/", json=ORDER).content

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 10):
            yield payload[start : start + 10]

    async with service.running(), client_for(service) as client:
        response = await client.post(
            "/orders", content=body(), headers={"content-type": "application/json"}
        )

    assert response.status_code == 202
    assert tap.items == [Order(**ORDER)]


@pytest.mark.parametrize("length", [b"lots", "\u00b2".encode("latin-1"), b"-1"])
async def test_a_malformed_content_length_answers_400(length: bytes) -> None:
    service, _ = build()
    async with service.running(), client_for(service) as client:
        response = await client.post(
            "/orders", content=b"{}", headers={"content-length": length}
        )

    assert response.status_code == 400


async def test_ingress_answers_503_while_the_service_is_not_running() -> None:
    service, tap = build(timeout_ms=2500)
    async with client_for(service) as client:
        before = await client.post("/orders", json=ORDER)
        async with service.running():
            service.stop()
            during = await client.post("/orders", json=ORDER)

    for response in (before, during):
        assert response.status_code == 503
        assert response.headers["retry-after"] == "3"  # ceil(2.5 s)
    assert tap.items == []


async def test_ingress_waits_up_to_the_timeout_for_room() -> None:
    service = runtime.Service("shop")
    service.add(runtime.ApiEndpoint("orders", route="/orders", schema=Order))
    gate = service.add(Gate("gate", inputs={"in": Order}))
    service.connect("orders.out", "gate.in", buffer_size=1)
    async with service.running(), client_for(service) as client:
        await client.post("/orders", json=ORDER)
        await wait(gate.holding)
        await client.post("/orders", json=ORDER)  # fills the buffer
        async with anyio.create_task_group() as group:
            responses: list[httpx.Response] = []

            async def post() -> None:
                responses.append(await client.post("/orders", json=ORDER))

            group.start_soon(post)
            await anyio.sleep(0.05)  # the request is waiting for room now
            assert responses == []
            gate.release.set()

    assert responses[0].status_code == 202
    assert len(gate.items) == 3
    assert service.metrics.snapshot()["orders"]["out"]["blocked_seconds"] > 0.04


async def test_openapi_documents_the_body_schema() -> None:
    service, _ = build()
    async with client_for(service) as client:
        spec = (await client.get("/openapi.json")).json()

    operation = spec["paths"]["/orders"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/Order"}
    schemas = spec["components"]["schemas"]
    assert set(schemas["Order"]["required"]) == {"order_id", "email", "amount"}
    assert "Address" in schemas  # nested models are registered too
    assert {"202", "413", "422", "503"} <= set(operation["responses"])


def test_requests_take_the_plain_route_and_openapi_the_documented_one() -> None:
    # FastAPI's request handling costs more than the whole ingest: a plain
    # Starlette route in front serves it (see app.py).
    service, _ = build()
    routes = [
        r for r in runtime.create_app(service).router.routes if r.path == "/orders"
    ]

    assert [type(r) for r in routes] == [Route, APIRoute]
    endpoint = service.endpoints[0]
    assert routes[0].endpoint.endpoint is endpoint  # an ASGI app around it
    assert routes[1].endpoint == endpoint.handle


def test_endpoints_refuse_impossible_options() -> None:
    with pytest.raises(runtime.WiringError, match="cannot carry a body"):
        runtime.ApiEndpoint("e", route="/x", schema=Order, method="GET")
    with pytest.raises(runtime.WiringError, match="must start with /"):
        runtime.ApiEndpoint("e", route="x", schema=Order)
    service = runtime.Service("shop")
    service.add(runtime.ApiEndpoint("a", route="/x", schema=Order))
    with pytest.raises(runtime.WiringError, match="already served"):
        service.add(runtime.ApiEndpoint("b", route="/x", schema=Order))


@pytest.mark.parametrize(
    "headers",
    [{}, {"content-type": "text/plain"}, {"content-type": "application/x-json-ish"}],
    ids=["none", "text", "not-json"],
)
async def test_a_body_not_sent_as_json_is_415(headers: dict[str, str]) -> None:
    service, tap = build()
    async with service.running(), client_for(service) as client:
        response = await client.post(
            "/orders", content=b'{"order_id": "o-1"}', headers=headers
        )

    assert response.status_code == 415, response.text
    assert response.json()["error"] == "unsupported_media_type"
    assert tap.envelopes == []


@pytest.mark.parametrize(
    "media",
    ["application/json; charset=utf-8", "Application/JSON", "application/order+json"],
)
async def test_json_content_types_with_parameters_or_suffix_are_accepted(
    media: str,
) -> None:
    service, tap = build()
    async with service.running(), client_for(service) as client:
        response = await client.post(
            "/orders",
            content=json.dumps(ORDER).encode(),
            headers={"content-type": media},
        )

    assert response.status_code == 202, response.text
    assert len(tap.envelopes) == 1


async def test_openapi_describes_each_operation_as_given_and_documents_415() -> None:
    service = runtime.Service("shop")
    service.add(runtime.ApiEndpoint("orders", route="/orders", schema=Order))
    service.add(runtime.ApiEndpoint("refunds", route="/refunds", schema=Order))
    app = runtime.create_app(
        service,
        description="A shop.",
        endpoint_descriptions={"orders": "Takes an order to score."},
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        spec = (await client.get("/openapi.json")).json()

    assert spec["info"]["description"] == "A shop."
    orders = spec["paths"]["/orders"]["post"]
    assert orders["description"] == "Takes an order to score."
    assert spec["paths"]["/refunds"]["post"]["description"] == "A shop."
    assert "415" in orders["responses"]
    assert "The route" not in json.dumps(spec)  # no internal docstring leaks
