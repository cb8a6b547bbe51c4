"""The status page (issue #20): one HTML page, the numbers as JSON, blueprint text
escaped where it lands."""

from __future__ import annotations

import json
import re

import httpx
import pytest
import runtime
from pydantic import BaseModel
from runtime.status import StatusPage, script_json

from tests.runtime.support import Numbers, Recorder, client_for

pytestmark = pytest.mark.anyio

HOSTILE = "</script><script>alert(1)</script><img src=x onerror=alert(2)> & co"


class Order(BaseModel):
    order_id: str


def test_json_in_a_script_element_cannot_close_it() -> None:
    text = script_json({"description": HOSTILE})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"description": HOSTILE}


async def test_the_page_escapes_the_description_and_lists_every_port() -> None:
    service = runtime.Service("shop")
    service.add(runtime.ApiEndpoint("orders", route="/orders", schema=Order))
    service.add(Recorder("store"))
    service.connect("orders.out", "store.in")
    app = runtime.create_app(service, description=HOSTILE)
    transport = httpx.ASGITransport(app=app)
    async with (
        service.running(),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        answer = await client.get("/status")
    assert answer.headers["content-type"].startswith("text/html")
    page = answer.text
    assert "<img" not in page and "<script>alert" not in page
    assert html_text(HOSTILE) in page
    for ident in ("p-orders-out", "n-orders-out", "p-store-in", "n-store-in"):
        assert f'id="{ident}"' in page
    assert "http://" not in page and "https://" not in page  # nothing from a CDN


def html_text(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#x27;")
    )


async def test_numbers_give_each_port_its_rate_utilization_and_age() -> None:
    service = runtime.Service("count")
    service.add(Numbers("numbers", 50))
    service.add(Recorder("sink"))
    service.connect("numbers.out", "sink.in", buffer_size=100)
    page = StatusPage(service)
    first = page.numbers(now=100.0)
    await service.run()
    assert page.numbers(now=100.2) is first  # within half a second: the same numbers
    second = page.numbers(now=102.0)
    sink = second["components"]["sink"]["ports"]["in"]
    assert sink["messages"] == 50
    assert sink["rate"] == 25.0  # 50 messages over 2 s
    assert sink["utilization"] == 0.0
    assert sink["age_p99"] is not None and sink["age_p50"] is not None
    assert second["components"]["numbers"]["ports"]["out"]["rate"] == 25.0
    third = page.numbers(now=104.0)
    assert third["components"]["sink"]["ports"]["in"]["rate"] == 0.0
    assert third["components"]["sink"]["ports"]["in"]["age_p99"] is None


async def test_status_routes_are_not_in_openapi() -> None:
    service = runtime.Service("shop")
    service.add(runtime.ApiEndpoint("orders", route="/orders", schema=Order))
    service.tap("orders.out")
    async with service.running(), client_for(service) as client:
        paths = (await client.get("/openapi.json")).json()["paths"]
        numbers = (await client.get("/status.json")).json()
    assert not any(re.match(r"/status", path) for path in paths)
    assert numbers["components"]["orders"]["ports"]["out"]["direction"] == "out"
