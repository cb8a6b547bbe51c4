"""One error shape for every answer; correlation ids; who the client is."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import httpx
import pytest
import runtime
from pydantic import BaseModel

from tests.runtime.support import client_for

pytestmark = pytest.mark.anyio

UUID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)


class Order(BaseModel):
    order_id: str
    email: str


ORDER = {"order_id": "o-1", "email": "ann@example.com"}


def build(**settings: Any) -> runtime.Service:
    service = runtime.Service(
        "shop",
        pii_fields={"email"},
        settings=runtime.ServiceSettings(**settings),
    )
    service.add(runtime.ApiEndpoint("orders", route="/orders", schema=Order))
    service.tap("orders.out")
    return service


def assert_problem(response: httpx.Response, status: int, error: str) -> Any:
    """The one error shape, with the correlation id in the body and the header."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail", "correlation_id"}
    assert body["error"] == error
    assert body["correlation_id"] == response.headers["x-correlation-id"]
    return body


async def test_every_refusal_has_the_same_shape() -> None:
    service = build(timeout_overrides={"orders": 1})
    async with client_for(service) as client:
        stopped = await client.post("/orders", json=ORDER)  # not running yet: 503
        async with service.running():
            bad_length = await client.post(
                "/orders", content=b"{}", headers={"content-length": "lots"}
            )
            too_large = await client.post("/orders", content=b" " * 70_000)
            invalid = await client.post("/orders", json={"order_id": 5})
            unknown = await client.get("/nowhere")
            wrong_method = await client.get("/orders")

    assert_problem(stopped, 503, "unavailable")
    assert stopped.headers["retry-after"] == "1"
    assert_problem(bad_length, 400, "bad_request")
    assert assert_problem(too_large, 413, "payload_too_large")["detail"] == (
        "body exceeds 64 KiB"
    )
    errors = assert_problem(invalid, 422, "invalid_body")["detail"]
    assert {tuple(e["loc"]) for e in errors} == {
        ("body", "order_id"),
        ("body", "email"),
    }
    assert all("input" not in e for e in errors)
    assert_problem(unknown, 404, "not_found")
    assert_problem(wrong_method, 405, "method_not_allowed")
    assert wrong_method.headers["allow"] == "POST"


async def test_not_ready_is_an_error_in_the_same_shape_with_its_reasons() -> None:
    service = build()
    async with client_for(service) as client:  # not started: not ready
        response = await client.get("/ready", headers={"x-correlation-id": "probe-7"})

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    body = response.json()
    assert body["status"] == "not ready" and body["reasons"]
    assert body["error"] == "not_ready"
    assert body["detail"] == "; ".join(body["reasons"])
    assert body["correlation_id"] == response.headers["x-correlation-id"] == "probe-7"


async def test_a_crash_is_a_plain_500_and_its_details_go_to_the_log_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = build()
    endpoint = service.endpoints[0]

    def explode(body: bytes) -> Any:
        raise RuntimeError("lookup failed for email=ann@example.com in /srv/secret.db")

    endpoint._validate_json = explode  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="shop"):
        async with service.running(), client_for(service) as client:
            response = await client.post(
                "/orders", json=ORDER, headers={"x-correlation-id": "trace-500"}
            )

    body = assert_problem(response, 500, "internal_error")
    assert body["correlation_id"] == "trace-500"
    for leak in ("RuntimeError", "secret.db", "ann@example.com", "Traceback"):
        assert leak not in response.text
    (record,) = [r for r in caplog.records if r.name == "shop"]
    line = json.loads(runtime.JsonFormatter().format(record))
    assert line["correlation_id"] == "trace-500"
    assert "RuntimeError: lookup failed for email=***" in line["error"]
    assert "ann@example.com" not in json.dumps(line)


