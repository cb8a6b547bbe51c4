"""The FastAPI app of a service, and the process entry point that serves it.

``create_app`` adds one route per ``ApiEndpoint``, plus ``GET /health`` (alive),
``GET /ready`` (every component running, no buffer saturated) and ``GET /metrics``
(Prometheus text). Its lifespan runs the service: started with the app, stopped
and drained when the app shuts down. It also gives the endpoints their credentials
and rate limits (from the settings), sets each request's context (correlation id,
client address), and answers every error in one JSON shape (``problems.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from time import monotonic
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
)
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from . import tracing
from .auth import Credentials
from .context import RequestContextMiddleware, TrustedProxies
from .errors import RequestError, SettingsError
from .ingress import ApiEndpoint, accepted
from .listener import listen, url_of
from .logs import configure_logging
from .problems import ErrorHandlers, problem
from .ratelimit import RateLimit, RateLimitStore
from .service import Service
from .status import StatusPage, dependency_checks, drawing_beside
from .websocket import LiveCollector, WebSocketIn, WebSocketOut, live_page, live_routes

__all__ = ["Ingest", "ServiceApp", "create_app", "serve"]


class Accepted(BaseModel):
    """The answer to an accepted message."""

    id: str


class Problem(BaseModel):
    """The answer to a refused request (every error has this shape)."""

    error: str
    detail: str
    correlation_id: str


class Invalid(BaseModel):
    """The answer to a body that does not match the schema: one entry per error."""

    error: str
    detail: list[dict[str, Any]]
    correlation_id: str


#: OpenAPI security schemes, by the names ``ingress.SECURITY`` uses
SECURITY_SCHEMES = {
    "apiKeyBearer": {"type": "http", "scheme": "bearer"},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "basic": {"type": "http", "scheme": "basic"},
}
#: the exit status of a process stopped by SIGINT, as shells report it (128 + 2)
INTERRUPTED = 130
_RETRY = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}


def create_app(
    service: Service,
    *,
    version: str = "0.1.0",
    description: str = "",
    endpoint_descriptions: Mapping[str, str] | None = None,
) -> FastAPI:
    """The app serving ``service``'s ingress routes, health, readiness and metrics.

    ``description`` describes the service in OpenAPI; each endpoint's operation is
    described by its entry in ``endpoint_descriptions`` (the blueprint's), or else
    by the service's description; so is a websocket_out's page (a ``GET`` of its
    route).
    """
    described = dict(endpoint_descriptions or {})

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service.running():
            yield

    app = ServiceApp(
        title=service.name, version=version, description=description, lifespan=lifespan
    )
    app.state.service = service
    handlers = ErrorHandlers(service.log)
    handlers.install(app)
    trusted = TrustedProxies(service.settings.trusted_proxies)
    app.add_middleware(
        RequestContextMiddleware, trusted=trusted, on_error=handlers.unhandled
    )
    app.own_middleware = len(app.user_middleware)
    protect(service)
    for endpoint in service.endpoints:
        responses: dict[int | str, dict[str, Any]] = {
            400: {"model": Problem, "description": "Unreadable request headers"},
            413: {"model": Problem, "description": "Body too large"},
            415: {"model": Problem, "description": "Body not sent as JSON"},
            422: {"model": Invalid, "description": "Body does not match"},
            503: {
                "model": Problem,
                "description": "Full or stopping; retry",
                "headers": _RETRY,
            },
        }
        if endpoint.auth is not None:
            responses[401] = {"model": Problem, "description": "No valid credentials"}
        if endpoint.rate_limit is not None:
            responses[429] = {
                "model": Problem,
                "description": "Too many requests; retry",
                "headers": _RETRY,
            }
        # FastAPI's own request handling (dependency solving, response checks)
        # costs more than the whole ingest, so a plain route in front serves the
        # requests; the APIRoute behind it, with the same handler, documents them
        # in OpenAPI (and would answer the same). The app also answers them before
        # its middleware when it can (``ServiceApp``).
        ingest = Ingest(app, endpoint)
        app.router.routes.append(
            Route(
                endpoint.route,
                ingest,
                methods=[endpoint.method],
                name=f"{endpoint.name}_ingest",
            )
        )
        if "{" not in endpoint.route:  # a fixed path: matched exactly
            # the route with the one middleware it needs: the same request context,
            # correlation id and 500 guard as through the app's own stack
            app.direct[(endpoint.method, endpoint.route)] = RequestContextMiddleware(
                ingest, trusted=trusted, on_error=handlers.unhandled
            )
        app.add_api_route(
            endpoint.route,
            endpoint.handle,
            methods=[endpoint.method],
            name=endpoint.name,
            summary=f"Send a message to {endpoint.name}",
            description=described.get(endpoint.name)
            or description
            or f"The body, validated, becomes a message of {endpoint.name}.",
            status_code=202,
            response_model=Accepted,
            responses=responses,
            openapi_extra=endpoint.openapi_extra(),
        )

    lives = live_routes(service.local_components())
    if lives:
        # ValueError: a second app of the same service registered them already
        with contextlib.suppress(ValueError):
            service.metrics.registry.register(LiveCollector(service.local_components))
    for live in lives:
        # WebSocket routes are not in OpenAPI (it has no way to describe them)
        app.router.routes.append(
            WebSocketRoute(live.route, live.handle, name=f"{live.name}_live")
        )
        if isinstance(live, WebSocketOut) and live.page:  # a GET: a page that watches
            page = live_page(live, described.get(live.name, ""), description)
            app.add_api_route(
                live.route,
                _serving(page),
                methods=["GET"],
                name=f"{live.name}_page",
                include_in_schema=False,
                response_class=HTMLResponse,
            )

    @app.get("/health", tags=["operations"])
    async def health() -> dict[str, Any]:
        """The process is alive; ``checks`` say how each dependency is (never 503)."""
        return {"status": "alive", "checks": dependency_checks(service)}

    @app.get(
        "/ready",
        tags=["operations"],
        responses={503: {"description": "Not ready (the reasons say why); retry"}},
    )
    async def ready() -> JSONResponse:
        """Every component is running and no buffer is saturated (else 503)."""
        reasons = service.readiness()
        checks = dependency_checks(service)
        if reasons:  # an error like any other, in the one shape, with the reasons
            return problem(
                503,
                "not_ready",
                "; ".join(reasons),
                {"retry-after": "1"},
                extra={"status": "not ready", "reasons": reasons, "checks": checks},
            )
        return JSONResponse({"status": "ready", "checks": checks})

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Every metric in the Prometheus text format."""
        # async, so the scrape reads the counters on the loop that updates them
        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    # the status page: not in OpenAPI, like any page a person (not a client) reads
    status = StatusPage(service, description=description, drawing=drawing_beside())

    @app.get("/status", include_in_schema=False, response_class=HTMLResponse)
    async def status_page() -> HTMLResponse:
        """The component drawing with live numbers (docs/operations.md)."""
        return HTMLResponse(status.page())

    @app.get("/status.json", include_in_schema=False)
    async def status_numbers() -> JSONResponse:
        """The numbers the status page shows, refreshed each second."""
        return JSONResponse(status.numbers())

    def openapi() -> dict[str, Any]:
        # The lean ingress routes take no pydantic body parameter, so FastAPI does
        # not know their schemas: register them as components.
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description or None,
                routes=app.routes,
            )
            components = schema.setdefault("components", {})
            schemas = components.setdefault("schemas", {})
            for endpoint in service.endpoints:
                schemas.update(endpoint.schema_components())
            if any(endpoint.auth for endpoint in service.endpoints):
                components["securitySchemes"] = SECURITY_SCHEMES
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


