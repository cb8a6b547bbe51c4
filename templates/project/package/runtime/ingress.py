"""HTTP ingress: an ``ApiEndpoint`` turns requests into messages on its output.

The route is deliberately lean (FastAPI's ``body: Model`` handling costs several
times more per request): it reads the raw body with a running size cap, validates
it with a pydantic ``TypeAdapter``, and hands the message to the output port
without waiting when there is room. The body schema is still documented in
OpenAPI through ``openapi_extra`` and the app's component schemas.

An endpoint may require credentials (``auth``) and limit how often one client or
key may send (``rate_limit``); both are checked before the body is read. Every
refusal is raised as a ``RequestError``, which the app answers in one JSON shape.
"""

from __future__ import annotations

import json
import math
from time import monotonic
from typing import Any, Literal

import anyio
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from . import tracing
from .auth import ApiKeyAuth, BasicAuth, Credentials
from .component import Component, RunContext
from .context import CORRELATION_HEADER, current_request, valid_correlation_id
from .envelope import Envelope
from .errors import (
    BadRequest,
    InvalidBody,
    PayloadTooLarge,
    RequestError,
    Unavailable,
    UnsupportedMediaType,
    WiringError,
)
from .histogram import LATENCY_BUCKETS, Histogram
from .ratelimit import RateLimit, RateLimiter, RateLimitStore, client_key

__all__ = ["ApiEndpoint", "Auth", "accepted"]

_REF_TEMPLATE = "#/components/schemas/{model}"
_CORRELATION_HEADER = CORRELATION_HEADER.encode()
_METHODS = frozenset({"POST", "PUT", "PATCH"})
Auth = Literal["api_key", "basic"]
#: the OpenAPI security requirement of each kind of ``auth``
SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "api_key": [{"apiKeyBearer": []}, {"apiKeyHeader": []}],
    "basic": [{"basic": []}],
}


