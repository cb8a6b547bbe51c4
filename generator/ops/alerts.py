"""The alerts of a service, one row per alert, and the rules each row makes.

An ``Alert`` row says what a guardrail watches (its PromQL for one component), how
long it must hold, and the text of its summary, description and runbook section. A
new metric joins with one row here (and its promtool case in ``rule_tests.py``); the
rules, the rule tests and the runbook all read these rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..blueprint import Blueprint, Component

__all__ = [
    "GUARDRAILS",
    "Alert",
    "Firing",
    "alert_annotations",
    "guardrail_rules",
    "labels",
    "redis_fed",
    "runbook_url",
    "watched",
]

#: the loop lag (seconds) past which the event-loop alert fires: the runtime's own
#: warning threshold (the ``loop_lag_warn_ms`` setting's default)
LOOP_LAG_S = 0.1
RUNBOOK = "ops/RUNBOOK.md"


def runbook_url(anchor: str) -> str:
    """Where an alert's section is: the runbook beside the rules, at its anchor."""
    return f"{RUNBOOK}#{anchor}"


@dataclass(frozen=True)
class Firing:
    """Synthetic series that make a guardrail fire for one component (promtool)."""

    series: tuple[tuple[str, str], ...]  # (series selector, promtool values)
    labels: tuple[tuple[str, str], ...]  # the alert's labels beyond severity, service
    port: str  # what {{ $labels.port }} reads in the annotations ("" when none)


@dataclass(frozen=True)
class Alert:
    """One guardrail: which components it watches, its rule, its text."""

    name: str
    applies: Callable[[Blueprint, Component], bool]
    expr: Callable[[Component], str]
    hold: str  # the rule's 'for'
    summary: str
    description: str  # {component} and {threshold} filled; {{ $labels.port }} kept
    meaning: str  # the runbook: what it means
    action: str  # the runbook: what to do
    threshold: Callable[[Component], str]
    firing: Callable[[Component], Firing]
    calm: Callable[[Component], tuple[tuple[str, str], ...]]

    @property
    def anchor(self) -> str:
        """The runbook section of this alert."""
        return self.name.lower()


def _has_inputs(_: Blueprint, component: Component) -> bool:
    return bool(component.inputs)


def redis_fed(blueprint: Blueprint, component: Component) -> bool:
    return any(
        c.transport == "redis" and c.target.component == component.name
        for c in blueprint.connections
    )


def _endpoint(_: Blueprint, component: Component) -> bool:
    return component.kind == "api_endpoint"


def _every(_: Blueprint, __: Component) -> bool:
    return True


def _first_input(component: Component) -> str:
    return component.inputs[0].name if component.inputs else ""


def _sel(name: str, component: Component, **labels: str) -> str:
    pairs = {"component": component.name, **labels}
    inside = ",".join(f'{key}="{value}"' for key, value in pairs.items())
    return f"{name}{{{inside}}}"


def _port_firing(
    metric: str, values: str, component: Component, **extra: str
) -> Firing:
    port = _first_input(component)
    return Firing(
        ((_sel(metric, component, port=port, **extra), values),),
        (("component", component.name), ("port", port)),
        port,
    )


