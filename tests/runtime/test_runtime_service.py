"""The service: health and readiness, graceful shutdown, drain timeout, settings."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
import runtime
from pydantic import BaseModel

from tests.runtime.support import Gate, Numbers, Recorder, wait

pytestmark = pytest.mark.anyio


class Order(BaseModel):
    order_id: int


class Slow(runtime.Transformer):
    """Yields to the loop on every item, so a drain takes many turns."""

    async def transform(self, item: Any) -> Any:
        await anyio.lowlevel.checkpoint()
        return item


def client(service: runtime.Service) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=runtime.create_app(service))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_health_is_always_alive_and_ready_says_why_not() -> None:
    service = runtime.Service("svc")
    gate = service.add(Gate("gate"))
    inlet = service.inlet("gate.in", buffer_size=2)
    async with client(service) as http:
        before = await http.get("/ready")
        async with service.running():
            ready = await http.get("/ready")
            await inlet.send(0)
            await wait(gate.holding)
            inlet.send_nowait(1)
            inlet.send_nowait(2)
            saturated = await http.get("/ready")
            health = await http.get("/health")
            gate.release.set()

    assert (before.status_code, before.json()["reasons"]) == (
        503,
        ["service is created"],
    )
    assert (ready.status_code, ready.json()["status"]) == (200, "ready")
    assert saturated.status_code == 503
    assert saturated.json()["reasons"] == [
        "port gate.in is saturated (100% of its buffer used)"
    ]
    assert (health.status_code, health.json()["status"]) == (200, "alive")


async def test_stopping_loses_nothing_that_was_accepted() -> None:
    service = runtime.Service("svc")
    service.add(Slow("slow"))
    sink = service.add(Recorder("sink"))
    service.connect("slow.out", "sink.in", buffer_size=3)
    inlet = service.inlet("slow.in", buffer_size=5)
    async with service.running():
        for number in range(500):
            await inlet.send(number)
        # most of them are still in buffers or on their way when the stop begins

    assert sink.items == list(range(500))
    report = service.drain_report
    assert report is not None and report.completed and report.left == {}


async def test_every_202_reaches_the_sink_across_a_stop() -> None:
    service = runtime.Service("svc")
    service.add(runtime.ApiEndpoint("orders", route="/orders", schema=Order))
    service.add(Slow("slow", inputs={"in": Order}, outputs={"out": Order}))
    sink = service.add(Recorder("sink", inputs={"in": Order}))
    service.connect("orders.out", "slow.in", buffer_size=4)
    service.connect("slow.out", "sink.in", buffer_size=4)
    async with client(service) as http, service.running():
        responses = [
            await http.post("/orders", json={"order_id": n}) for n in range(50)
        ]
        service.stop()
        late = await http.post("/orders", json={"order_id": 99})

    assert {r.status_code for r in responses} == {202}
    assert late.status_code == 503
    assert [order.order_id for order in sink.items] == list(range(50))


async def test_a_drain_that_takes_too_long_is_cut_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cleaned = []

    class Stuck(Gate):
        async def cleanup(self) -> None:
            cleaned.append(self.name)

    service = runtime.Service(
        "svc", settings=runtime.ServiceSettings(drain_timeout_s=0.1)
    )
    gate = service.add(Stuck("stuck"))
    inlet = service.inlet("stuck.in")
    async with service.running():
        await inlet.send(0)
        await wait(gate.holding)
        for number in range(1, 4):
            await inlet.send(number)  # never released

    report = service.drain_report
    assert report is not None
    assert not report.completed
    assert report.left == {"stuck.in": 3}
    assert report.seconds >= 0.1
    assert cleaned == ["stuck"]
    assert any("drain timed out" in r.getMessage() for r in caplog.records)


class AddOne(runtime.Transformer):
    def transform(self, item: int) -> int:
        return item + 1


async def test_a_cut_drain_reports_what_a_component_held_and_had_yet_to_hand_on() -> (
    None
):
    # The transformer takes its input as a batch and hands the results on in one
    # go; when the sink's buffer is full they wait in the transformer. The report
    # must count them, not only what sits in the buffers.
    service = runtime.Service(
        "svc", settings=runtime.ServiceSettings(drain_timeout_s=0.1)
    )
    service.add(AddOne("add_one"))
    gate = service.add(Gate("stuck"))
    inlet = service.inlet("add_one.in")
    service.connect("add_one.out", "stuck.in", buffer_size=2)
    async with service.running():
        await inlet.send(0)
        await wait(gate.holding)
        for number in range(1, 20):
            await inlet.send(number)
        with anyio.fail_after(5):
            while service.metrics.snapshot()["add_one"]["in"]["messages"] < 20:
                await anyio.sleep(0.01)
            await anyio.sleep(0.05)

    report = service.drain_report
    assert report is not None and not report.completed
    # 20 sent, the first held by the sink's consume(): 19 left, 2 in the buffer
    assert report.left == {"stuck.in": 19}, report.left


async def test_run_returns_the_report_once_stopped() -> None:
    service = runtime.Service("svc")
    service.add(Recorder("sink"))
    service.inlet("sink.in")
    async with anyio.create_task_group() as group:
        reports: list[runtime.DrainReport] = []

        async def run() -> None:
            reports.append(await service.run())

        group.start_soon(run)
        while service.state is not runtime.ServiceState.RUNNING:
            await anyio.lowlevel.checkpoint()
        service.stop()

    assert reports[0].completed
    assert service.state is runtime.ServiceState.STOPPED


async def test_a_stop_before_the_start_runs_nothing() -> None:
    service = runtime.Service("svc")
    service.add(Numbers("numbers", 1000))
    tap = service.tap("numbers.out")
    service.stop()
    report = await service.run()

    assert report.completed
    assert tap.items == []


async def test_the_body_error_comes_out_of_running_unwrapped() -> None:
    service = runtime.Service("svc")
    service.add(Recorder("sink"))
    with pytest.raises(KeyError, match="body"):
        async with service.running():
            raise KeyError("body")
    assert service.state is runtime.ServiceState.STOPPED


async def test_a_service_runs_once_and_is_wired_before() -> None:
    service = runtime.Service("svc")
    service.add(Recorder("sink"))
    with pytest.raises(runtime.WiringError, match="already has a component 'sink'"):
        service.add(Recorder("sink"))
    await service.run()

    with pytest.raises(runtime.ServiceError, match="is stopped; cannot run"):
        await service.run()
    with pytest.raises(runtime.ServiceError, match="cannot add components"):
        service.add(Recorder("other"))
    with pytest.raises(runtime.ServiceError, match="cannot connect ports"):
        service.connect("sink.in", "sink.in")


# -- settings ----------------------------------------------------------------------


def test_settings_come_from_prefixed_environment_variables() -> None:
    settings = runtime.ServiceSettings.from_env(
        "order_pipeline",
        {
            "ORDER_PIPELINE_DRAIN_TIMEOUT_S": "2.5",
            "ORDER_PIPELINE_LOG_LEVEL": "debug",
            "ORDER_PIPELINE_PORT": "9000",
            "ORDER_PIPELINE_BUFFER__LEDGER__ACCEPTED": "64",
            "OTHER_SERVICE_PORT": "1",
        },
    )

    assert settings.drain_timeout_s == 2.5
    assert settings.log_level == "DEBUG"
    assert settings.port == 9000
    assert settings.buffer_overrides == {"ledger.accepted": 64}
    assert settings.cleanup_timeout_s == 10.0  # untouched default


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"SVC_DRAIN_TIMEOUT_S": "soon"},
            "SVC_DRAIN_TIMEOUT_S has value 'soon'. Input should be a valid number",
        ),
        ({"SVC_DRAIN_TIMEOUT": "3"}, "SVC_DRAIN_TIMEOUT is not a setting of 'svc'"),
        ({"SVC_BUFFER__SINK__IN": "big"}, "SVC_BUFFER__SINK__IN has value 'big'"),
        ({"SVC_PORT": "-1"}, "SVC_PORT has value '-1'"),
    ],
)
def test_a_bad_setting_is_named_with_its_value(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(runtime.SettingsError, match=message):
        runtime.ServiceSettings.from_env("svc", environ)


async def test_a_buffer_override_replaces_the_wired_size() -> None:
    settings = runtime.ServiceSettings.from_env("svc", {"SVC_BUFFER__SINK__IN": "3"})
    service = runtime.Service("svc", settings=settings)
    service.add(Numbers("numbers", 1))
    service.add(Recorder("sink"))
    connection = service.connect("numbers.out", "sink.in", buffer_size=1024)

    assert connection.buffer_size == 3


async def test_a_buffer_override_for_an_unknown_port_stops_the_start() -> None:
    settings = runtime.ServiceSettings(buffer_overrides={"sink.typo": 3})
    service = runtime.Service("svc", settings=settings)
    service.add(Recorder("sink"))

    with pytest.raises(runtime.SettingsError, match=r"sink\.typo"):
        await service.run()
    with pytest.raises(runtime.SettingsError, match=r"sink\.typo"):  # not grouped
        async with service.running():
            pass  # pragma: no cover - never entered


def test_every_tunable_has_a_per_item_variable() -> None:
    settings = runtime.ServiceSettings.from_env(
        "svc",
        {
            "SVC_OVERFLOW__SINK__IN": "drop_newest",
            "SVC_TIMEOUT_MS__ORDERS": "250",
            "SVC_MAX_PAYLOAD_KB__ORDERS": "2",
            "SVC_BURST_LIMIT__SINK": "7",
        },
    )
    assert settings.overflow_overrides == {"sink.in": "drop_newest"}
    assert settings.timeout_overrides == {"orders": 250}
    assert settings.payload_overrides == {"orders": 2}
    assert settings.burst_overrides == {"sink": 7}


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"SVC_OVERFLOW__SINK__IN": "drop_some"},
            "SVC_OVERFLOW__SINK__IN has value 'drop_some'",
        ),
        ({"SVC_TIMEOUT_MS__ORDERS": "0"}, "SVC_TIMEOUT_MS__ORDERS has value '0'"),
        (
            {"SVC_BURST_LIMIT__SINK__IN": "3"},
            "should be named SVC_BURST_LIMIT__<COMPONENT>",
        ),
        ({"SVC_BUFFER__SINK": "3"}, "should be named SVC_BUFFER__<COMPONENT>__<PORT>"),
    ],
)
def test_a_bad_per_item_variable_is_named(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(runtime.SettingsError, match=message):
        runtime.ServiceSettings.from_env("svc", environ)


async def test_per_item_overrides_reach_the_components() -> None:
    settings = runtime.ServiceSettings.from_env(
        "svc",
        {
            "SVC_OVERFLOW__SINK__IN": "drop_oldest",
            "SVC_TIMEOUT_MS__ORDERS": "1500",
            "SVC_MAX_PAYLOAD_KB__ORDERS": "2",
            "SVC_BURST_LIMIT__SINK": "7",
        },
    )
    service = runtime.Service("svc", settings=settings)
    endpoint = service.add(
        runtime.ApiEndpoint("orders", route="/orders", schema=Order, timeout_ms=100)
    )
    sink = service.add(Recorder("sink"))
    connection = service.connect("orders.out", "sink.in", overflow="block")

    assert connection.overflow == "drop_oldest"
    assert (endpoint.timeout_s, endpoint.retry_after) == (1.5, "2")
    assert endpoint.max_payload_bytes == 2048
    assert sink.burst_limit == 7


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"timeout_overrides": {"nope": 5}},
            "timeout override for nope: no such api_endpoint",
        ),
        (
            {"burst_overrides": {"ghost": 5}},
            "burst limit override for ghost: no such component",
        ),
        ({"overflow_overrides": {"sink.x": "block"}}, r"overflow override for sink\.x"),
    ],
)
async def test_an_override_for_something_unknown_stops_the_start(
    overrides: dict[str, Any], message: str
) -> None:
    service = runtime.Service("svc", settings=runtime.ServiceSettings(**overrides))
    service.add(Recorder("sink"))
    with pytest.raises(runtime.SettingsError, match=message):
        await service.run()