class ApiEndpoint(Component):
    """An HTTP route whose validated request bodies become messages on ``out``.

    Answers 202 ``{"id": <message id>}`` once the message is in the output buffer;
    413 when the body exceeds ``max_payload_kb`` (checked while reading, so also for
    chunked bodies); 422 with the field errors when the body does not match
    ``schema``; 503 with ``Retry-After`` when the output stayed full for
    ``timeout_ms``, and while the service is not running (starting or stopping).
    """

    kind = "api_endpoint"

    def __init__(
        self,
        name: str,
        *,
        route: str,
        schema: Any,
        method: str = "POST",
        timeout_ms: float = 2000,
        max_payload_kb: float = 64,
        auth: Auth | None = None,
        rate_limit: RateLimit | None = None,
    ) -> None:
        super().__init__(name, inputs={}, outputs={"out": schema})
        if auth is not None and auth not in SECURITY:
            raise WiringError(
                f"api_endpoint {name!r}: auth {auth!r} is not one of "
                f"{', '.join(SECURITY)}"
            )
        if rate_limit is not None and rate_limit.key == "api_key" and auth != "api_key":
            raise WiringError(
                f"api_endpoint {name!r}: a rate limit per API key needs auth 'api_key'"
            )
        method = method.upper()
        if method not in _METHODS:
            raise WiringError(
                f"api_endpoint {name!r}: method {method!r} cannot carry a body; "
                f"use one of {', '.join(sorted(_METHODS))}"
            )
        if not route.startswith("/"):
            raise WiringError(
                f"api_endpoint {name!r}: route {route!r} must start with /"
            )
        if timeout_ms <= 0 or max_payload_kb <= 0:
            raise WiringError(
                f"api_endpoint {name!r}: timeout_ms and max_payload_kb must be "
                f"positive, got {timeout_ms!r} and {max_payload_kb!r}"
            )
        self.route = route
        self.method = method
        self.schema = schema
        self.timeout_s = 0.0
        self.max_payload_bytes = 0
        self.retry_after = "1"
        self.configure(timeout_ms=timeout_ms, max_payload_kb=max_payload_kb)
        self._out = self.outputs["out"]
        # The core validator itself: TypeAdapter.validate_json only forwards to it.
        self._validate_json = TypeAdapter(schema).validator.validate_json
        self.auth = auth
        self.rate_limit = rate_limit
        #: who may send; until ``protect`` gives it credentials, nobody (fail closed)
        self.authenticator: ApiKeyAuth | BasicAuth | None = self._authenticator(
            Credentials(), name
        )
        #: set by ``protect`` (``create_app`` calls it) when the endpoint is limited
        self.limiter: RateLimiter | None = None
        self._accepting = False
        self._in_flight = 0
        #: requests answered, by status (the availability SLI, docs/operations.md)
        self.responses: dict[int, int] = {}
        #: how long answering took (the latency SLI)
        self.duration = Histogram(LATENCY_BUCKETS)
        self._idle: anyio.Event | None = None

    def configure(
        self, *, timeout_ms: float | None = None, max_payload_kb: float | None = None
    ) -> None:
        """Change the wait before 503 and the body cap (None keeps the current one)."""
        if timeout_ms is not None:
            self.timeout_s = timeout_ms / 1000
            self.retry_after = str(max(1, math.ceil(self.timeout_s)))
        if max_payload_kb is not None:
            self.max_payload_bytes = int(max_payload_kb * 1024)

    def protect(
        self,
        credentials: Credentials,
        store: RateLimitStore | None,
        realm: str,
        rate_limit: RateLimit | None = None,
    ) -> None:
        """Check requests against ``credentials`` and count them in ``store``.

        ``rate_limit`` replaces the endpoint's own (a settings override).
        """
        self.authenticator = self._authenticator(credentials, realm)
        if rate_limit is not None:
            self.rate_limit = rate_limit
        if self.rate_limit is not None and store is not None:
            self.limiter = store.limiter(self.name, self.rate_limit)

    def _authenticator(
        self, credentials: Credentials, realm: str
    ) -> ApiKeyAuth | BasicAuth | None:
        if self.auth == "api_key":
            return ApiKeyAuth(credentials.api_keys, realm)
        if self.auth == "basic":
            return BasicAuth(credentials.users, realm)
        return None

    async def serve(self, context: RunContext) -> None:
        """Accept requests until the service stops, then let in-flight ones finish."""
        self._accepting = not context.stopping.is_set()
        await context.stopping.wait()
        self._accepting = False
        while self._in_flight:
            self._idle = anyio.Event()
            await self._idle.wait()

    def request_stop(self) -> None:
        """Answer 503 from now on."""
        self._accepting = False

    async def handle(self, request: Request) -> Response:
        """The route, for a Starlette or FastAPI route: ``take``, then the 202."""
        message_id, correlation = await self.take(request.scope, request.receive)
        return Response(
            content=_accepted_body(message_id),
            status_code=202,
            media_type="application/json",
            headers={CORRELATION_HEADER: correlation},
        )

    async def take(self, scope: Scope, receive: Receive) -> tuple[str, str]:
        """Read, check and validate one request's body; hand the message on.

        Returns the message id and the correlation id (the client's, or the new
        message's own id when the client sent none that looks like an id).
        """
        started = monotonic()
        status: int | None = None  # a cancelled request was not answered
        try:
            if not self._accepting:
                raise self._unavailable("the service is not accepting messages")
            taken = await self._counted(scope, receive)
            status = 202
            return taken
        except RequestError as exc:
            status = exc.status
            raise
        except Exception:
            status = 500
            raise
        finally:
            if status is not None:
                self.responses[status] = self.responses.get(status, 0) + 1
                self.duration.observe(monotonic() - started)

    async def _counted(self, scope: Scope, receive: Receive) -> tuple[str, str]:
        self._in_flight += 1
        try:
            tracer = tracing.TRACER
            if tracer is None:
                return await self._accept(scope, receive)
            # one trace per accepted request: the message is made in this span
            with tracing.request_span(tracer, self.name, scope):
                return await self._accept(scope, receive)
        finally:
            self._in_flight -= 1
            if not self._in_flight and self._idle is not None:
                self._idle.set()

    async def _accept(self, scope: Scope, receive: Receive) -> tuple[str, str]:
        if self.authenticator is not None or self.limiter is not None:
            await self._guard(scope)
        limit = self.max_payload_bytes
        length = media = None
        for key, value in scope["headers"]:  # the first of each, as Starlette reads
            if key == b"content-length" and length is None:
                length = value
            elif key == b"content-type" and media is None:
                media = value
        if length is not None:
            if not length.isdigit():
                raise BadRequest("Content-Length is not a number")
            if int(length) > limit:
                raise self._too_large()
        # The body, read straight from the server with a running cap, so that a
        # chunked body is refused as soon as it grows past the limit.
        size = 0
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        # after the size checks: a body too large is refused as that, whatever it is
        if media is None or not _is_json(media):
            raise UnsupportedMediaType(
                "the body must be sent as JSON (Content-Type: application/json)"
            )
        try:
            item = self._validate_json(body)
        except ValidationError as exc:
            raise _invalid(exc) from None
        context = current_request()
        if context is None:  # served without the app's request context
            correlation = valid_correlation_id(
                Headers(scope=scope).get(CORRELATION_HEADER)
            )
        else:
            correlation = context.known_correlation_id
        now = monotonic()
        envelope = Envelope.start(item, now, correlation)
        if tracing.TRACER is not None:
            tracing.made(envelope)
        message_id = envelope.id
        if correlation is None:
            correlation = message_id  # this message starts the conversation
            if context is not None:
                context.adopt(message_id)
        pending = self._out.emit((now, envelope))
        if pending is not None:
            with anyio.move_on_after(self.timeout_s) as waited:
                await pending
            if waited.cancelled_caught:
                self._out.dropped += 1
                raise self._unavailable(
                    f"output {self._out.address} stayed full for "
                    f"{self.timeout_s * 1000:g} ms"
                )
        return message_id, correlation

    async def _guard(self, scope: Scope) -> None:
        """Rate limit and credentials, before anything is read.

        A limit per client is counted first, so that a flood of guesses is refused
        before it costs a password check; a limit per key needs the key first.
        """
        limiter, authenticator = self.limiter, self.authenticator
        if limiter is not None and limiter.limit.key == "client":
            context = current_request()
            if context is not None:
                address = context.client
            else:
                peer = scope.get("client")
                address = peer[0] if peer else "unknown"
            await limiter.hit(client_key(address))
        if authenticator is None:
            return
        identity = await authenticator.authenticate(Headers(scope=scope))
        if limiter is not None and limiter.limit.key == "api_key":
            await limiter.hit(identity)

    def openapi_extra(self) -> dict[str, Any]:
        """The request body for OpenAPI, referring to ``schema_components()``."""
        schema, _ = self._json_schema()
        body = {"application/json": {"schema": schema}}
        extra: dict[str, Any] = {"requestBody": {"required": True, "content": body}}
        if self.auth is not None:
            extra["security"] = SECURITY[self.auth]
        return extra

    def schema_components(self) -> dict[str, Any]:
        """The JSON schemas the request body refers to, for OpenAPI components."""
        return self._json_schema()[1]

    def _json_schema(self) -> tuple[dict[str, Any], dict[str, Any]]:
        schema = TypeAdapter(self.schema).json_schema(ref_template=_REF_TEMPLATE)
        components: dict[str, Any] = schema.pop("$defs", {})
        if isinstance(self.schema, type) and issubclass(self.schema, BaseModel):
            name = self.schema.__name__
            components[name] = schema
            return {"$ref": _REF_TEMPLATE.format(model=name)}, components
        return schema, components

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"body exceeds {self.max_payload_bytes // 1024} KiB")

    def _unavailable(self, detail: str) -> Unavailable:
        return Unavailable(detail, self.retry_after)


def _is_json(content_type: bytes) -> bool:
    """Whether a Content-Type is JSON: ``application/json`` or ``.../x+json``."""
    media = content_type.partition(b";")[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


async def accepted(send: Send, message_id: str, correlation_id: str) -> None:
    """Answer 202 ``{"id": <message id>}`` with the correlation id, as ASGI."""
    body = _accepted_body(message_id)
    await send(
        {
            "type": "http.response.start",
            "status": 202,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
                (_CORRELATION_HEADER, correlation_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _accepted_body(message_id: str) -> bytes:
    """The body of a 202: the message id (a UUID: nothing to escape)."""
    return b'{"id":"%s"}' % message_id.encode()


def _invalid(exc: ValidationError) -> InvalidBody:
    # Like FastAPI's own 422, but never echoing the input (it may hold personal
    # data); ``json()`` makes every error context JSON-safe.
    errors = json.loads(exc.json(include_url=False, include_input=False))
    for error in errors:
        error["loc"] = ["body", *error["loc"]]
    return InvalidBody(errors)
