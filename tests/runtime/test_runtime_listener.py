"""The socket a service listens on: the send buffer its connections inherit."""

from __future__ import annotations

import socket

import pytest
import runtime
from pydantic import ValidationError
from runtime.listener import listen


def _accepted_send_buffer(send_buffer: int | None) -> int:
    server = listen("127.0.0.1", range(0, 1), send_buffer=send_buffer)
    with server, socket.create_connection(server.getsockname()[:2]):
        accepted, _ = server.accept()
        with accepted:
            return accepted.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)


def test_every_accepted_connection_gets_the_send_buffer_asked_for() -> None:
    # Linux keeps twice the figure asked for (half of it for its bookkeeping)
    assert _accepted_send_buffer(65536) == 2 * 65536


def test_a_send_buffer_too_small_to_be_one_is_refused() -> None:
    with pytest.raises(ValidationError, match="send_buffer_bytes"):
        runtime.ServiceSettings(send_buffer_bytes=100)
