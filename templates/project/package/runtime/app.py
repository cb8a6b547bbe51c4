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
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .auth import Credentials
from .context import RequestContextMiddleware, TrustedProxies
from .errors import SettingsError
from .logs import configure_logging
from .problems import ErrorHandlers, problem
from .ratelimit import RateLimit, RateLimitStore
from .service import Service

__all__ = ["create_app", "serve"]


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
_RETRY = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}


def create_app(service: Service, *, version: str = "0.1.0") -> FastAPI:
    """The app serving ``service``'s ingress routes, health, readiness and metrics."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service.running():
            yield

    app = FastAPI(title=service.name, version=version, lifespan=lifespan)
    app.state.service = service
    handlers = ErrorHandlers(service.log)
    handlers.install(app)
    app.add_middleware(
        RequestContextMiddleware,
        trusted=TrustedProxies(service.settings.trusted_proxies),
        on_error=handlers.unhandled,
    )
    protect(service)
    for endpoint in service.endpoints:
        responses: dict[int | str, dict[str, Any]] = {
            400: {"model": Problem, "description": "Unreadable request headers"},
            413: {"model": Problem, "description": "Body too large"},
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
        # costs more than the whole ingest, so a plain Starlette route in front
        # serves the requests; the APIRoute behind it, with the same handler,
        # documents them in OpenAPI (and would answer the same).
        app.router.routes.append(
            Route(
                endpoint.route,
                endpoint.handle,
                methods=[endpoint.method],
                name=f"{endpoint.name}_ingest",
            )
        )
        app.add_api_route(
            endpoint.route,
            endpoint.handle,
            methods=[endpoint.method],
            name=endpoint.name,
            summary=f"Send a message to {endpoint.name}",
            status_code=202,
            response_model=Accepted,
            responses=responses,
            openapi_extra=endpoint.openapi_extra(),
        )

    @app.get("/health", tags=["operations"])
    async def health() -> dict[str, str]:
        """The process is alive."""
        return {"status": "alive"}

    @app.get(
        "/ready",
        tags=["operations"],
        responses={503: {"description": "Not ready (the reasons say why); retry"}},
    )
    async def ready() -> JSONResponse:
        """Every component is running and no buffer is saturated (else 503)."""
        reasons = service.readiness()
        if reasons:  # an error like any other, in the one shape, with the reasons
            return problem(
                503,
                "not_ready",
                "; ".join(reasons),
                {"retry-after": "1"},
                extra={"status": "not ready", "reasons": reasons},
            )
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Every metric in the Prometheus text format."""
        # async, so the scrape reads the counters on the loop that updates them
        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        # The lean ingress routes take no pydantic body parameter, so FastAPI does
        # not know their schemas: register them as components.
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, routes=app.routes
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


def protect(service: Service) -> None:
    """Give every endpoint its credentials and rate limit, from the settings.

    Files are read and checked now, so a bad one stops the start; an endpoint that
    requires credentials while none are configured refuses every request (401).
    """
    settings = service.settings
    endpoints = {endpoint.name: endpoint for endpoint in service.endpoints}
    unknown = sorted(set(settings.rate_limit_overrides) - set(endpoints))
    if unknown:
        raise SettingsError(
            f"{service.name.upper()}_RATE_LIMIT__{unknown[0].upper()}: "
            f"no api_endpoint {unknown[0]!r} to limit"
        )
    credentials = Credentials()
    if any(endpoint.auth for endpoint in endpoints.values()):
        credentials = Credentials.load(service.name, settings)
    store = None
    if settings.rate_limit_overrides or any(e.rate_limit for e in endpoints.values()):
        storage = settings.rate_limit_storage
        if storage == "auto":  # the service's own Redis, when it runs on Redis
            storage = settings.redis_url if service.redis is not None else "memory"
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


def serve(app: FastAPI, *, host: str | None = None, port: int | None = None) -> None:
    """Serve ``app`` with uvicorn until SIGTERM/SIGINT, then drain and exit.

    On the signal the service stops at once (ingress answers 503, sources stop)
    while uvicorn finishes open requests; the app's shutdown then waits for the
    drain (at most ``drain_timeout_s``).
    """
    service: Service = app.state.service
    settings = service.settings
    # uvicorn's own lines (startup, access, errors) become masked JSON lines too.
    configure_logging(
        service.name, settings.log_level, service.masker, also=("uvicorn",)
    )
    config = uvicorn.Config(
        app,
        host=host or settings.host,
        port=settings.port if port is None else port,
        log_level=settings.log_level.lower(),
        log_config=None,
        # The client's address is decided by the app's trusted proxies alone:
        # uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1.
        proxy_headers=False,
        lifespan="on",
    )
    _DrainingServer(config, service).run()


class _DrainingServer(uvicorn.Server):
    """A uvicorn server that tells the service to stop as soon as a signal comes."""

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self._service = service
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: Any = None) -> None:
        """Remember the loop, so that the signal handler can reach the service."""
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Stop the service (on its loop), then let uvicorn shut down."""
        if self._loop is not None and sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.call_soon_threadsafe(self._service.stop)
        super().handle_exit(sig, frame)
