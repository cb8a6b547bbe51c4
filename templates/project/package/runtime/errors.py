"""The runtime's errors, and the record a failed message becomes.

``ServiceError`` is the root of every error the runtime raises on purpose. Its
``RequestError`` branch is what an HTTP request is refused with: each class carries
its status and error code, and the app answers every one of them, and every other
failure, with the same JSON shape: ``{"error", "detail", "correlation_id"}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

__all__ = [
    "BadRequest",
    "ErrorRecord",
    "InvalidBody",
    "PayloadTooLarge",
    "RateLimited",
    "RequestError",
    "ServiceError",
    "SettingsError",
    "StartupError",
    "Unauthorized",
    "Unavailable",
    "UnknownRouteError",
    "WiringError",
]


class ServiceError(Exception):
    """Root of every error the runtime raises on purpose."""


class WiringError(ServiceError):
    """A component or connection is declared wrongly (names, ports, schemas)."""


class SettingsError(ServiceError):
    """An environment variable holds a value the service cannot use."""


class StartupError(ServiceError):
    """A component's ``setup()`` failed, so the service did not start."""


class UnknownRouteError(ServiceError):
    """A router named an output port it does not have."""


class RequestError(ServiceError):
    """A request the service refuses: answered with ``status`` and the error shape.

    ``detail`` is what the client is told (a sentence, or for ``InvalidBody`` the
    list of field errors); it never holds what the client sent.
    """

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(
        self,
        detail: str | list[dict[str, Any]],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail if isinstance(detail, str) else self.code)
        self.detail = detail
        self.headers = dict(headers or {})


class BadRequest(RequestError):
    """The request itself is malformed (a header that cannot be read)."""


class Unauthorized(RequestError):
    """No valid credentials for an endpoint that requires them."""

    status = 401
    code = "unauthorized"


class PayloadTooLarge(RequestError):
    """The body is over the endpoint's cap."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(RequestError):
    """The body is not sent as JSON (``Content-Type`` missing or another type)."""

    status = 415
    code = "unsupported_media_type"


class InvalidBody(RequestError):
    """The body is not JSON or does not match the schema; ``detail`` lists why."""

    status = 422
    code = "invalid_body"


class RateLimited(RequestError):
    """Too many requests from one client (or key); retry after ``retry_after`` s."""

    status = 429
    code = "rate_limited"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail, {"retry-after": str(max(1, retry_after))})
        self.retry_after = max(1, retry_after)


class Unavailable(RequestError):
    """The service cannot take the request now; retry after ``retry_after`` s."""

    status = 503
    code = "unavailable"

    def __init__(self, detail: str, retry_after: int | str = 1) -> None:
        super().__init__(detail, {"retry-after": str(retry_after)})


class ErrorRecord(BaseModel):
    """What is sent to a component's ``errors`` port when its user code fails.

    Every text and the item are PII-masked before they are put here.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    component: str
    port: str
    error_type: str
    message: str
    item: dict[str, Any] | None
    message_id: str | None
    correlation_id: str | None
    time: datetime
