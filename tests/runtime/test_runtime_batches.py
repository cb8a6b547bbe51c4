"""Batches: the loop takes what is buffered and sends what it made in one go.

Every behaviour here runs twice: on the batched path (what the installed anyio
gets) and on the per-item fallback (what a memory stream whose internals do not
look as expected gets: batches taken with one ``receive_nowait`` per message and
sent with one ``send_nowait`` per message). Both must give the same results.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import runtime
from runtime.envelope import Envelope

from tests.runtime.support import Gate, Numbers, Recorder, wait

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["batched", "per_item"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test on the batched path, then on the per-item fallback."""
    if request.param == "per_item":
        monkeypatch.setattr(runtime.ports, "state_of", lambda sender, receiver: None)
    return str(request.param)


@pytest.fixture
def takes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    """Every batch the loops took (``Connection.take``): ``(component, size)``."""
    sizes: list[tuple[str, int]] = []
    take = runtime.Connection.take

    def counting(connection: runtime.Connection, limit: int) -> list[Any]:
        batch = take(connection, limit)
        if batch:
            sizes.append((connection.target.component, len(batch)))
        return batch

    monkeypatch.setattr(runtime.Connection, "take", counting)
    yield sizes


class Scale(runtime.Transformer):
    """x10; fails on 3, drops 5."""

    def transform(self, item: int) -> int | None:
        if item == 3:
            raise ValueError("three")
        return None if item == 5 else item * 10


# -- the fast path is really used ----------------------------------------------------


async def test_the_installed_anyio_takes_the_batched_path(
    takes: list[tuple[str, int]],
) -> None:
    service = runtime.Service("batches")
    service.add(Numbers("numbers", 1000))
    service.add(Scale("scale"))
    sink = service.add(Recorder("sink"))
    service.connect("numbers.out", "scale.in")
    service.connect("scale.out", "sink.in")
    await service.run()

    assert all(connection.batched for connection in service.connections)
    assert service.components["numbers"].outputs["out"].batched
    assert service.components["scale"].outputs["out"].batched
    assert len(sink.items) == 998
    # both loops took what was buffered through take(), many at a time (only an
    # item handed to a loop waiting for it comes through receive())
    for component, count in (("scale", 1000), ("sink", 998)):
        sizes = [size for name, size in takes if name == component]
        assert count - len(sizes) <= sum(sizes) <= count
        assert max(sizes) > 1


async def test_a_drop_policy_or_a_fan_out_is_not_sent_in_bulk() -> None:
    service = runtime.Service("batches")
    service.add(Numbers("numbers", 3))
    service.add(Scale("scale"))
    service.tap("numbers.out", overflow="drop_oldest")
    service.tap("scale.out")
    service.tap("scale.out")
    async with service.running():
        assert all(connection.batched for connection in service.connections)
        assert not service.components["numbers"].outputs["out"].batched
        assert not service.components["scale"].outputs["out"].batched


# -- one batch, message by message ---------------------------------------------------


async def test_a_failure_in_a_batch_loses_none_of_the_rest(
    path: str, takes: list[tuple[str, int]]
) -> None:
    service = runtime.Service("batches")
    service.add(
        Scale(
            "scale",
            outputs={"out": int, "errors": runtime.ErrorRecord},
        )
    )
    sink = service.add(Recorder("sink"))
    errors = service.tap("scale.errors")
    service.connect("scale.out", "sink.in")
    inlet = service.inlet("scale.in", buffer_size=64)
    async with service.running():
        sent = [inlet.send_nowait(number) for number in range(10)]

    assert sink.items == [0, 10, 20, 40, 60, 70, 80, 90]
    [record] = errors.items
    assert (record.error_type, record.message_id) == ("ValueError", sent[3].id)
    assert errors.envelopes[0].causation_id == sent[3].id
    port = service.metrics.snapshot()["scale"]["in"]
    assert (port["messages"], port["dropped"], port["errors"]) == (10, 1, 1)
    assert (port["age"]["count"], port["latency"]["count"]) == (10, 9)
    # sent without a pause: taken as one batch (the first may come alone, handed
    # to the loop that was waiting for it)
    assert [size for name, size in takes if name == "scale"] in ([10], [9])


async def test_a_message_from_another_process_derives_a_stable_id(path: str) -> None:
    # One whose ids were fixed elsewhere (Redis): what is made from it gets the
    # same id each time it comes, whichever loop handles it.
    service = runtime.Service("batches")
    service.add(Scale("scale"))
    out = service.tap("scale.out")
    inlet = service.inlet("scale.in")
    origin = runtime.envelope.Origin("01890a5d-ac96-774b-bcce-b302099a8057", None)
    async with service.running():
        [connection] = inlet.outputs["out"].connections
        for item in (1, 2):
            now = time.monotonic()
            assert connection.offer((now, Envelope(item, 0, now, None, origin)))
        inlet.send_nowait(4)

    assert out.items == [10, 20, 40]
    first, second, plain = out.envelopes
    assert first.id == second.id == runtime.envelope.stable_id(origin.id, "scale.out")
    assert first.causation_id == origin.id
    assert plain.id != first.id and not plain.stable


