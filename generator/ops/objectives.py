"""SLO rules in the manner of Sloth: SLI error ratios over several windows, metadata,
and the SRE workbook's multiwindow, multi-burn-rate alerts.

Recorded series are named ``level:metric:operations`` (``slo:sli_error:ratio_rate5m``)
and labelled ``service``, ``component``, ``slo`` and ``sli``.
"""

from __future__ import annotations

from ..blueprint import Blueprint
from .alerts import runbook_url
from .slo import Objective, prometheus_bound

__all__ = [
    "ALERT",
    "BURNS",
    "WINDOWS",
    "burn_annotations",
    "describe",
    "objective_rules",
    "objectives",
]

#: the windows an SLI is recorded over (the alerts' long and short windows)
WINDOWS = ("5m", "30m", "1h", "6h", "3d")
#: (severity, long window, short window, burn-rate factor): the SRE workbook's
#: page at 2% of a 30-day budget in an hour and 5% in six, ticket at 10% in three days
BURNS = (
    ("page", "1h", "5m", 14.4),
    ("page", "6h", "30m", 6.0),
    ("ticket", "3d", "6h", 1.0),
)
ALERT = "PortwrightErrorBudgetBurn"


def objectives(blueprint: Blueprint) -> list[Objective]:
    """Every objective of the blueprint, in component order."""
    return [o for c in blueprint.components for o in c.objectives]


def error_ratio(objective: Objective, window: str) -> str:
    """The PromQL share of bad events of ``objective`` over ``window``."""
    selector = f'component="{objective.component}"'
    if objective.sli == "availability":
        total = f"portwright_http_responses_total{{{selector}}}"
        bad = f'portwright_http_responses_total{{{selector},code=~"5.."}}'
        # no 5xx answered yet means no such series: count them as zero
        return (
            f"(sum(rate({bad}[{window}])) or vector(0)) / sum(rate({total}[{window}]))"
        )
    metric = (
        "portwright_http_request_duration_seconds"
        if objective.sli == "latency"
        else "portwright_message_age_seconds"
    )
    assert objective.bound_s is not None
    le = prometheus_bound(objective.bound_s)
    good = f'sum(rate({metric}_bucket{{{selector},le="{le}"}}[{window}]))'
    return f"1 - ({good} / sum(rate({metric}_count{{{selector}}}[{window}])))"


def _labels(blueprint: Blueprint, objective: Objective) -> dict[str, str]:
    return {
        "service": blueprint.name,
        "component": objective.component,
        "slo": objective.name,
        "sli": objective.sli,
    }


def _selector(blueprint: Blueprint, objective: Objective) -> str:
    return f'{{service="{blueprint.name}",slo="{objective.name}"}}'


def recording_rules(
    blueprint: Blueprint, objective: Objective
) -> list[dict[str, object]]:
    """The SLI over each window, the SLO window's average, and the metadata."""
    labels = _labels(blueprint, objective)
    sel = _selector(blueprint, objective)
    period = f"{objective.window_days}d"
    rules: list[dict[str, object]] = [
        {
            "record": f"slo:sli_error:ratio_rate{window}",
            "expr": error_ratio(objective, window),
            "labels": labels,
        }
        for window in WINDOWS
    ]
    rules += [
        {
            "record": f"slo:sli_error:ratio_rate{period}",
            "expr": f"avg_over_time(slo:sli_error:ratio_rate5m{sel}[{period}])",
            "labels": labels,
        },
        {
            "record": "slo:objective:ratio",
            "expr": f"vector({objective.target / 100:g})",
            "labels": labels,
        },
        {
            "record": "slo:error_budget:ratio",
            "expr": f"vector({objective.budget:g})",
            "labels": labels,
        },
        {
            "record": "slo:current_burn_rate:ratio",
            "expr": f"slo:sli_error:ratio_rate5m{sel} / {objective.budget:g}",
            "labels": labels,
        },
        {
            "record": "slo:period_error_budget_remaining:ratio",
            "expr": f"1 - slo:sli_error:ratio_rate{period}{sel} / {objective.budget:g}",
            "labels": labels,
        },
    ]
    return rules


def alerting_rules(
    blueprint: Blueprint, objective: Objective
) -> list[dict[str, object]]:
    """The page and the ticket alert of ``objective``."""
    sel = _selector(blueprint, objective)
    rules: list[dict[str, object]] = []
    for severity in ("page", "ticket"):
        clauses = [
            f"(slo:sli_error:ratio_rate{long}{sel} > ({factor:g} * {objective.budget:g}))"
            f" and (slo:sli_error:ratio_rate{short}{sel}"
            f" > ({factor:g} * {objective.budget:g}))"
            for level, long, short, factor in BURNS
            if level == severity
        ]
        rules.append(
            {
                "alert": ALERT,
                "expr": " or ".join(f"({clause})" for clause in clauses),
                "labels": {**_labels(blueprint, objective), "severity": severity},
                "annotations": burn_annotations(objective, severity),
            }
        )
    return rules


def describe(objective: Objective) -> str:
    """The objective in words, as the runbook and the alerts say it."""
    share = f"{objective.target:g}%"
    if objective.sli == "availability":
        return f"{share} of requests to {objective.component} answered without a 5xx"
    assert objective.bound_s is not None
    what = (
        "requests answered within"
        if objective.sli == "latency"
        else "items reaching it younger than"
    )
    return f"{share} of {what} {objective.bound_s:g}s ({objective.quantile})"


def burn_annotations(objective: Objective, severity: str) -> dict[str, str]:
    """Summary, description and runbook_url of a burn alert."""
    speed = (
        "fast enough to spend the budget within days"
        if severity == "page"
        else "faster than the budget allows over the window"
    )
    return {
        "summary": f"{objective.component} is burning its {objective.sli} error budget",
        "description": (
            f"Component {objective.component} (SLO {objective.name}: "
            f"{describe(objective)} over {objective.window_days}d) spends its error "
            f"budget {speed}."
        ),
        "runbook_url": runbook_url(f"slo-{objective.name}"),
    }


def objective_rules(
    blueprint: Blueprint,
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """The SLO recording rules and alerting rules of the whole blueprint."""
    recording: list[dict[str, object]] = []
    alerting: list[dict[str, object]] = []
    for objective in objectives(blueprint):
        recording += recording_rules(blueprint, objective)
        alerting += alerting_rules(blueprint, objective)
    return recording, alerting
