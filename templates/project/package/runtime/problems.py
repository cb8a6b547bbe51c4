"""Every error answer of the app, in one JSON shape, and one handler per error class.

Whatever goes wrong, the client gets ``{"error": <code>, "detail": <what to fix>,
"correlation_id": <id>}`` (``detail`` is a sentence, or for 422 the list of field
errors), with the correlation id also in ``X-Correlation-ID``. An unexpected failure
is answered 500 with a fixed sentence: its message and traceback go only to the log,
with personal data masked.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .context import CORRELATION_HEADER, current_request
from .envelope import uuid7
from .errors import RequestError
from .logs import MaskedLogger

__all__ = ["ErrorHandlers", "problem"]

#: refusals worth a warning in the log: someone is locked out, or pushing too hard
_WARN = frozenset({401, 429})


def problem(
    status: int,
    code: str,
    detail: str | list[dict[str, Any]],
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """The error answer: ``{"error", "detail", "correlation_id"}`` with ``status``.

    ``extra`` fields come first (``/ready`` keeps its ``status`` and ``reasons``).
    """
    context = current_request()
    correlation = context.correlation_id if context is not None else str(uuid7())
    return JSONResponse(
        {
            **(extra or {}),
            "error": code,
            "detail": detail,
            "correlation_id": correlation,
        },
        status_code=status,
        headers={**(headers or {}), CORRELATION_HEADER: correlation},
    )


def field_errors(errors: Any) -> list[dict[str, Any]]:
    """Validation errors as JSON, without the input (it may hold personal data)."""
    out = []
    for error in errors:
        entry = {k: v for k, v in error.items() if k not in ("input", "url", "ctx")}
        if "ctx" in error:  # may hold exception objects: make it JSON
            entry["ctx"] = json.loads(json.dumps(error["ctx"], default=str))
        out.append(entry)
    return out


class ErrorHandlers:
    """The app's exception handlers: one per class of error, each logging the refusal."""

    def __init__(self, log: MaskedLogger) -> None:
        self.log = log

    def install(self, app: FastAPI) -> None:
        """Register the handlers (the 500 is the middleware's: see ``unhandled``)."""
        app.add_exception_handler(RequestError, self.request_error)  # type: ignore[arg-type]
        app.add_exception_handler(HTTPException, self.http_error)  # type: ignore[arg-type]
        app.add_exception_handler(
            RequestValidationError, self.validation_error  # type: ignore[arg-type]
        )

    async def request_error(self, request: Request, exc: RequestError) -> Response:
        """A refusal of the runtime's own: its status, code and detail."""
        self._refused(request, exc.status, exc.code)
        return problem(exc.status, exc.code, exc.detail, exc.headers)

    async def http_error(self, request: Request, exc: HTTPException) -> Response:
        """Starlette's own refusals: an unknown path (404), a wrong method (405)."""
        code = _code(exc.status_code)
        self._refused(request, exc.status_code, code)
        detail = exc.detail if isinstance(exc.detail, str) else code
        return problem(exc.status_code, code, detail, exc.headers)

    async def validation_error(
        self, request: Request, exc: RequestValidationError
    ) -> Response:
        """FastAPI's request validation: 422 with the field errors."""
        self._refused(request, 422, "invalid_body")
        return problem(422, "invalid_body", field_errors(exc.errors()))

    def unhandled(self, exc: Exception) -> Response:
        """A failure nothing expected: logged in full (masked), answered 500 plainly."""
        self.log.error(
            "request failed: %s",
            type(exc).__name__,
            exc_info=exc,
            extra={"status": 500},
        )
        return problem(
            500, "internal_error", "the service failed to handle the request"
        )

    def _refused(self, request: Request, status: int, code: str) -> None:
        level = logging.WARNING if status in _WARN else logging.INFO
        self.log.log(
            level,
            "refused %s %s: %s %s",
            request.method,
            request.url.path,
            status,
            code,
            extra={"status": status, "reason": code},
        )


def _code(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return f"http_{status}"