async def test_the_correlation_id_goes_round_trip() -> None:
    service = build()
    tap = service.tap("orders.out")
    async with service.running(), client_for(service) as client:
        kept = await client.post(
            "/orders", json=ORDER, headers={"x-correlation-id": "checkout:42.a_b-c"}
        )
        made = await client.post("/orders", json=ORDER)
        refused = await client.post(
            "/orders", json={}, headers={"x-correlation-id": "x" * 129}
        )
        health = await client.get("/health", headers={"x-correlation-id": "probe-1"})

    assert kept.headers["x-correlation-id"] == "checkout:42.a_b-c"
    assert tap.envelopes[0].correlation_id == "checkout:42.a_b-c"
    # none sent: the message's own id starts the conversation
    assert made.headers["x-correlation-id"] == made.json()["id"]
    assert tap.envelopes[1].correlation_id == made.json()["id"]
    # too long: replaced by a new id, in the body and the header alike
    body = assert_problem(refused, 422, "invalid_body")
    assert UUID.fullmatch(body["correlation_id"])
    assert health.headers["x-correlation-id"] == "probe-1"


@pytest.mark.parametrize(
    "sent",
    ["", "a b", "x\tlevel=fake", "é", "id;drop", "x" * 129, "{{ 7 * 7 }}"],
)
async def test_a_correlation_id_that_is_not_an_id_is_not_used(sent: str) -> None:
    service = build()
    tap = service.tap("orders.out")
    async with service.running(), client_for(service) as client:
        response = await client.post(
            "/orders",
            json=ORDER,
            headers=[(b"x-correlation-id", sent.encode("utf-8"))],
        )

    assert response.status_code == 202
    assert response.headers["x-correlation-id"] == response.json()["id"]
    assert tap.envelopes[0].correlation_id == response.json()["id"]


async def refused_client(
    caplog: pytest.LogCaptureFixture, peer: str, forwarded: str | None, **settings: Any
) -> str:
    """The client address the service logs for a refused request."""
    service = build(**settings)
    headers = {} if forwarded is None else {"x-forwarded-for": forwarded}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="shop"):
        async with service.running(), client_for(service, peer) as client:
            response = await client.post("/orders", json={}, headers=headers)
    assert response.status_code == 422
    (record,) = [r for r in caplog.records if r.getMessage().startswith("refused")]
    line = json.loads(runtime.JsonFormatter().format(record))
    assert line["correlation_id"] == response.headers["x-correlation-id"]
    return str(line["client"])


async def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spoofed = "203.0.113.9"
    assert await refused_client(caplog, "198.51.100.7", spoofed) == "198.51.100.7"
    # a proxy that is not trusted is the client, whatever it forwards
    trusted = {"trusted_proxies": ("10.0.0.0/8",)}
    assert await refused_client(caplog, "192.0.2.1", spoofed, **trusted) == "192.0.2.1"
    assert await refused_client(caplog, "10.1.2.3", spoofed, **trusted) == spoofed


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        # the client's own claim on the left is not believed: the trusted proxy
        # appended the address it saw
        ("1.1.1.1, 203.0.113.9", "203.0.113.9"),
        # two trusted hops are walked through
        ("203.0.113.9, 10.9.9.9", "203.0.113.9"),
        # garbage stops the walk at the last address that could be read
        ("203.0.113.9, not-an-ip", "10.1.2.3"),
        ("2001:db8::1", "2001:db8::1"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("", "10.1.2.3"),
    ],
)
def test_the_client_is_the_last_address_a_trusted_proxy_handed_on(
    forwarded: str, client: str
) -> None:
    proxies = runtime.TrustedProxies(["10.0.0.0/8"])
    assert proxies.client("10.1.2.3", forwarded) == client
    assert runtime.TrustedProxies().client("10.1.2.3", forwarded) == "10.1.2.3"


def test_trusted_proxies_and_other_lists_come_from_comma_separated_variables() -> None:
    settings = runtime.ServiceSettings.from_env(
        "shop", {"SHOP_TRUSTED_PROXIES": "10.0.0.0/8, 2001:db8::/32"}
    )
    assert settings.trusted_proxies == ("10.0.0.0/8", "2001:db8::/32")
    with pytest.raises(runtime.SettingsError, match="SHOP_TRUSTED_PROXIES"):
        runtime.ServiceSettings.from_env("shop", {"SHOP_TRUSTED_PROXIES": "proxy"})