GUARDRAILS: tuple[Alert, ...] = (
    Alert(
        name="PortwrightBufferHigh",
        applies=_has_inputs,
        expr=lambda c: (
            f"max by (component, port) ({_sel('portwright_buffer_utilization', c)})"
            f" > {c.guardrails.buffer_utilization / 100:g}"
        ),
        hold="5m",
        summary="A component's input buffer stays nearly full",
        description=(
            "Input port {{ $labels.port }} of component {component} has had its "
            "buffer above {threshold} for 5 minutes: it receives faster than it "
            "works, and what sends to it will soon wait or drop."
        ),
        meaning=(
            "The component cannot keep up with what reaches the port; behind a full "
            "buffer the senders block (overflow block, and api_endpoints answer 503) "
            "or drop items (drop_newest, drop_oldest)."
        ),
        action=(
            "Look at the component's processing latency and errors on the "
            "dashboard. If its user method is slow, make it faster, raise its "
            "`concurrency`, or run more replicas (Redis transport). If a burst is "
            "expected, raise `buffer_size`. A sink that waits on a slow store is the "
            "usual cause: check that store."
        ),
        threshold=lambda c: f"{c.guardrails.buffer_utilization:g}%",
        firing=lambda c: _port_firing("portwright_buffer_utilization", "0.99x15", c),
        calm=lambda c: (
            (
                _sel("portwright_buffer_utilization", c, port=_first_input(c)),
                "0.1x15",
            ),
        ),
    ),
    Alert(
        name="PortwrightDeadLettersGrowing",
        applies=redis_fed,
        expr=lambda c: (
            "sum by (component, port) "
            f"(increase({_sel('portwright_dead_lettered_total', c)}[10m])) > 0"
        ),
        hold="1m",
        summary="Items are going to the dead-letter stream",
        description=(
            "Input port {{ $labels.port }} of component {component} moved items to "
            "its dead-letter stream in the last 10 minutes: they failed every retry."
        ),
        meaning=(
            "Items failed `max_retries` deliveries and were set aside; they are not "
            "lost, but they are not processed either."
        ),
        action=(
            "List them with `python -m <package>.dlq list`, read the error each "
            "carries, fix the cause (the user method, or bad input upstream), then "
            "replay them with `python -m <package>.dlq replay`."
        ),
        threshold=lambda c: "0",
        firing=lambda c: _port_firing(
            "portwright_dead_lettered_total", "0+3x15", c, stream="s"
        ),
        calm=lambda c: (
            (
                _sel(
                    "portwright_dead_lettered_total",
                    c,
                    port=_first_input(c),
                    stream="s",
                ),
                "5x15",
            ),
        ),
    ),
    Alert(
        name="PortwrightStreamLagGrowing",
        applies=redis_fed,
        expr=lambda c: (
            f"(sum by (component, port) ({_sel('portwright_stream_lag', c)})"
            f" > {c.guardrails.lag})"
            " and on (component, port) "
            f"(sum by (component, port) (deriv({_sel('portwright_stream_lag', c)}"
            "[10m])) > 0)"
        ),
        hold="5m",
        summary="A Redis stream's backlog is large and growing",
        description=(
            "Input port {{ $labels.port }} of component {component} has more than "
            "{threshold} entries not yet delivered, and the number grows."
        ),
        meaning=(
            "The replicas reading the port's consumer group take entries more "
            "slowly than they are added."
        ),
        action=(
            "Run more replicas of the component, or make its user method faster; "
            "check that no replica is stuck (PortwrightReplicaMissing, "
            "PortwrightStreamPendingGrowing)."
        ),
        threshold=lambda c: str(c.guardrails.lag),
        firing=lambda c: _port_firing(
            "portwright_stream_lag", f"{c.guardrails.lag + 10}+50x15", c, stream="s"
        ),
        calm=lambda c: (
            (
                _sel("portwright_stream_lag", c, port=_first_input(c), stream="s"),
                "3x15",
            ),
        ),
    ),
    Alert(
        name="PortwrightStreamPendingGrowing",
        applies=redis_fed,
        expr=lambda c: (
            f"(sum by (component, port) ({_sel('portwright_stream_pending', c)})"
            f" > {c.guardrails.pending})"
            " and on (component, port) "
            f"(sum by (component, port) (deriv({_sel('portwright_stream_pending', c)}"
            "[10m])) > 0)"
        ),
        hold="5m",
        summary="Entries delivered to a consumer group stay unacknowledged",
        description=(
            "Input port {{ $labels.port }} of component {component} has more than "
            "{threshold} entries delivered and not acknowledged, and the number "
            "grows."
        ),
        meaning=(
            "Replicas took entries and have not finished them: they are slow, "
            "stuck, or died holding them (another replica claims them after "
            "`claim_idle_ms`)."
        ),
        action=(
            "Check the replicas' logs and `python -m <package>.replicas`; restart a "
            "stuck replica. If they are only slow, see PortwrightBufferHigh."
        ),
        threshold=lambda c: str(c.guardrails.pending),
        firing=lambda c: _port_firing(
            "portwright_stream_pending",
            f"{c.guardrails.pending + 10}+50x15",
            c,
            stream="s",
        ),
        calm=lambda c: (
            (
                _sel("portwright_stream_pending", c, port=_first_input(c), stream="s"),
                "3x15",
            ),
        ),
    ),
    Alert(
        name="PortwrightReplicaMissing",
        applies=_every,
        expr=lambda c: f"absent({_sel('portwright_component_running', c)} == 1)",
        hold="2m",
        summary="No running replica reports a component",
        description=(
            "No scraped replica reports component {component} running for 2 "
            "minutes: what reaches it waits (Redis) or nothing serves it."
        ),
        meaning=(
            "Every replica that runs the component is down, not scraped, or "
            "stopping; `portwright_component_running` is 1 only while it runs."
        ),
        action=(
            "Check the deployment (pods, restarts, the last logs of each replica) "
            "and that Prometheus still scrapes `/metrics` (`up`)."
        ),
        threshold=lambda c: "1",
        firing=lambda c: Firing(
            ((_sel("portwright_component_running", c), "0x15"),),
            (("component", c.name),),
            "",
        ),
        calm=lambda c: ((_sel("portwright_component_running", c), "1x15"),),
    ),
    Alert(
        name="Portwright503sRising",
        applies=_endpoint,
        expr=lambda c: (
            "sum by (component) (rate("
            f"{_sel('portwright_http_responses_total', c, code='503')}[5m])) > 0"
        ),
        hold="5m",
        summary="An api_endpoint keeps answering 503",
        description=(
            "Component {component} (output port out) has answered 503 for 5 "
            "minutes: its output stayed full for timeout_ms, or the service is "
            "not accepting."
        ),
        meaning=(
            "Clients are told to retry later: the components after the endpoint do "
            "not keep up, or the service is starting or stopping."
        ),
        action=(
            "Follow PortwrightBufferHigh for the component the endpoint feeds; if "
            "the service is restarting, check why (PortwrightReplicaMissing)."
        ),
        threshold=lambda c: "0",
        firing=lambda c: Firing(
            ((_sel("portwright_http_responses_total", c, code="503"), "0+10x15"),),
            (("component", c.name),),
            "",
        ),
        calm=lambda c: (
            (_sel("portwright_http_responses_total", c, code="503"), "4x15"),
        ),
    ),
)

