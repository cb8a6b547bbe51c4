"""The tracer the ``--tracing`` benchmarks turn on: every span (or one in ``1/ratio``)
sampled, ended into the SDK's ``SimpleSpanProcessor`` and an exporter that discards
it, so a figure is what the spans cost in the runtime, not their export."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def tracing_on(ratio: float = 1.0) -> Callable[[], None]:
    """Turn the runtime's tracing on (``ratio``: the share of traces sampled, as
    ``OTEL_TRACES_SAMPLER=parentbased_traceidratio`` does); return the undo."""
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.sampling import (
        ALWAYS_ON,
        ParentBased,
        TraceIdRatioBased,
    )
    from runtime import tracing

    class Discard(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    sampler = ALWAYS_ON if ratio >= 1 else ParentBased(TraceIdRatioBased(ratio))
    provider = TracerProvider(sampler=sampler, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(Discard()))
    tracing.configure("bench", tracer=provider.get_tracer("bench"))

    def off() -> None:
        tracing.reset()
        provider.shutdown()

    return off


def ratio_argument(argv: list[str]) -> tuple[list[str], float | None]:
    """``argv`` without ``--tracing[=RATIO]``, and the ratio (None: not asked)."""
    rest, ratio = [], None
    for arg in argv:
        if arg == "--tracing":
            ratio = 1.0
        elif arg.startswith("--tracing="):
            ratio = float(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return rest, ratio
