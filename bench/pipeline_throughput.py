"""Throughput of the runtime against two hand-written baselines, in one process.

The pipeline is source -> transformer -> router -> sink (the router splits even and
odd numbers over two outputs, which the sink drains on two inputs), with every
runtime metric on. The baselines move the same items through the same shape of
anyio memory streams:

- naive: ``await send()`` / ``async for``, and a prometheus_client histogram
  ``observe()`` per message per stage;
- nowait: ``send_nowait`` / ``receive_nowait``, awaiting only on a full or empty
  stream, a checkpoint every 256 items, no metrics, no envelopes;
- nowait+user: the same, with the work the runtime's user code does too: items
  come from an async generator and every stage calls a function per item.

The runtime's ratio to "nowait" is its cost over bare streams; the ratio to
"nowait+user" is its own overhead (envelopes, metrics, ports) for the same work.

Usage: ``python bench/pipeline_throughput.py [items] [rounds] [--tracing[=RATIO]]``. Prints
items per second of CPU time (best of the rounds) and the runtime's ratio to each
baseline. No assertions: numbers depend on the machine.

``--tracing`` adds "runtime+tracing": the same service with OpenTelemetry tracing on
(runtime/tracing.py), every span sampled and handed to an exporter that discards it
(the SDK's SimpleSpanProcessor: what spans cost here, not their export);
``--tracing=0.01`` samples one trace in a hundred (``parentbased_traceidratio``).
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from anyio import EndOfStream, WouldBlock
from anyio.lowlevel import checkpoint
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from prometheus_client import CollectorRegistry
from prometheus_client import Histogram as PromHistogram

sys.path.insert(
    0, str(Path(__file__).resolve().parents[1] / "templates/project/package")
)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script too

import runtime as rt

from bench.tracer import ratio_argument, tracing_on

BUFFER = 1024
BURST = 256

Sender = MemoryObjectSendStream[Any]
Receiver = MemoryObjectReceiveStream[Any]


def _streams(count: int) -> list[tuple[Sender, Receiver]]:
    return [anyio.create_memory_object_stream[Any](BUFFER) for _ in range(count)]


# -- baseline 1: the naive pattern ------------------------------------------------


async def naive(items: int) -> int:
    """``await send`` / ``async for`` and a prometheus observe per message."""
    histogram = PromHistogram(
        "stage_seconds", "x", ["stage"], registry=CollectorRegistry()
    )
    stages = [histogram.labels(stage) for stage in ("t", "r", "even", "odd")]
    (s1, r1), (s2, r2), (even_s, even_r), (odd_s, odd_r) = _streams(4)
    received = 0

    async def source() -> None:
        async with s1:
            for item in range(items):
                await s1.send((time.monotonic(), item))

    async def transformer() -> None:
        async with r1, s2:
            async for started, item in r1:
                stages[0].observe(time.monotonic() - started)
                await s2.send((time.monotonic(), item + 1))

    async def router() -> None:
        async with r2, even_s, odd_s:
            async for started, item in r2:
                stages[1].observe(time.monotonic() - started)
                target = even_s if item % 2 == 0 else odd_s
                await target.send((time.monotonic(), item))

    async def sink(receiver: Receiver, stage: int) -> None:
        nonlocal received
        async with receiver:
            async for started, _item in receiver:
                stages[stage].observe(time.monotonic() - started)
                received += 1

    async with anyio.create_task_group() as group:
        group.start_soon(source)
        group.start_soon(transformer)
        group.start_soon(router)
        group.start_soon(sink, even_r, 2)
        group.start_soon(sink, odd_r, 3)
    return received


# -- baseline 2: nowait, no metrics ------------------------------------------------


async def _send(stream: Sender, item: Any) -> None:
    try:
        stream.send_nowait(item)
    except WouldBlock:
        await stream.send(item)


async def _drain(
    receiver: Receiver, handle: Callable[[Any], Awaitable[None] | None]
) -> None:
    handled = 0
    with receiver:
        while True:
            try:
                item = receiver.receive_nowait()
            except WouldBlock:
                try:
                    item = await receiver.receive()
                except EndOfStream:
                    return
            except EndOfStream:
                return
            pending = handle(item)
            if pending is not None:
                await pending
            handled += 1
            if handled >= BURST:
                handled = 0
                await checkpoint()


def _forward(stream: Sender, item: Any) -> Awaitable[None] | None:
    try:
        stream.send_nowait(item)
    except WouldBlock:
        return stream.send(item)
    return None


async def nowait(items: int) -> int:
    """``send_nowait`` / ``receive_nowait``; await only on a full or empty stream."""
    return await _nowait(items, user_code=False)


async def nowait_user(items: int) -> int:
    """As ``nowait``, plus an async generator source and a user call per stage."""
    return await _nowait(items, user_code=True)


async def _numbers(items: int) -> AsyncIterator[int]:
    for item in range(items):
        yield item


def _add_one(item: int) -> int:
    return item + 1


def _even_odd(item: int) -> str:
    return "even" if item % 2 == 0 else "odd"


async def _nowait(items: int, *, user_code: bool) -> int:
    (s1, r1), (s2, r2), (even_s, even_r), (odd_s, odd_r) = _streams(4)
    received = 0

    async def source() -> None:
        # Written out twice, so that neither loop pays for a helper call per item.
        produced = 0
        with s1:
            if user_code:
                async for item in _numbers(items):
                    try:
                        s1.send_nowait(item)
                    except WouldBlock:
                        await s1.send(item)
                    produced += 1
                    if produced >= BURST:
                        produced = 0
                        await checkpoint()
            else:
                for item in range(items):
                    try:
                        s1.send_nowait(item)
                    except WouldBlock:
                        await s1.send(item)
                    produced += 1
                    if produced >= BURST:
                        produced = 0
                        await checkpoint()

    def count(item: Any) -> None:
        nonlocal received
        received += 1

    outputs = {"even": even_s, "odd": odd_s}
    if user_code:
        transform, route, consume = _add_one, _even_odd, count
    else:
        transform = lambda item: item + 1  # noqa: E731
        route = lambda item: "even" if item % 2 == 0 else "odd"  # noqa: E731
        consume = count

    async def transformer() -> None:
        with s2:
            await _drain(r1, lambda item: _forward(s2, transform(item)))

    async def router() -> None:
        with even_s, odd_s:
            await _drain(r2, lambda item: _forward(outputs[route(item)], item))

    async with anyio.create_task_group() as group:
        group.start_soon(source)
        group.start_soon(transformer)
        group.start_soon(router)
        group.start_soon(_drain, even_r, consume)
        group.start_soon(_drain, odd_r, consume)
    return received


# -- the runtime, every metric on --------------------------------------------------


class Numbers(rt.Source):
    """Yields 0..items-1."""

    def __init__(self, name: str, items: int) -> None:
        super().__init__(name, outputs={"out": int}, burst_limit=BURST)
        self.items = items

    async def generate(self) -> AsyncIterator[int]:
        for item in range(self.items):
            yield item


class AddOne(rt.Transformer):
    """item + 1."""

    def transform(self, item: int) -> int:
        return item + 1


class EvenOdd(rt.Router):
    """Even numbers to ``even``, odd ones to ``odd``."""

    def route(self, item: int) -> str:
        return "even" if item % 2 == 0 else "odd"


class Count(rt.Sink):
    """Counts what arrives."""

    received = 0

    def consume(self, item: int) -> None:
        self.received += 1


async def runtime(items: int) -> int:
    """The runtime's primitives, wired as a Service."""
    service = rt.Service("bench")
    service.add(Numbers("numbers", items))
    service.add(AddOne("add_one", inputs={"in": int}, outputs={"out": int}))
    service.add(
        EvenOdd("even_odd", inputs={"in": int}, outputs={"even": int, "odd": int})
    )
    sink = service.add(Count("count", inputs={"even": int, "odd": int}))
    for source, target in [
        ("numbers.out", "add_one.in"),
        ("add_one.out", "even_odd.in"),
        ("even_odd.even", "count.even"),
        ("even_odd.odd", "count.odd"),
    ]:
        service.connect(source, target, buffer_size=BUFFER)
    await service.run()
    return sink.received