class Spread(runtime.Router):
    """0 nowhere, multiples of 3 to both, 7 to an unknown port, else by parity."""

    def route(self, item: int) -> str | list[str] | None:
        if item == 0:
            return None
        if item == 7:
            return "nope"
        if item % 3 == 0:
            return ["even", "odd"]
        return "even" if item % 2 == 0 else "odd"


async def test_a_router_batch_reaches_every_named_output(path: str) -> None:
    service = runtime.Service("batches")
    service.add(Spread("spread", outputs={"even": int, "odd": int}, burst_limit=4))
    even = service.tap("spread.even")
    odd = service.tap("spread.odd", overflow="drop_newest")
    inlet = service.inlet("spread.in")
    async with service.running():
        sent = [inlet.send_nowait(number) for number in range(13)]

    assert even.items == [2, 3, 4, 6, 8, 9, 10, 12]
    assert odd.items == [1, 3, 5, 6, 9, 11, 12]
    # the router forwards the message itself
    assert even.envelopes[0].id == sent[2].id
    port = service.metrics.snapshot()["spread"]["in"]
    assert (port["messages"], port["dropped"], port["errors"]) == (13, 1, 1)


async def test_a_filter_keeps_what_is_truthy(path: str) -> None:
    class Truthy(runtime.Filter):
        def keep(self, item: Any) -> Any:
            return item

    service = runtime.Service("batches")
    service.add(Truthy("truthy"))
    kept = service.tap("truthy.out")
    inlet = service.inlet("truthy.in")
    items: list[Any] = [1, 0, True, False, "yes", "", [1], [], None, 2.5]
    async with service.running():
        for item in items:
            inlet.send_nowait(item)

    assert kept.items == [1, True, "yes", [1], 2.5]
    assert service.metrics.snapshot()["truthy"]["in"]["dropped"] == 5


async def test_a_transformer_fans_out_every_new_message(path: str) -> None:
    service = runtime.Service("batches")
    service.add(Numbers("numbers", 50))
    service.add(Scale("scale"))
    left = service.tap("scale.out")
    right = service.tap("scale.out", buffer_size=2)
    service.connect("numbers.out", "scale.in", buffer_size=4)
    await service.run()

    expected = [n * 10 for n in range(50) if n not in (3, 5)]
    assert left.items == right.items == expected
    assert [e.id for e in left.envelopes] == [e.id for e in right.envelopes]
    assert service.metrics.snapshot()["scale"]["out"]["messages"] == 48


# -- bounded --------------------------------------------------------------------------


async def test_a_stage_holds_at_most_its_buffers_and_one_batch(path: str) -> None:
    service = runtime.Service("batches")
    service.add(Numbers("numbers", 1000))
    service.add(Scale("scale", burst_limit=16))
    gate = service.add(Gate("gate"))
    service.connect("numbers.out", "scale.in", buffer_size=8)
    service.connect("scale.out", "gate.in", buffer_size=8)
    async with service.running():
        await wait(gate.holding)
        await anyio.sleep(0.1)  # let everything upstream fill up and stall
        snapshot = service.metrics.snapshot()
        for connection in service.connections:
            assert connection.depth() <= 8
        taken = snapshot["scale"]["in"]["messages"]
        # the gate's buffer, the item it holds, at most one batch in the scale
        assert taken <= 8 + 1 + 16
        # the scale's buffer and the one item the source waits to send
        assert snapshot["numbers"]["out"]["messages"] <= taken + 8 + 1
        assert snapshot["numbers"]["out"]["blocked_seconds"] > 0
        gate.release.set()

    # the source stopped with the service: what it sent arrived, in order
    expected = [n * 10 for n in range(1000) if n not in (3, 5)]
    assert len(gate.items) >= taken - 2
    assert gate.items == expected[: len(gate.items)]


# -- the stream operations ----------------------------------------------------------


def _connection(buffer_size: int) -> runtime.Connection:
    source = runtime.OutputPort("a", "out", int)
    target = runtime.InputPort("b", "in", int)
    connection = runtime.Connection(
        source, target, buffer_size=buffer_size, overflow="block"
    )
    source.connections.append(connection)
    target.connections.append(connection)
    connection.open()
    assert connection.batched
    return connection


def _entries(*items: int) -> list[Any]:
    return [(0.0, Envelope.start(item, 0.0)) for item in items]


