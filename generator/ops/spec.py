"""The blueprint keys of operations: ``slo`` (api_endpoint, sink) and ``guardrails``
(``defaults`` and any component), as frozen pydantic models like the rest of the
format (``generator/model.py`` places them)."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from ..durations import DurationError, parse_duration
from .slo import QUANTILES, SloError, parse_percent, parse_window

__all__ = ["EndpointSloSpec", "GuardrailsSpec", "QuantileSpec", "SinkSloSpec"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _check(parse: Any, code: str) -> AfterValidator:
    def validate(value: str) -> str:
        try:
            parse(value)
        except (SloError, DurationError) as exc:
            raise PydanticCustomError(code, str(exc)) from None
        return value

    return AfterValidator(validate)


#: a share of events that must be good, ``99.9%``
Percent = Annotated[
    str, Field(strict=True, max_length=20), _check(parse_percent, "portwright_percent")
]
#: a share of a whole, up to all of it, ``80%``
Share = Annotated[
    str,
    Field(strict=True, max_length=20),
    _check(partial(parse_percent, whole=True), "portwright_percent"),
]
#: an SLO window in days, ``30d``
Window = Annotated[
    str, Field(strict=True, max_length=20), _check(parse_window, "portwright_window")
]
#: a bound, ``250ms``, ``5s``
Bound = Annotated[
    str,
    Field(strict=True, max_length=20),
    _check(parse_duration, "portwright_duration"),
]
Entries = Annotated[int, Field(strict=True, ge=1, le=1_000_000_000)]


class QuantileSpec(_Spec):
    """One quantile under a bound: ``{p99: 250ms}``."""

    p50: Bound | None = None
    p90: Bound | None = None
    p95: Bound | None = None
    p99: Bound | None = None
    p999: Bound | None = None

    @model_validator(mode="after")
    def _one(self) -> QuantileSpec:
        given = [name for name in QUANTILES if getattr(self, name) is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "portwright_quantile",
                "give exactly one quantile and its bound, e.g. {{p99: 250ms}} "
                "(one of {names})",
                {"names": ", ".join(QUANTILES)},
            )
        return self

    @property
    def quantile(self) -> tuple[str, str]:
        """The quantile named and its bound as written."""
        return next(
            (name, getattr(self, name))
            for name in QUANTILES
            if getattr(self, name) is not None
        )


class EndpointSloSpec(_Spec):
    """An api_endpoint's objectives: requests answered without 5xx, and fast."""

    #: the share of requests answered without a 5xx status
    availability: Percent | None = None
    #: a quantile of the request duration under a bound
    latency: QuantileSpec | None = None
    window: Window = "30d"

    @model_validator(mode="after")
    def _some(self) -> EndpointSloSpec:
        if self.availability is None and self.latency is None:
            raise PydanticCustomError(
                "portwright_slo",
                "an api_endpoint's slo names 'availability' (e.g. 99.9%), "
                "'latency' (e.g. {p99: 250ms}) or both",
            )
        return self


class SinkSloSpec(_Spec):
    """A sink's objective: items reach it young enough."""

    #: a quantile of message age at the sink's inputs under a bound
    freshness: QuantileSpec
    window: Window = "30d"


class GuardrailsSpec(_Spec):
    """Guardrail thresholds; in ``defaults`` for every component, or one component's."""

    #: the fullest incoming buffer above this for 5 minutes alerts
    buffer_utilization: Share | None = None
    #: Redis entries not yet delivered to the input's consumer group
    lag: Entries | None = None
    #: Redis entries delivered and not acknowledged
    pending: Entries | None = None
