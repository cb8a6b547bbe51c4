"""The one place that reads anyio's private memory-stream state, and checks it first.

anyio's public API moves one item per call. The runtime's hot loops move whole
batches (``ports.Connection.take`` and ``put``, the source loop of
``components.Source``), so they work on the stream's shared state directly: its
buffer, its waiting senders and receivers. That state is not public API, so:

- ``StreamState`` names every part of it the runtime uses, and nothing else may
  reach past it;
- ``state_of`` checks, once per stream, that the installed anyio has that shape and
  that an item sent with the public API shows up in that buffer; anything else gives
  ``None`` and the callers fall back to the per-item calls;
- ``tests/runtime/test_runtime_streamstate.py`` is the canary: it fails when an anyio
  upgrade changes the shape, before the fallback silently costs the speed.

Either way a stream never holds more than its ``max_buffer_size`` items, a waiting
receiver is handed its item and woken, and waiting senders are moved into the room a
batch frees, in the order they came.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from itertools import islice
from typing import Any, Protocol, TypeVar, cast

from anyio import BrokenResourceError, Event, WouldBlock
from anyio.streams.memory import (
    MemoryObjectReceiveStream,
    MemoryObjectSendStream,
    MemoryObjectStreamStatistics,
)

__all__ = ["StreamClosed", "StreamState", "put", "state_of", "take"]

T = TypeVar("T")


class StreamClosed(BrokenResourceError):
    """``put`` found the stream closed; ``index``: the first item not delivered."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


class StreamState(Protocol[T]):
    """The parts of anyio's ``MemoryObjectStreamState`` the runtime uses."""

    buffer: deque[T]
    max_buffer_size: float
    open_receive_channels: int
    #: the tasks waiting in ``send``, each with the item it waits to deliver
    waiting_senders: OrderedDict[Event, T]
    waiting_receivers: OrderedDict[Event, Any]


def state_of(
    sender: MemoryObjectSendStream[T], receiver: MemoryObjectReceiveStream[T]
) -> StreamState[T] | None:
    """The stream's shared state, if ``take`` and ``put`` can work on it; else None.

    Call it on a new, empty stream: it sends and receives one probe item.
    """
    try:
        state: Any = getattr(sender, "_state")  # noqa: B009 (private: checked here)
        if getattr(receiver, "_state") is not state:  # noqa: B009
            return None
        buffer = state.buffer
        shaped = (
            isinstance(buffer, deque)
            and isinstance(state.waiting_senders, OrderedDict)
            and isinstance(state.waiting_receivers, OrderedDict)
            and isinstance(state.max_buffer_size, int | float)
            and isinstance(state.open_receive_channels, int)
            and isinstance(receiver.statistics(), MemoryObjectStreamStatistics)
        )
        if not shaped or buffer:
            return None
        probe: Any = (0.0, None)
        sender.send_nowait(probe)
        seen = len(buffer) == 1 and buffer[0] is probe
        taken = receiver.receive_nowait()
        if not seen or taken is not probe or buffer:
            return None
    except Exception:
        return None
    return cast("StreamState[T]", state)


def take(state: StreamState[T], limit: int) -> list[T]:
    """Up to ``limit`` buffered items, oldest first, without waiting.

    The room this frees goes to waiting senders, in the order they came (as
    ``limit`` calls of ``receive_nowait`` would do).
    """
    buffer = state.buffer
    if len(buffer) <= limit:
        batch = list(buffer)
        buffer.clear()
    else:
        popleft = buffer.popleft
        batch = [popleft() for _ in range(limit)]
    senders = state.waiting_senders
    if senders:
        room = state.max_buffer_size - len(buffer)
        while senders and room > 0:
            event, item = senders.popitem(last=False)
            buffer.append(item)
            event.set()
            room -= 1
    return batch


def put(
    state: StreamState[T],
    send_nowait: Callable[[T], None],
    items: list[T],
    start: int,
) -> int:
    """Put ``items[start:]`` into the stream without waiting, as far as they fit.

    Returns the index of the first item that did not fit. The first item, and any
    while a receiver waits, go through ``send_nowait`` (anyio's own): it hands the
    item to a waiting receiver and wakes it, and raises if the stream is closed
    (``StreamClosed``, with the index of the item it refused).
    """
    count = len(items)
    while start < count and (start == 0 or state.waiting_receivers):
        try:
            send_nowait(items[start])
        except WouldBlock:
            return start
        except BrokenResourceError as exc:
            raise StreamClosed(start) from exc
        start += 1
    buffer = state.buffer
    room = state.max_buffer_size - len(buffer)
    if room >= count - start:
        buffer.extend(islice(items, start, None) if start else items)
        return count
    if room > 0:
        room = int(room)
        buffer.extend(islice(items, start, start + room))
        start += room
    return start
