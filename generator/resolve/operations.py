"""Operations: a component's SLOs and guardrail thresholds, resolved and checked."""

from __future__ import annotations

from typing import Any

from ..durations import parse_duration
from ..model import ComponentSpec
from ..ops.slo import (
    QUANTILES,
    Guardrails,
    Objective,
    age_bounds,
    bound_problem,
    latency_bounds,
    parse_percent,
    parse_window,
)
from ..ops.spec import EndpointSloSpec, GuardrailsSpec, QuantileSpec, SinkSloSpec
from .checks import Checks


class OperationRules(Checks):
    """Resolve ``slo`` and ``guardrails``; a bound must be a histogram bucket bound."""

    def operations(self, name: str, spec: ComponentSpec) -> dict[str, Any]:
        """The component's ``objectives`` and ``guardrails`` for its ``Component``."""
        slo = getattr(spec, "slo", None)
        objectives: list[Objective] = []
        if isinstance(slo, EndpointSloSpec):
            days = parse_window(slo.window)
            if slo.availability is not None:
                target = parse_percent(slo.availability)
                objectives.append(Objective(name, "availability", target, days))
            if slo.latency is not None:
                objectives.append(
                    self._bounded(
                        name, "latency", slo.latency, days, "request duration"
                    )
                )
        elif isinstance(slo, SinkSloSpec):
            days = parse_window(slo.window)
            objectives.append(
                self._bounded(name, "freshness", slo.freshness, days, "message age")
            )
        return {
            "objectives": tuple(objectives),
            "guardrails": self._guardrails(spec.guardrails),
        }

    def _bounded(
        self, name: str, sli: str, spec: QuantileSpec, days: int, what: str
    ) -> Objective:
        quantile, text = spec.quantile
        seconds = parse_duration(text).seconds
        bounds = latency_bounds() if sli == "latency" else age_bounds()
        problem = bound_problem(seconds, bounds, what)
        if problem is not None:
            self.error(("components", name, "slo", sli, quantile), problem)
        return Objective(name, sli, QUANTILES[quantile], days, quantile, seconds)

    def _guardrails(self, own: GuardrailsSpec | None) -> Guardrails:
        built_in = Guardrails()
        merged: dict[str, Any] = {}
        for layer in (self.spec.defaults.guardrails, own):
            if layer is None:
                continue
            merged.update({key: value for key, value in layer if value is not None})
        utilization = merged.get("buffer_utilization")
        return Guardrails(
            buffer_utilization=(
                built_in.buffer_utilization
                if utilization is None
                else parse_percent(utilization, whole=True)
            ),
            lag=merged.get("lag", built_in.lag),
            pending=merged.get("pending", built_in.pending),
        )
