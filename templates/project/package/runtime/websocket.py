"""Live clients: ``WebSocketOut`` pushes items to browsers and programs,
``WebSocketIn`` takes items from them, one text frame each.

One ``LiveClient`` per connection (as Starlette's ``WebSocket`` and encode's
broadcaster have it): what it is sent waits in a bounded queue of its own, drained
by its own task, so a client that reads slowly only ever fills its own queue; the
``slow_client`` policy then drops its oldest frame or closes it (1008). Close codes
are RFC 6455's: 1001 going away (the service stops), 1008 policy (credentials, a
slow or silent client), 1013 try again later (``max_connections`` reached).

Credentials are the API keys of ``api_endpoint``. A program sends them as headers
on the handshake; a browser cannot set headers on a WebSocket, so a connection that
came without them must send ``{"api_key": "..."}`` as its first frame. Never in the
URL: query strings end up in access logs and proxies' logs.

A client of a ``websocket_out`` may ask for part of the stream in its query:
``?key=ACME`` for the items of one key of a keyed input (the connection's ``key``),
``?symbol=ACME`` for a ``subscribe_by`` field; a value is compared with the field as
its JSON writes it (``true``, ``2.5``, ``2026-01-02T03:04:05Z``), a text as itself.

A client must show it is alive: when ``heartbeat_s`` passes with nothing heard from
it, the server sends ``{"type": "ping"}``; a client that sends nothing (any frame,
say ``{"type": "pong"}``) before the next beat is closed (1008) and counted.
"""

from __future__ import annotations

