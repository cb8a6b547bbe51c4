"""/ready and /health per dependency (issue #20): ``checks`` says, for the service,
its components, its buffers and each transport, whether it is ok and what is wrong."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import runtime
from runtime.status import dependency_checks

from tests.runtime.support import Gate, wait

pytestmark = pytest.mark.anyio


def client(service: runtime.Service) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=runtime.create_app(service))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def failing(checks: dict[str, Any]) -> dict[str, list[str]]:
    return {name: c["problems"] for name, c in checks.items() if not c["ok"]}


async def test_each_dependency_says_what_is_wrong() -> None:
    service = runtime.Service("svc")
    gate = service.add(Gate("gate"))
    inlet = service.inlet("gate.in", buffer_size=2)
    async with client(service) as http:
        before = (await http.get("/ready")).json()
        async with service.running():
            ready = await http.get("/ready")
            await inlet.send(0)
            await wait(gate.holding)
            inlet.send_nowait(1)
            inlet.send_nowait(2)
            saturated = await http.get("/ready")
            health = await http.get("/health")
            readiness = service.readiness()
            checks = dependency_checks(service)
            gate.release.set()

    assert failing(before["checks"]) == {"service": ["service is created"]}
    assert ready.status_code == 200
    body = ready.json()
    assert set(body["checks"]) >= {"service", "components", "buffers", "memory"}
    assert all(
        check == {"ok": True, "problems": []} for check in body["checks"].values()
    )
    assert saturated.status_code == 503
    expected = {"buffers": ["port gate.in is saturated (100% of its buffer used)"]}
    assert failing(saturated.json()["checks"]) == expected
    # /health answers 200 while it shows what is wrong
    assert health.status_code == 200
    assert failing(health.json()["checks"]) == expected
    # one truth: the problems are the readiness reasons
    assert [p for ps in failing(checks).values() for p in ps] == readiness


async def test_a_transport_that_cannot_carry_is_named() -> None:
    service = runtime.Service("svc")
    service.add(Gate("gate"))
    service.inlet("gate.in", buffer_size=2)
    async with service.running():
        # a carrier reporting what the Redis one reports when its server is gone
        service.carriers["redis"] = SimpleNamespace(  # type: ignore[assignment]
            problem="redis at 127.0.0.1:1 is unreachable", shared_storage=None
        )
        try:
            checks = dependency_checks(service)
            reasons = service.readiness()
        finally:
            del service.carriers["redis"]
    assert failing(checks) == {"redis": ["redis at 127.0.0.1:1 is unreachable"]}
    assert reasons == ["redis at 127.0.0.1:1 is unreachable"]
