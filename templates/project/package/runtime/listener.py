"""The socket a process serves on: one port, or the first free port of a range.

Replicas started with the same command on one host cannot share a port and still be
told apart (``SO_REUSEPORT`` would share it, but then each scrape of ``/metrics``
reaches whichever replica the kernel picks). So ``--port 8001-8009`` takes the first
port of the range that nobody listens on: the first replica gets 8001, the next 8002,
and each says where it listens (its log, and the replica list in Redis, which
``python -m <service> replicas`` prints and Prometheus can read).
"""

from __future__ import annotations

import errno
import socket

from .errors import SettingsError

__all__ = ["listen", "parse_ports", "url_of"]


def parse_ports(text: str) -> range:
    """``"8001"`` -> ``range(8001, 8002)``; ``"8001-8009"`` -> the nine ports."""
    first, dash, last = text.partition("-")
    try:
        low = int(first)
        high = int(last) if dash else low
    except ValueError:
        low = high = -1
    if not (0 <= low <= high <= 65535) or (low == 0 and high != 0):
        raise SettingsError(
            f"port {text!r} is not a port (0-65535) or a range of them (8001-8009)"
        )
    return range(low, high + 1)


def listen(
    host: str, ports: range, backlog: int = 2048, send_buffer: int | None = None
) -> socket.socket:
    """A socket listening on ``host`` at the first free port of ``ports``.

    ``send_buffer`` (bytes) fixes the kernel's send buffer of every connection it
    accepts (they inherit it), instead of letting the kernel grow it to
    ``net.ipv4.tcp_wmem``'s largest (4 MiB by default): what a client that stops
    reading can hold in the kernel before the service sees its writes wait. Linux
    doubles the figure for its own bookkeeping.

    Raises ``SettingsError`` when every port is taken, or the host cannot be used.
    """
    for port in ports:
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )[0]
        except socket.gaierror as exc:
            raise SettingsError(f"cannot listen on {host!r}: {exc}") from None
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if send_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        try:
            sock.bind(address)
            # listen here, not later: two replicas starting together may both bind
            # the port (SO_REUSEADDR), but only one can listen on it
            sock.listen(backlog)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                continue
            raise SettingsError(f"cannot listen on {host}:{port}: {exc}") from None
        sock.set_inheritable(True)
        return sock
    where = str(ports[0]) if len(ports) == 1 else f"{ports[0]}-{ports[-1]}"
    raise SettingsError(
        f"port {where} on {host} is in use"
        + ("" if len(ports) == 1 else " (every port of the range)")
        + "; give a free port, or a range (--port 8001-8009) to run replicas"
    )


def url_of(sock: socket.socket) -> str:
    """``http://host:port`` of a listening socket, as others can reach it.

    A socket on every address (``0.0.0.0``, ``::``) is named by the host's name.
    """
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"