import contextlib
import html
import json
from collections import deque
from collections.abc import (
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from datetime import UTC, datetime
from time import monotonic
from typing import Any, Literal

import anyio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import Headers
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from .auth import ApiKeyAuth, Credentials
from .component import Component, RunContext
from .components import Sink
from .context import current_message
from .envelope import Envelope, wall_time
from .errors import PayloadTooLarge, RequestError, WiringError
from .ingress import _invalid
from .ports import InputPort
from .ratelimit import RateLimit, RateLimiter, RateLimitStore, client_key

__all__ = [
    "GOING_AWAY",
    "POLICY",
    "TRY_AGAIN_LATER",
    "BroadcastPort",
    "LiveClient",
    "LiveCollector",
    "LiveCounts",
    "LiveRoute",
    "SlowClient",
    "WebSocketIn",
    "WebSocketOut",
    "live_page",
    "query_text",
]

#: RFC 6455 close codes, used for what they mean
GOING_AWAY = 1001
POLICY = 1008
TRY_AGAIN_LATER = 1013
SlowClient = Literal["drop_oldest", "disconnect"]
_PING = '{"type":"ping"}'
#: the query parameter that asks for the items of one key of a keyed input
KEY_PARAMETER = "key"
_JSONABLE: TypeAdapter[Any] = TypeAdapter(Any)
#: the longest wait for a close frame to be written behind what a slow client has
#: not read yet (the wait holds only that client's own task)
_CLOSE_WAIT_S = 10.0


class LiveCounts:
    """What one live component counts; ``/metrics`` shows them per component."""

    def __init__(self) -> None:
        self.frames_in = 0
        self.frames_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.refused = 0  # handshakes refused (max_connections, credentials, limit)
        self.slow_dropped = 0  # frames dropped for a slow client (drop_oldest)
        self.slow_disconnected = 0  # slow clients closed (disconnect)
        self.heartbeat_timeouts = 0
        self.problems = 0  # frames answered with a problem (websocket_in)


class LiveClient:
    """One connection: its bounded send queue and the task that drains it."""

    def __init__(
        self,
        websocket: WebSocket,
        route: LiveRoute,
        *,
        wants: dict[str, str] | None = None,
    ) -> None:
        self.websocket = websocket
        self.route = route
        #: field -> value a pushed item must have (``subscribe_by``; ``KEY_PARAMETER``:
        #: its input connection's key), as ``query_text`` writes it
        self.wants = wants or {}
        self.queue: deque[str] = deque()
        self.heard = True  # something came from the client since the last beat
        self.closing: tuple[int, str] | None = None
        self._ready = anyio.Event()
        self._sending: anyio.CancelScope | None = None  # while ``send_all`` runs

    def offer(self, frame: str) -> None:
        """Queue ``frame`` without waiting; a full queue applies the policy."""
        if self.closing is not None:
            return
        route = self.route
        if len(self.queue) >= route.queue_size:
            if route.slow_client == "disconnect":
                route.counts.slow_disconnected += 1
                self.close(POLICY, "too slow: the send queue is full")
                return
            self.queue.popleft()
            route.counts.slow_dropped += 1
        self.queue.append(frame)
        self._ready.set()

    def close(self, code: int, reason: str = "") -> None:
        """Close once the frames already queued are sent (``code`` 1001), or now:
        a send stuck on a client that reads nothing is abandoned."""
        if self.closing is None:
            self.closing = (code, reason)
            if code != GOING_AWAY:
                self.queue.clear()  # a refused client gets nothing more
                if self._sending is not None:
                    self._sending.cancel()
            self._ready.set()

    async def send_all(self) -> None:
        """Send queued frames until closed; then send the close frame."""
        websocket, counts = self.websocket, self.route.counts
        with anyio.CancelScope() as self._sending:
            while True:
                while self.queue:
                    frame = self.queue.popleft()
                    await websocket.send_text(frame)
                    counts.frames_out += 1
                    counts.bytes_out += len(frame)
                if self.closing is not None:
                    break
                self._ready = anyio.Event()
                if not self.queue:
                    await self._ready.wait()
        code, reason = self.closing or (GOING_AWAY, "")
        if websocket.application_state is WebSocketState.CONNECTED:
            # the close frame goes behind what the socket holds: never wait long
            # for a client that reads nothing
            with anyio.move_on_after(_CLOSE_WAIT_S):
                await websocket.close(code, reason)

    async def beat(self, every_s: float) -> None:
        """Ping a client heard from in no beat; close it when it stays silent."""
        route = self.route
        pinged = False
        while self.closing is None:
            await anyio.sleep(every_s)
            if self.heard:
                self.heard, pinged = False, False
            elif not pinged:
                self.offer(_PING)
                pinged = True
            else:
                route.counts.heartbeat_timeouts += 1
                self.close(POLICY, "no answer to the heartbeat")


class LiveRoute:
    """What both live kinds share: the route, who may connect, how many, the clients.

    ``admit`` runs the handshake checks in order (the rate limit, the connection
    count, credentials from the headers) and accepts the connection; a refused
    handshake is accepted and closed at once with its code and reason, because a
    close before accepting reaches the client as an HTTP 403 and no code.
    """

    def __init__(
        self,
        kind: str,
        name: str,
        *,
        route: str,
        max_connections: int,
        heartbeat_s: float | None,
        auth: Literal["api_key"] | None,
        rate_limit: RateLimit | None,
        queue_size: int = 1024,
        slow_client: SlowClient = "disconnect",
        limits_frames: bool = False,
    ) -> None:
        if not route.startswith("/"):
            raise WiringError(f"{kind} {name!r}: route {route!r} must start with /")
        if max_connections < 1 or queue_size < 1:
            raise WiringError(
                f"{kind} {name!r}: max_connections and queue_size must be at "
                f"least 1, got {max_connections!r} and {queue_size!r}"
            )
        if heartbeat_s is not None and heartbeat_s <= 0:
            raise WiringError(
                f"{kind} {name!r}: heartbeat must be positive, got {heartbeat_s!r}"
            )
        if auth not in (None, "api_key"):
            raise WiringError(f"{kind} {name!r}: auth {auth!r} is not 'api_key'")
        if rate_limit is not None and rate_limit.key == "api_key" and auth is None:
            raise WiringError(
                f"{kind} {name!r}: a rate limit per API key needs auth 'api_key'"
            )
        if slow_client not in ("drop_oldest", "disconnect"):
            raise WiringError(
                f"{kind} {name!r}: slow_client {slow_client!r} is not one of "
                "drop_oldest, disconnect"
            )
        self.kind = kind
        self.name = name
        self.route = route
        self.max_connections = max_connections
        self.heartbeat_s = heartbeat_s
        self.auth = auth
        self.rate_limit = rate_limit
        self.queue_size = queue_size
        self.slow_client: SlowClient = slow_client
        #: the rate limit counts frames (items sent in), not handshakes
        self.limits_frames = limits_frames
        self.counts = LiveCounts()
        self.clients: set[LiveClient] = set()
        #: who may connect; until ``protect`` gives it credentials, nobody
        self.authenticator: ApiKeyAuth | None = (
            ApiKeyAuth((), name) if auth == "api_key" else None
        )
        self.limiter: RateLimiter | None = None
        self.accepting = False
        self._gone: anyio.Event | None = None

    def protect(
        self,
        credentials: Credentials,
        store: RateLimitStore | None,
        realm: str,
        rate_limit: RateLimit | None = None,
    ) -> None:
        """Check connections against ``credentials`` and count them in ``store``."""
        if self.auth == "api_key":
            self.authenticator = ApiKeyAuth(credentials.api_keys, realm)
        if rate_limit is not None:
            self.rate_limit = rate_limit
        if self.rate_limit is not None and store is not None:
            self.limiter = store.limiter(self.name, self.rate_limit)

    async def admit(self, websocket: WebSocket) -> str | None:
        """Accept the handshake; the key the client's items are rate limited by
        (its address, or its API key's identity), or None when refused."""
        await websocket.accept()
        peer = websocket.client
        address = client_key(peer.host if peer else "unknown")
        refusal: tuple[int, str] | None = None
        identity = address
        if not self.accepting:
            refusal = (GOING_AWAY, "the service is not accepting connections")
        elif len(self.clients) >= self.max_connections:
            refusal = (TRY_AGAIN_LATER, f"at most {self.max_connections} clients")
        else:
            try:
                identity = await self._guard(websocket, address)
            except RequestError as exc:
                refusal = (POLICY, str(exc.detail)[:120])
        if refusal is not None:
            self.counts.refused += 1
            await websocket.close(*refusal)
            return None
        return identity

    async def _guard(self, websocket: WebSocket, address: str) -> str:
        limiter, authenticator = self.limiter, self.authenticator
        if self.limits_frames:
            limiter = None  # counted per frame instead (``WebSocketIn.take``)
        if limiter is not None and limiter.limit.key == "client":
            await limiter.hit(address)
        if authenticator is None:
            return address
        headers = websocket.headers
        if "authorization" not in headers and "x-api-key" not in headers:
            headers = await self._first_frame_key(websocket)
        identity = await authenticator.authenticate(headers)
        if limiter is not None and limiter.limit.key == "api_key":
            await limiter.hit(identity)
        if self.rate_limit is not None and self.rate_limit.key == "client":
            return address
        return identity

    async def _first_frame_key(self, websocket: WebSocket) -> Headers:
        """The key a browser sends as its first frame, as the headers it cannot set."""
        with anyio.move_on_after(self.heartbeat_s or 10.0):
            text = await websocket.receive_text()
            try:
                sent = json.loads(text)
            except ValueError:
                sent = None
            if isinstance(sent, dict) and isinstance(sent.get("api_key"), str):
                return Headers({"x-api-key": sent["api_key"]})
        return Headers({})

    def joined(self, client: LiveClient) -> None:
        """Count ``client`` among the connected."""
        self.clients.add(client)

    def left(self, client: LiveClient) -> None:
        """Forget ``client``; the last one to leave a stopping route says so."""
        self.clients.discard(client)
        if not self.clients and self._gone is not None:
            self._gone.set()

    async def close_all(self, timeout_s: float) -> None:
        """Close every client with 1001 once what it was sent is sent (at most
        ``timeout_s``); no new connection is accepted."""
        self.accepting = False
        for client in list(self.clients):
            client.close(GOING_AWAY, "the service is stopping")
        if self.clients:
            self._gone = anyio.Event()
            with anyio.move_on_after(timeout_s):
                await self._gone.wait()

    async def run(
        self, client: LiveClient, receive: Callable[[], Awaitable[None]]
    ) -> None:
        """Serve ``client``: its sender, its heartbeat and ``receive`` until closed."""
        self.joined(client)
        try:
            async with anyio.create_task_group() as tasks:

                async def reading() -> None:
                    # the client left (or broke the protocol): nothing left to
                    # send to, so the sender stops too
                    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                        await receive()
                    client.close(GOING_AWAY)
                    tasks.cancel_scope.cancel()

                tasks.start_soon(reading)
                if self.heartbeat_s is not None:
                    tasks.start_soon(client.beat, self.heartbeat_s)
                await client.send_all()
                tasks.cancel_scope.cancel()
        except* (WebSocketDisconnect, OSError, RuntimeError):
            pass  # the client went away while being sent to
        finally:
            self.left(client)


class BroadcastPort(InputPort):
    """An input every replica of its component reads whole: a transport between
    processes gives each replica every item (Redis: ``redis/broadcast.py``), not a
    share of them, so that a client on any replica sees the whole stream."""

    __slots__ = ()
    broadcast = True


class WebSocketOut(Sink):
    """Every item of its inputs, pushed to every connected client, in order.

    Each frame is ``{"type": "item", "id", "correlation_id", "event_time", "item"}``
    (the item as its schema's JSON). A client may ask for part of the stream with
    query parameters naming ``subscribe_by`` fields (``?symbol=ACME``), or the key
    of a keyed input (``?key=ACME``): it then gets the items whose value, as
    ``query_text`` writes it, equals the parameter. ``consume`` never waits: a slow
    client fills its own queue only.
    """

    kind = "websocket_out"
    tracks_message = True

    def __init__(
        self,
        name: str,
        *,
        route: str,
        inputs: dict[str, Any] | None = None,
        max_connections: int = 1000,
        heartbeat_s: float | None = 30.0,
        auth: Literal["api_key"] | None = None,
        rate_limit: RateLimit | None = None,
        queue_size: int = 1024,
        slow_client: SlowClient = "disconnect",
        subscribe_by: Sequence[str] = (),
        page: bool = True,
        burst_limit: int = 256,
    ) -> None:
        super().__init__(name, inputs=inputs, burst_limit=burst_limit)
        self.inputs = {
            port.name: BroadcastPort(name, port.name, port.schema)
            for port in self.inputs.values()
        }
        self.live = LiveRoute(
            self.kind,
            name,
            route=route,
            max_connections=max_connections,
            heartbeat_s=heartbeat_s,
            auth=auth,
            rate_limit=rate_limit,
            queue_size=queue_size,
            slow_client=slow_client,
        )
        self.route = route
        self.subscribe_by = tuple(subscribe_by)
        #: a GET of the route serves ``live_page`` (False: the route is a socket only)
        self.page = page
        for port in self.inputs.values():
            fields = getattr(port.schema, "model_fields", {})
            missing = [f for f in self.subscribe_by if f not in fields]
            if missing:
                raise WiringError(
                    f"websocket_out {name!r}: subscribe_by field {missing[0]!r} is "
                    f"not a field of input {port.name!r}"
                )
        self._dump = {
            port.schema: TypeAdapter(port.schema).dump_json
            for port in self.inputs.values()
        }
        self._context: RunContext | None = None
        #: (schema, key) of each keyed input, known once the service is wired
        self._keys: list[tuple[type[Any], Callable[[Any], object]]] = []

    def keyed_inputs(self) -> list[tuple[type[Any], Callable[[Any], object]]]:
        """(schema, key) of each input port fed by a keyed connection."""
        found = []
        for port in self.inputs.values():
            key = next((c.key for c in port.connections if c.key is not None), None)
            if key is not None and isinstance(port.schema, type):
                found.append((port.schema, key))
        return found

    def consume(self, item: Any) -> None:
        """Queue the item's frame for every client that wants it."""
        clients = self.live.clients
        if not clients:
            return
        envelope = current_message()
        frame = self.frame(item, envelope)
        if not self.subscribe_by and not self._keys:
            for client in clients:
                client.offer(frame)
            return
        values: dict[str, str] | None = None
        for client in clients:
            wants = client.wants
            if wants:
                if values is None:
                    values = self.values(item)
                if any(values.get(f) != v for f, v in wants.items()):
                    continue
            client.offer(frame)

    def values(self, item: Any) -> dict[str, str]:
        """What a client may filter ``item`` by: its ``subscribe_by`` fields and its
        key (``KEY_PARAMETER``), each as ``query_text`` writes it."""
        values = {f: query_text(getattr(item, f)) for f in self.subscribe_by}
        for schema, key in self._keys:
            if isinstance(item, schema):
                values[KEY_PARAMETER] = query_text(key(item))
                break
        return values

    def frame(self, item: Any, envelope: Envelope | None) -> str:
        """The text frame of one item."""
        dump = self._dump.get(type(item)) or TypeAdapter(type(item)).dump_json
        body = dump(item).decode()
        if envelope is None:
            return f'{{"type":"item","item":{body}}}'
        event_time = datetime.fromtimestamp(wall_time(envelope.created), UTC)
        return (
            f'{{"type":"item","id":"{envelope.id}",'
            f'"correlation_id":{json.dumps(envelope.correlation_id)},'
            f'"event_time":"{event_time.isoformat()}","item":{body}}}'
        )

    async def serve(self, context: RunContext) -> None:
        """Push items until the inputs end; then close every client (1001)."""
        self._keys = self.keyed_inputs()
        self.live.accepting = not context.stopping.is_set()
        await super().serve(context)
        await self.live.close_all(context.settings.drain_timeout_s)

    async def handle(self, websocket: WebSocket) -> None:
        """The route: admit the client, then push to it until it or the service
        leaves. Query parameters naming ``subscribe_by`` fields, or ``key`` for a
        keyed input, filter the stream."""
        query = websocket.query_params
        wants = {f: query[f] for f in self.subscribe_by if f in query}
        if KEY_PARAMETER in query:
            wants[KEY_PARAMETER] = query[KEY_PARAMETER]
        if await self.live.admit(websocket) is None:
            return
        if KEY_PARAMETER in wants and not self._keys:
            self.live.counts.refused += 1
            await websocket.close(
                POLICY, "?key= asks for one key of a keyed input; this one is not"
            )
            return
        client = LiveClient(websocket, self.live, wants=wants)
        counts = self.live.counts

        async def receive() -> None:
            while True:  # only heartbeat answers are expected: counted, ignored
                text = await websocket.receive_text()
                client.heard = True
                counts.frames_in += 1
                counts.bytes_in += len(text)

        await self.live.run(client, receive)


class WebSocketIn(Component):
    """Items sent by clients, one JSON text frame each, become messages on ``out``.

    Each frame is validated as ``ApiEndpoint`` validates a body; a bad frame is
    answered with the same problem shape, as a frame (``{"type": "problem",
    "frame": n, "error", "detail"}``, ``n`` counting the client's frames from 1),
    and the connection stays open. While the output is full the server stops
    reading the socket (TCP flow control slows the client); nothing accepted is
    dropped.
    """

    kind = "websocket_in"

    def __init__(
        self,
        name: str,
        *,
        route: str,
        schema: Any,
        max_payload_kb: float = 64,
        max_frame_bytes: int | None = None,
        max_connections: int = 1000,
        heartbeat_s: float | None = 30.0,
        auth: Literal["api_key"] | None = None,
        rate_limit: RateLimit | None = None,
    ) -> None:
        super().__init__(name, inputs={}, outputs={"out": schema})
        if max_payload_kb <= 0 or (max_frame_bytes is not None and max_frame_bytes < 1):
            raise WiringError(
                f"websocket_in {name!r}: max_payload_kb and max_frame_bytes must be "
                f"positive, got {max_payload_kb!r} and {max_frame_bytes!r}"
            )
        self.live = LiveRoute(
            self.kind,
            name,
            route=route,
            max_connections=max_connections,
            heartbeat_s=heartbeat_s,
            auth=auth,
            rate_limit=rate_limit,
            limits_frames=True,
        )
        self.route = route
        self.schema = schema
        #: the largest frame taken: ``max_frame_bytes`` when given (a blueprint's
        #: websocket_in says it in bytes), else ``max_payload_kb``
        self.max_payload_bytes = max_frame_bytes or int(max_payload_kb * 1024)
        self._validate_json = TypeAdapter(schema).validator.validate_json
        self._out = self.outputs["out"]

    async def serve(self, context: RunContext) -> None:
        """Take frames until the service stops; then close every client (1001)."""
        self.live.accepting = not context.stopping.is_set()
        await context.stopping.wait()
        await self.live.close_all(context.settings.drain_timeout_s)

    def request_stop(self) -> None:
        """Accept no new connection from now on."""
        self.live.accepting = False

    async def handle(self, websocket: WebSocket) -> None:
        """The route: admit the client, then take its frames until it leaves."""
        identity = await self.live.admit(websocket)
        if identity is None:
            return
        client = LiveClient(websocket, self.live)

        async def receive() -> None:
            number = 0
            while client.closing is None:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    raise WebSocketDisconnect(message.get("code", 1000))
                number += 1
                client.heard = True
                problem = await self.take(message, identity)
                if problem is not None:
                    problem["frame"] = number
                    client.offer(json.dumps(problem))

        await self.live.run(client, receive)

    async def take(
        self, message: Mapping[str, Any], identity: str
    ) -> dict[str, Any] | None:
        """Validate one frame and hand it on (waiting while the output is full);
        the problem to answer, or None when it was accepted."""
        counts = self.live.counts
        text = message.get("text")
        data = text.encode() if text is not None else message.get("bytes") or b""
        counts.frames_in += 1
        counts.bytes_in += len(data)
        try:
            if len(data) > self.max_payload_bytes:
                raise PayloadTooLarge(f"frame exceeds {self.max_payload_bytes} bytes")
            limiter = self.live.limiter
            if limiter is not None:
                await limiter.hit(identity)
            try:
                item = self._validate_json(data)
            except ValidationError as exc:
                raise _invalid(exc) from None
        except RequestError as exc:
            counts.problems += 1
            return {"type": "problem", "error": exc.code, "detail": exc.detail}
        now = monotonic()
        envelope = Envelope.start(item, now)
        pending = self._out.emit((now, envelope))
        if pending is not None:
            await pending  # not reading meanwhile: the client is held back by TCP
        return None


def query_text(value: Any) -> str:
    """``value`` as a client writes it in a query: a text as itself, anything else
    as its JSON (``true``, ``2.5``, ``"2026-01-02T03:04:05Z"`` unquoted)."""
    plain = _JSONABLE.dump_python(value, mode="json")
    return plain if isinstance(plain, str) else json.dumps(plain)


#: the browser page of a websocket_out: items shown as text, credentials asked for
#: in a form (a browser cannot set headers on a WebSocket; never in the URL)
_PAGE_SCRIPT = """\
"use strict";
const about = JSON.parse(document.getElementById("about").textContent);
const status = document.getElementById("status");
const list = document.getElementById("items");
const form = document.getElementById("credentials");
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
function connect(key) {
  const url = scheme + "//" + location.host + location.pathname + location.search;
  const socket = new WebSocket(url);
  socket.addEventListener("open", () => {
    if (key) socket.send(JSON.stringify({api_key: key}));
    status.textContent = "connected";
  });
  socket.addEventListener("message", (event) => {
    const frame = JSON.parse(event.data);
    if (frame.type === "ping") {
      socket.send(JSON.stringify({type: "pong"}));
      return;
    }
    if (frame.type !== "item") return;
    const entry = document.createElement("li");
    entry.className = "item";
    entry.textContent = JSON.stringify(frame.item);  // text, never HTML
    list.appendChild(entry);
    status.textContent = "received " + list.children.length;
  });
  socket.addEventListener("close", (event) => {
    status.textContent = "closed " + event.code;
  });
}
if (about.auth) {
  form.hidden = false;
  status.textContent = "give an API key";
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    form.hidden = true;
    connect(document.getElementById("api-key").value);
  });
} else {
  connect(null);
}
"""


def live_page(live: WebSocketOut, description: str, service_description: str) -> str:
    """The page a browser gets from a ``GET`` of ``live``'s route: it connects to
    the route and shows each item as it arrives.

    The descriptions are the blueprint's free text: each is escaped where it lands
    (HTML text here; JSON in the script element is escaped so that it cannot end
    it), so a hostile one shows as its characters and runs nothing.
    """
    about = json.dumps({"route": live.route, "auth": live.live.auth})
    about = about.replace("<", "\\u003c").replace(">", "\\u003e")
    about = about.replace("&", "\\u0026")
    title = html.escape(f"{live.name}: live items")
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n</head>\n<body>\n<h1>{title}</h1>\n"
        f'<p id="description">{html.escape(description)}</p>\n'
        f'<p id="service">{html.escape(service_description)}</p>\n'
        '<form id="credentials" hidden><label>API key <input id="api-key" '
        'type="password" autocomplete="off"></label> <button>connect</button>'
        "</form>\n"
        '<p id="status">connecting</p>\n<ol id="items"></ol>\n'
        f'<script id="about" type="application/json">{about}</script>\n'
        f"<script>\n{_PAGE_SCRIPT}</script>\n</body>\n</html>\n"
    )


