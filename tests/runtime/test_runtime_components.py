"""The primitives: sync and async user code, failures, lifecycle, sources."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import runtime
from pydantic import BaseModel

from tests.runtime.support import Numbers, Recorder

pytestmark = pytest.mark.anyio


# -- the same pipeline with plain and with async user methods ----------------------


class Triple(runtime.Transformer):
    def transform(self, item: int) -> int:
        return item * 3


class AsyncTriple(runtime.Transformer):
    async def transform(self, item: int) -> int:
        await anyio.lowlevel.checkpoint()
        return item * 3


class Even(runtime.Filter):
    def keep(self, item: int) -> bool:
        return item % 2 == 0


class AsyncEven(runtime.Filter):
    async def keep(self, item: int) -> bool:
        await anyio.lowlevel.checkpoint()
        return item % 2 == 0


class BySize(runtime.Router):
    def route(self, item: int) -> str | list[str] | None:
        if item == 0:
            return None
        return "big" if item > 12 else ["small", "all"]


class AsyncBySize(runtime.Router):
    async def route(self, item: int) -> str | list[str] | None:
        await anyio.lowlevel.checkpoint()
        return BySize.route(self, item)  # type: ignore[arg-type]


class AsyncRecorder(Recorder):
    async def consume(self, item: Any) -> None:
        await anyio.lowlevel.checkpoint()
        self.items.append(item)


class PlainNumbers(runtime.Source):
    def generate(self) -> Any:
        yield from range(10)


FLAVOURS = {
    "plain": (PlainNumbers, Triple, Even, BySize, Recorder),
    "async": (Numbers, AsyncTriple, AsyncEven, AsyncBySize, AsyncRecorder),
}


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_user_methods_may_be_plain_or_async(flavour: str) -> None:
    source, transformer, filter_, router, sink = FLAVOURS[flavour]
    service = runtime.Service("components")
    if source is Numbers:
        service.add(Numbers("numbers", 10))
    else:
        service.add(source("numbers"))
    service.add(transformer("triple"))
    service.add(filter_("even"))
    service.add(router("by_size", outputs={"big": Any, "small": Any, "all": Any}))
    big = service.add(sink("big"))
    small = service.add(sink("small", inputs={"small": Any, "all": Any}))
    for source_port, target_port in [
        ("numbers.out", "triple.in"),
        ("triple.out", "even.in"),
        ("even.out", "by_size.in"),
        ("by_size.big", "big.in"),
        ("by_size.small", "small.small"),
        ("by_size.all", "small.all"),
    ]:
        service.connect(source_port, target_port)
    await service.run()

    assert big.items == [18, 24]
    assert sorted(small.items) == [6, 6, 12, 12]
    snapshot = service.metrics.snapshot()
    assert snapshot["even"]["in"]["dropped"] == 5  # the odd ones
    assert snapshot["by_size"]["in"]["dropped"] == 1  # route() returned None for 0
    assert snapshot["by_size"]["small"]["messages"] == 2


async def test_a_filter_forwards_the_same_message() -> None:
    service = runtime.Service("components")
    service.add(Even("even"))
    inlet = service.inlet("even.in")
    tap = service.tap("even.out")
    async with service.running():
        sent = [await inlet.send(n) for n in range(4)]

    assert [e.id for e in tap.envelopes] == [sent[0].id, sent[2].id]


# -- failures in user code ---------------------------------------------------------


class Order(BaseModel):
    order_id: str
    email: str


class Fragile(runtime.Transformer):
    def transform(self, item: Order) -> Order:
        if item.order_id == "bad":
            raise ValueError(
                f"cannot score order_id={item.order_id} email={item.email}"
            )
        return item


async def test_an_exception_becomes_an_error_record_and_the_loop_goes_on() -> None:
    service = runtime.Service("components", pii_fields={"email"})
    service.add(
        Fragile(
            "fragile",
            inputs={"in": Order},
            outputs={"out": Order, "errors": runtime.ErrorRecord},
        )
    )
    inlet = service.inlet("fragile.in")
    passed = service.tap("fragile.out")
    errors = service.tap("fragile.errors")
    async with service.running():
        await inlet.send(Order(order_id="1", email="a@example.com"))
        bad = await inlet.send(
            Order(order_id="bad", email="b@example.com"), correlation_id="req-7"
        )
        await inlet.send(Order(order_id="3", email="c@example.com"))

    assert [order.order_id for order in passed.items] == ["1", "3"]
    (record,) = errors.items
    assert isinstance(record, runtime.ErrorRecord)
    assert record.component == "fragile"
    assert record.port == "in"
    assert record.error_type == "ValueError"
    assert record.message == "cannot score order_id=bad email=***"
    assert record.item == {"order_id": "bad", "email": "***"}
    assert record.message_id == bad.id
    assert record.correlation_id == "req-7"
    assert errors.envelopes[0].causation_id == bad.id
    assert service.metrics.snapshot()["fragile"]["in"]["errors"] == 1


async def test_an_item_that_is_an_odd_dict_still_makes_an_error_record() -> None:
    class Picky(runtime.Transformer):
        def transform(self, item: dict[int, str]) -> None:
            raise KeyError(item[1])

    service = runtime.Service("components")
    service.add(Picky("picky", outputs={"out": Any, "errors": runtime.ErrorRecord}))
    inlet = service.inlet("picky.in")
    errors = service.tap("picky.errors")
    async with service.running():
        await inlet.send({1: "one"})
        await inlet.send({1: "two"})

    assert [record.item for record in errors.items] == [{"1": "one"}, {"1": "two"}]


async def test_without_an_errors_port_a_failure_is_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = runtime.Service("components", pii_fields={"email"})
    service.add(Fragile("fragile", inputs={"in": Order}, outputs={"out": Order}))
    inlet = service.inlet("fragile.in")
    tap = service.tap("fragile.out")
    async with service.running():
        await inlet.send(Order(order_id="bad", email="b@example.com"))
        await inlet.send(Order(order_id="2", email="c@example.com"))

    assert [order.order_id for order in tap.items] == ["2"]
    assert service.metrics.snapshot()["fragile"]["in"]["errors"] == 1
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.component == "fragile"  # type: ignore[attr-defined]
    assert "b@example.com" not in record.getMessage()


async def test_a_router_naming_an_unknown_port_counts_an_error() -> None:
    class Misroute(runtime.Router):
        def route(self, item: int) -> list[str]:
            return ["yes", "typo"] if item else ["yes"]

    service = runtime.Service("components")
    service.add(
        Misroute("misroute", outputs={"yes": Any, "errors": runtime.ErrorRecord})
    )
    inlet = service.inlet("misroute.in")
    yes = service.tap("misroute.yes")
    errors = service.tap("misroute.errors")
    async with service.running():
        for item in (0, 1, 2):
            await inlet.send(item)

    assert yes.items == [0, 1, 2]  # the known name still got every message
    assert service.metrics.snapshot()["misroute"]["in"]["errors"] == 2
    assert [r.error_type for r in errors.items] == ["UnknownRouteError"] * 2
    assert "'typo'" in errors.items[0].message


async def test_a_router_returning_nonsense_is_an_error_not_a_crash() -> None:
    class Confused(runtime.Router):
        def route(self, item: int) -> Any:
            return 42

    service = runtime.Service("components")
    service.add(Confused("confused", outputs={"out": Any}))
    inlet = service.inlet("confused.in")
    async with service.running():
        await inlet.send(1)

    assert service.metrics.snapshot()["confused"]["in"]["errors"] == 1


# -- lifecycle ---------------------------------------------------------------------


class Tracked(Recorder):
    def __init__(self, name: str, log: list[str], fail_setup: bool = False) -> None:
        super().__init__(name)
        self.log_ = log
        self.fail_setup = fail_setup

    async def setup(self) -> None:
        self.log_.append(f"setup {self.name}")
        if self.fail_setup:
            raise RuntimeError("no database")

    async def cleanup(self) -> None:
        self.log_.append(f"cleanup {self.name}")


async def test_setup_runs_before_the_first_message_and_cleanup_after_the_last() -> None:
    log: list[str] = []

    class Logged(Tracked):
        def consume(self, item: Any) -> None:
            log.append(f"consume {item}")

    service = runtime.Service("components")
    service.add(Logged("sink", log))
    inlet = service.inlet("sink.in")
    async with service.running():
        await inlet.send(1)

    assert log == ["setup sink", "consume 1", "cleanup sink"]


async def test_a_failed_setup_stops_the_start_and_cleans_up_the_others() -> None:
    log: list[str] = []
    service = runtime.Service("components")
    service.add(Tracked("first", log))
    service.add(Tracked("broken", log, fail_setup=True))
    service.add(Tracked("never", log))

    with pytest.raises(runtime.StartupError, match="'broken' failed in setup"):
        await service.run()

    assert log == ["setup first", "setup broken", "cleanup first"]
    assert service.state is runtime.ServiceState.FAILED


async def test_cleanup_runs_when_the_service_is_cancelled() -> None:
    log: list[str] = []
    service = runtime.Service("components")
    service.add(Tracked("sink", log))
    service.inlet("sink.in")  # keeps the service running until stopped
    inlet = service.inlet("sink.in", buffer_size=4)
    with anyio.move_on_after(0.05):
        async with service.running():
            inlet.send_nowait("taken")
            await anyio.sleep_forever()

    assert log == ["setup sink", "cleanup sink"]
    assert service.state is runtime.ServiceState.STOPPED
    assert service.drain_report is not None and not service.drain_report.completed


async def test_a_failing_cleanup_does_not_stop_the_other_cleanups(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []

    class BadCleanup(Tracked):
        async def cleanup(self) -> None:
            raise OSError("disk gone")

    service = runtime.Service("components")
    service.add(BadCleanup("bad", log))
    service.add(Tracked("good", log))
    await service.run()

    assert log == ["setup bad", "setup good", "cleanup good"]
    assert any("cleanup failed" in r.getMessage() for r in caplog.records)


# -- sources -----------------------------------------------------------------------


async def test_a_source_stops_cleanly_on_shutdown() -> None:
    closed = anyio.Event()

    class Forever(runtime.Source):
        async def generate(self) -> Any:
            number = 0
            try:
                while True:
                    yield number
                    number += 1
                    await anyio.sleep(0)
            finally:
                closed.set()

    service = runtime.Service("components")
    service.add(Forever("forever"))
    tap = service.tap("forever.out")
    async with service.running():
        await tap.wait_for(10)

    assert closed.is_set()
    assert service.drain_report is not None and service.drain_report.completed
    # everything the source sent before it stopped reached the tap, in order
    assert tap.items == list(range(len(tap.items)))
    assert len(tap.items) == service.metrics.snapshot()["forever"]["out"]["messages"]


async def test_a_failing_source_is_restarted() -> None:
    runs: list[int] = []

    class Flaky(runtime.Source):
        async def generate(self) -> Any:
            runs.append(1)
            yield len(runs)
            if len(runs) < 3:
                raise ConnectionError("upstream reset")

    settings = runtime.ServiceSettings(source_restart_s=0.001)
    service = runtime.Service("components", settings=settings)
    service.add(Flaky("flaky"))
    tap = service.tap("flaky.out")
    await service.run()

    assert tap.items == [1, 2, 3]
    assert service.metrics.snapshot()["flaky"]["out"]["errors"] == 2


async def test_a_failing_source_stays_down_when_restarts_are_off() -> None:
    class Broken(runtime.Source):
        async def generate(self) -> Any:
            raise ConnectionError("no upstream")
            yield  # pragma: no cover - makes this an async generator

    service = runtime.Service(
        "components", settings=runtime.ServiceSettings(source_restart_s=0)
    )
    broken = service.add(Broken("broken"))
    await service.run()

    assert broken.phase is runtime.State.FAILED
    assert service.metrics.snapshot()["broken"]["out"]["errors"] == 1


# A plain generator into one connection is taken a chunk at a time (no async
# generator per item): these pin what must not change with it.


class Counting(runtime.Source):
    """A plain generator of 0..count-1 that counts how far it has run."""

    def __init__(self, name: str, count: int, fail_after: int | None = None) -> None:
        super().__init__(name)
        self.count, self.fail_after = count, fail_after
        self.pulled = 0
        self.closed = False

    def generate(self) -> Any:
        try:
            for number in range(self.count):
                if number == self.fail_after:
                    raise ConnectionError("upstream reset")
                self.pulled += 1
                yield number
        finally:
            self.closed = True


class Lagging(runtime.Sink):
    """Keeps each item and, as it takes it, how far the source ran ahead of it."""

    def __init__(self, name: str, source: Counting) -> None:
        super().__init__(name, burst_limit=1)
        self.source = source
        self.items: list[int] = []
        self.ahead: list[int] = []

    async def consume(self, item: int) -> None:
        self.items.append(item)
        self.ahead.append(self.source.pulled - len(self.items))
        await anyio.lowlevel.checkpoint()


async def test_a_plain_generator_runs_no_further_ahead_than_the_buffer_allows() -> None:
    source = Counting("numbers", 600)
    service = runtime.Service("components")
    service.add(source)
    sink = service.add(Lagging("slow", source))
    service.connect("numbers.out", "slow.in", buffer_size=4)
    await service.run()

    assert sink.items == list(range(600))
    # Taken while the stream is full: at most the 4 buffered and the one whose
    # send waits for room, as one item at a time (not a whole burst of 256).
    assert max(sink.ahead) <= 4 + 1
    assert service.metrics.snapshot()["numbers"]["out"]["messages"] == 600
    assert source.closed


async def test_what_a_plain_generator_yielded_before_it_raised_is_sent() -> None:
    source = Counting("numbers", 1000, fail_after=300)
    settings = runtime.ServiceSettings(source_restart_s=0)
    service = runtime.Service("components", settings=settings)
    service.add(source)
    sink = service.add(Recorder("sink"))
    service.connect("numbers.out", "sink.in", buffer_size=4096)
    await service.run()

    assert sink.items == list(range(300))
    snapshot = service.metrics.snapshot()["numbers"]["out"]
    assert (snapshot["messages"], snapshot["errors"]) == (300, 1)
    assert source.closed


async def test_a_plain_generator_is_stopped_and_closed_on_shutdown() -> None:
    source = Counting("numbers", 10**9)
    service = runtime.Service("components")
    service.add(source)
    sink = service.add(Recorder("sink"))
    service.connect("numbers.out", "sink.in", buffer_size=64)
    async with service.running():
        with anyio.fail_after(5):
            while len(sink.items) < 1000:
                await anyio.sleep(0.001)

    assert source.closed
    # what it sent reached the sink, in order; every item pulled was sent
    assert sink.items == list(range(len(sink.items)))
    sent = service.metrics.snapshot()["numbers"]["out"]["messages"]
    assert sent == source.pulled
    # but the one whose send still waited for room when the stop came (so it was
    # with one item at a time too)
    assert sent - len(sink.items) <= 1


async def test_a_source_can_emit_to_another_output() -> None:
    class Split(runtime.Source):
        async def generate(self) -> Any:
            for number in range(4):
                if number % 2:
                    await self.emit("odd", number)
                else:
                    yield number

    service = runtime.Service("components")
    service.add(Split("split", outputs={"out": int, "odd": int}))
    even = service.tap("split.out")
    odd = service.tap("split.odd")
    await service.run()

    assert (even.items, odd.items) == ([0, 2], [1, 3])


async def test_a_source_without_a_default_output_only_emits() -> None:
    class Deal(runtime.Source):
        async def generate(self) -> Any:
            for number in range(4):
                await self.emit("left" if number % 2 else "right", number)
            if False:  # pragma: no cover - makes this an async generator
                yield

    class Yields(Deal):
        async def generate(self) -> Any:
            yield 1

    settings = runtime.ServiceSettings(source_restart_s=0)
    service = runtime.Service("components", settings=settings)
    service.add(Deal("deal", outputs={"left": int, "right": int}))
    service.add(Yields("yields", outputs={"left": int, "right": int}))
    left, right = service.tap("deal.left"), service.tap("deal.right")
    await service.run()

    assert (left.items, right.items) == ([1, 3], [0, 2])
    assert service.metrics.snapshot()["deal"]["left"]["errors"] == 0
    # yielding with no default output is an error of the source, not a crash
    assert service.metrics.snapshot()["yields"]["left"]["errors"] == 1


async def test_components_log_through_a_bound_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Chatty(Recorder):
        def consume(self, item: Any) -> None:
            self.log.warning("got %s", item, extra={"detail": {"password": "pw"}})

    service = runtime.Service("components", pii_fields={"password"})
    service.add(Chatty("chatty"))
    inlet = service.inlet("chatty.in")
    async with service.running():
        await inlet.send("password=hunter2")

    (record,) = [r for r in caplog.records if r.name == "components.chatty"]
    assert record.getMessage() == "got password=***"
    assert record.component == "chatty"  # type: ignore[attr-defined]
    assert record.detail == {"password": "***"}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Triple("Bad-Name"), "not a lowercase identifier"),
        (lambda: Triple("t", outputs={"a": Any, "b": Any}), "exactly one output port"),
        (lambda: Triple("t", inputs={}), "exactly one input port"),
        (lambda: Recorder("s", outputs={"out": Any}), "may only have an 'errors'"),
        (lambda: BySize("r", outputs={}), "at least one output port"),
        (lambda: Triple("t", outputs={"out": Any, "errors": str}), "ErrorRecord"),
        (lambda: Triple("t", burst_limit=0), "burst_limit must be at least 1"),
        (lambda: Numbers("n", 1, outputs={}), "at least one output port"),
    ],
)
def test_components_refuse_impossible_ports(make: Any, message: str) -> None:
    with pytest.raises(runtime.WiringError, match=message):
        make()


def test_a_component_must_implement_its_user_method() -> None:
    with pytest.raises(TypeError, match="transform"):
        runtime.Transformer("t")  # type: ignore[abstract]
