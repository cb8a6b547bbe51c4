"""OpenTelemetry tracing: one trace per accepted request, across every hop.

Off unless the standard ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``,
``console``; ``OTEL_SDK_DISABLED=true`` turns it off again). ``configure`` decides
once, when the service starts; everything else reads ``TRACER`` once (per request,
per receiving loop, per Redis entry), so that tracing off costs nothing per message.

The trace context of a message does not travel in the envelope (a field there would
cost every message, traced or not). Instead this module remembers, by the
envelope's sequence number, the context of the span in which each message was made:
the HTTP request's span for a message an endpoint accepts, the span of the
component that derived it, or the context a Redis entry carried in its
``traceparent`` field (W3C trace context). A component's span for a message is a
child of that context. The memory is bounded (the last 65,536 messages at least,
older ones forgotten): the next span of a message made longer ago than that starts
a new trace.

Span attributes name the component, the port, the message and correlation ids and
the partition (when the connection has one); never the payload, so a field marked
pii cannot reach a span.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Generator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    StatusCode,
    Tracer,
)
from opentelemetry.trace.propagation.tracecontext import (
    TraceContextTextMapPropagator,
)

from .envelope import Envelope, next_seq
from .errors import SettingsError

__all__ = [
    "EXPORTERS",
    "FILE_VARIABLE",
    "TRACER",
    "TracingError",
    "configure",
    "context_of",
    "extract",
    "inject",
    "made",
    "remember",
    "request_span",
    "reset",
    "traced_loop",
]

#: the tracer, or None: tracing is off (the default)
TRACER: Tracer | None = None
#: the exporters ``OTEL_TRACES_EXPORTER`` may name (comma-separated)
EXPORTERS = ("console", "otlp", "none")
#: where the console exporter writes, one JSON span a line (default: stderr, which
#: keeps stdout for the JSON log lines)
FILE_VARIABLE = "PORTWRIGHT_TRACES_FILE"
#: how many messages' contexts are remembered
_LIMIT = 1 << 16
#: how many parents ``context_of`` looks through
_DEPTH = 16


class _Remembered:
    """Message sequence number -> the span that made the message: its ids only (a
    finished span kept here would keep its attributes alive).

    The last ``_LIMIT`` to ``2 * _LIMIT`` messages, in two generations: the older is
    dropped whole when the newer is full. (Deleting one entry at a time from the
    front of a dict makes each later deletion scan past the holes left before it.)
    """

    __slots__ = ("newer", "older")

    def __init__(self) -> None:
        self.newer: dict[int, SpanContext] = {}
        self.older: dict[int, SpanContext] = {}

    def put(self, seq: int, span: SpanContext) -> None:
        newer = self.newer
        newer[seq] = span
        if len(newer) >= _LIMIT:
            self.older = newer
            self.newer = {}

    def get(self, seq: int) -> SpanContext | None:
        span = self.newer.get(seq)
        return self.older.get(seq) if span is None else span

    def clear(self) -> None:
        self.newer.clear()
        self.older.clear()

    def __len__(self) -> int:
        return len(self.newer) + len(self.older)


_CONTEXTS = _Remembered()
_PROPAGATOR = TraceContextTextMapPropagator()
_shutdown: Callable[[], None] | None = None


class TracingError(SettingsError):
    """The ``OTEL_*`` settings ask for something this service cannot do (the
    service does not start: ``python -m <package>`` says why and exits 2)."""


def configure(
    service: str,
    environ: Mapping[str, str] | None = None,
    tracer: Tracer | None = None,
) -> bool:
    """Turn tracing on when the environment asks for it (or with ``tracer``).

    Returns whether it is on. The SDK reads the rest of the ``OTEL_*`` variables
    itself: ``OTEL_SERVICE_NAME`` (default: ``service``), ``OTEL_RESOURCE_ATTRIBUTES``,
    ``OTEL_TRACES_SAMPLER`` and its argument, ``OTEL_EXPORTER_OTLP_*``.
    """
    global TRACER, _shutdown
    reset()
    if tracer is not None:
        TRACER = tracer
        return True
    env = os.environ if environ is None else environ
    names = [
        n.strip().lower()
        for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")
        if n.strip()
    ]
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise TracingError(
            f"OTEL_TRACES_EXPORTER: {unknown[0]!r} is not one of {', '.join(EXPORTERS)}"
        )
    names = [n for n in names if n != "none"]
    if not names or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    # the SDK only when tracing is on: importing it costs the start of every service
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service}
    provider = TracerProvider(
        resource=Resource.create(attributes), shutdown_on_exit=False
    )
    if "console" in names:
        out = _console_file(env)
        provider.add_span_processor(
            SimpleSpanProcessor(
                ConsoleSpanExporter(
                    out=out, formatter=lambda span: span.to_json(indent=None) + "\n"
                )
            )
        )
    if "otlp" in names:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    TRACER = provider.get_tracer("portwright")
    _shutdown = provider.shutdown
    return True


def _console_file(env: Mapping[str, str]) -> TextIO:
    path = env.get(FILE_VARIABLE)
    if not path:
        return sys.stderr
    # line-buffered, appended: each process of a test or a deployment adds its spans
    return open(path, "a", buffering=1, encoding="utf-8")


def reset() -> None:
    """Turn tracing off, after exporting what is left (at the end of a service)."""
    global TRACER, _shutdown
    if _shutdown is not None:
        _shutdown()
    TRACER = None
    _shutdown = None
    _CONTEXTS.clear()


def remember(envelope: Envelope, context: Context) -> None:
    """Note that ``envelope`` was made in ``context``."""
    _CONTEXTS.put(envelope.seq, trace.get_current_span(context).get_span_context())


def made(envelope: Envelope) -> None:
    """Note that ``envelope`` was made in the current span."""
    remember(envelope, otel_context.get_current())


def context_of(envelope: Envelope) -> Context | None:
    """The context ``envelope`` was made in, if known; else its parent's.

    A message made where no span was open (a loop that is not traced: a batched
    component's) goes on in the trace of the message it was made from.
    """
    contexts = _CONTEXTS
    current: Any = envelope
    for _ in range(_DEPTH):
        span = contexts.get(current.seq)
        if span is not None:
            return trace.set_span_in_context(NonRecordingSpan(span))
        current = current.parent
        if current.__class__ is not Envelope:
            return None
    return None


def inject(envelope: Envelope) -> str | None:
    """The W3C ``traceparent`` for ``envelope``, to send it with it."""
    context = context_of(envelope)
    if context is None:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context)
    return carrier.get("traceparent")


def extract(envelope: Envelope, traceparent: Any) -> None:
    """Note that ``envelope`` arrived with ``traceparent`` (when it is one)."""
    if isinstance(traceparent, str):
        context = _PROPAGATOR.extract({"traceparent": traceparent})
        if trace.get_current_span(context).get_span_context().is_valid:
            remember(envelope, context)


@contextmanager
def request_span(
    tracer: Tracer, endpoint: str, scope: Mapping[str, Any]
) -> Generator[Span]:
    """The span of one HTTP request to ``endpoint``, current while it runs.

    It continues a trace the client sent (``traceparent`` header), else starts one.
    """
    headers = {
        key.decode("latin-1"): value.decode("latin-1")
        for key, value in scope.get("headers", ())
        if key in (b"traceparent", b"tracestate")
    }
    parent = _PROPAGATOR.extract(headers) if headers else None
    method, path = scope.get("method", "POST"), scope.get("path", "")
    with tracer.start_as_current_span(
        f"{method} {path}",
        context=parent,
        kind=SpanKind.SERVER,
        attributes={
            "portwright.component": endpoint,
            "http.request.method": method,
            "url.path": path,
        },
    ) as span:
        yield span


#: a component loop's user call: item -> result (or an awaitable of it)
Call = Callable[[Any], Any]
#: a component loop's per-message delivery hook (see ``component.Delivery``)
Deliver = Callable[[Envelope, Any, float], Any]


def traced_loop(
    tracer: Tracer,
    component: str,
    port: str,
    partition: Any,
    call: Call | None,
    is_async: bool,
    deliver: Deliver | None,
    current: Callable[[], Envelope | None],
) -> tuple[Call, Deliver | None]:
    """``call`` and ``deliver`` of one receiving loop, with a span per message.

    For the one-at-a-time loop and for a concurrency window (``call`` may then run
    in a worker thread, where ``current()`` reads the task's copied context). The
    span starts when the user method is called (``current()`` is the message
    being handled) and ends when what it returned is handed on (or when it fails).
    Every message made while handing on is remembered in the span's context: the
    messages are made synchronously in ``deliver``, so their sequence numbers fall
    between two numbers taken around it.
    """
    base: dict[str, Any] = {
        "portwright.component": component,
        "portwright.port": port,
    }
    if partition is not None:
        base["portwright.partition"] = partition
    # the span of each message whose user method returned and whose results are not
    # handed on yet, by sequence number (one in a loop, up to ``concurrency`` in a
    # window)
    open_spans: dict[int, Span] = {}

    name = f"{component} process"

    def start() -> tuple[Span, Envelope | None]:
        envelope = current()
        parent = None if envelope is None else context_of(envelope)
        span = tracer.start_span(
            name, context=parent, kind=SpanKind.CONSUMER, attributes=base
        )
        # the ids cost more to format than a message's trip through a stage: only
        # for a span the sampler keeps
        if envelope is not None and span.is_recording():
            span.set_attribute("messaging.message.id", envelope.id)
            span.set_attribute(
                "messaging.message.conversation_id", envelope.correlation_id
            )
        return span, envelope

    def failed(span: Span, exc: Exception) -> None:
        # the type only: a message may quote the item (pii); the log has it, masked
        span.add_event(
            "exception",
            {"exception.type": f"{type(exc).__module__}.{type(exc).__name__}"},
        )
        span.set_status(StatusCode.ERROR, type(exc).__name__)
        span.end()

    def finish(span: Span, envelope: Envelope | None) -> None:
        if deliver is None or envelope is None:
            span.end()
        else:  # ended when what the method returned is handed on
            open_spans[envelope.seq] = span

    if is_async:
        assert call is not None

        async def traced_async(item: Any) -> Any:
            span, envelope = start()
            try:
                result = await call(item)
            except Exception as exc:
                failed(span, exc)
                raise
            finish(span, envelope)
            return result

        traced_call: Call = traced_async
    else:

        def traced_sync(item: Any) -> Any:
            span, envelope = start()
            try:
                result = item if call is None else call(item)
            except Exception as exc:
                failed(span, exc)
                raise
            finish(span, envelope)
            return result

        traced_call = traced_sync
    if deliver is None:
        return traced_call, None
    hand_on = deliver

    def traced_deliver(envelope: Envelope, result: Any, now: float) -> Any:
        span = open_spans.pop(envelope.seq, None)
        if span is None:
            return hand_on(envelope, result, now)
        first = next_seq()
        try:
            pending = hand_on(envelope, result, now)
        except Exception as exc:
            failed(span, exc)
            raise
        last = next_seq()
        context = span.get_span_context()
        put = _CONTEXTS.put
        if last - first > 1:
            for seq in range(first + 1, last):
                put(seq, context)
        else:
            # nothing new: a filter or a router forwards the same envelope, which
            # then goes on from this span (in memory, a copy of it fanned out to a
            # component that has not yet handled it gets this span as parent too)
            put(envelope.seq, context)
        span.end()
        return pending

    return traced_call, traced_deliver
