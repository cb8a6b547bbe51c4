"""What every transport must do, written once: the suite each transport's tests run.

A transport's test module subclasses ``TransportSuite`` and provides the
``transport`` fixture (its name) and ``settings`` (what its services start with);
every test here then runs on it. A third transport gets the whole suite by adding a
module of three lines (FastStream's ``tests/brokers/base/`` pattern). The tests
speak only the core's API: ``Service.connect(..., transport=...)``, components,
reports and metrics; never a transport's own classes.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import runtime
from pydantic import BaseModel

from tests.runtime.support import Numbers, Recorder


class Order(BaseModel):
    order_id: str
    amount: float


class Scored(Order):
    risk: float


class Score(runtime.Transformer):
    def transform(self, item: Order) -> Scored:
        return Scored(**item.model_dump(), risk=item.amount / 100)


class Double(runtime.Transformer):
    def transform(self, item: int) -> int:
        return item * 2


class Poisoned(runtime.Transformer):
    """Fails on 13, doubles everything else."""

    def transform(self, item: int) -> int:
        if item == 13:
            raise ValueError("unlucky")
        return item * 2


class Traced(runtime.Sink):
    """Keeps each message it consumes, with its ids."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.seen: list[runtime.Envelope] = []

    def consume(self, item: Any) -> None:
        message = runtime.current_message()
        assert message is not None
        self.seen.append(message)


class Once(runtime.Sink):
    """Applies each item's effect once per item (``Component.once``)."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.applied: list[int] = []
        self.answers: list[bool] = []

    async def consume(self, item: Any) -> None:
        self.answers.append(
            await self.once(lambda: self.applied.append(item), key=f"item-{item}")
        )


class TransportSuite:
    """The tests every transport runs; see the module's description."""

    pytestmark = [pytest.mark.anyio]

    async def test_every_item_crosses_two_hops(
        self, transport: str, settings: runtime.ServiceSettings
    ) -> None:
        service = runtime.Service("suite", settings=settings)
        service.add(Numbers("numbers", 500))
        service.add(Double("double"))
        sink = service.add(Recorder("sink"))
        service.connect("numbers.out", "double.in", transport=transport)
        service.connect("double.out", "sink.in", transport=transport)
        with anyio.fail_after(30):
            report = await service.run()

        assert report.completed and report.left == {}
        assert sorted(sink.items) == [2 * n for n in range(500)]
        snapshot = service.metrics.snapshot()
        assert snapshot["double"]["in"]["messages"] == 500
        assert snapshot["sink"]["in"]["messages"] == 500

    async def test_fan_out_gives_every_input_every_item(
        self, transport: str, settings: runtime.ServiceSettings
    ) -> None:
        service = runtime.Service("suite", settings=settings)
        service.add(Numbers("numbers", 100))
        left = service.add(Recorder("left"))
        right = service.add(Recorder("right"))
        service.connect("numbers.out", "left.in", transport=transport)
        service.connect("numbers.out", "right.in", transport=transport)
        with anyio.fail_after(30):
            await service.run()

        assert sorted(left.items) == list(range(100))
        assert sorted(right.items) == list(range(100))

    async def test_schemas_and_ids_survive_the_connection(
        self, transport: str, settings: runtime.ServiceSettings
    ) -> None:
        service = runtime.Service("suite", settings=settings)
        inlet = service.add(runtime.Inlet("orders", Order))
        service.add(Score("score", inputs={"in": Order}, outputs={"out": Scored}))
        sink = service.add(Traced("sink", inputs={"in": Order}))
        service.connect("orders.out", "score.in", transport=transport)
        service.connect("score.out", "sink.in", transport=transport)
        with anyio.fail_after(30):
            async with service.running():
                sent = await inlet.send(
                    Order(order_id="o-1", amount=50.0), correlation_id="corr-1"
                )
                inlet.close()

        (message,) = sink.seen
        assert type(message.item) is Scored  # the subclass the sender sent
        assert message.item == Scored(order_id="o-1", amount=50.0, risk=0.5)
        assert message.correlation_id == "corr-1"
        assert message.causation_id == sent.id
        assert message.id not in (sent.id, None)

    async def test_a_failing_item_is_counted_and_the_rest_go_on(
        self, transport: str, settings: runtime.ServiceSettings
    ) -> None:
        service = runtime.Service("suite", settings=settings)
        service.add(Numbers("numbers", 20))
        service.add(Poisoned("poisoned"))
        sink = service.add(Recorder("sink"))
        service.connect("numbers.out", "poisoned.in", transport=transport)
        service.connect("poisoned.out", "sink.in", transport=transport)
        with anyio.fail_after(60):
            await service.run()

        assert sorted(sink.items) == [2 * n for n in range(20) if n != 13]
        assert service.metrics.snapshot()["poisoned"]["in"]["errors"] >= 1

    async def test_once_applies_an_effect_once_per_key(
        self, transport: str, settings: runtime.ServiceSettings
    ) -> None:
        service = runtime.Service("suite", settings=settings)
        inlet = service.add(runtime.Inlet("numbers", int))
        sink = service.add(Once("sink"))
        service.connect("numbers.out", "sink.in", transport=transport)
        with anyio.fail_after(30):
            async with service.running():
                for number in (1, 2, 1, 3, 2):
                    await inlet.send(number)
                inlet.close()

        assert sorted(sink.applied) == [1, 2, 3]
        assert sorted(sink.answers) == [False, False, True, True, True]

    async def test_a_running_service_is_ready_and_stops_with_nothing_left(
        self, transport: str, settings: runtime.ServiceSettings
    ) -> None:
        service = runtime.Service("suite", settings=settings)
        inlet = service.add(runtime.Inlet("numbers", int))
        sink = service.add(Recorder("sink"))
        service.connect("numbers.out", "sink.in", transport=transport)
        with anyio.fail_after(30):
            async with service.running():
                for number in range(50):
                    await inlet.send(number)
                with anyio.fail_after(10):
                    while service.readiness():
                        await anyio.sleep(0.01)
            # leaving the block stops the service: what was accepted is drained

        report = service.drain_report
        assert report is not None and report.completed and report.left == {}
        assert sorted(sink.items) == list(range(50))
