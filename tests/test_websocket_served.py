"""Live clients against the running service, in its own process, with the
``websockets`` client library (issue #19): many readers get every item in order
while one that reads nothing is dropped; a sender faster than the pipeline is held
back and loses nothing. No figure of time is asserted (bench/websocket.py measures
the latency ratio)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.websocket import BOOK_BUFFER, SEND_BUFFER, fan_out, metric, send, served
from tests.redisenv import free_port

CLIENTS = 200
ITEMS = 10_000
LIVE = '{component="live"}'


@pytest.mark.timeout(900)  # 2 million frames on a small shared machine
def test_200_clients_get_10000_items_in_order_while_a_non_reader_is_dropped() -> None:
    port = free_port()
    # a bounded kernel buffer: left to the kernel, it may take in all 10,000 frames
    with served(port, "--send-buffer", str(SEND_BUFFER)):
        _, received, sleeper = asyncio.run(fan_out(port, CLIENTS, ITEMS, sleeper=True))
        dropped = metric(port, f"portwright_websocket_slow_disconnected_total{LIVE}")
        refused = metric(port, f"portwright_websocket_refused_total{LIVE}")

    expected = list(range(ITEMS))
    assert len(received) == CLIENTS
    for client in received:  # every item, once, in order; nobody closed
        assert client.seqs == expected
        assert client.close_code is None
    assert sleeper is not None
    code, frames = sleeper
    assert code == 1008  # policy: too slow
    assert frames < ITEMS
    assert (dropped, refused) == (1, 0)


def test_a_fast_sender_is_held_back_and_every_item_arrives_once(
    tmp_path: Path,
) -> None:
    items = 3000
    record = tmp_path / "book.txt"
    port = free_port()

    async def send_and_watch() -> list[float]:
        # the sender is done once its frames are in the kernel's buffers; watch
        # until the sink has taken every one of them
        sending = asyncio.create_task(send(f"ws://127.0.0.1:{port}/feed", items))
        ahead: list[float] = []
        taken = 0.0
        for _ in range(6000):  # a minute at most
            read = metric(
                port, 'portwright_websocket_frames_in_total{component="feed"}'
            )
            taken = metric(
                port, 'portwright_messages_in_total{component="book",port="in"}'
            )
            ahead.append(read - taken)
            if taken == items and sending.done():
                break
            await asyncio.sleep(0.01)
        await sending
        assert taken == items
        return ahead

    with served(port, "--slow-ms", "1", "--record", str(record)):
        ahead = asyncio.run(send_and_watch())
    # the server never read further ahead of the sink than the buffer between them
    # (plus the item the sink holds and the frame being handed over): the rest
    # waited in the socket, where TCP held the sender back
    assert max(ahead) <= BOOK_BUFFER + 2
    assert max(ahead) > 0  # it was ahead: the sender was faster than the sink
    seqs = [int(line) for line in record.read_text().split()]
    assert seqs == list(range(items))