def live_routes(components: Iterable[Component]) -> list[WebSocketIn | WebSocketOut]:
    """The live components among ``components``."""
    return [c for c in components if isinstance(c, WebSocketIn | WebSocketOut)]


#: (metric, documentation, the ``LiveCounts`` attribute), counters per component
_COUNTERS = (
    ("websocket_frames_in", "Frames received from live clients.", "frames_in"),
    ("websocket_frames_out", "Frames sent to live clients.", "frames_out"),
    ("websocket_bytes_in", "Bytes of frames received from live clients.", "bytes_in"),
    ("websocket_bytes_out", "Bytes of frames sent to live clients.", "bytes_out"),
    (
        "websocket_refused",
        "Handshakes refused (max_connections, credentials, rate limit, stopping).",
        "refused",
    ),
    (
        "websocket_slow_dropped",
        "Frames dropped for a slow client (slow_client: drop_oldest).",
        "slow_dropped",
    ),
    (
        "websocket_slow_disconnected",
        "Slow clients closed with 1008 (slow_client: disconnect).",
        "slow_disconnected",
    ),
    (
        "websocket_heartbeat_timeouts",
        "Clients closed for not answering the heartbeat.",
        "heartbeat_timeouts",
    ),
    ("websocket_problems", "Frames answered with a problem.", "problems"),
)


class LiveCollector(Collector):
    """The live components' numbers, for the service's registry (``create_app``
    registers it)."""

    def __init__(self, components: Callable[[], Iterable[Component]]) -> None:
        self._components = components

    def collect(self) -> Iterator[Metric]:
        """The metric families, read now."""
        return live_metrics(self._components())


def live_metrics(components: Iterable[Component]) -> Iterator[Metric]:
    """Per live component: clients connected, and what ``LiveCounts`` counts."""
    lives = live_routes(components)
    connected = GaugeMetricFamily(
        "portwright_websocket_clients",
        "Live clients connected now.",
        labels=["component"],
    )
    families = [
        (CounterMetricFamily(f"portwright_{name}", doc, labels=["component"]), attr)
        for name, doc, attr in _COUNTERS
    ]
    for live in lives:
        connected.add_metric([live.name], len(live.live.clients))
        for family, attr in families:
            family.add_metric([live.name], getattr(live.live.counts, attr))
    yield connected
    for family, _ in families:
        yield family