def runtime_traced(ratio: float) -> Callable[[int], Awaitable[int]]:
    """``runtime`` with tracing on: a span per component per item, ``ratio`` of the
    traces sampled."""

    async def traced(items: int) -> int:
        off = tracing_on(ratio)
        try:
            return await runtime(items)
        finally:
            off()

    traced.__name__ = "runtime_traced"
    return traced


def measure(pipeline: Callable[[int], Awaitable[int]], items: int) -> float:
    """Items per second of CPU time for one run.

    CPU time rather than wall time, so that other load on the machine does not
    skew the ratios (the pipelines do no I/O: uncontended, the two are equal).
    """
    gc.collect()
    started = time.process_time()
    received = anyio.run(pipeline, items)
    elapsed = time.process_time() - started
    if received != items:
        raise SystemExit(f"{pipeline.__name__}: {received} of {items} arrived")
    return items / elapsed


def main() -> None:
    """Measure every pipeline, best of the rounds, and print the ratios."""
    args, ratio = ratio_argument(sys.argv[1:])
    items = int(args[0]) if args else 200_000
    rounds = int(args[1]) if len(args) > 1 else 3
    pipelines = {
        "naive": (naive, max(items // 10, 1)),
        "nowait": (nowait, items),
        "nowait+user": (nowait_user, items),
        "runtime": (runtime, items),
    }
    if ratio is not None:
        pipelines["runtime+tracing"] = (runtime_traced(ratio), items)
    results = dict.fromkeys(pipelines, 0.0)
    for _ in range(rounds):  # interleaved, so a busy moment hits every pipeline
        for name, (pipeline, count) in pipelines.items():
            results[name] = max(results[name], measure(pipeline, count))
    for name, rate in results.items():
        print(f"{name:>12}: {rate:12,.0f} items/s")
    for name in ("naive", "nowait", "nowait+user"):
        print(f"runtime / {name:<12}: {results['runtime'] / results[name]:6.2f}x")
    if "runtime+tracing" in results:  # CPU per item, on against off
        ratio = results["runtime"] / results["runtime+tracing"]
        print(f"tracing on / off (CPU per item): {ratio:6.2f}x")


if __name__ == "__main__":
    main()
