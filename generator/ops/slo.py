"""Service level objectives and guardrail thresholds: their spellings and meaning.

The blueprint writes objectives as percentages (``99.9%``), bounds as durations
(``250ms``) and SLO windows in days (``30d``); this module parses them, says what is
wrong with a value, and holds the resolved forms the rules and the runbook read.
A bound must be one of the runtime's histogram bucket bounds: Prometheus can only
count requests or items under a bound it has a bucket for, so any other value would
give a rule that silently measures something else.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from functools import cache
from types import ModuleType

__all__ = [
    "QUANTILES",
    "Guardrails",
    "Objective",
    "SloError",
    "age_bounds",
    "bound_problem",
    "latency_bounds",
    "parse_percent",
    "parse_window",
    "prometheus_bound",
]

#: the quantiles a latency or freshness objective may name, and the share each means
QUANTILES: dict[str, float] = {
    "p50": 50.0,
    "p90": 90.0,
    "p95": 95.0,
    "p99": 99.0,
    "p999": 99.9,
}
_PERCENT = re.compile(r"^([0-9]{1,3}(?:\.[0-9]{1,6})?)%$")
_WINDOW = re.compile(r"^([0-9]{1,3})d$")
#: the longest SLO window: a year
MAX_WINDOW_DAYS = 365


class SloError(ValueError):
    """A value that is not what an SLO or guardrail key takes; the message says why."""


def parse_percent(text: object, *, whole: bool = False) -> float:
    """``99.9%`` as 99.9: more than 0 and less than 100 (up to 100 when ``whole``)."""
    match = _PERCENT.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise SloError(
            f"{text!r} is not a percentage: write a number and '%', e.g. '99.9%'"
        )
    value = float(match.group(1))
    if whole and 0 < value <= 100:
        return value
    if not 0 < value < 100:
        top = "up to 100%" if whole else "less than 100% (100% leaves no error budget)"
        raise SloError(f"{text!r} must be more than 0% and {top}")
    return value


def parse_window(text: object) -> int:
    """An SLO window, ``30d``, as whole days (1 to 365)."""
    match = _WINDOW.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise SloError(
            f"{text!r} is not an SLO window: write a whole number of days, e.g. '30d'"
        )
    days = int(match.group(1))
    if not 1 <= days <= MAX_WINDOW_DAYS:
        raise SloError(f"SLO window {text!r} must be 1d to {MAX_WINDOW_DAYS}d")
    return days


@cache
def _histogram() -> ModuleType:
    # The runtime's own bucket table, loaded from the template tree (a leaf of the
    # standard library only), so that validate and the service agree on the bounds.
    from ..render import templates_root

    path = templates_root() / "project" / "package" / "runtime" / "histogram.py"
    spec = importlib.util.spec_from_file_location("portwright_runtime_histogram", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def latency_bounds() -> tuple[float, ...]:
    """The request-duration histogram's bucket bounds (seconds)."""
    return tuple(_histogram().LATENCY_BUCKETS)


def age_bounds() -> tuple[float, ...]:
    """The message-age histogram's bucket bounds (seconds)."""
    return tuple(_histogram().AGE_BUCKETS)


def prometheus_bound(seconds: float) -> str:
    """A bound as the ``le`` label the service exposes spells it (``0.25``, ``5.0``)."""
    return str(_histogram().prometheus_bound(seconds))


def bound_problem(seconds: float, bounds: tuple[float, ...], what: str) -> str | None:
    """Why ``seconds`` cannot bound ``what`` (it is not a bucket bound), or None."""
    if any(abs(seconds - bound) < 1e-12 for bound in bounds):
        return None
    spelled = ", ".join(_spell(bound) for bound in bounds if bound >= 0.001)
    return (
        f"{_spell(seconds)} is not a bucket bound of the {what} histogram, so "
        f"Prometheus cannot count what stays under it; choose one of {spelled}"
    )


def _spell(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class Objective:
    """One SLO of a component: its SLI, the share that must be good, the window."""

    component: str
    sli: str  # "availability" | "latency" | "freshness"
    target: float  # percent of good events, e.g. 99.9
    window_days: int
    quantile: str | None = None  # latency, freshness: "p99"
    bound_s: float | None = None  # latency, freshness: the bound in seconds

    @property
    def name(self) -> str:
        """``<component>-<sli>``: the ``slo`` label of its rules."""
        return f"{self.component}-{self.sli}"

    @property
    def budget(self) -> float:
        """The error budget: the share of events that may be bad (0.001 for 99.9%)."""
        return round(1 - self.target / 100, 12)


@dataclass(frozen=True)
class Guardrails:
    """A component's guardrail thresholds (the blueprint's defaults, overridden)."""

    buffer_utilization: float = 80.0  # percent of the fullest incoming buffer
    lag: int = 1000  # Redis entries not yet delivered to the group
    pending: int = 1000  # Redis entries delivered and not acknowledged
