"""The runtime's errors, and the record a failed message becomes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = [
    "ErrorRecord",
    "ServiceError",
    "SettingsError",
    "StartupError",
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
