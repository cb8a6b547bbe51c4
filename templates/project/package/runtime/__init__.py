"""The service runtime: ports, primitives, ingress, metrics, logs and lifecycle.

This package is copied verbatim into every emitted project and imports only the
standard library, anyio, pydantic, FastAPI/Starlette, uvicorn, prometheus_client,
structlog (JSON logs), limits (rate limits) and bcrypt (passwords).
See docs/runtime.md for the API and a complete wiring example.
"""

from .aggregates import Aggregate
from .app import create_app, serve
from .auth import ApiKeyAuth, BasicAuth, Credentials, api_key_digest, user_entry
from .batching import Batch
from .clock import Clock, LoopClock, ManualClock
from .component import Component, RunContext, State, current_message
from .components import Filter, Merger, Router, Sink, Source, Timer, Transformer
from .context import RequestContext, TrustedProxies, current_request
from .dedup import Dedup, DedupBusy
from .envelope import Entry, Envelope, Origin, uuid7
from .errors import (
    BadRequest,
    ErrorRecord,
    InvalidBody,
    PayloadTooLarge,
    RateLimited,
    RequestError,
    ServiceError,
    SettingsError,
    StartupError,
    Unauthorized,
    Unavailable,
    UnknownRouteError,
    UnsupportedMediaType,
    WiringError,
)
from .histogram import Histogram
from .ingress import ApiEndpoint
from .joins import Join
from .keyedstate import Stateful
from .keystates import KeyedState
from .logs import JsonFormatter, MaskedLogger, configure_logging
from .metrics import ServiceMetrics
from .pii import MASK, Masker
from .ports import Connection, InputPort, OutputPort, Overflow
from .ratelimit import RateLimit
from .service import DrainReport, Service, ServiceState
from .settings import ServiceSettings
from .taps import Inlet, Tap
from .transport import Transport
from .websocket import WebSocketIn, WebSocketOut
from .windows import Window, WindowResult

__all__ = [
    "MASK",
    "Aggregate",
    "ApiEndpoint",
    "ApiKeyAuth",
    "BadRequest",
    "BasicAuth",
    "Batch",
    "Clock",
    "Component",
    "Connection",
    "Credentials",
    "Dedup",
    "DedupBusy",
    "DrainReport",
    "Entry",
    "Envelope",
    "ErrorRecord",
    "Filter",
    "Histogram",
    "Inlet",
    "InputPort",
    "InvalidBody",
    "Join",
    "JsonFormatter",
    "KeyedState",
    "LoopClock",
    "ManualClock",
    "MaskedLogger",
    "Masker",
    "Merger",
    "Origin",
    "OutputPort",
    "Overflow",
    "PayloadTooLarge",
    "RateLimit",
    "RateLimited",
    "RequestContext",
    "RequestError",
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
    "Stateful",
    "Tap",
    "Timer",
    "Transformer",
    "Transport",
    "TrustedProxies",
    "Unauthorized",
    "Unavailable",
    "UnknownRouteError",
    "UnsupportedMediaType",
    "WebSocketIn",
    "WebSocketOut",
    "Window",
    "WindowResult",
    "WiringError",
    "api_key_digest",
    "configure_logging",
    "create_app",
    "current_message",
    "current_request",
    "serve",
    "user_entry",
    "uuid7",
]
