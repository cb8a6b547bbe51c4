"""What the runtime knows about the request, or the message, being handled now.

Every HTTP request gets a ``RequestContext``: its correlation id (the client's
``X-Correlation-ID`` when it looks like an id, else one made here) and the client's
address. The address is the connection's peer, unless that peer is a trusted proxy:
then it is read from ``X-Forwarded-For`` (the last address that is not itself a
trusted proxy). Trusting the header from anyone would let any client choose its own
address, and with it its own rate-limit bucket.

``RequestContextMiddleware`` sets the context for the request, returns the
correlation id in every response, and answers any exception nothing else handled
with a 500 (``on_error``), so no traceback reaches a client or an unmasked log.
The component loop sets the message being handled (``set_message``, or for a
synchronous user method the component's ``handling``, which ``track_handling`` makes
visible to ``current_message``), so that every log line written for it carries its
ids (``log_context``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .envelope import Envelope, uuid7

__all__ = [
    "CORRELATION_HEADER",
    "RequestContext",
    "RequestContextMiddleware",
    "TrustedProxies",
    "current_message",
    "current_request",
    "log_context",
    "set_message",
    "track_handling",
    "valid_correlation_id",
]

CORRELATION_HEADER = "x-correlation-id"
_CORRELATION_HEADER = CORRELATION_HEADER.encode()
_FORWARDED_HEADER = b"x-forwarded-for"
#: An incoming correlation id is kept only if it looks like an id, so that a client
#: cannot put arbitrary text into every log line.
_CORRELATION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_request: ContextVar[RequestContext | None] = ContextVar(
    "portwright_request", default=None
)
_message: ContextVar[Envelope | None] = ContextVar("portwright_message", default=None)
_handling: ContextVar[Callable[[], Envelope | None] | None] = ContextVar(
    "portwright_handling", default=None
)

#: Make ``envelope`` the message being handled in this task (the component loop).
set_message = _message.set


def track_handling(handling: Callable[[], Envelope | None]) -> None:
    """Let ``current_message()`` in this task report what ``handling()`` returns.

    For a loop that runs synchronous user methods: it only updates what
    ``handling()`` reads per message (a plain attribute), which costs less than
    setting the context variable for each one.
    """
    _handling.set(handling)


def current_request() -> RequestContext | None:
    """The HTTP request being handled in this task, if any."""
    return _request.get()


def current_message() -> Envelope | None:
    """The message being handled, inside a sink's ``consume``, an async user method,
    any component with ``tracks_message = True``, or one fed over Redis; else None."""
    handling = _handling.get()
    if handling is not None and (envelope := handling()) is not None:
        return envelope
    return _message.get()


def log_context(handling: Envelope | None = None) -> dict[str, str]:
    """The ids (and client) a log line written now belongs to.

    ``handling`` is the message a synchronous user method handles, when the
    context variable is not set for it.
    """
    fields: dict[str, str] = {}
    envelope = _message.get() or handling
    if envelope is not None:
        fields["message_id"] = envelope.id
        fields["correlation_id"] = envelope.correlation_id
    request = _request.get()
    if request is not None:
        fields.setdefault("correlation_id", request.correlation_id)
        fields["client"] = request.client
    return fields


def valid_correlation_id(value: str | None) -> str | None:
    """``value`` if it is 1-128 of ``A-Z a-z 0-9 . _ : -``, else None."""
    if value is not None and _CORRELATION_ID.fullmatch(value):
        return value
    return None


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The proxies whose ``X-Forwarded-For`` is believed; nobody else's is."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(network, strict=False) for network in networks
        )

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: Address | None) -> bool:
        """Whether ``address`` is one of the trusted proxies."""
        return address is not None and any(
            address in network for network in self.networks
        )

    def client(self, peer: str | None, forwarded: str | None) -> str:
        """The client's address, for a connection from ``peer``.

        Walks ``X-Forwarded-For`` from the right (the hop nearest to us) while the
        address that handed the request on is a trusted proxy; the first address
        that is not, or the last one that could be read, is the client.
        """
        if peer is None:
            return "unknown"
        if not self.networks or not forwarded:
            return peer
        current = _address(peer)
        client = peer
        for hop in reversed(forwarded.split(",")):
            if not self.trusts(current):
                break
            address = _address(hop)
            if address is None:
                break
            current, client = address, str(address)
        return client


class RequestContext:
    """One HTTP request's correlation id and client address (both made on demand)."""

    __slots__ = ("_client", "_correlation_id", "_forwarded", "_peer", "_trusted")

    def __init__(
        self,
        trusted: TrustedProxies,
        peer: str | None,
        forwarded: str | None,
        correlation_id: str | None,
    ) -> None:
        self._trusted = trusted
        self._peer = peer
        self._forwarded = forwarded
        self._correlation_id = correlation_id
        self._client: str | None = None

    @classmethod
    def of(cls, scope: Scope, trusted: TrustedProxies) -> RequestContext:
        """The context of the ASGI request ``scope``."""
        correlation = forwarded = None
        for key, value in scope.get("headers", ()):
            if key == _CORRELATION_HEADER:
                correlation = valid_correlation_id(value.decode("latin-1"))
            elif key == _FORWARDED_HEADER:
                text = value.decode("latin-1")
                forwarded = text if forwarded is None else f"{forwarded},{text}"
        peer = scope.get("client")
        return cls(trusted, peer[0] if peer else None, forwarded, correlation)

    @property
    def correlation_id(self) -> str:
        """The client's correlation id, or one made for this request (a UUID v7)."""
        if self._correlation_id is None:
            self._correlation_id = str(uuid7())
        return self._correlation_id

    @property
    def known_correlation_id(self) -> str | None:
        """The client's correlation id, or the one made already; None if neither."""
        return self._correlation_id

    def adopt(self, correlation_id: str) -> None:
        """Use ``correlation_id`` (a new message's id) when the client sent none."""
        if self._correlation_id is None:
            self._correlation_id = correlation_id

    @property
    def client(self) -> str:
        """The client's address (see ``TrustedProxies.client``)."""
        if self._client is None:
            self._client = self._trusted.client(self._peer, self._forwarded)
        return self._client


class RequestContextMiddleware:
    """Sets the ``RequestContext``, returns the correlation id, answers crashes 500.

    ``on_error(exc)`` makes the answer to an exception nothing else handled (and
    logs it); it is sent if the response has not started. The exception goes no
    further: the server would log its traceback unmasked.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        trusted: TrustedProxies,
        on_error: Callable[[Exception], Response],
    ) -> None:
        self.app = app
        self.trusted = trusted
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        context = RequestContext.of(scope, self.trusted)
        token = _request.set(context)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers: list[Any] = list(message.get("headers", ()))
                if not any(key.lower() == _CORRELATION_HEADER for key, _ in headers):
                    value = context.correlation_id.encode("latin-1")
                    headers.append((_CORRELATION_HEADER, value))
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            response = self.on_error(exc)
            if not started:
                await response(scope, receive, send_with_id)
        finally:
            _request.reset(token)
