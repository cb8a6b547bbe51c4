"""The service runtime: ports, primitives, ingress, metrics, logs and lifecycle.

This package is copied verbatim into every emitted project and imports only the
standard library, anyio, pydantic, FastAPI/Starlette, uvicorn and prometheus_client.
See docs/runtime.md for the API and a complete wiring example.
"""

from .app import create_app, serve
from .component import Component, RunContext, State
from .components import Filter, Merger, Router, Sink, Source, Transformer
from .envelope import Entry, Envelope, uuid7
from .errors import (
    ErrorRecord,
    ServiceError,
    SettingsError,
    StartupError,
    UnknownRouteError,
    WiringError,
)
from .ingress import ApiEndpoint
from .logs import JsonFormatter, MaskedLogger, configure_logging
from .metrics import Histogram, ServiceMetrics
from .pii import MASK, Masker
from .ports import Connection, InputPort, OutputPort, Overflow
from .service import DrainReport, Service, ServiceState
from .settings import ServiceSettings
from .taps import Inlet, Tap

__all__ = [
    "MASK",
    "ApiEndpoint",
    "Component",
    "Connection",
    "DrainReport",
    "Entry",
    "Envelope",
    "ErrorRecord",
    "Filter",
    "Histogram",
    "Inlet",
    "InputPort",
    "JsonFormatter",
    "MaskedLogger",
    "Masker",
    "Merger",
    "OutputPort",
    "Overflow",
    "Router",
    "RunContext",
    "Service",
    "ServiceError",
    "ServiceMetrics",
    "ServiceSettings",
    "ServiceState",
    "SettingsError",
    "Sink",
    "Source",
    "StartupError",
    "State",
    "Tap",
    "Transformer",
    "UnknownRouteError",
    "WiringError",
    "configure_logging",
    "create_app",
    "serve",
    "uuid7",
]