def _items(entries: list[Any]) -> list[int]:
    return [envelope.item for _, envelope in entries]


async def test_put_wakes_a_waiting_receiver_and_buffers_the_rest() -> None:
    connection = _connection(8)
    assert connection.receiver is not None
    received: list[Any] = []

    async def receive() -> None:
        assert connection.receiver is not None
        received.append(await connection.receiver.receive())

    async with anyio.create_task_group() as group:
        group.start_soon(receive)
        while not connection.receiver.statistics().tasks_waiting_receive:
            await anyio.lowlevel.checkpoint()
        assert connection.put(_entries(1, 2, 3), 0) == 3

    assert _items(received) == [1]
    assert _items(connection.take(10)) == [2, 3]
    connection.close()


async def test_put_fills_the_room_and_send_all_waits_for_the_rest() -> None:
    connection = _connection(3)
    entries = _entries(1, 2, 3, 4, 5)
    assert connection.put(entries, 0) == 3
    assert connection.depth() == 3  # never more than buffer_size
    async with anyio.create_task_group() as group:
        group.start_soon(connection.send_all, entries[3:])
        await anyio.sleep(0.01)
        assert connection.depth() == 3
        assert _items(connection.take(2)) == [1, 2]
        # 3, and 4 moved in from the waiting sender (which then puts 5)
        assert connection.depth() == 2
    assert _items(connection.take(10)) == [3, 4, 5]
    assert connection.source.blocked_seconds > 0
    connection.close()


async def test_take_moves_waiting_senders_into_the_room_in_order() -> None:
    connection = _connection(2)
    assert connection.put(_entries(1, 2), 0) == 2
    assert connection.receiver is not None
    async with anyio.create_task_group() as group:
        for item in (3, 4, 5):
            group.start_soon(connection.send, _entries(item)[0])
            while connection.receiver.statistics().tasks_waiting_send < item - 2:
                await anyio.lowlevel.checkpoint()
        assert _items(connection.take(2)) == [1, 2]
        # the room went to the first two waiting senders; the third still waits
        assert connection.receiver.statistics().tasks_waiting_send == 1
        assert _items(connection.take(1)) == [3]
        assert _items(connection.take(5)) == [4, 5]
    assert connection.take(5) == []
    connection.close()


async def test_put_counts_entries_for_a_closed_receiver_as_dropped() -> None:
    connection = _connection(4)
    assert connection.receiver is not None
    connection.receiver.close()
    assert connection.put(_entries(1, 2, 3), 0) == 3
    assert connection.source.dropped == 3
    connection.close()


# -- metrics and the message being handled --------------------------------------------


async def test_latency_is_recorded_per_message_in_a_batch(path: str) -> None:
    class Sleepy(runtime.Sink):
        def consume(self, item: int) -> None:
            if item % 4 == 0:
                time.sleep(0.002)

    service = runtime.Service("batches")
    service.add(Sleepy("sleepy"))
    inlet = service.inlet("sleepy.in")
    async with service.running():
        for number in range(20):
            inlet.send_nowait(number)

    latency = service.metrics.snapshot()["sleepy"]["in"]["latency"]
    assert latency["count"] == 20
    # the five sleepers took 2 ms or more each: none of them is under 1 ms
    assert latency["buckets"]["0.001"] <= 15
    assert latency["sum"] >= 5 * 0.002


class Spy(runtime.Transformer):
    """Records ``current_message()`` as its user code sees it."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.seen: list[Envelope | None] = []

    def transform(self, item: int) -> int:
        self.seen.append(runtime.current_message())
        return item


class TrackingSpy(Spy):
    tracks_message = True


class SpySink(runtime.Sink):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.seen: list[Envelope | None] = []

    def consume(self, item: int) -> None:
        self.seen.append(runtime.current_message())


async def test_current_message_is_the_one_a_sync_method_handles(path: str) -> None:
    service = runtime.Service("batches")
    tracking = service.add(TrackingSpy("tracking"))
    plain = service.add(Spy("plain"))
    sink = service.add(SpySink("sink"))
    service.connect("tracking.out", "plain.in")
    service.connect("plain.out", "sink.in")
    inlet = service.inlet("tracking.in")
    async with service.running():
        sent = [inlet.send_nowait(number) for number in range(5)]

    assert [envelope and envelope.id for envelope in tracking.seen] == [
        envelope.id for envelope in sent
    ]
    assert plain.seen == [None] * 5  # not tracked: a transformer pays nothing
    # the sink handles what plain made from what tracking made from each sent one
    assert [envelope and envelope.item for envelope in sink.seen] == list(range(5))
    assert [envelope and envelope.correlation_id for envelope in sink.seen] == [
        envelope.id for envelope in sent
    ]
    assert runtime.current_message() is None
