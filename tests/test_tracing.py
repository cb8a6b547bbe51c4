"""Tracing (runtime/tracing.py): one trace from the HTTP request through every hop.

In process over memory connections, with the SDK's in-memory exporter; and across
processes over Redis, each process writing its finished spans to a file of its own
(the console exporter, ``PORTWRIGHT_TRACES_FILE``), read back at the end.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import runtime
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanContext, StatusCode
from pydantic import BaseModel
from runtime import tracing
from runtime.redis import wire

from generator.generation import generate
from tests.redisenv import delete_prefixed, redis_url, unique_prefix
from tests.runtime.support import Recorder, client_for
from tests.test_redis_example import (
    BLUEPRINT,
    BY_RISK,
    PACKAGE,
    SCORE,
    SINK,
    Processes,
    environment,
    order,
)

SECRET = "ann.secret@example.com"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for the test, into memory; off again after it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.configure("shop", tracer=provider.get_tracer("test"))
    yield exporter
    tracing.reset()


# -- on and off -------------------------------------------------------------------


def test_tracing_is_off_unless_an_exporter_is_named() -> None:
    try:
        assert tracing.configure("shop", {}) is False
        assert tracing.TRACER is None
        assert tracing.configure("shop", {"OTEL_TRACES_EXPORTER": "none"}) is False
        disabled = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}
        assert tracing.configure("shop", disabled) is False
        assert tracing.configure("shop", {"OTEL_TRACES_EXPORTER": "otlp"}) is True
        assert tracing.TRACER is not None
    finally:
        tracing.reset()
    assert tracing.TRACER is None


def test_an_unknown_exporter_is_refused_naming_the_variable() -> None:
    with pytest.raises(tracing.TracingError, match="OTEL_TRACES_EXPORTER: 'zipkin'"):
        tracing.configure("shop", {"OTEL_TRACES_EXPORTER": "zipkin"})
    assert tracing.TRACER is None


def test_the_wire_carries_the_trace_context_only_when_tracing_is_on(
    spans: InMemorySpanExporter,
) -> None:
    tracer = tracing.TRACER
    assert tracer is not None
    sent = runtime.Envelope.start(Order(order_id="o-1", email=SECRET), 1.0)
    with tracer.start_as_current_span("made") as span:
        tracing.made(sent)
    document = json.loads(wire.encode(sent, 1.0))
    trace_id = f"{span.get_span_context().trace_id:032x}"
    assert document["traceparent"].split("-")[1] == trace_id

    _, received = wire.decode(wire.encode(sent, 1.0), Order)
    context = tracing.context_of(received)
    assert context is not None
    with tracer.start_as_current_span("handled", context=context) as child:
        pass
    assert child.get_span_context().trace_id == span.get_span_context().trace_id

    tracing.reset()  # off: the same message goes without it
    assert "traceparent" not in json.loads(wire.encode(sent, 1.0))


def test_the_memory_keeps_the_latest_messages_and_forgets_older_ones() -> None:
    memory = tracing._Remembered()
    span = SpanContext(trace_id=1, span_id=2, is_remote=False)
    limit = tracing._LIMIT
    for seq in range(2 * limit + 10):
        memory.put(seq, span)

    assert memory.get(0) is None  # forgotten
    assert all(memory.get(seq) is span for seq in range(limit + 10, 2 * limit + 10))
    assert limit <= len(memory) <= 2 * limit


# -- in process, over memory ------------------------------------------------------


class Order(BaseModel):
    order_id: str
    email: str


class Scored(BaseModel):
    order_id: str
    email: str
    risk: float


class Score(runtime.Transformer):
    def transform(self, item: Order) -> Scored:
        return Scored(**item.model_dump(), risk=0.5)


class BatchScore(runtime.Transformer):
    """Batched: a list of orders in, a list of scored ones out."""

    def transform(self, item: list[Order]) -> list[Scored]:
        return [Scored(**order.model_dump(), risk=0.5) for order in item]


class Keep(runtime.Filter):
    async def keep(self, item: Scored) -> bool:
        await anyio.lowlevel.checkpoint()
        return True


def memory_service(**score: Any) -> tuple[runtime.Service, Recorder]:
    service = runtime.Service("shop", pii_fields={"email"})
    service.add(runtime.ApiEndpoint("orders", route="/orders", schema=Order))
    service.add(Score("score", **score))
    service.add(Keep("keep"))
    ledger = service.add(Recorder("ledger"))
    service.connect("orders.out", "score.in")
    service.connect("score.out", "keep.in")
    service.connect("keep.out", "ledger.in")
    return service, ledger


@pytest.mark.anyio
async def test_a_request_is_one_trace_through_every_component(
    spans: InMemorySpanExporter,
) -> None:
    service, ledger = memory_service()
    async with client_for(service) as client, service.running():
        answer = await client.post("/orders", json={"order_id": "o-1", "email": SECRET})
        with anyio.fail_after(10):
            while not ledger.items:
                await anyio.sleep(0.01)

    assert answer.status_code == 202
    finished = spans.get_finished_spans()
    by_component: dict[str, Any] = {
        str((span.attributes or {})["portwright.component"]): span for span in finished
    }
    assert set(by_component) == {"orders", "score", "keep", "ledger"}
    request = by_component["orders"]
    assert request.name == "POST /orders" and request.parent is None
    assert_chain(by_component, ["orders", "score", "keep", "ledger"])
    score = by_component["score"]
    assert score.attributes["portwright.port"] == "score.in"
    assert score.attributes["messaging.message.id"] == answer.json()["id"]
    # the transformer made a new message: the filter's span names that one
    assert by_component["keep"].attributes["messaging.message.id"] != (
        answer.json()["id"]
    )
    assert SECRET not in dump(finished)


@pytest.mark.parametrize(
    "window", [{"concurrency": 4}, {"concurrency": 2, "blocking": True}]
)
@pytest.mark.anyio
async def test_a_component_in_a_concurrency_window_has_its_span_in_the_trace(
    spans: InMemorySpanExporter, window: dict[str, Any]
) -> None:
    service, ledger = memory_service(**window)
    async with client_for(service) as client, service.running():
        for number in range(3):
            await client.post(
                "/orders", json={"order_id": f"o-{number}", "email": SECRET}
            )
        with anyio.fail_after(10):
            while len(ledger.items) < 3:
                await anyio.sleep(0.01)

    finished = spans.get_finished_spans()
    traces: dict[int, dict[str, Any]] = {}
    for span in finished:
        component = str((span.attributes or {})["portwright.component"])
        traces.setdefault(span.context.trace_id, {})[component] = span
    assert len(traces) == 3
    for by_component in traces.values():
        assert set(by_component) == {"orders", "score", "keep", "ledger"}
        assert_chain(by_component, ["orders", "score", "keep", "ledger"])


@pytest.mark.anyio
async def test_a_component_whose_loop_is_not_traced_keeps_the_trace_going(
    spans: InMemorySpanExporter,
) -> None:
    service = runtime.Service("shop", pii_fields={"email"})
    service.add(runtime.ApiEndpoint("orders", route="/orders", schema=Order))
    service.add(BatchScore("score", batch=runtime.Batch(1, 3600.0)))  # no span
    service.add(Keep("keep"))
    ledger = service.add(Recorder("ledger"))
    service.connect("orders.out", "score.in")
    service.connect("score.out", "keep.in")
    service.connect("keep.out", "ledger.in")
    async with client_for(service) as client, service.running():
        await client.post("/orders", json={"order_id": "o-1", "email": SECRET})
        with anyio.fail_after(10):
            while not ledger.items:
                await anyio.sleep(0.01)

    finished = spans.get_finished_spans()
    by_component: dict[str, Any] = {
        str((span.attributes or {})["portwright.component"]): span for span in finished
    }
    assert set(by_component) == {"orders", "keep", "ledger"}
    assert_chain(by_component, ["orders", "keep", "ledger"])


class Refuse(runtime.Transformer):
    def transform(self, item: Order) -> Scored:
        raise ValueError(f"cannot score the order of {item.email}")


@pytest.mark.anyio
async def test_a_failure_is_recorded_on_the_component_span(
    spans: InMemorySpanExporter,
) -> None:
    service = runtime.Service("shop", pii_fields={"email"})
    service.add(runtime.ApiEndpoint("orders", route="/orders", schema=Order))
    score = service.add(Refuse("score"))
    service.add(Recorder("ledger"))
    service.connect("orders.out", "score.in")
    service.connect("score.out", "ledger.in")
    async with client_for(service) as client, service.running():
        await client.post("/orders", json={"order_id": "o-1", "email": SECRET})
        with anyio.fail_after(10):
            while not score.inputs["in"].errors:
                await anyio.sleep(0.01)

    (failed,) = [
        span
        for span in spans.get_finished_spans()
        if (span.attributes or {}).get("portwright.component") == "score"
    ]
    assert failed.status.status_code is StatusCode.ERROR
    assert [event.name for event in failed.events] == ["exception"]
    assert failed.events[0].attributes == {"exception.type": "builtins.ValueError"}
    assert SECRET not in dump(spans.get_finished_spans())


@pytest.mark.anyio
async def test_a_request_continues_the_trace_its_client_sent(
    spans: InMemorySpanExporter,
) -> None:
    service, ledger = memory_service()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with client_for(service) as client, service.running():
        await client.post(
            "/orders",
            json={"order_id": "o-1", "email": SECRET},
            headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
        )
        with anyio.fail_after(10):
            while not ledger.items:
                await anyio.sleep(0.01)

    finished = spans.get_finished_spans()
    assert len(finished) == 4
    assert {f"{span.context.trace_id:032x}" for span in finished} == {trace_id}


@pytest.mark.anyio
async def test_tracing_off_leaves_no_trace_context_behind() -> None:
    assert tracing.TRACER is None
    service, ledger = memory_service()
    async with client_for(service) as client, service.running():
        await client.post("/orders", json={"order_id": "o-1", "email": SECRET})
        with anyio.fail_after(10):
            while not ledger.items:
                await anyio.sleep(0.01)
    assert len(tracing._CONTEXTS) == 0


def assert_chain(spans: dict[str, Any], names: list[str]) -> None:
    """One trace, each span the child of the one before it."""
    first = spans[names[0]].context.trace_id
    for parent, child in itertools.pairwise(names):
        assert spans[child].context.trace_id == first, child
        assert spans[child].parent is not None, child
        assert (
            spans[child].parent.span_id == spans[parent].context.span_id
        ), f"{child} is not a child of {parent}"


def dump(spans: Any) -> str:
    return "\n".join(
        span.to_json() if isinstance(span, ReadableSpan) else json.dumps(span)
        for span in spans
    )


# -- across processes, over Redis -------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("tracing") / "project"
    generate(BLUEPRINT, dest, gate=False)
    components = dest / PACKAGE / "components"
    (components / "score.py").write_text(SCORE)
    (components / "by_risk.py").write_text(BY_RISK)
    for name, cls in (("review_queue", "ReviewQueue"), ("ledger", "Ledger")):
        (components / f"{name}.py").write_text(SINK.format(name=cls, base=cls + "Base"))
    return dest


def test_a_service_asked_for_an_unknown_exporter_does_not_start(
    project: Path, tmp_path: Path
) -> None:
    env = environment(redis_url(), unique_prefix(), tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", PACKAGE, "--components", "orders_api", "--port", "0"],
        cwd=project,
        env={**env, "OTEL_TRACES_EXPORTER": "zipkin"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2, result.stderr
    assert "OTEL_TRACES_EXPORTER: 'zipkin' is not one of" in result.stderr
    assert "Traceback" not in result.stderr


def test_one_trace_spans_http_ingress_redis_hops_and_a_sink_in_another_process(
    project: Path, tmp_path: Path
) -> None:
    url, prefix = redis_url(), unique_prefix()
    files = {name: tmp_path / f"{name}.spans" for name in ("ingress", "work", "sinks")}
    processes = Processes(project, environment(url, prefix, tmp_path), tmp_path)
    try:
        for name, components in (
            ("ingress", "orders_api"),
            ("work", "score,by_risk"),
            ("sinks", "review_queue,ledger"),
        ):
            processes.start(
                name,
                components,
                OTEL_TRACES_EXPORTER="console",
                PORTWRIGHT_TRACES_FILE=str(files[name]),
            )
        processes.wait_ready()
        port = processes.running["ingress"][1]
        ids = []
        for number in (1, 2):  # one to the ledger, one to review
            body = {**order(number), "customer_email": SECRET}
            answer = httpx.post(f"http://127.0.0.1:{port}/orders", json=body)
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])
        seen = tmp_path / "seen.txt"
        deadline = time.monotonic() + 30
        while not (seen.exists() and len(seen.read_text().split()) == 2):
            assert time.monotonic() < deadline, processes.log("sinks")
            time.sleep(0.05)
        assert set(processes.stop().values()) <= {0, -15}
    finally:
        processes.stop()
        delete_prefixed(url, prefix)

    spans = {
        name: [json.loads(line) for line in path.read_text().splitlines()]
        for name, path in files.items()
    }
    everything = [span for group in spans.values() for span in group]
    assert SECRET not in json.dumps(everything)
    requests = [s for s in spans["ingress"] if s["kind"] == "SpanKind.SERVER"]
    assert len(requests) == 2
    for request in requests:
        trace_id = request["context"]["trace_id"]
        trace = [s for s in everything if s["context"]["trace_id"] == trace_id]
        by_component = {s["attributes"]["portwright.component"]: s for s in trace}
        sink = "ledger" if "ledger" in by_component else "review_queue"
        assert set(by_component) == {"orders_api", "score", "by_risk", sink}
        chain = ["orders_api", "score", "by_risk", sink]
        for parent, child in itertools.pairwise(chain):
            assert (
                by_component[child]["parent_id"]
                == by_component[parent]["context"]["span_id"]
            ), f"{child} is not a child of {parent}"
        # each in the process that ran it
        assert request in spans["ingress"]
        assert by_component["score"] in spans["work"]
        assert by_component[sink] in spans["sinks"]
        assert by_component[sink]["resource"]["attributes"]["service.name"] == PACKAGE
        assert by_component["score"]["attributes"]["messaging.message.id"] in ids
