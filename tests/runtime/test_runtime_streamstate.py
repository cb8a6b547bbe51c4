"""The canary for anyio's private memory-stream state (``runtime.streamstate``).

The batch loops read anyio's stream state, which is not public API. If an anyio
upgrade changes it, ``state_of`` gives None and the loops fall back to the per-item
calls: correct, but slower, and silent. This test is what is not silent.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from runtime.streamstate import StreamClosed, put, state_of, take

pytestmark = pytest.mark.anyio


def stream(
    size: int,
) -> tuple[MemoryObjectSendStream[Any], MemoryObjectReceiveStream[Any]]:
    return anyio.create_memory_object_stream[Any](size)


def test_the_installed_anyio_has_the_state_the_batch_loops_read() -> None:
    sender, receiver = stream(4)

    state = state_of(sender, receiver)

    assert state is not None, f"anyio {version('anyio')}: its stream state changed"
    assert state.max_buffer_size == 4 and not state.buffer


def test_a_state_of_another_shape_is_refused() -> None:
    class Sender:
        _state = object()

        def send_nowait(self, item: Any) -> None:
            raise AssertionError("never sent to")

    class Receiver:
        _state = Sender._state

    assert state_of(Sender(), Receiver()) is None  # type: ignore[arg-type]


async def test_take_moves_waiting_senders_into_the_room_it_frees_in_order() -> None:
    sender, receiver = stream(2)
    state = state_of(sender, receiver)
    assert state is not None
    sender.send_nowait(0)
    sender.send_nowait(1)
    async with anyio.create_task_group() as tasks:
        for late in (2, 3, 4):
            tasks.start_soon(sender.send, late)
            await anyio.wait_all_tasks_blocked()

        assert take(state, 2) == [0, 1]
        assert list(state.buffer) == [2, 3]  # the first two waiters, in order
        assert take(state, 5) == [2, 3]
    assert take(state, 5) == [4]


def test_put_fills_up_to_the_bound_and_says_where_it_stopped() -> None:
    sender, receiver = stream(3)
    state = state_of(sender, receiver)
    assert state is not None

    assert put(state, sender.send_nowait, [0, 1, 2, 3, 4], 0) == 3
    assert [receiver.receive_nowait() for _ in range(3)] == [0, 1, 2]


def test_put_into_a_closed_stream_names_the_first_item_refused() -> None:
    sender, receiver = stream(3)
    state = state_of(sender, receiver)
    assert state is not None
    receiver.close()

    with pytest.raises(StreamClosed) as refused:
        put(state, sender.send_nowait, [7, 8], 0)

    assert refused.value.index == 0