class ServiceApp(FastAPI):
    """A FastAPI app that answers its ingest requests before FastAPI's middleware.

    Every request to a FastAPI app first crosses its telemetry check, its error,
    body-limit and AsyncExitStack middlewares and the route scan, which together cost
    more than the ingest itself. A request whose method and path are exactly an
    ingest route's is handed to that route at once, through the same request
    context (correlation id, client address, the 500 guard) and answered by the
    same error handlers, so it gets the same answer either way. Only while nothing
    else would see it: once middleware is added to the app (``add_middleware``,
    ``@app.middleware``), or OpenTelemetry is configured for FastAPI to trace with,
    or the app is served under a root path, every request takes the full stack.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: the ingest routes answered directly, by (method, path)
        self.direct: dict[tuple[str, str], ASGIApp] = {}
        #: how many of ``user_middleware`` are the runtime's own
        self.own_middleware = 0
        self._traced_on = False
        self._traced_due = -math.inf

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Ingest requests directly when nothing else would see them; else FastAPI."""
        if scope["type"] == "http":
            ingest = self.direct.get((scope["method"], scope["path"]))
            if (
                ingest is not None
                and len(self.user_middleware) == self.own_middleware
                and not (self.root_path or scope.get("root_path"))
                and not self._traced()
            ):
                scope["app"] = self
                await ingest(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def _traced(self) -> bool:
        """Whether FastAPI's own telemetry is on (checked at most once a second).

        FastAPI checks the OpenTelemetry providers on every request, which costs
        more here than a fifth of the ingest; a provider set up while the app
        runs is noticed within a second.
        """
        now = monotonic()
        if now >= self._traced_due:
            native = getattr(self, "_native_telemetry", None)  # FastAPI >= 0.165
            self._traced_on = native is not None and bool(native.enabled())
            self._traced_due = now + 1.0
        return self._traced_on


class Ingest:
    """One endpoint's route, as ASGI: its refusals answered by the app's handlers.

    Served by the app's ``Route`` (inside the app's middleware), and, wrapped in the
    request-context middleware alone, before it (see ``ServiceApp``). A callable
    object rather than a function, so that Starlette's ``Route`` serves it as ASGI,
    without Request and Response objects on the way.
    """

    def __init__(self, app: FastAPI, endpoint: ApiEndpoint) -> None:
        self.app = app
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Take the message and answer 202, or answer the refusal."""
        try:
            message_id, correlation = await self.endpoint.take(scope, receive)
        except RequestError as exc:
            await self._refuse(exc, scope, receive, send)
            return
        except ClientDisconnect:
            return  # nobody left to answer
        await accepted(send, message_id, correlation)

    async def _refuse(
        self, exc: RequestError, scope: Scope, receive: Receive, send: Send
    ) -> None:
        # The handler registered for the error's class, as Starlette looks it up,
        # so that a handler the user registers answers here too.
        handlers = self.app.exception_handlers
        handler = next(
            (handlers[cls] for cls in type(exc).__mro__ if cls in handlers), None
        )
        if handler is None:
            raise exc
        request = Request(scope, receive)
        # Starlette types a handler as giving a response or an awaitable of one.
        outcome: Response | Awaitable[Response]
        if inspect.iscoroutinefunction(handler):
            outcome = handler(request, exc)
        else:
            outcome = await run_in_threadpool(handler, request, exc)
        response = outcome if isinstance(outcome, Response) else await outcome
        await response(scope, receive, send)


def protect(service: Service) -> None:
    """Give every endpoint its credentials and rate limit, from the settings.

    Files are read and checked now, so a bad one stops the start; an endpoint that
    requires credentials while none are configured refuses every request (401).
    """
    settings = service.settings
    endpoints = {endpoint.name: endpoint for endpoint in service.endpoints}
    # Checked against every endpoint of the service, not only this process's: the
    # replicas of a scaled-out service share one environment.
    every_endpoint = {
        c.name
        for c in service.components.values()
        if isinstance(c, ApiEndpoint | WebSocketIn)
    }
    unknown = sorted(set(settings.rate_limit_overrides) - every_endpoint)
    if unknown:
        raise SettingsError(
            f"{service.name.upper()}_RATE_LIMIT__{unknown[0].upper()}: "
            f"no api_endpoint or websocket_in {unknown[0]!r} to limit"
        )
    lives = live_routes(service.local_components())
    credentials = Credentials()
    if any(endpoint.auth for endpoint in endpoints.values()) or any(
        live.live.auth for live in lives
    ):
        credentials = Credentials.load(service.name, settings)
    store = None
    if (
        settings.rate_limit_overrides
        or any(e.rate_limit for e in endpoints.values())
        or any(live.live.rate_limit for live in lives)
    ):
        storage = settings.rate_limit_storage
        if storage == "auto":  # the service's own Redis, when it runs on Redis
            storage = service.shared_storage() or "memory"
        store = RateLimitStore(
            storage,
            namespace=service.name,
            log=service.log,
            max_clients=settings.rate_limit_max_clients,
            prefix=settings.redis_prefix,
        )
    for name, endpoint in endpoints.items():
        override = settings.rate_limit_overrides.get(name)
        key = endpoint.rate_limit.key if endpoint.rate_limit else "client"
        limit = RateLimit.parse(override, key) if override else None
        endpoint.protect(credentials, store, service.name, limit)
        if (endpoint.auth == "api_key" and not credentials.api_keys) or (
            endpoint.auth == "basic" and not credentials.users
        ):
            service.log.warning(
                "api_endpoint %s requires credentials but none are configured: "
                "every request to it is refused",
                name,
            )
    for live in lives:
        override = settings.rate_limit_overrides.get(live.name)
        key = live.live.rate_limit.key if live.live.rate_limit else "client"
        limit = RateLimit.parse(override, key) if override else None
        live.live.protect(credentials, store, service.name, limit)


def _serving(page: str) -> Callable[[], Awaitable[HTMLResponse]]:
    """A route that answers with ``page``, made once."""

    async def answer() -> HTMLResponse:
        return HTMLResponse(page)

    return answer


def serve(
    app: FastAPI, *, host: str | None = None, port: int | range | None = None
) -> int:
    """Serve ``app`` with uvicorn until SIGTERM/SIGINT, then drain; the exit status.

    On the signal the service stops at once (ingress answers 503, sources stop)
    while uvicorn finishes open requests; the app's shutdown then waits for the
    drain (at most ``drain_timeout_s``). Stopped by SIGINT (Ctrl-C), it returns 130,
    as a shell reports an interrupted command, without a ``KeyboardInterrupt``;
    stopped by SIGTERM, uvicorn ends the process by that signal once drained.

    ``port`` may be a range: the first free port of it is taken, so that the same
    command starts several replicas (``listener``). Where it serves is logged and,
    with Redis, listed (``replicas``). Raises ``SettingsError`` when it cannot listen.
    """
    service: Service = app.state.service
    settings = service.settings
    # uvicorn's own lines (startup, access, errors) become masked JSON lines too.
    configure_logging(
        service.name, settings.log_level, service.masker, also=("uvicorn",)
    )
    # off unless OTEL_TRACES_EXPORTER names an exporter (docs/observability.md)
    tracing.configure(service.name)
    if not isinstance(port, range):
        number = settings.port if port is None else port
        port = range(number, number + 1)
    sock = listen(host or settings.host, port, send_buffer=settings.send_buffer_bytes)
    service.url = url_of(sock)
    config = uvicorn.Config(
        app,
        host=host or settings.host,
        port=sock.getsockname()[1],
        log_level=settings.log_level.lower(),
        log_config=None,
        # The client's address is decided by the app's trusted proxies alone:
        # uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1.
        proxy_headers=False,
        lifespan="on",
        # A live route's liveness is its own heartbeat (the blueprint's, counted,
        # 1008). uvicorn's protocol pings would close a client that reads nothing
        # with 1011 before the route's slow-client policy could say why.
        ws_ping_interval=None,
        ws_ping_timeout=None,
    )
    server = _DrainingServer(config, service)
    service.log.info(
        "serving on %s (/health, /ready, /metrics)",
        service.url,
        extra={"url": service.url},
    )
    # uvicorn raises the SIGINT it handled again once it has drained, which asyncio
    # turns into KeyboardInterrupt: the drain is done, there is nothing to say.
    try:
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[sock])
    finally:
        tracing.reset()  # export the spans still waiting
    return INTERRUPTED if server.interrupted else 0


class _DrainingServer(uvicorn.Server):
    """A uvicorn server that tells the service to stop as soon as a signal comes."""

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self._service = service
        self._loop: asyncio.AbstractEventLoop | None = None
        #: a SIGINT (Ctrl-C) asked it to stop
        self.interrupted = False

    async def serve(self, sockets: Any = None) -> None:
        """Remember the loop, so that the signal handler can reach the service."""
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    async def shutdown(self, sockets: Any = None) -> None:
        """Close live clients with 1001 once their queued frames are sent, before
        uvicorn closes every connection with its own 1012."""
        timeout = self._service.settings.drain_timeout_s
        for live in live_routes(self._service.local_components()):
            await live.live.close_all(timeout)
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Stop the service (on its loop), then let uvicorn shut down."""
        self.interrupted = self.interrupted or sig == signal.SIGINT
        if self._loop is not None and sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.call_soon_threadsafe(self._service.stop)
        super().handle_exit(sig, frame)
