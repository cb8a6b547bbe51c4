"""The SLIs an api_endpoint exposes (issue #20): requests answered by status, and how
long answering took, as the rules of ``ops/prometheus/rules.yml`` read them."""

from __future__ import annotations

import pytest
import runtime
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from tests.runtime.support import client_for

pytestmark = pytest.mark.anyio


class Order(BaseModel):
    order_id: str


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_answers_are_counted_by_status_and_timed() -> None:
    service = runtime.Service("shop")
    service.add(runtime.ApiEndpoint("orders", route="/orders", schema=Order))
    service.tap("orders.out")
    async with service.running(), client_for(service) as client:
        assert (await client.post("/orders", json={"order_id": "a"})).status_code == 202
        assert (await client.post("/orders", json={"order_id": "b"})).status_code == 202
        assert (await client.post("/orders", json={"nope": 1})).status_code == 422
        text = (await client.get("/metrics")).text

    samples = _samples(text)
    answered = "portwright_http_responses_total"
    assert samples[(answered, (("code", "202"), ("component", "orders")))] == 2
    assert samples[(answered, (("code", "422"), ("component", "orders")))] == 1
    count = "portwright_http_request_duration_seconds_count"
    assert samples[(count, (("component", "orders"),))] == 3
    inf = (("component", "orders"), ("le", "+Inf"))
    assert samples[("portwright_http_request_duration_seconds_bucket", inf)] == 3


async def test_a_request_while_not_accepting_counts_as_a_503() -> None:
    service = runtime.Service("shop")
    endpoint = service.add(runtime.ApiEndpoint("orders", route="/orders", schema=Order))
    service.tap("orders.out")
    async with service.running(), client_for(service) as client:
        endpoint.request_stop()
        response = await client.post("/orders", json={"order_id": "a"})
        text = (await client.get("/metrics")).text

    assert response.status_code == 503
    answered = "portwright_http_responses_total"
    assert _samples(text)[(answered, (("code", "503"), ("component", "orders")))] == 1
