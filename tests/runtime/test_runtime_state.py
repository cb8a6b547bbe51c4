"""Keyed state for user code (``keyedstate.Stateful``): ``self.state`` is the current
item's key's, kept when the method returns, dropped when it raises, bounded by
``max_keys`` (least recently used key dropped); refused on an unkeyed input
(issue #16)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
import runtime
from pydantic import BaseModel

from tests.runtime.support import Recorder

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Reading:
    device: str
    value: int


class Tally(BaseModel):
    count: int = 0
    total: int = 0


class Counter(runtime.Stateful[dict[str, Any]], runtime.Transformer):
    """Numbers each item of its key: 1, 2, 3 ... (state: a dict)."""

    def transform(self, item: Reading) -> tuple[str, int]:
        self.state["n"] = self.state.get("n", 0) + 1
        return (item.device, self.state["n"])


class Summed(runtime.Stateful[Tally], runtime.Transformer):
    """Sums each key's values (state: a model); fails on a negative value after
    changing the state, which must then not count."""

    state_type = Tally

    def transform(self, item: Reading) -> tuple[str, int, int]:
        self.state.count += 1
        self.state.total += item.value
        if item.value < 0:
            raise ValueError("negative")
        return (item.device, self.state.count, self.state.total)


class AsyncSummed(Summed):
    async def transform(self, item: Reading) -> tuple[str, int, int]:  # type: ignore[override]
        for _ in range(random.randrange(3)):
            await anyio.sleep(0)
        return super().transform(item)


class Readings(runtime.Source):
    def __init__(self, name: str, items: list[Reading]) -> None:
        super().__init__(name)
        self.items = items

    async def generate(self) -> AsyncIterator[Reading]:
        for item in self.items:
            yield item


def run(service: runtime.Service) -> None:
    """Run ``service`` until its source has sent everything, then drain it."""
    source = service.components["readings"]

    async def running() -> None:
        async with service.running():
            with anyio.fail_after(30):
                while source.phase is not runtime.State.STOPPED:
                    await anyio.sleep(0.005)

    anyio.run(running)


def run_pipeline(
    component: runtime.Component, items: list[Reading], key: str | None = "device"
) -> Recorder:
    service = runtime.Service("stateful")
    service.add(Readings("readings", items))
    service.add(component)
    sink = service.add(Recorder("sink"))
    service.connect("readings.out", f"{component.name}.in", key=key)
    service.connect(f"{component.name}.out", "sink.in")
    run(service)
    return sink


def readings(keys: int, each: int, seed: int = 16) -> list[Reading]:
    items = [Reading(f"d{k}", v) for k in range(keys) for v in range(1, each + 1)]
    random.Random(seed).shuffle(items)
    return items


def test_each_key_has_its_own_state_kept_across_its_items() -> None:
    items = readings(5, 40)
    sink = run_pipeline(Counter("counter"), items)
    seen: dict[str, list[int]] = {}
    for device, n in sink.items:
        seen.setdefault(device, []).append(n)
    assert seen == {f"d{k}": list(range(1, 41)) for k in range(5)}


@pytest.mark.parametrize("component", [Summed, AsyncSummed])
def test_a_model_state_starts_from_its_defaults_and_a_failed_item_changes_nothing(
    component: type[Summed],
) -> None:
    items = [Reading("a", 5), Reading("b", 1), Reading("a", -100), Reading("a", 7)]
    summed = component("summed")
    sink = run_pipeline(summed, items)
    # a's third item failed after changing count and total: neither counted
    assert sink.items == [("a", 1, 5), ("b", 1, 1), ("a", 2, 12)]
    assert summed.states.get("a") == Tally(count=2, total=12)
    assert summed.inputs["in"].errors == 1


@pytest.mark.parametrize("blocking", [False, True])
def test_keys_in_the_method_together_each_see_their_own_state(
    blocking: bool,
) -> None:
    component = (
        Summed("summed", concurrency=8, blocking=True)
        if blocking
        else AsyncSummed("summed", concurrency=8, ordering="none")
    )
    items = readings(6, 50)
    sink = run_pipeline(component, items)
    last = {device: (count, total) for device, count, total in sink.items}
    assert last == {f"d{k}": (50, sum(range(1, 51))) for k in range(6)}


def test_past_max_keys_the_least_recently_used_key_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counter = Counter("counter")
    counter.max_keys = 2
    items = [Reading(d, 0) for d in ("a", "b", "a", "c", "a", "b")]
    sink = run_pipeline(counter, items)
    # c evicts b (a was used after b); b comes back from nothing, evicting c
    assert sink.items == [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("a", 3), ("b", 1)]
    assert counter.states.evicted == 2
    assert len(counter.states) == 2
    warnings = [r for r in caplog.records if "max_keys" in r.getMessage()]
    assert len(warnings) == 1  # once, not per eviction
    numbers = runtime.ServiceMetrics(lambda: [counter]).groups()["counter"]
    assert numbers == {"state_keys": 2, "state_evicted_keys": 2}


class Yielding(runtime.Stateful[dict[str, Any]], runtime.Transformer):
    def transform(self, item: Reading) -> Iterator[int]:  # type: ignore[override]
        self.state["n"] = self.state.get("n", 0) + 1
        yield self.state["n"]


def test_a_generator_runs_with_its_key_s_state() -> None:
    sink = run_pipeline(Yielding("yielding"), [Reading("a", 0)] * 3)
    assert sink.items == [1, 2, 3]


class Seen(runtime.Stateful[dict[str, Any]], runtime.Sink):
    def consume(self, item: Reading) -> None:
        self.state.setdefault("values", []).append(item.value)


def test_a_sink_and_a_filter_keep_state_too() -> None:
    class FirstOnly(runtime.Stateful[dict[str, Any]], runtime.Filter):
        def keep(self, item: Reading) -> bool:
            first = not self.state
            self.state["seen"] = True
            return first

    sink = run_pipeline(FirstOnly("first"), readings(3, 5))
    assert sorted(r.device for r in sink.items) == ["d0", "d1", "d2"]
    seen = Seen("seen")
    service = runtime.Service("sinks")
    service.add(Readings("readings", [Reading("a", 1), Reading("a", 2)]))
    service.add(seen)
    service.connect("readings.out", "seen.in", key="device")
    run(service)
    assert seen.states.get("a") == {"values": [1, 2]}


def test_an_unkeyed_input_is_refused_when_it_starts() -> None:
    with pytest.raises(
        runtime.StartupError, match=r"keeps state per key: its input counter\.in"
    ):
        run_pipeline(Counter("counter"), [Reading("a", 1)], key=None)


def test_self_state_outside_the_method_says_where_it_exists() -> None:
    with pytest.raises(RuntimeError, match="only inside the user method"):
        _ = Counter("counter").state


def test_two_input_connections_with_an_async_method_are_refused() -> None:
    # each connection has its own loop: one key could be inside from both at once
    service = runtime.Service("two")
    service.add(Readings("readings", []))
    service.add(Readings("more", []))
    service.add(AsyncSummed("summed"))
    service.add(Recorder("sink"))
    service.connect("readings.out", "summed.in", key="device")
    service.connect("more.out", "summed.in", key="device")
    service.connect("summed.out", "sink.in")
    with pytest.raises(runtime.StartupError, match="has 2 input connections"):
        run(service)
