"""``ops/grafana/<service>.json``: the service's Grafana dashboard.

Built with grafana-foundation-sdk (Grafana's own typed builders) rather than string
templates: SLO burn and error budget on top, then one row per component (rates,
buffer utilization, message age percentiles, errors, Redis lag). The panels come from
one table, ``PANELS``; ``panel_queries`` lists every query, which the live Prometheus
test evaluates against a running service.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from ..blueprint import Blueprint, Component
from .alerts import redis_fed
from .objectives import objectives

__all__ = ["PANELS", "Panel", "dashboard_json", "dashboard_path", "panel_queries"]

_DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
_WINDOW = "[$__rate_interval]"


def dashboard_path(blueprint: Blueprint) -> str:
    """Where the dashboard is emitted."""
    return f"ops/grafana/{blueprint.name}.json"


@dataclass(frozen=True)
class Panel:
    """One panel of a component's row: its title, unit and queries (legend, expr)."""

    title: str
    unit: str
    applies: Callable[[Blueprint, Component], bool]
    queries: Callable[[Component], tuple[tuple[str, str], ...]]


def _inputs(_: Blueprint, component: Component) -> bool:
    return bool(component.inputs)


def _endpoint(_: Blueprint, component: Component) -> bool:
    return component.kind == "api_endpoint"


def _sel(metric: str, component: Component) -> str:
    return f'{metric}{{component="{component.name}"}}'


def _rate(metric: str, component: Component, by: str = "port") -> str:
    return f"sum by ({by}) (rate({_sel(metric, component)}{_WINDOW}))"


def _quantile(q: str, metric: str, component: Component, by: str) -> str:
    inner = _rate(f"{metric}_bucket", component, by=f"le{', ' if by else ''}{by}")
    return f"histogram_quantile({q}, {inner})"


PANELS: tuple[Panel, ...] = (
    Panel(
        "Requests answered",
        "reqps",
        _endpoint,
        lambda c: (("{{code}}", _rate("portwright_http_responses_total", c, "code")),),
    ),
    Panel(
        "Time to answer",
        "s",
        _endpoint,
        lambda c: tuple(
            (
                f"p{q[2:]}",
                _quantile(q, "portwright_http_request_duration_seconds", c, ""),
            )
            for q in ("0.5", "0.99")
        ),
    ),
    Panel(
        "Messages in / out",
        "ops",
        lambda _, c: True,
        lambda c: (
            *(
                (("in {{port}}", _rate("portwright_messages_in_total", c)),)
                if c.inputs
                else ()
            ),
            *(
                (("out {{port}}", _rate("portwright_messages_out_total", c)),)
                if c.outputs
                else ()
            ),
        ),
    ),
    Panel(
        "Buffer utilization",
        "percentunit",
        _inputs,
        lambda c: (
            (
                "{{port}}",
                f"max by (port) ({_sel('portwright_buffer_utilization', c)})",
            ),
        ),
    ),
    Panel(
        "Message age",
        "s",
        _inputs,
        lambda c: tuple(
            (
                f"p{q[2:]} {{{{port}}}}",
                _quantile(q, "portwright_message_age_seconds", c, "port"),
            )
            for q in ("0.5", "0.9", "0.99")
        ),
    ),
    Panel(
        "Errors and drops",
        "ops",
        lambda _, c: True,
        lambda c: (
            ("errors {{port}}", _rate("portwright_errors_total", c)),
            ("dropped {{port}}", _rate("portwright_messages_dropped_total", c)),
        ),
    ),
    Panel(
        "Redis lag and pending",
        "short",
        redis_fed,
        lambda c: (
            ("lag {{port}}", f"sum by (port) ({_sel('portwright_stream_lag', c)})"),
            (
                "pending {{port}}",
                f"sum by (port) ({_sel('portwright_stream_pending', c)})",
            ),
        ),
    ),
)


def _slo_queries(blueprint: Blueprint) -> list[tuple[str, str, str, str]]:
    """(title, unit, legend, expr) of the SLO panels at the top."""
    found = []
    for objective in objectives(blueprint):
        sel = f'{{service="{blueprint.name}",slo="{objective.name}"}}'
        found += [
            (
                f"{objective.name}: error budget left",
                "percentunit",
                objective.name,
                f"slo:period_error_budget_remaining:ratio{sel}",
            ),
            (
                f"{objective.name}: burn rate",
                "short",
                "{{slo}}",
                f"slo:current_burn_rate:ratio{sel}",
            ),
        ]
    return found


def panel_queries(blueprint: Blueprint) -> list[str]:
    """Every query of the dashboard, in panel order."""
    queries = [expr for _, _, _, expr in _slo_queries(blueprint)]
    for component in blueprint.components:
        for panel in PANELS:
            if panel.applies(blueprint, component):
                queries += [expr for _, expr in panel.queries(component)]
    return queries


def dashboard_json(blueprint: Blueprint) -> str:
    """The dashboard as Grafana imports it (sorted keys: the same text every time)."""
    board = (
        dashboard.Dashboard(blueprint.name)
        .uid(f"portwright-{blueprint.name}"[:40])
        .tags(["portwright", blueprint.name])
        .description(blueprint.description or f"{blueprint.name}, by portwright")
        .refresh("10s")
        .time("now-1h", "now")
        .timezone("utc")
        .with_variable(
            dashboard.DatasourceVariable("datasource")
            .label("Prometheus")
            .type("prometheus")
        )
    )
    ids = iter(range(1, 10_000))
    slos = _slo_queries(blueprint)
    if slos:
        board = board.with_row(dashboard.Row("SLOs").id(next(ids)))
        for title, unit, legend, expr in slos:
            builder = stat.Panel() if "budget" in title else timeseries.Panel()
            board = board.with_panel(
                builder.id(next(ids))
                .title(title)
                .unit(unit)
                .datasource(_DATASOURCE)
                .with_target(_query("A", legend, expr))
                .span(12 if "budget" not in title else 6)
                .height(6)
            )
    for component in blueprint.components:
        title = f"{component.name} ({component.kind})"
        board = board.with_row(dashboard.Row(title).id(next(ids)))
        for panel in PANELS:
            if not panel.applies(blueprint, component):
                continue
            built = (
                timeseries.Panel()
                .id(next(ids))
                .title(f"{component.name}: {panel.title}")
                .unit(panel.unit)
                .datasource(_DATASOURCE)
                .span(8)
                .height(7)
            )
            for ref, (legend, expr) in zip(
                "ABCDEFGH", panel.queries(component), strict=False
            ):
                built = built.with_target(_query(ref, legend, expr))
            board = board.with_panel(built)
    # through the SDK's encoder, then without the nulls it leaves for unset options,
    # which Grafana would read as set
    plain = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return json.dumps(_pruned(plain), sort_keys=True, indent=2) + "\n"


def _pruned(value: object) -> object:
    if isinstance(value, dict):
        return {k: _pruned(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_pruned(item) for item in value]
    return value


def _query(ref: str, legend: str, expr: str) -> prometheus.Dataquery:
    return (
        prometheus.Dataquery()
        .ref_id(ref)
        .expr(expr)
        .legend_format(legend)
        .datasource(_DATASOURCE)
    )
