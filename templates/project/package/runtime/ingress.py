"""HTTP ingress: an ``ApiEndpoint`` turns requests into messages on its output.

The route is deliberately lean (FastAPI's ``body: Model`` handling costs several
times more per request): it reads the raw body with a running size cap, validates
it with a pydantic ``TypeAdapter``, and hands the message to the output port
without waiting when there is room. The body schema is still documented in
OpenAPI through ``openapi_extra`` and the app's component schemas.
"""

from __future__ import annotations

import json
import math
import re
from contextlib import aclosing
from time import monotonic
from typing import Any

import anyio
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .component import Component, RunContext
from .envelope import Envelope
from .errors import WiringError

__all__ = ["ApiEndpoint"]

_REF_TEMPLATE = "#/components/schemas/{model}"
#: An incoming ``X-Correlation-ID`` is kept only if it looks like an id, so that a
#: client cannot put arbitrary text into every log line.
_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_METHODS = frozenset({"POST", "PUT", "PATCH"})


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
    ) -> None:
        super().__init__(name, inputs={}, outputs={"out": schema})
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
        self._validate_json = TypeAdapter(schema).validate_json
        self._accepting = False
        self._in_flight = 0
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
        """The route: size cap, validation, offer to the output, answer."""
        if not self._accepting:
            return self._unavailable("the service is not accepting messages")
        self._in_flight += 1
        try:
            return await self._accept(request)
        finally:
            self._in_flight -= 1
            if not self._in_flight and self._idle is not None:
                self._idle.set()

    async def _accept(self, request: Request) -> Response:
        limit = self.max_payload_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not (declared.isascii() and declared.isdigit()):
                return _error(400, "Content-Length is not a number")
            if int(declared) > limit:
                return self._too_large()
        chunks = []
        size = 0
        async with aclosing(request.stream()) as stream:
            async for chunk in stream:
                size += len(chunk)
                if size > limit:
                    return self._too_large()
                chunks.append(chunk)
        try:
            item = self._validate_json(b"".join(chunks))
        except ValidationError as exc:
            return _invalid(exc)
        correlation = request.headers.get("x-correlation-id")
        if correlation is not None and not _CORRELATION_ID.match(correlation):
            correlation = None
        now = monotonic()
        envelope = Envelope.start(item, now, correlation)
        message_id = envelope.id
        pending = self._out.emit((now, envelope))
        if pending is not None:
            with anyio.move_on_after(self.timeout_s) as waited:
                await pending
            if waited.cancelled_caught:
                self._out.dropped += 1
                return self._unavailable(
                    f"output {self._out.address} stayed full for "
                    f"{self.timeout_s * 1000:g} ms"
                )
        return Response(
            content=f'{{"id":"{message_id}"}}',
            status_code=202,
            media_type="application/json",
            headers={"x-correlation-id": correlation or message_id},
        )

    def openapi_extra(self) -> dict[str, Any]:
        """The request body for OpenAPI, referring to ``schema_components()``."""
        schema, _ = self._json_schema()
        body = {"application/json": {"schema": schema}}
        return {"requestBody": {"required": True, "content": body}}

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

    def _too_large(self) -> Response:
        return _error(413, f"body exceeds {self.max_payload_bytes // 1024} KiB")

    def _unavailable(self, detail: str) -> Response:
        return _error(503, detail, headers={"retry-after": self.retry_after})


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _invalid(exc: ValidationError) -> Response:
    # Like FastAPI's own 422, but never echoing the input (it may hold personal
    # data); ``json()`` makes every error context JSON-safe.
    errors = json.loads(exc.json(include_url=False, include_input=False))
    for error in errors:
        error["loc"] = ["body", *error["loc"]]
    return JSONResponse({"detail": errors}, status_code=422)