#: the service-wide alert on the event loop (not one per component)
LOOP_LAG = Alert(
    name="PortwrightEventLoopLag",
    applies=_every,
    expr=lambda c: (
        "histogram_quantile(0.99, sum by (le, instance) "
        "(rate(portwright_event_loop_lag_seconds_bucket[5m])))"
        f" > {LOOP_LAG_S:g}"
    ),
    hold="5m",
    summary="The event loop is held",
    description=(
        "A replica's event loop woke tasks more than {threshold} late (p99) for 5 "
        "minutes: code is blocking it, and every component of the replica waits."
    ),
    meaning=(
        "User code (or a library it calls) blocks the loop: a plain `def` doing I/O "
        "or heavy CPU work on the loop thread."
    ),
    action=(
        "The replica logs a warning naming the component, method, file and line "
        "that held the loop; mark that component `blocking: true` (it then runs in "
        "worker threads) or make the method async."
    ),
    threshold=lambda c: f"{LOOP_LAG_S * 1000:g}ms",
    firing=lambda c: Firing(
        (
            ('portwright_event_loop_lag_seconds_bucket{instance="a",le="0.1"}', "0x15"),
            ('portwright_event_loop_lag_seconds_bucket{instance="a",le="1.0"}', "0x15"),
            (
                'portwright_event_loop_lag_seconds_bucket{instance="a",le="+Inf"}',
                "0+10x15",
            ),
        ),
        (("instance", "a"),),
        "",
    ),
    calm=lambda c: (
        (
            'portwright_event_loop_lag_seconds_bucket{instance="a",le="0.1"}',
            "0+10x15",
        ),
        (
            'portwright_event_loop_lag_seconds_bucket{instance="a",le="1.0"}',
            "0+10x15",
        ),
        (
            'portwright_event_loop_lag_seconds_bucket{instance="a",le="+Inf"}',
            "0+10x15",
        ),
    ),
)


def watched(blueprint: Blueprint) -> list[tuple[Alert, Component]]:
    """Every guardrail with every component it watches, in table and blueprint order."""
    pairs = [
        (alert, component)
        for alert in GUARDRAILS
        for component in blueprint.components
        if alert.applies(blueprint, component)
    ]
    return [*pairs, (LOOP_LAG, blueprint.components[0])]


def alert_annotations(alert: Alert, component: Component) -> dict[str, str]:
    """The alert's summary, description and runbook_url for ``component``."""
    # not str.format: the text keeps Prometheus's own {{ $labels.port }}
    description = alert.description.replace("{component}", component.name).replace(
        "{threshold}", alert.threshold(component)
    )
    return {
        "summary": alert.summary,
        "description": description,
        "runbook_url": runbook_url(alert.anchor),
    }


def labels(blueprint: Blueprint, alert: Alert, component: Component) -> dict[str, str]:
    """The labels a rule adds: severity, service and (one per component) component."""
    added = {"severity": "warning", "service": blueprint.name}
    if alert is not LOOP_LAG:
        added["component"] = component.name
    return added


def guardrail_rules(blueprint: Blueprint) -> list[dict[str, object]]:
    """The guardrail alerting rules, one per alert and component."""
    return [
        {
            "alert": alert.name,
            "expr": alert.expr(component),
            "for": alert.hold,
            "labels": labels(blueprint, alert, component),
            "annotations": alert_annotations(alert, component),
        }
        for alert, component in watched(blueprint)
    ]
